//! The gate stage: which planned actions may be delivered now.
//!
//! An action is held back when its scope is throttled, when it was
//! acknowledged (Watcher), or — with a throttle period — when an earlier
//! match of the same scope is still owed: one notification per outage, not
//! one per run. With `throttle_period: 0s` every match is delivered.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::outcome::ActionLine;
use crate::alert::Alert;
use crate::rule::{Evaluated, Plan, PlannedAction};
use crate::throttle::{AckState, AlertState, StateBackend, WHOLE_RULE};

/// (Key, scope) pairs with a delivery owed when the run started: a match
/// is folded into the earlier one even if this run's retry just delivered it.
pub(super) type Owed = std::collections::BTreeSet<(String, String)>;

pub(super) fn owed_scopes(state: &dyn StateBackend, rule: &Alert) -> Owed {
    state.read_rule(&rule.name, |st| st.map(|st| st.owed()).unwrap_or_default())
}

/// Scopes that won't deliver this run, known before evaluation so that
/// the front end can skip their work.
pub(super) struct Suppressed(BTreeMap<(String, String), &'static str>);

impl Suppressed {
    pub(super) fn snapshot(state: &dyn StateBackend, rule: &Alert, now: DateTime<Utc>) -> Self {
        state.read_rule(&rule.name, |st| Self::of(st, now))
    }

    pub(super) fn of(state: Option<&AlertState>, now: DateTime<Utc>) -> Self {
        let mut m = BTreeMap::new();
        for (key, k) in state.iter().flat_map(|s| s.keys.iter()) {
            for (scope, until) in &k.throttled_until {
                if now < *until {
                    m.insert((key.clone(), scope.clone()), "throttled");
                }
            }
            for (action, ack) in &k.ack {
                if *ack == AckState::Acked {
                    m.insert((key.clone(), action.clone()), "acked");
                }
            }
        }
        Suppressed(m)
    }

    pub(super) fn get(&self, key: &str, scope: &str) -> Option<&'static str> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&(key.to_owned(), scope.to_owned())).copied()
    }
}

/// Applies acknowledgements queued by `esalert ack` while the daemon held
/// the store.
pub(super) fn apply_ack_requests(state: &dyn StateBackend, rule: &Alert) {
    let Some(watch) = rule.watch() else { return };
    let path = crate::watcher::ack_request_path(&state.location(), &rule.name);
    let Some(ids) = crate::watcher::take_ack_request(&path) else {
        return;
    };
    let acked = state
        .update_rule(&rule.name, |st| {
            let key = st.keys.entry(WHOLE_RULE.to_owned()).or_default();
            crate::watcher::ack(&mut key.ack, watch, &ids)
        })
        .unwrap_or_default();
    tracing::info!(
        alert = rule.name.as_str(),
        event = "acked",
        actions = acked.join(",")
    );
}

/// A key that resolved in this run.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    pub key: String,
    /// Its last match.
    pub last_seen: Option<DateTime<Utc>>,
    /// The subject last delivered for it.
    pub subject: Option<String>,
}

