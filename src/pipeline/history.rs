//! The history stage: what a run came to, in one vocabulary, and its lines
//! in alerts.log.

use super::RunReport;
use super::gate::Decided;
use super::outbox::Delivered;
use super::outcome::{ActionLine, Outcome};
use crate::render::fmt_time;
use crate::rule::Evaluated;

/// The outcome of a run that matched.
pub(super) fn outcome(
    fired: Option<&Delivered>,
    decided: &Decided,
    still_owed: Option<&Delivered>,
) -> Outcome {
    if let Some(f) = fired {
        return f.outcome.clone();
    }
    if decided.folded {
        // Still being delivered as the earlier match.
        return still_owed.map_or(Outcome::Partial, |d| d.outcome.clone());
    }
    if let Some(si) = &decided.silenced {
        return Outcome::Silenced {
            id: si.id.clone(),
            until: si.until,
        };
    }
    if let Some(until) = decided.throttled_until {
        return Outcome::Throttled(until);
    }
    if decided.acked {
        return Outcome::Acked;
    }
    Outcome::NoAction
}

/// Adds the delivered actions' results to the per-action lines.
pub(super) fn action_results(lines: &mut Vec<ActionLine>, f: &Delivered) {
    for (id, result) in &f.by_action {
        lines.push(ActionLine {
            id: id.clone(),
            outcome: if result.is_ok() { "success" } else { "failure" },
            reason: result.clone().err(),
        });
    }
}

pub(super) fn evaluation_warnings(name: &str, eval: &Evaluated) {
    if let Some(p) = &eval.partial {
        tracing::warn!(alert = name, event = "partial_result", reason = %p);
    }
    if let Some(p) = &eval.missing {
        tracing::warn!(alert = name, event = "missing_path", path = %p, "condition path not in response; compare is false");
    }
}

/// The run's line, and a redelivery's when one happened on a run that
/// didn't fold it into its own outcome.
pub(super) fn log_run(r: &RunReport, retried: Option<&Delivered>, folded: bool) {
    log_report(r);
    if !folded && let Some(d) = retried {
        log_retry(&r.alert, d);
    }
}

pub(super) fn log_actions(name: &str, lines: &[ActionLine]) {
    for l in lines {
        match (&l.reason, l.outcome) {
            (Some(r), "failure") => {
                tracing::error!(alert = name, action = l.id.as_str(), outcome = l.outcome, reason = %r)
            }
            (Some(r), _) => {
                tracing::info!(alert = name, action = l.id.as_str(), outcome = l.outcome, reason = %r)
            }
            (None, _) => tracing::info!(alert = name, action = l.id.as_str(), outcome = l.outcome),
        }
    }
}

fn log_report(r: &RunReport) {
    let name = r.alert.as_str();
    let (hits, took_ms) = r
        .evaluation
        .as_ref()
        .map(|e| (e.hits, e.took_ms))
        .unwrap_or_default();
    // The window searched, so a run's line says which time range it was.
    let (window_start, window_end) = r
        .window
        .as_ref()
        .map(|w| (fmt_time(&w.start), fmt_time(&w.end)))
        .unwrap_or_default();
    let (window_start, window_end) = (window_start.as_str(), window_end.as_str());
    // Only on runs whose count a folded search gave (absent otherwise).
    let folded = r.folded.then_some(true);
    let errors = || {
        r.delivery_errors
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    match &r.outcome {
        // Logged with the failure count by the health stage.
        Outcome::Error | Outcome::Dropped => {}
        Outcome::NoMatch | Outcome::Acked | Outcome::NoAction | Outcome::Queued => {
            tracing::info!(
                alert = name,
                outcome = r.outcome.as_str(),
                hits,
                took_ms,
                window_start,
                window_end,
                folded
            )
        }
        Outcome::Fired(ids) => {
            tracing::info!(
                alert = name,
                outcome = "fired",
                media = ids.join(","),
                hits,
                took_ms,
                window_start,
                window_end,
                folded
            )
        }
        Outcome::Throttled(until) => {
            tracing::info!(alert = name, outcome = "throttled", until = %fmt_time(until), hits, took_ms, window_start, window_end, folded)
        }
        Outcome::Silenced { id, until } => {
            tracing::info!(alert = name, outcome = "silenced", silence = id.as_str(), until = %fmt_time(until), hits, took_ms, window_start, window_end, folded)
        }
        Outcome::Failed => {
            tracing::error!(
                alert = name,
                outcome = "failed",
                hits,
                took_ms,
                window_start,
                window_end,
                folded,
                errors = errors()
            )
        }
        Outcome::Partial => {
            tracing::warn!(
                alert = name,
                outcome = "partial",
                hits,
                took_ms,
                window_start,
                window_end,
                folded,
                errors = errors()
            )
        }
    }
}

/// One line per group key of a grouped rule: which entity fired, which
/// was throttled or silenced, and why.
pub(super) fn log_keys(name: &str, decided: &Decided, run: &Outcome) {
    for k in &decided.keys {
        let key = k.key.as_str();
        // A key handed to the outbox shares the run's delivery outcome.
        let outcome = match (k.outcome, run) {
            ("fired", Outcome::Fired(_)) => "fired",
            ("fired", other) => other.as_str(),
            (o, _) => o,
        };
        match (&k.silence, &k.reason) {
            (Some(si), _) => {
                tracing::info!(alert = name, key, outcome, silence = si.id.as_str(), until = %fmt_time(&si.until))
            }
            (None, Some(r)) => tracing::info!(alert = name, key, outcome, reason = r.as_str()),
            (None, None) => tracing::info!(alert = name, key, outcome),
        }
    }
}

fn log_retry(name: &str, d: &Delivered) {
    match &d.outcome {
        Outcome::Fired(ids) => {
            tracing::info!(
                alert = name,
                event = "redelivered",
                outcome = "fired",
                media = ids.join(",")
            )
        }
        Outcome::Dropped => {}
        other => {
            let errors = d.errors.values().cloned().collect::<Vec<_>>().join("; ");
            tracing::warn!(
                alert = name,
                event = "redelivered",
                outcome = other.as_str(),
                errors = errors
            )
        }
    }
}
