//! Opsgenie (Alert API v2): a match creates an alert whose `alias` is the
//! same for every repeat of one (alert, group key), so Opsgenie counts
//! repeats on the open alert instead of opening more; the resolution
//! closes it by that alias.
//!
//! ```json
//! "genie": {"type": "opsgenie", "api_key": "${OPSGENIE_KEY}", "priority": "P2",
//!           "responders": [{"type": "team", "name": "SOC"}]}
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::destinations::{DestinationType, SettingError, settings};
use super::http;
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;
use crate::notify::Notification;

/// Opsgenie's US region; the EU one is `https://api.eu.opsgenie.com`.
const DEFAULT_API_URL: &str = "https://api.opsgenie.com";

/// Opsgenie's limits on an alert's fields, in characters.
const MAX_MESSAGE: usize = 130;
const MAX_ALIAS: usize = 512;
const MAX_DESCRIPTION: usize = 15_000;
const MAX_SOURCE: usize = 100;
const MAX_ENTITY: usize = 512;
const MAX_NOTE: usize = 25_000;
const MAX_TAG: usize = 50;
const MAX_TAGS: usize = 20;

/// What may stay unescaped in the alias inside the close URL.
const PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// An alert's priority, P1 (highest) to P5.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Priority {
    P1,
    P2,
    #[default]
    P3,
    P4,
    P5,
}

impl Priority {
    fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "P1" => Priority::P1,
            "P2" => Priority::P2,
            "P3" => Priority::P3,
            "P4" => Priority::P4,
            "P5" => Priority::P5,
            _ => return None,
        })
    }
}

/// Who an alert is routed to, or who may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ResponderType {
    Team,
    User,
    Escalation,
    Schedule,
}

/// A team, user, escalation or schedule, by exactly one of `id`, `name`
/// (teams, escalations, schedules) or `username` (users).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Responder {
    /// team, user, escalation or schedule.
    #[serde(rename = "type")]
    kind: ResponderType,
    /// Its Opsgenie id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// A team's, escalation's or schedule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// A user's username (their email address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
}

impl Responder {
    /// What is wrong with it, if anything, for the setting at `at`.
    fn check(&self, at: &str, types: &[ResponderType]) -> Result<(), SettingError> {
        if !types.contains(&self.kind) {
            return Err(SettingError::at(
                at,
                format!("`{at}` can only be a team or a user"),
            ));
        }
        let by = [&self.id, &self.name, &self.username]
            .iter()
            .filter(|v| v.is_some())
            .count();
        let wrong = match self.kind {
            ResponderType::User => self.name.is_some(),
            _ => self.username.is_some(),
        };
        if by != 1 || wrong {
            let how = match self.kind {
                ResponderType::User => "`id` or `username`",
                _ => "`id` or `name`",
            };
            return Err(SettingError::at(
                at,
                format!("`{at}` needs exactly one of {how} for this type"),
            ));
        }
        Ok(())
    }
}

/// `{"type": "opsgenie", …}` in credentials.json's `outputs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpsgenieConfig {
    /// The key of an Opsgenie "API" integration (sent as `GenieKey`).
    api_key: SecretString,
    /// P1 (highest) to P5; an alert may give its own.
    #[serde(default)]
    priority: Priority,
    /// Tags on every alert; an alert may give its own instead.
    #[serde(default)]
    tags: Vec<String>,
    /// Teams, users, escalations or schedules the alert is routed to.
    #[serde(default)]
    responders: Vec<Responder>,
    /// Teams and users who may see the alert besides its responders.
    #[serde(default)]
    visible_to: Vec<Responder>,
    /// What the alert is about (Opsgenie's `entity`), e.g. "prod-web".
    #[serde(default)]
    entity: Option<String>,
    /// Opsgenie's `source`; "esalert" unless set.
    #[serde(default)]
    source: Option<String>,
    /// The API's address: `https://api.eu.opsgenie.com` for the EU region.
    #[serde(default, alias = "url")]
    api_url: Option<String>,
    /// Overall time for one request.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

struct OpsgenieSink {
    /// The destination's name.
    name: String,
    /// `api_url` without a trailing `/`.
    base: String,
    client: reqwest::Client,
    timeout: Duration,
    api_key: SecretString,
    priority: Priority,
    tags: Vec<String>,
    responders: Vec<Responder>,
    visible_to: Vec<Responder>,
    entity: Option<String>,
    source: String,
}

