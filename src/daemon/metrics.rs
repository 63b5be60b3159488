//! `/healthz` and `/metrics` (Prometheus text format) on `--listen`.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline::{Outcome, RunReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    alert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MediumLabel {
    medium: String,
}

/// The daemon's metrics, shared by the scheduler and the HTTP endpoint.
pub struct Metrics {
    registry: Registry,
    runs: Family<AlertLabel, Counter>,
    matches: Family<AlertLabel, Counter>,
    fired: Family<AlertLabel, Counter>,
    throttled: Family<AlertLabel, Counter>,
    errors: Family<AlertLabel, Counter>,
    skipped: Family<AlertLabel, Counter>,
    search_seconds: Histogram,
    delivery_attempts: Family<MediumLabel, Counter>,
    delivery_failures: Family<MediumLabel, Counter>,
    alerts_loaded: Gauge,
    rejected_files: Gauge,
    stuck_deliveries: Gauge,
    /// How long a delivery may be owed before it counts as stuck.
    stuck_after: Duration,
    /// Set while the store can't be written (nothing is delivered then).
    store_failing: std::sync::atomic::AtomicBool,
    shared_state_down: std::sync::atomic::AtomicBool,
    last_tick_age: Gauge<f64, AtomicU64>,
    scheduler_ops: Counter,
    /// Unix milliseconds of the scheduler's last tick.
    last_tick_ms: AtomicI64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(Duration::from_secs(300))
    }
}

impl Metrics {
    /// Metrics whose stuck deliveries are those owed longer than `stuck_after`.
    pub fn new(stuck_after: Duration) -> Self {
        let mut registry = Registry::with_prefix("esalert");
        let m = Metrics {
            runs: Family::default(),
            matches: Family::default(),
            fired: Family::default(),
            throttled: Family::default(),
            errors: Family::default(),
            skipped: Family::default(),
            search_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            delivery_attempts: Family::default(),
            delivery_failures: Family::default(),
            alerts_loaded: Gauge::default(),
            rejected_files: Gauge::default(),
            stuck_deliveries: Gauge::default(),
            stuck_after,
            store_failing: std::sync::atomic::AtomicBool::new(false),
            shared_state_down: std::sync::atomic::AtomicBool::new(false),
            last_tick_age: Gauge::default(),
            scheduler_ops: Counter::default(),
            last_tick_ms: AtomicI64::new(0),
            registry: Registry::default(),
        };
        registry.register("runs", "Alert runs", m.runs.clone());
        registry.register("matches", "Runs whose condition matched", m.matches.clone());
        registry.register(
            "fired",
            "Matches delivered to every medium",
            m.fired.clone(),
        );
        registry.register(
            "throttled",
            "Matches suppressed by the throttle",
            m.throttled.clone(),
        );
        registry.register(
            "errors",
            "Runs whose search or evaluation failed",
            m.errors.clone(),
        );
        registry.register(
            "skipped",
            "Runs skipped because the previous one was still going",
            m.skipped.clone(),
        );
        registry.register(
            "search_duration_seconds",
            "Search latency",
            m.search_seconds.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts per medium",
            m.delivery_attempts.clone(),
        );
        registry.register(
            "delivery_failures",
            "Failed delivery attempts per medium",
            m.delivery_failures.clone(),
        );
        registry.register(
            "alerts_loaded",
            "Alerts loaded from the queries directory",
            m.alerts_loaded.clone(),
        );
        registry.register(
            "rejected_files",
            "Files in the queries directory that failed validation",
            m.rejected_files.clone(),
        );
        registry.register(
            "stuck_deliveries",
            "Deliveries owed for longer than --stuck-after (default 5 minutes)",
            m.stuck_deliveries.clone(),
        );
        registry.register(
            "last_tick_age_seconds",
            "Seconds since the scheduler last ticked",
            m.last_tick_age.clone(),
        );
        registry.register(
            "scheduler_operations",
            "Pushes and pops of the scheduler's due-time queue (about two per run: the cost of a pass grows with N log N, not N squared)",
            m.scheduler_ops.clone(),
        );
        Metrics { registry, ..m }
    }
}

fn label(a: &str) -> AlertLabel {
    AlertLabel {
        alert: a.to_owned(),
    }
}

impl Metrics {
    /// Records one run's report.
    pub fn record(&self, r: &RunReport) {
        let l = label(&r.alert);
        self.runs.get_or_create(&l).inc();
        if let Some(e) = &r.evaluation {
            self.search_seconds.observe(e.took_ms as f64 / 1000.0);
            if e.matched {
                self.matches.get_or_create(&l).inc();
            }
        }
        match r.outcome {
            Outcome::Fired(_) => {
                self.fired.get_or_create(&l).inc();
            }
            Outcome::Throttled(_) => {
                self.throttled.get_or_create(&l).inc();
            }
            Outcome::Error => {
                self.errors.get_or_create(&l).inc();
            }
            _ => {}
        }
        for (m, (attempts, ok)) in &r.attempts {
            let ml = MediumLabel {
                medium: m.as_str().to_owned(),
            };
            self.delivery_attempts
                .get_or_create(&ml)
                .inc_by(u64::from(*attempts));
            let failures = if *ok {
                attempts.saturating_sub(1)
            } else {
                *attempts
            };
            self.delivery_failures
                .get_or_create(&ml)
                .inc_by(u64::from(failures));
        }
    }

