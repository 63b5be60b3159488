//! The Alerts page: one row per rule, rejected files on top, filters by
//! state, pages of [`PER_PAGE`] rows. Every rule is classified (cheaply) for
//! the counts and the filter; only the page's rows are built in full.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::html::{self, badge, esc, or_dash, seg};
use super::{Console, Snapshot, auth::Viewer};
use crate::silence::Silence;
use crate::status::StatusRow;
use crate::throttle::AlertState;

/// Rows per page by default.
pub const PER_PAGE: usize = 100;
/// The most rows one page may ask for.
pub const MAX_PER_PAGE: usize = 1000;

/// The states a rule can be in, in the order a row's badge picks them.
pub const STATES: [&str; 7] = [
    "rejected",
    "failing",
    "firing",
    "throttled",
    "silenced",
    "inactive",
    "ok",
];

/// `?state=…&q=…&page=…&per_page=…`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    /// One of [`STATES`]; every rule when absent or `all`.
    #[serde(default)]
    pub state: Option<String>,
    /// Only names containing this.
    #[serde(default)]
    pub q: Option<String>,
    /// 1-based.
    #[serde(default)]
    pub page: Option<usize>,
    /// Rows per page.
    #[serde(default)]
    pub per_page: Option<usize>,
}

/// One rule as the Alerts page and `/api/alerts` show it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    /// What `esalert status` says of it.
    #[serde(flatten)]
    pub status: StatusRow,
    /// `native`, `watch`, `elastalert`; none for a file that never loaded.
    pub kind: Option<&'static str>,
    /// The state its badge shows (the first of [`STATES`] it is in).
    pub state: &'static str,
    /// Every state it is in.
    pub states: Vec<&'static str>,
    /// The hits of its last run since the daemon started.
    pub hits: Option<u64>,
    /// Whether that run's count came from a folded search.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub folded: bool,
}

/// One page of rules.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// Rules matching the filter.
    pub total: usize,
    /// This page, 1-based.
    pub page: usize,
    /// Pages in all.
    pub pages: usize,
    /// Rows per page.
    pub per_page: usize,
    /// The filter applied.
    pub state: Option<String>,
    /// Rules per state, over all rules.
    pub counts: BTreeMap<&'static str, usize>,
    /// Every rejected file's problems, `path:line:col: message`.
    pub rejected_files: Vec<String>,
    /// The page's rows.
    pub alerts: Vec<AlertRow>,
}

fn failing(st: &AlertState) -> bool {
    st.consecutive_failures > 0
        || matches!(
            st.last_outcome.as_deref(),
            Some("error" | "failed" | "partial")
        )
}

/// The states of one rule.
fn classify(
    active: Option<bool>,
    rejected: bool,
    st: Option<&AlertState>,
    silenced: bool,
    now: DateTime<Utc>,
) -> Vec<&'static str> {
    let mut v = Vec::with_capacity(2);
    if rejected {
        v.push("rejected");
    }
    if let Some(st) = st {
        if failing(st) {
            v.push("failing");
        }
        if st.last_outcome.as_deref() == Some("fired")
            || st.keys.values().any(|k| k.firing_since.is_some())
        {
            v.push("firing");
        }
        if st
            .keys
            .values()
            .any(|k| k.throttled_until.values().any(|u| *u > now))
        {
            v.push("throttled");
        }
    }
    if silenced {
        v.push("silenced");
    }
    if active == Some(false) {
        v.push("inactive");
    }
    if v.is_empty() {
        v.push("ok");
    }
    v
}

