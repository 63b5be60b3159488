//! A dry run over the past (`esalert test NAME --since 24h`): the rule runs
//! once per schedule tick of the range, as the daemon would have run it,
//! through the real pipeline — window, evaluation, gate (throttle, groups,
//! digests), outbox, deliveries, health — on a [`ManualClock`] stepped to
//! each tick, an in-memory state and sinks that only record. Whatever the
//! pipeline learns to do, the simulation does too; nothing is stored or
//! sent.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tracing::instrument::WithSubscriber;

use super::{ManualClock, Outcome, RunError, Runner, Settings};
use crate::alert::Alert;
use crate::condition::ScriptEngine;
use crate::notify::Notifiers;
use crate::render::{Window, fmt_time};
use crate::search::EsClient;
use crate::sinks::{Captured, Message, Sinks};
use crate::throttle::{MemoryState, StateBackend};

/// The most windows one simulation runs.
pub const MAX_WINDOWS: usize = 1440;

/// Schedule ticks examined at most while looking for the range's last
/// [`MAX_WINDOWS`] (a cron schedule has no "previous tick").
const MAX_TICKS_SCANNED: usize = 1_000_000;

/// Why a simulation can't run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// The range holds no schedule tick.
    #[error(
        "no run of {alert} is due between {since} and {until} (schedule {schedule}); give a longer --since"
    )]
    NoTicks {
        /// The rule.
        alert: String,
        /// The range's start.
        since: String,
        /// The range's end.
        until: String,
        /// The rule's schedule.
        schedule: String,
    },
    /// The schedule is too dense to find the range's last windows.
    #[error(
        "{alert}'s schedule {schedule} is due more than {MAX_TICKS_SCANNED} times in the range; give a shorter --since"
    )]
    TooDense {
        /// The rule.
        alert: String,
        /// The rule's schedule.
        schedule: String,
    },
    /// The pipeline failed (it can't, on an in-memory state).
    #[error(transparent)]
    Run(#[from] RunError),
}

/// The ticks a simulation runs, and where its first window starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    /// Where the first window starts (the range's start, or the end of the
    /// window before the first one kept).
    pub start: DateTime<Utc>,
    /// The due times, oldest first.
    pub due: Vec<DateTime<Utc>>,
    /// Whether the range had more than [`MAX_WINDOWS`] windows and only its
    /// last ones are kept.
    pub truncated: bool,
}

/// The ticks whose windows lie in `[since, until]`: due times `t` with
/// `since < t - query_delay` and `t <= until`, at most the last
/// [`MAX_WINDOWS`].
pub fn ticks(
    rule: &Alert,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Ticks, SimulateError> {
    let delay = chrono::Duration::from_std(rule.query_delay).unwrap_or(chrono::Duration::MAX);
    let first_after = since.checked_add_signed(delay).unwrap_or(since);
    let no_ticks = || SimulateError::NoTicks {
        alert: rule.name.clone(),
        since: fmt_time(&since),
        until: fmt_time(&until),
        schedule: rule.schedule.to_string(),
    };
    // A schedule has no "previous tick": look back from `until` over a span
    // expected to hold more than MAX_WINDOWS ticks, twice as far until it
    // does or the range's start is reached.
    let mut span = rule
        .period(until)
        .checked_mul(i32::try_from(MAX_WINDOWS + 1).unwrap_or(i32::MAX))
        .unwrap_or(chrono::Duration::MAX);
    loop {
        let looked_from = until
            .checked_sub_signed(span)
            .map_or(first_after, |t| t.max(first_after));
        let (due, before) = last_ticks(rule, looked_from, until)?;
        if before.is_none() && looked_from > first_after {
            span = span.checked_mul(2).unwrap_or(chrono::Duration::MAX);
            continue;
        }
        if due.is_empty() {
            return Err(no_ticks());
        }
        return Ok(Ticks {
            // After a cut, the first window starts where the daemon's run
            // at the tick before it would have ended.
            start: before.map_or(since, |b| b.checked_sub_signed(delay).unwrap_or(b)),
            truncated: before.is_some(),
            due,
        });
    }
}

/// The last [`MAX_WINDOWS`] due times in `(after, until]`, and the due
/// time just before them if any was dropped.
type Last = (Vec<DateTime<Utc>>, Option<DateTime<Utc>>);

fn last_ticks(
    rule: &Alert,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Last, SimulateError> {
    let mut kept = std::collections::VecDeque::with_capacity(MAX_WINDOWS + 1);
    let mut before = None;
    let mut t = after;
    for _ in 0..MAX_TICKS_SCANNED {
        match rule.schedule.next_after(t, rule.timezone) {
            Some(next) if next <= until => {
                kept.push_back(next);
                if kept.len() > MAX_WINDOWS {
                    before = kept.pop_front();
                }
                t = next;
            }
            _ => return Ok((kept.into(), before)),
        }
    }
    Err(SimulateError::TooDense {
        alert: rule.name.clone(),
        schedule: rule.schedule.to_string(),
    })
}

/// Times as esalert writes every time ([`fmt_time`]).
fn as_fmt_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(t))
}

