//! An alert's recent history, from alerts.log's logfmt lines (the run
//! line, then its key and action lines) and the store's outbox (what was
//! rendered and where each delivery stands).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::render::fmt_time;
use crate::rule::Rule;
use crate::status::logfmt_fields;
use crate::throttle::AlertState;

/// The most bytes read from the end of each daily log file.
const TAIL: u64 = 32 << 20;

/// The most runs kept (the newest).
pub const MAX_RUNS: usize = 5000;

/// A group key's line of a run.
#[derive(Debug, Clone, Serialize)]
pub struct KeyLine {
    /// The key.
    pub key: String,
    /// `fired`, `throttled`, `silenced`, …
    pub outcome: String,
    /// Why, when the line says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An action's (medium's) line of a run.
#[derive(Debug, Clone, Serialize)]
pub struct ActionLine {
    /// The action id.
    pub id: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// Why, when the line says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A delivery of a notification, as the store has it.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// The delivery id (`slack`, `email`, an action id).
    pub id: String,
    /// The sink.
    pub sink: String,
    /// `pending`, `sent`, `dropped`.
    pub status: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The last attempt's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its subject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// A notification in the store's outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// The tick that matched.
    pub matched_at: String,
    /// The group key (empty: the whole rule).
    pub key: String,
    /// `resolved`, `digest`, `more` for a notice of the pipeline's making.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    /// Its deliveries, in order.
    pub deliveries: Vec<Sent>,
    #[serde(skip)]
    at: DateTime<Utc>,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// When its line was written.
    pub ts: String,
    /// Its outcome.
    pub outcome: String,
    /// `redelivered` for a retry's line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// The response's hits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hits: Option<u64>,
    /// How long the search took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
    /// Whether its count came from a search folded with other alerts'.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
    /// The window searched, as the run's line says it (lines written before
    /// esalert logged windows: as the schedule gives it).
    pub window_start: String,
    /// The window's end.
    pub window_end: String,
    /// The media delivered to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Throttled or silenced until.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The error, or delivery errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its group keys' lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyLine>,
    /// Its actions' lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionLine>,
    /// What it rendered, when the store still has it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<Notification>,
    #[serde(skip)]
    pub(crate) at: DateTime<Utc>,
}

/// Another line about the alert: loaded, rejected, a console action…
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// When.
    pub ts: String,
    /// The line's fields, but `ts` and `alert`.
    pub fields: BTreeMap<String, String>,
}

/// An alert's history.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// The alert.
    pub alert: String,
    /// The start of the span.
    pub since: String,
    /// Its end.
    pub until: String,
    /// Runs, oldest first.
    pub runs: Vec<Run>,
    /// Other lines about it, oldest first.
    pub events: Vec<Event>,
    /// Notifications in the store no run in the span accounts for.
    pub notifications: Vec<Notification>,
    /// Notifications the history index holds (an `elasticsearch`
    /// destination), newest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indexed: Vec<super::indexed::Indexed>,
    /// Why the history index could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indexed_error: Option<String>,
}

/// The daily files that may hold lines since `since`, oldest first; the
/// plain `alerts.log` when there are none (a log that doesn't rotate).
fn files(dir: &Path, since: DateTime<Utc>) -> Vec<PathBuf> {
    let prefix = format!("{}.", crate::log::LOG_NAME);
    let first = since.date_naive();
    let mut dated: Vec<(chrono::NaiveDate, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let day =
                chrono::NaiveDate::parse_from_str(name.strip_prefix(&prefix)?, "%Y-%m-%d").ok()?;
            (day >= first).then(|| (day, e.path()))
        })
        .collect();
    dated.sort();
    if dated.is_empty() {
        return vec![dir.join(crate::log::LOG_NAME)];
    }
    dated.into_iter().map(|(_, p)| p).collect()
}

/// The last [`TAIL`] bytes of a file, from its first whole line.
fn tail(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(TAIL);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if from > 0
        && let Some(nl) = text.find('\n')
    {
        text.drain(..=nl);
    }
    text
}

