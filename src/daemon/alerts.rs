//! The live set of alerts: scanning `queries/`, scheduling, and what
//! changed (`event=loaded|reloaded|removed|rejected`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::alert::{Alert, LoadError, load_bytes, loader_files, read_alert_file};
use crate::condition::ScriptEngine;

/// A file modified this recently may still be being written; wait.
pub const SETTLE: Duration = Duration::from_millis(700);

/// What identifies a version of a file cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    mtime: SystemTime,
    len: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            mtime: m.modified().ok()?,
            len: m.len(),
        })
    }
}

/// One scheduled alert.
#[derive(Debug)]
pub struct Scheduled {
    /// The current definition.
    pub alert: Arc<Alert>,
    /// When it is next due; `None` for inactive alerts.
    pub next_due: Option<DateTime<Utc>>,
    /// Set while a run is in flight, so the same alert never runs twice at once.
    pub running: Arc<AtomicBool>,
    stamp: Option<Stamp>,
    /// A digest of the file's content, to tell an edit from a touch.
    digest: u64,
}

/// The alerts of the queries directory, kept in step with it.
#[derive(Debug)]
pub struct Alerts {
    dir: PathBuf,
    scripts: Arc<ScriptEngine>,
    /// Loaded alerts by name.
    pub by_name: BTreeMap<String, Scheduled>,
    rejected: HashMap<PathBuf, Option<Stamp>>,
    /// Each rejected file's problems, `path:line:col: message` (the console shows them).
    problems: BTreeMap<PathBuf, Vec<String>>,
    /// Names removed since the caller last took them (for metrics).
    pub removed: Vec<String>,
    /// Names whose `next_due` a scan set, since the caller last took them
    /// (for the scheduler's queue).
    pub rescheduled: Vec<String>,
    /// Whether a scan changed the set or its rejected files since the caller
    /// last asked: the console's snapshot and shared state are redone only then.
    changed: bool,
    /// `elastalert.yaml`'s version at the last scan: ElastAlert rules are
    /// reloaded when it changes.
    globals: Option<Stamp>,
}

fn next_due(a: &Alert, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !a.active {
        return None;
    }
    a.schedule.next_after(now, a.timezone)
}

impl Alerts {
    /// An empty set watching `dir`.
    pub fn new(dir: PathBuf, scripts: Arc<ScriptEngine>) -> Alerts {
        Alerts {
            dir,
            scripts,
            by_name: BTreeMap::new(),
            rejected: HashMap::new(),
            problems: BTreeMap::new(),
            removed: Vec::new(),
            rescheduled: Vec::new(),
            changed: true,
            globals: crate::frontends::elastalert::globals::path().and_then(|p| Stamp::of(&p)),
        }
    }

    /// After a wall-clock step: every alert is next due at the first time
    /// its schedule gives after `now`, or earlier if it was already due (a
    /// forward step runs what it skipped over once, now). So a step back
    /// never delays an alert by more than one period. Returns how many
    /// alerts were rescheduled.
    pub fn reschedule(&mut self, now: DateTime<Utc>) -> usize {
        let mut n = 0;
        for s in self.by_name.values_mut() {
            let fresh = next_due(&s.alert, now);
            let due = match (s.next_due, fresh) {
                (Some(old), Some(new)) if old <= now => Some(old.min(new)),
                (_, fresh) => fresh,
            };
            if due != s.next_due {
                n += 1;
            }
            s.next_due = due;
        }
        n
    }

