//! Slack: native notifications as Block Kit posts, Watcher messages as written.

use std::sync::Arc;

use futures::future::BoxFuture;
use slack_morphism::prelude::*;

use super::{Message, Sink, SinkError};
use crate::alert::Medium;
use crate::notify::slack::SlackNotifier;
use crate::notify::{Notifier, Notifiers};

pub(super) struct SlackSink {
    /// Lays out and posts native notifications (a stub in tests).
    notifier: Arc<dyn Notifier>,
    /// Posts Watcher messages; absent when a stub stands in.
    client: Option<Arc<SlackNotifier>>,
}

impl SlackSink {
    pub(super) fn build(n: &Notifiers) -> Option<SlackSink> {
        let notifier = n.get(Medium::Slack).ok()?.clone();
        Some(SlackSink {
            notifier,
            client: n.slack_client().cloned(),
        })
    }
}

impl Sink for SlackSink {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            match m {
                Message::Notification { notification, .. } => {
                    Ok(self.notifier.send(notification).await?)
                }
                Message::Slack {
                    channel,
                    text,
                    attachments,
                } => {
                    let client = self.client.as_ref().ok_or_else(|| {
                        SinkError::permanent("slack", "no Slack client for this message")
                    })?;
                    let atts: Vec<SlackMessageAttachment> = attachments
                        .iter()
                        .filter_map(|a| serde_json::from_value(a.clone()).ok())
                        .collect();
                    let mut c = SlackMessageContent::new().with_text(text.clone());
                    if !atts.is_empty() {
                        c = c.with_attachments(atts);
                    }
                    Ok(client.post_raw(c, channel.as_deref()).await?)
                }
                other => Err(SinkError::permanent(
                    "slack",
                    format!("cannot send a {} message", other.sink()),
                )),
            }
        })
    }
}
