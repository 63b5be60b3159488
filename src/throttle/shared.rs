//! The store shared by concurrent runs, with group commit.
//!
//! Writing the whole file on every change would cost one fsync per change
//! and serialize all runs behind the disk. Instead, changes are applied in
//! memory under a short lock, and a background flusher writes the latest
//! state whenever asked; everything changed while one write is in progress
//! goes out in the next. [`SharedStore::commit`] waits until a write that
//! includes the caller's changes is on disk, which is what the outbox needs
//! before a delivery starts.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{Notify, watch};

use super::{Store, StoreError, StoreFile};

/// The shared store.
#[derive(Debug)]
pub struct SharedStore {
    store: Mutex<Store>,
    /// Bumped on every change.
    changes: AtomicU64,
    kick: Arc<Notify>,
    /// The change count covered by the last write, and that write's error.
    flushed: watch::Sender<(u64, Option<String>)>,
    /// Serializes writers (flusher and [`flush_now`](Self::flush_now)).
    writing: tokio::sync::Mutex<()>,
}

impl SharedStore {
    /// Wraps an open store and starts its flusher. Needs a tokio runtime.
    pub fn new(store: Store) -> Arc<SharedStore> {
        let kick = Arc::new(Notify::new());
        let shared = Arc::new(SharedStore {
            store: Mutex::new(store),
            changes: AtomicU64::new(0),
            kick: kick.clone(),
            flushed: watch::channel((0, None)).0,
            writing: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(flusher(weak, kick));
        shared
    }

    /// Reads the state.
    pub fn read<R>(&self, f: impl FnOnce(&StoreFile) -> R) -> R {
        f(&self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .data)
    }

    /// Changes the state in memory; it reaches the disk with the next
    /// [`commit`](Self::commit) or within a second.
    pub fn update<R>(&self, f: impl FnOnce(&mut StoreFile) -> R) -> R {
        let r = f(&mut self
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .data);
        // No kick: bookkeeping rides along with the next commit, or the
        // periodic flush, so a busy tick doesn't rewrite the file per run.
        self.changes.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Waits until every change made so far is on disk.
    pub async fn commit(&self) -> Result<(), StoreError> {
        let target = self.changes.load(Ordering::Acquire);
        let mut rx = self.flushed.subscribe();
        self.kick.notify_one();
        let state = rx
            .wait_for(|(done, _)| *done >= target)
            .await
            .map(|s| s.clone())
            .map_err(|_| self.error("the store's writer stopped".into()))?;
        match state.1 {
            Some(e) => Err(self.error(e)),
            None => Ok(()),
        }
    }

    fn error(&self, msg: String) -> StoreError {
        StoreError::Io {
            path: self.path(),
            action: "cannot write",
            source: std::io::Error::other(msg),
        }
    }

    /// The store's path.
    pub fn path(&self) -> PathBuf {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .path()
            .to_owned()
    }

    /// Whether the last write failed (it is retried every second).
    pub fn write_failing(&self) -> bool {
        self.flushed.borrow().1.is_some()
    }

    /// Writes now if anything changed (shutdown).
    pub async fn flush_now(&self) -> Result<(), StoreError> {
        self.write().await;
        match &self.flushed.borrow().1 {
            Some(e) => Err(self.error(e.clone())),
            None => Ok(()),
        }
    }

    async fn write(&self) {
        let _w = self.writing.lock().await;
        let target = self.changes.load(Ordering::Acquire);
        if self.flushed.borrow().0 >= target && self.flushed.borrow().1.is_none() {
            return;
        }
        let (writer, bytes) = {
            let s = self
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (s.writer(), s.snapshot())
        };
        let result = tokio::task::spawn_blocking(move || writer.write(&bytes))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        // Said when writes start failing and when they work again, not at
        // every retry (each second).
        let was_failing = self.flushed.borrow().1.is_some();
        match &result {
            Err(e) if !was_failing => {
                tracing::error!(event = "store_write_failed", error = %e, "nothing is delivered until the store can be written; retrying every second")
            }
            Ok(()) if was_failing => tracing::warn!(event = "store_write_recovered"),
            _ => {}
        }
        self.flushed.send_replace((target, result.err()));
    }
}

/// How often changes nobody committed are written anyway.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

async fn flusher(weak: Weak<SharedStore>, kick: Arc<Notify>) {
    loop {
        tokio::select! {
            _ = kick.notified() => {}
            _ = tokio::time::sleep(FLUSH_EVERY) => {}
        }
        let Some(shared) = weak.upgrade() else { return };
        shared.write().await;
    }
}

impl Drop for SharedStore {
    fn drop(&mut self) {
        // Last chance for changes nobody committed (a no-match run's
        // bookkeeping, say); the flusher is gone with us.
        let target = self.changes.load(Ordering::Acquire);
        if self.flushed.borrow().0 < target {
            let s = self
                .store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = s.writer().write(&s.snapshot());
        }
        self.kick.notify_one();
    }
}
