//! Delivery: one module per medium behind the [`Notifier`] trait.
//!
//! Errors are opaque [`NotifyError`]s whose [`NotifyError::is_transient`]
//! drives retries, as in lettre's transports.

pub mod email;
pub mod slack;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::alert::Medium;
use crate::config::Credentials;
use crate::render::Rendered;

/// Everything a medium needs to deliver one match. Stored in the outbox, so
/// that a retry sends exactly what was rendered for the match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The alert's name.
    pub alert: String,
    /// Subject and message in every flavour.
    pub rendered: Rendered,
    /// The response's hit count.
    pub hits: u64,
    /// When the match happened.
    pub time: DateTime<Utc>,
    /// Per-alert Slack channel (bot-token mode), as stores written before
    /// named destinations kept it; now in `settings` (see [`Self::channel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack_channel: Option<String>,
    /// Per-alert `To`, replacing the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_to: Vec<String>,
    /// Per-alert `Cc`, replacing the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub email_cc: Vec<String>,
    /// The notice that an earlier match is over (`notify_resolved`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resolved: bool,
    /// The group key it is about (`""` for the whole alert).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// The searched window, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<crate::render::Window>,
    /// The alert's own settings for the destination this copy goes to
    /// (`outputs.<name>` in the alert file: `channel`, `to`, `severity`, …).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

impl Notification {
    /// A notification of `alert` with nothing destination-specific yet.
    pub fn of(
        alert: &str,
        rendered: crate::render::Rendered,
        hits: u64,
        time: DateTime<Utc>,
    ) -> Self {
        Notification {
            alert: alert.to_owned(),
            rendered,
            hits,
            time,
            slack_channel: None,
            email_to: Vec::new(),
            email_cc: Vec::new(),
            resolved: false,
            key: String::new(),
            window: None,
            settings: Default::default(),
        }
    }

    /// A string setting of the alert's for this destination.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings.get(name).and_then(serde_json::Value::as_str)
    }

    /// The Slack channel to post to: the alert's `channel` setting, or the
    /// field a store written before named destinations kept it in.
    pub fn channel(&self) -> Option<&str> {
        self.setting("channel").or(self.slack_channel.as_deref())
    }

    /// The `To` recipients the alert sets (`to`), or the older field's.
    pub fn to(&self) -> Vec<String> {
        self.setting_list("to")
            .unwrap_or_else(|| self.email_to.clone())
    }

    /// The `Cc` recipients the alert sets (`cc`), or the older field's.
    pub fn cc(&self) -> Vec<String> {
        self.setting_list("cc")
            .unwrap_or_else(|| self.email_cc.clone())
    }

    /// A list setting (`to`, `tags`): a string counts as a list of one.
    pub fn setting_list(&self, name: &str) -> Option<Vec<String>> {
        match self.settings.get(name)? {
            serde_json::Value::String(s) => Some(vec![s.clone()]),
            serde_json::Value::Array(a) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// A stable identifier of the incident this notification is about:
    /// the same for every repeat and the resolution of one (alert, key),
    /// so providers merge them (PagerDuty `dedup_key`, Opsgenie `alias`).
    pub fn incident_key(&self) -> String {
        incident_key(&self.alert, &self.key)
    }
}

/// [`Notification::incident_key`] of (alert, key): `esalert-<alert>-<hash>`,
/// at most 64 characters whatever the key.
pub fn incident_key(alert: &str, key: &str) -> String {
    let mut input = Vec::with_capacity(alert.len() + key.len() + 1);
    input.extend_from_slice(alert.as_bytes());
    input.push(0);
    input.extend_from_slice(key.as_bytes());
    let d = ring::digest::digest(&ring::digest::SHA256, &input);
    let hex: String = d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect();
    let alert: String = alert.chars().take(38).collect();
    format!("esalert-{alert}-{hex}")
}

/// How bad a notification is, where a destination shows it (Slack's colour
/// bar; a provider's severity field): `critical`, `error`, `warning`, `info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Someone must act now.
    Critical,
    /// Something failed.
    Error,
    /// Something may fail.
    Warning,
    /// For information.
    Info,
}

impl Severity {
    /// Every severity's name, for error messages.
    pub const NAMES: &'static str = "critical, error, warning, info";

    /// The severity named `s` (lower case), if any.
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "critical" => Some(Severity::Critical),
            "error" => Some(Severity::Error),
            "warning" => Some(Severity::Warning),
            "info" => Some(Severity::Info),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Permanent,
}

/// A failed delivery. Opaque: ask [`is_transient`](Self::is_transient).
#[derive(Debug, Clone)]
pub struct NotifyError {
    medium: Medium,
    kind: Kind,
    message: String,
    retry_after: Option<Duration>,
}

