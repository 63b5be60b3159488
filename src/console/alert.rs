//! An alert's page: its row, actions, chart, per-key state, history and
//! definition.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alerts::AlertRow;
use super::auth::Viewer;
use super::history::History;
use super::html::{self, badge, esc, or_dash, seg};
use super::{Console, chart, definition};
use crate::render::fmt_time;
use crate::throttle::AlertState;

/// `?hours=…`: how far back the history and chart go.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Span {
    /// Hours back from now (default 24, at most a week).
    #[serde(default)]
    pub hours: Option<i64>,
}

impl Span {
    /// `(since, until)` as of `now`.
    pub fn range(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let h = self.hours.unwrap_or(24).clamp(1, 168);
        (now - chrono::Duration::hours(h), now)
    }
}

/// One group key's state.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView {
    /// The key (empty: the whole rule).
    pub key: String,
    /// Throttles in force, by scope (empty: the rule; else a watch action).
    pub throttled_until: BTreeMap<String, String>,
    /// Since when its incident is open; none when resolved.
    pub firing_since: Option<String>,
    /// Whether it is resolved (no open incident).
    pub resolved: bool,
    /// When it last matched.
    pub last_seen: Option<String>,
    /// Watch actions' acknowledgement.
    pub ack: BTreeMap<String, crate::throttle::AckState>,
    /// Deliveries still owed, per medium (delivery id).
    pub owed: Vec<String>,
    /// The subject last delivered.
    pub last_subject: Option<String>,
}

/// What `/api/alerts/{name}` returns.
#[derive(Debug, Clone, Serialize)]
pub struct Detail {
    /// The Alerts page's row.
    #[serde(flatten)]
    pub row: AlertRow,
    /// Its file.
    pub path: Option<String>,
    /// Its definition, secrets redacted.
    pub definition: Option<Value>,
    /// The hit count it fires at, when it compares hits with a number.
    pub threshold: Option<f64>,
    /// Per group key.
    pub keys: Vec<KeyView>,
    /// A watch's action ids (what `ack` takes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub watch_actions: Vec<String>,
}

fn keys(st: Option<&AlertState>, now: DateTime<Utc>) -> Vec<KeyView> {
    let Some(st) = st else { return Vec::new() };
    st.keys
        .iter()
        .map(|(k, v)| KeyView {
            key: k.clone(),
            throttled_until: v
                .throttled_until
                .iter()
                .filter(|(_, u)| **u > now)
                .map(|(s, u)| (s.clone(), fmt_time(u)))
                .collect(),
            firing_since: v.firing_since.map(|t| fmt_time(&t)),
            resolved: v.firing_since.is_none(),
            last_seen: v.last_seen.map(|t| fmt_time(&t)),
            ack: v.ack.clone(),
            owed: st
                .outbox
                .iter()
                .filter(|m| &m.key == k)
                .flat_map(|m| m.owed())
                .collect(),
            last_subject: v.last_subject.clone(),
        })
        .collect()
}

/// The detail of rule `name`.
pub fn detail(c: &Console, name: &str, now: DateTime<Utc>) -> Option<Detail> {
    let row = super::alerts::one(c, name, now)?;
    let rule = c.snapshot().alerts.get(name).cloned();
    let def = rule.as_ref().and_then(|r| definition::load(&r.path));
    Some(Detail {
        path: rule.as_ref().map(|r| r.path.display().to_string()),
        threshold: def.as_ref().and_then(chart::threshold),
        definition: def,
        keys: c.store().read_rule(name, |st| keys(st, now)),
        watch_actions: rule
            .as_ref()
            .and_then(|r| r.watch())
            .map(|w| w.actions.iter().map(|a| a.id.clone()).collect())
            .unwrap_or_default(),
        row,
    })
}

/// The history of rule `name` over `span`: alerts.log, the store, and the
/// history index when there is one.
pub async fn history(c: &Console, name: &str, span: &Span, now: DateTime<Utc>) -> History {
    let (since, until) = span.range(now);
    let rule = c.snapshot().alerts.get(name).cloned();
    let mut h = c.store().read_rule(name, |st| {
        super::history::read(&c.paths.log_dir, name, rule.as_deref(), st, since, until)
    });
    match super::indexed::read(&c.paths.credentials, name, since, until).await {
        Some(Ok(docs)) => h.indexed = docs,
        Some(Err(e)) => h.indexed_error = Some(e),
        None => {}
    }
    h
}

fn hidden_csrf(v: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(v.csrf.as_deref().unwrap_or(""))
    )
}

