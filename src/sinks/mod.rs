//! Outputs ("sinks"): where a rendered delivery goes.
//!
//! Every front end renders its matches into [`Message`]s; the pipeline puts
//! them in the outbox and hands each one to the sink its
//! [`Message::sink`] names, retrying what [`SinkError::is_transient`] says
//! may pass. A sink is one file here plus one line in [`Sinks::new`].
//!
//! The transports themselves (HTTP and SMTP clients, Slack's layout and
//! rate limits) live in [`crate::notify`]; a sink adapts a message to one.

mod capture;
pub mod destinations;
mod email;
pub mod http;
mod index;
mod jira;
mod logging;
mod message;
mod slack;
mod thehive;
mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::notify::Notifiers;
use crate::search::EsClient;

pub use capture::Captured;
pub use message::{EmailAttachment, EmailMessage, Message, Sink, SinkError, WebhookRequest};
pub use webhook::outbound_client;

/// The sinks, by name.
#[derive(Clone, Default)]
pub struct Sinks {
    by_name: BTreeMap<String, Arc<dyn Sink>>,
    /// Takes messages for names nothing else has (`test --since` records).
    fallback: Option<Arc<dyn Sink>>,
    /// Where notices about esalert itself go.
    notices: Vec<String>,
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Sinks {
    /// Every sink that can work with what is configured: the top-level
    /// `slack` and `email` sections, Watcher's outputs, and the named
    /// destinations of credentials.json. Adding a kind of destination is a
    /// file and a line in [`destinations::TYPES`].
    pub fn new(notifiers: &Notifiers, es: &EsClient) -> Sinks {
        let mut s = Sinks::default();
        if let Some(x) = slack::SlackSink::build(notifiers) {
            s.register(Arc::new(x));
            s.notices.push("slack".into());
        }
        if let Some(x) = email::EmailSink::build(notifiers) {
            s.register(Arc::new(x));
            s.notices.push("email".into());
        }
        if let Some(x) = webhook::WebhookSink::new() {
            s.register(Arc::new(x));
        }
        s.register(Arc::new(index::IndexSink::new(es.clone())));
        s.register(Arc::new(logging::LogSink));
        for (name, t, sink) in notifiers.destinations() {
            s.by_name.insert(name.clone(), sink.clone());
            if t.notices {
                s.notices.push(name.clone());
            }
        }
        if let Some(n) = notifiers.notice_targets() {
            s.notices = n.to_vec();
        }
        s
    }

    /// Adds or replaces a sink (tests use this for stubs).
    pub fn register(&mut self, sink: Arc<dyn Sink>) {
        self.by_name.insert(sink.name().to_owned(), sink);
    }

    /// The same sinks, with notices going to `names`.
    pub fn with_notice_targets(mut self, names: Vec<String>) -> Sinks {
        self.notices = names;
        self
    }

    /// Where esalert's notices about itself go.
    pub fn notice_targets(&self) -> &[String] {
        &self.notices
    }

    /// Every sink, by name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<dyn Sink>)> {
        self.by_name.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether a destination of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Sends a message through its sink.
    pub async fn send(&self, m: &Message) -> Result<(), SinkError> {
        let name = m.sink();
        match self.by_name.get(name).or(self.fallback.as_ref()) {
            Some(s) => s.send(m).await,
            None => Err(SinkError::permanent(
                name,
                format!(
                    "{name} is not configured: add a \"{name}\" section, or a destination named {name:?} under \"outputs\", to credentials.json"
                ),
            )),
        }
    }
}
