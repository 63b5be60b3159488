//! A full alert run: evaluate, then throttle, outbox and deliver.
//!
//! The order of writes is what makes esalert crash-safe: a match's
//! notification is written to the store before any delivery starts, and each
//! medium's result is written as soon as it is known. After a crash the next
//! run finds the owed media in the outbox and delivers them, so each medium
//! gets the notification at least once, and at most once more than needed
//! (the one that was in flight).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::alert::{Alert, Medium};
use crate::condition::ScriptEngine;
use crate::engine::{self, EngineError, Evaluation};
use crate::notify::{Notification, Notifiers, NotifyError};
use crate::render::fmt_time;
use crate::render::{Rendered, Window};
use crate::search::{EsClient, SearchError};
use crate::throttle::{
    Delivery, DeliveryStatus, Match, PRUNE_AFTER, SharedStore, Store, StoreError,
};
use crate::watcher::Watch;
use crate::watcher::exec::{Env as WatchEnv, Mode as WatchMode};

/// Where "now" comes from; tests drive it by hand.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock(std::sync::Mutex::new(t))
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: chrono::Duration) {
        *self.0.lock().expect("clock lock") += d;
    }

    /// Sets the clock.
    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().expect("clock lock") = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock lock")
    }
}

/// In-run retries of a transient delivery failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per medium within one run, the first included.
    pub tries: usize,
    /// The first backoff delay; later ones double, with jitter.
    pub min_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            tries: 3,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Settings of a runner.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// A match whose delivery is still owed after this long is dropped.
    pub max_retry_age: Duration,
    /// In-run retries.
    pub retry: RetryPolicy,
    /// How many alerts run at once in [`Runner::run_all`].
    pub concurrency: usize,
    /// Consecutive failures of one alert before "alert is failing" is sent.
    pub error_alert_after: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retry_age: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            concurrency: 16,
            error_alert_after: 5,
        }
    }
}

/// Why a runner can't go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be written; esalert stops rather than deliver
    /// without a record.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A failed run, as the store's bookkeeping needs it.
struct Failure<'a> {
    message: String,
    search: Option<&'a SearchError>,
}

/// What one run of one alert came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The condition did not match.
    NoMatch,
    /// Delivered to every medium.
    Fired(Vec<Medium>),
    /// Matched, but throttled until the given time.
    Throttled(DateTime<Utc>),
    /// Every owed medium failed; the next run delivers again.
    Failed,
    /// Some media succeeded and some failed; the failed ones are retried.
    Partial,
    /// Given up: the match grew older than `max_retry_age`.
    Dropped,
    /// The search or evaluation failed.
    Error,
}

impl Outcome {
    /// The outcome's name in alerts.log and the store.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::NoMatch => "no_match",
            Outcome::Fired(_) => "fired",
            Outcome::Throttled(_) => "throttled",
            Outcome::Failed => "failed",
            Outcome::Partial => "partial",
            Outcome::Dropped => "dropped",
            Outcome::Error => "error",
        }
    }
}

/// The report of one run.
#[derive(Debug)]
pub struct RunReport {
    /// The alert.
    pub alert: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The evaluation, when the search succeeded.
    pub evaluation: Option<Evaluation>,
    /// The search/evaluation error, for [`Outcome::Error`].
    pub error: Option<String>,
    /// Each medium's error from this run's deliveries.
    pub delivery_errors: BTreeMap<Medium, String>,
    /// Each medium's delivery attempts in this run, and whether the last succeeded.
    pub attempts: BTreeMap<Medium, (u32, bool)>,
}

/// What delivering a match's owed media came to.
#[derive(Debug, Clone)]
struct Delivered {
    outcome: Outcome,
    errors: BTreeMap<Medium, String>,
    attempts: BTreeMap<Medium, (u32, bool)>,
}

impl Delivered {
    fn dropped() -> Self {
        Delivered {
            outcome: Outcome::Dropped,
            errors: BTreeMap::new(),
            attempts: BTreeMap::new(),
        }
    }
}

