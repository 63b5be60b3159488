//! A PagerDuty Events API v2 stand-in: `POST /v2/enqueue`, checked as
//! PagerDuty checks an event (routing key of 32 characters, `event_action`,
//! `dedup_key` ≤ 255, a `payload` with `summary` ≤ 1024, `source` and
//! `severity` for a trigger), answering 202 or PagerDuty's own 400 body.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

/// PagerDuty's answer to an event it will not take.
pub fn invalid(errors: &[String]) -> Answer {
    Answer::json(
        400,
        json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
    )
}

/// What is wrong with an event, as PagerDuty words it.
fn problems(r: &Request) -> Vec<String> {
    let b = &r.body;
    let mut out = Vec::new();
    if !b.is_object() {
        return vec!["Event object is not valid JSON".into()];
    }
    if b["routing_key"].as_str().map(str::len) != Some(32) {
        out.push("Length of 'routing_key' is incorrect (should be 32 characters)".into());
    }
    let action = b["event_action"].as_str().unwrap_or("");
    if !["trigger", "acknowledge", "resolve"].contains(&action) {
        out.push("'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')".into());
    }
    match &b["dedup_key"] {
        Value::Null if action != "trigger" => out.push("'dedup_key' is missing or blank".into()),
        Value::Null => {}
        Value::String(k) if k.chars().count() <= 255 && !k.is_empty() => {}
        _ => out.push("'dedup_key' must be a string of at most 255 characters".into()),
    }
    if action == "trigger" {
        let p = &b["payload"];
        if !p.is_object() {
            out.push("'payload' is missing or not an object".into());
            return out;
        }
        match p["summary"].as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            Some(s) if s.chars().count() > 1024 => {
                out.push("'payload.summary' is too long (max 1024 characters)".into())
            }
            _ => out.push("'payload.summary' is missing or blank".into()),
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            out.push("'payload.source' is missing or blank".into());
        }
        let sev = p["severity"].as_str().unwrap_or("");
        if !["critical", "error", "warning", "info"].contains(&sev) {
            out.push("'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')".into());
        }
        if let Some(t) = p.get("timestamp")
            && t.as_str()
                .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
        {
            out.push("'payload.timestamp' is not a valid ISO 8601 timestamp".into());
        }
        if p.get("custom_details").is_some_and(|d| !d.is_object()) {
            out.push("'payload.custom_details' must be an object".into());
        }
    }
    if b.get("links").is_some_and(|l| {
        l.as_array()
            .is_none_or(|l| l.iter().any(|x| x["href"].as_str().is_none()))
    }) {
        out.push("'links' must be a list of objects with an 'href'".into());
    }
    out
}

pub struct PagerDuty;

impl Provider for PagerDuty {
    fn check(&self, r: &Request) -> Result<(), Answer> {
        if r.method != axum::http::Method::POST || r.path != "/v2/enqueue" {
            return Err(Answer::json(404, json!({"status": "not found"})));
        }
        let p = problems(r);
        if !p.is_empty() {
            return Err(invalid(&p));
        }
        Ok(())
    }

    fn accept(&mut self, r: &Request) -> Answer {
        Answer::json(
            202,
            json!({"status": "success", "message": "Event processed",
                "dedup_key": r.body["dedup_key"]}),
        )
    }

    fn fail(&self, told: &Told) -> Answer {
        match told {
            Told::Reject(t) => invalid(&[(*t).to_owned()]),
            Told::Unauthorized => Answer::json(
                401,
                json!({"status": "unauthorized", "message": "Unauthorized"}),
            ),
            t => {
                let (status, text) = t.status_text();
                Answer::json(status, json!({"message": text}))
            }
        }
    }
}

/// The stand-in; `url` is the destination's `api_url`.
pub fn start() -> Peer<PagerDuty> {
    Peer::start(PagerDuty)
}

/// A routing key of the right shape.
pub const ROUTING_KEY: &str = "R02PDKEY0123456789abcdefSECRET01";
