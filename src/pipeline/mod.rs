//! The one pipeline every rule runs through, whatever its front end:
//!
//! ```text
//! schedule → window → query/transform/condition/render (the rule's body)
//!   → per action: throttle / ack → outbox (durable) → sink with retry → history
//! ```
//!
//! Stages, one file each:
//! - `window.rs`: the time range a run searches (catch-up, delay, caps);
//! - the rule's [`RuleBody`](crate::rule::RuleBody) evaluates, holding a
//!   search slot only while it queries;
//! - `gate.rs`: which planned actions may be delivered (throttle, ack, a
//!   delivery still owed);
//! - `outbox.rs`: the match written before any delivery, each delivery sent
//!   with retries and recorded as soon as known, throttles started when a
//!   scope's last delivery succeeds, in the same write;
//! - `health.rs`: consecutive failures and the notices about alerting itself;
//! - `history.rs`: the run's lines in alerts.log, in one vocabulary
//!   (`outcome.rs`).
//!
//! The order of writes is what makes esalert crash-safe: a match's
//! deliveries are written to the store, together with the end of the window
//! that produced it, before any delivery starts, and each delivery's result
//! (with the throttle it completes) as soon as it is known. After a crash the
//! next run finds what is owed and delivers it; the same window is never
//! searched and notified again.

pub mod clock;
pub mod digest;
pub mod fold;
mod gate;
pub mod group;
mod health;
mod history;
mod outbox;
mod outcome;
pub mod simulate;
mod window;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

pub use clock::{Clock, ManualClock, SystemClock};
pub use outcome::Outcome;

use crate::alert::Alert;
use crate::condition::ScriptEngine;
use crate::notify::Notifiers;
use crate::render::fmt_time;
use crate::rule::{EvalContext, Evaluated};
use crate::search::EsClient;
use crate::sinks::Sinks;
use crate::throttle::{PRUNE_AFTER, SharedStore, StateBackend, Store, StoreError};

/// In-run retries of a transient delivery failure.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per delivery within one run, the first included.
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
    /// How many rules run at once in [`Runner::run_all`].
    pub concurrency: usize,
    /// Consecutive failures of one rule before "alert is failing" is sent.
    pub error_alert_after: u32,
    /// Filters per folded search (`--max-fold`); 0: no folding.
    pub max_fold: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_retry_age: Duration::from_secs(3600),
            retry: RetryPolicy::default(),
            concurrency: 16,
            error_alert_after: 5,
            max_fold: 0,
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

/// The report of one run.
#[derive(Debug)]
pub struct RunReport {
    /// The rule.
    pub alert: String,
    /// The outcome.
    pub outcome: Outcome,
    /// The evaluation, when it succeeded.
    pub evaluation: Option<Evaluated>,
    /// The evaluation's error, for [`Outcome::Error`].
    pub error: Option<String>,
    /// Each delivery's error from this run, by delivery id.
    pub delivery_errors: BTreeMap<String, String>,
    /// Delivery attempts in this run per sink, and whether the last succeeded.
    pub attempts: BTreeMap<String, (u32, bool)>,
    /// The time range searched (logged with the outcome, for the console's
    /// history).
    pub window: Option<crate::render::Window>,
    /// Whether its count came from a search folded with other rules'.
    pub folded: bool,
}

