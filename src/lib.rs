//! esalert: a small, fast alerting daemon for Elasticsearch and OpenSearch.
//!
//! # Layout
//!
//! The modules follow the flow of data through one alert run:
//!
//! ```text
//! config ──► alert ──► search ──► condition ──► render ──► engine ──► log
//! (credentials) (queries/*.json) (ES client) (compare, script) (minijinja)   (alerts.log)
//! ```
//!
//! - [`config`]: `credentials.json`, with `${ENV}` secrets that never reach a log.
//! - [`alert`]: loading and validating `queries/<name>.json`; every problem is
//!   reported as `path:line:column: message` (see [`alert::locate`]).
//! - [`search`]: the Elasticsearch/OpenSearch HTTP client and its typed errors.
//! - [`net`]: outbound HTTP clients (overall timeout, no redirects) and URL redaction.
//! - [`condition`]: Watcher-compatible `compare`/`array_compare`, and sandboxed
//!   Rhai scripts ([`condition::script`]).
//! - [`render`]: Jinja templates (strict undefined, bounded by fuel) for the
//!   search body, the subject and the message.
//! - [`engine`]: one evaluation (search → condition → render) and the `once` pass.
//! - [`log`]: the logfmt `alerts.log` writer, lossless, mirrored to stderr.
//! - [`cli`]: the `esalert` commands; `main.rs` only parses and dispatches.

pub mod alert;
pub mod alloc_budget;
pub mod cli;
pub mod condition;
pub mod config;
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
pub mod sinks;
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
