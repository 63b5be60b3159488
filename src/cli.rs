//! The `esalert` commands. `main.rs` parses arguments and calls [`execute`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::alert::locate::Position;
use crate::alert::{LoadError, load_dir, load_named};
use crate::condition::ScriptEngine;
use crate::config::{ConfigError, Credentials};
use crate::engine::{self, EngineError};
use crate::search::{EsClient, SearchError};

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
    },
    /// Run one alert now and print the result as JSON; sends nothing.
    Test {
        /// The alert's name (its file stem in the queries directory).
        name: String,
        /// A saved search response to evaluate instead of searching.
        #[arg(long)]
        response: Option<PathBuf>,
    },
    /// Run every active alert once, now, and log each outcome.
    Once {
        /// How many alerts run at the same time.
        #[arg(long, env = "ESALERT_CONCURRENCY", default_value_t = 16)]
        concurrency: usize,
    },
}

impl Command {
    /// Whether this command writes alerts.log (the others only use stderr).
    pub fn writes_log(&self) -> bool {
        matches!(self, Command::Once { .. })
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
    match cli.command {
        Command::Check { queries_only } => Ok(check(&g, queries_only)),
        Command::Test { name, response } => test(&g, &name, response.as_deref()).await,
        Command::Once { concurrency } => once(&g, concurrency).await,
    }
}

fn check(g: &Global, queries_only: bool) -> u8 {
    let scripts = ScriptEngine::default();
    let mut problems = Vec::new();
    let mut ok = 0;
    match load_dir(&g.queries, &scripts) {
        Ok(report) => {
            ok = report.alerts.len();
            for e in report.errors {
                problems.extend(e.problems().into_iter().map(|p| p.to_string()));
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    if !queries_only && let Err(e) = Credentials::load(&g.credentials) {
        problems.push(e.to_string());
    }
    for p in &problems {
        println!("{p}");
    }
    if problems.is_empty() {
        eprintln!("check: {ok} alert(s) OK in {}", g.queries.display());
        0
    } else {
        eprintln!(
            "check: {ok} alert(s) OK, {} problem(s) found",
            problems.len()
        );
        1
    }
}

fn read_response(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Response {
        path: path.to_owned(),
        pos: None,
        message: format!("cannot read saved response: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| CliError::Response {
        path: path.to_owned(),
        pos: Some(Position {
            line: e.line(),
            column: e.column(),
        }),
        message: format!("saved response is not valid JSON: {e}"),
    })
}

async fn test(g: &Global, name: &str, response: Option<&Path>) -> Result<u8, CliError> {
    let scripts = ScriptEngine::default();
    let alert = load_named(&g.queries, name, &scripts)?;
    let now = chrono::Utc::now();
    let window = engine::default_window(&alert, now);
    let eval = match response {
        Some(path) => {
            let response = read_response(path)?;
            engine::evaluate(&alert, &scripts, &response, now, window)?
        }
        None => {
            let creds = Credentials::load(&g.credentials)?;
            let es = EsClient::new(&creds.elasticsearch)?;
            let eval = engine::search_and_evaluate(&alert, &es, &scripts, now, window).await?;
            if let Some(p) = &eval.partial {
                tracing::warn!(alert = name, event = "partial_result", reason = %p);
            }
            eval
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&eval).expect("evaluation serializes")
    );
    Ok(0)
}

async fn once(g: &Global, concurrency: usize) -> Result<u8, CliError> {
    let scripts = Arc::new(ScriptEngine::default());
    let creds = Credentials::load(&g.credentials)?;
    let es = EsClient::new(&creds.elasticsearch)?;
    let report = load_dir(&g.queries, &scripts)?;
    for e in &report.errors {
        for p in e.problems() {
            let name = p.path.file_stem().map(|s| s.to_string_lossy().into_owned());
            tracing::error!(alert = name.unwrap_or_default(), event = "rejected", problem = %p);
        }
    }
    let summary = engine::run_once(
        &report.alerts,
        &es,
        scripts,
        concurrency,
        chrono::Utc::now(),
    )
    .await;
    let failed = summary.failed() + report.errors.len();
    Ok(u8::from(failed > 0))
}
