//! TheHive 5: one alert per match (`POST /api/v1/alert`).
//!
//! TheHive refuses a second alert with the same (`type`, `source`,
//! `sourceRef`), so `sourceRef` is the incident key plus the end of the
//! searched window: a repeat in a later window is a new alert, and a retry
//! of the same window (after a crash, or after TheHive stored the alert but
//! the answer was lost) is refused as "already exists", which counts as
//! delivered. esalert never closes TheHive alerts: resolved notices send
//! nothing here.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::destinations::{DestinationType, SettingError, settings};
use super::http;
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;
use crate::notify::Notification;

/// The longest title TheHive is sent.
const MAX_TITLE: usize = 512;

/// `{"type": "thehive", …}` in credentials.json.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// TheHive's address, e.g. `https://thehive.example:9000` (`api_url`
    /// means the same).
    #[serde(alias = "api_url")]
    url: String,
    /// The API key of a TheHive user allowed to create alerts.
    api_key: SecretString,
    /// The organisation alerts are created in (`X-Organisation`), for a
    /// user who belongs to several.
    #[serde(default)]
    organisation: Option<String>,
    /// The alerts' `type` (TheHive's `type` is taken by the destination's).
    #[serde(default = "esalert")]
    alert_type: String,
    /// The alerts' `source`.
    #[serde(default = "esalert")]
    source: String,
    /// 1 (low) to 4 (critical), or its name; an alert may override it.
    #[serde(default)]
    severity: Severity,
    /// Tags of every alert; an alert's own `tags` replace them.
    /// `esalert:<alert>` is always added.
    #[serde(default)]
    tags: Vec<String>,
    /// Traffic Light Protocol, 0 (clear) to 4 (red); TheHive's default
    /// when absent.
    #[serde(default)]
    tlp: Option<u8>,
    /// Permissible Actions Protocol, 0 to 4; TheHive's default when absent.
    #[serde(default)]
    pap: Option<u8>,
    /// Observables of every alert, e.g. `{"dataType": "ip", "data":
    /// "{{ group.key }}"}`.
    #[serde(default)]
    observables: Vec<ObservableConfig>,
    /// Overall time for one request.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

fn esalert() -> String {
    "esalert".into()
}

/// One configured observable.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObservableConfig {
    /// TheHive's data type: `ip`, `domain`, `hostname`, `url`, `mail`, …
    #[serde(rename = "dataType")]
    data_type: String,
    /// The value: text with `{{ group.key }}` and `{{ alert.name }}`.
    data: String,
}

/// TheHive's severity, 1–4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Severity(u8);

impl Default for Severity {
    fn default() -> Self {
        Severity(2)
    }
}

impl Severity {
    /// 1–4, `"1"`–`"4"` or low/medium/high/critical.
    fn from_value(v: &Value) -> Result<Severity, String> {
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "low" => Some(1),
                "medium" => Some(2),
                "high" => Some(3),
                "critical" => Some(4),
                other => other.parse().ok(),
            },
            _ => None,
        };
        match n {
            Some(n @ 1..=4) => Ok(Severity(n as u8)),
            _ => Err(format!(
                "TheHive's severity is 1 (low), 2 (medium), 3 (high) or 4 (critical), not {v}"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Severity::from_value(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A piece of an observable's `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    GroupKey,
    AlertName,
}

/// An observable's `data`: plain text and the two names it may use. Not a
/// template language: observables are values TheHive indexes and
/// correlates, so they are the entity or the alert, nothing computed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Data(Vec<Part>);

impl Data {
    fn parse(s: &str) -> Result<Data, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or("a `{{` is not closed by `}}`".to_owned())?;
            parts.push(match after[..close].trim() {
                "group.key" => Part::GroupKey,
                "alert.name" => Part::AlertName,
                other => {
                    return Err(format!(
                        "`{{{{ {other} }}}}` can't be used here: an observable's data may use only `{{{{ group.key }}}}` and `{{{{ alert.name }}}}`"
                    ));
                }
            });
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Data(parts))
    }

    fn render(&self, n: &Notification) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                Part::GroupKey => n.key.as_str(),
                Part::AlertName => n.alert.as_str(),
            })
            .collect()
    }
}

struct TheHiveSink {
    /// The destination's name.
    name: String,
    /// `url` without a trailing `/`.
    base: String,
    cfg: Config,
    observables: Vec<(String, Data)>,
    client: reqwest::Client,
}

/// `{"type": "thehive", "url": …, "api_key": …}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "thehive",
    overridable: &["severity", "tags"],
    build: |name, v, _| Ok(Arc::new(TheHiveSink::new(name, settings(v)?)?)),
    lint: super::destinations::no_lint,
    notices: false,
};

