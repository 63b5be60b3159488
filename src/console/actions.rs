//! Changes: silence, unsilence, ack, run now, and "test over the last N
//! hours". Each is a POST that needs the token (see [`super::auth`]) and is
//! logged to alerts.log with who made it. `POST /alerts/{name}/{action}`
//! answers with a page, `POST /api/alerts/{name}/{action}` with JSON.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::html::{self, esc, seg};
use super::{Command, Console};
use crate::render::fmt_time;

/// The longest a backtest may take.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// How long "run now" waits for the run's outcome.
const RUN_WAIT: Duration = Duration::from_secs(20);
/// The longest span a backtest may cover, in hours.
const MAX_TEST_HOURS: i64 = 168;

/// A refused or failed action: its status and message.
type Failure = (StatusCode, String);

fn field<'a>(f: &'a [(String, String)], k: &str) -> Option<&'a str> {
    f.iter()
        .find(|(key, v)| key == k && !v.trim().is_empty())
        .map(|(_, v)| v.trim())
}

fn bad(m: impl Into<String>) -> Failure {
    (StatusCode::BAD_REQUEST, m.into())
}

/// `until` as a form gives it: RFC 3339, or `YYYY-MM-DDTHH:MM[:SS]` in UTC.
fn parse_until(t: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(t, f).ok())
        .map(|n| n.and_utc())
        .ok_or_else(|| bad(format!("until {t:?}: write it like 2026-12-01T08:00:00Z")))
}

