//! The `esalert` commands. `main.rs` parses arguments and calls [`execute`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::alert::locate::{Position, Seg};
use crate::alert::{LoadError, load_dir, load_named};
use crate::condition::ScriptEngine;
use crate::condition::painless::stored;
use crate::config::{ConfigError, Credentials};
use crate::engine::EngineError;
use crate::notify::Notifiers;
use crate::pipeline::{Outcome, Runner, Settings, SystemClock};
use crate::render::fmt_time;
use crate::search::{EsClient, SearchError};
use crate::throttle::Store;
use crate::throttle::WHOLE_RULE;

/// esalert: alerting for Elasticsearch and OpenSearch.
#[derive(Debug, Parser)]
#[command(name = "esalert", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// Directory of alert files (`<name>.json`).
    #[arg(
        long,
        global = true,
        env = "ESALERT_QUERIES",
        default_value = "queries"
    )]
    pub queries: PathBuf,
    /// Credentials and connection settings.
    #[arg(
        long,
        global = true,
        env = "ESALERT_CREDENTIALS",
        default_value = "credentials.json"
    )]
    pub credentials: PathBuf,
    /// The throttle store.
    #[arg(
        long,
        global = true,
        env = "ESALERT_STATE",
        default_value = "throttle_period.json"
    )]
    pub state: PathBuf,
    /// Where alerts.log is written.
    #[arg(long, global = true, env = "ESALERT_LOG_DIR", default_value = ".")]
    pub log_dir: PathBuf,
    /// How many daily alerts.log files to keep.
    #[arg(long, global = true, env = "ESALERT_LOG_KEEP", default_value_t = 14)]
    pub log_keep: usize,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate every alert file and the credentials file; print each problem
    /// as `path:line:column: message`.
    Check {
        /// Skip the credentials file.
        #[arg(long)]
        queries_only: bool,
        /// Saved search responses, `<alert name>.json` each: every native
        /// alert with one has its subject and message rendered against it.
        /// The default directory is skipped when absent.
        #[arg(long, value_name = "DIR")]
        responses: Option<PathBuf>,
        /// Then ask the cluster (`_cluster/health`) and every destination
        /// (Slack `auth.test`, SMTP `NOOP`, …) whether they accept
        /// esalert's credentials, without notifying anyone: one line each.
        #[arg(long, conflicts_with = "queries_only")]
        online: bool,
    },
    /// Run one alert now and show what it would send: as text on a
    /// terminal, as JSON with `--json` or when piped. Sends nothing.
    /// Exit code: 0 matched, 3 not matched, 1 error.
    Test {
        /// The alert's name (its file stem in the queries directory).
        name: String,
        /// A saved search response to evaluate instead of searching (the
        /// body is still rendered, so its template mistakes show).
        #[arg(long)]
        response: Option<PathBuf>,
        /// Deliver the notification for real (ignores and keeps the throttle store).
        #[arg(long, conflicts_with = "since")]
        send: bool,
        /// Replay the past: run the alert window by window over this range,
        /// as the daemon would have, simulating throttles without touching
        /// the store. A duration back from now (`24h`) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// With `--since`: the end of the range (default now), the same forms.
        #[arg(long, requires = "since")]
        until: Option<String>,
        /// Print JSON (the default when stdout is not a terminal).
        #[arg(long)]
        json: bool,
    },
    /// Run every active alert once, now, and log each outcome.
    Once {
        /// How many alerts run at the same time; with batching, how many
        /// requests may be in flight to the cluster.
        #[arg(long, env = "ESALERT_CONCURRENCY", default_value_t = 16)]
        concurrency: usize,
        /// Searches per `_msearch` request (1: each search alone).
        #[arg(long, env = "ESALERT_SEARCH_BATCH", default_value_t = 100)]
        search_batch: usize,
        /// Alerts whose hit count alone decides them are counted together,
        /// at most this many per search (0: each searches alone).
        #[arg(long, env = "ESALERT_MAX_FOLD", default_value_t = 500)]
        max_fold: usize,
        /// Give up delivering a match after this long.
        #[arg(long, env = "ESALERT_MAX_RETRY_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
        max_retry_age: std::time::Duration,
    },
    /// Run as a daemon: schedule every active alert, reload dropped files,
    /// deliver and throttle. Stops on SIGTERM/SIGINT; SIGHUP reloads.
    Run(RunArgs),
    /// Acknowledge a watch's actions, as Watcher's ack API does: an acked
    /// action is not executed again until the watch's condition is false.
    Ack {
        /// The watch.
        name: String,
        /// Action ids; all of them when none are given.
        actions: Vec<String>,
    },
    /// Silence an alert (or one key of it) until a time: its matches are
    /// logged `outcome=silenced`, not delivered, and start no throttle.
    /// Works with or without a running daemon.
    Silence {
        /// The alert or watch; omit with `--list`.
        #[arg(required_unless_present = "list")]
        name: Option<String>,
        /// Only this group key.
        #[arg(long)]
        key: Option<String>,
        /// How long, e.g. `2h` (at most 365d).
        #[arg(long = "for", value_parser = humantime::parse_duration, conflicts_with = "until")]
        for_: Option<std::time::Duration>,
        /// Until when, RFC 3339, e.g. `2026-12-01T08:00:00Z`.
        #[arg(long)]
        until: Option<String>,
        /// Why, shown by `--list` and `status`.
        #[arg(long)]
        reason: Option<String>,
        /// List the silences in force.
        #[arg(long, conflicts_with_all = ["name", "key", "for_", "until", "reason"])]
        list: bool,
        /// With `--list`: JSON.
        #[arg(long, requires = "list")]
        json: bool,
    },
    /// End a silence early.
    Unsilence {
        /// The id `esalert silence` printed.
        id: String,
    },
    /// Show each alert's last run, outcome and throttle.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `esalert run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// How many alerts may run at the same time; with batching, how many
    /// requests may be in flight to the cluster.
    #[arg(long, env = "ESALERT_MAX_CONCURRENCY", default_value_t = 32)]
    pub max_concurrency: usize,
    /// Alerts due together send their searches as one `_msearch` request
    /// of at most this many searches (1: each search alone).
    #[arg(long, env = "ESALERT_SEARCH_BATCH", default_value_t = 100)]
    pub search_batch: usize,
    /// Alerts due together whose hit count alone decides them are counted
    /// by one search, at most this many per search (0: no folding).
    #[arg(long, env = "ESALERT_MAX_FOLD", default_value_t = 500)]
    pub max_fold: usize,
    /// How long in-flight runs and deliveries may take to finish on SIGTERM.
    #[arg(long, env = "ESALERT_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Serve the console, /healthz and /metrics here: a port (on
    /// 127.0.0.1) or an address, e.g. 9095 or 0.0.0.0:9095 (which needs
    /// `console.token` in credentials.json). Off by default.
    #[arg(long, env = "ESALERT_LISTEN", value_parser = parse_listen)]
    pub listen: Option<std::net::SocketAddr>,
    /// Give up delivering a match after this long.
    #[arg(long, env = "ESALERT_MAX_RETRY_AGE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_retry_age: std::time::Duration,
    /// Consecutive failures of one alert before "esalert: alert NAME is failing" is sent.
    #[arg(long, env = "ESALERT_ERROR_ALERT_AFTER", default_value_t = 5)]
    pub error_alert_after: u32,
    /// Full rescan of the queries directory, as a backstop for missed file events.
    #[arg(long, env = "ESALERT_RESCAN", default_value = "30s", value_parser = humantime::parse_duration)]
    pub rescan: std::time::Duration,
    /// Spread the starts of alerts due at the same tick over this long
    /// (0s: all at once); their windows still end exactly at the tick.
    #[arg(long, env = "ESALERT_TICK_SPREAD", default_value = "0s", value_parser = humantime::parse_duration)]
    pub tick_spread: std::time::Duration,
    /// A delivery still owed this long after its match counts as stuck:
    /// `/healthz` turns 503 and `/metrics` counts it.
    #[arg(long, env = "ESALERT_STUCK_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    pub stuck_after: std::time::Duration,
    /// With `--state es://...`: how long an instance's ownership of an
    /// alert lasts without renewal; a dead instance's alerts are taken
    /// over within two leases.
    #[arg(long, env = "ESALERT_LEASE", default_value = "30s", value_parser = humantime::parse_duration)]
    pub lease: std::time::Duration,
    /// Test of the tests only: shared state without version checks, and
    /// leases expiring by wall clock. Never use it.
    #[arg(long, hide = true)]
    pub test_broken_shared_state: bool,
}

