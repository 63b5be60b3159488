//! The documents shared state is made of, behind a small trait: the index
//! on the cluster ([`EsDocs`]), or memory that numbers versions the way the
//! cluster does ([`MemDocs`], for tests, with the faults a cluster has).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

pub use crate::search::{Cond, Doc, DocVersion, Written};
use crate::search::{EsClient, SearchError};

/// Why a request about shared state did not happen. A write that timed out
/// is counted here too: it is "not done", though it may have been applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DocError {
    /// No answer (connection failed, or none within the timeout).
    #[error("shared state {index} is unreachable: {detail}")]
    Unreachable {
        /// The index.
        index: String,
        /// What happened.
        detail: String,
    },
    /// The cluster answered with an error.
    #[error("shared state {index}: {detail}")]
    Failed {
        /// The index.
        index: String,
        /// The cluster's error.
        detail: String,
    },
}

/// Reads by id and conditional writes.
pub trait DocStore: Send + Sync {
    /// Reads documents by id, in real time.
    fn mget<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Doc>>, DocError>>;
    /// Writes documents, each under its condition, in one request.
    fn put<'a>(
        &'a self,
        docs: &'a [(String, Value, Cond)],
    ) -> BoxFuture<'a, Result<Vec<Written>, DocError>>;
    /// Deletes up to `max` fire documents of `rules` matched before
    /// `before`; returns how many.
    fn delete_old_fires<'a>(
        &'a self,
        rules: &'a [String],
        before: DateTime<Utc>,
        max: usize,
    ) -> BoxFuture<'a, Result<u64, DocError>>;
    /// Requests made so far (for the load figure in BENCHMARKS.md).
    fn requests(&self) -> u64;
}

impl dyn DocStore + '_ {
    /// Reads one document.
    pub async fn get(&self, id: &str) -> Result<Option<Doc>, DocError> {
        let ids = [id.to_owned()];
        Ok(self.mget(&ids).await?.into_iter().next().flatten())
    }

    /// Writes one document.
    pub async fn put_one(&self, id: &str, source: Value, cond: Cond) -> Result<Written, DocError> {
        let docs = [(id.to_owned(), source, cond)];
        self.put(&docs)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| DocError::Failed {
                index: String::new(),
                detail: "the cluster answered no result for the write".into(),
            })
    }
}

/// The state index on a cluster. Every request has an overall timeout
/// (shorter than the lease), after which it is "not done".
#[derive(Debug)]
pub struct EsDocs {
    es: EsClient,
    index: String,
    timeout: Duration,
    requests: AtomicU64,
}

impl EsDocs {
    /// Documents in `index` of the cluster `es`.
    pub fn new(es: EsClient, index: String, timeout: Duration) -> EsDocs {
        EsDocs {
            es,
            index,
            timeout,
            requests: AtomicU64::new(0),
        }
    }

    /// The index.
    pub fn index(&self) -> &str {
        &self.index
    }

    /// Creates the index if missing. Once, at start: it may take longer
    /// than a lease request (a busy cluster creating an index).
    pub async fn ensure_index(&self) -> Result<(), DocError> {
        let slow = self.timeout.max(Duration::from_secs(10));
        self.bounded_by(slow, self.es.ensure_state_index(&self.index))
            .await
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, SearchError>>,
    ) -> Result<T, DocError> {
        self.bounded_by(self.timeout, f).await
    }

    async fn bounded_by<T>(
        &self,
        timeout: Duration,
        f: impl std::future::Future<Output = Result<T, SearchError>>,
    ) -> Result<T, DocError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(timeout, f).await {
            Err(_) => Err(DocError::Unreachable {
                index: self.index.clone(),
                detail: format!("no answer within {}", humantime::format_duration(timeout)),
            }),
            Ok(Err(e)) if e.is_unreachable() || e.is_transient() => Err(DocError::Unreachable {
                index: self.index.clone(),
                detail: e.to_string(),
            }),
            Ok(Err(e)) => Err(DocError::Failed {
                index: self.index.clone(),
                detail: e.to_string(),
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }
}

impl DocStore for EsDocs {
    fn mget<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Doc>>, DocError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            self.bounded(self.es.mget_docs(&self.index, ids)).await
        })
    }

    fn put<'a>(
        &'a self,
        docs: &'a [(String, Value, Cond)],
    ) -> BoxFuture<'a, Result<Vec<Written>, DocError>> {
        Box::pin(async move {
            if docs.is_empty() {
                return Ok(Vec::new());
            }
            self.bounded(self.es.put_docs(&self.index, docs)).await
        })
    }

    fn delete_old_fires<'a>(
        &'a self,
        rules: &'a [String],
        before: DateTime<Utc>,
        max: usize,
    ) -> BoxFuture<'a, Result<u64, DocError>> {
        Box::pin(async move {
            if rules.is_empty() || max == 0 {
                return Ok(0);
            }
            let before = crate::render::fmt_time(&before);
            // Cleanup is never urgent, and a delete by query takes longer
            // than a read by id.
            let slow = self.timeout.max(Duration::from_secs(10));
            self.bounded_by(
                slow,
                self.es.delete_old_fires(&self.index, rules, &before, max),
            )
            .await
        })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A fault [`MemDocs`] injects into its next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write is applied, but the caller hears a timeout.
    AppliedButTimedOut,
    /// The request fails without being applied.
    Unreachable,
}

