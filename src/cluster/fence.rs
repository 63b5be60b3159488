//! The delivery fence: before a delivery is sent, its owner creates
//! `fire:<rule>:<key>:<tick>:<delivery>` with `op_type=create`, and sends
//! only if that worked and its lease is still valid afterwards; once sent,
//! the document is marked `sent` (version-checked).
//!
//! A fire document found `sending` under another member was left by an
//! owner that died (or was deposed) between creating it and marking it:
//! it may or may not have been delivered. The new owner sends it again
//! (at-least-once, the default) or, for a rule with `at_most_once: true`,
//! logs it and gives it up.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::docs::{Cond, Written};
use super::{Cluster, doc_id, ts_now};
use crate::render::fmt_time;
use crate::throttle::{Fence, FireId};

fn fire_doc_id(f: &FireId) -> String {
    doc_id(
        "fire",
        &[&f.rule, &f.key, &fmt_time(&f.matched_at), &f.delivery],
    )
}

impl Cluster {
    /// The epoch we may act under for `rule` now, if any.
    fn acting_epoch(&self, rule: &str) -> Option<u64> {
        let now = self.mono.now();
        self.lock()
            .held
            .get(rule)
            .filter(|h| !h.releasing && now < h.valid_until)
            .map(|h| h.epoch)
    }

    fn is_at_most_once(&self, rule: &str) -> bool {
        self.at_most_once
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(rule)
    }

    fn set_sending(&self, rule: &str, delta: isize) {
        if let Some(h) = self.lock().held.get_mut(rule) {
            h.sending = h.sending.saturating_add_signed(delta);
        }
    }

    pub(super) async fn fence_delivery(&self, f: &FireId) -> Fence {
        let Some(epoch) = self.acting_epoch(&f.rule) else {
            return Fence::Hold("this instance does not own the alert now".into());
        };
        self.set_sending(&f.rule, 1);
        let fence = self.fence_inner(f, epoch).await;
        if fence != Fence::Go {
            self.set_sending(&f.rule, -1);
        }
        fence
    }

    async fn fence_inner(&self, f: &FireId, epoch: u64) -> Fence {
        let id = fire_doc_id(f);
        let source = json!({
            "rule": f.rule, "key": f.key, "matched_at": fmt_time(&f.matched_at),
            "delivery": f.delivery, "owner": self.me, "epoch": epoch,
            "status": "sending", "at": ts_now(),
        });
        let broken = self.broken.load(Ordering::Relaxed);
        let written = match self.docs.put_one(&id, source.clone(), Cond::Create).await {
            Ok(w) => w,
            Err(e) => return Fence::Hold(e.to_string()),
        };
        let version = match written {
            Written::Done(v) => v,
            Written::Conflict => {
                let doc = match self.docs.get(&id).await {
                    Ok(Some(d)) => d,
                    Ok(None) => {
                        return Fence::Hold("the delivery's fence document vanished".into());
                    }
                    Err(e) => return Fence::Hold(e.to_string()),
                };
                let status = doc.source["status"].as_str().unwrap_or_default();
                let owner = doc.source["owner"].as_str().unwrap_or_default();
                let their_epoch = doc.source["epoch"].as_u64().unwrap_or_default();
                let mine = owner == self.me && their_epoch == epoch;
                if status == "sent" && !broken {
                    return Fence::Sent;
                }
                if !mine && !broken {
                    if their_epoch > epoch {
                        return Fence::Hold(format!(
                            "{owner} (epoch {their_epoch}) took the alert over"
                        ));
                    }
                    if self.is_at_most_once(&f.rule) {
                        return Fence::Drop(format!(
                            "{owner} (epoch {their_epoch}) began this delivery and stopped before recording it; it may have been sent, and the alert is at_most_once"
                        ));
                    }
                    tracing::warn!(alert = f.rule.as_str(), event = "resend", delivery = f.delivery.as_str(),
                        previous = owner, matched_at = %fmt_time(&f.matched_at),
                        reason = "an earlier owner began this delivery and stopped before recording it (at-least-once)");
                }
                match self
                    .docs
                    .put_one(&id, source, Cond::Match(doc.version))
                    .await
                {
                    Ok(Written::Done(v)) => v,
                    Ok(Written::Conflict) => {
                        return Fence::Hold("another instance is delivering it".into());
                    }
                    Err(e) => return Fence::Hold(e.to_string()),
                }
            }
        };
        // The create took time: a process paused meanwhile must not send.
        if self.acting_epoch(&f.rule) != Some(epoch) && !broken {
            return Fence::Hold("this instance's lease lapsed before sending".into());
        }
        self.lock().fires.insert(id, version);
        Fence::Go
    }

    pub(super) async fn mark_fired(&self, f: &FireId, delivered: bool) {
        self.set_sending(&f.rule, -1);
        let id = fire_doc_id(f);
        let Some(version) = self.lock().fires.remove(&id) else {
            return;
        };
        if !delivered {
            return;
        }
        let source = json!({
            "rule": f.rule, "key": f.key, "matched_at": fmt_time(&f.matched_at),
            "delivery": f.delivery, "owner": self.me, "status": "sent", "at": ts_now(),
            "epoch": self.lock().held.get(&f.rule).map(|h| h.epoch),
        });
        // Best effort: the state document records the delivery too.
        if let Err(e) = self.docs.put_one(&id, source, Cond::Match(version)).await {
            tracing::warn!(alert = f.rule.as_str(), event = "fence_mark_failed", error = %e);
        }
    }
}