fn notifications(st: Option<&AlertState>) -> Vec<Notification> {
    let Some(st) = st else { return Vec::new() };
    st.outbox
        .iter()
        .map(|m| {
            let mut ds: Vec<(&String, &crate::throttle::Delivery)> = m.deliveries.iter().collect();
            ds.sort_by_key(|(_, d)| d.order);
            Notification {
                matched_at: fmt_time(&m.matched_at),
                key: m.key.clone(),
                notice: m.notice.clone(),
                deliveries: ds
                    .into_iter()
                    .map(|(id, d)| Sent {
                        id: id.clone(),
                        sink: d.message.sink().to_owned(),
                        status: serde_json::to_value(d.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        attempts: d.attempts,
                        error: d.last_error.clone(),
                        subject: d.message.subject(),
                        text: d.message.text(),
                    })
                    .collect(),
                at: m.matched_at,
            }
        })
        .collect()
}

/// The history of `rule` between `since` and `until`, from the log in
/// `log_dir` and the rule's state `st`.
pub fn read(
    log_dir: &Path,
    name: &str,
    rule: Option<&Rule>,
    st: Option<&AlertState>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> History {
    let needle = format!(" alert={name}");
    let mut runs: Vec<Run> = Vec::new();
    let mut events = Vec::new();
    for path in files(log_dir, since) {
        for line in tail(&path).lines() {
            // Cheap test first: most lines are about other alerts.
            let Some(i) = line.find(&needle) else {
                continue;
            };
            if !line[i + needle.len()..].starts_with([' ', '\n']) && line.len() != i + needle.len()
            {
                continue;
            }
            let fields = logfmt_fields(line);
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(key, _)| *key == k)
                    .map(|(_, v)| v.clone())
            };
            if get("alert").as_deref() != Some(name) {
                continue;
            }
            let Some(at) = get("ts")
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
            else {
                continue;
            };
            if at < since || at > until {
                continue;
            }
            let outcome = get("outcome");
            if let (Some(o), Some(key)) = (&outcome, get("key")) {
                if let Some(r) = runs.last_mut() {
                    r.keys.push(KeyLine {
                        key,
                        outcome: o.clone(),
                        reason: get("reason"),
                    });
                }
                continue;
            }
            if let (Some(o), Some(id)) = (&outcome, get("action")) {
                if let Some(r) = runs.last_mut() {
                    r.actions.push(ActionLine {
                        id,
                        outcome: o.clone(),
                        reason: get("reason"),
                    });
                }
                continue;
            }
            let event = get("event");
            match outcome {
                Some(outcome) if event.as_deref().is_none_or(|e| e == "redelivered") => {
                    let delay = rule
                        .and_then(|r| chrono::Duration::from_std(r.query_delay).ok())
                        .unwrap_or_default();
                    // The window the line names; older lines have none, and
                    // get the one the schedule gives.
                    let logged = |k: &str| {
                        get(k)
                            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                            .map(|t| t.to_utc())
                    };
                    let end = logged("window_end")
                        .unwrap_or_else(|| at.checked_sub_signed(delay).unwrap_or(at));
                    let start = logged("window_start").unwrap_or_else(|| {
                        rule.and_then(|r| end.checked_sub_signed(r.period(end)))
                            .unwrap_or(end)
                    });
                    runs.push(Run {
                        ts: fmt_time(&at),
                        outcome,
                        event,
                        hits: get("hits").and_then(|h| h.parse().ok()),
                        took_ms: get("took_ms").and_then(|h| h.parse().ok()),
                        folded: get("folded").as_deref() == Some("true"),
                        window_start: fmt_time(&start),
                        window_end: fmt_time(&end),
                        media: get("media"),
                        until: get("until"),
                        error: get("error").or_else(|| get("errors")),
                        keys: Vec::new(),
                        actions: Vec::new(),
                        notifications: Vec::new(),
                        at,
                    });
                }
                _ => events.push(Event {
                    ts: fmt_time(&at),
                    fields: fields
                        .iter()
                        .filter(|(k, _)| !matches!(*k, "ts" | "alert"))
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect(),
                }),
            }
        }
    }
    if runs.len() > MAX_RUNS {
        runs.drain(..runs.len() - MAX_RUNS);
    }
    // Each stored notification goes with the first run logged at or after
    // its tick (within a few minutes: a run's line follows its tick).
    let mut unmatched = Vec::new();
    for n in notifications(st) {
        let slot = runs.iter_mut().find(|r| {
            r.event.is_none()
                && r.at >= n.at
                && r.at.signed_duration_since(n.at) < chrono::Duration::minutes(10)
        });
        match slot {
            Some(r) => r.notifications.push(n),
            None => unmatched.push(n),
        }
    }
    History {
        alert: name.to_owned(),
        since: fmt_time(&since),
        until: fmt_time(&until),
        runs,
        events,
        notifications: unmatched,
        indexed: Vec::new(),
        indexed_error: None,
    }
}