/// One notification a window would have sent: one match of one key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notified {
    /// The group key (`""`: the whole rule).
    pub key: String,
    /// `resolved`, `digest` or `more` for a notice of the pipeline's making.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its subject, as the first of its messages says it.
    pub subject: String,
    /// Its text, as the first of its messages says it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// Where its messages would have gone, one entry per message.
    pub sinks: Vec<String>,
}

/// What one simulated run came to.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WindowRun {
    /// The tick.
    #[serde(serialize_with = "as_fmt_time")]
    pub due: DateTime<Utc>,
    /// The time range searched.
    pub window: Window,
    /// The run's outcome, as alerts.log would say it.
    pub outcome: String,
    /// Whether the condition matched.
    pub matched: bool,
    /// The response's hit count.
    pub hits: u64,
    /// The notifications it would have sent.
    pub notifications: Vec<Notified>,
    /// Notices about alerting itself ("alert is failing") it would have
    /// sent, by subject.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// The run's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A whole simulation.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// Where the first window starts.
    pub start: DateTime<Utc>,
    /// Whether only the last [`MAX_WINDOWS`] windows of the range ran.
    pub truncated: bool,
    /// Every run, oldest first.
    pub runs: Vec<WindowRun>,
}

impl Simulation {
    /// Notifications that would have been sent.
    pub fn notifications(&self) -> usize {
        self.runs.iter().map(|r| r.notifications.len()).sum()
    }

    /// The keys that would have been notified, each once.
    pub fn keys(&self) -> BTreeSet<&str> {
        self.runs
            .iter()
            .flat_map(|r| &r.notifications)
            .map(|n| n.key.as_str())
            .collect()
    }
}

/// The subject a message would carry, for a summary line.
fn subject_of(m: &Message) -> String {
    match m {
        Message::Webhook(w) => format!("{} {}", w.method, w.url),
        Message::Index { index, docs, .. } => format!("{} document(s) to {index}", docs.len()),
        other => other.subject().unwrap_or_default(),
    }
}

/// Runs `rule` at every tick, as the daemon would have: searches go to
/// `es`, everything else stays in memory.
pub async fn run(
    rule: &Alert,
    es: EsClient,
    scripts: Arc<ScriptEngine>,
    notifiers: Notifiers,
    ticks: &Ticks,
) -> Result<Simulation, SimulateError> {
    let state: Arc<dyn StateBackend> = Arc::new(MemoryState::new());
    // The first window starts where the range does.
    state.update_rule(&rule.name, |st| st.last_window_end = Some(ticks.start));
    let first = ticks.due.first().copied().unwrap_or(ticks.start);
    let clock = Arc::new(ManualClock::new(first));
    let (sinks, captured) = Sinks::capture();
    let runner = Runner::with_state(
        es,
        scripts,
        notifiers,
        state.clone(),
        clock.clone(),
        Settings::default(),
    )
    .with_sinks(sinks);
    let mut runs = Vec::with_capacity(ticks.due.len());
    for &due in &ticks.due {
        clock.set(due);
        runs.push(run_one(&runner, state.as_ref(), &captured, rule, due).await?);
    }
    Ok(Simulation {
        start: ticks.start,
        truncated: ticks.truncated,
        runs,
    })
}

