//! The vocabulary of results: what a run came to, and what each action did.

use chrono::{DateTime, Utc};

/// What one run of one rule came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The condition did not match.
    NoMatch,
    /// Delivered by every action that was due (their ids).
    Fired(Vec<String>),
    /// Matched, but throttled until the given time.
    Throttled(DateTime<Utc>),
    /// Matched, but every due action was acknowledged.
    Acked,
    /// Matched, but a silence held the notification back.
    Silenced {
        /// The silence's id.
        id: String,
        /// When it ends.
        until: DateTime<Utc>,
    },
    /// Matched, but no action had anything to send (their own conditions).
    NoAction,
    /// Every owed delivery failed; the next run delivers again.
    Failed,
    /// Some deliveries succeeded and some failed; the failed ones are retried.
    Partial,
    /// Written to the outbox; an earlier delivery of the rule was still
    /// going, so the next run delivers it.
    Queued,
    /// Given up: the match grew older than `max_retry_age`.
    Dropped,
    /// The evaluation failed.
    Error,
}

impl Outcome {
    /// The outcome's name in alerts.log and the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::NoMatch => "no_match",
            Outcome::Fired(_) => "fired",
            Outcome::Throttled(_) => "throttled",
            Outcome::Acked => "acked",
            Outcome::Silenced { .. } => "silenced",
            Outcome::NoAction => "no_action",
            Outcome::Failed => "failed",
            Outcome::Partial => "partial",
            Outcome::Queued => "queued",
            Outcome::Dropped => "dropped",
            Outcome::Error => "error",
        }
    }
}

/// One action's result, for rules that log one line per action.
#[derive(Debug, Clone)]
pub(super) struct ActionLine {
    pub id: String,
    /// `success`, `failure`, `throttled`, `acked`, `condition_failed`, `pending`.
    pub outcome: &'static str,
    pub reason: Option<String>,
}
