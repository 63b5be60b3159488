//! Watcher's `logging` action: a line in alerts.log at the action's level.

use futures::future::BoxFuture;

use super::{Message, Sink, SinkError};

pub(super) struct LogSink;

impl Sink for LogSink {
    fn name(&self) -> &'static str {
        "logging"
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let Message::Log { alert, level, text } = m else {
                return Err(SinkError::permanent("logging", "not a log message"));
            };
            match level.as_str() {
                "error" => {
                    tracing::error!(
                        alert = alert.as_str(),
                        event = "watch_log",
                        text = text.as_str()
                    )
                }
                "warn" | "warning" => {
                    tracing::warn!(
                        alert = alert.as_str(),
                        event = "watch_log",
                        text = text.as_str()
                    )
                }
                _ => tracing::info!(
                    alert = alert.as_str(),
                    event = "watch_log",
                    text = text.as_str()
                ),
            }
            Ok(())
        })
    }
}
