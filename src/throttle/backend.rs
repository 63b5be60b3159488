//! What the pipeline asks of the place its state lives: per-rule reads and
//! read-modify-writes, and a commit that makes them durable. The file
//! backend ([`SharedStore`]) is one implementation; another (a shared index
//! on the cluster, say) implements the same operations, with `update` as
//! its compare-and-set.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{AlertState, ClusterDown, SharedStore, StoreError, StoreFile};

/// A state backend.
pub trait StateBackend: Send + Sync {
    /// Lets `f` look at one rule's state, in place: the pipeline reads state
    /// several times a run, and a copy would include the whole outbox.
    fn read(&self, rule: &str, f: &mut dyn FnMut(Option<&AlertState>));
    /// A copy of one rule's state.
    fn get(&self, rule: &str) -> Option<AlertState> {
        let mut out = None;
        self.read(rule, &mut |st| out = st.cloned());
        out
    }
    /// Changes one rule's state (created empty if missing). Durable at the
    /// next [`commit`](Self::commit).
    fn update(&self, rule: &str, f: &mut dyn FnMut(&mut AlertState));
    /// Changes what a notice last said about the cluster.
    fn update_cluster(&self, f: &mut dyn FnMut(&mut Option<ClusterDown>));
    /// Keeps the rules `keep` says to keep (it may change them).
    fn retain(&self, keep: &mut dyn FnMut(&str, &mut AlertState) -> bool);
    /// Waits until every change so far is durable.
    fn commit(&self) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Deliveries owed since before `now - after`.
    fn stuck_deliveries(&self, now: DateTime<Utc>, after: chrono::Duration) -> usize;
    /// Where requests for a running daemon are queued (`esalert ack`).
    fn location(&self) -> PathBuf;
    /// Asked right before a delivery is sent: whether it may be. Shared
    /// state answers with its delivery fence; a backend only one process
    /// uses lets everything through.
    fn fence<'a>(&'a self, fire: &'a FireId) -> BoxFuture<'a, Fence> {
        let _ = fire;
        Box::pin(async { Fence::Go })
    }
    /// Told the result of a delivery [`fence`](Self::fence) let through.
    fn fired<'a>(&'a self, fire: &'a FireId, delivered: bool) -> BoxFuture<'a, ()> {
        let _ = (fire, delivered);
        Box::pin(async {})
    }
}

/// One delivery of one match, as the delivery fence names it.
#[derive(Debug, Clone)]
pub struct FireId {
    /// The rule.
    pub rule: String,
    /// The group key.
    pub key: String,
    /// The tick that matched (the end of its window).
    pub matched_at: DateTime<Utc>,
    /// The delivery id.
    pub delivery: String,
}

/// Whether a delivery may be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// Send it.
    Go,
    /// It was sent already (by an earlier owner): record it as sent.
    Sent,
    /// Not now (this process does not own the rule, or shared state is
    /// unreachable): it stays owed.
    Hold(String),
    /// Never (`at_most_once`, and an earlier owner may have sent it).
    Drop(String),
}

impl dyn StateBackend + '_ {
    /// Reads one rule's state in place (as `None` if the backend never
    /// called back).
    pub fn read_rule<R>(&self, rule: &str, mut f: impl FnMut(Option<&AlertState>) -> R) -> R {
        let mut out = None;
        self.read(rule, &mut |st| out = Some(f(st)));
        out.unwrap_or_else(|| f(None))
    }

    /// Changes one rule's state and returns what `f` returns (`None` only
    /// from a backend that broke its contract and never called `f`).
    pub fn update_rule<R>(&self, rule: &str, f: impl FnOnce(&mut AlertState) -> R) -> Option<R> {
        let mut f = Some(f);
        let mut out = None;
        self.update(rule, &mut |st| {
            if let Some(f) = f.take() {
                out = Some(f(st));
            }
        });
        out
    }
}

/// Deliveries of `data` owed since before `now - after` (shared by the
/// backends that hold a whole [`StoreFile`]).
pub(super) fn stuck_in(data: &StoreFile, now: DateTime<Utc>, after: chrono::Duration) -> usize {
    data.alerts
        .values()
        .flat_map(|st| &st.outbox)
        .filter(|m| now.signed_duration_since(m.matched_at) > after)
        .flat_map(|m| m.deliveries.values())
        .filter(|x| x.status == super::DeliveryStatus::Pending)
        .count()
}

impl StateBackend for SharedStore {
    fn read(&self, rule: &str, f: &mut dyn FnMut(Option<&AlertState>)) {
        SharedStore::read(self, |d| f(d.alerts.get(rule)));
    }

    fn update(&self, rule: &str, f: &mut dyn FnMut(&mut AlertState)) {
        SharedStore::update(self, |d| f(d.alerts.entry(rule.to_owned()).or_default()));
    }

    fn update_cluster(&self, f: &mut dyn FnMut(&mut Option<ClusterDown>)) {
        SharedStore::update(self, |d| f(&mut d.cluster_notified));
    }

    fn retain(&self, keep: &mut dyn FnMut(&str, &mut AlertState) -> bool) {
        SharedStore::update(self, |d| d.alerts.retain(|name, st| keep(name, st)));
    }

    fn commit(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(SharedStore::commit(self))
    }

    fn stuck_deliveries(&self, now: DateTime<Utc>, after: chrono::Duration) -> usize {
        self.read(|d| stuck_in(d, now, after))
    }

    fn location(&self) -> PathBuf {
        self.path()
    }
}
