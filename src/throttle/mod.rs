//! The throttle store, `throttle_period.json`: per-alert run history,
//! throttling, and the outbox of deliveries still owed.
//!
//! The store is what makes restarts safe: a match's rendered notification is
//! written here *before* any delivery is attempted, each medium's result is
//! recorded as it arrives, and `throttled_until` survives restarts.

mod shared;
mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use shared::SharedStore;
pub use store::{Store, StoreError, StoreWriter, write_atomic};

use crate::alert::Medium;
use crate::notify::Notification;

/// The current store format version.
pub const VERSION: u32 = 1;

/// How long the entry of an alert whose file was deleted is kept.
pub const PRUNE_AFTER: chrono::Duration = chrono::Duration::days(7);

/// The file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// Format version; see [`VERSION`].
    pub version: u32,
    /// Per-alert state, by alert name.
    #[serde(default)]
    pub alerts: BTreeMap<String, AlertState>,
    /// Set once "cluster unreachable" was sent, until a search succeeds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster_down_notified: bool,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            version: VERSION,
            alerts: BTreeMap::new(),
            cluster_down_notified: false,
        }
    }
}

/// What esalert remembers about one alert.
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
    /// Matches before this time are not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled_until: Option<DateTime<Utc>>,
    /// The last match and its delivery state per medium (the outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_match: Option<Match>,
    /// The end of the last window searched successfully; the next search
    /// starts here, so no time goes unsearched across outages and restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_window_end: Option<DateTime<Utc>>,
    /// Runs that failed in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub consecutive_failures: u32,
    /// When an authentication error was last logged; logged at most hourly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_error_logged: Option<DateTime<Utc>>,
    /// Set once "alert is failing" was sent, until the alert recovers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failing_notified: bool,
    /// Per-action state of a Watcher watch: throttling and acknowledgement.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, ActionState>,
    /// When the alert's file was found missing; the entry is pruned
    /// [`PRUNE_AFTER`] later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime<Utc>>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AlertState {
    /// Whether a match now would be suppressed, and until when.
    pub fn throttled(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.throttled_until.filter(|until| now < *until)
    }

    /// The last match, if some medium still owes a delivery.
    pub fn pending(&self) -> Option<&Match> {
        self.last_match.as_ref().filter(|m| !m.settled())
    }
}

/// One match and where its notification has been delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// When the condition matched.
    pub matched_at: DateTime<Utc>,
    /// The throttle period to apply once every medium succeeded, in seconds.
    pub throttle_secs: u64,
    /// What to deliver.
    pub notification: Notification,
    /// Delivery state per medium.
    pub deliveries: BTreeMap<Medium, Delivery>,
}

impl Match {
    /// Whether no medium is still owed a delivery.
    pub fn settled(&self) -> bool {
        self.deliveries
            .values()
            .all(|d| d.status != DeliveryStatus::Pending)
    }

    /// Media that still need a delivery.
    pub fn owed(&self) -> Vec<Medium> {
        self.deliveries
            .iter()
            .filter(|(_, d)| d.status == DeliveryStatus::Pending)
            .map(|(m, _)| *m)
            .collect()
    }
}

/// Where one medium's delivery stands.
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

/// One medium's delivery of a match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
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

impl Delivery {
    /// A delivery not yet attempted.
    pub fn pending() -> Self {
        Delivery {
            status: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            sent_at: None,
        }
    }
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

/// One Watcher action's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionState {
    /// Acknowledgement.
    #[serde(default)]
    pub ack: AckState,
    /// When it last ran successfully; its throttle counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_executed: Option<DateTime<Utc>>,
}
