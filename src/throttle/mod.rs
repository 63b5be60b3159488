//! The throttle store, `throttle_period.json`: per-alert run history,
//! throttling, and the outbox of deliveries still owed.
//!
//! The store is what makes restarts safe: a match's rendered notification is
//! written here *before* any delivery is attempted, each medium's result is
//! recorded as it arrives, and `throttled_until` survives restarts.

mod backend;
mod memory;
mod migrate;
mod shared;
mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use backend::{Fence, FireId, StateBackend};
pub use memory::MemoryState;
pub use migrate::migrate;
pub use shared::SharedStore;
pub use store::{Store, StoreError, StoreWriter, write_atomic};

use crate::sinks::Message;

/// The current store format version. Version 1 (esalert ≤ 0.1, one
/// notification per alert) is migrated on open; see [`migrate`].
pub const VERSION: u32 = 2;

/// How long the entry of an alert whose file was deleted is kept.
pub const PRUNE_AFTER: chrono::Duration = chrono::Duration::days(7);

/// Owed matches kept per group key in the outbox; beyond this (or
/// [`OUTBOX_MAX_RULE`] for the rule) the oldest owed ones are dropped (and logged), so a long outage can't grow the store forever.
pub const OUTBOX_MAX: usize = 50;

/// A delivery owed for longer than this counts as stuck (`/healthz`).
pub const STUCK_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The group key of rules that don't group: one key for the whole rule.
pub const WHOLE_RULE: &str = "";

/// Owed matches kept per rule, all keys together.
pub const OUTBOX_MAX_RULE: usize = 1000;

/// The throttle scope shared by all of a rule's actions (native alerts
/// throttle as a whole; Watcher actions each have their own scope).
pub const RULE_SCOPE: &str = "";

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// Format version; see [`VERSION`].
    pub version: u32,
    /// Per-rule state, by rule name.
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    /// Set once a notice said the cluster is unreachable or rejects
    /// esalert's credentials, until a search succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_notified: Option<ClusterDown>,
}

/// What is wrong with the cluster, as a notice said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterDown {
    /// Connections fail.
    Unreachable,
    /// Authentication or authorization fails (401/403).
    Rejected,
}

impl ClusterDown {
    /// As in "cluster X is unreachable".
    pub fn describe(self) -> &'static str {
        match self {
            ClusterDown::Unreachable => "is unreachable",
            ClusterDown::Rejected => "rejects esalert's credentials",
        }
    }

    /// As in "cluster X is reachable again".
    pub fn recovered(self) -> &'static str {
        match self {
            ClusterDown::Unreachable => "reachable",
            ClusterDown::Rejected => "accepting esalert's credentials",
        }
    }
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            version: VERSION,
            alerts: BTreeMap::new(),
            cluster_notified: None,
        }
    }
}

/// What esalert remembers about one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertState {
    /// When it last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<DateTime<Utc>>,
    /// The outcome of that run (`fired`, `no_match`, `throttled`, `error`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_outcome: Option<String>,
    /// When a notification was last fully delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<DateTime<Utc>>,
    /// The end of the last window searched successfully; the next search
    /// starts here, so no time goes unsearched across outages and restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window_end: Option<DateTime<Utc>>,
    /// Runs that failed in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// Set once "alert is failing" was sent, until the alert recovers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failing_notified: bool,
    /// Throttle and acknowledgement per group key ([`WHOLE_RULE`] until a
    /// rule groups its matches).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub keys: BTreeMap<String, KeyState>,
    /// The outbox: matches with deliveries still owed, and the newest match
    /// once delivered, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Match>,
    /// When the rule's file was found missing; the entry is pruned
    /// [`PRUNE_AFTER`] later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime<Utc>>,
    /// What the rule's body remembers between runs (stateful rule types).
    /// Boxed, as `digest`: most rules have neither, and the store holds
    /// one entry per rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Box<serde_json::Value>>,
    /// What the open digest gathered (`digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Box<crate::pipeline::digest::DigestState>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Throttle and acknowledgement of one group key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyState {
    /// Per throttle scope ([`RULE_SCOPE`], or a Watcher action's id):
    /// matches before this time are not delivered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttled_until: BTreeMap<String, DateTime<Utc>>,
    /// Watcher acknowledgement per action.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ack: BTreeMap<String, AckState>,
    /// The last tick at which the key matched (throttled or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<DateTime<Utc>>,
    /// Set when a notification of the key was delivered, until the key
    /// resolves: what a resolved notice is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firing_since: Option<DateTime<Utc>>,
    /// The throttle period last applied, in seconds (`throttle_backoff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_secs: Option<u64>,
    /// The subject last delivered, for the resolved notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_subject: Option<String>,
}

