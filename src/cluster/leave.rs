//! Leaving on a clean shutdown: this member's leases are released
//! (version-checked, as any lease write) and its member document says it
//! left, so that the other members take its alerts over at their next
//! round instead of after the lease expired.

use serde_json::json;

use super::docs::{Cond, Written};
use super::lease::LeaseDoc;
use super::{Cluster, doc_id, ts_now};

impl Cluster {
    /// Releases every lease held here and marks this member as gone. Call
    /// after the last run finished and the state was written: nothing is
    /// run or sent here afterwards. Best effort: a lease whose release
    /// fails expires as a dead member's would.
    pub async fn leave(&self) -> usize {
        // Waits for a round in flight; none starts afterwards.
        let _round = self.rounds.lock().await;
        let held: Vec<(String, u64)> = {
            let mut g = self.lock();
            g.left = true;
            for h in g.held.values_mut() {
                h.releasing = true;
            }
            g.held.iter().map(|(r, h)| (r.clone(), h.epoch)).collect()
        };
        let me_id = doc_id("member", &[&self.me]);
        let mut ids: Vec<String> = held.iter().map(|(r, _)| doc_id("lease", &[r])).collect();
        ids.push(me_id.clone());
        let read = match self.docs.mget(&ids).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event = "leases_not_released", error = %e,
                    "the other members take this instance's alerts over once its leases expire");
                return 0;
            }
        };
        let lease_ms = u64::try_from(self.timing.lease.as_millis()).unwrap_or(u64::MAX);
        let mut writes = Vec::new();
        for ((rule, epoch), doc) in held.iter().zip(&read) {
            let Some(d) = doc else { continue };
            let ours = serde_json::from_value::<LeaseDoc>(d.source.clone())
                .is_ok_and(|l| l.owner == self.me && l.epoch == *epoch);
            if !ours {
                continue;
            }
            let released = LeaseDoc {
                owner: String::new(),
                epoch: *epoch,
                beat: 0,
                renewed_at: ts_now(),
                lease_ms,
            };
            writes.push((
                doc_id("lease", &[rule]),
                serde_json::to_value(released).unwrap_or_default(),
                Cond::Match(d.version),
            ));
        }
        let mine = read.last().cloned().flatten();
        writes.push((
            me_id,
            json!({"id": self.me, "left": true, "beat_at": ts_now(), "lease_ms": lease_ms,
                   "pid": std::process::id()}),
            mine.map_or(Cond::Create, |d| Cond::Match(d.version)),
        ));
        let released = match self.docs.put(&writes).await {
            Ok(r) => r
                .iter()
                .take(writes.len().saturating_sub(1))
                .filter(|w| matches!(w, Written::Done(_)))
                .count(),
            Err(e) => {
                tracing::warn!(event = "leases_not_released", error = %e,
                    "the other members take this instance's alerts over once its leases expire");
                0
            }
        };
        self.lock().held.clear();
        tracing::info!(
            event = "leases_released",
            member = self.me.as_str(),
            released,
            held = held.len()
        );
        released
    }
}