/// The Opsgenie destination type.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "opsgenie",
    overridable: &["priority", "tags"],
    build: |name, v, _| {
        let cfg: OpsgenieConfig = settings(v)?;
        use ResponderType::{Escalation, Schedule, Team, User};
        for (i, r) in cfg.responders.iter().enumerate() {
            r.check(
                &format!("responders.{i}"),
                &[Team, User, Escalation, Schedule],
            )?;
        }
        for (i, r) in cfg.visible_to.iter().enumerate() {
            r.check(&format!("visible_to.{i}"), &[Team, User])?;
        }
        let (base, client) =
            http::endpoint(cfg.api_url.as_deref(), DEFAULT_API_URL, cfg.timeout.value)?;
        Ok(Arc::new(OpsgenieSink {
            name: name.to_owned(),
            base,
            client,
            timeout: cfg.timeout.value,
            api_key: cfg.api_key,
            priority: cfg.priority,
            tags: cfg.tags,
            responders: cfg.responders,
            visible_to: cfg.visible_to,
            entity: cfg.entity,
            source: cfg.source.unwrap_or_else(|| "esalert".to_owned()),
        }))
    },
    lint: super::destinations::no_lint,
    notices: false,
};

impl OpsgenieSink {
    /// A request to `path` with the key.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("GenieKey {}", self.api_key.expose_secret()),
            )
    }

    /// The alert to create for `n`.
    fn alert(&self, n: &Notification) -> Result<Value, SinkError> {
        let priority = match n.settings.get("priority") {
            None => self.priority,
            Some(v) => v.as_str().and_then(Priority::parse).ok_or_else(|| {
                SinkError::permanent(
                    &self.name,
                    format!(
                        "alert {:?}: `outputs.{}.priority` must be P1, P2, P3, P4 or P5",
                        n.alert, self.name
                    ),
                )
            })?,
        };
        let tags: Vec<String> = n
            .setting_list("tags")
            .unwrap_or_else(|| self.tags.clone())
            .iter()
            .take(MAX_TAGS)
            .map(|t| http::truncate(t, MAX_TAG))
            .collect();
        let window =
            |f: fn(&crate::render::Window) -> String| n.window.as_ref().map(f).unwrap_or_default();
        let mut a = json!({
            "message": http::truncate(&n.rendered.subject, MAX_MESSAGE),
            "alias": http::truncate(&n.incident_key(), MAX_ALIAS),
            "description": http::truncate(&n.rendered.text, MAX_DESCRIPTION),
            "priority": priority,
            "tags": tags,
            "details": {
                "alert": n.alert,
                "key": n.key,
                "hits": n.hits.to_string(),
                "window_start": window(|w| crate::render::fmt_time(&w.start)),
                "window_end": window(|w| crate::render::fmt_time(&w.end)),
            },
            "source": http::truncate(&self.source, MAX_SOURCE),
        });
        if !self.responders.is_empty() {
            a["responders"] = json!(self.responders);
        }
        if !self.visible_to.is_empty() {
            a["visibleTo"] = json!(self.visible_to);
        }
        if let Some(e) = &self.entity {
            a["entity"] = json!(http::truncate(e, MAX_ENTITY));
        }
        Ok(a)
    }

    /// Opsgenie's verdict: 202 accepted (it processes requests later); a
    /// refused key or an invalid request is named with Opsgenie's message.
    fn verdict(&self, mut a: http::Answer) -> Result<(), SinkError> {
        a.body = a.body.replace(self.api_key.expose_secret(), "[api_key]");
        let v = a.json();
        let message = v.get("message").and_then(Value::as_str).unwrap_or("");
        let text = match v.get("errors").and_then(Value::as_object) {
            Some(errors) if !errors.is_empty() => {
                let each: Vec<String> = errors
                    .iter()
                    .map(|(k, e)| format!("{k}: {}", e.as_str().unwrap_or("invalid")))
                    .collect();
                format!("{message} ({})", each.join("; "))
            }
            _ => message.to_owned(),
        };
        let text = http::truncate(&text, 500);
        match a.status {
            401 | 403 => Err(SinkError::permanent(
                &self.name,
                format!(
                    "Opsgenie refused the key (HTTP {}): check `api_key` of destination {:?} (an API integration's key, with this region's api_url): {text}",
                    a.status, self.name
                ),
            )),
            400 | 422 if !text.is_empty() => Err(SinkError::permanent(
                &self.name,
                format!("Opsgenie rejected the request (HTTP {}): {text}", a.status),
            )),
            _ => http::check(&self.name, a).map(|_| ()),
        }
    }
}