/// Runs rules end to end against one cluster, one store and the sinks.
pub struct Runner {
    es: EsClient,
    scripts: Arc<ScriptEngine>,
    sinks: Sinks,
    state: Arc<dyn StateBackend>,
    clock: Arc<dyn Clock>,
    settings: Settings,
    /// For Watcher `http` inputs.
    http: reqwest::Client,
    /// Bounds concurrent evaluations (the daemon's `--max-concurrency`).
    /// Deliveries don't hold a slot, so a slow sink can't stall other
    /// rules' searches.
    search_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// Silences, read again whenever `esalert silence` changed them.
    silences: crate::silence::Silences,
    /// Per-rule delivery locks; see [`Runner::delivery_lock`].
    delivering: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
        Self::with_state(es, scripts, notifiers, store, clock, settings)
    }

    /// Builds a runner on any state backend (the daemon shares one store
    /// between the runners it builds when credentials are reloaded).
    pub fn with_state(
        es: EsClient,
        scripts: Arc<ScriptEngine>,
        notifiers: Notifiers,
        state: Arc<dyn StateBackend>,
        clock: Arc<dyn Clock>,
        settings: Settings,
    ) -> Runner {
        let es = es.with_folding(settings.max_fold);
        let sinks = Sinks::new(&notifiers, &es);
        let silences = crate::silence::Silences::beside(&state.location());
        Runner {
            silences,
            es,
            scripts,
            sinks,
            state,
            clock,
            settings,
            // Never None once the cluster client was built (same TLS setup).
            http: crate::sinks::outbound_client().unwrap_or_default(),
            search_slots: None,
            delivering: Default::default(),
        }
    }

    /// Bounds concurrent evaluations with `slots`.
    pub fn with_search_slots(mut self, slots: Arc<tokio::sync::Semaphore>) -> Runner {
        self.search_slots = Some(slots);
        self
    }

    /// Sends through `sinks` instead of the configured ones (`esalert
    /// test --since` captures what would have been sent).
    pub fn with_sinks(mut self, sinks: Sinks) -> Runner {
        // Notices still go where credentials.json says, now through these.
        let notices = self.sinks.notice_targets().to_vec();
        self.sinks = sinks.with_notice_targets(notices);
        self
    }

    /// Whether searches are batched (see [`EsClient::with_batching`]):
    /// callers then hold no search slot for a run.
    pub fn batches(&self) -> bool {
        self.es.batches()
    }

    async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.search_slots {
            Some(s) => s.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The state, e.g. to inspect it in tests.
    pub fn state(&self) -> &Arc<dyn StateBackend> {
        &self.state
    }

    /// Runs every active rule once, at most `concurrency` at a time, and
    /// prunes store entries of rules whose file is gone. They run for one
    /// tick, now, as rules due together do: their windows end at the same
    /// time (so that their counts can be folded).
    pub async fn run_all(&self, alerts: &[Alert]) -> Result<Vec<RunReport>, RunError> {
        self.prune(alerts.iter().map(|a| a.name.as_str())).await?;
        let tick = self.clock.now();
        let results: Vec<_> = futures::stream::iter(alerts.iter().filter(|a| a.active))
            .map(|a| self.run_alert_due(a, Some(tick)))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut reports = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        reports.sort_by(|a, b| a.alert.cmp(&b.alert));
        Ok(reports)
    }

    /// Marks entries of rules that are gone, and forgets them
    /// [`PRUNE_AFTER`] later. The daemon calls this after every reload.
    pub async fn prune<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), RunError> {
        let now = self.clock.now();
        let known: std::collections::HashSet<&str> = names.into_iter().collect();
        self.state.retain(&mut |name, st| {
            if known.contains(name) {
                st.removed_at = None;
                return true;
            }
            match st.removed_at {
                None => {
                    st.removed_at = Some(now);
                    true
                }
                Some(t) if now.signed_duration_since(t) >= PRUNE_AFTER => {
                    tracing::info!(alert = name, event = "pruned", removed_at = %fmt_time(&t));
                    false
                }
                Some(_) => true,
            }
        });
        self.state.commit().await?;
        Ok(())
    }

    /// Runs one rule now.
    pub async fn run_alert(&self, alert: &Alert) -> Result<RunReport, RunError> {
        self.run_alert_due(alert, None).await
    }

    /// Runs one rule for the tick that was due at `due`: its window ends
    /// there, not when the run happened to start, so spreading starts over
    /// the tick (or a slow queue) never shifts a window, and its throttle
    /// counts from there.
    pub async fn run_alert_due(
        &self,
        rule: &Alert,
        due: Option<DateTime<Utc>>,
    ) -> Result<RunReport, RunError> {
        self.run_scheduled(rule, due, ()).await
    }

    /// [`run_alert_due`](Self::run_alert_due), dropping `release` once
    /// the run's decisions are durable and before any delivery starts: the
    /// daemon passes the guard that keeps the rule from running twice, so a
    /// slow or hung sink never holds up the rule's next search.
    pub async fn run_scheduled<G: Send>(
        &self,
        rule: &Alert,
        due: Option<DateTime<Utc>>,
        release: G,
    ) -> Result<RunReport, RunError> {
        self.run_with_slot(rule, due, release, None).await
    }

    /// [`run_scheduled`](Self::run_scheduled) with a search slot the caller
    /// already holds (released once the evaluation is done).
    pub async fn run_with_slot<G: Send>(
        &self,
        rule: &Alert,
        due: Option<DateTime<Utc>>,
        release: G,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<RunReport, RunError> {
        let now = self.clock.now();
        // A tick is never later than now: no window ends in the future.
        let tick = due.unwrap_or(now).min(now);
        let state = self.state.as_ref();
        gate::apply_ack_requests(state, rule);
        let window = window::for_run(state, rule, tick);
        let suppressed = gate::Suppressed::snapshot(state, rule, now);
        let owed_before = gate::owed_scopes(state, rule);
        let memory = state.read_rule(&rule.name, |st| {
            st.and_then(|s| s.memory.as_deref().cloned())
        });
        let result = {
            let _slot = match slot {
                Some(s) => Some(s),
                None => self.slot().await,
            };
            let suppress = |key: &str, scope: &str| suppressed.get(key, scope);
            let cx = EvalContext {
                es: &self.es,
                http: &self.http,
                scripts: &self.scripts,
                now,
                scheduled: tick,
                window,
                saved: None,
                memory: memory.as_ref(),
                suppressed: &suppress,
            };
            fold::evaluate(rule, &cx).await
        };
        let (result, folded_count) = result;

        let mut report = RunReport {
            alert: rule.name.clone(),
            outcome: Outcome::NoMatch,
            evaluation: None,
            error: None,
            delivery_errors: BTreeMap::new(),
            attempts: BTreeMap::new(),
            window: Some(window),
            folded: folded_count,
        };
        let mut failure = None;
        let mut decided = None;
        let mut new_match: Vec<u64> = Vec::new();
        match result {
            Err(e) => {
                report.outcome = Outcome::Error;
                report.error = Some(e.to_string());
                failure = Some(e);
            }
            Ok(eval) => {
                history::evaluation_warnings(&rule.name, &eval);
                let resolved = gate::observe(state, rule, &eval, tick, now);
                let silences = self.silences.active(&rule.name, now);
                if eval.matched {
                    let empty = crate::throttle::AlertState::default();
                    let d = state.read_rule(&rule.name, |st| {
                        gate::decide(
                            st.unwrap_or(&empty),
                            rule,
                            &eval,
                            &owed_before,
                            &silences,
                            now,
                        )
                    });
                    if !d.to_send.is_empty() {
                        match &rule.policy.digest {
                            Some(spec) => {
                                self.gather(rule, spec, &d.to_send, &eval.digest, tick, window)
                            }
                            None => new_match
                                .extend(self.write_match(rule, &d.to_send, tick, window, None)),
                        }
                    }
                    decided = Some(d);
                }
                new_match.extend(self.resolve(rule, &resolved, &silences, tick, window));
                report.evaluation = Some(eval);
            }
        }
        // A digest closes when its window is over, whatever this run found.
        new_match.extend(self.close_digest(rule, tick, window));
        // Everything owed, the new match among it, is on disk before
        // anything is sent: if the store can't be written, nothing is.
        let owes = state.read_rule(&rule.name, |s| s.is_some_and(|s| s.pending()));
        if owes || rule.policy.digest.is_some() {
            Box::pin(state.commit()).await?;
        }
        drop(release);

        let (retried, fired) = match (owes || !new_match.is_empty())
            .then(|| self.delivery_lock(&rule.name).try_lock_owned())
        {
            None => (None, None),
            Some(Ok(_delivering)) => {
                // Deliveries owed by earlier matches go first, with the
                // messages rendered for those matches.
                let retried = Box::pin(self.retry_owed(rule, &new_match, now)).await?;
                let fired = if new_match.is_empty() {
                    None
                } else {
                    let select = |m: &crate::throttle::Match| new_match.contains(&m.seq);
                    Some(Box::pin(self.deliver(&rule.name, &select, now)).await?)
                };
                (retried, fired)
            }
            Some(Err(_)) => {
                // An earlier run of this rule is still delivering; what this
                // run added waits in the outbox for the next run.
                tracing::warn!(
                    alert = rule.name.as_str(),
                    event = "delivery_in_progress",
                    "an earlier delivery of this alert is still going; owed deliveries wait for the next run"
                );
                (None, None)
            }
        };
        if let Some(d) = &retried {
            report.attempts = d.attempts.clone();
        }
        let mut action_lines = Vec::new();
        if let Some(decided) = &decided {
            action_lines = decided.lines.clone();
            report.outcome = match (&fired, new_match.is_empty()) {
                (None, false) => Outcome::Queued,
                _ => history::outcome(
                    fired.as_ref(),
                    decided,
                    retried.as_ref().filter(|d| d.outcome != Outcome::Dropped),
                ),
            };
            if let Some(f) = &fired {
                report.delivery_errors = f.errors.clone();
                for (sink, a) in &f.attempts {
                    report.attempts.insert(sink.clone(), *a);
                }
                history::action_results(&mut action_lines, f);
            } else if let Some(d) = retried.as_ref().filter(|_| decided.folded) {
                report.delivery_errors = d.errors.clone();
            }
        }
        // A redelivery folded into this run's outcome is told by its line.
        let folded = decided.as_ref().is_some_and(|d| d.folded);
        history::log_run(&report, retried.as_ref(), folded);
        if rule.policy.group_by.is_some()
            && let Some(d) = &decided
        {
            history::log_keys(&rule.name, d, &report.outcome);
        }
        if rule.body.logs_actions() {
            history::log_actions(&rule.name, &action_lines);
        }
        // Boxed, as the deliveries above: a run waiting for its search slot
        // is small, and a tick starts thousands of them.
        let notices =
            Box::pin(self.record_run(rule, &report, failure.as_ref(), window, now)).await?;
        for n in notices {
            Box::pin(self.send_notice(n)).await;
        }
        Ok(report)
    }

    /// Writes the resolved notices of keys that resolved in this run (with
    /// `notify_resolved`) to the outbox; a silenced key's is logged, not sent.
    fn resolve(
        &self,
        rule: &Alert,
        resolved: &[gate::Resolved],
        silences: &[crate::silence::Silence],
        tick: DateTime<Utc>,
        window: crate::render::Window,
    ) -> Vec<u64> {
        let mut actions = Vec::new();
        for r in resolved {
            let since = r.last_seen.as_ref().map(fmt_time).unwrap_or_default();
            tracing::info!(
                alert = rule.name.as_str(),
                event = "resolved",
                key = r.key.as_str(),
                last_seen = since.as_str()
            );
            if !rule.policy.notify_resolved {
                continue;
            }
            if let Some(si) = silences
                .iter()
                .find(|si| si.covers(&rule.name, &r.key, tick))
            {
                tracing::info!(
                    alert = rule.name.as_str(),
                    event = "resolved",
                    key = r.key.as_str(),
                    outcome = "silenced",
                    silence = si.id.as_str()
                );
                continue;
            }
            let about = if r.key.is_empty() {
                String::new()
            } else {
                format!(" for {}", r.key)
            };
            let subject = r
                .subject
                .clone()
                .unwrap_or_else(|| format!("[esalert] {}{about}", rule.name));
            actions.extend(rule.body.notice(
                rule,
                &crate::rule::Notice {
                    key: r.key.clone(),
                    subject,
                    text: format!(
                        "Alert {}{about} no longer matches: last matched at {since}, nothing since.",
                        rule.name
                    ),
                    hits: 0,
                    time: tick,
                    resolved: true,
                    first_key: None,
                },
            ));
        }
        if actions.is_empty() {
            return Vec::new();
        }
        self.write_match(rule, &actions, tick, window, Some("resolved"))
    }

    /// The lock a rule's deliveries hold, so that two runs never send the
    /// same owed delivery at once.
    fn delivery_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .delivering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds, so removed rules don't accumulate.
        if locks.len() > 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(name.to_owned()).or_default().clone()
    }
}