/// Records what a successful evaluation saw: the keys that matched (for
/// resolution), acknowledgement reset for keys whose condition is false
/// (Watcher's rule), and keys that resolved: they fired, and went
/// unmatched for `resolve_after`. A partial response resolves nothing.
/// Keys with nothing left to remember are forgotten.
pub(super) fn observe(
    state: &dyn StateBackend,
    rule: &Alert,
    eval: &Evaluated,
    tick: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<Resolved> {
    let matched: std::collections::BTreeSet<&str> = if eval.matched {
        eval.keys.iter().map(String::as_str).collect()
    } else {
        Default::default()
    };
    let resolve_after = rule.policy.resolve_after(rule.period(tick));
    let may_resolve = eval.partial.is_none();
    state
        .update_rule(&rule.name, |st| {
            if let Some(m) = &eval.memory {
                st.memory = Some(Box::new(m.clone()));
            }
            let mut resolved = Vec::new();
            for k in &matched {
                st.keys.entry((*k).to_owned()).or_default().last_seen = Some(tick);
            }
            for (key, k) in st.keys.iter_mut() {
                if matched.contains(key.as_str()) {
                    continue;
                }
                for a in k.ack.values_mut() {
                    *a = AckState::AwaitsSuccessfulExecution;
                }
                let quiet = k
                    .last_seen
                    .is_none_or(|seen| tick.signed_duration_since(seen) >= resolve_after);
                if may_resolve && quiet && k.firing_since.is_some() {
                    k.firing_since = None;
                    k.period_secs = None;
                    resolved.push(Resolved {
                        key: key.clone(),
                        last_seen: k.last_seen,
                        subject: k.last_subject.take(),
                    });
                }
            }
            st.keys
                .retain(|key, k| matched.contains(key.as_str()) || !k.idle(now));
            resolved
        })
        .unwrap_or_default()
}

/// What the gate let through.
#[derive(Debug, Clone, Default)]
pub(super) struct Decided {
    /// Actions to deliver now.
    pub to_send: Vec<PlannedAction>,
    /// One line per action for rules that log them.
    pub lines: Vec<ActionLine>,
    /// The earliest end of a throttle that held an action back.
    pub throttled_until: Option<DateTime<Utc>>,
    /// Some action was held back by an acknowledgement.
    pub acked: bool,
    /// Some action was folded into a delivery still owed.
    pub folded: bool,
    /// The silence that held an action back, if one did.
    pub silenced: Option<crate::silence::Silence>,
    /// Per group key, in order: what became of it (`fired` when some
    /// action of it goes out) and why.
    pub keys: Vec<KeyFate>,
}

/// What became of one group key in a run.
#[derive(Debug, Clone)]
pub(super) struct KeyFate {
    pub key: String,
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub silence: Option<crate::silence::Silence>,
}

impl Decided {
    fn key(&mut self, key: &str, outcome: &'static str, reason: Option<&String>) {
        let silence = (outcome == "silenced")
            .then(|| self.silenced.clone())
            .flatten();
        match self.keys.iter_mut().find(|k| k.key == key) {
            Some(e) if outcome == "fired" => {
                e.outcome = outcome;
                e.reason = None;
                e.silence = None;
            }
            Some(_) => {}
            None => self.keys.push(KeyFate {
                key: key.to_owned(),
                outcome,
                reason: reason.cloned(),
                silence,
            }),
        }
    }
}

/// What the gate lets through of an evaluation, given the rule's state.
pub(super) fn decide(
    st: &AlertState,
    rule: &Alert,
    eval: &Evaluated,
    owed_before: &Owed,
    silences: &[crate::silence::Silence],
    now: DateTime<Utc>,
) -> Decided {
    let mut out = Decided::default();
    for a in &eval.actions {
        let (outcome, reason): (&'static str, Option<String>) = match &a.plan {
            Plan::ConditionFailed => ("condition_failed", None),
            Plan::Suppressed(s) => {
                if *s == "throttled" {
                    let until = st.scope_throttle(&a.key, &a.scope);
                    out.throttled_until = min_time(out.throttled_until, until);
                } else {
                    out.acked = true;
                }
                (s, None)
            }
            Plan::Send(msgs) => {
                if let Some(si) = silences
                    .iter()
                    .find(|si| si.covers(&rule.name, &a.key, now))
                {
                    // Not delivered and no throttle started: when the
                    // silence ends, a match still there is delivered.
                    out.silenced = Some(si.clone());
                    (
                        "silenced",
                        Some(format!(
                            "silence {} until {}",
                            si.id,
                            crate::render::fmt_time(&si.until)
                        )),
                    )
                } else if a.ackable && st.ack(&a.key, &a.id) == AckState::Acked {
                    out.acked = true;
                    ("acked", None)
                } else if !a.throttle.is_zero()
                    && owed_before.contains(&(a.key.clone(), a.scope.clone()))
                {
                    out.folded = true;
                    (
                        "pending",
                        Some("an earlier notification is still being delivered".into()),
                    )
                } else if let Some(until) = st.throttled(&a.key, &a.scope, now) {
                    out.throttled_until = min_time(out.throttled_until, Some(until));
                    (
                        "throttled",
                        Some(format!(
                            "throttle_period {}",
                            humantime::format_duration(a.throttle)
                        )),
                    )
                } else if !msgs.is_empty() {
                    out.to_send.push(a.clone());
                    ("fired", None)
                } else {
                    continue;
                }
            }
        };
        out.key(&a.key, outcome, reason.as_ref());
        // Delivered actions get their line once their result is known.
        if outcome != "fired" {
            out.lines.push(ActionLine {
                id: a.id.clone(),
                outcome,
                reason,
            });
        }
    }
    out
}

fn min_time(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
