//! Silences: "don't notify about this rule (or this key of it) until then".
//!
//! They live in `<store>.silences.json`, beside the store and apart from it,
//! so that `esalert silence` works the same with or without a running
//! daemon: the command writes the file atomically (under its own lock, so
//! two commands can't lose each other's silence), and the pipeline reads it
//! again whenever it changed. Expired silences are ignored and pruned at the
//! next write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::throttle::{StoreError, write_atomic};

/// One silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// Short id, for `esalert unsilence`.
    pub id: String,
    /// The rule.
    pub rule: String,
    /// The group key; every key of the rule when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When it ends.
    pub until: DateTime<Utc>,
    /// Why, for the people who see it in `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was made.
    pub created: DateTime<Utc>,
}

impl Silence {
    /// Whether it holds back a match of `rule`'s `key` at `now`.
    pub fn covers(&self, rule: &str, key: &str, now: DateTime<Utc>) -> bool {
        self.rule == rule && now < self.until && self.key.as_deref().is_none_or(|k| k == key)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceFile {
    version: u32,
    #[serde(default)]
    silences: Vec<Silence>,
}

/// Why the silences can't be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// Reading or writing failed.
    #[error("{}: {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("{}:{line}:{column}: the silences file is corrupt: {reason}; fix or delete it (that ends every silence)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where.
        line: usize,
        /// Where.
        column: usize,
        /// serde's message.
        reason: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The end time is not in the future, or too far in it.
    #[error("{0}")]
    Until(String),
}

/// The longest a silence may last.
pub const MAX_SILENCE: chrono::Duration = chrono::Duration::days(365);

/// A new silence of `rule` (or one `key` of it) until `until`, after
/// checking that it ends in the future and within [`MAX_SILENCE`], with an
/// id distinct from those in `taken`. The caller checks that the rule
/// exists.
pub fn make(
    taken: &[Silence],
    rule: &str,
    key: Option<String>,
    until: DateTime<Utc>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<Silence, SilenceError> {
    if until <= now {
        return Err(SilenceError::Until(format!(
            "the silence would end at {}, which is not in the future",
            crate::render::fmt_time(&until)
        )));
    }
    if until.signed_duration_since(now) > MAX_SILENCE {
        return Err(SilenceError::Until(
            "a silence may last at most 365 days".into(),
        ));
    }
    Ok(Silence {
        id: new_id(taken),
        rule: rule.to_owned(),
        key,
        until,
        reason,
        created: now,
    })
}

/// Adds a silence (see [`make`]) to the file; returns its id.
pub fn add(
    path: &Path,
    rule: &str,
    key: Option<String>,
    until: DateTime<Utc>,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> Result<String, SilenceError> {
    make(&[], rule, key.clone(), until, reason.clone(), now)?;
    edit(path, now, |all| {
        let s = make(all, rule, key, until, reason, now);
        let id = s.as_ref().map(|s| s.id.clone()).unwrap_or_default();
        all.extend(s);
        id
    })
}

/// Replaces every silence in the file with `all` (a member of shared state
/// mirrors the cluster's silences here, where the pipeline reads them).
pub fn replace(path: &Path, all: Vec<Silence>, now: DateTime<Utc>) -> Result<(), SilenceError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| SilenceError::Io {
            path: dir.to_owned(),
            action: "cannot create the directory",
            source,
        })?;
    }
    edit(path, now, |mine| {
        *mine = all;
        mine.retain(|s| s.until > now);
    })
}

/// Ends silence `id`; false when no such silence is in force.
pub fn remove(path: &Path, id: &str, now: DateTime<Utc>) -> Result<bool, SilenceError> {
    edit(path, now, |all| {
        let before = all.len();
        all.retain(|s| s.id != id);
        all.len() != before
    })
}

/// The silences in force at `now`.
pub fn in_force(path: &Path, now: DateTime<Utc>) -> Result<Vec<Silence>, SilenceError> {
    let mut all = load(path)?;
    all.retain(|s| s.until > now);
    Ok(all)
}

/// `<store>.silences.json`.
pub fn path_for(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".silences.json");
    PathBuf::from(s)
}

/// Every silence in the file (expired ones too); none when it is missing.
pub fn load(path: &Path) -> Result<Vec<Silence>, SilenceError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SilenceError::Io {
                path: path.to_owned(),
                action: "cannot read",
                source,
            });
        }
    };
    let f: SilenceFile = serde_json::from_slice(&bytes).map_err(|e| SilenceError::Corrupt {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    })?;
    Ok(f.silences)
}

/// Changes the file under its lock: `f` gets the unexpired silences.
pub fn edit<R>(
    path: &Path,
    now: DateTime<Utc>,
    f: impl FnOnce(&mut Vec<Silence>) -> R,
) -> Result<R, SilenceError> {
    let io = |action: &'static str| {
        move |source| SilenceError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    };
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(lock_path))
        .map_err(io("cannot open the silences lock"))?;
    // Held until `lock` is dropped at the end of this function.
    lock.lock().map_err(io("cannot lock"))?;
    let mut all = load(path)?;
    all.retain(|s| s.until > now);
    let r = f(&mut all);
    let mut bytes = serde_json::to_vec_pretty(&SilenceFile {
        version: 1,
        silences: all,
    })
    .map_err(|e| io("cannot serialize")(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, |_| Ok(()))?;
    Ok(r)
}

/// A new silence id: short, and distinct from the others in the file.
pub fn new_id(taken: &[Silence]) -> String {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        ^ u128::from(std::process::id());
    let mut n = seed;
    loop {
        let id = format!("{:08x}", (n ^ (n >> 64)) as u32);
        if !taken.iter().any(|s| s.id == id) {
            return id;
        }
        n = n.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
}

/// How often the pipeline looks whether the file changed: every run would
/// be a `stat` per alert per tick.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug, Default)]
struct Cache {
    /// When the file was last looked at.
    checked: Option<std::time::Instant>,
    /// Its modification time then.
    mtime: Option<SystemTime>,
    silences: Vec<Silence>,
}

/// The pipeline's view: the file, read again (at most each second) when it
/// changed.
#[derive(Debug)]
pub struct Silences {
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl Silences {
    /// Silences of the store at `store`.
    pub fn beside(store: &Path) -> Silences {
        Silences {
            path: path_for(store),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The silences of `rule` in force at `now`.
    pub fn active(&self, rule: &str, now: DateTime<Utc>) -> Vec<Silence> {
        let mut c = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if c.checked.is_none_or(|t| t.elapsed() >= RECHECK) {
            c.checked = Some(std::time::Instant::now());
            let mtime = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if mtime != c.mtime {
                c.mtime = mtime;
                c.silences = match mtime.map(|_| load(&self.path)) {
                    None => Vec::new(),
                    Some(Ok(all)) => all,
                    // A bad file silences nothing: alerting goes on, loudly.
                    Some(Err(e)) => {
                        tracing::error!(event = "silences_unreadable", error = %e);
                        Vec::new()
                    }
                };
            }
        }
        c.silences
            .iter()
            .filter(|s| s.rule == rule && now < s.until)
            .cloned()
            .collect()
    }
}
