//! What operators ask of shared state: silences and acknowledgements.
//!
//! - `silences`: every silence, in one document changed only by a
//!   version-checked read-modify-write (expired ones pruned at each write).
//!   Every member mirrors it into the silences file beside its local
//!   location, where the pipeline reads silences, whenever its version
//!   changes: a silence made anywhere applies on every instance within a
//!   round.
//! - `acks`: pending acknowledgement requests. The owner of the watch hands
//!   a request to its pipeline as the file backend does (a request file
//!   applied at the watch's next run), and removes it from the document
//!   once that run's state was written; if the lease moves first, the new
//!   owner does it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::docs::{Cond, Doc, DocError, DocStore, DocVersion, Written};
use super::{Cluster, Inner};
use crate::silence::Silence;

/// The document of silences.
pub const SILENCES: &str = "silences";
/// The document of acknowledgement requests.
pub const ACKS: &str = "acks";

/// Tries of a read-modify-write before giving up (others kept writing).
const TRIES: usize = 8;

/// How long an acknowledgement request waits for its watch's owner.
const ACK_KEPT: chrono::Duration = chrono::Duration::days(1);

/// One pending acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckRequest {
    /// Distinct among the pending ones.
    pub id: String,
    /// The watch.
    pub rule: String,
    /// Action ids; every action when empty.
    pub actions: Vec<String>,
    /// When it was asked.
    pub at: DateTime<Utc>,
}

fn silences_of(doc: Option<&Doc>) -> Vec<Silence> {
    doc.and_then(|d| serde_json::from_value(d.source["silences"].clone()).ok())
        .unwrap_or_default()
}

fn acks_of(doc: Option<&Doc>) -> Vec<AckRequest> {
    doc.and_then(|d| serde_json::from_value(d.source["requests"].clone()).ok())
        .unwrap_or_default()
}

fn busy(id: &str) -> DocError {
    DocError::Failed {
        index: String::new(),
        detail: format!("{id}: others kept changing it; try again"),
    }
}

/// Changes the silences: `f` gets those in force and may fail (then
/// nothing is written); retried on a conflicting write.
pub async fn edit_silences<R, E: From<DocError>>(
    docs: &dyn DocStore,
    now: DateTime<Utc>,
    mut f: impl FnMut(&mut Vec<Silence>) -> Result<R, E>,
) -> Result<R, E> {
    for _ in 0..TRIES {
        let doc = docs.get(SILENCES).await?;
        let mut all = silences_of(doc.as_ref());
        all.retain(|s| s.until > now);
        let r = f(&mut all)?;
        let cond = doc.map_or(Cond::Create, |d| Cond::Match(d.version));
        if let Written::Done(_) = docs
            .put_one(SILENCES, json!({"silences": all}), cond)
            .await?
        {
            return Ok(r);
        }
    }
    Err(busy(SILENCES).into())
}