/// Documents in memory with the cluster's versioning: every write bumps a
/// shard-wide `_seq_no` and stamps the current primary term.
#[derive(Debug, Default)]
pub struct MemDocs {
    inner: Mutex<MemInner>,
    requests: AtomicU64,
    /// Documents read and written, for the load figure.
    pub doc_ops: (AtomicU64, AtomicU64),
}

#[derive(Debug, Default)]
struct MemInner {
    docs: HashMap<String, (Value, DocVersion)>,
    seq: i64,
    term: i64,
    faults: Vec<Fault>,
    down: bool,
}

impl MemDocs {
    /// An empty shard in primary term 1.
    pub fn new() -> MemDocs {
        let m = MemDocs::default();
        m.lock().term = 1;
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A primary failover: the term goes up, and (as after a resync onto a
    /// new primary) every document carries it, so every version a client
    /// holds is stale once.
    pub fn bump_primary_term(&self) {
        let mut g = self.lock();
        g.term += 1;
        let term = g.term;
        for (_, v) in g.docs.values_mut() {
            v.primary_term = term;
        }
    }

    /// Makes the next write fail with `fault`.
    pub fn inject(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Makes every request fail (or succeed again).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// The stored document, if any.
    pub fn peek(&self, id: &str) -> Option<Value> {
        self.lock().docs.get(id).map(|(v, _)| v.clone())
    }

    /// Every id stored.
    pub fn ids(&self) -> Vec<String> {
        self.lock().docs.keys().cloned().collect()
    }

    fn unreachable() -> DocError {
        DocError::Unreachable {
            index: "memory".into(),
            detail: "injected".into(),
        }
    }
}

impl DocStore for MemDocs {
    fn mget<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Doc>>, DocError>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.doc_ops
            .0
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        let g = self.lock();
        let r = if g.down {
            Err(Self::unreachable())
        } else {
            Ok(ids
                .iter()
                .map(|id| {
                    g.docs.get(id).map(|(s, v)| Doc {
                        source: s.clone(),
                        version: *v,
                    })
                })
                .collect())
        };
        Box::pin(async move { r })
    }

    fn put<'a>(
        &'a self,
        docs: &'a [(String, Value, Cond)],
    ) -> BoxFuture<'a, Result<Vec<Written>, DocError>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.doc_ops
            .1
            .fetch_add(docs.len() as u64, Ordering::Relaxed);
        let mut g = self.lock();
        let fault = if g.faults.is_empty() {
            None
        } else {
            Some(g.faults.remove(0))
        };
        let r = if g.down || fault == Some(Fault::Unreachable) {
            Err(Self::unreachable())
        } else {
            let mut out = Vec::new();
            for (id, source, cond) in docs {
                let ok = match (cond, g.docs.get(id)) {
                    (Cond::Create, None) => true,
                    (Cond::Match(want), Some((_, have))) => want == have,
                    _ => false,
                };
                if ok {
                    g.seq += 1;
                    let v = DocVersion {
                        seq_no: g.seq,
                        primary_term: g.term,
                    };
                    g.docs.insert(id.clone(), (source.clone(), v));
                    out.push(Written::Done(v));
                } else {
                    out.push(Written::Conflict);
                }
            }
            match fault {
                Some(Fault::AppliedButTimedOut) => Err(Self::unreachable()),
                _ => Ok(out),
            }
        };
        Box::pin(async move { r })
    }

    fn delete_old_fires<'a>(
        &'a self,
        rules: &'a [String],
        before: DateTime<Utc>,
        max: usize,
    ) -> BoxFuture<'a, Result<u64, DocError>> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut g = self.lock();
        let r = if g.down {
            Err(Self::unreachable())
        } else {
            let old: Vec<String> = g
                .docs
                .iter()
                .filter(|(id, (s, _))| {
                    id.starts_with("fire:")
                        && s["rule"]
                            .as_str()
                            .is_some_and(|r| rules.iter().any(|x| x == r))
                        && s["matched_at"]
                            .as_str()
                            .and_then(|m| DateTime::parse_from_rfc3339(m).ok())
                            .is_some_and(|m| m < before)
                })
                .map(|(id, _)| id.clone())
                .take(max)
                .collect();
            for id in &old {
                g.docs.remove(id);
            }
            Ok(old.len() as u64)
        };
        Box::pin(async move { r })
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}
