//! Slack: incoming webhooks or `chat.postMessage` with a bot token, through
//! slack-morphism's client and Block Kit models.
//!
//! Layout of a post: a header with the subject, sections with the message in
//! mrkdwn, a context line (alert, hits, time), and the plain `text` fallback.
//! Long messages are split into several posts within Slack's limits, never
//! cutting a code block in half, and sent in order.

use std::time::Duration;

use futures::future::BoxFuture;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::ExposeSecret;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use super::{Notification, Notifier, NotifyError, SetupError};
use crate::alert::Medium;
use crate::config::SlackConfig;
use crate::render::fmt_time;

/// Slack's limit on a section block's text.
pub const SECTION_MAX: usize = 3000;
/// Slack's limit on blocks per message.
pub const BLOCKS_MAX: usize = 50;
/// Slack's limit on a message's text.
pub const POST_MAX: usize = 40_000;
/// Sections per post: 12 × 3,000 plus header, context and fallback stays
/// under [`POST_MAX`] and far under [`BLOCKS_MAX`].
const SECTIONS_PER_POST: usize = 12;
const HEADER_MAX: usize = 150;
/// How long one send waits out 429s before failing transiently (and being
/// retried at a later run from the outbox).
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);
/// Posts in flight at once per Slack client.
const LANES: usize = 4;

type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

enum Mode {
    Webhook(url::Url),
    Bot {
        token: SlackApiToken,
        channel: Option<String>,
    },
}

/// Delivers to Slack.
pub struct SlackNotifier {
    client: SlackClient<Connector>,
    mode: Mode,
    /// After a 429, every post waits until Slack's `Retry-After` has
    /// passed, not just the one that got it.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Posts in flight at once: a burst of matches trickles out instead of
    /// hammering Slack into more 429s.
    lanes: tokio::sync::Semaphore,
}

impl SlackNotifier {
    /// Builds the client. Warns when a webhook is plain `http://`.
    pub fn new(cfg: &SlackConfig) -> Result<SlackNotifier, SetupError> {
        // Allow http:// too: Slack-compatible servers (Mattermost, Rocket.Chat)
        // often sit on an internal plain-HTTP address.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let mut connector = SlackClientHyperConnector::with_connector(https);
        if let Some(api) = &cfg.api_url {
            connector = connector.with_slack_api_url(api.trim_end_matches('/'));
        }
        let client = SlackClient::new(connector);
        let mode = match (&cfg.token, &cfg.webhook_url) {
            (Some(token), _) => Mode::Bot {
                token: SlackApiToken::new(SlackApiTokenValue::new(
                    token.expose_secret().to_owned(),
                )),
                channel: cfg.channel.clone(),
            },
            (None, Some(hook)) => {
                let url = url::Url::parse(hook.expose_secret())
                    .map_err(|e| SetupError::Slack(format!("webhook_url is not a URL: {e}")))?;
                if url.scheme() == "http" {
                    tracing::warn!(
                        event = "slack_http_webhook",
                        host = url.host_str().unwrap_or(""),
                        "slack webhook_url is plain http://; messages travel unencrypted"
                    );
                }
                Mode::Webhook(url)
            }
            (None, None) => {
                return Err(SetupError::Slack(
                    "set either webhook_url or token (with channel)".into(),
                ));
            }
        };
        Ok(SlackNotifier {
            client,
            mode,
            paused_until: std::sync::Mutex::new(None),
            lanes: tokio::sync::Semaphore::new(LANES),
        })
    }

    /// Posts one message as it is (Watcher's slack action), to `channel` in
    /// bot-token mode or to the webhook's own channel.
    pub async fn post_raw(
        &self,
        content: SlackMessageContent,
        channel: Option<&str>,
    ) -> Result<(), NotifyError> {
        self.post(content, channel).await
    }

