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
mod chat;
mod command;
pub mod destinations;
mod discord;
mod email;
pub mod history;
pub mod http;
mod index;
mod jira;
mod logging;
mod message;
mod opsgenie;
mod pagerduty;
mod slack;
mod teams;
mod telegram;
mod thehive;
mod webhook;
mod webhook_dest;

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
    /// For destinations that rules configure themselves ([`Message::Inline`]).
    credentials: Option<Arc<crate::config::Credentials>>,
    /// Those destinations, built once per distinct configuration.
    inline: Arc<std::sync::Mutex<std::collections::HashMap<String, Arc<dyn Sink>>>>,
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
        let mut s = Sinks {
            credentials: notifiers.credentials().cloned(),
            ..Sinks::default()
        };
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

    /// The sink of a destination a rule configures itself, built on first use.
    fn inline(&self, destination: &serde_json::Value) -> Result<Arc<dyn Sink>, SinkError> {
        let id = destination.to_string();
        let mut cache = self
            .inline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = cache.get(&id) {
            return Ok(s.clone());
        }
        let t = destinations::type_of(destination)
            .map_err(|e| SinkError::permanent("inline", e.message))?;
        let creds = self.credentials.as_ref().ok_or_else(|| {
            SinkError::permanent(t.name, "no credentials.json to build this destination with")
        })?;
        let cx = destinations::Context { credentials: creds };
        let sink = (t.build)(t.name, destination, &cx).map_err(|e| {
            SinkError::permanent(
                t.name,
                format!("{}: {}", e.at.join("."), e.message)
                    .trim_start_matches(": ")
                    .to_owned(),
            )
        })?;
        // Rules are few and their destinations fewer; a bound all the same.
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(id, sink.clone());
        Ok(sink)
    }

    /// Sends a message through its sink.
    pub async fn send(&self, m: &Message) -> Result<(), SinkError> {
        if let Message::Inline {
            destination,
            notification,
        } = m
        {
            if let Some(f) = &self.fallback {
                return f.send(m).await;
            }
            let sink = self.inline(destination)?;
            let m = Message::Notification {
                sink: sink.name().to_owned(),
                notification: notification.clone(),
            };
            return sink.send(&m).await;
        }
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
