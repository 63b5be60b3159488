//! `esalert run`: the daemon.
//!
//! One loop owns the schedule. It sleeps on the monotonic clock until the
//! next due time, or at most a second, reading the wall clock each time; due
//! times are kept in a priority queue ([`queue`]), so a wake-up with nothing
//! due costs a peek, and a tick or a completion O(log N) per alert, never a
//! walk of all alerts. Nothing else walks the alerts or the store while
//! nothing changes: the console's snapshot is redone after a scan that
//! changed something, owed deliveries are counted only while some are owed,
//! and deleted alerts' entries are pruned after removals and hourly. A
//! tick missed while the process was suspended runs once on wake-up, never
//! once per missed tick, and nothing drifts because due times come from the
//! schedule's grid, not from when the last run ended. A step of the wall
//! clock (see [`clock_step`]) reschedules every alert from the new time, and no
//! run is ever given a due time ahead of the wall clock. Each alert has a
//! running flag, so a run still going at the next due time makes that tick
//! `outcome=skipped reason=overrun` instead of stacking runs.
//!
//! (tokio-cron-scheduler was considered: it lets runs of one job overlap,
//! uses a fixed UTC offset for time zones, which is wrong across DST, and has
//! a reported stall when a tick drifts into the past. A loop this small,
//! with croner and chrono-tz for cron, avoids all three.)

mod alerts;
mod backstop;
pub mod clock_step;
mod memory;
pub mod metrics;
mod queue;
mod systemd;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::condition::ScriptEngine;
use crate::config::{ConfigError, Credentials};
use crate::notify::{Notifiers, SetupError};
use crate::pipeline::{Clock, RunError, RunReport, Runner, Settings, SystemClock};
use crate::search::{EsClient, SearchError};
use crate::throttle::{SharedStore, StateBackend, Store, StoreError};

pub use alerts::Alerts;
pub use metrics::Metrics;

/// The daemon's settings.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The queries directory.
    pub queries: PathBuf,
    /// credentials.json.
    pub credentials: PathBuf,
    /// The throttle store.
    pub state: PathBuf,
    /// Where alerts.log is (for the start line only).
    pub log_dir: PathBuf,
    /// How many alerts may run at once (with batching: how many requests
    /// may be in flight to the cluster).
    pub max_concurrency: usize,
    /// Searches per `_msearch` request (1: each search alone).
    pub search_batch: usize,
    /// How long in-flight runs may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Where to serve `/healthz` and `/metrics`, if anywhere.
    pub listen: Option<SocketAddr>,
    /// Full rescan of `queries/`, as a backstop for missed file events.
    pub rescan: Duration,
    /// Alerts due at the same tick start spread over this long (each at a
    /// fixed offset from its name), to spare the cluster a thundering herd.
    /// Windows still end exactly at the tick.
    pub tick_spread: Duration,
    /// A delivery owed for longer than this is stuck (`/healthz` 503).
    pub stuck_after: Duration,
    /// Delivery settings.
    pub settings: Settings,
    /// The lease of shared state (`--state es://...`).
    pub lease: Duration,
    /// Test of the tests only: shared state without its safeguards.
    pub broken_shared_state: bool,
}