async fn perform(
    c: &Console,
    name: &str,
    action: &str,
    f: &[(String, String)],
    who: &str,
) -> Result<Value, Failure> {
    let now = Utc::now();
    let rule = c.snapshot().alerts.get(name).cloned().ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!("no alert named {name:?} is loaded"),
        )
    })?;
    let silences = crate::silence::path_for(&c.paths.state);
    match action {
        "silence" => {
            let until = match (field(f, "for"), field(f, "until")) {
                (Some(d), _) => {
                    let d = humantime::parse_duration(d)
                        .map_err(|e| bad(format!("for {d:?}: {e}; e.g. 15m, 1h, 1d")))?;
                    chrono::Duration::from_std(d)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .ok_or_else(|| bad("a silence may last at most 365 days"))?
                }
                (None, Some(t)) => parse_until(t)?,
                (None, None) => return Err(bad("give for (15m, 1h, 1d) or until")),
            };
            let key = field(f, "key").map(str::to_owned);
            let reason = field(f, "reason").map(str::to_owned);
            // Shared state: the silence is made there, for every instance.
            let id = match &c.cluster {
                Some(cl) => cl.add_silence(name, key.clone(), until, reason).await,
                None => crate::silence::add(&silences, name, key.clone(), until, reason, now)
                    .map_err(|e| e.to_string()),
            }
            .map_err(bad)?;
            tracing::info!(event = "console_action", who, action, alert = name, silence = id.as_str(), key = key.as_deref().unwrap_or(""), until = %fmt_time(&until));
            Ok(
                json!({"action": action, "alert": name, "silence": id, "until": fmt_time(&until),
                "message": format!("{name} is silenced until {} (silence {id})", fmt_time(&until))}),
            )
        }
        "unsilence" => {
            let id = field(f, "id").ok_or_else(|| bad("give the silence's id"))?;
            let mine = crate::silence::in_force(&silences, now)
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
                .iter()
                .any(|s| s.id == id && s.rule == name);
            let removed = match &c.cluster {
                Some(cl) if mine => cl.end_silence(id).await,
                _ if mine => crate::silence::remove(&silences, id, now).map_err(|e| e.to_string()),
                _ => Ok(false),
            }
            .map_err(bad)?;
            if !removed {
                return Err((
                    StatusCode::NOT_FOUND,
                    format!("no silence {id:?} of {name} is in force"),
                ));
            }
            tracing::info!(
                event = "console_action",
                who,
                action,
                alert = name,
                silence = id
            );
            Ok(json!({"action": action, "alert": name, "silence": id,
                "message": format!("silence {id} of {name} ended")}))
        }
        "ack" => {
            let Some(w) = rule.watch() else {
                return Err(bad(format!(
                    "{name} is not a watch; acknowledging applies to Watcher actions"
                )));
            };
            let ids: Vec<String> = f
                .iter()
                .filter(|(k, v)| k == "action" && !v.is_empty())
                .map(|(_, v)| v.clone())
                .collect();
            if let Some(a) = ids.iter().find(|a| !w.actions.iter().any(|x| &x.id == *a)) {
                return Err(bad(format!("watch {name} has no action {a:?}")));
            }
            // Shared state: the watch's owner (maybe another instance)
            // applies it at the watch's next run.
            if let Some(cl) = &c.cluster {
                cl.request_ack(name, &ids)
                    .await
                    .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
                tracing::info!(
                    event = "console_action",
                    who,
                    action,
                    alert = name,
                    requested = ids.join(",")
                );
                return Ok(json!({"action": action, "alert": name, "acked": [],
                    "message": format!("acknowledgement requested: the instance that owns {name} applies it at its next run")}));
            }
            let acked = c
                .store()
                .update_rule(name, |st| {
                    let key = st
                        .keys
                        .entry(crate::throttle::WHOLE_RULE.to_owned())
                        .or_default();
                    crate::watcher::ack(&mut key.ack, w, &ids)
                })
                .unwrap_or_default();
            c.store()
                .commit()
                .await
                .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            tracing::info!(
                event = "console_action",
                who,
                action,
                alert = name,
                acked = acked.join(",")
            );
            let message = if acked.is_empty() {
                "nothing to acknowledge: only actions that ran successfully are ackable".to_owned()
            } else {
                format!("acknowledged: {}", acked.join(", "))
            };
            Ok(json!({"action": action, "alert": name, "acked": acked, "message": message}))
        }
        "run" => {
            let tx = c.commands.as_ref().ok_or_else(|| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "run now needs the daemon's scheduler".to_owned(),
                )
            })?;
            let before = c.store().read_rule(name, |st| st.and_then(|s| s.last_run));
            let (reply, rx) = tokio::sync::oneshot::channel();
            tx.send(Command::RunNow {
                name: name.to_owned(),
                reply,
            })
            .await
            .map_err(|_| {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the scheduler stopped".to_owned(),
                )
            })?;
            rx.await
                .map_err(|_| {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the scheduler stopped".to_owned(),
                    )
                })?
                .map_err(|e| (StatusCode::CONFLICT, e))?;
            tracing::info!(event = "console_action", who, action, alert = name);
            let deadline = tokio::time::Instant::now() + RUN_WAIT;
            loop {
                let (last, outcome) = c.store().read_rule(name, |st| {
                    (
                        st.and_then(|s| s.last_run),
                        st.and_then(|s| s.last_outcome.clone()),
                    )
                });
                if last.is_some() && last != before {
                    let o = outcome.unwrap_or_default();
                    return Ok(json!({"action": action, "alert": name, "outcome": o,
                        "message": format!("{name} ran: {o}")}));
                }
                if tokio::time::Instant::now() >= deadline {
                    return Ok(json!({"action": action, "alert": name, "outcome": null,
                        "message": format!("{name} is queued to run; its outcome will show in its history")}));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        "test" => {
            let hours: i64 = field(f, "hours")
                .unwrap_or("24")
                .parse()
                .map_err(|_| bad("hours: a whole number"))?;
            if !(1..=MAX_TEST_HOURS).contains(&hours) {
                return Err(bad(format!("hours: from 1 to {MAX_TEST_HOURS}")));
            }
            tracing::info!(event = "console_action", who, action, alert = name, hours);
            backtest(c, &rule, now - chrono::Duration::hours(hours), now).await
        }
        other => Err((
            StatusCode::NOT_FOUND,
            format!("no action {other:?}; use silence, unsilence, ack, run or test"),
        )),
    }
}