/// Evaluates a rule once without sending or recording anything
/// (`esalert test`): the same window, evaluation and gate as a real run,
/// against the saved response when given. Actions the store says are
/// throttled or acknowledged show as such.
pub async fn dry_run(
    rule: &Alert,
    es: &EsClient,
    scripts: &ScriptEngine,
    saved: Option<&std::sync::Arc<serde_json::Value>>,
    state: Option<&crate::throttle::AlertState>,
    now: DateTime<Utc>,
) -> Result<Evaluated, crate::rule::EvalError> {
    let suppressed = gate::Suppressed::of(state, now);
    let suppress = |key: &str, scope: &str| suppressed.get(key, scope);
    let http = crate::sinks::outbound_client().unwrap_or_default();
    let cx = EvalContext {
        es,
        http: &http,
        scripts,
        now,
        scheduled: now,
        window: crate::engine::default_window(rule, now),
        saved,
        memory: state.and_then(|s| s.memory.as_deref()),
        suppressed: &suppress,
    };
    rule.body.evaluate(rule, &cx).await
}

/// Sends every message an evaluation planned, once, outside the store
/// (`esalert test --send`). Returns each delivery's result by action id.
pub async fn send_now(
    sinks: &Sinks,
    eval: &Evaluated,
) -> Vec<(String, Result<(), crate::sinks::SinkError>)> {
    let mut out = Vec::new();
    for a in &eval.actions {
        if let crate::rule::Plan::Send(msgs) = &a.plan {
            for m in msgs {
                let r = match tokio::time::timeout(outbox::SEND_TIMEOUT, sinks.send(m)).await {
                    Ok(r) => r,
                    Err(_) => Err(crate::sinks::SinkError::transient(m.sink(), "timed out")),
                };
                out.push((a.id.clone(), r));
            }
        }
    }
    out
}