/// Why the daemon could not start (or had to stop).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// credentials.json is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store can't be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Elasticsearch client can't be built.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// A medium can't be set up.
    #[error(transparent)]
    Notify(#[from] SetupError),
    /// The queries directory can't be read.
    #[error("cannot read queries directory {}: {source}; check --queries", path.display())]
    Queries {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `--listen` can't be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Signal handlers can't be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The console can't be served as configured.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
    /// Shared state can't be opened.
    #[error(transparent)]
    Shared(#[from] crate::cluster::open::OpenError),
}

fn build_runner(
    creds: &Credentials,
    store: Arc<dyn StateBackend>,
    scripts: Arc<ScriptEngine>,
    settings: Settings,
    slots: &Arc<Semaphore>,
    clock: &Arc<dyn Clock>,
    search_batch: usize,
) -> Result<Arc<Runner>, DaemonError> {
    // Batched, a search waits in its batch without a slot: the slots bound
    // the requests in flight instead.
    let es = EsClient::new(&creds.elasticsearch)?.with_batching(search_batch, Some(slots.clone()));
    let batches = es.batches();
    let runner = Runner::with_state(
        es,
        scripts,
        Notifiers::from_credentials(creds)?,
        store,
        clock.clone(),
        settings,
    );
    Ok(Arc::new(if batches {
        runner
    } else {
        runner.with_search_slots(slots.clone())
    }))
}

/// Whether a file event may have changed what the directory holds. Reads
/// are events too (inotify's open, access and close-without-write): the
/// daemon's own scans would otherwise trigger the next scan, forever.
fn is_change(kind: &notify::EventKind) -> bool {
    use notify::EventKind as K;
    use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
    match kind {
        // A file written and closed: the surest sign of a finished edit.
        K::Access(AccessKind::Close(AccessMode::Write)) => true,
        K::Access(_) | K::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    }
}

/// Watches `dir` and sends a unit on every change, coalesced by the channel.
fn watch(
    dir: &std::path::Path,
    only: Option<std::ffi::OsString>,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(e) = res else { return };
        let ours = only
            .as_ref()
            .is_none_or(|f| e.paths.iter().any(|p| p.file_name() == Some(f.as_os_str())));
        if ours && is_change(&e.kind) {
            let _ = tx.try_send(());
        }
    })
    .map_err(
        |e| tracing::warn!(event = "watch_unavailable", error = %e, "relying on periodic rescans"),
    )
    .ok()?;
    w.watch(dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| tracing::warn!(event = "watch_unavailable", error = %e, "relying on periodic rescans"))
        .ok()?;
    Some(w)
}

/// A watcher of elastalert.yaml when it lies outside `queries/` (its
/// changes reload the ElastAlert rules, and the backstop rescan may be an
/// hour away); `None` when there is none to watch, or the queries watcher
/// sees it already.
fn watch_globals(
    queries: &std::path::Path,
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    let file = crate::frontends::elastalert::globals::path()?;
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let same = |a: &std::path::Path, b: &std::path::Path| {
        a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    };
    if same(&parent, queries) {
        return None;
    }
    watch(&parent, file.file_name().map(|f| f.to_owned()), tx)
}

/// A stable offset in `[0, spread)` for an alert, from its name.
fn spread_delay(name: &str, spread: Duration) -> Duration {
    if spread.is_zero() {
        return Duration::ZERO;
    }
    // FNV-1a: stable across runs and platforms, unlike the std hasher.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // A splitmix64 finish, so that names differing in one letter land far apart.
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    Duration::from_nanos(z % (spread.as_nanos().max(1) as u64))
}