/// `esalert test NAME --since`: the rule replayed window by window over
/// the range, against the cluster, nothing stored or sent.
async fn backtest(
    c: &Console,
    rule: &crate::rule::Rule,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Value, Failure> {
    use crate::pipeline::simulate;
    let fail = |e: String| (StatusCode::UNPROCESSABLE_ENTITY, e);
    let ticks = simulate::ticks(rule, since, until).map_err(|e| fail(e.to_string()))?;
    let creds =
        crate::config::Credentials::load(&c.paths.credentials).map_err(|e| fail(e.to_string()))?;
    let es = crate::search::EsClient::new(&creds.elasticsearch).map_err(|e| fail(e.to_string()))?;
    let notifiers =
        crate::notify::Notifiers::from_credentials(&creds).map_err(|e| fail(e.to_string()))?;
    let sim = tokio::time::timeout(
        TEST_TIMEOUT,
        simulate::run(rule, es, c.scripts.clone(), notifiers, &ticks),
    )
    .await
    .map_err(|_| {
        fail(format!(
            "the test took longer than {TEST_TIMEOUT:?}; try fewer hours"
        ))
    })?
    .map_err(|e| fail(e.to_string()))?;
    let matched = sim.runs.iter().filter(|r| r.matched).count();
    let failed = sim.runs.iter().filter(|r| r.error.is_some()).count();
    let notifications = sim.notifications();
    let windows: Vec<&simulate::WindowRun> = sim
        .runs
        .iter()
        .filter(|r| r.matched || r.error.is_some() || !r.notifications.is_empty())
        .collect();
    Ok(json!({
        "action": "test", "alert": rule.name,
        "since": fmt_time(&since), "until": fmt_time(&until),
        "first_window_start": fmt_time(&sim.start), "truncated": sim.truncated,
        "windows_searched": sim.runs.len(), "windows_matched": matched, "windows_failed": failed,
        "notifications": notifications, "keys": sim.keys(),
        "windows": windows,
        "message": format!("{} window(s) searched, {matched} matched, {failed} failed: would have sent {notifications} notification(s)", sim.runs.len()),
    }))
}

fn test_table(v: &Value, p: &mut String) {
    let Some(ws) = v["windows"].as_array() else {
        return;
    };
    if ws.is_empty() {
        return;
    }
    p.push_str("<table class=\"history\" id=\"test-windows\"><thead><tr><th>Due</th><th>Outcome</th><th>Hits</th><th>Would have sent</th><th>Error</th></tr></thead><tbody>");
    for w in ws {
        let sent: String = w["notifications"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                format!(
                    "<div>{} → {}</div>",
                    esc(n["subject"].as_str().unwrap_or("")),
                    esc(&n["sinks"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", "))
                )
            })
            .collect();
        let _ = write!(
            p,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"err\">{}</td></tr>",
            esc(w["due"].as_str().unwrap_or("")),
            esc(w["outcome"].as_str().unwrap_or("")),
            w["hits"].as_u64().unwrap_or(0),
            sent,
            esc(w["error"].as_str().unwrap_or(""))
        );
    }
    p.push_str("</tbody></table>");
}

fn refused(headers: &HeaderMap, name: &str, action: &str, d: super::auth::Denied) -> Failure {
    let (status, why) = d.explain();
    let bearer = headers.contains_key(axum::http::header::AUTHORIZATION);
    tracing::warn!(
        event = "console_refused",
        action,
        alert = name,
        bearer,
        reason = why
    );
    (status, why.to_owned())
}

/// `POST /alerts/{name}/{action}`: the result as a page.
pub async fn form(
    State(c): State<Arc<Console>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let viewer = c.auth.viewer(&headers);
    let result = match c.auth.authorize(&headers, field(&f, "csrf")) {
        Err(d) => Err(refused(&headers, &name, &action, d)),
        Ok(who) => perform(&c, &name, &action, &f, &who).await,
    };
    match result {
        Err((status, m)) => html::message(status, "Not done", &viewer, &m),
        Ok(v) => {
            let mut p = format!(
                "<h1>{}</h1><p class=\"ok\" id=\"result\">{}</p>",
                esc(&format!("{action}: {name}")),
                esc(v["message"].as_str().unwrap_or("done"))
            );
            test_table(&v, &mut p);
            let _ = write!(
                p,
                "<p><a href=\"/alerts/{}\" id=\"back\">Back to {}</a></p>",
                seg(&name),
                esc(&name)
            );
            html::layout(&action, &viewer, &p).into_response()
        }
    }
}

/// `POST /api/alerts/{name}/{action}`: the result as JSON.
pub async fn api(
    State(c): State<Arc<Console>>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    Form(f): Form<Vec<(String, String)>>,
) -> Response {
    let result = match c.auth.authorize(&headers, field(&f, "csrf")) {
        Err(d) => Err(refused(&headers, &name, &action, d)),
        Ok(who) => perform(&c, &name, &action, &f, &who).await,
    };
    match result {
        Ok(v) => html::json(StatusCode::OK, &v),
        Err((status, m)) => html::json_error(status, &m),
    }
}