impl TheHiveSink {
    fn new(name: &str, cfg: Config) -> Result<TheHiveSink, SettingError> {
        let base = http::base_url(&cfg.url, "url", "https://thehive.example:9000")?;
        for (key, v) in [("tlp", cfg.tlp), ("pap", cfg.pap)] {
            if v.is_some_and(|v| v > 4) {
                return Err(SettingError::at(key, format!("`{key}` is 0 to 4")));
            }
        }
        let observables = cfg
            .observables
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if o.data_type.trim().is_empty() {
                    return Err(SettingError::at(
                        &format!("observables.{i}.dataType"),
                        "`dataType` is empty; use one of TheHive's types, e.g. \"ip\"",
                    ));
                }
                Data::parse(&o.data)
                    .map(|d| (o.data_type.clone(), d))
                    .map_err(|e| SettingError::at(&format!("observables.{i}.data"), e))
            })
            .collect::<Result<_, _>>()?;
        let client = crate::net::client(cfg.timeout.value)
            .map_err(|e| SettingError::at("", format!("cannot set up HTTPS: {e}")))?;
        Ok(TheHiveSink {
            name: name.to_owned(),
            base,
            cfg,
            observables,
            client,
        })
    }

    fn timeout(&self) -> Duration {
        self.cfg.timeout.value
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let r = r.bearer_auth(self.cfg.api_key.expose_secret());
        match &self.cfg.organisation {
            Some(o) => r.header("X-Organisation", o),
            None => r,
        }
    }

    /// The alert TheHive is sent for `n`.
    fn body(&self, n: &Notification) -> Result<Value, SinkError> {
        let severity = match n.settings.get("severity") {
            Some(v) => Severity::from_value(v).map_err(|e| {
                SinkError::permanent(
                    &self.name,
                    format!("alert {}: outputs.{}.severity: {e}", n.alert, self.name),
                )
            })?,
            None => self.cfg.severity,
        };
        let mut tags = n
            .setting_list("tags")
            .unwrap_or_else(|| self.cfg.tags.clone());
        tags.push(format!("esalert:{}", n.alert));
        let mut seen = std::collections::HashSet::new();
        tags.retain(|t| seen.insert(t.clone()));
        let mut observables: Vec<Value> = Vec::new();
        for (data_type, data) in &self.observables {
            let data = data.render(n);
            let o = json!({"dataType": data_type, "data": data});
            // TheHive refuses an empty value, and an alert holding the same
            // observable twice.
            if !data.trim().is_empty() && !observables.contains(&o) {
                observables.push(o);
            }
        }
        let end = n.window.map_or(n.time, |w| w.end);
        let mut body = json!({
            "type": self.cfg.alert_type,
            "source": self.cfg.source,
            "sourceRef": format!("{}-{}", n.incident_key(), end.timestamp()),
            "title": http::truncate(&crate::render::one_line(&n.rendered.subject), MAX_TITLE),
            "description": markdown_literal(&n.rendered.text),
            "severity": severity.0,
            "tags": tags,
            "date": n.time.timestamp_millis(),
            "observables": observables,
        });
        for (key, v) in [("tlp", self.cfg.tlp), ("pap", self.cfg.pap)] {
            if let Some(v) = v {
                body[key] = json!(v);
            }
        }
        Ok(body)
    }
}

/// `text` as a fenced code block: shown exactly as rendered (line breaks
/// kept), and nothing a response value holds becomes a link or markup.
fn markdown_literal(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}")
}

/// Whether TheHive refused the alert because it already has it (same type,
/// source and sourceRef): an earlier try of this delivery got through.
fn already_exists(a: &http::Answer) -> bool {
    matches!(a.status, 400 | 409)
        && a.json()["message"]
            .as_str()
            .is_some_and(|m| m.to_ascii_lowercase().contains("already exists"))
}

impl Sink for TheHiveSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let notification = super::destinations::notification(&self.name, m)?;
            if notification.resolved {
                // TheHive alerts are triaged and closed by analysts.
                return Ok(());
            }
            let body = self.body(notification)?;
            let req = http::json(
                self.authed(self.client.post(format!("{}/api/v1/alert", self.base))),
                &body,
            );
            let a = http::send(&self.name, req, self.timeout()).await?;
            if already_exists(&a) {
                tracing::info!(
                    alert = notification.alert.as_str(),
                    sink = self.name.as_str(),
                    source_ref = body["sourceRef"].as_str().unwrap_or_default(),
                    "TheHive already has this alert (an earlier try got through)"
                );
                return Ok(());
            }
            if a.status == 400 {
                let j = a.json();
                if let Some(msg) = j["message"].as_str() {
                    return Err(SinkError::permanent(
                        &self.name,
                        format!(
                            "HTTP 400: TheHive refused the alert: {}{}",
                            j["type"]
                                .as_str()
                                .map(|t| format!("{t}: "))
                                .unwrap_or_default(),
                            msg
                        ),
                    ));
                }
            }
            http::check(&self.name, a).map(|_| ())
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let req = self.authed(
                self.client
                    .get(format!("{}/api/v1/user/current", self.base)),
            );
            http::call(&self.name, req, self.timeout())
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observable_data_knows_two_names_and_plain_text() {
        let d = Data::parse("host-{{group.key}}.{{ alert.name }}").unwrap();
        assert_eq!(
            d.0,
            [
                Part::Text("host-".into()),
                Part::GroupKey,
                Part::Text(".".into()),
                Part::AlertName
            ]
        );
        assert!(
            Data::parse("{{ hits.total }}")
                .unwrap_err()
                .contains("hits.total")
        );
        assert!(Data::parse("{{ group.key").is_err());
        assert_eq!(Data::parse("10.0.0.1").unwrap().0.len(), 1);
    }

    #[test]
    fn severities_are_numbers_or_names() {
        assert_eq!(Severity::from_value(&json!(4)), Ok(Severity(4)));
        assert_eq!(Severity::from_value(&json!("High")), Ok(Severity(3)));
        assert_eq!(Severity::from_value(&json!("1")), Ok(Severity(1)));
        assert!(Severity::from_value(&json!(5)).is_err());
        assert!(Severity::from_value(&json!(0)).is_err());
        assert!(Severity::from_value(&json!(true)).is_err());
    }

    #[test]
    fn a_description_shows_backticks_and_links_literally() {
        let d = markdown_literal("a ```` b [x](http://evil)");
        assert!(d.starts_with("`````text\n"), "{d}");
        assert!(d.ends_with("\n`````"), "{d}");
        assert_eq!(markdown_literal("x"), "```text\nx\n```");
    }
}
