//! Outputs ("sinks"): where a rendered delivery goes.
//!
//! Every front end renders its matches into [`Message`]s; the pipeline puts
//! them in the outbox and hands each one to the sink its
//! [`Message::sink`] names, retrying what [`SinkError::is_transient`] says
//! may pass. A sink is one file here plus one line in [`Sinks::new`].
//!
//! The transports themselves (HTTP and SMTP clients, Slack's layout and
//! rate limits) live in [`crate::notify`]; a sink adapts a message to one.

mod email;
mod index;
mod logging;
mod slack;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::notify::{Notification, Notifiers, NotifyError};
use crate::search::EsClient;

pub use email::{EmailAttachment, EmailMessage};
pub use webhook::{WebhookRequest, outbound_client};

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
            Message::Slack { .. } => "slack",
            Message::Email(_) => "email",
            Message::Webhook(_) => "webhook",
            Message::Index { .. } => "index",
            Message::Log { .. } => "logging",
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
    /// The name messages use to reach it (`slack`, `email`, …).
    fn name(&self) -> &'static str;
    /// Delivers one message.
    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// The sinks, by name.
#[derive(Clone, Default)]
pub struct Sinks {
    by_name: BTreeMap<&'static str, Arc<dyn Sink>>,
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Sinks {
    /// Every sink that can work with what is configured. Adding a sink is
    /// one line here.
    pub fn new(notifiers: &Notifiers, es: &EsClient) -> Sinks {
        let mut s = Sinks::default();
        if let Some(x) = slack::SlackSink::build(notifiers) {
            s.register(Arc::new(x));
        }
        if let Some(x) = email::EmailSink::build(notifiers) {
            s.register(Arc::new(x));
        }
        s.register(Arc::new(webhook::WebhookSink::new()));
        s.register(Arc::new(index::IndexSink::new(es.clone())));
        s.register(Arc::new(logging::LogSink));
        s
    }

    /// Adds or replaces a sink (tests use this for stubs).
    pub fn register(&mut self, sink: Arc<dyn Sink>) {
        self.by_name.insert(sink.name(), sink);
    }

    /// Whether a sink of that name is configured.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Sends a message through its sink.
    pub async fn send(&self, m: &Message) -> Result<(), SinkError> {
        let name = m.sink();
        match self.by_name.get(name) {
            Some(s) => s.send(m).await,
            None => Err(SinkError::permanent(
                name,
                format!("{name} is not configured: add a \"{name}\" section to credentials.json"),
            )),
        }
    }
}