/// `--listen`: `PORT` (on 127.0.0.1) or `ADDRESS:PORT`.
fn parse_listen(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = s.trim().parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.trim()
        .parse()
        .map_err(|_| format!("{s:?}: give a port (9095) or an address and port (127.0.0.1:9095)"))
}

impl Command {
    /// Whether this command writes alerts.log (the others only use stderr).
    pub fn writes_log(&self) -> bool {
        matches!(self, Command::Once { .. } | Command::Run(_))
    }
}

/// Errors that end a command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An alert file could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The credentials file is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Elasticsearch client could not be built.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The alert run failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A medium could not be set up.
    #[error(transparent)]
    Notify(#[from] crate::notify::SetupError),
    /// The throttle store is unusable.
    #[error(transparent)]
    Store(#[from] crate::throttle::StoreError),
    /// Shared state (`--state es://...`) can't be used.
    #[error(transparent)]
    Shared(#[from] crate::cluster::open::OpenError),
    /// A run could not record its state.
    #[error(transparent)]
    Run(#[from] crate::pipeline::RunError),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] crate::daemon::DaemonError),
    /// A watch could not be acknowledged.
    #[error("{0}")]
    Watch(String),
    /// `esalert test` could not evaluate the rule.
    #[error("{0}")]
    Test(String),
    /// A silence could not be made, listed or ended.
    #[error("{0}")]
    Silence(String),
    /// A saved response could not be read.
    #[error("{}{}: {message}", path.display(), pos.map(|p| format!(":{}:{}", p.line, p.column)).unwrap_or_default())]
    Response {
        /// The response file.
        path: PathBuf,
        /// Where, for a JSON error.
        pos: Option<Position>,
        /// What is wrong.
        message: String,
    },
}

/// Runs a command; returns the process exit code.
pub async fn execute(cli: Cli) -> Result<u8, CliError> {
    let g = cli.global;
    crate::frontends::elastalert::globals::set_beside(&g.credentials);
    if let Some(spec) = g.state.to_str().and_then(crate::cluster::StateSpec::parse) {
        let spec = spec.map_err(crate::cluster::open::OpenError::from)?;
        match &cli.command {
            // Silences and acks are made in the shared state (see below).
            Command::Run(_)
            | Command::Check { .. }
            | Command::Silence { .. }
            | Command::Unsilence { .. }
            | Command::Ack { .. } => {}
            Command::Status { json } => return shared_status(&g, &spec, *json).await,
            other => {
                return Err(
                    crate::cluster::open::OpenError::Unsupported(command_name(other)).into(),
                );
            }
        }
    }
    match cli.command {
        Command::Check {
            queries_only,
            responses,
            online,
        } => Ok(check(&g, queries_only, responses.as_deref(), online).await),
        Command::Test {
            name,
            response,
            send,
            since,
            until,
            json,
        } => {
            use std::io::IsTerminal;
            let json = json || !std::io::stdout().is_terminal();
            let result = match since {
                Some(since) => {
                    let range = TestRange {
                        since,
                        until: until.as_deref(),
                    };
                    test_since(&g, &name, response.as_deref(), &range, json).await
                }
                None => test(&g, &name, response.as_deref(), send, json).await,
            };
            if json && let Err(e) = &result {
                // A script reads the error where it reads the result; the
                // exit code (1) and stderr say it too.
                emit(&format!(
                    "{}\n",
                    serde_json::json!({"alert": name, "error": e.to_string()})
                ));
            }
            result
        }
        Command::Once {
            concurrency,
            search_batch,
            max_fold,
            max_retry_age,
        } => once(&g, concurrency, (search_batch, max_fold), max_retry_age).await,
        Command::Status { json } => status(&g, json),
        Command::Ack { name, actions } => ack(&g, &name, &actions).await,
        Command::Silence {
            name,
            key,
            for_,
            until,
            reason,
            list,
            json,
        } => {
            if list {
                silence_list(&g, json).await
            } else {
                silence(
                    &g,
                    name.as_deref().unwrap_or_default(),
                    key,
                    for_,
                    until,
                    reason,
                )
                .await
            }
        }
        Command::Unsilence { id } => unsilence(&g, &id).await,
        Command::Run(args) => {
            let cfg = crate::daemon::DaemonConfig {
                queries: g.queries.clone(),
                credentials: g.credentials.clone(),
                state: g.state.clone(),
                log_dir: g.log_dir.clone(),
                max_concurrency: args.max_concurrency,
                search_batch: args.search_batch,
                shutdown_grace: args.shutdown_grace,
                listen: args.listen,
                rescan: args.rescan,
                tick_spread: args.tick_spread,
                stuck_after: args.stuck_after,
                lease: args.lease.max(std::time::Duration::from_secs(1)),
                broken_shared_state: args.test_broken_shared_state,
                settings: Settings {
                    max_retry_age: args.max_retry_age,
                    concurrency: args.max_concurrency,
                    error_alert_after: args.error_alert_after,
                    max_fold: args.max_fold,
                    ..Settings::default()
                },
            };
            crate::daemon::run(cfg, terminated()).await?;
            Ok(0)
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(event = "signal", signal = which);
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Where `check` looks for saved responses when `--responses` is not given.
const DEFAULT_RESPONSES: &str = "tests/fixtures/responses";

async fn check(g: &Global, queries_only: bool, responses: Option<&Path>, online: bool) -> u8 {
    let scripts = ScriptEngine::default();
    // Problems in alert files, printed by file and position; then the others.
    let mut in_alerts: Vec<crate::alert::Problem> = Vec::new();
    let mut problems = Vec::new();
    let mut alerts = Vec::new();
    if !queries_only && let Ok(c) = Credentials::load(&g.credentials) {
        stored::prefetch_logged(&c.elasticsearch, &g.queries).await;
    }
    match load_dir(&g.queries, &scripts) {
        Ok(report) => {
            alerts = report.alerts;
            for e in report.errors {
                in_alerts.extend(e.problems());
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    // Alert files again, for positions of what is found after loading.
    let texts: Vec<Option<String>> = alerts
        .iter()
        .map(|a| {
            crate::alert::read_regular(&a.path, crate::alert::MAX_FILE_SIZE)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
        })
        .collect();
    // A key the file lacks (a default) has no position.
    let at = |i: usize, segs: &[Seg]| {
        texts
            .get(i)
            .and_then(Option::as_deref)
            .filter(|t| {
                segs.iter().all(|s| match s {
                    Seg::Key(k) => t.contains(&format!("\"{k}\"")),
                    Seg::Index(_) => true,
                })
            })
            .and_then(|t| crate::alert::locate::locate(t, segs))
    };
    let dir = responses.unwrap_or(Path::new(DEFAULT_RESPONSES));
    if dir.is_dir() {
        for (i, a) in alerts.iter().enumerate() {
            in_alerts.extend(check_response(
                a,
                dir,
                texts.get(i).and_then(Option::as_deref),
            ));
        }
    } else if responses.is_some() {
        problems.push(format!(
            "{}: --responses: not a directory of saved responses",
            dir.display()
        ));
    }
    let mut loaded = None;
    if !queries_only {
        match Credentials::load(&g.credentials) {
            Err(e) => problems.push(e.to_string()),
            Ok(creds) => {
                let text = std::fs::read_to_string(&g.credentials).unwrap_or_default();
                let lint = crate::config::lint(&g.credentials, &text, &creds);
                let slack_linted = lint.iter().any(|p| p.message.starts_with("`slack."));
                problems.extend(lint.iter().map(ToString::to_string));
                problems.extend(destination_problems(&g.credentials, &text, &creds));
                match Notifiers::from_credentials(&creds) {
                    // Said already, with its position.
                    Err(crate::notify::SetupError::Slack(_)) if slack_linted => {}
                    Err(crate::notify::SetupError::Output { .. }) => {}
                    Err(e) => problems.push(format!("{}: {e}", g.credentials.display())),
                    Ok(_) => {}
                }
                let webhook = creds
                    .slack
                    .as_ref()
                    .is_some_and(crate::config::SlackConfig::uses_webhook);
                for (i, a) in alerts.iter().enumerate() {
                    let native = a.body_as::<crate::engine::NativeAlert>();
                    match native {
                        Some(n) => in_alerts.extend(alert_destination_problems(
                            a,
                            &n.spec,
                            &creds,
                            &g.credentials,
                            |segs| at(i, segs),
                        )),
                        None => {
                            // Watcher actions: an output with no settings
                            // would fail every delivery.
                            for m in a.body.sinks() {
                                if !destination_exists(&creds, &m)
                                    && matches!(m.as_str(), "slack" | "email")
                                {
                                    in_alerts.push(crate::alert::Problem {
                                        path: a.path.clone(),
                                        position: None,
                                        message: not_configured(&m, &g.credentials),
                                    });
                                }
                            }
                        }
                    }
                    let channel = native
                        .and_then(|n| n.spec.slack.as_ref())
                        .is_some_and(|s| s.channel.is_some());
                    if webhook && channel {
                        in_alerts.push(crate::alert::Problem {
                            path: a.path.clone(),
                            position: at(i, &[Seg::key("slack"), Seg::key("channel")]),
                            message: format!(
                                "`slack.channel` is ignored: {} posts to Slack through an incoming webhook, which always posts to its own channel; remove it, or use a bot `token` there",
                                g.credentials.display()
                            ),
                        });
                    }
                }
                loaded = Some(creds);
            }
        }
    }
    in_alerts.sort_by(|a, b| {
        let at = |p: &crate::alert::Problem| p.position.map(|p| (p.line, p.column));
        a.path.cmp(&b.path).then(at(a).cmp(&at(b)))
    });
    // elastalert.yaml's problems come with every ElastAlert rule: once.
    in_alerts.dedup_by(|a, b| a.to_string() == b.to_string());
    let mut problems: Vec<String> = in_alerts
        .iter()
        .map(ToString::to_string)
        .chain(problems)
        .collect();
    let mut seen = std::collections::HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    for p in &problems {
        println!("{p}");
    }
    // What is ignored, as ElastAlert ignores it: said, not refused.
    let mut warnings = 0;
    for a in &alerts {
        for w in a.body.warnings() {
            let mut w = w.clone();
            w.message = format!("warning: {}", w.message);
            println!("{w}");
            warnings += 1;
        }
    }
    let offline = if problems.is_empty() {
        eprintln!(
            "check: {} alert(s) OK in {}{}",
            alerts.len(),
            g.queries.display(),
            if warnings > 0 {
                format!(" ({warnings} warning(s))")
            } else {
                String::new()
            }
        );
        0
    } else {
        eprintln!("check: {} problem(s) found", problems.len());
        1
    };
    match loaded {
        Some(creds) if online => offline.max(check_online(&creds).await),
        _ if online => {
            println!("online: not run: {} can't be used", g.credentials.display());
            1
        }
        _ => offline,
    }
}

/// Whether credentials.json has a destination named `name`.
fn destination_exists(creds: &Credentials, name: &str) -> bool {
    (name == "slack" && creds.slack.is_some())
        || (name == "email" && creds.email.is_some())
        || creds.outputs.contains_key(name)
}

/// Every destination's name in credentials.json.
fn destination_names(creds: &Credentials) -> Vec<&str> {
    let mut v = Vec::new();
    if creds.slack.is_some() {
        v.push("slack");
    }
    if creds.email.is_some() {
        v.push("email");
    }
    v.extend(creds.outputs.keys().map(String::as_str));
    v
}

fn not_configured(m: &str, credentials: &Path) -> String {
    format!(
        "medium \"{m}\" is not configured in {}; add a \"{m}\" section there or remove it from `media`",
        credentials.display()
    )
}

/// The type of destination `name`: its `type`, or `slack`/`email` for the
/// top-level sections.
fn type_of_destination(
    creds: &Credentials,
    name: &str,
) -> Option<&'static crate::sinks::destinations::DestinationType> {
    use crate::sinks::destinations;
    match creds.outputs.get(name) {
        Some(v) => destinations::type_of(v).ok(),
        None if destination_exists(creds, name) => destinations::of_type(name),
        None => None,
    }
}

/// A native alert's `media` and `outputs` against credentials.json: each
/// name a destination there, and each setting one its type lets an alert
/// set. `at` locates a path in the alert file.
fn alert_destination_problems(
    a: &crate::alert::Alert,
    spec: &crate::alert::AlertFile,
    creds: &Credentials,
    credentials: &Path,
    at: impl Fn(&[Seg]) -> Option<Position>,
) -> Vec<crate::alert::Problem> {
    let mut out = Vec::new();
    let mut problem = |position: Option<Position>, message: String| {
        out.push(crate::alert::Problem {
            path: a.path.clone(),
            position,
            message,
        });
    };
    for (i, m) in spec.media.iter().enumerate() {
        if destination_exists(creds, m) {
            continue;
        }
        let here = at(&[Seg::key("media"), Seg::Index(i)]);
        if matches!(m.as_str(), "slack" | "email") {
            problem(here, not_configured(m, credentials));
        } else {
            let names = destination_names(creds);
            problem(
                here,
                format!(
                    "no destination named {m:?} in {}; the destinations are: {}",
                    credentials.display(),
                    if names.is_empty() {
                        "none (add one under `outputs`)".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            );
        }
    }
    for (name, settings) in &spec.outputs {
        if !spec.media.contains(name) {
            problem(
                at(&[Seg::key("outputs"), Seg::key(name.as_str())]),
                format!(
                    "`outputs.{name}` is for a destination this alert does not send to; add {name:?} to `media`, or remove it"
                ),
            );
            continue;
        }
        let Some(t) = type_of_destination(creds, name) else {
            continue;
        };
        for key in settings.keys() {
            if t.overridable.contains(&key.as_str()) {
                continue;
            }
            problem(
                at(&[
                    Seg::key("outputs"),
                    Seg::key(name.as_str()),
                    Seg::key(key.as_str()),
                ]),
                format!(
                    "`{key}` can't be set by an alert for {name:?} (a {} destination); {}",
                    t.name,
                    if t.overridable.is_empty() {
                        "it takes no settings from alerts".to_owned()
                    } else {
                        format!("an alert may set: {}", t.overridable.join(", "))
                    }
                ),
            );
        }
        if let Some(sev) = settings.get("severity")
            && t.overridable.contains(&"severity")
            && sev
                .as_str()
                .and_then(crate::notify::Severity::parse)
                .is_none()
        {
            problem(
                at(&[
                    Seg::key("outputs"),
                    Seg::key(name.as_str()),
                    Seg::key("severity"),
                ]),
                format!(
                    "`severity` must be one of {}",
                    crate::notify::Severity::NAMES
                ),
            );
        }
    }
    out
}

/// Every problem of credentials.json's `outputs`, each at its setting.
fn destination_problems(path: &Path, text: &str, creds: &Credentials) -> Vec<String> {
    crate::sinks::destinations::problems(creds)
        .into_iter()
        .map(|(name, e)| {
            let mut at = e.at.clone();
            // serde names an unknown key in its message, not its path.
            if let Some(key) = e
                .message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
                && at.last().map(String::as_str) != Some(key)
            {
                at.push(key.to_owned());
            }
            let mut segs = vec![Seg::key("outputs"), Seg::key(name.as_str())];
            segs.extend(crate::config::path_segs(&at.join(".")));
            let setting = std::iter::once(name.as_str())
                .chain(at.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(".");
            let problem = crate::alert::Problem {
                path: path.to_owned(),
                position: crate::alert::locate::locate(text, &segs),
                message: format!("outputs.{setting}: {}", e.message),
            };
            problem.to_string()
        })
        .collect()
}

/// The longest a destination's or the cluster's health check may take.
const ONLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// `check --online`: the cluster's `_cluster/health`, then every
/// destination's health check, at once; one line each, in name order.
/// Returns the exit code.
async fn check_online(creds: &Credentials) -> u8 {
    let mut failed = false;
    let mut line = |name: &str, r: Result<String, String>| match r {
        Ok(note) => println!("online: {name}: ok{note}"),
        Err(e) => {
            failed = true;
            println!("online: {name}: {e}");
        }
    };
    let es = match EsClient::new(&creds.elasticsearch) {
        Ok(es) => es,
        Err(e) => {
            line("cluster", Err(e.to_string()));
            return 1;
        }
    };
    let notifiers = Notifiers::from_credentials(creds);
    let sinks = notifiers
        .as_ref()
        .ok()
        .map(|n| crate::sinks::Sinks::new(n, &es));
    let cluster = async {
        match tokio::time::timeout(ONLINE_TIMEOUT, es.cluster_health()).await {
            Err(_) => Err(format!(
                "no answer from {} within {ONLINE_TIMEOUT:?}",
                es.url()
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(h)) => match h["status"].as_str() {
                Some("red") => Err(format!(
                    "{} is red: some primary shards are unassigned",
                    es.url()
                )),
                s => Ok(format!(
                    " ({}, status {})",
                    es.url(),
                    s.unwrap_or("unknown")
                )),
            },
        }
    };
    let reserved = crate::sinks::destinations::RESERVED;
    let checks = sinks
        .iter()
        .flat_map(|s| s.all())
        .filter(|(name, _)| !reserved.contains(name))
        .map(|(name, sink)| async move {
            let r = match tokio::time::timeout(ONLINE_TIMEOUT, sink.healthcheck()).await {
                Err(_) => Err(format!("no answer within {ONLINE_TIMEOUT:?}")),
                Ok(Err(e)) => {
                    let text = e.to_string();
                    let prefix = format!("{}: ", e.sink());
                    Err(text.strip_prefix(&prefix).unwrap_or(&text).to_owned())
                }
                Ok(Ok(())) if slack_webhook(creds, name) => Ok(
                    " (an incoming webhook: it can't be asked anything without posting, so it was not probed)"
                        .to_owned(),
                ),
                Ok(Ok(())) => Ok(String::new()),
            };
            (name, r)
        });
    let (cluster, results) = futures::join!(cluster, futures::future::join_all(checks));
    line("cluster", cluster);
    if let Err(e) = &notifiers {
        line("destinations", Err(format!("not checked: {e}")));
    }
    for (name, r) in results {
        line(name, r);
    }
    u8::from(failed)
}

/// Whether destination `name` posts to a Slack incoming webhook.
fn slack_webhook(creds: &Credentials, name: &str) -> bool {
    let cfg = match creds.outputs.get(name) {
        Some(v) if v.get("type").and_then(Value::as_str) == Some("slack") => {
            crate::sinks::destinations::settings::<crate::config::SlackConfig>(v).ok()
        }
        Some(_) => None,
        None if name == "slack" => creds.slack.clone(),
        None => None,
    };
    cfg.is_some_and(|c| c.uses_webhook())
}

/// Renders a native alert's subject and message against its saved response
/// `dir/<name>.json`, if there is one: the names the response lacks, each
/// at its expression in the alert file.
fn check_response(
    a: &crate::alert::Alert,
    dir: &Path,
    text: Option<&str>,
) -> Vec<crate::alert::Problem> {
    let Some(native) = a.body_as::<crate::engine::NativeAlert>() else {
        return Vec::new();
    };
    let path = dir.join(format!("{}.json", a.name));
    if !path.is_file() {
        return Vec::new();
    }
    let response = match read_response(&path) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            return vec![crate::alert::Problem {
                path: a.path.clone(),
                position: None,
                message: e.to_string(),
            }];
        }
    };
    let now = chrono::Utc::now();
    // With `group_by`, rendered as the first entity of the response would be.
    let group = a.policy.group_by.as_ref().and_then(|spec| {
        crate::pipeline::group::split(&response, spec, |_, _| Ok::<_, ()>(true))
            .ok()
            .and_then(|g| g.groups.into_iter().next())
    });
    let vars = crate::render::MessageVars {
        response: &response,
        alert: &native.info,
        now,
        window: crate::render::Window {
            start: now.checked_sub_signed(a.period(now)).unwrap_or(now),
            end: now,
        },
        slack: false,
        html: false,
        group: group.as_ref(),
        resolved: false,
    };
    native
        .templates
        .check_message(&vars)
        .into_iter()
        .map(|e| {
            let (template, message, offset) = match &e {
                crate::render::RenderError::Undefined {
                    template,
                    expr,
                    offset,
                    ..
                } => (
                    template.clone(),
                    format!("{template}: {expr} is undefined in {}", path.display()),
                    *offset,
                ),
                other => (
                    other.template().unwrap_or("message").to_owned(),
                    format!("{other} (with {})", path.display()),
                    None,
                ),
            };
            let segs = [Seg::key(template)];
            let pos = text.and_then(|t| match offset {
                Some(o) => crate::alert::locate::locate_in_string(t, &segs, o),
                None => crate::alert::locate::locate(t, &segs),
            });
            crate::alert::Problem {
                path: a.path.clone(),
                position: pos,
                message,
            }
        })
        .collect()
}

fn read_response(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Response {
        path: path.to_owned(),
        pos: None,
        message: format!("cannot read saved response: {e}"),
    })?;
    crate::search::parse::from_slice(text.as_bytes()).map_err(|e| CliError::Response {
        path: path.to_owned(),
        pos: Some(Position {
            line: e.line(),
            column: e.column(),
        }),
        message: format!("saved response is not valid JSON: {e}"),
    })
}

/// Writes to stdout; a reader that went away (`| head`) ends the output
/// quietly instead of panicking.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// [`emit`]s pretty JSON and a newline.
fn emit_json(v: &Value) {
    emit(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ));
}

/// Exit code of `test` when the alert did not match.
const NOT_MATCHED: u8 = 3;

/// The search request a native alert or a watch's search input sends at
/// `now` for `window`. A native alert's body is rendered, so that its
/// template mistakes show even with a saved response; a watch's body is
/// shown as written (its Mustache templates are rendered in the run).
fn request_of(
    rule: &crate::alert::Alert,
    now: chrono::DateTime<chrono::Utc>,
    window: crate::render::Window,
) -> Result<Option<Value>, CliError> {
    if let Some(n) = rule.native() {
        let body = n
            .templates
            .render_body(&n.body, &n.info, now, window)
            .map_err(|e| CliError::Test(EngineError::from(e).to_string()))?;
        return Ok(Some(
            serde_json::json!({"index": n.spec.index.0, "body": body}),
        ));
    }
    fn search(input: &crate::watcher::Input, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
        use crate::watcher::Input;
        match input {
            Input::Search(req) => {
                let index: Vec<String> = req
                    .indices
                    .iter()
                    .map(|i| crate::datemath::index_name(i, now).unwrap_or_else(|_| i.clone()))
                    .collect();
                vec![serde_json::json!({"index": index, "body": req.body})]
            }
            Input::Chain(items) => items
                .iter()
                .flat_map(|(name, i)| {
                    search(i, now).into_iter().map(move |mut r| {
                        r["input"] = Value::String(name.clone());
                        r
                    })
                })
                .collect(),
            _ => Vec::new(),
        }
    }
    let Some(w) = rule.watch() else {
        return Ok(None);
    };
    let mut all = search(&w.input, now);
    Ok(match all.len() {
        0 => None,
        1 => all.pop(),
        _ => Some(Value::Array(all)),
    })
}

async fn test(
    g: &Global,
    name: &str,
    response: Option<&Path>,
    send: bool,
    json: bool,
) -> Result<u8, CliError> {
    let scripts = ScriptEngine::default();
    if let Ok(c) = Credentials::load(&g.credentials) {
        stored::prefetch_logged(&c.elasticsearch, &g.queries).await;
    }
    let rule = load_named(&g.queries, name, &scripts)?;
    let saved = response.map(read_response).transpose()?.map(Arc::new);
    let creds = if saved.is_none() || send {
        Some(Credentials::load(&g.credentials)?)
    } else {
        Credentials::load(&g.credentials).ok()
    };
    let es = match &creds {
        Some(c) => EsClient::new(&c.elasticsearch)?,
        // A saved response answers every search: nothing is contacted.
        None => local_client("http://127.0.0.1:9200")?,
    };
    // Throttle and ack state are read, never written.
    let state = Store::read_only(&g.state)
        .ok()
        .and_then(|d| d.alerts.get(name).cloned());
    let now = chrono::Utc::now();
    let window = crate::engine::default_window(&rule, now);
    let request = request_of(&rule, now, window)?;
    let eval = crate::pipeline::dry_run(&rule, &es, &scripts, saved.as_ref(), state.as_ref(), now)
        .await
        .map_err(|e| CliError::Test(e.to_string()))?;
    if let Some(p) = &eval.partial {
        tracing::warn!(alert = name, event = "partial_result", reason = %p);
    }
    let mut out = serde_json::json!({"alert": name, "matched": eval.matched, "hits": eval.hits});
    for (k, v) in &eval.detail {
        out[k] = v.clone();
    }
    let fold = crate::pipeline::fold::would_fold(&rule, &es, &scripts, now);
    out["fold"] = Value::Bool(fold.is_ok());
    if let Err(why) = fold {
        out["fold_reason"] = Value::String(why);
    }
    if let Some(r) = request {
        out["request"] = r;
    }
    let mut code = if eval.matched { 0 } else { NOT_MATCHED };
    if send && eval.matched {
        let notifiers = Notifiers::from_credentials(
            creds
                .as_ref()
                .ok_or_else(|| CliError::Test("--send needs credentials.json".into()))?,
        )?;
        let sinks = crate::sinks::Sinks::new(&notifiers, &es);
        let mut sent = serde_json::Map::new();
        for (id, r) in crate::pipeline::send_now(&sinks, &eval).await {
            let v = match r {
                Ok(()) => Value::String("sent".into()),
                Err(e) => {
                    code = 1;
                    eprintln!("esalert: {e}");
                    Value::String(format!("error: {e}"))
                }
            };
            sent.insert(id, v);
        }
        out["delivered"] = Value::Object(sent);
    }
    if json {
        emit_json(&out);
    } else {
        let silences =
            crate::silence::load(&crate::silence::path_for(&g.state)).unwrap_or_default();
        emit(&test_text(
            &eval,
            &out,
            window,
            state.as_ref(),
            &silences,
            now,
        ));
    }
    Ok(code)
}

/// `test`'s result as a person reads it on a terminal.
fn test_text(
    eval: &crate::rule::Evaluated,
    out: &Value,
    window: crate::render::Window,
    state: Option<&crate::throttle::AlertState>,
    silences: &[crate::silence::Silence],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let name = out["alert"].as_str().unwrap_or_default();
    let _ = writeln!(t, "alert:    {name}");
    let _ = writeln!(
        t,
        "matched:  {} ({} hit{})",
        if eval.matched { "yes" } else { "no" },
        eval.hits,
        if eval.hits == 1 { "" } else { "s" }
    );
    let _ = writeln!(
        t,
        "window:   {} to {}",
        fmt_time(&window.start),
        fmt_time(&window.end)
    );
    if let Some(p) = &eval.partial {
        let _ = writeln!(t, "partial:  {p}");
    }
    if let Some(m) = &eval.missing {
        let _ = writeln!(t, "missing:  {m} is not in the response");
    }
    match out["fold_reason"].as_str() {
        None => {
            let _ = writeln!(
                t,
                "fold:     yes (counted in one search with other alerts due on the same index and window)"
            );
        }
        Some(why) => {
            let _ = writeln!(t, "fold:     no ({why})");
        }
    }
    let requests = match &out["request"] {
        Value::Array(a) => a.clone(),
        Value::Null => Vec::new(),
        r => vec![r.clone()],
    };
    for r in &requests {
        let index = match &r["index"] {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            other => other.as_str().unwrap_or_default().to_owned(),
        };
        let _ = writeln!(t, "request:  POST /{index}/_search {}", r["body"]);
    }
    if let Some(subject) = out["subject"].as_str() {
        let _ = writeln!(t, "subject:  {subject}");
    }
    if let Some(message) = out["message"].as_str() {
        let _ = writeln!(t, "message:");
        for l in message.lines() {
            let _ = writeln!(t, "  {l}");
        }
    }
    for a in &eval.actions {
        let what = match &a.plan {
            crate::rule::Plan::Send(m) => format!("would send {} message(s)", m.len()),
            crate::rule::Plan::ConditionFailed => "its condition is false".to_owned(),
            crate::rule::Plan::Suppressed(why) => {
                let until = state
                    .and_then(|s| s.throttled(WHOLE_RULE, &a.scope, now))
                    .filter(|_| *why == "throttled")
                    .map(|u| format!(" until {}", fmt_time(&u)))
                    .unwrap_or_default();
                format!("{why}{until}: not sent")
            }
        };
        let _ = writeln!(t, "action:   {} ({}): {what}", a.id, a.kind);
    }
    for s in silences.iter().filter(|s| s.rule == name && s.until > now) {
        let key = s
            .key
            .as_deref()
            .map(|k| format!(" key {k}"))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "silenced:{key} until {} ({}): matches are not sent",
            fmt_time(&s.until),
            s.id
        );
    }
    if let Some(Value::Object(d)) = out.get("delivered") {
        for (id, r) in d {
            let _ = writeln!(t, "delivered: {id}: {}", r.as_str().unwrap_or_default());
        }
    }
    t
}

/// A client for a cluster at `url` with default settings.
fn local_client(url: &str) -> Result<EsClient, CliError> {
    let cfg: crate::config::EsConfig = serde_json::from_value(serde_json::json!({ "url": url }))
        .map_err(|e| CliError::Test(e.to_string()))?;
    Ok(EsClient::new(&cfg)?)
}

/// `--since` and `--until` as given.
struct TestRange<'a> {
    since: String,
    until: Option<&'a str>,
}

/// A time as `--since`/`--until` take it: a duration back from `now`, or
/// an RFC 3339 time.
fn parse_when(
    flag: &str,
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, CliError> {
    let bad = || {
        CliError::Test(format!(
            "{flag} {text:?}: give a duration back from now (24h, 90m, 7d) or a time like 2026-12-01T08:00:00Z"
        ))
    };
    if let Ok(d) = humantime::parse_duration(text.trim()) {
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_sub_signed(d))
            .ok_or_else(bad);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| bad())
}

/// A span as people write it: `24h`, `7d`, `90m`.
fn short_span(d: chrono::Duration) -> String {
    let s = d.num_seconds();
    match s {
        _ if s % 86_400 == 0 && s > 3 * 86_400 => format!("{}d", s / 86_400),
        _ if s % 3600 == 0 => format!("{}h", s / 3600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => {
            humantime::format_duration(std::time::Duration::from_secs(s.unsigned_abs())).to_string()
        }
    }
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A group key as shown: the whole alert when it doesn't group.
fn key_label(k: &str) -> &str {
    if k.is_empty() { "whole alert" } else { k }
}

/// Serves `response` to every request on a local port: the simulation's
/// searches go through the real client and pipeline, and each is answered
/// with the saved response.
async fn serve_saved(response: &Value) -> Result<(String, tokio::task::JoinHandle<()>), CliError> {
    let body = response.to_string();
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move { ([("content-type", "application/json")], body) }
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| CliError::Test(format!("cannot serve the saved response locally: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::Test(format!("cannot serve the saved response locally: {e}")))?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

async fn test_since(
    g: &Global,
    name: &str,
    response: Option<&Path>,
    range: &TestRange<'_>,
    json: bool,
) -> Result<u8, CliError> {
    use crate::pipeline::simulate;
    let scripts = Arc::new(ScriptEngine::default());
    let rule = load_named(&g.queries, name, &scripts)?;
    let now = chrono::Utc::now();
    let since = parse_when("--since", &range.since, now)?;
    let until = match range.until {
        Some(u) => parse_when("--until", u, now)?,
        None => now,
    };
    if until > now {
        return Err(CliError::Test(format!(
            "--until {} is in the future; a dry run replays the past",
            fmt_time(&until)
        )));
    }
    if since >= until {
        return Err(CliError::Test(format!(
            "--since {} is not before --until {}",
            fmt_time(&since),
            fmt_time(&until)
        )));
    }
    let ticks = simulate::ticks(&rule, since, until).map_err(|e| CliError::Test(e.to_string()))?;
    if ticks.truncated {
        eprintln!(
            "esalert: the range holds more than {} windows of {}; simulating the last {}, from {}",
            simulate::MAX_WINDOWS,
            rule.schedule,
            ticks.due.len(),
            fmt_time(&ticks.start)
        );
    }
    let saved = response.map(read_response).transpose()?;
    let creds = if saved.is_none() {
        Some(Credentials::load(&g.credentials)?)
    } else {
        Credentials::load(&g.credentials).ok()
    };
    // Notices go where the daemon would send them (captured, like the rest).
    let notifiers = match &creds {
        Some(c) => Notifiers::from_credentials(c)?,
        None => Notifiers::default(),
    };
    let (es, server) = match &saved {
        Some(v) => {
            let (url, task) = serve_saved(v).await?;
            (local_client(&url)?, Some(task))
        }
        None => match &creds {
            Some(c) => (EsClient::new(&c.elasticsearch)?, None),
            None => return Err(CliError::Test("no credentials".into())),
        },
    };
    let sim = simulate::run(&rule, es, scripts, notifiers, &ticks)
        .await
        .map_err(|e| CliError::Test(e.to_string()))?;
    if let Some(s) = server {
        s.abort();
    }

    let notifications = sim.notifications();
    let keys = sim.keys();
    let matched = sim.runs.iter().filter(|r| r.matched).count();
    let failed = sim.runs.iter().filter(|r| r.error.is_some()).count();
    let notices: usize = sim.runs.iter().map(|r| r.notices.len()).sum();
    let over = short_span(until.signed_duration_since(since));
    let summary = match (
        notifications,
        keys.iter().copied().collect::<Vec<_>>().as_slice(),
    ) {
        (0, _) => format!("would have sent no notifications over {over}"),
        // A rule that doesn't group: its one key is the whole alert.
        (n, [""]) => {
            format!("would have sent {} over {over}", plural(n, "notification"))
        }
        (n, _) => format!(
            "would have sent {} for {} over {over}",
            plural(n, "notification"),
            plural(keys.len(), "key")
        ),
    };
    let code = if failed > 0 {
        1
    } else if matched > 0 {
        0
    } else {
        NOT_MATCHED
    };
    if json {
        let windows: Vec<&simulate::WindowRun> = sim
            .runs
            .iter()
            .filter(|r| {
                r.matched
                    || r.error.is_some()
                    || !r.notifications.is_empty()
                    || !r.notices.is_empty()
            })
            .collect();
        let out = serde_json::json!({
            "alert": name,
            "since": fmt_time(&since),
            "until": fmt_time(&until),
            "schedule": rule.schedule.to_string(),
            "first_window_start": fmt_time(&sim.start),
            "truncated": sim.truncated,
            "windows_searched": sim.runs.len(),
            "windows_matched": matched,
            "windows_failed": failed,
            "notifications": notifications,
            "keys": keys,
            "notices": notices,
            "summary": summary,
            "windows": windows,
        });
        emit_json(&out);
        return Ok(code);
    }
    // One line per window that would have notified (or failed), then the summary.
    use std::fmt::Write as _;
    let mut t = String::new();
    const ERROR_LINES: usize = 10;
    let mut errors_shown = 0;
    for r in &sim.runs {
        if !r.notifications.is_empty() {
            let mut by_key: Vec<(&str, usize)> = Vec::new();
            for n in &r.notifications {
                match by_key.iter_mut().find(|(k, _)| *k == n.key) {
                    Some((_, c)) => *c += 1,
                    None => by_key.push((&n.key, 1)),
                }
            }
            let keys: Vec<String> = by_key
                .iter()
                .map(|(k, c)| format!("{} ×{c}", key_label(k)))
                .collect();
            let mut sinks: Vec<&str> = r
                .notifications
                .iter()
                .flat_map(|n| n.sinks.iter().map(String::as_str))
                .collect();
            sinks.sort_unstable();
            sinks.dedup();
            let _ = writeln!(
                t,
                "{}  hits={}  {}  to {}  {:?}",
                fmt_time(&r.due),
                r.hits,
                keys.join(", "),
                sinks.join(","),
                r.notifications
                    .first()
                    .map(|n| n.subject.as_str())
                    .unwrap_or_default()
            );
        }
        for n in &r.notices {
            let _ = writeln!(t, "{}  notice: {n}", fmt_time(&r.due));
        }
        if let Some(e) = &r.error {
            errors_shown += 1;
            if errors_shown <= ERROR_LINES {
                let _ = writeln!(t, "{}  error: {e}", fmt_time(&r.due));
            }
        }
    }
    if errors_shown > ERROR_LINES {
        let _ = writeln!(
            t,
            "… and {} more failed windows",
            errors_shown - ERROR_LINES
        );
    }
    let _ = writeln!(
        t,
        "{} of {} from {}: {} matched, {} failed",
        plural(sim.runs.len(), "window"),
        rule.schedule,
        fmt_time(&sim.start),
        matched,
        failed
    );
    let _ = writeln!(t, "{summary}");
    emit(&t);
    Ok(code)
}

async fn once(
    g: &Global,
    concurrency: usize,
    (search_batch, max_fold): (usize, usize),
    max_retry_age: std::time::Duration,
) -> Result<u8, CliError> {
    let scripts = Arc::new(ScriptEngine::default());
    let creds = Credentials::load(&g.credentials)?;
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let es = EsClient::new(&creds.elasticsearch)?.with_batching(search_batch, Some(slots));
    // Batched, the concurrency bounds requests; enough alerts run to fill
    // every batch of every request.
    let concurrency = if es.batches() {
        concurrency.saturating_mul(search_batch).min(10_000)
    } else {
        concurrency
    };
    let notifiers = Notifiers::from_credentials(&creds)?;
    let store = Store::open(&g.state)?;
    stored::prefetch_logged(&creds.elasticsearch, &g.queries).await;
    let report = load_dir(&g.queries, &scripts)?;
    for e in &report.errors {
        for p in e.problems() {
            let name = p.path.file_stem().map(|s| s.to_string_lossy().into_owned());
            tracing::error!(alert = name.unwrap_or_default(), event = "rejected", problem = %p);
        }
    }
    for a in &report.alerts {
        for w in a.body.warnings() {
            tracing::warn!(alert = a.name.as_str(), event = "ignored", problem = %w);
        }
    }
    let runner = Runner::new(
        es,
        scripts,
        notifiers,
        store,
        Arc::new(SystemClock),
        Settings {
            max_retry_age,
            concurrency,
            max_fold,
            ..Settings::default()
        },
    );
    let reports = runner.run_all(&report.alerts).await?;
    let failed = reports
        .iter()
        .filter(|r| {
            matches!(
                r.outcome,
                Outcome::Error | Outcome::Failed | Outcome::Partial | Outcome::Dropped
            )
        })
        .count()
        + report.errors.len();
    Ok(u8::from(failed > 0))
}

/// With `--state es://…`: its documents, where silences and acks go.
fn shared_docs(g: &Global) -> Result<Option<crate::cluster::docs::EsDocs>, CliError> {
    let Some(spec) = g.state.to_str().and_then(crate::cluster::StateSpec::parse) else {
        return Ok(None);
    };
    let spec = spec.map_err(crate::cluster::open::OpenError::from)?;
    let creds = Credentials::load(&g.credentials)?;
    let timeout = std::time::Duration::from_secs(10);
    Ok(Some(crate::cluster::open::docs_for(
        &spec, &creds, timeout,
    )?))
}

async fn silence(
    g: &Global,
    name: &str,
    key: Option<String>,
    for_: Option<std::time::Duration>,
    until: Option<String>,
    reason: Option<String>,
) -> Result<u8, CliError> {
    let bad = |m: String| CliError::Silence(m);
    // The rule must exist: a typo must not silence nothing and look fine.
    load_named(&g.queries, name, &ScriptEngine::default())?;
    let now = chrono::Utc::now();
    let until = match (for_, until) {
        (Some(d), None) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| bad(format!("--for {}: too long", humantime::format_duration(d))))?,
        (None, Some(t)) => chrono::DateTime::parse_from_rfc3339(&t)
            .map_err(|e| {
                bad(format!(
                    "--until {t:?}: {e}; write it like 2026-12-01T08:00:00Z"
                ))
            })?
            .with_timezone(&chrono::Utc),
        _ => return Err(bad("give --for DURATION or --until TIME".into())),
    };
    let id = match shared_docs(g)? {
        Some(docs) => crate::cluster::requests::add_silence(&docs, name, key, until, reason, now)
            .await
            .map_err(|e| bad(e.to_string()))?,
        None => {
            let path = crate::silence::path_for(&g.state);
            crate::silence::add(&path, name, key, until, reason, now)
                .map_err(|e| bad(e.to_string()))?
        }
    };
    println!("{id}");
    eprintln!("silenced {name} until {}", fmt_time(&until));
    Ok(0)
}

async fn silence_list(g: &Global, json: bool) -> Result<u8, CliError> {
    let now = chrono::Utc::now();
    let all = match shared_docs(g)? {
        Some(docs) => crate::cluster::requests::silences_in_force(&docs, now)
            .await
            .map_err(|e| CliError::Silence(e.to_string()))?,
        None => crate::silence::in_force(&crate::silence::path_for(&g.state), now)
            .map_err(|e| CliError::Silence(e.to_string()))?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
        return Ok(0);
    }
    for s in &all {
        println!(
            "{}\t{}{}\tuntil {}\t{}",
            s.id,
            s.rule,
            s.key
                .as_deref()
                .map(|k| format!(" [{k}]"))
                .unwrap_or_default(),
            fmt_time(&s.until),
            s.reason.as_deref().unwrap_or("")
        );
    }
    Ok(0)
}

async fn unsilence(g: &Global, id: &str) -> Result<u8, CliError> {
    let now = chrono::Utc::now();
    let found = match shared_docs(g)? {
        Some(docs) => crate::cluster::requests::end_silence(&docs, id, now)
            .await
            .map_err(|e| CliError::Silence(e.to_string()))?,
        None => crate::silence::remove(&crate::silence::path_for(&g.state), id, now)
            .map_err(|e| CliError::Silence(e.to_string()))?,
    };
    if !found {
        return Err(CliError::Silence(format!(
            "no silence {id:?} in force; see `esalert silence --list`"
        )));
    }
    eprintln!("silence {id} ended");
    Ok(0)
}

async fn ack(g: &Global, name: &str, actions: &[String]) -> Result<u8, CliError> {
    let scripts = ScriptEngine::default();
    let alert = load_named(&g.queries, name, &scripts)?;
    let Some(w) = alert.watch() else {
        return Err(CliError::Watch(format!(
            "{name} is a native alert, not a watch; ack applies to Watcher actions (use throttle_period for alerts)"
        )));
    };
    for a in actions {
        if !w.actions.iter().any(|x| &x.id == a) {
            return Err(CliError::Watch(format!("watch {name} has no action {a:?}")));
        }
    }
    if let Some(docs) = shared_docs(g)? {
        crate::cluster::requests::request_ack(&docs, name, actions, chrono::Utc::now())
            .await
            .map_err(|e| CliError::Watch(e.to_string()))?;
        eprintln!(
            "ack: requested in the shared state; the instance that owns {name} applies it at its next run"
        );
        return Ok(0);
    }
    match Store::open(&g.state) {
        Ok(mut store) => {
            let st = store.data.alerts.entry(name.to_owned()).or_default();
            let key = st.keys.entry(WHOLE_RULE.to_owned()).or_default();
            let acked = crate::watcher::ack(&mut key.ack, w, actions);
            store.save()?;
            for a in &w.actions {
                let state = store
                    .data
                    .alerts
                    .get(name)
                    .map(|s| s.ack(WHOLE_RULE, &a.id))
                    .unwrap_or_default();
                println!(
                    "{}\t{}",
                    a.id,
                    serde_json::to_value(state)
                        .expect("ack state")
                        .as_str()
                        .unwrap_or("")
                );
            }
            if acked.is_empty() {
                eprintln!(
                    "ack: nothing to acknowledge (only actions that ran successfully are ackable)"
                );
            }
            Ok(0)
        }
        Err(
            crate::throttle::StoreError::Locked { .. }
            | crate::throttle::StoreError::HeldElsewhere { .. },
        ) => {
            // The daemon holds the store: leave a request it applies at the next run.
            let path = crate::watcher::ack_request_path(&g.state, name);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Watch(e.to_string()))?;
            }
            crate::throttle::write_atomic(
                &path,
                serde_json::to_string(actions).expect("JSON").as_bytes(),
                |_| Ok(()),
            )?;
            eprintln!("ack: esalert is running; the acknowledgement applies at {name}'s next run");
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Test { .. } => "test",
        Command::Once { .. } => "once",
        _ => "this command",
    }
}

/// `esalert status` over shared state: each alert's owner, epoch and lease
/// expiry, and the members.
async fn shared_status(
    g: &Global,
    spec: &crate::cluster::StateSpec,
    json: bool,
) -> Result<u8, CliError> {
    let scripts = ScriptEngine::default();
    let report = load_dir(&g.queries, &scripts)?;
    let creds = Credentials::load(&g.credentials)?;
    let names: Vec<String> = report.alerts.iter().map(|a| a.name.clone()).collect();
    let v = crate::cluster::open::status(spec, &creds, &names).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(0);
    }
    println!("shared state {}", v["state"].as_str().unwrap_or_default());
    for m in v["members"].as_array().into_iter().flatten() {
        println!(
            "member {} {} last_beat={}",
            m["id"].as_str().unwrap_or_default(),
            if m["live"] == Value::Bool(true) {
                "live"
            } else {
                "silent"
            },
            m["last_beat"].as_str().unwrap_or("-")
        );
    }
    for (name, a) in v["alerts"].as_object().into_iter().flatten() {
        println!(
            "{name} owner={} epoch={} lease_expires={}",
            a["owner"].as_str().unwrap_or("-"),
            a["epoch"].as_u64().map_or("-".into(), |e| e.to_string()),
            a["lease_expires"].as_str().unwrap_or("-")
        );
    }
    Ok(0)
}

fn status(g: &Global, json: bool) -> Result<u8, CliError> {
    use crate::status::StatusRow;
    let scripts = ScriptEngine::default();
    let report = load_dir(&g.queries, &scripts)?;
    let data = Store::read_only(&g.state)?;
    let mut rejected: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in &report.errors {
        for p in e.problems() {
            let name = p
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rejected.entry(name).or_default().push(p.to_string());
        }
    }
    let errors = crate::status::last_errors(&g.log_dir);
    // Silences are shown, never a reason to fail `status`.
    let silences = crate::silence::load(&crate::silence::path_for(&g.state)).unwrap_or_default();
    let mut rows: Vec<StatusRow> = Vec::new();
    let mut names: std::collections::BTreeSet<String> = data.alerts.keys().cloned().collect();
    names.extend(report.alerts.iter().map(|a| a.name.clone()));
    names.extend(rejected.keys().cloned());
    let now = chrono::Utc::now();
    let by_name: std::collections::HashMap<&str, &crate::alert::Alert> =
        report.alerts.iter().map(|a| (a.name.as_str(), a)).collect();
    for name in names {
        let alert = by_name.get(name.as_str()).copied();
        let st = data.alerts.get(&name);
        let problems = rejected.remove(&name).unwrap_or_default();
        rows.push(crate::status::row(
            name, alert, st, &silences, &errors, problems, now,
        ));
    }
    let code = u8::from(rows.iter().any(StatusRow::in_error));
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("JSON"));
        return Ok(code);
    }
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let table: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                match (r.active, r.rejected.is_empty()) {
                    (_, false) => "rejected".into(),
                    (Some(true), _) => "yes".into(),
                    (Some(false), _) => "no".into(),
                    (None, _) => "removed".into(),
                },
                dash(&r.schedule),
                dash(&r.last_run),
                {
                    let mut o = dash(&r.last_outcome);
                    for si in &r.silences {
                        o.push_str(&format!(
                            " (silenced until {}, {})",
                            fmt_time(&si.until),
                            si.id
                        ));
                    }
                    if !r.owed.is_empty() {
                        o.push_str(&format!(" (owed: {})", r.owed.join(",")));
                    }
                    if !r.incidents.is_empty() {
                        o.push_str(&format!(" (open: {})", r.incidents.join(",")));
                    }
                    if let Some(n) = r.digest {
                        o.push_str(&format!(" (digest: {n} gathered)"));
                    }
                    if !r.actions.is_empty() {
                        let acks: Vec<String> = r
                            .actions
                            .iter()
                            .map(|(id, a)| {
                                let a = serde_json::to_value(a).expect("ack state");
                                format!("{id}={}", a.as_str().unwrap_or(""))
                            })
                            .collect();
                        o.push_str(&format!(" [{}]", acks.join(" ")));
                    }
                    o
                },
                dash(&r.next_run),
                r.consecutive_failures.to_string(),
                dash(&r.throttled_until),
            ]
        })
        .collect();
    let header = [
        "NAME",
        "ACTIVE",
        "SCHEDULE",
        "LAST RUN",
        "LAST OUTCOME",
        "NEXT RUN",
        "FAILURES",
        "THROTTLED UNTIL",
    ];
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.to_vec()));
    for row in &table {
        println!("{}", line(row.iter().map(String::as_str).collect()));
    }
    // Errors are too long for a column: each on its own line below.
    let problems: Vec<&String> = rows.iter().flat_map(|r| &r.rejected).collect();
    if !problems.is_empty() {
        println!("\nRejected files (not running; fix them, then `esalert check`):");
        for p in problems {
            println!("  {p}");
        }
    }
    let failing: Vec<&StatusRow> = rows.iter().filter(|r| r.last_error.is_some()).collect();
    if !failing.is_empty() {
        println!("\nLast errors:");
        for r in failing {
            println!("  {}: {}", r.name, r.last_error.as_deref().unwrap_or(""));
        }
    }
    Ok(code)
}