    /// Removes a deleted alert's series.
    pub fn forget(&self, alert: &str) {
        let l = label(alert);
        for f in [
            &self.runs,
            &self.matches,
            &self.fired,
            &self.throttled,
            &self.errors,
            &self.skipped,
        ] {
            f.remove(&l);
        }
    }

    /// Sets the number of rejected files.
    pub fn set_rejected(&self, n: usize) {
        self.rejected_files
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the number of deliveries owed for too long.
    pub fn set_stuck(&self, n: usize) {
        self.stuck_deliveries
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets whether shared state (`--state es://...`) is unreachable.
    pub fn set_shared_state_down(&self, down: bool) {
        self.shared_state_down.store(down, Ordering::Relaxed);
    }

    /// Records whether the store could be written.
    pub fn set_store_failing(&self, failing: bool) {
        self.store_failing.store(failing, Ordering::Relaxed);
    }

    /// Records a run skipped for overrun.
    pub fn skipped(&self, alert: &str) {
        self.skipped.get_or_create(&label(alert)).inc();
    }

    /// Sets the number of alerts loaded.
    pub fn set_loaded(&self, n: usize) {
        self.alerts_loaded.set(n as i64);
    }

    /// Sets the scheduler's queue operations so far (a running total).
    pub fn set_scheduler_ops(&self, total: u64) {
        let seen = self.scheduler_ops.get();
        if total > seen {
            self.scheduler_ops.inc_by(total - seen);
        }
    }

    /// Marks a scheduler tick.
    pub fn tick(&self) {
        self.last_tick_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Time since the last tick, `None` before the first.
    pub fn tick_age(&self) -> Option<Duration> {
        let ms = self.last_tick_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| {
            Duration::from_millis((chrono::Utc::now().timestamp_millis() - ms).max(0) as u64)
        })
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(age) = self.tick_age() {
            self.last_tick_age.set(age.as_secs_f64());
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String never fails");
        out
    }
}

/// What `/healthz` judges by, for the console's Health page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthFacts {
    /// The scheduler's last tick.
    pub last_tick: Option<chrono::DateTime<chrono::Utc>>,
    /// Whether the store can't be written.
    pub store_failing: bool,
    /// Deliveries owed longer than `stuck_after`.
    pub stuck_deliveries: i64,
    /// How long a delivery may be owed before it counts as stuck, in seconds.
    pub stuck_after_s: u64,
    /// Alerts loaded.
    pub alerts_loaded: i64,
    /// Files rejected.
    pub rejected_files: i64,
}

impl Metrics {
    /// The facts `/healthz` judges by.
    pub fn facts(&self) -> HealthFacts {
        let ms = self.last_tick_ms.load(Ordering::Relaxed);
        HealthFacts {
            last_tick: (ms > 0)
                .then(|| chrono::DateTime::from_timestamp_millis(ms))
                .flatten(),
            store_failing: self.store_failing.load(Ordering::Relaxed),
            stuck_deliveries: self.stuck_deliveries.get(),
            stuck_after_s: self.stuck_after.as_secs(),
            alerts_loaded: self.alerts_loaded.get(),
            rejected_files: self.rejected_files.get(),
        }
    }
}

/// How long without a tick before `/healthz` says the scheduler stalled.
pub const STALL_AFTER: Duration = Duration::from_secs(10);

async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    let rejected = m.rejected_files.get();
    let stuck = m.stuck_deliveries.get();
    let store_failing = m.store_failing.load(Ordering::Relaxed);
    let detail = format!("rejected_files={rejected} stuck_deliveries={stuck}");
    match m.tick_age() {
        Some(age) if age >= STALL_AFTER => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stalled: no scheduler tick for {}s {detail}\n",
                age.as_secs()
            ),
        ),
        Some(_) if store_failing => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "store_write_failed: nothing is delivered until the store can be written {detail}\n"
            ),
        ),
        Some(_) if m.shared_state_down.load(Ordering::Relaxed) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "shared_state_unreachable: this instance runs and sends nothing until it reaches the shared state again (fail closed) {detail}\n"
            ),
        ),
        Some(_) if stuck > 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "deliveries_stuck: {stuck} owed for more than {} {detail}\n",
                humantime::format_duration(m.stuck_after)
            ),
        ),
        Some(_) => {
            let ms = m.last_tick_ms.load(Ordering::Relaxed);
            let t = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
            (
                StatusCode::OK,
                format!("ok last_tick={} {detail}\n", crate::render::fmt_time(&t)),
            )
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
    }
}

async fn metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
}

/// `/healthz` and `/metrics`, for a server that serves more (the console).
pub fn routes<S>(m: Arc<Metrics>) -> axum::Router<S> {
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .with_state(m)
}

/// Serves `/healthz` and `/metrics` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    m: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, routes(m))
        .with_graceful_shutdown(shutdown)
        .await
}
