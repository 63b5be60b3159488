//! Stored scripts: `{"id": "name"}` in a watch. Resolved when the watch is
//! loaded, from `scripts/<name>.painless` (the source) or
//! `scripts/<name>.json` (the body of `PUT _scripts/<name>`) next to
//! `queries/`, else from what the cluster's `GET _scripts/<name>` answered
//! (fetched by [`prefetch`] at start and on SIGHUP, kept in a cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

/// Largest stored script file read.
const MAX_FILE: u64 = 1 << 20;

/// Sources fetched from the cluster, by name.
static CLUSTER: Mutex<Option<HashMap<String, String>>> = Mutex::new(None);

/// Why a stored script can't be had.
#[derive(Debug, thiserror::Error)]
pub enum StoredError {
    /// Nowhere to be found.
    #[error(
        "stored script `{name}` was not found: put its source in {} (or the body of `PUT _scripts/{name}` in {}), or store it in the cluster",
        dir.join(format!("{name}.painless")).display(),
        dir.join(format!("{name}.json")).display()
    )]
    Missing {
        /// Its id.
        name: String,
        /// The scripts directory looked in.
        dir: PathBuf,
    },
    /// The cluster could not be asked.
    #[error("stored script `{name}`: could not fetch it from the cluster: {reason}")]
    Fetch {
        /// Its id.
        name: String,
        /// Why.
        reason: String,
    },
    /// The file is there but unusable.
    #[error("stored script `{name}` ({path}): {reason}")]
    Invalid {
        /// Its id.
        name: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The scripts directory for an alert file `queries/<name>.json`.
pub fn dir_for(alert_file: &Path) -> PathBuf {
    alert_file
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("scripts")
}

/// Whether a name is a plain file name (no path tricks).
fn safe(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
}

/// The source of the body of `PUT _scripts/<name>` (or of `GET`'s answer).
pub fn source_of(body: &Value) -> Option<(String, Option<String>)> {
    let s = body.get("script")?;
    let src = s.get("source").or(s.get("code"))?.as_str()?.to_owned();
    let lang = s.get("lang").and_then(Value::as_str).map(str::to_owned);
    Some((src, lang))
}

/// Resolves a stored script: its Painless source.
pub fn resolve(dir: &Path, name: &str) -> Result<String, StoredError> {
    let invalid = |path: &Path, reason: String| StoredError::Invalid {
        name: name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    if safe(name) {
        let p = dir.join(format!("{name}.painless"));
        if p.is_file() {
            let bytes =
                crate::alert::read_regular(&p, MAX_FILE).map_err(|e| invalid(&p, e.to_string()))?;
            return String::from_utf8(bytes).map_err(|_| invalid(&p, "not UTF-8".into()));
        }
        let p = dir.join(format!("{name}.json"));
        if p.is_file() {
            let bytes =
                crate::alert::read_regular(&p, MAX_FILE).map_err(|e| invalid(&p, e.to_string()))?;
            let v: Value =
                serde_json::from_slice(&bytes).map_err(|e| invalid(&p, e.to_string()))?;
            let (src, lang) = source_of(&v).ok_or_else(|| {
                invalid(
                    &p,
                    "expected {\"script\": {\"lang\": \"painless\", \"source\": \"…\"}}".into(),
                )
            })?;
            if lang.as_deref().is_some_and(|l| l != "painless") {
                return Err(invalid(
                    &p,
                    format!("lang {lang:?}: only painless scripts run"),
                ));
            }
            return Ok(src);
        }
    }
    if let Some(src) = CLUSTER
        .lock()
        .ok()
        .and_then(|c| c.as_ref().and_then(|m| m.get(name).cloned()))
    {
        return Ok(src);
    }
    Err(StoredError::Missing {
        name: name.to_owned(),
        dir: dir.to_owned(),
    })
}

/// Replaces the cache of scripts fetched from the cluster.
pub fn set_cluster_scripts(scripts: HashMap<String, String>) {
    if let Ok(mut c) = CLUSTER.lock() {
        *c = Some(scripts);
    }
}

/// The stored-script ids the watches in `queries` name that are not in
/// `scripts/`: what to fetch from the cluster.
pub fn wanted(queries: &Path) -> Vec<String> {
    let dir = queries.parent().unwrap_or(Path::new(".")).join("scripts");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(queries) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(bytes) = crate::alert::read_regular(&p, 4 << 20) else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        collect_ids(&v, &mut out);
    }
    out.sort();
    out.dedup();
    out.retain(|n| {
        safe(n)
            && !dir.join(format!("{n}.painless")).is_file()
            && !dir.join(format!("{n}.json")).is_file()
    });
    out
}

/// The longest a whole [`prefetch`] may take, so a reload is not held up
/// by a cluster that does not answer (each request has the client's
/// timeout too).
const PREFETCH_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Fetches from the cluster (`GET _scripts/<id>`) the stored scripts that
/// the watches in `queries` name and `scripts/` lacks, into the cache that
/// [`resolve`] reads. A script the cluster says it has not is dropped from
/// the cache; one that could not be fetched keeps what an earlier fetch
/// got, and is returned with why. Nothing is asked when nothing is wanted.
pub async fn prefetch(cfg: &crate::config::EsConfig, queries: &Path) -> Vec<StoredError> {
    let wanted = wanted(queries);
    if wanted.is_empty() {
        return Vec::new();
    }
    let es = match crate::search::EsClient::new(cfg) {
        Ok(es) => es,
        Err(e) => {
            return wanted
                .into_iter()
                .map(|name| StoredError::Fetch {
                    name,
                    reason: e.to_string(),
                })
                .collect();
        }
    };
    let before = CLUSTER
        .lock()
        .ok()
        .and_then(|c| c.clone())
        .unwrap_or_default();
    let mut now = HashMap::new();
    let mut failed = Vec::new();
    let fetch = async {
        for name in &wanted {
            match es.stored_script(name).await {
                Ok(Some(body)) => match source_of(&body) {
                    Some((src, lang)) if lang.as_deref().is_none_or(|l| l == "painless") => {
                        now.insert(name.clone(), src);
                    }
                    Some((_, lang)) => failed.push(StoredError::Fetch {
                        name: name.clone(),
                        reason: format!("lang {lang:?}: only painless scripts run"),
                    }),
                    None => failed.push(StoredError::Fetch {
                        name: name.clone(),
                        reason: "the answer has no script.source".into(),
                    }),
                },
                Ok(None) => {}
                Err(e) => {
                    if let Some(src) = before.get(name) {
                        now.insert(name.clone(), src.clone());
                    }
                    failed.push(StoredError::Fetch {
                        name: name.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
    };
    if tokio::time::timeout(PREFETCH_MAX, fetch).await.is_err() {
        for name in &wanted {
            if !now.contains_key(name) && !failed.iter().any(|f| fetch_of(f) == Some(name)) {
                if let Some(src) = before.get(name) {
                    now.insert(name.clone(), src.clone());
                }
                failed.push(StoredError::Fetch {
                    name: name.clone(),
                    reason: format!("no answer within {}s", PREFETCH_MAX.as_secs()),
                });
            }
        }
    }
    set_cluster_scripts(now);
    failed
}

fn fetch_of(e: &StoredError) -> Option<&String> {
    match e {
        StoredError::Fetch { name, .. } => Some(name),
        _ => None,
    }
}

/// [`prefetch`], logging what could not be fetched: for the daemon and
/// the commands, which then load the watches.
pub async fn prefetch_logged(cfg: &crate::config::EsConfig, queries: &Path) {
    for e in prefetch(cfg, queries).await {
        tracing::warn!(event = "stored_script_fetch_failed", error = %e);
    }
}

fn collect_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "script"
                    && let Some(id) = x.get("id").or(x.get("stored")).and_then(Value::as_str)
                {
                    out.push(id.to_owned());
                }
                // Search bodies keep their scripts on the cluster.
                if k != "body" {
                    collect_ids(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_ids(x, out)),
        _ => {}
    }
}
