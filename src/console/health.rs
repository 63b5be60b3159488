//! The Health page: version, uptime, the scheduler's last tick, the store,
//! stuck deliveries, and members and leases when instances share state.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Console;
use super::html::{self, esc};
use crate::daemon::metrics::{HealthFacts, STALL_AFTER};
use crate::render::fmt_time;
use crate::throttle::DeliveryStatus;

/// Stuck deliveries listed at most.
const MAX_STUCK: usize = 200;

/// A delivery owed for too long.
#[derive(Debug, Clone, Serialize)]
pub struct Stuck {
    /// The rule.
    pub alert: String,
    /// The group key.
    pub key: String,
    /// The delivery id.
    pub delivery: String,
    /// Since when it is owed.
    pub since: String,
    /// Attempts so far.
    pub attempts: u32,
    /// The last error.
    pub error: Option<String>,
}

/// What the Health page and `/api/health` show.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    /// esalert's version.
    pub version: &'static str,
    /// `ok`, `starting`, `stalled`, `store_write_failed` or `deliveries_stuck`, as `/healthz`.
    pub status: &'static str,
    /// When the daemon started.
    pub started: String,
    /// Seconds since.
    pub uptime_s: i64,
    /// The facts `/healthz` judges by.
    #[serde(flatten)]
    pub facts: HealthFacts,
    /// The store.
    pub store: String,
    /// Deliveries owed for longer than `--stuck-after` (the first few hundred).
    pub stuck: Vec<Stuck>,
    /// Whether several instances share the state.
    pub shared: bool,
    /// Members of the shared state: `(instance, detail)`.
    pub members: Vec<(String, String)>,
    /// Rule leases: `(rule, owner and expiry)`.
    pub leases: Vec<(String, String)>,
}

/// The health as of `now`.
pub fn health(c: &Console, now: DateTime<Utc>) -> Health {
    let facts = c.metrics().facts();
    let age = facts.last_tick.map(|t| now.signed_duration_since(t));
    let stall = chrono::Duration::from_std(STALL_AFTER).unwrap_or_default();
    let status = match age {
        None => "starting",
        Some(a) if a >= stall => "stalled",
        Some(_) if facts.store_failing => "store_write_failed",
        Some(_) if facts.stuck_deliveries > 0 => "deliveries_stuck",
        Some(_) => "ok",
    };
    let after = chrono::Duration::seconds(i64::try_from(facts.stuck_after_s).unwrap_or(300));
    let mut stuck = Vec::new();
    for name in c.snapshot().alerts.keys() {
        if stuck.len() >= MAX_STUCK {
            break;
        }
        c.store().read_rule(name, |st| {
            for m in st.into_iter().flat_map(|s| &s.outbox) {
                if now.signed_duration_since(m.matched_at) <= after {
                    continue;
                }
                for (id, d) in &m.deliveries {
                    if d.status == DeliveryStatus::Pending && stuck.len() < MAX_STUCK {
                        stuck.push(Stuck {
                            alert: name.clone(),
                            key: m.key.clone(),
                            delivery: id.clone(),
                            since: fmt_time(&m.matched_at),
                            attempts: d.attempts,
                            error: d.last_error.clone(),
                        });
                    }
                }
            }
        });
    }
    Health {
        version: env!("CARGO_PKG_VERSION"),
        status,
        started: fmt_time(&c.started),
        uptime_s: now.signed_duration_since(c.started).num_seconds(),
        facts,
        store: c.store().location().display().to_string(),
        stuck,
        shared: c.cluster.is_some(),
        members: c.cluster.as_ref().map(|v| v.members()).unwrap_or_default(),
        leases: c.cluster.as_ref().map(|v| v.leases()).unwrap_or_default(),
    }
}

fn render(h: &Health) -> String {
    let mut p = String::from("<h1>Health</h1><div id=\"refresh\" data-refresh=\"5\">");
    let _ = write!(
        p,
        "<p><span class=\"badge s-{0}\" id=\"health-status\">{0}</span></p><table class=\"facts\"><tbody>\
         <tr><th>Version</th><td>{1}</td></tr>\
         <tr><th>Started</th><td>{2} (up {3})</td></tr>\
         <tr><th>Last tick</th><td>{4}</td></tr>\
         <tr><th>Store</th><td><code>{5}</code> {6}</td></tr>\
         <tr><th>Alerts loaded</th><td>{7}</td></tr>\
         <tr><th>Rejected files</th><td>{8}</td></tr>\
         <tr><th>Stuck deliveries</th><td>{9} (owed longer than {10})</td></tr>\
         </tbody></table>",
        h.status,
        esc(h.version),
        esc(&h.started),
        esc(
            &humantime::format_duration(std::time::Duration::from_secs(h.uptime_s.max(0) as u64))
                .to_string()
        ),
        h.facts
            .last_tick
            .map_or_else(|| "none yet".to_owned(), |t| esc(&fmt_time(&t))),
        esc(&h.store),
        if h.facts.store_failing {
            "<span class=\"badge s-failing\">writes failing</span>"
        } else {
            "<span class=\"badge s-ok\">writable</span>"
        },
        h.facts.alerts_loaded,
        h.facts.rejected_files,
        h.facts.stuck_deliveries,
        esc(
            &humantime::format_duration(std::time::Duration::from_secs(h.facts.stuck_after_s))
                .to_string()
        ),
    );
    if !h.stuck.is_empty() {
        p.push_str("<h2>Stuck deliveries</h2><table><thead><tr><th>Alert</th><th>Key</th><th>Delivery</th><th>Owed since</th><th>Attempts</th><th>Last error</th></tr></thead><tbody>");
        for s in &h.stuck {
            let _ = write!(
                p,
                "<tr><td><a href=\"/alerts/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
                html::seg(&s.alert),
                esc(&s.alert),
                esc(&s.key),
                esc(&s.delivery),
                esc(&s.since),
                s.attempts,
                esc(s.error.as_deref().unwrap_or("-"))
            );
        }
        p.push_str("</tbody></table>");
    }
    p.push_str("<h2>Shared state</h2>");
    if h.shared {
        for (title, rows) in [("Members", &h.members), ("Leases", &h.leases)] {
            let _ = write!(p, "<h3>{title}</h3><table><tbody>");
            for (a, b) in rows {
                let _ = write!(p, "<tr><td>{}</td><td>{}</td></tr>", esc(a), esc(b));
            }
            p.push_str("</tbody></table>");
        }
    } else {
        p.push_str("<p class=\"hint\">This instance keeps its state in a file of its own: no members or leases.</p>");
    }
    p.push_str("</div>");
    p
}

/// `GET /health`.
pub async fn page(State(c): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let viewer = c.auth.viewer(&headers);
    html::layout("Health", &viewer, &render(&health(&c, Utc::now()))).into_response()
}
