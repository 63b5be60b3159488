//! PagerDuty (Events API v2): a match triggers an incident, its repeats
//! merge into it and its resolution resolves it, all by one `dedup_key` per
//! (alert, group key).
//!
//! ```json
//! "oncall": {"type": "pagerduty", "routing_key": "${PD_ROUTING_KEY}", "severity": "critical"}
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::destinations::{DestinationType, SettingError, settings};
use super::http;
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;
use crate::notify::Notification;

/// Where the Events API lives.
const DEFAULT_API_URL: &str = "https://events.pagerduty.com";

/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY: usize = 1024;

/// PagerDuty's limit on `dedup_key`.
const MAX_DEDUP_KEY: usize = 255;

/// The most of the message that goes into `custom_details` (an event may
/// be 512 KB in all).
const MAX_DETAILS_TEXT: usize = 64_000;

/// How long an Events API v2 routing (integration) key is.
const ROUTING_KEY_LEN: usize = 32;

/// How urgent an incident is, as PagerDuty names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Severity {
    Critical,
    #[default]
    Error,
    Warning,
    Info,
}

impl Severity {
    const NAMES: &str = "critical, error, warning or info";

    fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "critical" => Severity::Critical,
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            "info" => Severity::Info,
            _ => return None,
        })
    }
}

/// A link shown on the incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Link {
    /// The address.
    href: String,
    /// What the link is called on the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// `{"type": "pagerduty", …}` in credentials.json's `outputs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PagerDutyConfig {
    /// The Integration Key of an "Events API v2" integration on a service.
    routing_key: SecretString,
    /// critical, error, warning or info; an alert may give its own.
    #[serde(default)]
    severity: Severity,
    /// What is affected (`payload.source`): this machine's host name unless set.
    #[serde(default)]
    source: Option<String>,
    /// `payload.component`, e.g. "auth".
    #[serde(default)]
    component: Option<String>,
    /// `payload.group`, e.g. "prod-web".
    #[serde(default)]
    group: Option<String>,
    /// `payload.class`, e.g. "security".
    #[serde(default)]
    class: Option<String>,
    /// Links shown on every incident (a runbook, a Kibana dashboard).
    #[serde(default)]
    links: Vec<Link>,
    /// The Events API's address (a proxy, or a test).
    #[serde(default, alias = "url")]
    api_url: Option<String>,
    /// Overall time for one event.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

struct PagerDutySink {
    /// The destination's name.
    name: String,
    /// `{api_url}/v2/enqueue`.
    enqueue: String,
    client: reqwest::Client,
    timeout: Duration,
    routing_key: SecretString,
    severity: Severity,
    source: String,
    component: Option<String>,
    group: Option<String>,
    class: Option<String>,
    links: Vec<Link>,
}

/// The PagerDuty destination type.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "pagerduty",
    overridable: &["severity"],
    build: |name, v, _| {
        let cfg: PagerDutyConfig = settings(v)?;
        let (base, client) =
            http::endpoint(cfg.api_url.as_deref(), DEFAULT_API_URL, cfg.timeout.value)?;
        Ok(Arc::new(PagerDutySink {
            name: name.to_owned(),
            enqueue: format!("{base}/v2/enqueue"),
            client,
            timeout: cfg.timeout.value,
            routing_key: cfg.routing_key,
            severity: cfg.severity,
            source: cfg.source.unwrap_or_else(host_name),
            component: cfg.component,
            group: cfg.group,
            class: cfg.class,
            links: cfg.links,
        }))
    },
    lint: |v| match settings::<PagerDutyConfig>(v) {
        Ok(cfg) => key_shape(&cfg.routing_key)
            .err()
            .map(|m| SettingError::at("routing_key", m))
            .into_iter()
            .collect(),
        Err(_) => Vec::new(),
    },
    notices: false,
};

/// Whether `key` looks like a routing key; what is wrong if not (never the
/// key itself).
fn key_shape(key: &SecretString) -> Result<(), String> {
    let k = key.expose_secret();
    let n = k.chars().count();
    if n == ROUTING_KEY_LEN && k.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(format!(
        "`routing_key` is not a PagerDuty routing key ({n} characters; one is {ROUTING_KEY_LEN} letters and digits): copy the Integration Key of the service's \"Events API v2\" integration"
    ))
}

/// This machine's host name, for `payload.source`; `esalert` without one.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for the length passed.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(buf.get(..len).unwrap_or_default()) {
        Ok(h) if rc == 0 && !h.trim().is_empty() => h.trim().to_owned(),
        _ => "esalert".to_owned(),
    }
}