impl KeyState {
    /// Whether the key holds nothing worth keeping at `now`: no open
    /// incident, no throttle running, no acknowledgement.
    pub fn idle(&self, now: DateTime<Utc>) -> bool {
        self.firing_since.is_none()
            && self.throttled_until.values().all(|u| *u <= now)
            && self
                .ack
                .values()
                .all(|a| *a == AckState::AwaitsSuccessfulExecution)
    }
}

impl AlertState {
    /// The whole-rule throttle: matches before this time are not delivered.
    pub fn throttled_until(&self) -> Option<DateTime<Utc>> {
        self.scope_throttle(WHOLE_RULE, RULE_SCOPE)
    }

    /// The throttle of one scope of one group key.
    pub fn scope_throttle(&self, key: &str, scope: &str) -> Option<DateTime<Utc>> {
        self.keys
            .get(key)
            .and_then(|k| k.throttled_until.get(scope))
            .copied()
    }

    /// Whether a match of `scope` now would be suppressed, and until when.
    pub fn throttled(&self, key: &str, scope: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.scope_throttle(key, scope).filter(|until| now < *until)
    }

    /// The acknowledgement state of a Watcher action.
    pub fn ack(&self, key: &str, action: &str) -> AckState {
        self.keys
            .get(key)
            .and_then(|k| k.ack.get(action))
            .copied()
            .unwrap_or_default()
    }

    /// The newest match in the outbox.
    pub fn last_match(&self) -> Option<&Match> {
        self.outbox.last()
    }

    /// The (key, scope) pairs with a delivery still owed.
    pub fn owed(&self) -> std::collections::BTreeSet<(String, String)> {
        self.outbox
            .iter()
            .flat_map(|m| m.deliveries.values().map(move |d| (m, d)))
            .filter(|(_, d)| d.status == DeliveryStatus::Pending)
            .map(|(m, d)| (m.key.clone(), d.scope.clone()))
            .collect()
    }

    /// Whether any delivery is still owed.
    pub fn pending(&self) -> bool {
        self.outbox.iter().any(|m| !m.settled())
    }
}

/// One match and where each of its deliveries stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Numbers the rule's matches, so a run finds its own.
    #[serde(default)]
    pub seq: u64,
    /// The scheduled tick whose run matched; throttles count from here.
    pub matched_at: DateTime<Utc>,
    /// The group key.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Set for a notice of the pipeline's making (`resolved`, `digest`,
    /// `more`): it starts no throttle and opens no incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Deliveries by id: the action (`slack`, `email`, a Watcher action id),
    /// with `/n` appended for each further message of the same action.
    pub deliveries: BTreeMap<String, Delivery>,
}

impl Match {
    /// Whether no delivery is still owed.
    pub fn settled(&self) -> bool {
        self.deliveries
            .values()
            .all(|d| d.status != DeliveryStatus::Pending)
    }

    /// Ids of deliveries still owed.
    pub fn owed(&self) -> Vec<String> {
        self.deliveries
            .iter()
            .filter(|(_, d)| d.status == DeliveryStatus::Pending)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet (never tried, in flight at a crash, or failed).
    Pending,
    /// Delivered.
    Sent,
    /// Given up: the match grew older than `max_retry_age`.
    Dropped,
}

/// One delivery of a match: what to send, and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The action it belongs to.
    pub action: String,
    /// The throttle scope it counts toward.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// The scope's throttle period, in seconds, applied once all of the
    /// scope's deliveries in this match succeeded.
    #[serde(default)]
    pub throttle_secs: u64,
    /// Whether success makes the action ackable (Watcher).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ackable: bool,
    /// What to send.
    pub message: Message,
    /// Its place among the match's deliveries, for logs.
    #[serde(default)]
    pub order: u32,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// The last error, if the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
}

/// Watcher's acknowledgement state of an action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    /// Not executed successfully since the condition was last false.
    #[default]
    AwaitsSuccessfulExecution,
    /// Executed; may be acknowledged.
    Ackable,
    /// Acknowledged: not executed until the condition is false again.
    Acked,
}
