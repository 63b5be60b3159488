//! A TheHive 5 stand-in: `POST /api/v1/alert` and `GET
//! /api/v1/user/current`, checking requests as TheHive does (Bearer key,
//! organisation, required fields and their types, severity/tlp/pap
//! ranges, observables, a unique (type, source, sourceRef)) and answering
//! as told: 201, 400 with TheHive's error body, 401, 429 with
//! `Retry-After`, 500 (before or after storing the alert), or a hang.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

pub const KEY: &str = "hive-secret-key-0123";

/// TheHive, with the alerts it stored.
#[derive(Default)]
pub struct Hive {
    alerts: Vec<Value>,
    organisation: Option<String>,
}

pub type HiveStandIn = Peer<Hive>;

fn error(status: u16, kind: &str, message: &str) -> Answer {
    Answer::json(status, json!({"type": kind, "message": message}))
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
    fn check(&self, req: &Request) -> Result<(), Answer> {
        if req.header("authorization") != format!("Bearer {KEY}") {
            return Err(error(401, "AuthenticationError", "Authentication failure"));
        }
        if let Some(org) = &self.organisation
            && req.header("x-organisation") != org
        {
            return Err(error(
                403,
                "AuthorizationError",
                "Your are not authorized to access this organisation",
            ));
        }
        Ok(())
    }

    fn accept(&mut self, req: &Request) -> Answer {
        let body = &req.body;
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "/api/v1/user/current") => Answer::json(
                200,
                json!({"_id": "~1", "login": "esalert@example.com", "name": "esalert"}),
            ),
            ("POST", "/api/v1/alert") => {
                if let Err(m) = validate(body) {
                    return error(400, "BadRequest", &m);
                }
                let id = |a: &Value| {
                    (
                        a["type"].clone(),
                        a["source"].clone(),
                        a["sourceRef"].clone(),
                    )
                };
                if self.alerts.iter().any(|a| id(a) == id(body)) {
                    return error(
                        400,
                        "CreateError",
                        &format!(
                            "Alert {}:{}:{} already exists",
                            body["type"], body["source"], body["sourceRef"]
                        ),
                    );
                }
                self.alerts.push(body.clone());
                let mut created = body.clone();
                created["_id"] = json!(format!("~{}", self.alerts.len()));
                Answer::json(201, created)
            }
            _ => error(404, "NotFound", "Resource not found"),
        }
    }

    fn fail(&self, told: &Told) -> Answer {
        match told {
            Told::Reject(m) => error(400, "BadRequest", m),
            Told::Unauthorized => error(401, "AuthenticationError", "Authentication failure"),
            Told::RateLimited(_) => error(429, "RateLimit", "slow down"),
            _ => error(500, "InternalError", "oops"),
        }
    }
}

pub fn start() -> HiveStandIn {
    Peer::start(Hive::default())
}

impl HiveStandIn {
    /// Requires `X-Organisation: org` from now on.
    pub fn require_organisation(&self, org: &str) {
        self.with(|h| h.organisation = Some(org.to_owned()));
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
