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
mod email;
mod index;
mod logging;
mod message;
mod slack;
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
        if let Some(x) = webhook::WebhookSink::new() {
            s.register(Arc::new(x));
        }
        s.register(Arc::new(index::IndexSink::new(es.clone())));
        s.register(Arc::new(logging::LogSink));
        s
    }

    /// Adds or replaces a sink (tests use this for stubs).
    pub fn register(&mut self, sink: Arc<dyn Sink>) {
        self.by_name.insert(sink.name(), sink);
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
