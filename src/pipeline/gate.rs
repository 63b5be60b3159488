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

/// Scopes with a delivery owed when the run started: a match is folded
/// into the earlier one even if this run's retry just delivered it.
pub(super) fn owed_scopes(
    state: &dyn StateBackend,
    rule: &Alert,
) -> std::collections::BTreeSet<String> {
    state.read_rule(&rule.name, |st| {
        st.map(|st| st.owed_scopes(WHOLE_RULE)).unwrap_or_default()
    })
}

/// Scopes that won't deliver this run, known before evaluation so that
/// the front end can skip their work.
pub(super) struct Suppressed(BTreeMap<String, &'static str>);

impl Suppressed {
    pub(super) fn snapshot(state: &dyn StateBackend, rule: &Alert, now: DateTime<Utc>) -> Self {
        state.read_rule(&rule.name, |st| Self::of(st, now))
    }

    pub(super) fn of(state: Option<&AlertState>, now: DateTime<Utc>) -> Self {
        let mut m = BTreeMap::new();
        if let Some(k) = state.and_then(|s| s.keys.get(WHOLE_RULE)) {
            for (scope, until) in &k.throttled_until {
                if now < *until {
                    m.insert(scope.clone(), "throttled");
                }
            }
            for (action, ack) in &k.ack {
                if *ack == AckState::Acked {
                    m.insert(action.clone(), "acked");
                }
            }
        }
        Suppressed(m)
    }

    pub(super) fn get(&self, scope: &str) -> Option<&'static str> {
        self.0.get(scope).copied()
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

/// A false condition resets acknowledgement (Watcher's rule).
pub(super) fn condition_false(state: &dyn StateBackend, rule: &Alert) {
    state.update_rule(&rule.name, |st| {
        if let Some(k) = st.keys.get_mut(WHOLE_RULE) {
            for a in k.ack.values_mut() {
                *a = AckState::AwaitsSuccessfulExecution;
            }
        }
    });
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
}

/// What the gate lets through of an evaluation, given the rule's state.
pub(super) fn decide(
    st: &AlertState,
    rule: &Alert,
    eval: &Evaluated,
    owed_before: &std::collections::BTreeSet<String>,
    silences: &[crate::silence::Silence],
    now: DateTime<Utc>,
) -> Decided {
    let mut out = Decided::default();
    for a in &eval.actions {
        let mut line = |outcome: &'static str, reason: Option<String>| {
            out.lines.push(ActionLine {
                id: a.id.clone(),
                outcome,
                reason,
            })
        };
        match &a.plan {
            Plan::ConditionFailed => line("condition_failed", None),
            Plan::Suppressed(s) => {
                line(s, None);
                if *s == "throttled" {
                    let until = st.scope_throttle(WHOLE_RULE, &a.scope);
                    out.throttled_until = min_time(out.throttled_until, until);
                } else {
                    out.acked = true;
                }
            }
            Plan::Send(msgs) => {
                if let Some(si) = silences
                    .iter()
                    .find(|si| si.covers(&rule.name, WHOLE_RULE, now))
                {
                    // Not delivered and no throttle started: when the
                    // silence ends, a match still there is delivered.
                    line(
                        "silenced",
                        Some(format!(
                            "silence {} until {}",
                            si.id,
                            crate::render::fmt_time(&si.until)
                        )),
                    );
                    out.silenced.get_or_insert_with(|| si.clone());
                } else if a.ackable && st.ack(WHOLE_RULE, &a.id) == AckState::Acked {
                    line("acked", None);
                    out.acked = true;
                } else if !a.throttle.is_zero() && owed_before.contains(&a.scope) {
                    line(
                        "pending",
                        Some("an earlier notification is still being delivered".into()),
                    );
                    out.folded = true;
                } else if let Some(until) = st.throttled(WHOLE_RULE, &a.scope, now) {
                    line(
                        "throttled",
                        Some(format!(
                            "throttle_period {}",
                            humantime::format_duration(a.throttle)
                        )),
                    );
                    out.throttled_until = min_time(out.throttled_until, Some(until));
                } else if !msgs.is_empty() {
                    out.to_send.push(a.clone());
                }
            }
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
