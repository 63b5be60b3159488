//! Opening shared state for `esalert run`, and `esalert status` over it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::docs::{DocError, DocStore, EsDocs};
use super::lease::LeaseDoc;
use super::{BootClock, Cluster, StateSpec, doc_id};
use crate::config::Credentials;
use crate::search::{EsClient, SearchError};

/// Why shared state can't be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `--state es://...` is malformed.
    #[error(transparent)]
    Spec(#[from] super::SpecError),
    /// The client can't be built.
    #[error(transparent)]
    Client(#[from] SearchError),
    /// The cluster can't be used.
    #[error(transparent)]
    Docs(#[from] DocError),
    /// A command that keeps its requests beside a state file.
    #[error(
        "`esalert {0}` works on a state file; with --state es://... it is not supported yet (run it against each instance's file, or leave --state out)"
    )]
    Unsupported(&'static str),
}

/// The document store named by `spec`: its own cluster, or the one in
/// credentials.json (with that cluster's credentials either way).
pub fn docs_for(
    spec: &StateSpec,
    creds: &Credentials,
    timeout: Duration,
) -> Result<EsDocs, OpenError> {
    let mut cfg = creds.elasticsearch.clone();
    if let Some(url) = &spec.url {
        cfg.url = url.clone();
    }
    let es = EsClient::new(&cfg)?.with_retry(1, Duration::from_millis(100));
    Ok(EsDocs::new(es, spec.index.clone(), timeout))
}

/// Opens shared state as a member of it. The index is created if missing;
/// an unreachable cluster is not an error here (the member simply owns
/// nothing until it is reached).
pub async fn open(
    spec: &StateSpec,
    creds: &Credentials,
    lease: Duration,
    location: &Path,
    broken: bool,
) -> Result<Arc<Cluster>, OpenError> {
    // A request must end well within the lease, or the lease lapses
    // while the request still hangs.
    let docs = docs_for(spec, creds, (lease / 3).max(Duration::from_millis(500)))?;
    match docs.ensure_index().await {
        Ok(()) => {}
        Err(DocError::Unreachable { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let label = format!("es://{}", spec.index);
    let c = Cluster::new(
        Arc::new(docs),
        Arc::new(BootClock),
        super::member_id(),
        lease,
        location.to_owned(),
        label,
    );
    Ok(Arc::new(if broken { c.broken() } else { c }))
}

/// What `esalert status` shows of shared state: per rule its owner, epoch
/// and when the lease expires if not renewed (by the renewer's wall clock,
/// for people only), and the registered members with their last beat.
pub async fn status(
    spec: &StateSpec,
    creds: &Credentials,
    rules: &[String],
) -> Result<Value, OpenError> {
    let docs = docs_for(spec, creds, Duration::from_secs(10))?;
    let registry = (&docs as &dyn DocStore).get("members").await?;
    let ids: Vec<String> = registry
        .and_then(|d| d.source["ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut want: Vec<String> = ids.iter().map(|m| doc_id("member", &[m])).collect();
    want.extend(rules.iter().map(|r| doc_id("lease", &[r])));
    let read = docs.mget(&want).await?;
    let now = chrono::Utc::now();
    let expiry = |at: &str, ms: u64| {
        chrono::DateTime::parse_from_rfc3339(at).ok().and_then(|t| {
            t.with_timezone(&chrono::Utc)
                .checked_add_signed(chrono::Duration::milliseconds(i64::try_from(ms).ok()?))
        })
    };
    let mut members = Vec::new();
    for (id, doc) in ids.iter().zip(&read) {
        let src = doc.as_ref().map(|d| &d.source);
        let beat_at = src.and_then(|s| s["beat_at"].as_str()).unwrap_or_default();
        let ms = src.and_then(|s| s["lease_ms"].as_u64()).unwrap_or_default();
        let alive = expiry(beat_at, ms).is_some_and(|e| e > now);
        members.push(json!({"id": id, "last_beat": beat_at, "live": alive}));
    }
    let mut alerts = serde_json::Map::new();
    for (rule, doc) in rules.iter().zip(read.iter().skip(ids.len())) {
        let l: Option<LeaseDoc> = doc
            .as_ref()
            .and_then(|d| serde_json::from_value(d.source.clone()).ok());
        alerts.insert(
            rule.clone(),
            match l {
                Some(l) => json!({
                    "owner": if l.owner.is_empty() { Value::Null } else { json!(l.owner) },
                    "epoch": l.epoch,
                    "lease_expires": expiry(&l.renewed_at, l.lease_ms).map(|t| crate::render::fmt_time(&t)),
                }),
                None => json!({"owner": null}),
            },
        );
    }
    Ok(json!({"state": format!("es://{}", spec.index), "members": members, "alerts": alerts}))
}