/// Why a silence or acknowledgement could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The shared state was not reached or refused.
    #[error(transparent)]
    Docs(#[from] DocError),
    /// The silence itself is wrong.
    #[error(transparent)]
    Silence(#[from] crate::silence::SilenceError),
}

/// Adds a silence (see [`crate::silence::make`]); returns its id.
pub async fn add_silence(
    docs: &dyn DocStore,
    rule: &str,
    key: Option<String>,
    until: DateTime<Utc>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, RequestError> {
    edit_silences(docs, now, |all| {
        let s = crate::silence::make(all, rule, key.clone(), until, reason.clone(), now)?;
        let id = s.id.clone();
        all.push(s);
        Ok::<_, RequestError>(id)
    })
    .await
}

/// Ends silence `id`; false when no such silence is in force.
pub async fn end_silence(
    docs: &dyn DocStore,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool, RequestError> {
    edit_silences(docs, now, |all| {
        let before = all.len();
        all.retain(|s| s.id != id);
        Ok::<_, RequestError>(all.len() != before)
    })
    .await
}

/// The silences in force.
pub async fn silences_in_force(
    docs: &dyn DocStore,
    now: DateTime<Utc>,
) -> Result<Vec<Silence>, DocError> {
    let mut all = silences_of(docs.get(SILENCES).await?.as_ref());
    all.retain(|s| s.until > now);
    Ok(all)
}

/// Asks the owner of watch `rule` to acknowledge `actions` (all when
/// empty) at its next run.
pub async fn request_ack(
    docs: &dyn DocStore,
    rule: &str,
    actions: &[String],
    now: DateTime<Utc>,
) -> Result<(), DocError> {
    for _ in 0..TRIES {
        let doc = docs.get(ACKS).await?;
        let mut all = acks_of(doc.as_ref());
        all.retain(|a| now.signed_duration_since(a.at) < ACK_KEPT);
        let taken: Vec<Silence> = Vec::new();
        let mut id = crate::silence::new_id(&taken);
        while all.iter().any(|a| a.id == id) {
            id = format!("{id}x");
        }
        all.push(AckRequest {
            id,
            rule: rule.to_owned(),
            actions: actions.to_vec(),
            at: now,
        });
        let cond = doc.map_or(Cond::Create, |d| Cond::Match(d.version));
        if let Written::Done(_) = docs.put_one(ACKS, json!({"requests": all}), cond).await? {
            return Ok(());
        }
    }
    Err(busy(ACKS))
}

/// What a round does about the requests it read.
#[derive(Debug, Default)]
pub(super) struct Work {
    /// Silences to mirror, when the document changed.
    pub mirror: Option<Vec<Silence>>,
    /// Request files to write: watch, action ids.
    pub ack_files: Vec<(String, Vec<String>)>,
    /// Request files to delete: the watch is no longer ours.
    pub stale_files: Vec<String>,
    /// The acknowledgement document without the requests done, to write.
    pub acks_write: Option<(serde_json::Value, Cond)>,
}

impl Cluster {
    /// Looks at the silences and acknowledgement requests read this round
    /// (under the lock): what to mirror, hand over and remove.
    pub(super) fn requests_work(
        &self,
        g: &mut Inner,
        silences: Option<&Doc>,
        acks: Option<&Doc>,
    ) -> Work {
        let mut w = Work::default();
        let version: Option<DocVersion> = silences.map(|d| d.version);
        if g.silences_seen != Some(version) {
            g.silences_seen = Some(version);
            w.mirror = Some(silences_of(silences));
        }
        let requests = acks_of(acks);
        let mut by_rule: BTreeMap<&str, Vec<&AckRequest>> = BTreeMap::new();
        for r in &requests {
            by_rule.entry(r.rule.as_str()).or_default().push(r);
        }
        // Requests of watches no longer held here go back to their owner.
        let gone: Vec<String> = g
            .acks_pending
            .iter()
            .filter(|(_, rule)| !g.held.contains_key(rule.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(rule) = g.acks_pending.remove(&id) {
                w.stale_files.push(rule);
            }
        }
        let mut done: BTreeSet<&str> = BTreeSet::new();
        for (rule, reqs) in by_rule {
            let Some(h) = g.held.get(rule) else { continue };
            let fresh = reqs.iter().any(|r| !g.acks_pending.contains_key(&r.id));
            let file = crate::watcher::ack_request_path(&self.location, rule);
            if fresh {
                let all = reqs.iter().any(|r| r.actions.is_empty());
                let mut ids: Vec<String> = if all {
                    Vec::new()
                } else {
                    reqs.iter()
                        .flat_map(|r| r.actions.iter().cloned())
                        .collect()
                };
                ids.sort();
                ids.dedup();
                w.ack_files.push((rule.to_owned(), ids));
                for r in &reqs {
                    g.acks_pending.insert(r.id.clone(), rule.to_owned());
                }
            } else if h.changes == h.flushed && !file.exists() {
                // Applied by a run, and that run's state written.
                done.extend(reqs.iter().map(|r| r.id.as_str()));
            }
        }
        if !done.is_empty()
            && let Some(d) = acks
        {
            for id in &done {
                g.acks_pending.remove(*id);
            }
            let left: Vec<&AckRequest> = requests
                .iter()
                .filter(|r| !done.contains(r.id.as_str()))
                .collect();
            w.acks_write = Some((json!({"requests": left}), Cond::Match(d.version)));
        }
        w
    }

    /// The file side of [`requests_work`](Self::requests_work), outside
    /// the lock.
    pub(super) fn apply_requests_work(&self, w: Work) {
        let now = Utc::now();
        if let Some(all) = w.mirror {
            let path = crate::silence::path_for(&self.location);
            if let Err(e) = crate::silence::replace(&path, all, now) {
                tracing::error!(event = "silences_unwritable", error = %e,
                    "the cluster's silences do not apply on this instance until it can write them");
                self.lock().silences_seen = None;
            }
        }
        for rule in w.stale_files {
            let _ = std::fs::remove_file(crate::watcher::ack_request_path(&self.location, &rule));
        }
        for (rule, ids) in w.ack_files {
            let path = crate::watcher::ack_request_path(&self.location, &rule);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let r = crate::throttle::write_atomic(
                &path,
                serde_json::to_string(&ids).unwrap_or_default().as_bytes(),
                |_| Ok(()),
            );
            if let Err(e) = r {
                tracing::error!(event = "ack_request_unwritable", alert = rule.as_str(), error = %e);
            }
        }
    }
}
