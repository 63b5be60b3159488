//! The web console on `--listen`: every alert at a glance, an alert's state,
//! history and chart, silences, acks, "run now" and "test over the last N
//! hours", and the daemon's health; with a JSON API behind each page.
//!
//! Pages are rendered on the server (a little vanilla JS refreshes them and
//! asks before actions; they read fine without it). Everything the browser
//! loads comes from the daemon, under a strict Content-Security-Policy.
//! Reading needs nothing; changing anything needs `console.token` from
//! credentials.json (see [`auth`]), and is logged to alerts.log.
//!
//! The daemon owns the live alert set: it publishes a [`Snapshot`] after
//! every scan and each run's result ([`Console::record`]), and applies
//! [`Command`]s (run now) in its scheduler loop ([`apply`]).

pub mod actions;
pub mod alert;
pub mod alerts;
pub mod api;
pub mod auth;
pub mod chart;
pub mod definition;
pub mod health;
pub mod history;
pub mod html;
pub mod indexed;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

pub use auth::ConsoleConfig;

use crate::condition::ScriptEngine;
use crate::config::Credentials;
use crate::daemon::{Alerts, Metrics};
use crate::pipeline::RunReport;
use crate::rule::Rule;
use crate::sinks::history::HistoryTarget;
use crate::throttle::StateBackend;

/// Why the console can't be served.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// `--listen` is not a loopback address and nothing protects actions.
    #[error(
        "--listen {addr} is reachable from other hosts, but credentials.json has no `console.token`: set \"console\": {{\"token\": \"${{ESALERT_CONSOLE_TOKEN}}\"}} (or \"readonly\": true), or listen on 127.0.0.1"
    )]
    Exposed {
        /// The address.
        addr: SocketAddr,
    },
    /// The system's random generator failed.
    #[error("cannot make the console's secrets: the system random generator failed")]
    Random,
}

/// Where the daemon's files are.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The queries directory.
    pub queries: PathBuf,
    /// credentials.json.
    pub credentials: PathBuf,
    /// The throttle store (silences live beside it).
    pub state: PathBuf,
    /// Where alerts.log is.
    pub log_dir: PathBuf,
}

/// The live alert set as the scheduler last saw it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Loaded rules by name.
    pub alerts: BTreeMap<String, Arc<Rule>>,
    /// Rejected files' problems by rule name (file stem), `path:line:col: message`.
    pub rejected: BTreeMap<String, Vec<String>>,
}

impl Snapshot {
    /// The snapshot of the daemon's alert set.
    pub fn of(alerts: &Alerts) -> Snapshot {
        let mut rejected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (path, problems) in alerts.problems() {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rejected
                .entry(name)
                .or_default()
                .extend(problems.iter().cloned());
        }
        Snapshot {
            alerts: alerts
                .by_name
                .iter()
                .map(|(n, s)| (n.clone(), s.alert.clone()))
                .collect(),
            rejected,
        }
    }
}

/// What the last run of a rule since the start came to (the store keeps
/// no hit count).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LastRun {
    /// When it ended.
    #[serde(serialize_with = "ser_time")]
    pub at: DateTime<Utc>,
    /// Its outcome.
    pub outcome: String,
    /// The response's hits.
    pub hits: u64,
    /// Whether its count came from a search folded with other rules'.
    pub folded: bool,
}

fn ser_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::render::fmt_time(t))
}

/// A request for the scheduler loop.
#[derive(Debug)]
pub enum Command {
    /// Run this rule at once (its next scheduled run stays).
    RunNow {
        /// The rule.
        name: String,
        /// Whether it was queued, or why not.
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// Applies a console command to the scheduler's alert set.
pub fn apply(cmd: Command, alerts: &mut Alerts, now: DateTime<Utc>) {
    match cmd {
        Command::RunNow { name, reply } => {
            let r = match alerts.by_name.get_mut(&name) {
                None => Err(format!("no alert named {name:?} is loaded")),
                Some(s) if !s.alert.active => Err(format!(
                    "{name} is inactive: set it active, or use \"test over the last hours\""
                )),
                Some(s) if s.running.load(std::sync::atomic::Ordering::Acquire) => {
                    Err(format!("{name} is running now; wait for this run to end"))
                }
                Some(s) => {
                    s.next_due = Some(now);
                    Ok(())
                }
            };
            let _ = reply.send(r);
        }
    }
}

/// Members and leases of instances sharing state, when the state is shared.
///
/// The hook for the shared-state backend: it implements this and the
/// daemon passes it to [`Console::with_cluster`]; the Health page lists
/// what it returns.
pub trait ClusterView: Send + Sync {
    /// `(member, detail)` rows: instance id, last heartbeat, …
    fn members(&self) -> Vec<(String, String)>;
    /// `(rule, owner and expiry)` rows.
    fn leases(&self) -> Vec<(String, String)>;
    /// Adds a silence to the shared state (every instance applies it);
    /// its id.
    fn add_silence<'a>(
        &'a self,
        rule: &'a str,
        key: Option<String>,
        until: DateTime<Utc>,
        reason: Option<String>,
    ) -> futures::future::BoxFuture<'a, Result<String, String>>;
    /// Ends a shared silence; false when none by that id is in force.
    fn end_silence<'a>(
        &'a self,
        id: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<bool, String>>;
    /// Asks the watch's owner to acknowledge `actions` (all when empty)
    /// at its next run.
    fn request_ack<'a>(
        &'a self,
        rule: &'a str,
        actions: &'a [String],
    ) -> futures::future::BoxFuture<'a, Result<(), String>>;
}

