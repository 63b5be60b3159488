//! Slack: native notifications as Block Kit posts, Watcher messages as written.

use std::sync::Arc;

use futures::future::BoxFuture;
use slack_morphism::prelude::*;

use super::destinations::{DestinationType, SettingError, settings};
use super::{Message, Sink, SinkError};
use crate::alert::Medium;
use crate::config::SlackConfig;
use crate::notify::slack::SlackNotifier;
use crate::notify::{Notifier, Notifiers};

pub(super) struct SlackSink {
    /// The destination's name (`slack` for the top-level section).
    name: String,
    /// Lays out and posts native notifications (a stub in tests).
    notifier: Arc<dyn Notifier>,
    /// Posts Watcher messages; absent when a stub stands in.
    client: Option<Arc<SlackNotifier>>,
}

impl SlackSink {
    pub(super) fn build(n: &Notifiers) -> Option<SlackSink> {
        let notifier = n.get(Medium::Slack).ok()?.clone();
        Some(SlackSink {
            name: "slack".into(),
            notifier,
            client: n.slack_client().cloned(),
        })
    }
}

/// `{"type": "slack", …}`: the settings of the top-level `slack` section
/// (a webhook, or a bot token and channel), so that alerts can go to
/// different webhooks.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "slack",
    overridable: &[
        "channel",
        "severity",
        "color",
        "title",
        "title_link",
        "username",
        "icon_emoji",
        "icon_url",
    ],
    build: |name, v, _| {
        let cfg: SlackConfig = settings(v)?;
        let client =
            Arc::new(SlackNotifier::new(&cfg).map_err(|e| SettingError::at("", e.to_string()))?);
        Ok(Arc::new(SlackSink {
            name: name.to_owned(),
            notifier: client.clone(),
            client: Some(client),
        }))
    },
    lint: |v| match settings::<SlackConfig>(v) {
        Ok(cfg) if cfg.uses_webhook() && cfg.channel.is_some() => vec![SettingError::at(
            "channel",
            "`channel` is ignored: an incoming webhook always posts to the channel it was created for; remove it, or use a bot `token`",
        )],
        _ => Vec::new(),
    },
    notices: true,
};

impl Sink for SlackSink {
    fn name(&self) -> &str {
        &self.name
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

    /// Bot token: `auth.test`. A webhook can't be asked anything without
    /// posting, so it passes unprobed (`check --online` says so).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.client {
                Some(c) => Ok(c.healthcheck().await?),
                None => Ok(()),
            }
        })
    }
}
