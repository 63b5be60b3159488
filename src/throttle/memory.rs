//! A state backend that lives only in memory: `esalert test --since`
//! replays past windows through the real pipeline, whose throttles,
//! outbox and bookkeeping must never reach the real store.

use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{AlertState, ClusterDown, StateBackend, StoreError, StoreFile};

/// The state of a simulation: a [`StoreFile`] nobody writes to disk.
#[derive(Debug)]
pub struct MemoryState {
    data: Mutex<StoreFile>,
    location: PathBuf,
}

impl MemoryState {
    /// An empty state. Its [`location`](StateBackend::location) is a
    /// path in a directory that doesn't exist, so neither silences nor
    /// queued acknowledgements are ever read beside it (and ack requests,
    /// which a run consumes, are left for the daemon).
    pub fn new() -> MemoryState {
        let dir = std::env::temp_dir().join(format!(
            "esalert-memory-state-{}-does-not-exist",
            std::process::id()
        ));
        MemoryState {
            data: Mutex::new(StoreFile::default()),
            location: dir.join("state.json"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreFile> {
        self.data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryState {
    fn default() -> Self {
        Self::new()
    }
}

impl StateBackend for MemoryState {
    fn read(&self, rule: &str, f: &mut dyn FnMut(Option<&AlertState>)) {
        f(self.lock().alerts.get(rule));
    }

    fn update(&self, rule: &str, f: &mut dyn FnMut(&mut AlertState)) {
        f(self.lock().alerts.entry(rule.to_owned()).or_default());
    }

    fn update_cluster(&self, f: &mut dyn FnMut(&mut Option<ClusterDown>)) {
        f(&mut self.lock().cluster_notified);
    }

    fn retain(&self, keep: &mut dyn FnMut(&str, &mut AlertState) -> bool) {
        self.lock().alerts.retain(|name, st| keep(name, st));
    }

    fn commit(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        // Nothing to make durable.
        Box::pin(async { Ok(()) })
    }

    fn stuck_deliveries(&self, now: DateTime<Utc>, after: chrono::Duration) -> usize {
        super::backend::stuck_in(&self.lock(), now, after)
    }

    fn location(&self) -> PathBuf {
        self.location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_read_back_and_nothing_is_written() {
        let s = MemoryState::new();
        let b: &dyn StateBackend = &s;
        assert!(b.get("a").is_none());
        b.update_rule("a", |st| st.consecutive_failures = 2);
        assert_eq!(
            b.read_rule("a", |st| st.map(|s| s.consecutive_failures)),
            Some(2)
        );
        b.retain(&mut |name, _| name != "a");
        assert!(b.get("a").is_none());
        assert!(!b.location().parent().unwrap().exists());
        assert!(!crate::silence::path_for(&b.location()).exists());
    }
}
