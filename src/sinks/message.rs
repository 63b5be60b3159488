//! What a sink is given and what it answers: the rendered [`Message`], the
//! [`Sink`] trait and its [`SinkError`].

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::notify::{Notification, NotifyError};

/// One rendered delivery, exactly as it will be sent. Stored in the outbox,
/// so a retry after a crash sends what was rendered for the match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Message {
    /// A native alert's notification; its sink lays it out (Slack blocks,
    /// multipart email).
    Notification {
        /// The sink: `slack` or `email`.
        sink: String,
        /// What to send.
        notification: Notification,
    },
    /// A notification to a destination the rule itself configures (an
    /// ElastAlert rule's `slack_webhook_url`, say) rather than one named in
    /// credentials.json: `destination` is `{"type": …, settings…}` as under
    /// `outputs`, built on first use.
    Inline {
        /// The destination's type and settings.
        destination: Value,
        /// What to send.
        notification: Notification,
    },
    /// A Slack message as a Watcher action writes it.
    Slack {
        /// The channel (bot-token mode); the webhook's own channel when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        /// The text, with response values escaped.
        text: String,
        /// Legacy attachments, with response values escaped.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Value>,
    },
    /// An email as a Watcher action writes it.
    Email(EmailMessage),
    /// An HTTP request (Watcher `webhook`).
    Webhook(WebhookRequest),
    /// Documents for an index (Watcher `index`).
    Index {
        /// The index.
        index: String,
        /// The document id, for a single document.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        doc_id: Option<String>,
        /// The documents.
        docs: Vec<Value>,
        /// Several documents go in one bulk request.
        #[serde(default)]
        bulk: bool,
    },
    /// A line in alerts.log (Watcher `logging`).
    Log {
        /// The rule, named on the line.
        alert: String,
        /// `error`, `warn` or `info`.
        level: String,
        /// The text.
        text: String,
    },
}

impl Message {
    /// The name of the sink that delivers this message.
    pub fn sink(&self) -> &str {
        match self {
            Message::Notification { sink, .. } => sink,
            Message::Inline { destination, .. } => destination
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("inline"),
            Message::Slack { .. } => "slack",
            Message::Email(_) => "email",
            Message::Webhook(_) => "webhook",
            Message::Index { .. } => "index",
            Message::Log { .. } => "logging",
        }
    }

    /// A one-line summary a person would recognise the message by (for
    /// digests and resolved notices), when it has one.
    pub fn subject(&self) -> Option<String> {
        let first = |t: &str| {
            t.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        };
        match self {
            Message::Notification { notification, .. } | Message::Inline { notification, .. } => {
                Some(notification.rendered.subject.clone())
            }
            Message::Email(e) => Some(e.subject.clone()),
            Message::Slack { text, .. } | Message::Log { text, .. } => first(text),
            Message::Webhook(_) | Message::Index { .. } => None,
        }
    }

    /// The message's body text, for `esalert test` to show.
    pub fn text(&self) -> Option<String> {
        match self {
            Message::Notification { notification, .. } | Message::Inline { notification, .. } => {
                Some(notification.rendered.text.clone())
            }
            Message::Email(e) => Some(e.text.clone()),
            Message::Slack { text, .. } | Message::Log { text, .. } => Some(text.clone()),
            Message::Webhook(_) | Message::Index { .. } => None,
        }
    }
}

/// A failed delivery. Opaque: ask [`is_transient`](Self::is_transient).
#[derive(Debug, Clone)]
pub struct SinkError {
    sink: String,
    transient: bool,
    message: String,
    retry_after: Option<Duration>,
}

impl SinkError {
    /// A failure that may pass by itself (timeouts, 5xx, 429).
    pub fn transient(sink: &str, message: impl Into<String>) -> Self {
        SinkError {
            sink: sink.to_owned(),
            transient: true,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that needs a person (bad address, 4xx, not configured).
    pub fn permanent(sink: &str, message: impl Into<String>) -> Self {
        SinkError {
            sink: sink.to_owned(),
            transient: false,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, with how long the peer asked us to wait.
    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    /// Whether retrying later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// How long the peer asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The sink that failed.
    pub fn sink(&self) -> &str {
        &self.sink
    }
}

impl From<NotifyError> for SinkError {
    fn from(e: NotifyError) -> Self {
        // NotifyError's Display already names the medium.
        let text = e.to_string();
        let prefix = format!("{}: ", e.medium().as_str());
        SinkError {
            sink: e.medium().as_str().to_owned(),
            transient: e.is_transient(),
            message: text.strip_prefix(&prefix).unwrap_or(&text).to_owned(),
            retry_after: e.retry_after(),
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.sink, self.message)
    }
}

impl std::error::Error for SinkError {}

/// An output.
pub trait Sink: Send + Sync {
    /// The name messages use to reach it (`slack`, `email`, a destination
    /// named in credentials.json, …).
    fn name(&self) -> &str;
    /// Delivers one message.
    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>>;
    /// Checks, without notifying anyone, that the destination accepts
    /// esalert's credentials (`esalert check --online`); `Ok` where the
    /// provider has no way to ask.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A file attached to an email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailAttachment {
    /// File name.
    pub filename: String,
    /// MIME type.
    pub content_type: String,
    /// Content.
    pub data: String,
}

/// An email as rendered for one delivery (Watcher's email action).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailMessage {
    /// The rule, for `X-Esalert-Alert`.
    pub alert: String,
    /// Recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cc: Vec<String>,
    /// Blind copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<String>,
    /// Reply-To.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<String>,
    /// Subject, one line.
    pub subject: String,
    /// Plain text body.
    pub text: String,
    /// HTML body, with response values escaped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// `X-Priority` 1–5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Attachments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<EmailAttachment>,
}

/// An HTTP request as rendered for one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Method, upper case.
    pub method: String,
    /// The URL.
    pub url: String,
    /// Query parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<(String, String)>,
    /// Headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// Body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Basic auth user and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<(String, String)>,
    /// Overall time for the request, in milliseconds.
    pub timeout_ms: u64,
}