impl PagerDutySink {
    /// The event for `n`: a trigger with its payload, or a resolve.
    fn event(&self, n: &Notification) -> Result<Value, SinkError> {
        let dedup_key = http::truncate(&n.incident_key(), MAX_DEDUP_KEY);
        let key = self.routing_key.expose_secret();
        if n.resolved {
            return Ok(json!({"routing_key": key, "event_action": "resolve",
                "dedup_key": dedup_key, "client": "esalert"}));
        }
        let severity = match n.settings.get("severity") {
            None => self.severity,
            Some(v) => v.as_str().and_then(Severity::parse).ok_or_else(|| {
                SinkError::permanent(
                    &self.name,
                    format!(
                        "alert {:?}: `outputs.{}.severity` must be {}",
                        n.alert,
                        self.name,
                        Severity::NAMES
                    ),
                )
            })?,
        };
        let mut payload = json!({
            "summary": http::truncate(&n.rendered.subject, MAX_SUMMARY),
            "source": self.source,
            "severity": severity,
            "timestamp": crate::render::fmt_time(&n.time),
            "custom_details": {
                "alert": n.alert,
                "key": n.key,
                "hits": n.hits,
                "window_start": n.window.as_ref().map(|w| crate::render::fmt_time(&w.start)),
                "window_end": n.window.as_ref().map(|w| crate::render::fmt_time(&w.end)),
                "message": http::truncate(&n.rendered.text, MAX_DETAILS_TEXT),
            },
        });
        for (k, v) in [
            ("component", &self.component),
            ("group", &self.group),
            ("class", &self.class),
        ] {
            if let Some(v) = v {
                payload[k] = json!(v);
            }
        }
        let mut event = json!({"routing_key": key, "event_action": "trigger",
            "dedup_key": dedup_key, "client": "esalert", "payload": payload});
        if !self.links.is_empty() {
            event["links"] = json!(self.links);
        }
        Ok(event)
    }

    /// PagerDuty's verdict: 202 accepted; a 400 names what is invalid.
    fn verdict(&self, mut a: http::Answer) -> Result<(), SinkError> {
        // PagerDuty does not echo the key, but nothing it says is trusted to.
        a.body = a
            .body
            .replace(self.routing_key.expose_secret(), "[routing_key]");
        if a.status == 400 {
            let v = a.json();
            if let Some(m) = v.get("message").and_then(Value::as_str) {
                let errors: Vec<&str> = v
                    .get("errors")
                    .and_then(Value::as_array)
                    .map(|e| e.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let text = if errors.is_empty() {
                    m.to_owned()
                } else {
                    format!("{m}: {}", errors.join("; "))
                };
                return Err(SinkError::permanent(
                    &self.name,
                    format!(
                        "PagerDuty rejected the event (HTTP 400): {}",
                        http::truncate(&text, 500)
                    ),
                ));
            }
        }
        http::check(&self.name, a).map(|_| ())
    }
}

impl Sink for PagerDutySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let notification = super::destinations::notification(&self.name, m)?;
            let event = self.event(notification)?;
            let req = http::json(self.client.post(&self.enqueue), &event);
            self.verdict(http::send(&self.name, req, self.timeout).await?)
        })
    }

    /// The Events API has no way to check a key without raising an
    /// incident: only the key's shape is checked.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            key_shape(&self.routing_key).map_err(|m| SinkError::permanent(&self.name, m))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(v: Value) -> Result<Arc<dyn Sink>, SettingError> {
        crate::sinks::destinations::build_for_test(&TYPE, "oncall", &v)
    }

    #[tokio::test]
    async fn the_healthcheck_checks_the_keys_shape_without_showing_it() {
        let ok =
            build(json!({"type": "pagerduty", "routing_key": "R0123456789abcdef0123456789ABCDE"}))
                .unwrap();
        assert!(ok.healthcheck().await.is_ok());
        let bad = build(json!({"type": "pagerduty", "routing_key": "sekrit-short"})).unwrap();
        let e = bad.healthcheck().await.unwrap_err();
        assert!(!e.is_transient());
        assert!(e.to_string().contains("12 characters"), "{e}");
        assert!(!e.to_string().contains("sekrit"), "{e}");
        let lint = (TYPE.lint)(&json!({"type": "pagerduty", "routing_key": "sekrit-short"}));
        assert_eq!(lint.len(), 1);
        assert_eq!(lint[0].at, ["routing_key"]);
    }

    #[test]
    fn settings_are_checked_by_name() {
        let e = build(json!({"type": "pagerduty", "routing_key": "k", "severity": "urgent"}))
            .err()
            .unwrap();
        assert_eq!(e.at, ["severity"]);
        assert!(e.message.contains("critical"), "{}", e.message);
        let e = build(
            json!({"type": "pagerduty", "routing_key": "k", "api_url": "events.eu.pagerduty.com"}),
        )
        .err()
        .unwrap();
        assert_eq!(e.at, ["api_url"]);
        let e = build(json!({"type": "pagerduty", "routing_key": 5}))
            .err()
            .unwrap();
        assert_eq!(e.at, ["routing_key"]);
        assert!(
            build(json!({"type": "pagerduty", "routing_key": "k", "url": "http://127.0.0.1:1/"}))
                .is_ok()
        );
    }
}
