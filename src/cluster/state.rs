//! The pipeline's state backend over `state:<rule>` documents: rules this
//! member holds live in memory; a commit writes every changed one back,
//! version-checked, with the holder's epoch, in one `_bulk`.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::docs::{Cond, Written};
use super::{Cluster, ids_state};
use crate::throttle::{AlertState, ClusterDown, StateBackend, StoreError};

impl Cluster {
    fn store_error(&self, msg: String) -> StoreError {
        StoreError::Io {
            path: PathBuf::from(&self.label),
            action: "cannot write shared state",
            source: std::io::Error::other(msg),
        }
    }

    /// Writes every changed rule held, in one `_bulk` (group commit: a
    /// caller whose changes a write already in progress or just done
    /// covered does not write again).
    ///
    /// A rule whose lease lapsed or moved is dropped here, not written: it
    /// is fenced, and nothing of it can be delivered once it is not held
    /// (reads find nothing, the fence holds), so it fails no one's commit.
    /// The commit fails only when the cluster did not take the write.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        let target = self.changes.load(Ordering::Acquire);
        let _w = self.writing.lock().await;
        {
            let done = self
                .flushed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if done.0 >= target && done.1.is_none() {
                return Ok(());
            }
        }
        let through = self.changes.load(Ordering::Acquire);
        let r = self.flush_now().await;
        *self
            .flushed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (through, r.as_ref().err().map(ToString::to_string));
        r
    }

    async fn flush_now(&self) -> Result<(), StoreError> {
        let broken = self.broken.load(Ordering::Relaxed);
        for _round in 0..3 {
            let now = self.mono.now();
            let (writes, marks) = {
                let mut g = self.lock();
                if std::mem::take(&mut g.orphaned) {
                    tracing::warn!(
                        event = "lease_lost_mid_run",
                        member = self.me.as_str(),
                        "an alert's lease was lost during its run; what the run decided is not sent (its new owner runs the window again)"
                    );
                }
                let lapsed: Vec<String> = g
                    .held
                    .iter()
                    .filter(|(_, h)| h.changes != h.flushed && now >= h.valid_until && !broken)
                    .map(|(r, _)| r.clone())
                    .collect();
                for rule in lapsed {
                    // Taken again from its document if nobody else took it.
                    g.held.remove(&rule);
                    tracing::warn!(
                        event = "lease_lapsed",
                        alert = rule.as_str(),
                        member = self.me.as_str(),
                        lease_s = self.timing.lease.as_secs_f64(),
                        "not renewed in time; its unwritten changes are dropped and nothing of them is sent"
                    );
                }
                let mut writes = Vec::new();
                let mut marks = Vec::new();
                for (rule, h) in &g.held {
                    if h.changes == h.flushed {
                        continue;
                    }
                    let cond = h.state_version.map_or(Cond::Create, Cond::Match);
                    writes.push((
                        ids_state(rule),
                        self.state_source(rule, h.epoch, &h.st),
                        cond,
                    ));
                    marks.push((rule.clone(), h.changes));
                }
                (writes, marks)
            };
            if writes.is_empty() {
                break;
            }
            let results = self
                .docs
                .put(&writes)
                .await
                .map_err(|e| self.store_error(e.to_string()))?;
            let mut conflicts = Vec::new();
            {
                let mut g = self.lock();
                for ((rule, changes), r) in marks.iter().zip(results) {
                    let Some(h) = g.held.get_mut(rule) else {
                        continue;
                    };
                    match r {
                        Written::Done(v) => {
                            h.state_version = Some(v);
                            h.flushed = *changes;
                        }
                        Written::Conflict => conflicts.push((rule.clone(), h.epoch)),
                    }
                }
            }
            if conflicts.is_empty() {
                break;
            }
            // A conflict is ours (a primary failover re-stamped the
            // document, or a write of ours timed out but was applied) when
            // the document still carries our epoch; else we were deposed.
            let ids: Vec<String> = conflicts.iter().map(|(r, _)| ids_state(r)).collect();
            let read = self
                .docs
                .mget(&ids)
                .await
                .map_err(|e| self.store_error(e.to_string()))?;
            let mut g = self.lock();
            for ((rule, epoch), doc) in conflicts.iter().zip(read) {
                let theirs = doc.as_ref().map(|d| {
                    (
                        d.source["owner"].as_str() == Some(self.me.as_str())
                            && d.source["epoch"].as_u64() == Some(*epoch),
                        d.version,
                    )
                });
                match theirs {
                    Some((mine, v)) if mine || broken => {
                        if let Some(h) = g.held.get_mut(rule) {
                            h.state_version = Some(v);
                        }
                    }
                    _ => {
                        g.held.remove(rule);
                        tracing::warn!(
                            event = "lease_lost",
                            alert = rule.as_str(),
                            member = self.me.as_str(),
                            reason = "its state was written by a newer owner"
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

impl StateBackend for Cluster {
    fn read(&self, rule: &str, f: &mut dyn FnMut(Option<&AlertState>)) {
        let g = self.lock();
        f(g.held.get(rule).map(|h| &h.st));
    }

    fn update(&self, rule: &str, f: &mut dyn FnMut(&mut AlertState)) {
        let mut g = self.lock();
        match g.held.get_mut(rule) {
            Some(h) => {
                f(&mut h.st);
                h.changes = h.changes.wrapping_add(1);
                self.changes.fetch_add(1, Ordering::AcqRel);
            }
            None => {
                f(&mut AlertState::default());
                g.orphaned = true;
            }
        }
    }

    fn update_cluster(&self, f: &mut dyn FnMut(&mut Option<ClusterDown>)) {
        f(&mut self.lock().cluster_notified);
    }

    fn retain(&self, keep: &mut dyn FnMut(&str, &mut AlertState) -> bool) {
        // Shared documents of removed rules are left for their files to
        // come back; only what this member holds is looked at.
        let mut g = self.lock();
        for (name, h) in g.held.iter_mut() {
            let before = h.st.removed_at;
            let _ = keep(name, &mut h.st);
            if h.st.removed_at != before {
                h.changes = h.changes.wrapping_add(1);
                self.changes.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn commit(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.flush())
    }

    fn stuck_deliveries(&self, now: DateTime<Utc>, after: chrono::Duration) -> usize {
        self.lock()
            .held
            .values()
            .flat_map(|h| &h.st.outbox)
            .filter(|m| now.signed_duration_since(m.matched_at) > after)
            .flat_map(|m| m.deliveries.values())
            .filter(|x| x.status == crate::throttle::DeliveryStatus::Pending)
            .count()
    }

    fn location(&self) -> PathBuf {
        self.location.clone()
    }

    fn fence<'a>(
        &'a self,
        fire: &'a crate::throttle::FireId,
    ) -> BoxFuture<'a, crate::throttle::Fence> {
        Box::pin(self.fence_delivery(fire))
    }

    fn fired<'a>(
        &'a self,
        fire: &'a crate::throttle::FireId,
        delivered: bool,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.mark_fired(fire, delivered))
    }
}