    /// Brings the set in line with the directory. With `force`, every file
    /// is re-read (SIGHUP). With `settle`, files changed in the last
    /// [`SETTLE`] are left for later, as they may be half-written. Returns
    /// true when some file was left and a rescan should follow shortly.
    pub fn scan(&mut self, now: DateTime<Utc>, force: bool, settle: bool) -> bool {
        let files = match loader_files(&self.dir) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(event = "scan_failed", error = %e);
                return false;
            }
        };
        let mut deferred = false;
        let mut seen = std::collections::HashSet::new();
        let globals = crate::frontends::elastalert::globals::path().and_then(|p| Stamp::of(&p));
        let globals_changed = globals != self.globals;
        self.globals = globals;
        for path in files {
            // elastalert.yaml's defaults are part of every ElastAlert rule.
            let force = force
                || (globals_changed
                    && path
                        .extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(crate::frontends::elastalert::is_rule_extension));
            let Some(name) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let stamp = Stamp::of(&path);
            if !seen.insert(name.clone()) {
                // `x.json` and `x.yaml`: one id, two rules. The first (in
                // name order) runs; the other is refused, logged once.
                if self.rejected.get(&path) != Some(&stamp) {
                    let e = LoadError::one(
                        &path,
                        None,
                        "another file already defines this rule (rule names are file stems); rename one of them",
                    );
                    log_rejected(&name, &e, false);
                    self.changed = true;
                    self.problems.insert(path.clone(), problem_lines(&e));
                    self.rejected.insert(path.clone(), stamp);
                }
                continue;
            }
            let known = self.by_name.get(&name).map(|s| s.stamp);
            let unchanged = known == Some(stamp) || self.rejected.get(&path) == Some(&stamp);
            if unchanged && !force {
                continue;
            }
            if settle
                && let Some(s) = stamp
                && s.mtime.elapsed().unwrap_or_default() < SETTLE
            {
                deferred = true;
                continue;
            }
            self.load(&path, &name, stamp, now, force);
        }
        let gone: Vec<String> = self
            .by_name
            .keys()
            .filter(|n| !seen.contains(*n))
            .cloned()
            .collect();
        for name in gone {
            self.changed = true;
            self.by_name.remove(&name);
            tracing::info!(alert = name.as_str(), event = "removed");
            self.removed.push(name);
        }
        let was = self.rejected.len();
        self.rejected.retain(|p, _| p.exists());
        self.changed |= self.rejected.len() != was;
        let rejected = &self.rejected;
        self.problems.retain(|p, _| rejected.contains_key(p));
        deferred
    }

    /// Whether a scan changed anything since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// At start: alerts whose last window (`last_window_end`, from the
    /// store) ended more than one period before `now` missed a tick while
    /// the daemon was down; they are made due at `now`, so their catch-up
    /// search runs at once instead of at the next aligned tick, and aligned
    /// again from then on. Alerts that never ran have no gap to cover and
    /// wait for their first tick. Returns their names.
    pub fn overdue_at_start(
        &mut self,
        now: DateTime<Utc>,
        last_window_end: impl Fn(&str) -> Option<DateTime<Utc>>,
    ) -> Vec<String> {
        let mut due = Vec::new();
        for (name, s) in &mut self.by_name {
            if s.next_due.is_none() {
                continue;
            }
            let Some(last) = last_window_end(name) else {
                continue;
            };
            let delay =
                chrono::Duration::from_std(s.alert.query_delay).unwrap_or(chrono::Duration::MAX);
            let end = now.checked_sub_signed(delay).unwrap_or(now);
            if end.signed_duration_since(last) > s.alert.period(now) {
                s.next_due = Some(now);
                due.push(name.clone());
            }
        }
        due
    }

    /// Files that failed validation and are not running.
    pub fn rejected(&self) -> usize {
        self.rejected.len()
    }

    /// The rejected files and their problems, by path.
    pub fn problems(&self) -> &BTreeMap<PathBuf, Vec<String>> {
        &self.problems
    }

    fn load(
        &mut self,
        path: &Path,
        name: &str,
        stamp: Option<Stamp>,
        now: DateTime<Utc>,
        force: bool,
    ) {
        // One checked read: type, symlink target and size are verified before
        // any byte is read, so a FIFO or /dev/zero can't stall or exhaust the
        // scheduler; the digest and the alert come from the same bytes.
        let loaded = read_alert_file(&self.dir, path).and_then(|bytes| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            // elastalert.yaml's defaults are part of an ElastAlert rule.
            if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(crate::frontends::elastalert::is_rule_extension)
            {
                crate::frontends::elastalert::globals::path()
                    .and_then(|p| std::fs::read(p).ok())
                    .hash(&mut h);
            }
            load_bytes(path, &bytes, &self.scripts).map(|a| (a, h.finish()))
        });
        self.changed = true;
        match loaded {
            Ok((alert, digest)) => {
                self.rejected.remove(path);
                self.problems.remove(path);
                let alert = Arc::new(alert);
                let known = self.by_name.get(name).map(|s| s.digest);
                if known != Some(digest) {
                    for w in alert.body.warnings() {
                        tracing::warn!(alert = name, event = "ignored", problem = %w);
                    }
                }
                match self.by_name.get_mut(name) {
                    Some(s) => {
                        let changed = s.digest != digest;
                        s.stamp = stamp;
                        if changed {
                            let schedule_changed = s.alert.schedule.to_string()
                                != alert.schedule.to_string()
                                || s.alert.timezone != alert.timezone
                                || s.alert.active != alert.active;
                            s.alert = alert;
                            s.digest = digest;
                            if schedule_changed || s.next_due.is_none() {
                                s.next_due = next_due(&s.alert, now);
                                self.rescheduled.push(name.to_owned());
                            }
                            tracing::info!(alert = name, event = "reloaded", schedule = %s.alert.schedule, active = s.alert.active);
                        } else if force {
                            s.alert = alert;
                        }
                    }
                    None => {
                        let s = Scheduled {
                            next_due: next_due(&alert, now),
                            alert,
                            running: Arc::new(AtomicBool::new(false)),
                            stamp,
                            digest,
                        };
                        tracing::info!(alert = name, event = "loaded", schedule = %s.alert.schedule, active = s.alert.active);
                        self.by_name.insert(name.to_owned(), s);
                        self.rescheduled.push(name.to_owned());
                    }
                }
            }
            Err(e) => {
                if let Some(s) = self.by_name.get_mut(name) {
                    // Keep running the earlier valid version; remember this
                    // stamp so the same mistake is logged once.
                    s.stamp = stamp;
                    log_rejected(name, &e, true);
                } else {
                    log_rejected(name, &e, false);
                }
                self.problems.insert(path.to_owned(), problem_lines(&e));
                self.rejected.insert(path.to_owned(), stamp);
            }
        }
    }
}

fn problem_lines(e: &LoadError) -> Vec<String> {
    e.problems().iter().map(ToString::to_string).collect()
}

fn log_rejected(name: &str, e: &LoadError, kept: bool) {
    for p in e.problems() {
        if kept {
            tracing::error!(alert = name, event = "rejected", kept = "previous", problem = %p);
        } else {
            tracing::error!(alert = name, event = "rejected", problem = %p);
        }
    }
}