/// The rules of the page `q` asks for, as of `now`.
pub fn listing(c: &Console, q: &ListQuery, now: DateTime<Utc>) -> Listing {
    let snap = c.snapshot();
    let silences: Vec<Silence> =
        crate::silence::in_force(&crate::silence::path_for(&c.paths.state), now)
            .unwrap_or_default();
    let mut by_rule: HashMap<&str, Vec<Silence>> = HashMap::new();
    for s in &silences {
        by_rule.entry(s.rule.as_str()).or_default().push(s.clone());
    }
    let filter = q
        .state
        .as_deref()
        .filter(|s| *s != "all" && !s.is_empty())
        .and_then(|s| STATES.iter().find(|x| **x == s).copied());
    let needle = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let mut names: Vec<&str> = snap.alerts.keys().map(String::as_str).collect();
    names.extend(
        snap.rejected
            .keys()
            .map(String::as_str)
            .filter(|n| !snap.alerts.contains_key(*n)),
    );
    names.sort_unstable();
    let mut counts: BTreeMap<&'static str, usize> = STATES.iter().map(|s| (*s, 0)).collect();
    let mut selected: Vec<(&str, Vec<&'static str>)> = Vec::new();
    let store = c.store();
    for name in names {
        let alert = snap.alerts.get(name);
        let states = store.read_rule(name, |st| {
            classify(
                alert.map(|a| a.active),
                snap.rejected.contains_key(name),
                st,
                by_rule.contains_key(name),
                now,
            )
        });
        for s in &states {
            if let Some(n) = counts.get_mut(s) {
                *n += 1;
            }
        }
        if filter.is_none_or(|f| states.contains(&f)) && needle.is_none_or(|n| name.contains(n)) {
            selected.push((name, states));
        }
    }
    let per_page = q.per_page.unwrap_or(PER_PAGE).clamp(1, MAX_PER_PAGE);
    let total = selected.len();
    let pages = total.div_ceil(per_page).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let shown = selected
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page);
    let last_runs = c.last_runs();
    let mut errors = None;
    let alerts = shown
        .map(|(name, states)| {
            build(
                c,
                &snap,
                name,
                states,
                &by_rule,
                &last_runs,
                &mut errors,
                now,
            )
        })
        .collect();
    Listing {
        total,
        page,
        pages,
        per_page,
        state: filter.map(str::to_owned),
        counts,
        rejected_files: snap.rejected.values().flatten().cloned().collect(),
        alerts,
    }
}

/// The full row of one rule.
#[allow(clippy::too_many_arguments)]
fn build(
    c: &Console,
    snap: &Snapshot,
    name: &str,
    states: Vec<&'static str>,
    by_rule: &HashMap<&str, Vec<Silence>>,
    last_runs: &HashMap<String, super::LastRun>,
    errors: &mut Option<Arc<BTreeMap<String, String>>>,
    now: DateTime<Utc>,
) -> AlertRow {
    let alert = snap.alerts.get(name).map(Arc::as_ref);
    let rejected = snap.rejected.get(name).cloned().unwrap_or_default();
    let none = Vec::new();
    let rule_silences = by_rule.get(name).unwrap_or(&none);
    let status = c.store().read_rule(name, |st| {
        // alerts.log is read only when some row shows an error.
        let errs = if st.is_some_and(failing) {
            errors.get_or_insert_with(|| c.last_errors()).clone()
        } else {
            Arc::default()
        };
        crate::status::row(
            name.to_owned(),
            alert,
            st,
            rule_silences,
            &errs,
            rejected.clone(),
            now,
        )
    });
    AlertRow {
        kind: alert.map(|a| a.body.kind()),
        state: STATES
            .iter()
            .find(|s| states.contains(s))
            .copied()
            .unwrap_or("ok"),
        states,
        hits: last_runs.get(name).map(|r| r.hits),
        folded: last_runs.get(name).is_some_and(|r| r.folded),
        status,
    }
}

/// The row of rule `name`, if it is loaded or rejected.
pub fn one(c: &Console, name: &str, now: DateTime<Utc>) -> Option<AlertRow> {
    let snap = c.snapshot();
    if !snap.alerts.contains_key(name) && !snap.rejected.contains_key(name) {
        return None;
    }
    let silences: Vec<Silence> =
        crate::silence::in_force(&crate::silence::path_for(&c.paths.state), now)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.rule == name)
            .collect();
    let silenced = !silences.is_empty();
    let mut by_rule = HashMap::new();
    by_rule.insert(name, silences);
    let states = c.store().read_rule(name, |st| {
        classify(
            snap.alerts.get(name).map(|a| a.active),
            snap.rejected.contains_key(name),
            st,
            silenced,
            now,
        )
    });
    Some(build(
        c,
        &snap,
        name,
        states,
        &by_rule,
        &c.last_runs(),
        &mut None,
        now,
    ))
}

fn link(q: &ListQuery, state: Option<&str>, page: usize) -> String {
    let mut s = String::from("/alerts?");
    if let Some(st) = state {
        let _ = write!(s, "state={}&", seg(st));
    }
    if let Some(n) = q.q.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(s, "q={}&", seg(n));
    }
    if let Some(pp) = q.per_page {
        let _ = write!(s, "per_page={pp}&");
    }
    let _ = write!(s, "page={page}");
    s
}

