//! `{"type": "webhook", …}`: one HTTP request per notification to any
//! service, with a JSON document of the notification or a body template.
//!
//! The default body (`content_type` JSON, no `body`):
//!
//! ```json
//! {"alert": "…", "key": "…", "subject": "…", "message": "…", "hits": 3,
//!  "window": {"start": "…", "end": "…"}, "time": "…", "resolved": false,
//!  "incident_key": "esalert-…"}
//! ```
//!
//! `window` is `null` when the alert searched no window. A `body` template
//! is minijinja; with a JSON `content_type` every value it writes is JSON
//! (`{{ subject }}` writes `"the subject"` with its quotes, `{{ hits }}`
//! writes `3`), so the result is valid JSON whatever the response held.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::destinations::{DestinationType, SettingError, no_lint, settings};
use super::{Message, Sink, SinkError, chat, http};
use crate::alert::HumanDuration;
use crate::notify::Notification;
use crate::render::fmt_time;

/// The name of the body template in the sink's environment.
const BODY: &str = "body";

/// A template's budget of operations, so that a loop can't hang a send.
const FUEL: u64 = 100_000;

/// The HTTP methods a webhook may use.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum Method {
    /// The default.
    #[default]
    Post,
    /// Replaces a resource.
    Put,
    /// Updates a resource.
    Patch,
    /// Sends no body: for trigger URLs.
    Get,
}

/// How the request authenticates.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Auth {
    /// `Authorization: Basic …`.
    Basic {
        /// The user.
        username: String,
        /// The password (`${ENV}`).
        password: SecretString,
    },
    /// `Authorization: Bearer <token>` (`${ENV}`).
    Bearer(SecretString),
}

/// The settings of a webhook destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    /// Where requests go (http or https).
    url: String,
    /// `POST` (default), `PUT`, `PATCH` or `GET` (no body).
    #[serde(default)]
    method: Method,
    /// Extra headers; values may be `${ENV}` secrets and are never shown.
    #[serde(default, deserialize_with = "secret_headers")]
    headers: BTreeMap<String, SecretString>,
    /// Basic or bearer authentication.
    #[serde(default)]
    auth: Option<Auth>,
    /// A minijinja template of the body; the default is a JSON document of
    /// the notification.
    #[serde(default)]
    body: Option<String>,
    /// The body's `Content-Type`; values written by `body` are JSON-escaped
    /// when it is JSON.
    #[serde(default = "json_type")]
    content_type: String,
    /// Overall timeout of one request.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

fn json_type() -> String {
    "application/json".into()
}

/// Header values are secrets: an error names the header, never its value.
fn secret_headers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SecretString>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, SecretString::from(s))),
            _ => Err(serde::de::Error::custom(format!(
                "header {k:?} must be a string (its value is not shown: headers may hold secrets)"
            ))),
        })
        .collect()
}

struct WebhookSink {
    name: String,
    client: reqwest::Client,
    url: String,
    method: Method,
    headers: reqwest::header::HeaderMap,
    auth: Option<Auth>,
    json: bool,
    content_type: String,
    /// The body template, compiled; `None` for the default document.
    env: Option<Environment<'static>>,
    timeout: Duration,
}

/// `{"type": "webhook", "url": …}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "webhook",
    overridable: &[],
    build: |name, v, _| Ok(Arc::new(WebhookSink::new(name, settings(v)?)?)),
    lint: no_lint,
    notices: false,
};

