//! esalert: a small, fast alerting daemon for Elasticsearch and OpenSearch.
//!
//! # Layout
//!
//! Every file format compiles to one [`rule::Rule`]; one pipeline runs them
//! all:
//!
//! ```text
//! frontends ──► rule ──► pipeline: window → body (query, transform, condition, render)
//! (native, watch)          → gate (throttle, ack) → outbox → sinks (retry) → history
//!                                         │               │
//!                                   throttle (state)   notify (transports)
//! ```
//!
//! Front ends and their formats:
//! - [`frontends`]: the [`frontends::FrontEnd`] registry; `native` and `watch`.
//! - [`alert`]: the native alert schema, reading `queries/`, durations and
//!   sizes, and `path:line:column` positions ([`alert::locate`], [`alert::error`]).
//! - [`engine`]: a native alert's evaluation (body → search → condition → render).
//! - [`watcher`]: Watcher watches: schema, schedules, Mustache, and a
//!   watch's evaluation ([`watcher::exec`]).
//!
//! The rule and its parts:
//! - [`rule`]: [`rule::Rule`], the [`rule::RuleBody`] a front end implements,
//!   and what an evaluation yields (planned actions).
//! - [`condition`]: one [`condition::Check`] per kind in a registry
//!   (compare, array_compare, Rhai script, always, never), for every front end.
//! - [`render`]: Jinja templates (strict undefined, bounded) for native alerts.
//! - [`datemath`]: Elasticsearch date math, for index names and conditions.
//! - [`search`]: the Elasticsearch/OpenSearch client and its typed errors.
//!
//! Running rules:
//! - [`pipeline`]: window, gate, outbox, retries, health notices, history.
//! - [`sinks`]: outputs behind [`sinks::Sink`], in a registry.
//! - [`notify`]: the Slack and SMTP transports the sinks use.
//! - [`throttle`]: the state behind [`throttle::StateBackend`]; the file
//!   store, its format, migration, lock and atomic writes.
//! - [`net`]: outbound HTTP clients (overall timeout, no redirects) and URL redaction.
//! - [`silence`]: silences with an end time, beside the store.
//! - [`status`]: one row per rule (`esalert status`, the console).
//! - [`console`]: the web console on `--listen`.
//! - [`daemon`]: `esalert run`: scheduler, live reload, clock steps, metrics, systemd.
//! - [`config`]: `credentials.json`, with `${ENV}` secrets that never reach a log.
//! - [`log`]: the logfmt `alerts.log` writer, lossless, mirrored to stderr.
//! - [`alloc_budget`]: memory budgets for scripts and templates.
//! - [`cli`]: the `esalert` commands; `main.rs` only parses and dispatches.

pub mod alert;
pub mod alloc_budget;
pub mod cli;
pub mod cluster;
pub mod condition;
pub mod config;
pub mod console;
pub mod daemon;
pub mod datemath;
pub mod engine;
pub mod frontends;
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod net;
pub mod notify;
pub mod pipeline;
pub mod render;
pub mod rule;
pub mod search;
pub mod silence;
pub mod sinks;
pub mod status;
pub mod throttle;
pub mod watcher;

/// The unit tests count allocations as the binary does (see [`alloc_budget`]).
#[cfg(test)]
#[global_allocator]
static ALLOC: alloc_budget::CountingAlloc = alloc_budget::CountingAlloc;

/// Installs ring as the one rustls crypto provider of the process.
///
/// reqwest is built with `rustls-no-provider`, so TLS only works once this ran.
/// Safe to call more than once (tests do).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