async fn run_one(
    runner: &Runner,
    state: &dyn StateBackend,
    captured: &Captured,
    rule: &Alert,
    due: DateTime<Utc>,
) -> Result<WindowRun, SimulateError> {
    let (last_seq, searched_to) = state.read_rule(&rule.name, |st| {
        (
            st.and_then(|s| s.outbox.iter().map(|m| m.seq).max())
                .unwrap_or(0),
            st.and_then(|s| s.last_window_end),
        )
    });
    // The daemon's lines (`outcome=fired`…) would claim what didn't
    // happen: the simulation reports each run itself.
    let report = Box::pin(runner.run_alert_due(rule, Some(due)))
        .with_subscriber(tracing::subscriber::NoSubscriber::default())
        .await?;
    let end = due
        .checked_sub_signed(chrono::Duration::from_std(rule.query_delay).unwrap_or_default())
        .unwrap_or(due);
    let window = Window {
        start: searched_to.filter(|s| *s <= end).unwrap_or(end),
        end,
    };
    let mut sent: Vec<Message> = std::mem::take(
        &mut *captured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    // The matches this run wrote are its notifications (their keys as the
    // outbox records them); whatever else was sent is a notice.
    let notifications = state.read_rule(&rule.name, |st| {
        let Some(st) = st else { return Vec::new() };
        st.outbox
            .iter()
            .filter(|m| m.seq > last_seq)
            .map(|m| {
                let mut ds: Vec<_> = m.deliveries.values().collect();
                ds.sort_by_key(|d| d.order);
                for d in &ds {
                    if let Some(i) = sent.iter().position(|s| *s == d.message) {
                        sent.remove(i);
                    }
                }
                Notified {
                    key: m.key.clone(),
                    kind: m.notice.clone(),
                    subject: ds
                        .first()
                        .map(|d| subject_of(&d.message))
                        .unwrap_or_default(),
                    text: ds
                        .first()
                        .and_then(|d| d.message.text())
                        .unwrap_or_default(),
                    sinks: ds.iter().map(|d| d.message.sink().to_owned()).collect(),
                }
            })
            .collect()
    });
    let (matched, hits) = report
        .evaluation
        .as_ref()
        .map_or((false, 0), |e| (e.matched, e.hits));
    Ok(WindowRun {
        due,
        window,
        outcome: match &report.outcome {
            Outcome::Fired(_) => "fired".to_owned(),
            o => o.as_str().to_owned(),
        },
        matched,
        hits,
        notifications,
        notices: sent.iter().map(subject_of).collect(),
        error: report.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::ScriptEngine;
    use chrono::TimeZone;

    fn rule(schedule: &str, delay: &str) -> Alert {
        let text = serde_json::json!({"index": "a", "body": {}, "message": "m",
            "schedule": schedule, "query_delay": delay})
        .to_string();
        crate::alert::parse_alert(
            "t",
            std::path::Path::new("t.json"),
            &text,
            &ScriptEngine::default(),
        )
        .unwrap()
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap()
    }

    #[test]
    fn ticks_are_the_due_times_whose_windows_lie_in_the_range() {
        let r = rule("1h", "0s");
        let t = ticks(&r, at(0, 30), at(4, 0)).unwrap();
        assert_eq!(t.due, [at(1, 0), at(2, 0), at(3, 0), at(4, 0)]);
        assert_eq!(t.start, at(0, 30));
        assert!(!t.truncated);
        // A query delay shifts the windows back, never before the range.
        let r = rule("1h", "10m");
        let t = ticks(&r, at(0, 55), at(4, 0)).unwrap();
        assert_eq!(t.due, [at(2, 0), at(3, 0), at(4, 0)]);
    }

    #[test]
    fn only_the_last_windows_of_a_long_range_run() {
        let r = rule("1m", "0s");
        let t = ticks(&r, at(0, 0) - chrono::Duration::days(3), at(0, 0)).unwrap();
        assert!(t.truncated);
        assert_eq!(t.due.len(), MAX_WINDOWS);
        assert_eq!(t.due.last(), Some(&at(0, 0)));
        assert_eq!(t.start, at(0, 0) - chrono::Duration::minutes(1440));
        // A cron schedule too: every 30 minutes on weekdays.
        let r = rule("0 */30 * * * 1-5", "0s");
        let t = ticks(&r, at(0, 0) - chrono::Duration::days(60), at(0, 0)).unwrap();
        assert!(t.truncated);
        assert_eq!(t.due.len(), MAX_WINDOWS);
        assert!(t.start < t.due[0]);
    }

    #[test]
    fn a_range_without_a_tick_is_refused() {
        let r = rule("1h", "0s");
        let e = ticks(&r, at(0, 10), at(0, 50)).unwrap_err();
        assert!(e.to_string().contains("give a longer --since"), "{e}");
    }
}