impl NotifyError {
    /// A failure that may go away by itself (5xx, network, 4xx SMTP, 429).
    pub fn transient(medium: Medium, message: impl Into<String>) -> Self {
        NotifyError {
            medium,
            kind: Kind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that needs a person (bad channel, bad auth, 5xx SMTP).
    pub fn permanent(medium: Medium, message: impl Into<String>) -> Self {
        NotifyError {
            medium,
            kind: Kind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        self.kind == Kind::Transient
    }

    /// How long the peer asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The medium that failed.
    pub fn medium(&self) -> Medium {
        self.medium
    }
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.medium.as_str(), self.message)
    }
}

impl std::error::Error for NotifyError {}

/// A medium that can deliver notifications.
pub trait Notifier: Send + Sync {
    /// Which medium this is.
    fn medium(&self) -> Medium;
    /// Delivers one notification.
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// Why a notifier could not be built from credentials.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Slack settings are unusable.
    #[error("credentials.json slack: {0}")]
    Slack(String),
    /// Email settings are unusable.
    #[error("credentials.json email: {0}")]
    Email(String),
    /// A destination under `outputs` is unusable.
    #[error("credentials.json outputs.{name}{}: {message}", if at.is_empty() { String::new() } else { format!(".{}", at.join(".")) })]
    Output {
        /// The destination's name.
        name: String,
        /// The setting, inside the destination.
        at: Vec<String>,
        /// What is wrong.
        message: String,
    },
    /// `notices` names a destination that doesn't exist.
    #[error(
        "credentials.json notices: no destination named {0:?}; name `slack`, `email` or one under `outputs`"
    )]
    Notices(String),
}

/// The configured media.
#[derive(Clone, Default)]
pub struct Notifiers {
    slack: Option<Arc<dyn Notifier>>,
    email: Option<Arc<dyn Notifier>>,
    /// The concrete clients, for Watcher actions that need more than a
    /// [`Notification`] (attachments, bcc, several channels).
    slack_client: Option<Arc<slack::SlackNotifier>>,
    email_client: Option<Arc<email::EmailNotifier>>,
    /// The named destinations of `outputs`.
    destinations: Vec<Destination>,
    /// `notices`, when set.
    notices: Option<Vec<String>>,
    /// The file, for destinations rules configure themselves.
    credentials: Option<Arc<Credentials>>,
}

/// A built destination: its name, type and sink.
pub type Destination = (
    String,
    &'static crate::sinks::destinations::DestinationType,
    Arc<dyn crate::sinks::Sink>,
);

impl fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifiers")
            .field("slack", &self.slack.is_some())
            .field("email", &self.email.is_some())
            .finish()
    }
}

impl Notifiers {
    /// Builds a notifier for every medium configured in credentials.
    pub fn from_credentials(c: &Credentials) -> Result<Notifiers, SetupError> {
        let slack_client = match &c.slack {
            Some(s) => Some(Arc::new(slack::SlackNotifier::new(s)?)),
            None => None,
        };
        let email_client = match &c.email {
            Some(e) => Some(Arc::new(email::EmailNotifier::new(e)?)),
            None => None,
        };
        let destinations =
            crate::sinks::destinations::build_all(c).map_err(|(name, e)| SetupError::Output {
                name,
                at: e.at,
                message: e.message,
            })?;
        if let Some(n) = c.notices.iter().flatten().find(|n| {
            !((n.as_str() == "slack" && c.slack.is_some())
                || (n.as_str() == "email" && c.email.is_some())
                || destinations.iter().any(|d| &d.0 == *n))
        }) {
            return Err(SetupError::Notices(n.clone()));
        }
        Ok(Notifiers {
            slack: slack_client.clone().map(|x| x as Arc<dyn Notifier>),
            email: email_client.clone().map(|x| x as Arc<dyn Notifier>),
            slack_client,
            email_client,
            destinations,
            notices: c.notices.clone(),
            credentials: Some(Arc::new(c.clone())),
        })
    }

    /// The credentials these were built from.
    pub fn credentials(&self) -> Option<&Arc<Credentials>> {
        self.credentials.as_ref()
    }

    /// The named destinations of `outputs`.
    pub fn destinations(&self) -> &[Destination] {
        &self.destinations
    }

    /// `notices`, when credentials.json sets it.
    pub fn notice_targets(&self) -> Option<&[String]> {
        self.notices.as_deref()
    }

    /// Uses the given notifiers (tests, embedding).
    pub fn with(mut self, n: Arc<dyn Notifier>) -> Self {
        match n.medium() {
            Medium::Slack => self.slack = Some(n),
            Medium::Email => self.email = Some(n),
        }
        self
    }

    /// The Slack client, if Slack is configured.
    pub fn slack_client(&self) -> Option<&Arc<slack::SlackNotifier>> {
        self.slack_client.as_ref()
    }

    /// The email client, if email is configured.
    pub fn email_client(&self) -> Option<&Arc<email::EmailNotifier>> {
        self.email_client.as_ref()
    }

    /// The media that are configured: where esalert's own notices go.
    pub fn configured(&self) -> Vec<Medium> {
        let mut v = Vec::new();
        if self.slack.is_some() {
            v.push(Medium::Slack);
        }
        if self.email.is_some() {
            v.push(Medium::Email);
        }
        v
    }

    /// The notifier of a medium, or a permanent error saying it isn't set up.
    pub fn get(&self, m: Medium) -> Result<&Arc<dyn Notifier>, NotifyError> {
        match m {
            Medium::Slack => self.slack.as_ref(),
            Medium::Email => self.email.as_ref(),
        }
        .ok_or_else(|| {
            NotifyError::permanent(
                m,
                format!(
                    "{} is not configured: add a \"{}\" section to credentials.json",
                    m.as_str(),
                    m.as_str()
                ),
            )
        })
    }
}
