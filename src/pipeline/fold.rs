//! The evaluate stage with folding: a rule whose run its hit count can
//! decide (see [`RuleBody::foldable`](crate::rule::RuleBody::foldable)) is
//! first counted with the other rules due together
//! ([`crate::search::fold`]); when the count does not make it match, the
//! run is the rule's own evaluation of a response holding that count and
//! nothing else — the same code, the same result as on its own search's
//! response. Otherwise (a match, or a count the fold can't vouch for) the
//! rule evaluates as it always does, with its own search.

use crate::alert::Alert;
use crate::rule::{EvalContext, EvalError, Evaluated, Foldable};
use crate::search::fold::Counted;

/// Whether `rule` would be folded in a run with `cx`, or why not.
pub fn foldable<'a>(rule: &'a Alert, cx: &'a EvalContext<'a>) -> Result<Foldable<'a>, String> {
    if !rule.policy.folds() {
        return Err("the alert says \"fold\": false".into());
    }
    let f = rule.body.foldable(rule, cx)?;
    crate::search::fold::parts(&f.body)?;
    Ok(f)
}

/// Whether a run of `rule` at `now` would be counted in a fold
/// (`esalert test`), or why not.
pub fn would_fold(
    rule: &Alert,
    es: &crate::search::EsClient,
    scripts: &crate::condition::ScriptEngine,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let http = crate::sinks::outbound_client().unwrap_or_default();
    let none = |_: &str, _: &str| None;
    let cx = EvalContext {
        es,
        http: &http,
        scripts,
        now,
        scheduled: now,
        window: crate::engine::default_window(rule, now),
        saved: None,
        memory: None,
        suppressed: &none,
    };
    foldable(rule, &cx).map(|_| ())
}

/// Evaluates `rule`, folded when it can be; the flag says whether its
/// count came from a folded search.
pub(super) async fn evaluate(
    rule: &Alert,
    cx: &EvalContext<'_>,
) -> (Result<Evaluated, EvalError>, bool) {
    if !cx.es.folds() || cx.saved.is_some() {
        return (rule.body.evaluate(rule, cx).await, false);
    }
    let Ok(f) = foldable(rule, cx) else {
        return (rule.body.evaluate(rule, cx).await, false);
    };
    let answer = cx
        .es
        .fold_count(&rule.name, &f.indices, &f.body, cx.window)
        .await;
    let Counted::Count { count, took_ms } = answer else {
        return (rule.body.evaluate(rule, cx).await, false);
    };
    if !(f.needs_search)(count) {
        let response = std::sync::Arc::new(crate::search::fold::counted(count));
        let by_count = EvalContext {
            saved: Some(&response),
            ..*cx
        };
        if let Ok(mut eval) = rule.body.evaluate(rule, &by_count).await
            && !eval.matched
        {
            eval.took_ms = took_ms;
            return (Ok(eval), true);
        }
    }
    // It matches: its own search, for its hits and message.
    (rule.body.evaluate(rule, cx).await, true)
}