/// The page's HTML body (without the layout).
pub fn render(l: &Listing, q: &ListQuery) -> String {
    let mut p = String::with_capacity(64 * 1024 + l.alerts.len() * 600);
    p.push_str("<h1>Alerts</h1><div id=\"refresh\" data-refresh=\"5\">");
    if !l.rejected_files.is_empty() {
        p.push_str("<section class=\"rejected\" id=\"rejected\"><h2>Rejected files</h2><p>Not running (or still running their earlier version): fix them, then <code>esalert check</code>.</p><ul>");
        for r in &l.rejected_files {
            let _ = write!(p, "<li><code>{}</code></li>", esc(r));
        }
        p.push_str("</ul></section>");
    }
    p.push_str("<nav class=\"filters\">");
    let current = l.state.as_deref();
    let all = l.total;
    let _ = write!(
        p,
        "<a href=\"{}\"{}>all</a>",
        esc(&link(q, None, 1)),
        if current.is_none() {
            " class=\"current\""
        } else {
            ""
        }
    );
    for s in STATES {
        let _ = write!(
            p,
            "<a href=\"{}\" class=\"s-{s}{}\">{s} <span class=\"count\">{}</span></a>",
            esc(&link(q, Some(s), 1)),
            if current == Some(s) { " current" } else { "" },
            l.counts.get(s).copied().unwrap_or(0)
        );
    }
    let _ = write!(
        p,
        "</nav><form method=\"get\" action=\"/alerts\" class=\"search\">{}<input type=\"search\" name=\"q\" placeholder=\"name contains\" value=\"{}\"><button type=\"submit\">Filter</button><label class=\"auto\"><input type=\"checkbox\" id=\"auto-refresh\" checked> auto-refresh</label></form>",
        current
            .map(|s| format!(
                "<input type=\"hidden\" name=\"state\" value=\"{}\">",
                esc(s)
            ))
            .unwrap_or_default(),
        esc(q.q.as_deref().unwrap_or(""))
    );
    let _ = write!(
        p,
        "<p class=\"summary\">{all} alert(s){}; page {} of {}</p>",
        current.map(|s| format!(" {}", esc(s))).unwrap_or_default(),
        l.page,
        l.pages
    );
    p.push_str("<table class=\"alerts\" id=\"alerts\"><thead><tr><th>Name</th><th>Kind</th><th>State</th><th>Schedule</th><th>Next run</th><th>Last run</th><th>Outcome</th><th>Hits</th><th>Throttled until</th><th>Silenced</th><th>Failures</th><th>Last error</th></tr></thead><tbody>");
    for r in &l.alerts {
        let s = &r.status;
        let _ = write!(
            p,
            "<tr id=\"alert-{0}\" data-state=\"{1}\"><td><a href=\"/alerts/{2}\">{0}</a></td><td>{3}</td><td>{4}</td><td>{5}</td><td>{6}</td><td>{7}</td><td>{8}</td><td>{9}</td><td>{10}</td><td>",
            esc(&s.name),
            r.state,
            seg(&s.name),
            r.kind.unwrap_or("-"),
            r.states.iter().map(|x| badge(x)).collect::<String>(),
            or_dash(s.schedule.as_deref()),
            or_dash(s.next_run.as_deref()),
            or_dash(s.last_run.as_deref()),
            or_dash(s.last_outcome.as_deref()),
            r.hits.map_or_else(|| "-".to_owned(), |h| h.to_string()),
            or_dash(s.throttled_until.as_deref()),
        );
        for si in &s.silences {
            let _ = write!(
                p,
                "<span class=\"silence\">until {}{}</span> ",
                esc(&crate::render::fmt_time(&si.until)),
                si.key
                    .as_deref()
                    .map(|k| format!(" (key {})", esc(k)))
                    .unwrap_or_default()
            );
        }
        if s.silences.is_empty() {
            p.push('-');
        }
        let _ = write!(
            p,
            "</td><td>{}</td><td class=\"err\">{}</td></tr>",
            s.consecutive_failures,
            or_dash(
                s.last_error
                    .as_deref()
                    .or(s.rejected.first().map(String::as_str))
            )
        );
    }
    p.push_str("</tbody></table><nav class=\"pages\">");
    if l.page > 1 {
        let _ = write!(
            p,
            "<a href=\"{}\" rel=\"prev\">← previous</a>",
            esc(&link(q, current, l.page - 1))
        );
    }
    if l.page < l.pages {
        let _ = write!(
            p,
            "<a href=\"{}\" rel=\"next\">next →</a>",
            esc(&link(q, current, l.page + 1))
        );
    }
    p.push_str("</nav></div>");
    p
}

/// `GET /alerts`.
pub async fn page(
    State(c): State<Arc<Console>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let viewer: Viewer = c.auth.viewer(&headers);
    let l = listing(&c, &q, Utc::now());
    html::layout("Alerts", &viewer, &render(&l, &q)).into_response()
}
