//! Fire documents are kept only as long as a delivery they fence may
//! still be attempted: each owner deletes those of its alerts matched
//! longer ago than the horizon, a bounded number every two leases (one
//! search, and one version-checked bulk delete when it found some).

use std::time::Duration;

use super::Cluster;
use super::docs::DocError;

/// Fire documents deleted at most per cleanup.
pub const FIRE_CLEANUP_MAX: usize = 500;

/// The shortest horizon: a day, whatever the retry age.
const MIN_HORIZON: Duration = Duration::from_secs(24 * 3600);

impl Cluster {
    /// Keeps fire documents for `max_retry_age` (the outbox gives a
    /// delivery up after it), at least a day, and two leases more.
    pub fn set_fire_horizon(&self, max_retry_age: Duration) {
        self.lock().fire_horizon = max_retry_age.max(MIN_HORIZON) + self.timing.lease * 2;
    }

    /// How long fire documents are kept.
    pub fn fire_horizon(&self) -> Duration {
        let h = self.lock().fire_horizon;
        if h.is_zero() {
            MIN_HORIZON + self.timing.lease * 2
        } else {
            h
        }
    }

    /// Deletes old fire documents of the alerts held here, when two leases
    /// passed since the last time; returns how many were deleted.
    pub async fn cleanup_fires(&self) -> Result<u64, DocError> {
        let now = self.mono.now();
        let rules: Vec<String> = {
            let mut g = self.lock();
            if g.last_cleanup
                .is_some_and(|t| now.saturating_sub(t) < self.timing.lease * 2)
            {
                return Ok(0);
            }
            let rules: Vec<String> = g.held.keys().cloned().collect();
            if rules.is_empty() {
                return Ok(0);
            }
            g.last_cleanup = Some(now);
            rules
        };
        let horizon =
            chrono::Duration::from_std(self.fire_horizon()).unwrap_or(chrono::Duration::days(365));
        let Some(before) = chrono::Utc::now().checked_sub_signed(horizon) else {
            return Ok(0);
        };
        let n = self
            .docs
            .delete_old_fires(&rules, before, FIRE_CLEANUP_MAX)
            .await?;
        if n > 0 {
            tracing::info!(
                event = "fire_documents_deleted",
                member = self.me.as_str(),
                deleted = n,
                before = %crate::render::fmt_time(&before)
            );
        }
        Ok(n)
    }
}
