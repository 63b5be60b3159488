//! One row per rule of what esalert knows about it, from its file, the
//! store, the silences and alerts.log: `esalert status` prints them and the
//! console's Alerts page shows them.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::render::fmt_time;
use crate::silence::Silence;
use crate::throttle::{AlertState, RULE_SCOPE, WHOLE_RULE};

/// What `esalert status` shows of one rule (and the console's Alerts page).
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusRow {
    /// The rule (file stem).
    pub name: String,
    /// Whether it runs; `None` when its file is gone.
    pub active: Option<bool>,
    /// Its schedule as written.
    pub schedule: Option<String>,
    /// When it last ran.
    pub last_run: Option<String>,
    /// How that run went.
    pub last_outcome: Option<String>,
    /// When the schedule next runs it (active alerts).
    pub next_run: Option<String>,
    /// Runs that failed in a row.
    pub consecutive_failures: u32,
    /// The error of the last failed run, as logged.
    pub last_error: Option<String>,
    /// The whole-rule throttle in force.
    pub throttled_until: Option<String>,
    /// Deliveries still owed, by id.
    pub owed: Vec<String>,
    /// Silences in force.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub silences: Vec<crate::silence::Silence>,
    /// Group keys whose incident is open (fired, not resolved yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub incidents: Vec<String>,
    /// Matches gathered by an open digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<u64>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    /// Watcher actions' acknowledgement.
    pub actions: std::collections::BTreeMap<String, crate::throttle::AckState>,
    /// Why the file is rejected, `path:line:col: message` per problem: the
    /// daemon doesn't load it (or keeps running its earlier version).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<String>,
}

impl StatusRow {
    /// Whether someone should look at it: its file is rejected, or its
    /// last run errored or delivered nothing.
    pub fn in_error(&self) -> bool {
        !self.rejected.is_empty()
            || (self.active.is_some()
                && matches!(self.last_outcome.as_deref(), Some("error" | "failed")))
    }
}

/// The last `alerts.log` bytes `status` reads for errors.
pub const LOG_TAIL: u64 = 8 << 20;

/// The error of each alert's most recent failed run (`outcome=error`, or
/// `failed`/`partial` deliveries) in the tail of `alerts.log`.
pub fn last_errors(log_dir: &Path) -> std::collections::BTreeMap<String, String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut out = std::collections::BTreeMap::new();
    let Ok(mut f) = std::fs::File::open(log_dir.join(crate::log::LOG_NAME)) else {
        return out;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(LOG_TAIL);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return out;
    }
    for line in String::from_utf8_lossy(&bytes).lines() {
        let fields = logfmt_fields(line);
        let get = |k: &str| fields.iter().find(|(key, _)| *key == k).map(|(_, v)| v);
        let (Some(alert), Some(outcome)) = (get("alert"), get("outcome")) else {
            continue;
        };
        let error = match outcome.as_str() {
            "error" => get("error"),
            "failed" | "partial" => get("errors"),
            _ => None,
        };
        if let Some(e) = error.filter(|e| !e.is_empty()) {
            out.insert(alert.clone(), e.clone());
        }
    }
    out
}

/// The `key=value` pairs of an alerts.log line (values unquoted).
pub fn logfmt_fields(line: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while let Some(eq) = rest.find('=') {
        let key = &rest[..eq];
        if key.contains(' ') {
            // Not logfmt (a stray line): stop rather than misread it.
            break;
        }
        rest = &rest[eq + 1..];
        let mut val = String::new();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => val.push('\n'),
                        Some('t') => val.push('\t'),
                        Some('r') => val.push('\r'),
                        Some(c) => val.push(c),
                        None => {}
                    },
                    c => val.push(c),
                }
            }
            rest = quoted.get(end..).unwrap_or("");
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            val.push_str(&rest[..end]);
            rest = &rest[end..];
        }
        out.push((key, val));
        rest = rest.trim_start();
    }
    out
}

/// The row of rule `name`: its definition when loaded, its state in the
/// store, the silences (all of them; only the rule's in force are kept),
/// the last errors of [`last_errors`], and its file's problems.
pub fn row(
    name: String,
    alert: Option<&Alert>,
    st: Option<&AlertState>,
    silences: &[Silence],
    errors: &BTreeMap<String, String>,
    rejected: Vec<String>,
    now: DateTime<Utc>,
) -> StatusRow {
    let last_outcome = st.and_then(|s| s.last_outcome.clone());
    let failing = matches!(
        last_outcome.as_deref(),
        Some("error" | "failed" | "partial")
    );
    StatusRow {
        active: alert.map(|a| a.active),
        schedule: alert.map(|a| a.schedule.to_string()),
        last_run: st.and_then(|s| s.last_run).map(|t| fmt_time(&t)),
        next_run: alert
            .filter(|a| a.active)
            .and_then(|a| a.schedule.next_after(now, a.timezone))
            .map(|t| fmt_time(&t)),
        consecutive_failures: st.map_or(0, |s| s.consecutive_failures),
        last_error: if failing {
            errors.get(&name).cloned().or_else(|| {
                // No log at hand: the store keeps failed deliveries' errors.
                st.and_then(|s| {
                    s.outbox
                        .iter()
                        .flat_map(|m| m.deliveries.values())
                        .filter_map(|d| d.last_error.clone())
                        .next_back()
                })
            })
        } else {
            None
        },
        last_outcome,
        throttled_until: st
            .and_then(|s| s.throttled(WHOLE_RULE, RULE_SCOPE, now))
            .map(|t| fmt_time(&t)),
        owed: st
            .map(|s| {
                let mut owed: Vec<String> = s.outbox.iter().flat_map(|m| m.owed()).collect();
                owed.dedup();
                owed
            })
            .unwrap_or_default(),
        silences: silences
            .iter()
            .filter(|s| s.rule == name && s.until > now)
            .cloned()
            .collect(),
        incidents: st
            .map(|s| {
                s.keys
                    .iter()
                    .filter(|(k, v)| !k.is_empty() && v.firing_since.is_some())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default(),
        digest: st.and_then(|s| s.digest.as_ref()).map(|d| d.total()),
        actions: alert
            .and_then(|a| a.watch())
            .map(|w| {
                w.actions
                    .iter()
                    .map(|a| {
                        let ack = st.map(|s| s.ack(WHOLE_RULE, &a.id)).unwrap_or_default();
                        (a.id.clone(), ack)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        rejected,
        name,
    }
}