impl Sink for OpsgenieSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            let req = if n.resolved {
                let alias = http::truncate(&n.incident_key(), MAX_ALIAS);
                let note = format!("{}\n\n{}", n.rendered.subject, n.rendered.text);
                let path = format!(
                    "/v2/alerts/{}/close?identifierType=alias",
                    utf8_percent_encode(&alias, PATH)
                );
                http::json(
                    self.request(reqwest::Method::POST, &path),
                    &json!({"source": http::truncate(&self.source, MAX_SOURCE),
                        "note": http::truncate(note.trim(), MAX_NOTE)}),
                )
            } else {
                http::json(
                    self.request(reqwest::Method::POST, "/v2/alerts"),
                    &self.alert(n)?,
                )
            };
            self.verdict(http::send(&self.name, req, self.timeout).await?)
        })
    }

    /// `GET /v2/account`: answers 200 for a key with read access.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let req = self.request(reqwest::Method::GET, "/v2/account");
            self.verdict(http::send(&self.name, req, self.timeout).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn build(v: Value) -> Result<Arc<dyn Sink>, SettingError> {
        crate::sinks::destinations::build_for_test(&TYPE, "genie", &v)
    }

    /// A peer answering one request with `status` and `body`; hands back
    /// the request's head.
    async fn one_answer(
        status: u16,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.unwrap();
            let head = String::from_utf8_lossy(&buf[..n]).into_owned();
            let answer = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            head
        });
        (url, task)
    }

    #[tokio::test]
    async fn the_healthcheck_reads_the_account_with_the_key() {
        let (url, task) = one_answer(200, r#"{"data":{"name":"acme"}}"#).await;
        let s = build(json!({"type": "opsgenie", "api_key": "k-1", "api_url": url})).unwrap();
        s.healthcheck().await.unwrap();
        let head = task.await.unwrap();
        assert!(head.starts_with("GET /v2/account "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: geniekey k-1"),
            "{head}"
        );

        let (url, _task) = one_answer(
            401,
            r#"{"message":"Key format is not valid!","took":0.0,"requestId":"r"}"#,
        )
        .await;
        let s =
            build(json!({"type": "opsgenie", "api_key": "sekrit-key", "api_url": url})).unwrap();
        let e = s.healthcheck().await.unwrap_err();
        assert!(!e.is_transient());
        let e = e.to_string();
        assert!(
            e.contains("api_key") && e.contains("Key format is not valid!"),
            "{e}"
        );
        assert!(!e.contains("sekrit"), "{e}");
    }

    #[test]
    fn responders_need_one_identifier_that_fits_their_type() {
        let with = |r: Value| build(json!({"type": "opsgenie", "api_key": "k", "responders": [r]}));
        assert!(with(json!({"type": "team", "name": "SOC"})).is_ok());
        assert!(with(json!({"type": "user", "username": "a@example.com"})).is_ok());
        let e = with(json!({"type": "user", "name": "a"})).err().unwrap();
        assert_eq!(e.at, ["responders", "0"]);
        assert!(e.message.contains("`username`"), "{}", e.message);
        let e = with(json!({"type": "team", "id": "1", "name": "SOC"}))
            .err()
            .unwrap();
        assert!(e.message.contains("exactly one"), "{}", e.message);
        let e = with(json!({"type": "squad", "name": "SOC"})).err().unwrap();
        assert_eq!(e.at.last().map(String::as_str), Some("type"));
        let e = build(json!({"type": "opsgenie", "api_key": "k",
            "visible_to": [{"type": "schedule", "name": "x"}]}))
        .err()
        .unwrap();
        assert_eq!(e.at, ["visible_to", "0"]);
        let e = build(json!({"type": "opsgenie", "api_key": "k", "priority": "P9"}))
            .err()
            .unwrap();
        assert_eq!(e.at, ["priority"]);
    }
}