fn actions_html(d: &Detail, v: &Viewer, p: &mut String) {
    let name = &d.row.status.name;
    let base = format!("/alerts/{}", seg(name));
    p.push_str("<section class=\"actions\" id=\"actions\"><h2>Actions</h2>");
    if let Some(why) = v.blocked {
        let _ = write!(
            p,
            "<p class=\"hint\">{}{}</p>",
            esc(why.explain().1),
            if why == super::auth::Denied::LoginNeeded {
                " — <a href=\"/login\">log in</a>"
            } else {
                ""
            }
        );
        p.push_str("</section>");
        return;
    }
    let csrf = hidden_csrf(v);
    let _ = write!(
        p,
        "<form method=\"post\" action=\"{base}/silence\" class=\"silence-form\" data-confirm=\"Silence {n}?\">{csrf}\
         <span>Silence for</span>\
         <button type=\"submit\" name=\"for\" value=\"15m\" id=\"silence-15m\">15 m</button>\
         <button type=\"submit\" name=\"for\" value=\"1h\" id=\"silence-1h\">1 h</button>\
         <button type=\"submit\" name=\"for\" value=\"1d\" id=\"silence-1d\">1 d</button>\
         <span>or until</span><input type=\"text\" name=\"until\" placeholder=\"2026-12-01T08:00:00Z\" aria-label=\"until (RFC 3339, UTC)\">\
         <input type=\"text\" name=\"key\" placeholder=\"group key (all)\" aria-label=\"group key\">\
         <input type=\"text\" name=\"reason\" placeholder=\"reason\" aria-label=\"reason\">\
         <button type=\"submit\" id=\"silence-until\">Silence</button></form>",
        n = esc(name)
    );
    for si in &d.row.status.silences {
        let _ = write!(
            p,
            "<form method=\"post\" action=\"{base}/unsilence\" class=\"inline\">{csrf}<input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <span class=\"silence\">silenced until {until}{key}{reason}</span> <button type=\"submit\" id=\"unsilence-{id}\">Unsilence</button></form>",
            id = esc(&si.id),
            until = esc(&fmt_time(&si.until)),
            key = si
                .key
                .as_deref()
                .map(|k| format!(" (key {})", esc(k)))
                .unwrap_or_default(),
            reason = si
                .reason
                .as_deref()
                .map(|r| format!(": {}", esc(r)))
                .unwrap_or_default(),
        );
    }
    if !d.watch_actions.is_empty() {
        let _ = write!(
            p,
            "<form method=\"post\" action=\"{base}/ack\" class=\"inline\">{csrf}<span>Acknowledge</span>"
        );
        for a in &d.watch_actions {
            let state = d.row.status.actions.get(a).copied().unwrap_or_default();
            let state = serde_json::to_value(state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = write!(
                p,
                "<label><input type=\"checkbox\" name=\"action\" value=\"{0}\"> {0} <small>({1})</small></label>",
                esc(a),
                esc(&state)
            );
        }
        p.push_str("<button type=\"submit\" id=\"ack\">Acknowledge</button></form>");
    }
    let _ = write!(
        p,
        "<form method=\"post\" action=\"{base}/run\" class=\"inline\">{csrf}<button type=\"submit\" id=\"run-now\">Run now</button></form>\
         <form method=\"post\" action=\"{base}/test\" class=\"inline\">{csrf}<span>Test over the last</span>\
         <input type=\"number\" name=\"hours\" value=\"24\" min=\"1\" max=\"168\" aria-label=\"hours\"><span>hours</span>\
         <button type=\"submit\" id=\"test\">Test</button></form></section>"
    );
}

fn history_html(h: &History, p: &mut String) {
    let _ = write!(
        p,
        "<section id=\"history\"><h2>History <small>{} to {}</small></h2>",
        esc(&h.since),
        esc(&h.until)
    );
    if h.runs.is_empty() {
        p.push_str("<p class=\"hint\">No runs in alerts.log in this span.</p>");
    } else {
        p.push_str("<table class=\"history\"><thead><tr><th>Time</th><th>Outcome</th><th>Hits</th><th>Window</th><th>Media and keys</th><th>Notification</th></tr></thead><tbody>");
        for r in h.runs.iter().rev() {
            let _ = write!(
                p,
                "<tr class=\"run\"><td>{}</td><td>{}{}{}</td><td>{}</td><td>{} – {}</td><td>",
                esc(&r.ts),
                badge(&r.outcome),
                r.event
                    .as_deref()
                    .map(|e| format!(" <small>{}</small>", esc(e)))
                    .unwrap_or_default(),
                if r.folded {
                    " <small>folded</small>"
                } else {
                    ""
                },
                r.hits.map_or_else(|| "-".to_owned(), |h| h.to_string()),
                esc(&r.window_start),
                esc(&r.window_end),
            );
            if let Some(m) = &r.media {
                let _ = write!(p, "<div>sent: {}</div>", esc(m));
            }
            if let Some(u) = &r.until {
                let _ = write!(p, "<div>until {}</div>", esc(u));
            }
            if let Some(e) = &r.error {
                let _ = write!(p, "<div class=\"err\">{}</div>", esc(e));
            }
            for a in &r.actions {
                let _ = write!(
                    p,
                    "<div>{}: {}{}</div>",
                    esc(&a.id),
                    esc(&a.outcome),
                    a.reason
                        .as_deref()
                        .map(|x| format!(" ({})", esc(x)))
                        .unwrap_or_default()
                );
            }
            for k in &r.keys {
                let _ = write!(
                    p,
                    "<div>key {}: {}{}</div>",
                    esc(&k.key),
                    esc(&k.outcome),
                    k.reason
                        .as_deref()
                        .map(|x| format!(" ({})", esc(x)))
                        .unwrap_or_default()
                );
            }
            p.push_str("</td><td>");
            notifications_html(&r.notifications, p);
            p.push_str("</td></tr>");
        }
        p.push_str("</tbody></table>");
    }
    if !h.notifications.is_empty() {
        p.push_str("<h3>Other notifications in the store</h3>");
        notifications_html(&h.notifications, p);
    }
    if let Some(e) = &h.indexed_error {
        let _ = write!(
            p,
            "<h3>History index</h3><p class=\"error\">Not read: {}</p>",
            esc(e)
        );
    } else if !h.indexed.is_empty() {
        p.push_str(
            "<h3>History index</h3><table class=\"history\"><thead><tr><th>Time</th>\
             <th>Outcome</th><th>Key</th><th>Hits</th><th>Subject</th><th>Message</th></tr></thead><tbody>",
        );
        for d in &h.indexed {
            let _ = write!(
                p,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>",
                esc(&d.ts),
                esc(&d.outcome),
                or_dash(Some(d.key.as_str()).filter(|k| !k.is_empty())),
                d.hits.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                esc(&d.subject),
                esc(&d.message)
            );
        }
        p.push_str("</tbody></table>");
    }
    if !h.events.is_empty() {
        p.push_str("<h3>Events</h3><ul class=\"events\">");
        for e in h.events.iter().rev() {
            let _ = write!(p, "<li><code>{}", esc(&e.ts));
            for (k, v) in &e.fields {
                let _ = write!(p, " {}={}", esc(k), esc(v));
            }
            p.push_str("</code></li>");
        }
        p.push_str("</ul>");
    }
    p.push_str("</section>");
}

fn notifications_html(ns: &[super::history::Notification], p: &mut String) {
    for n in ns {
        for d in &n.deliveries {
            let _ = write!(
                p,
                "<details class=\"notification\"><summary>{} → {} <span class=\"badge s-{}\">{}</span>{}</summary>",
                esc(d.subject.as_deref().unwrap_or(&d.id)),
                esc(&d.sink),
                esc(&d.status),
                esc(&d.status),
                if n.key.is_empty() {
                    String::new()
                } else {
                    format!(" key {}", esc(&n.key))
                }
            );
            if let Some(t) = &d.text {
                let _ = write!(p, "<pre>{}</pre>", esc(t));
            }
            if let Some(e) = &d.error {
                let _ = write!(
                    p,
                    "<p class=\"err\">after {} attempt(s): {}</p>",
                    d.attempts,
                    esc(e)
                );
            }
            p.push_str("</details>");
        }
    }
}

/// The page's body (without the layout).
pub fn render(
    d: &Detail,
    h: &History,
    v: &Viewer,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> String {
    let s = &d.row.status;
    let mut p = String::with_capacity(32 * 1024);
    let _ = write!(
        p,
        "<p class=\"crumbs\"><a href=\"/alerts\">Alerts</a> /</p><h1 id=\"alert-name\">{} {}</h1>",
        esc(&s.name),
        d.row.states.iter().map(|x| badge(x)).collect::<String>()
    );
    if !s.rejected.is_empty() {
        p.push_str("<section class=\"rejected\"><h2>Rejected</h2><ul>");
        for r in &s.rejected {
            let _ = write!(p, "<li><code>{}</code></li>", esc(r));
        }
        p.push_str("</ul></section>");
    }
    let _ = write!(
        p,
        "<div id=\"refresh\" data-refresh=\"10\"><table class=\"facts\"><tbody>\
         <tr><th>Kind</th><td>{}</td><th>File</th><td><code>{}</code></td></tr>\
         <tr><th>Schedule</th><td>{}</td><th>Next run</th><td>{}</td></tr>\
         <tr><th>Last run</th><td>{}</td><th>Outcome</th><td>{}</td></tr>\
         <tr><th>Hits (last run)</th><td>{}</td><th>Throttled until</th><td>{}</td></tr>\
         <tr><th>Consecutive failures</th><td>{}</td><th>Last error</th><td class=\"err\">{}</td></tr>\
         <tr><th>Owed deliveries</th><td>{}</td><th>Open incidents</th><td>{}</td></tr>\
         </tbody></table></div>",
        d.row.kind.unwrap_or("-"),
        or_dash(d.path.as_deref()),
        or_dash(s.schedule.as_deref()),
        or_dash(s.next_run.as_deref()),
        or_dash(s.last_run.as_deref()),
        match (s.last_outcome.as_deref(), d.row.folded) {
            (Some(o), true) => format!("{} (folded)", esc(o)),
            (o, _) => or_dash(o),
        },
        d.row.hits.map_or_else(|| "-".to_owned(), |h| h.to_string()),
        or_dash(s.throttled_until.as_deref()),
        s.consecutive_failures,
        or_dash(s.last_error.as_deref()),
        if s.owed.is_empty() {
            "-".to_owned()
        } else {
            esc(&s.owed.join(", "))
        },
        if s.incidents.is_empty() {
            "-".to_owned()
        } else {
            esc(&s.incidents.join(", "))
        },
    );
    actions_html(d, v, &mut p);
    let points: Vec<chart::Point<'_>> = h
        .runs
        .iter()
        .filter(|r| r.event.is_none())
        .filter_map(|r| {
            Some(chart::Point {
                at: r.at,
                hits: r.hits?,
                outcome: &r.outcome,
            })
        })
        .collect();
    p.push_str("<section id=\"chart-section\"><h2>Hits per run</h2>");
    // Over the span logged (at least a minute), not a day of empty axis.
    let from = points
        .first()
        .map_or(since, |f| f.at.max(since))
        .min(now - chrono::Duration::minutes(1));
    p.push_str(&chart::svg(&points, d.threshold, from, now));
    p.push_str("</section>");
    p.push_str("<section id=\"keys\"><h2>State per key</h2>");
    if d.keys.is_empty() {
        p.push_str("<p class=\"hint\">Nothing stored for this alert yet.</p>");
    } else {
        p.push_str("<table><thead><tr><th>Key</th><th>Throttled until</th><th>Firing since</th><th>Last seen</th><th>Owed</th><th>Acks</th><th>Last subject</th></tr></thead><tbody>");
        for k in &d.keys {
            let _ = write!(
                p,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if k.key.is_empty() {
                    "<em>whole alert</em>".to_owned()
                } else {
                    esc(&k.key)
                },
                if k.throttled_until.is_empty() {
                    "-".to_owned()
                } else {
                    k.throttled_until
                        .iter()
                        .map(|(s, u)| {
                            if s.is_empty() {
                                esc(u)
                            } else {
                                format!("{}: {}", esc(s), esc(u))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                },
                k.firing_since
                    .as_deref()
                    .map_or_else(|| "resolved".to_owned(), esc),
                or_dash(k.last_seen.as_deref()),
                if k.owed.is_empty() {
                    "-".to_owned()
                } else {
                    esc(&k.owed.join(", "))
                },
                if k.ack.is_empty() {
                    "-".to_owned()
                } else {
                    k.ack
                        .iter()
                        .map(|(a, st)| {
                            let st = serde_json::to_value(st)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default();
                            format!("{}: {}", esc(a), esc(&st))
                        })
                        .collect::<Vec<_>>()
                        .join("<br>")
                },
                or_dash(k.last_subject.as_deref()),
            );
        }
        p.push_str("</tbody></table>");
    }
    p.push_str("</section>");
    history_html(h, &mut p);
    p.push_str("<section id=\"definition\"><h2>Definition</h2>");
    match &d.definition {
        Some(def) => {
            let text = serde_json::to_string_pretty(def).unwrap_or_default();
            let _ = write!(
                p,
                "<p class=\"hint\">As read from its file now; secrets are shown as <code>{}</code>.</p><pre><code>{}</code></pre>",
                definition::REDACTED,
                esc(&text)
            );
        }
        None => p.push_str("<p class=\"hint\">The file can't be read or parsed now.</p>"),
    }
    p.push_str("</section>");
    p
}

/// `GET /alerts/{name}`.
pub async fn page(
    State(c): State<Arc<Console>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(span): Query<Span>,
) -> Response {
    let now = Utc::now();
    let viewer = c.auth.viewer(&headers);
    let Some(d) = detail(&c, &name, now) else {
        return html::not_found(&format!("No alert named {name:?} is loaded or rejected."));
    };
    let h = history(&c, &name, &span, now).await;
    let (since, _) = span.range(now);
    html::layout(&name, &viewer, &render(&d, &h, &viewer, since, now)).into_response()
}