/// Cached `alerts.log` last errors, by the file's length and mtime.
type ErrorCache = Option<(
    u64,
    Option<std::time::SystemTime>,
    Arc<BTreeMap<String, String>>,
)>;

/// The console's state, shared by every request.
pub struct Console {
    /// Where the daemon's files are.
    pub paths: Paths,
    metrics: Arc<Metrics>,
    store: Arc<dyn StateBackend>,
    scripts: Arc<ScriptEngine>,
    snapshot: RwLock<Arc<Snapshot>>,
    last_runs: Mutex<HashMap<String, LastRun>>,
    commands: Option<tokio::sync::mpsc::Sender<Command>>,
    auth: auth::Auth,
    started: DateTime<Utc>,
    errors: Mutex<ErrorCache>,
    cluster: Option<Arc<dyn ClusterView>>,
    /// The history destination, as credentials.json said at start or at
    /// the last SIGHUP (not read again per request).
    history: RwLock<Option<Result<HistoryTarget, String>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// A console over the daemon's state. `commands` reaches the scheduler
    /// loop (none: "run now" is unavailable).
    pub fn new(
        paths: Paths,
        creds: &Credentials,
        metrics: Arc<Metrics>,
        store: Arc<dyn StateBackend>,
        scripts: Arc<ScriptEngine>,
        commands: Option<tokio::sync::mpsc::Sender<Command>>,
    ) -> Result<Console, ConsoleError> {
        Ok(Console {
            paths,
            metrics,
            store,
            scripts,
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            last_runs: Mutex::new(HashMap::new()),
            commands,
            auth: auth::Auth::new(creds.console.as_ref())?,
            started: Utc::now(),
            errors: Mutex::new(None),
            cluster: None,
            history: RwLock::new(HistoryTarget::of(creds)),
        })
    }

    /// Adds the members and leases of a shared state.
    pub fn with_cluster(mut self, cluster: Arc<dyn ClusterView>) -> Console {
        self.cluster = Some(cluster);
        self
    }

    /// Replaces the alert set shown.
    pub fn publish(&self, snapshot: Snapshot) {
        *self
            .snapshot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(snapshot);
    }

    /// The alert set shown.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records a finished run.
    pub fn record(&self, r: &RunReport) {
        let run = LastRun {
            at: Utc::now(),
            outcome: r.outcome.as_str().to_owned(),
            hits: r.evaluation.as_ref().map_or(0, |e| e.hits),
            folded: r.folded,
        };
        self.last_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(r.alert.clone(), run);
    }

    /// Each rule's last run since the start.
    pub fn last_runs(&self) -> HashMap<String, LastRun> {
        self.last_runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The token settings and the history destination, after
    /// credentials.json was read again (SIGHUP).
    pub fn reconfigure(&self, creds: &Credentials) {
        self.auth.reconfigure(creds.console.as_ref());
        *self
            .history
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = HistoryTarget::of(creds);
    }

    /// Where notifications are indexed, if anywhere.
    pub fn history_target(&self) -> Option<Result<HistoryTarget, String>> {
        self.history
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The state backend.
    pub fn store(&self) -> &dyn StateBackend {
        self.store.as_ref()
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Each rule's last error in alerts.log, read again when the file changed.
    pub fn last_errors(&self) -> Arc<BTreeMap<String, String>> {
        let path = self.paths.log_dir.join(crate::log::LOG_NAME);
        let meta = std::fs::metadata(&path).ok();
        let stamp = (
            meta.as_ref().map_or(0, std::fs::Metadata::len),
            meta.and_then(|m| m.modified().ok()),
        );
        let mut cache = self
            .errors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((len, mtime, errors)) = cache.as_ref()
            && (*len, *mtime) == stamp
        {
            return errors.clone();
        }
        let errors = Arc::new(crate::status::last_errors(&self.paths.log_dir));
        *cache = Some((stamp.0, stamp.1, errors.clone()));
        errors
    }
}

/// Security headers on every response: a strict CSP (nothing from
/// outside, no inline script or style), no framing, no sniffing, no caching
/// of pages that show state.
async fn secure_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let asset = req.uri().path().starts_with("/assets/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/icon.svg");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Every route: the pages, the API, the assets, and `/healthz` and `/metrics`.
pub fn router(console: Arc<Console>) -> axum::Router {
    use axum::routing::{get, post};
    let pages = axum::Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/alerts") }),
        )
        .route("/alerts", get(alerts::page))
        .route("/alerts/{name}", get(alert::page))
        .route("/alerts/{name}/{action}", post(actions::form))
        .route("/health", get(health::page))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/alerts", get(api::alerts))
        .route("/api/alerts/{name}", get(api::alert))
        .route("/api/alerts/{name}/history", get(api::history))
        .route("/api/alerts/{name}/{action}", post(actions::api))
        .route("/api/silences", get(api::silences))
        .route("/api/health", get(api::health))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", CSS) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", JS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", ICON) }),
        )
        .fallback(|| async { html::not_found("No such page.") })
        .with_state(console.clone());
    pages
        .merge(crate::daemon::metrics::routes(console.metrics.clone()))
        .layer(axum::middleware::from_fn(secure_headers))
}

/// Serves the console (and `/healthz`, `/metrics`) until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Arc<Console>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(console).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