/// The longest sleep: the wall clock is read (a step is seen) and the
/// scheduler's heartbeat (`/healthz`, the systemd watchdog) marked at least
/// this often. A wake-up with nothing due costs a peek at the queue.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Deleted alerts' store entries are pruned after a rescan that removed
/// some, and at least this often (each prune walks and writes the store).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Clears a rule's "running" flag when its run ends, even by a panic.
struct RunningGuard(Arc<std::sync::atomic::AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Runs the daemon until `shutdown` resolves, then lets in-flight runs
/// finish within the grace period and returns.
pub async fn run(
    cfg: DaemonConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    run_with_clock(cfg, Arc::new(SystemClock), shutdown).await
}

/// [`run`] with the wall clock given: tests step it. The time between
/// ticks is still measured on the real steady clock.
pub async fn run_with_clock(
    cfg: DaemonConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DaemonError> {
    memory::limit_arenas();
    let scripts = Arc::new(ScriptEngine::default());
    let creds = Credentials::load(&cfg.credentials)?;
    // `--state es://...`: several instances share the alerts (see
    // crate::cluster); a file otherwise.
    let (store, file, cluster) = match cfg
        .state
        .to_str()
        .and_then(crate::cluster::StateSpec::parse)
    {
        Some(spec) => {
            let local = cfg.log_dir.join("esalert-instance");
            let c = crate::cluster::open::open(
                &spec.map_err(crate::cluster::open::OpenError::from)?,
                &creds,
                cfg.lease,
                &local.join("state"),
                cfg.broken_shared_state,
            )
            .await?;
            c.set_fire_horizon(cfg.settings.max_retry_age);
            (c.clone() as Arc<dyn StateBackend>, None, Some(c))
        }
        None => {
            let f = SharedStore::new(Store::open(&cfg.state)?);
            (f.clone() as Arc<dyn StateBackend>, Some(f), None)
        }
    };
    let sem = Arc::new(Semaphore::new(cfg.max_concurrency.max(1)));
    let mut runner = build_runner(
        &creds,
        store.clone(),
        scripts.clone(),
        cfg.settings,
        &sem,
        &clock,
        cfg.search_batch,
    )?;
    let metrics = Arc::new(Metrics::new(cfg.stuck_after));

    std::fs::read_dir(&cfg.queries).map_err(|source| DaemonError::Queries {
        path: cfg.queries.clone(),
        source,
    })?;
    let mut alerts = Alerts::new(cfg.queries.clone(), scripts.clone());
    crate::condition::painless::stored::prefetch_logged(&creds.elasticsearch, &cfg.queries).await;
    // At start, nothing is "still being written": load what is there.
    alerts.scan(clock.now(), false, false);
    // Alerts that missed a tick while the daemon was down run at once.
    let start = clock.now();
    for name in alerts.overdue_at_start(start, |name| {
        store.read_rule(name, |st| st.and_then(|s| s.last_window_end))
    }) {
        tracing::info!(alert = name.as_str(), event = "overdue", due = %crate::render::fmt_time(&start),
            "its last window ended more than a period ago; searching the gap now");
    }
    let mut queue = queue::DueQueue::default();
    queue.rebuild(alerts.by_name.iter().map(|(n, s)| (n, s.next_due)));
    alerts.rescheduled.clear();
    // Parsing every file left its garbage behind.
    memory::trim();
    let mut trimmer = memory::Trimmer::default();
    let mut rescan_soon = None;
    let share = |alerts: &Alerts| {
        if let Some(c) = &cluster {
            c.set_rules(
                alerts
                    .by_name
                    .iter()
                    .filter(|(_, s)| s.alert.active)
                    .map(|(n, s)| (n.clone(), s.running.clone(), s.alert.policy.at_most_once))
                    .collect(),
            );
        }
    };
    share(&alerts);
    metrics.set_loaded(alerts.by_name.len());
    metrics.tick();

    let (fs_tx, mut fs_rx) = tokio::sync::mpsc::channel::<()>(1);
    let _globals_watcher = watch_globals(&cfg.queries, fs_tx.clone());
    let _watcher = watch(&cfg.queries, None, fs_tx);
    let rescan_every = backstop::period(&cfg.queries, cfg.rescan, _watcher.is_some());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // The console (with /healthz and /metrics) on --listen; "run now" comes back here.
    let (console_tx, mut console_rx) = tokio::sync::mpsc::channel(16);
    let mut console = None;
    if let Some(addr) = cfg.listen {
        crate::console::auth::check_exposure(addr, creds.console.as_ref())?;
        let mut page = crate::console::Console::new(
            crate::console::Paths {
                queries: cfg.queries.clone(),
                credentials: cfg.credentials.clone(),
                // Shared state: silences are mirrored beside the local location.
                state: if cluster.is_some() {
                    store.location()
                } else {
                    cfg.state.clone()
                },
                log_dir: cfg.log_dir.clone(),
            },
            &creds,
            metrics.clone(),
            runner.state().clone(),
            scripts.clone(),
            Some(console_tx),
        )?;
        // Shared state: the Health page shows members and leases.
        if let Some(cl) = &cluster {
            page = page.with_cluster(cl.clone());
        }
        let c = Arc::new(page);
        c.publish(crate::console::Snapshot::of(&alerts));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| DaemonError::Listen { addr, source })?;
        let served = c.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::console::serve(listener, served, stop).await {
                tracing::error!(event = "listen_failed", error = %e);
            }
        });
        console = Some(c);
    }
    let publish = |console: &Option<Arc<crate::console::Console>>, alerts: &Alerts| {
        if let Some(c) = console {
            c.publish(crate::console::Snapshot::of(alerts));
        }
    };
    if let Some(interval) = systemd::watchdog_interval() {
        let m = metrics.clone();
        let mut rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut t = tokio::time::interval(interval / 2);
            loop {
                tokio::select! {
                    _ = t.tick() => {}
                    _ = rx.wait_for(|s| *s) => return,
                }
                // Only while the scheduler is actually ticking.
                if m.tick_age().is_some_and(|a| a < metrics::STALL_AFTER) {
                    systemd::watchdog();
                }
            }
        });
    }

    if let Some(c) = &cluster {
        tracing::info!(
            event = "shared_state",
            member = c.me(),
            lease_s = cfg.lease.as_secs_f64()
        );
        tokio::spawn(c.clone().run(stop_rx.clone()));
    }

    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(DaemonError::Signals)?;
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        alerts = alerts.by_name.len(),
        queries = %cfg.queries.display(),
        state = %cfg.state.display(),
        log = %cfg.log_dir.join(crate::log::LOG_NAME).display(),
    );
    systemd::ready();

    let mut inflight: JoinSet<(String, Result<RunReport, RunError>)> = JoinSet::new();
    let mut next_rescan = tokio::time::Instant::now() + rescan_every;
    tokio::pin!(shutdown);

    // Owed deliveries are counted at start, after runs that may owe some,
    // and then every 1-5 s while some are owed (with shared state, other
    // instances' runs owe too: always).
    let stuck_every = cfg
        .stuck_after
        .clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut next_stuck_check = Some(tokio::time::Instant::now());
    let mut next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
    let mut steps = clock_step::StepDetector::new(clock_step::boottime(), clock.now());
    loop {
        metrics.tick();
        if let Some(f) = &file {
            metrics.set_store_failing(f.write_failing());
        }
        if let Some(c) = &cluster {
            metrics.set_shared_state_down(!c.reachable());
        }
        let now = clock.now();
        if next_stuck_check.is_some_and(|t| t <= tokio::time::Instant::now()) {
            // Often enough that a short --stuck-after is seen in time.
            metrics.set_stuck(store.stuck_deliveries(
                now,
                chrono::Duration::from_std(cfg.stuck_after).unwrap_or(crate::throttle::STUCK_AFTER),
            ));
            let owed = cluster.is_some() || store.stuck_deliveries(now, chrono::TimeDelta::MIN) > 0;
            next_stuck_check = owed.then(|| tokio::time::Instant::now() + stuck_every);
        }
        if let Some(delta) = steps.observe(clock_step::boottime(), now) {
            let rescheduled = alerts.reschedule(now);
            queue.rebuild(alerts.by_name.iter().map(|(n, s)| (n, s.next_due)));
            tracing::warn!(
                event = "clock_step",
                delta = %clock_step::fmt_delta(delta),
                now = %crate::render::fmt_time(&now),
                rescheduled,
                "the wall clock was stepped; due times are recomputed from the new time"
            );
        }
        while let Some((name, due)) =
            queue.pop_due(now, |n| alerts.by_name.get(n).and_then(|s| s.next_due))
        {
            let Some(s) = alerts.by_name.get_mut(&name) else {
                continue;
            };
            let name = &name;
            // Missed ticks coalesce into this one run.
            s.next_due = s.alert.schedule.next_after(now, s.alert.timezone);
            queue.push(name, s.next_due);
            if s.running.swap(true, Ordering::SeqCst) {
                metrics.skipped(name);
                tracing::warn!(alert = name.as_str(), outcome = "skipped", reason = "overrun", due = %crate::render::fmt_time(&due));
                continue;
            }
            // With shared state, only the rules this instance owns (checked
            // after setting the flag, which a hand-over checks in turn).
            if cluster.as_ref().is_some_and(|c| !c.owns(name)) {
                s.running.store(false, Ordering::SeqCst);
                continue;
            }
            let (runner, alert, running) = (runner.clone(), s.alert.clone(), s.running.clone());
            let slots = sem.clone();
            let delay = spread_delay(name, cfg.tick_spread);
            inflight.spawn(async move {
                // Whatever happens to the run, the rule is free to run again
                // once its decisions are on disk (deliveries don't hold it).
                let running = RunningGuard(running);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                // The search slot first, then the run: thousands of runs due
                // at one tick wait as a few bytes each, and a run's full
                // state exists only while it runs. The slot is released after
                // the evaluation; deliveries (which may wait on Slack) hold none.
                // Batched, a search waits in its batch without a slot: the
                // batch takes one per request (holding one here too could
                // leave no slot for the batch it waits on).
                let slot = if runner.batches() {
                    None
                } else {
                    slots.acquire_owned().await.ok()
                };
                let run = std::panic::AssertUnwindSafe(Box::pin(runner.run_with_slot(
                    &alert,
                    Some(due),
                    running,
                    slot,
                )));
                let r = match futures::FutureExt::catch_unwind(run).await {
                    Ok(r) => r,
                    Err(p) => {
                        let why = p
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_default();
                        tracing::error!(
                            alert = alert.name.as_str(),
                            outcome = "error",
                            error = format!(
                                "internal error, the run panicked: {why}; please report it"
                            )
                        );
                        Ok(crate::pipeline::RunReport {
                            alert: alert.name.clone(),
                            outcome: crate::pipeline::Outcome::Error,
                            evaluation: None,
                            error: Some(why),
                            delivery_errors: Default::default(),
                            attempts: Default::default(),
                            window: None,
                            folded: false,
                        })
                    }
                };
                (alert.name.clone(), r)
            });
        }

        metrics.set_scheduler_ops(queue.ops());
        let next_due = queue.earliest(|n| alerts.by_name.get(n).and_then(|s| s.next_due));
        let mut sleep_for = HEARTBEAT;
        if let Some(d) = next_due {
            let until = (d - clock.now()).to_std().unwrap_or(Duration::ZERO);
            sleep_for = sleep_for.min(until);
        }
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = hup.recv() => {
                systemd::reloading();
                tracing::info!(event = "reload", reason = "SIGHUP");
                match Credentials::load(&cfg.credentials)
                    .map_err(DaemonError::from)
                    .and_then(|c| build_runner(&c, store.clone(), scripts.clone(), cfg.settings, &sem, &clock, cfg.search_batch).map(|r| (r, c)))
                {
                    Ok((r, c)) => {
                        runner = r;
                        crate::condition::painless::stored::prefetch_logged(&c.elasticsearch, &cfg.queries).await;
                        if let Some(console) = &console {
                            console.reconfigure(&c);
                        }
                        tracing::info!(event = "credentials_reloaded");
                    }
                    Err(e) => tracing::error!(event = "reload_failed", kept = "previous", error = %e),
                }
                alerts.scan(clock.now(), true, false);
                for name in alerts.rescheduled.drain(..) {
                    queue.push(&name, alerts.by_name.get(&name).and_then(|s| s.next_due));
                }
                alerts.take_changed();
                share(&alerts);
                metrics.set_loaded(alerts.by_name.len());
                publish(&console, &alerts);
                systemd::ready();
            }
            Some(cmd) = console_rx.recv() => {
                let crate::console::Command::RunNow { name, .. } = &cmd;
                let name = name.clone();
                crate::console::apply(cmd, &mut alerts, clock.now());
                queue.push(&name, alerts.by_name.get(&name).and_then(|s| s.next_due));
            }
            Some(done) = inflight.join_next(), if !inflight.is_empty() => match done {
                Ok((_, Ok(report))) => {
                    // A run that matched (or delivered what an earlier one owed)
                    // may leave deliveries owed: count them from now on.
                    if !(matches!(report.outcome, crate::pipeline::Outcome::NoMatch) && report.attempts.is_empty()) {
                        let soon = tokio::time::Instant::now() + stuck_every;
                        next_stuck_check = Some(next_stuck_check.map_or(soon, |t| t.min(soon)));
                    }
                    metrics.record(&report);
                    trimmer.ran(inflight.is_empty());
                    if let Some(c) = &console {
                        c.record(&report);
                    }
                }
                Ok((name, Err(e))) => {
                    tracing::error!(alert = name.as_str(), event = "store_write_failed", error = %e,
                        "nothing is delivered until the store can be written");
                }
                Err(e) => tracing::error!(event = "run_panicked", error = %e),
            },
            Some(()) = fs_rx.recv() => {
                rescan_soon.get_or_insert(tokio::time::Instant::now() + Duration::from_millis(300));
            }
            _ = tokio::time::sleep(sleep_for) => {
                if inflight.is_empty() {
                    trimmer.settle();
                }
            }
        }
        let now_i = tokio::time::Instant::now();
        if rescan_soon.is_some_and(|t| t <= now_i) || next_rescan <= now_i {
            rescan_soon = alerts
                .scan(clock.now(), false, true)
                .then(|| now_i + alerts::SETTLE);
            for name in alerts.rescheduled.drain(..) {
                queue.push(&name, alerts.by_name.get(&name).and_then(|s| s.next_due));
            }
            if queue.bloated(alerts.by_name.len()) {
                queue.rebuild(alerts.by_name.iter().map(|(n, s)| (n, s.next_due)));
            }
            // A scan that found nothing new changes nothing downstream.
            if alerts.take_changed() {
                share(&alerts);
                metrics.set_loaded(alerts.by_name.len());
                if !alerts.removed.is_empty() {
                    next_prune = now_i;
                }
                for name in alerts.removed.drain(..) {
                    metrics.forget(&name);
                }
                metrics.set_rejected(alerts.rejected());
                publish(&console, &alerts);
            }
            if next_rescan <= now_i {
                next_rescan = now_i + rescan_every;
            }
            if next_prune <= now_i {
                next_prune = now_i + PRUNE_EVERY;
                // Entries of deleted rules are forgotten after a while, as `once` does.
                if let Err(e) = runner
                    .prune(alerts.by_name.keys().map(String::as_str))
                    .await
                {
                    tracing::error!(event = "store_error", error = %e);
                }
            }
        }
    }

    systemd::stopping();
    tracing::info!(
        event = "stopping",
        in_flight = inflight.len(),
        grace_s = cfg.shutdown_grace.as_secs()
    );
    let drained = tokio::time::timeout(cfg.shutdown_grace, async {
        while let Some(done) = inflight.join_next().await {
            if let Ok((_, Ok(report))) = done {
                metrics.record(&report);
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            event = "shutdown_grace_expired",
            abandoned = inflight.len(),
            "unfinished deliveries stay in the store's outbox and are sent after the next start"
        );
        inflight.abort_all();
    }
    let _ = stop_tx.send(true);
    let flushed = match &file {
        Some(f) => f.flush_now().await,
        None => store.commit().await,
    };
    // Shared state: hand the leases back, so others take over at once.
    if let Some(c) = &cluster {
        c.leave().await;
    }
    flushed?;
    tracing::info!(
        event = "stopped",
        version = env!("CARGO_PKG_VERSION"),
        alerts = alerts.by_name.len(),
        queries = %cfg.queries.display(),
        state = %cfg.state.display(),
        log = %cfg.log_dir.join(crate::log::LOG_NAME).display(),
    );
    Ok(())
}

#[cfg(test)]
mod watch_tests {
    use notify::EventKind as K;
    use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind};

    #[test]
    fn reads_are_not_changes() {
        assert!(!super::is_change(&K::Access(AccessKind::Open(
            AccessMode::Read
        ))));
        assert!(!super::is_change(&K::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!super::is_change(&K::Modify(ModifyKind::Metadata(
            MetadataKind::AccessTime
        ))));
        assert!(super::is_change(&K::Create(CreateKind::File)));
        assert!(super::is_change(&K::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(super::is_change(&K::Modify(ModifyKind::Any)));
        assert!(super::is_change(&K::Remove(
            notify::event::RemoveKind::File
        )));
    }
}
