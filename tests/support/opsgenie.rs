//! An Opsgenie Alert API stand-in: `POST /v2/alerts`, `POST
//! /v2/alerts/{id}/close` and `GET /v2/account`, with `Authorization:
//! GenieKey <key>` checked against its key and an alert checked as
//! Opsgenie does (`message` required, ≤ 130; `alias` ≤ 512; `priority`
//! P1–P5; tags, details and responders typed), answering 202 with a
//! `requestId` or Opsgenie's own 401/422 bodies.

use serde_json::{Value, json};

use axum::http::Method;

use super::peer::{Answer, Peer, Provider, Request, Told};

/// The key the stand-in accepts.
pub const API_KEY: &str = "0bcd1234-aaaa-bbbb-cccc-SECRETGENIE1";

fn body(message: &str, errors: Option<Value>) -> Value {
    let mut b = json!({"message": message, "took": 0.002, "requestId": "0f6a9a44-5e57-4d4b-9a1b-d4d9c8a1e0b1"});
    if let Some(e) = errors {
        b["errors"] = e;
    }
    b
}

fn unprocessable(errors: serde_json::Map<String, Value>) -> Answer {
    Answer::json(
        422,
        body(
            "Request body is not processable. Please check the errors.",
            Some(Value::Object(errors)),
        ),
    )
}

/// What is wrong with a new alert, field by field, as Opsgenie words it.
fn alert_problems(b: &Value) -> serde_json::Map<String, Value> {
    let mut e = serde_json::Map::new();
    let mut bad = |k: &str, m: &str| {
        e.insert(k.to_owned(), json!(m));
    };
    match b["message"].as_str() {
        Some(m) if !m.trim().is_empty() && m.chars().count() <= 130 => {}
        Some(m) if m.chars().count() > 130 => {
            bad("message", "Message can not be longer than 130 characters.")
        }
        _ => bad("message", "Message can not be empty."),
    }
    if b.get("alias")
        .is_some_and(|a| a.as_str().is_none_or(|a| a.chars().count() > 512))
    {
        bad("alias", "Alias can not be longer than 512 characters.");
    }
    if b.get("description")
        .is_some_and(|d| d.as_str().is_none_or(|d| d.chars().count() > 15_000))
    {
        bad(
            "description",
            "Description can not be longer than 15000 characters.",
        );
    }
    if b.get("priority")
        .is_some_and(|p| !["P1", "P2", "P3", "P4", "P5"].contains(&p.as_str().unwrap_or("")))
    {
        bad("priority", "Priority should be one of [P1, P2, P3, P4, P5]");
    }
    if b.get("tags").is_some_and(|t| {
        t.as_array().is_none_or(|t| {
            t.len() > 20
                || t.iter()
                    .any(|x| x.as_str().is_none_or(|x| x.chars().count() > 50))
        })
    }) {
        bad(
            "tags",
            "Tags should be at most 20 strings of at most 50 characters.",
        );
    }
    if b.get("details").is_some_and(|d| {
        d.as_object()
            .is_none_or(|d| d.values().any(|v| !v.is_string()))
    }) {
        bad("details", "Details should be a map of strings.");
    }
    for k in ["responders", "visibleTo"] {
        if b.get(k).is_some_and(|r| {
            r.as_array().is_none_or(|r| {
                r.iter().any(|x| {
                    !["team", "user", "escalation", "schedule"]
                        .contains(&x["type"].as_str().unwrap_or(""))
                        || (x["id"].is_null() && x["name"].is_null() && x["username"].is_null())
                })
            })
        }) {
            bad(
                k,
                "Responder should have a type and one of id, name or username.",
            );
        }
    }
    e
}

pub struct Opsgenie;

impl Provider for Opsgenie {
    fn check(&self, r: &Request) -> Result<(), Answer> {
        if r.header("authorization") != format!("GenieKey {API_KEY}") {
            return Err(Answer::json(401, body("Could not authenticate", None)));
        }
        let close = r
            .path
            .strip_prefix("/v2/alerts/")
            .and_then(|p| p.strip_suffix("/close"));
        match (&r.method, r.path.as_str(), close) {
            (&Method::GET, "/v2/account", _) => {}
            (&Method::POST, "/v2/alerts", _) => {
                let e = alert_problems(&r.body);
                if !e.is_empty() {
                    return Err(unprocessable(e));
                }
            }
            (&Method::POST, _, Some(id)) => {
                let kind = r.query.strip_prefix("identifierType=").unwrap_or("id");
                let mut e = serde_json::Map::new();
                if !["id", "alias", "tiny"].contains(&kind) {
                    e.insert(
                        "identifierType".into(),
                        json!("Identifier type should be one of [id, alias, tiny]"),
                    );
                }
                if id.is_empty() || id.contains('/') {
                    e.insert("identifier".into(), json!("Identifier can not be empty."));
                }
                if !r.text.is_empty() && !r.body.is_object() {
                    e.insert("body".into(), json!("Request body should be an object."));
                }
                if r.body
                    .get("note")
                    .is_some_and(|n| n.as_str().is_none_or(|n| n.chars().count() > 25_000))
                {
                    e.insert(
                        "note".into(),
                        json!("Note can not be longer than 25000 characters."),
                    );
                }
                if !e.is_empty() {
                    return Err(unprocessable(e));
                }
            }
            _ => {
                return Err(Answer::json(
                    404,
                    body("Could not find the requested resource.", None),
                ));
            }
        }
        Ok(())
    }

    fn accept(&mut self, r: &Request) -> Answer {
        if r.method == Method::GET {
            return Answer::json(
                200,
                json!({"data": {"name": "acme", "userCount": 12, "plan": {"maxUserCount": 50, "name": "Enterprise", "isYearly": true}},
                    "took": 0.01, "requestId": "1"}),
            );
        }
        Answer::json(
            202,
            json!({"result": "Request will be processed", "took": 0.107,
                "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}),
        )
    }

    /// A told rejection `"field: message"` is Opsgenie's 422 naming the field.
    fn fail(&self, told: &Told) -> Answer {
        match told {
            Told::Reject(t) => {
                let (field, m) = t.split_once(": ").unwrap_or(("request", t));
                let mut e = serde_json::Map::new();
                e.insert(field.to_owned(), json!(m));
                unprocessable(e)
            }
            Told::Unauthorized => Answer::json(401, body("Could not authenticate", None)),
            t => {
                let (status, text) = t.status_text();
                Answer::json(status, body(text, None))
            }
        }
    }
}

/// The stand-in; `url` is the destination's `api_url`.
pub fn start() -> Peer<Opsgenie> {
    Peer::start(Opsgenie)
}
