//! Sinks that record what they are asked to send, and succeed: `esalert
//! test --since` runs the real pipeline over past windows, and what it
//! would have sent is exactly what reached these.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use super::{Message, Sink, SinkError, Sinks};
use crate::alert::Medium;

/// The messages captured so far, in the order they were sent.
pub type Captured = Arc<Mutex<Vec<Message>>>;

struct CaptureSink {
    name: &'static str,
    into: Captured,
}

impl Sink for CaptureSink {
    fn name(&self) -> &str {
        self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            self.into
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(m.clone());
            Ok(())
        })
    }
}

impl Sinks {
    /// A sink set that records every message, whatever its sink, and
    /// reports it delivered; nothing leaves the process.
    pub fn capture() -> (Sinks, Captured) {
        let into = Captured::default();
        let mut s = Sinks::default();
        let names = [Medium::Slack, Medium::Email]
            .map(Medium::as_str)
            .into_iter()
            .chain(["webhook", "index", "logging"]);
        for name in names {
            s.register(Arc::new(CaptureSink {
                name,
                into: into.clone(),
            }));
        }
        // Named destinations too, whatever their names.
        s.fallback = Some(Arc::new(CaptureSink {
            name: "destination",
            into: into.clone(),
        }));
        (s, into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_kind_of_message_is_captured_and_succeeds() {
        let (sinks, got) = Sinks::capture();
        let msgs = [
            Message::Log {
                alert: "a".into(),
                level: "info".into(),
                text: "t".into(),
            },
            Message::Slack {
                channel: None,
                text: "s".into(),
                attachments: Vec::new(),
            },
            Message::Index {
                index: "i".into(),
                doc_id: None,
                docs: Vec::new(),
                bulk: false,
            },
        ];
        for m in &msgs {
            sinks.send(m).await.unwrap();
        }
        assert_eq!(*got.lock().unwrap(), msgs);
    }
}