/// Runs alerts end to end against one cluster, one store and the media.
pub struct Runner {
    es: EsClient,
    scripts: Arc<ScriptEngine>,
    notifiers: Notifiers,
    store: Arc<SharedStore>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    /// For Watcher `http` inputs and `webhook` actions.
    http: reqwest::Client,
    /// Bounds concurrent searches (the daemon's `--max-concurrency`).
    /// Deliveries don't hold a slot, so a rate-limited Slack can't stall
    /// other alerts' searches.
    search_slots: Option<Arc<tokio::sync::Semaphore>>,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("esalert/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

fn media_list(media: &[Medium]) -> String {
    media
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

impl Runner {
    /// Builds a runner. Needs a tokio runtime (the store's writer runs on it).
    pub fn new(
        es: EsClient,
        scripts: Arc<ScriptEngine>,
        notifiers: Notifiers,
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Runner {
        let store = SharedStore::new(store);
        Self::with_shared_store(es, scripts, notifiers, store, clock, settings)
    }

    /// Builds a runner on a store that another runner may share (the
    /// daemon builds a new runner when credentials are reloaded).
    pub fn with_shared_store(
        es: EsClient,
        scripts: Arc<ScriptEngine>,
        notifiers: Notifiers,
        store: Arc<SharedStore>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Runner {
        Runner {
            es,
            scripts,
            notifiers,
            store,
            clock,
            settings,
            http: http_client(),
            search_slots: None,
        }
    }

    /// Bounds concurrent searches (and watch runs) with `slots`.
    pub fn with_search_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Runner {
        self.search_slots = Some(slots);
        self
    }

    async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.search_slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The store, e.g. to inspect it in tests.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.store
    }

    /// Runs every active alert once, at most `concurrency` at a time, and
    /// prunes store entries of alerts whose file is gone.
    pub async fn run_all(&self, alerts: &[Alert]) -> Result<Vec<RunReport>, RunError> {
        self.prune(alerts).await?;
        let results: Vec<_> = futures::stream::iter(alerts.iter().filter(|a| a.spec.active))
            .map(|a| self.run_alert(a))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut reports = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        reports.sort_by(|a, b| a.alert.cmp(&b.alert));
        Ok(reports)
    }

    async fn prune(&self, alerts: &[Alert]) -> Result<(), RunError> {
        let now = self.clock.now();
        let known: std::collections::HashSet<&str> =
            alerts.iter().map(|a| a.name.as_str()).collect();
        self.store.update(|data| {
        data.alerts.retain(|name, st| {
            if known.contains(name.as_str()) {
                st.removed_at = None;
                return true;
            }
            match st.removed_at {
                None => {
                    st.removed_at = Some(now);
                    true
                }
                Some(t) if now - t >= PRUNE_AFTER => {
                    tracing::info!(alert = name.as_str(), event = "pruned", removed_at = %fmt_time(&t));
                    false
                }
                Some(_) => true,
            }
        })
        });
        self.store.commit().await?;
        Ok(())
    }

    /// Runs one alert: evaluate, deliver what is owed, throttle, log.
    pub async fn run_alert(&self, alert: &Alert) -> Result<RunReport, RunError> {
        self.run_alert_due(alert, None).await
    }

    /// Runs one alert for the tick that was due at `due`: its window ends
    /// there, not when the run happened to start, so spreading starts over
    /// the tick (or a slow queue) never shifts a window.
    pub async fn run_alert_due(
        &self,
        alert: &Alert,
        due: Option<DateTime<Utc>>,
    ) -> Result<RunReport, RunError> {
        if let Some(w) = &alert.watch {
            let _slot = self.slot().await;
            return self.run_watch(alert, w).await;
        }
        let slot = self.slot().await;
        let now = self.clock.now();
        let window = self.window_for(alert, due.unwrap_or(now).min(now)).await;
        let result = engine::search_and_evaluate(alert, &self.es, &self.scripts, now, window).await;
        drop(slot);

        // Deliveries owed by an earlier match go first, with the message
        // rendered for that match.
        let retried = self.retry_owed(alert, now).await?;

        let mut failure: Option<EngineError> = None;
        let mut report = RunReport {
            alert: alert.name.clone(),
            outcome: Outcome::NoMatch,
            evaluation: None,
            error: None,
            delivery_errors: BTreeMap::new(),
            attempts: retried
                .as_ref()
                .map(|d| d.attempts.clone())
                .unwrap_or_default(),
        };
        match result {
            Err(e) => {
                report.outcome = Outcome::Error;
                report.error = Some(e.to_string());
                failure = Some(e);
            }
            Ok(eval) => {
                if let Some(p) = &eval.partial {
                    tracing::warn!(alert = alert.name.as_str(), event = "partial_result", reason = %p);
                }
                if let Some(p) = &eval.missing {
                    tracing::warn!(alert = alert.name.as_str(), event = "missing_path", path = %p, "condition path not in response; compare is false");
                }
                let throttled = self
                    .store
                    .read(|d| d.alerts.get(&alert.name).and_then(|s| s.throttled(now)));
                let still_owed = retried.clone().filter(|d| d.outcome != Outcome::Dropped);
                if !eval.matched {
                    report.outcome = Outcome::NoMatch;
                } else if let Some(d) = still_owed {
                    // This match is still being delivered as the earlier one:
                    // one notification per outage, not one per run.
                    report.outcome = d.outcome;
                    report.delivery_errors = d.errors;
                } else if let Some(until) = throttled {
                    report.outcome = Outcome::Throttled(until);
                } else {
                    let rendered = eval.rendered.clone().expect("a match is rendered");
                    let n = Notification::new(alert, rendered, eval.hits, now);
                    let d = self.fire(alert, n, now).await?;
                    report.outcome = d.outcome;
                    report.delivery_errors = d.errors;
                    report.attempts.extend(d.attempts);
                }
                report.evaluation = Some(eval);
            }
        }
        if !(report.outcome == Outcome::NoMatch || report.outcome == Outcome::Error)
            || retried.is_none()
        {
            self.log_report(&report);
        } else if let Some(d) = retried {
            // A retry happened on a run that did not match: log both.
            self.log_report(&report);
            self.log_retry(&alert.name, &d.outcome, &d.errors);
        }
        let notices = self
            .record_run(
                alert,
                report.outcome.as_str(),
                failure.as_ref().map(|e| Failure {
                    message: e.to_string(),
                    search: e.search_error(),
                }),
                Some(window),
                now,
            )
            .await?;
        for n in notices {
            self.send_notice(n).await;
        }
        Ok(report)
    }

    /// Runs a Watcher watch: its actions are executed directly (not through
    /// the outbox), with Watcher's per-action throttle and ack state.
    async fn run_watch(&self, alert: &Alert, watch: &Watch) -> Result<RunReport, RunError> {
        let now = self.clock.now();
        let ack_path = crate::watcher::ack_request_path(&self.store.path(), &alert.name);
        let requested = crate::watcher::take_ack_request(&ack_path);
        let mut states = self.store.read(|d| {
            d.alerts
                .get(&alert.name)
                .map(|s| s.actions.clone())
                .unwrap_or_default()
        });
        if let Some(ids) = requested {
            let acked = crate::watcher::ack(&mut states, watch, &ids);
            tracing::info!(
                alert = alert.name.as_str(),
                event = "acked",
                actions = acked.join(",")
            );
        }
        let env = WatchEnv {
            es: &self.es,
            http: &self.http,
            notifiers: &self.notifiers,
            saved: None,
        };
        let result =
            crate::watcher::exec::execute(watch, &env, now, now, WatchMode::Execute, &mut states)
                .await;
        let mut report = RunReport {
            alert: alert.name.clone(),
            outcome: Outcome::NoMatch,
            evaluation: None,
            error: None,
            delivery_errors: BTreeMap::new(),
            attempts: BTreeMap::new(),
        };
        let failure = match &result {
            Ok(rec) => {
                let state = if rec.met {
                    "executed"
                } else {
                    "execution_not_needed"
                };
                tracing::info!(
                    alert = alert.name.as_str(),
                    outcome = state,
                    hits = rec.hits
                );
                for a in &rec.actions {
                    match &a.reason {
                        Some(r) if a.status == "failure" => {
                            tracing::error!(alert = alert.name.as_str(), action = a.id.as_str(), outcome = a.status, reason = %r)
                        }
                        Some(r) => {
                            tracing::info!(alert = alert.name.as_str(), action = a.id.as_str(), outcome = a.status, reason = %r)
                        }
                        None => tracing::info!(
                            alert = alert.name.as_str(),
                            action = a.id.as_str(),
                            outcome = a.status
                        ),
                    }
                }
                if rec.met {
                    report.outcome = Outcome::Fired(Vec::new());
                }
                None
            }
            Err(e) => {
                report.outcome = Outcome::Error;
                report.error = Some(e.to_string());
                Some(Failure {
                    message: e.to_string(),
                    search: e.search_error(),
                })
            }
        };
        let outcome = match &result {
            Ok(r) if r.met => "executed",
            Ok(_) => "execution_not_needed",
            Err(_) => "error",
        };
        let notices = self.record_run(alert, outcome, failure, None, now).await?;
        self.store.update(|d| {
            d.alerts.entry(alert.name.clone()).or_default().actions = states;
        });
        self.store.commit().await?;
        for n in notices {
            self.send_notice(n).await;
        }
        Ok(report)
    }

    /// The window to search: from the end of the last successful window
    /// (so nothing goes unsearched across outages and restarts) to now,
    /// both shifted back by `query_delay`, and at most `max_catchup` long.
    async fn window_for(&self, alert: &Alert, now: DateTime<Utc>) -> Window {
        let delay = chrono::Duration::from_std(alert.spec.query_delay.value).unwrap_or_default();
        let end = now - delay;
        let len = chrono::Duration::from_std(alert.spec.schedule.window())
            .unwrap_or(chrono::Duration::minutes(1));
        let last = self
            .store
            .read(|d| d.alerts.get(&alert.name).and_then(|s| s.last_window_end));
        let mut start = last.unwrap_or(end - len).min(end);
        let cap = chrono::Duration::from_std(alert.spec.max_catchup.value)
            .unwrap_or(chrono::Duration::hours(1));
        if end - start > cap {
            let gap = (end - start).to_std().unwrap_or_default();
            tracing::warn!(
                alert = alert.name.as_str(),
                event = "catchup_truncated",
                gap = %humantime::format_duration(Duration::from_secs(gap.as_secs())),
                searched = %humantime::format_duration(alert.spec.max_catchup.value),
                "the gap since the last successful search is longer than max_catchup; only its end is searched"
            );
            start = end - cap;
        }
        Window { start, end }
    }

    /// Records the run in the store: last run and outcome, the searched
    /// window on success, consecutive failures. Returns the notices about
    /// alerting itself that this run calls for.
    async fn record_run(
        &self,
        alert: &Alert,
        outcome: &str,
        failure: Option<Failure<'_>>,
        window: Option<Window>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Notification>, RunError> {
        let notices = self
            .store
            .update(|data| self.account(alert, outcome, failure, window, now, data));
        // Bookkeeping of an ordinary run need not wait for the disk; a
        // notice about alerting itself should not go out unrecorded.
        if !notices.is_empty() {
            self.store.commit().await?;
        }
        Ok(notices)
    }

    fn account(
        &self,
        alert: &Alert,
        outcome: &str,
        failure: Option<Failure<'_>>,
        window: Option<Window>,
        now: DateTime<Utc>,
        data: &mut crate::throttle::StoreFile,
    ) -> Vec<Notification> {
        let mut notices = Vec::new();
        let st = data.alerts.entry(alert.name.clone()).or_default();
        st.last_run = Some(now);
        st.last_outcome = Some(outcome.to_owned());
        match failure {
            None => {
                if let Some(w) = window {
                    st.last_window_end = Some(w.end);
                }
                st.consecutive_failures = 0;
                st.auth_error_logged = None;
                if std::mem::take(&mut st.failing_notified) {
                    notices.push(self.notice(
                        &alert.name,
                        format!("esalert: alert {} recovered", alert.name),
                        format!("esalert: alert {} runs successfully again.", alert.name),
                        now,
                    ));
                }
                if std::mem::take(&mut data.cluster_down_notified) {
                    notices.push(self.notice(
                        "esalert",
                        format!("esalert: cluster {} is reachable again", self.es.url()),
                        format!("esalert: searches on {} succeed again.", self.es.url()),
                        now,
                    ));
                }
            }
            Some(e) => {
                st.consecutive_failures += 1;
                let search = e.search;
                let e = e.message;
                // A bad password fails every run; say so hourly, not every minute.
                let log_it = match search {
                    Some(se) if se.is_auth() => {
                        let due = st
                            .auth_error_logged
                            .is_none_or(|t| now - t >= chrono::Duration::hours(1));
                        if due {
                            st.auth_error_logged = Some(now);
                        }
                        due
                    }
                    _ => true,
                };
                if log_it {
                    tracing::error!(alert = alert.name.as_str(), outcome = "error", failures = st.consecutive_failures, error = %e);
                }
                if st.consecutive_failures >= self.settings.error_alert_after {
                    if search.is_some_and(SearchError::is_unreachable) {
                        // Every alert fails at once: one notice for the cluster.
                        if !data.cluster_down_notified {
                            data.cluster_down_notified = true;
                            notices.push(self.notice(
                                "esalert",
                                format!("esalert: cluster {} is unreachable", self.es.url()),
                                format!("esalert: cluster {} is unreachable: {e}", self.es.url()),
                                now,
                            ));
                        }
                    } else if !st.failing_notified {
                        st.failing_notified = true;
                        notices.push(self.notice(
                            &alert.name,
                            format!("esalert: alert {} is failing", alert.name),
                            format!("esalert: alert {} is failing: {e}", alert.name),
                            now,
                        ));
                    }
                }
            }
        }
        notices
    }

    fn notice(
        &self,
        alert: &str,
        subject: String,
        text: String,
        now: DateTime<Utc>,
    ) -> Notification {
        Notification {
            alert: alert.to_owned(),
            rendered: Rendered::from_data(subject, text),
            hits: 0,
            time: now,
            slack_channel: None,
            email_to: Vec::new(),
            email_cc: Vec::new(),
        }
    }

    /// Sends a notice about alerting itself to every configured medium.
    async fn send_notice(&self, n: Notification) {
        for m in self.notifiers.configured() {
            let (r, _) = self.send_with_retries(m, &n).await;
            match r {
                Ok(()) => {
                    tracing::warn!(event = "notice", medium = m.as_str(), subject = %n.rendered.subject)
                }
                Err(e) => {
                    tracing::error!(event = "notice_failed", medium = m.as_str(), subject = %n.rendered.subject, error = %e)
                }
            }
        }
    }

    /// Writes a new match to the outbox, then delivers it to every medium.
    async fn fire(
        &self,
        alert: &Alert,
        n: Notification,
        now: DateTime<Utc>,
    ) -> Result<Delivered, RunError> {
        let mut media = alert.spec.media.clone();
        media.sort();
        media.dedup();
        self.store.update(|data| {
            let st = data.alerts.entry(alert.name.clone()).or_default();
            st.last_match = Some(Match {
                matched_at: now,
                throttle_secs: alert.spec.throttle_period.value.as_secs(),
                notification: n,
                deliveries: media.iter().map(|m| (*m, Delivery::pending())).collect(),
            });
        });
        // The outbox entry is durable before anything is sent.
        self.store.commit().await?;
        self.deliver_owed(&alert.name, now).await
    }

    /// Retries media still owed by an earlier match, or drops the match if
    /// it is too old. `None` when nothing was owed.
    async fn retry_owed(
        &self,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> Result<Option<Delivered>, RunError> {
        let Some(matched_at) = self.store.read(|d| {
            d.alerts
                .get(&alert.name)
                .and_then(|st| st.pending())
                .map(|m| m.matched_at)
        }) else {
            return Ok(None);
        };
        {
            let max_age = chrono::Duration::from_std(self.settings.max_retry_age)
                .unwrap_or(chrono::Duration::hours(1));
            if now - matched_at > max_age {
                let reasons = self.store.update(|data| {
                    let mut reasons = Vec::new();
                    let m = data
                        .alerts
                        .get_mut(&alert.name)
                        .and_then(|st| st.last_match.as_mut())
                        .expect("pending");
                    for (medium, d) in m.deliveries.iter_mut() {
                        if d.status == DeliveryStatus::Pending {
                            d.status = DeliveryStatus::Dropped;
                            reasons.push(format!(
                                "{}: {}",
                                medium.as_str(),
                                d.last_error.as_deref().unwrap_or("never delivered")
                            ));
                        }
                    }
                    reasons
                });
                self.store.commit().await?;
                tracing::error!(
                    alert = alert.name.as_str(),
                    outcome = "dropped",
                    matched_at = %fmt_time(&matched_at),
                    reason = format!(
                        "undelivered for longer than max_retry_age ({}); {}",
                        humantime::format_duration(self.settings.max_retry_age),
                        reasons.join("; ")
                    )
                );
                return Ok(Some(Delivered::dropped()));
            }
        }
        tracing::info!(alert = alert.name.as_str(), event = "redeliver", matched_at = %fmt_time(&matched_at));
        self.deliver_owed(&alert.name, now).await.map(Some)
    }

    /// Delivers the owed media of the alert's last match, concurrently,
    /// recording each result as soon as it is known.
    async fn deliver_owed(&self, name: &str, now: DateTime<Utc>) -> Result<Delivered, RunError> {
        let (owed, n) = self.store.read(|d| {
            let m = d.alerts[name]
                .last_match
                .as_ref()
                .expect("a match to deliver");
            (m.owed(), m.notification.clone())
        });
        let results = futures::future::join_all(owed.iter().map(|medium| {
            let n = &n;
            async move {
                let (result, tries) = self.send_with_retries(*medium, n).await;
                let sent_at = self.clock.now();
                self.store.update(|data| {
                    let d = data
                        .alerts
                        .get_mut(name)
                        .and_then(|s| s.last_match.as_mut())
                        .and_then(|m| m.deliveries.get_mut(medium))
                        .expect("delivery entry");
                    d.attempts += tries;
                    match &result {
                        Ok(()) => {
                            d.status = DeliveryStatus::Sent;
                            d.sent_at = Some(sent_at);
                            d.last_error = None;
                        }
                        Err(e) => d.last_error = Some(e.to_string()),
                    }
                });
                // Each result is durable as soon as it is known, so a crash
                // re-sends at most the medium that was in flight.
                self.store.commit().await?;
                Ok::<_, StoreError>((*medium, result, tries))
            }
        }))
        .await;
        let mut errors = BTreeMap::new();
        let mut attempts = BTreeMap::new();
        for r in results {
            let (m, result, tries) = r?;
            attempts.insert(m, (tries, result.is_ok()));
            if let Err(e) = result {
                errors.insert(m, e.to_string());
            }
        }
        let done = self.clock.now().max(now);
        let outcome = self.store.update(|data| {
            let st = data.alerts.get_mut(name).expect("entry");
            let m = st.last_match.as_ref().expect("match");
            if m.settled() {
                // Throttling starts when the last medium succeeds.
                let all: Vec<Medium> = m.deliveries.keys().copied().collect();
                let throttle = chrono::Duration::seconds(m.throttle_secs as i64);
                st.last_fired = Some(done);
                st.throttled_until = Some(done + throttle);
                Outcome::Fired(all)
            } else if m
                .deliveries
                .values()
                .any(|d| d.status == DeliveryStatus::Sent)
            {
                Outcome::Partial
            } else {
                Outcome::Failed
            }
        });
        self.store.commit().await?;
        Ok(Delivered {
            outcome,
            errors,
            attempts,
        })
    }

    /// Sends to one medium, retrying transient failures with exponential
    /// backoff and jitter. Returns the result and the number of attempts.
    async fn send_with_retries(
        &self,
        medium: Medium,
        n: &Notification,
    ) -> (Result<(), NotifyError>, u32) {
        let notifier = match self.notifiers.get(medium) {
            Ok(x) => x.clone(),
            Err(e) => return (Err(e), 1),
        };
        let tries = AtomicU32::new(0);
        let p = self.settings.retry;
        let result = (|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            notifier.send(n).await
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(p.min_delay)
                .with_max_delay(p.max_delay)
                .with_max_times(p.tries.saturating_sub(1))
                .with_jitter(),
        )
        .when(NotifyError::is_transient)
        .adjust(|e, d| e.retry_after().map(|r| r.min(p.max_delay)).or(d))
        .notify(|e, d| {
            tracing::warn!(alert = n.alert.as_str(), event = "delivery_retry", medium = medium.as_str(), error = %e, retry_in_ms = d.as_millis() as u64);
        })
        .await;
        (result, tries.load(Ordering::Relaxed))
    }

    fn log_report(&self, r: &RunReport) {
        let name = r.alert.as_str();
        let (hits, took_ms) = r
            .evaluation
            .as_ref()
            .map(|e| (e.hits, e.took_ms))
            .unwrap_or_default();
        match &r.outcome {
            Outcome::Error => {}
            Outcome::NoMatch => {
                tracing::info!(alert = name, outcome = "no_match", hits, took_ms)
            }
            Outcome::Fired(media) => {
                tracing::info!(
                    alert = name,
                    outcome = "fired",
                    media = media_list(media),
                    hits,
                    took_ms
                )
            }
            Outcome::Throttled(until) => {
                tracing::info!(alert = name, outcome = "throttled", until = %fmt_time(until), hits, took_ms)
            }
            Outcome::Dropped => {}
            Outcome::Failed | Outcome::Partial => {
                let errors = r
                    .delivery_errors
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::warn!(
                    alert = name,
                    outcome = r.outcome.as_str(),
                    hits,
                    took_ms,
                    errors = errors
                );
            }
        }
    }

    fn log_retry(&self, name: &str, o: &Outcome, errs: &BTreeMap<Medium, String>) {
        match o {
            Outcome::Fired(media) => {
                tracing::info!(
                    alert = name,
                    event = "redelivered",
                    outcome = "fired",
                    media = media_list(media)
                )
            }
            Outcome::Dropped => {}
            other => {
                let errors = errs.values().cloned().collect::<Vec<_>>().join("; ");
                tracing::warn!(
                    alert = name,
                    event = "redelivered",
                    outcome = other.as_str(),
                    errors = errors
                )
            }
        }
    }
}