impl WebhookSink {
    fn new(name: &str, c: WebhookConfig) -> Result<WebhookSink, SettingError> {
        match url::Url::parse(&c.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            Ok(_) => {
                return Err(SettingError::at(
                    "url",
                    "`url` must be an http or https URL",
                ));
            }
            Err(e) => return Err(SettingError::at("url", format!("`url` is not a URL: {e}"))),
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &c.headers {
            let bad = |what: &str| {
                SettingError::at(
                    &format!("headers.{k}"),
                    format!("header {k:?}: {what} (the value is not shown)"),
                )
            };
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            let mut value = reqwest::header::HeaderValue::from_str(v.expose_secret())
                .map_err(|_| bad("the value has characters a header can't carry"))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(a) = &c.auth {
            let (user, secret) = match a {
                Auth::Basic { username, password } => (Some(username.as_str()), password),
                Auth::Bearer(t) => (None, t),
            };
            if user.is_some_and(|u| u.contains(':')) {
                return Err(SettingError::at(
                    "auth.basic.username",
                    "a basic-auth username can't contain `:`",
                ));
            }
            if reqwest::header::HeaderValue::from_str(secret.expose_secret()).is_err() {
                return Err(SettingError::at(
                    "auth",
                    "the credentials have characters a header can't carry (not shown)",
                ));
            }
        }
        let json = c.content_type.to_ascii_lowercase().contains("json");
        let env = match &c.body {
            None => None,
            Some(t) => {
                let mut env = Environment::new();
                env.set_undefined_behavior(UndefinedBehavior::Strict);
                env.set_fuel(Some(FUEL));
                env.set_auto_escape_callback(move |_| {
                    if json {
                        AutoEscape::Json
                    } else {
                        AutoEscape::None
                    }
                });
                env.add_template_owned(BODY, t.clone())
                    .map_err(|e| SettingError::at("body", format!("the template: {e}")))?;
                Some(env)
            }
        };
        let client = crate::net::client(c.timeout.value)
            .map_err(|e| SettingError::at("", format!("no HTTP client: {e}")))?;
        let sink = WebhookSink {
            name: name.to_owned(),
            client,
            url: c.url,
            method: c.method,
            headers,
            auth: c.auth,
            json,
            content_type: c.content_type,
            env,
            timeout: c.timeout.value,
        };
        // A template that can't render, or renders broken JSON, is found
        // now rather than on the first match.
        sink.body(&chat::example())
            .map_err(|e| SettingError::at("body", e))?;
        Ok(sink)
    }

    /// The body for `n`, or why it can't be made.
    fn body(&self, n: &Notification) -> Result<String, String> {
        let Some(env) = &self.env else {
            return Ok(document(n).to_string());
        };
        let t = env.get_template(BODY).map_err(|e| e.to_string())?;
        let text = t
            .render(context(n, self.json))
            .map_err(|e| format!("the template: {e}"))?;
        if self.json {
            serde_json::from_str::<Value>(&text).map_err(|e| {
                format!("the template does not make valid JSON ({e}); with a JSON content_type, write values bare: {{\"text\": {{{{ subject }}}}}}")
            })?;
        }
        Ok(text)
    }
}

/// The default body: every field of the notification a receiver needs.
fn document(n: &Notification) -> Value {
    json!({
        "alert": n.alert,
        "key": n.key,
        "subject": n.rendered.subject,
        "message": n.rendered.text,
        "hits": n.hits,
        "window": n.window.as_ref().map(|w| json!({"start": fmt_time(&w.start), "end": fmt_time(&w.end)})),
        "time": fmt_time(&n.time),
        "resolved": n.resolved,
        "incident_key": n.incident_key(),
    })
}

/// What a body template sees: the default document's fields, with the
/// window's times empty in a text body when there was no window.
fn context(n: &Notification, json: bool) -> Value {
    let mut d = document(n);
    if d["window"].is_null() {
        d["window"] = if json {
            json!({"start": null, "end": null})
        } else {
            json!({"start": "", "end": ""})
        };
    }
    d
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            let mut req = match self.method {
                Method::Post => self.client.post(&self.url),
                Method::Put => self.client.put(&self.url),
                Method::Patch => self.client.patch(&self.url),
                Method::Get => self.client.get(&self.url),
            }
            .headers(self.headers.clone());
            req = match &self.auth {
                Some(Auth::Basic { username, password }) => {
                    req.basic_auth(username, Some(password.expose_secret()))
                }
                Some(Auth::Bearer(t)) => req.bearer_auth(t.expose_secret()),
                None => req,
            };
            if !matches!(self.method, Method::Get) {
                let body = self
                    .body(n)
                    .map_err(|e| SinkError::permanent(&self.name, format!("body: {e}")))?;
                req = req
                    .header(reqwest::header::CONTENT_TYPE, &self.content_type)
                    .body(body);
            }
            http::call(&self.name, req, self.timeout).await.map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(v: Value) -> Result<WebhookSink, SettingError> {
        crate::install_crypto_provider();
        WebhookSink::new("hook", settings(&v)?)
    }

    #[test]
    fn a_template_writes_json_values_and_is_checked_when_built() {
        let s = sink(json!({"url": "http://x.example/h",
            "body": "{\"text\": {{ subject }}, \"n\": {{ hits }}, \"from\": {{ window.start }}}"}))
        .unwrap();
        let mut n = chat::example();
        n.rendered.subject = "a \"quoted\" }{ subject".into();
        let v: Value = serde_json::from_str(&s.body(&n).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({"text": "a \"quoted\" }{ subject", "n": 1, "from": null})
        );

        let e = sink(json!({"url": "http://x.example/h", "body": "{\"text\": \"{{ subject }}\"}"}))
            .err()
            .unwrap();
        assert_eq!(e.at, ["body"]);
        assert!(e.message.contains("valid JSON"), "{}", e.message);
        let e = sink(json!({"url": "http://x.example/h", "body": "{{ nope }}"}))
            .err()
            .unwrap();
        assert!(e.message.contains("undefined"), "{}", e.message);
        let text = sink(
            json!({"url": "http://x.example/h", "content_type": "text/plain",
            "body": "{{ subject }} ({{ hits }}) {{ window.start }}"}),
        )
        .unwrap();
        assert_eq!(text.body(&n).unwrap(), "a \"quoted\" }{ subject (1) ");
    }

    #[test]
    fn header_values_and_urls_are_checked_without_being_shown() {
        let e = sink(json!({"url": "http://x.example", "headers": {"X-Key": 12345}}))
            .err()
            .unwrap();
        assert!(
            e.message.contains("X-Key") && !e.message.contains("12345"),
            "{}",
            e.message
        );
        let e = sink(json!({"url": "http://x.example", "headers": {"X-Key": "sec\nret"}}))
            .err()
            .unwrap();
        assert!(!e.message.contains("sec"), "{}", e.message);
        let e = sink(json!({"url": "ftp://x.example"})).err().unwrap();
        assert_eq!(e.at, ["url"]);
        assert!(sink(json!({"method": "POST"})).is_err(), "url is required");
        assert!(sink(json!({"url": "http://x", "method": "DELETE"})).is_err());
        let e = sink(json!({"url": "http://x", "auth": {"bearer": 5}}))
            .err()
            .unwrap();
        assert!(!e.message.contains('5'), "{}", e.message);
    }
}