    async fn post(
        &self,
        content: SlackMessageContent,
        channel: Option<&str>,
    ) -> Result<(), NotifyError> {
        let _lane = self.lanes.acquire().await;
        let started = tokio::time::Instant::now();
        loop {
            let pause = *self.paused_until.lock().expect("pause lock");
            if let Some(until) = pause
                && until > tokio::time::Instant::now()
            {
                tokio::time::sleep_until(until).await;
            }
            let result = match &self.mode {
                Mode::Webhook(url) => self
                    .client
                    .post_webhook_message(
                        url,
                        &SlackApiPostWebhookMessageRequest::new(content.clone()),
                    )
                    .await
                    .map(|_| ()),
                Mode::Bot {
                    token,
                    channel: default,
                } => {
                    let Some(ch) = channel.or(default.as_deref()) else {
                        return Err(NotifyError::permanent(
                            Medium::Slack,
                            "no channel: set slack.channel in credentials.json or in the alert",
                        ));
                    };
                    let session = self.client.open_session(token);
                    session
                        .chat_post_message(&SlackApiChatPostMessageRequest::new(
                            SlackChannelId::new(ch.to_owned()),
                            content.clone(),
                        ))
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => return Ok(()),
                // A Slack-compatible server may answer `ok: true` without
                // fields slack-morphism expects. The post was accepted;
                // treating it as a failure would send it twice.
                Err(SlackClientError::ProtocolError(p))
                    if p.json_body.as_deref().is_some_and(accepted) =>
                {
                    return Ok(());
                }
                Err(SlackClientError::RateLimitError(rl)) => {
                    let wait = rl.retry_after.unwrap_or(Duration::from_secs(1));
                    if started.elapsed() + wait > RETRY_AFTER_MAX {
                        return Err(NotifyError::transient(
                            Medium::Slack,
                            format!("rate limited (HTTP 429), retry after {}s", wait.as_secs()),
                        )
                        .with_retry_after(Some(wait)));
                    }
                    tracing::warn!(event = "slack_rate_limited", retry_after_s = wait.as_secs());
                    let until = tokio::time::Instant::now() + wait;
                    let mut p = self.paused_until.lock().expect("pause lock");
                    *p = Some(p.map_or(until, |u| u.max(until)));
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }
}

fn accepted(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .is_ok_and(|v| v.get("ok").and_then(|ok| ok.as_bool()) == Some(true))
}

fn classify(e: SlackClientError) -> NotifyError {
    match e {
        SlackClientError::ApiError(api) => {
            NotifyError::permanent(Medium::Slack, format!("slack error {}", api.code))
        }
        SlackClientError::HttpError(h) => {
            let body = h.http_response_body.unwrap_or_default();
            let body = body.chars().take(200).collect::<String>();
            let msg = format!("HTTP {} {}", h.status_code.as_u16(), body.trim());
            if h.status_code.is_server_error() || h.status_code.as_u16() == 408 {
                NotifyError::transient(Medium::Slack, msg)
            } else {
                NotifyError::permanent(Medium::Slack, msg)
            }
        }
        other => NotifyError::transient(Medium::Slack, other.to_string()),
    }
}

impl Notifier for SlackNotifier {
    fn medium(&self) -> Medium {
        Medium::Slack
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            for post in build_posts(n) {
                self.post(post, n.slack_channel.as_deref()).await?;
            }
            Ok(())
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max - 1).collect();
    t.push('…');
    t
}

/// Splits mrkdwn into chunks of at most `max` characters, preferring line
/// breaks, and closing and reopening a ``` code block at every cut so that
/// each chunk renders on its own.
pub fn split_mrkdwn(text: &str, max: usize) -> Vec<String> {
    const FENCE: &str = "```";
    // Every chunk may need "```\n" in front and "\n```" at the end.
    let budget = max.saturating_sub(2 * (FENCE.len() + 1)).max(1);
    let mut chunks = Vec::new();
    let mut cur = String::new();
    let mut len = 0;
    let mut in_code = false;
    let close = |cur: &mut String, len: &mut usize, in_code: bool, chunks: &mut Vec<String>| {
        let body = cur.trim_end_matches('\n');
        let trivial = body.trim().is_empty() || body.trim() == FENCE;
        if !trivial {
            let mut done = body.to_owned();
            if in_code {
                done.push('\n');
                done.push_str(FENCE);
            }
            chunks.push(done);
        }
        cur.clear();
        if in_code {
            cur.push_str(FENCE);
            cur.push('\n');
        }
        *len = cur.chars().count();
    };
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            // Over-long lines are cut into pieces that fit a chunk on their own.
            let cut = rest
                .char_indices()
                .nth(budget)
                .map_or(rest.len(), |(i, _)| i);
            let (piece, tail) = rest.split_at(cut);
            let n = piece.chars().count();
            let opener = if in_code { FENCE.len() + 1 } else { 0 };
            if len + n > budget + opener && len > opener {
                close(&mut cur, &mut len, in_code, &mut chunks);
            }
            cur.push_str(piece);
            len += n;
            rest = tail;
        }
        if line.matches(FENCE).count() % 2 == 1 {
            in_code = !in_code;
        }
    }
    close(&mut cur, &mut len, false, &mut chunks);
    if chunks.is_empty() {
        chunks.push(String::new());
    }
    chunks
}

/// The posts for one notification, in order.
pub fn build_posts(n: &Notification) -> Vec<SlackMessageContent> {
    let sections = split_mrkdwn(&n.rendered.slack, SECTION_MAX);
    let groups: Vec<&[String]> = sections.chunks(SECTIONS_PER_POST).collect();
    let total = groups.len();
    let context = format!(
        "alert *{}* · hits {} · {}",
        n.alert,
        n.hits,
        fmt_time(&n.time)
    );
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            let title = if total > 1 {
                format!("{} ({}/{})", n.rendered.subject, i + 1, total)
            } else {
                n.rendered.subject.clone()
            };
            let mut blocks: Vec<SlackBlock> = vec![
                SlackHeaderBlock::new(
                    SlackBlockPlainText::new(truncate(&title, HEADER_MAX)).into(),
                )
                .into(),
            ];
            blocks.extend(group.iter().map(|s| {
                SlackSectionBlock::new()
                    .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                        s.clone(),
                    )))
                    .into()
            }));
            blocks.push(
                SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
                    SlackBlockMarkDownText::new(context.clone()),
                )])
                .into(),
            );
            let first = group.first().map(String::as_str).unwrap_or("");
            let fallback = truncate(
                &format!("{}: {}", crate::render::slack_escape(&title), first),
                1000,
            );
            SlackMessageContent::new()
                .with_text(fallback)
                .with_blocks(blocks)
        })
        .collect()
}

/// Never prints the token or the webhook's secret path.
impl std::fmt::Debug for SlackNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.mode {
            Mode::Webhook(u) => write!(
                f,
                "SlackNotifier(webhook to {})",
                u.host_str().unwrap_or("")
            ),
            Mode::Bot { channel, .. } => write!(f, "SlackNotifier(bot, channel {channel:?})"),
        }
    }
}
