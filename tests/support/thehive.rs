//! A TheHive 5 stand-in: `POST /api/v1/alert` and `GET
//! /api/v1/user/current`, checking requests as TheHive does (Bearer key,
//! organisation, required fields and their types, severity/tlp/pap
//! ranges, observables, a unique (type, source, sourceRef)) and answering
//! as queued: 201, 400 with TheHive's error body, 401, 429 with
//! `Retry-After`, 500 (before or after storing the alert), or a hang.

use std::collections::VecDeque;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::stateful_peer::{Peer, Provider, Request};

pub const KEY: &str = "hive-secret-key-0123";

/// How the stand-in answers one request.
#[derive(Clone, Debug)]
pub enum HiveReply {
    /// Validate and store, 201.
    Ok,
    /// 400 `{"type": "BadRequest", "message": …}`.
    BadRequest(&'static str),
    /// 401, as for a wrong key.
    Unauthorized,
    /// 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// 500 without storing.
    ServerError,
    /// Store the alert, then answer 500 (the answer of a crash).
    StoreThenFail,
    /// Never answer.
    Hang,
}

#[derive(Default)]
pub struct Hive {
    queue: VecDeque<HiveReply>,
    requests: Vec<Request>,
    alerts: Vec<Value>,
    organisation: Option<String>,
}

pub type HiveStandIn = Peer<Hive>;

fn error(status: StatusCode, kind: &str, message: &str) -> (StatusCode, Value) {
    (status, json!({"type": kind, "message": message}))
}

/// TheHive's checks of a new alert, as its error answers word them.
fn validate(b: &Value) -> Result<(), String> {
    for f in ["type", "source", "sourceRef", "title", "description"] {
        match b.get(f) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::String(_)) => return Err(format!("Invalid value for {f}: empty")),
            Some(v) => return Err(format!("Invalid value for {f}: {v} is not a string")),
            None => return Err(format!("Attribute {f} is missing")),
        }
    }
    if b["title"].as_str().unwrap().chars().count() > 512 {
        return Err("Invalid value for title: too long".into());
    }
    for (f, lo, hi) in [("severity", 1, 4), ("tlp", 0, 4), ("pap", 0, 4)] {
        if let Some(v) = b.get(f) {
            match v.as_u64() {
                Some(n) if (lo..=hi).contains(&n) => {}
                _ => return Err(format!("Invalid value for {f}: {v}")),
            }
        }
    }
    if let Some(d) = b.get("date")
        && !d.is_i64()
    {
        return Err(format!("Invalid value for date: {d}"));
    }
    if let Some(t) = b.get("tags")
        && !t.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err(format!("Invalid value for tags: {t}"));
    }
    if let Some(obs) = b.get("observables") {
        let obs = obs
            .as_array()
            .ok_or(format!("Invalid value for observables: {obs}"))?;
        let mut seen = Vec::new();
        for o in obs {
            let (Some(dt), Some(data)) = (o["dataType"].as_str(), o["data"].as_str()) else {
                return Err(format!("Invalid value for observables: {o}"));
            };
            if data.is_empty() {
                return Err("Invalid value for observables.data: empty".into());
            }
            if seen.contains(&(dt, data)) {
                return Err("Observable already exists".into());
            }
            seen.push((dt, data));
        }
    }
    Ok(())
}

impl Provider for Hive {
    type Reply = HiveReply;

    fn next_reply(&mut self) -> HiveReply {
        self.queue.pop_front().unwrap_or(HiveReply::Ok)
    }

    fn hangs(r: &HiveReply) -> bool {
        matches!(r, HiveReply::Hang)
    }

    fn retry_after(r: &HiveReply) -> u64 {
        match r {
            HiveReply::RateLimited(s) => *s,
            _ => 0,
        }
    }

    fn record(&mut self, req: Request) {
        self.requests.push(req);
    }

    fn answer(&mut self, req: &Request, reply: HiveReply) -> (StatusCode, Value) {
        answer(self, req, reply)
    }
}

fn answer(s: &mut Hive, req: &Request, reply: HiveReply) -> (StatusCode, Value) {
    let (headers, body) = (&req.headers, &req.body);
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {KEY}")) || matches!(reply, HiveReply::Unauthorized) {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "Authentication failure",
        );
    }
    if let Some(org) = &s.organisation {
        let got = headers.get("x-organisation").and_then(|v| v.to_str().ok());
        if got != Some(org.as_str()) {
            return error(
                StatusCode::FORBIDDEN,
                "AuthorizationError",
                "Your are not authorized to access this organisation",
            );
        }
    }
    match reply {
        HiveReply::BadRequest(m) => return error(StatusCode::BAD_REQUEST, "BadRequest", m),
        HiveReply::RateLimited(_) => {
            return error(StatusCode::TOO_MANY_REQUESTS, "RateLimit", "slow down");
        }
        HiveReply::ServerError => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "oops");
        }
        _ => {}
    }
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/api/v1/user/current") => (
            StatusCode::OK,
            json!({"_id": "~1", "login": "esalert@example.com", "name": "esalert"}),
        ),
        ("POST", "/api/v1/alert") => {
            if let Err(m) = validate(body) {
                return error(StatusCode::BAD_REQUEST, "BadRequest", &m);
            }
            let id = |a: &Value| {
                (
                    a["type"].clone(),
                    a["source"].clone(),
                    a["sourceRef"].clone(),
                )
            };
            if s.alerts.iter().any(|a| id(a) == id(body)) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "CreateError",
                    &format!(
                        "Alert {}:{}:{} already exists",
                        body["type"], body["source"], body["sourceRef"]
                    ),
                );
            }
            s.alerts.push(body.clone());
            if matches!(reply, HiveReply::StoreThenFail) {
                return error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "oops");
            }
            let mut created = body.clone();
            created["_id"] = json!(format!("~{}", s.alerts.len()));
            (StatusCode::CREATED, created)
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", "Resource not found"),
    }
}

impl HiveStandIn {
    /// Requires `X-Organisation: org` from now on.
    pub fn require_organisation(&self, org: &str) {
        self.with(|h| h.organisation = Some(org.to_owned()));
    }

    pub fn push(&self, r: HiveReply) {
        self.with(|h| h.queue.push_back(r));
    }

    /// Every request, in order, with the status it got.
    pub fn requests(&self) -> Vec<Request> {
        self.with(|h| h.requests.clone())
    }

    /// The alerts stored.
    pub fn alerts(&self) -> Vec<Value> {
        self.with(|h| h.alerts.clone())
    }

    /// An `outputs` entry for this stand-in.
    pub fn destination(&self, extra: Value) -> Value {
        let mut d = json!({"type": "thehive", "url": self.url, "api_key": KEY});
        if let (Value::Object(d), Value::Object(e)) = (&mut d, extra) {
            d.extend(e);
        }
        d
    }
}
