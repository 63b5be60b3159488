//! Slack: incoming webhooks or `chat.postMessage` with a bot token. Messages
//! are slack-morphism's Block Kit models, posted with esalert's own outbound
//! client ([`crate::net`]): an overall timeout, no redirects, and the
//! headers at hand to honour `Retry-After` in either form.
//!
//! Layout of a post: a header with the subject, sections with the message in
//! mrkdwn, a context line (alert, hits, time), and the plain `text` fallback.
//! Long messages are split into several posts within Slack's limits, never
//! cutting a code block in half, and sent in order.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use slack_morphism::prelude::*;
use tokio::time::Instant;

use super::{Notification, Notifier, NotifyError, SetupError, Severity};
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
/// One send waits out a pause (429) only when it ends within this long;
/// a longer pause fails the send at once as transient, with the time left as
/// its retry-after, and the outbox retries it at a later run.
const IN_SEND_WAIT_MAX: Duration = Duration::from_secs(10);
/// The first pause after a 429 that says neither `Retry-After` nor anything
/// else; each further one doubles it, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(3600);
/// A `Retry-After` is honoured up to a day; beyond that the peer is broken.
const PAUSE_MAX: Duration = Duration::from_secs(24 * 3600);
/// Slack's answers are a few bytes; never read more than this of one.
const ANSWER_MAX: u64 = 64 * 1024;
/// Posts in flight at once per Slack client.
const LANES: usize = 4;

enum Mode {
    Webhook(url::Url),
    Bot {
        token: SecretString,
        url: url::Url,
        channel: Option<String>,
    },
}

/// A destination's pause after a 429. Shared by every post to that
/// destination, across alerts and across credential reloads.
#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    /// 429s without `Retry-After` in a row: the exponent of the backoff.
    backoffs: u32,
}

/// Pauses by destination (webhook URL, or API URL and token).
static PAUSES: LazyLock<Mutex<HashMap<String, Arc<Mutex<Pause>>>>> =
    LazyLock::new(Default::default);

fn pause_for(destination: String) -> Arc<Mutex<Pause>> {
    PAUSES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(destination)
        .or_default()
        .clone()
}

impl Pause {
    /// The time left, if paused.
    fn remaining(&self, now: Instant) -> Option<Duration> {
        self.until
            .and_then(|u| u.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// Records a 429: the peer's `Retry-After`, or the next backoff step.
    /// Returns the pause.
    fn rate_limited(&mut self, now: Instant, retry_after: Option<Duration>) -> Duration {
        let wait = match retry_after {
            // `Retry-After: 0` must not turn into a tight loop of posts.
            Some(d) => d.clamp(Duration::from_secs(1), PAUSE_MAX),
            None => {
                let factor = 2u32.saturating_pow(self.backoffs.min(16));
                self.backoffs = self.backoffs.saturating_add(1);
                BACKOFF_FIRST.saturating_mul(factor).min(BACKOFF_MAX)
            }
        };
        if let Some(until) = now.checked_add(wait) {
            self.until = Some(self.until.map_or(until, |u| u.max(until)));
        }
        wait
    }
}

/// What one post came to, before it becomes a [`NotifyError`].
enum Answer {
    Accepted,
    RateLimited(Option<Duration>),
    Failed(NotifyError),
}

/// Delivers to Slack.
pub struct SlackNotifier {
    http: reqwest::Client,
    mode: Mode,
    timeout: Duration,
    /// After a 429, every post to the destination waits (or fails fast)
    /// until the pause has passed, not just the one that got it.
    pause: Arc<Mutex<Pause>>,
    /// Posts in flight at once: a burst of matches trickles out instead of
    /// hammering Slack into more 429s.
    lanes: tokio::sync::Semaphore,
    /// The colour bar when the alert sets none.
    severity: Option<Severity>,
}

impl SlackNotifier {
    /// Builds the client. Warns when a webhook is plain `http://`.
    pub fn new(cfg: &SlackConfig) -> Result<SlackNotifier, SetupError> {
        let timeout = cfg.timeout.value;
        let http = crate::net::client(timeout)
            .map_err(|e| SetupError::Slack(format!("cannot build the HTTP client: {e}")))?;
        // http:// is allowed too: Slack-compatible servers (Mattermost,
        // Rocket.Chat) often sit on an internal plain-HTTP address.
        let (mode, destination) = match (&cfg.token, &cfg.webhook_url) {
            (Some(token), _) => {
                let api = cfg
                    .api_url
                    .as_deref()
                    .unwrap_or("https://slack.com/api")
                    .trim_end_matches('/');
                let url = url::Url::parse(&format!("{api}/chat.postMessage"))
                    .map_err(|e| SetupError::Slack(format!("api_url is not a URL: {e}")))?;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                token.expose_secret().hash(&mut h);
                let destination = format!("{url}#{:x}", h.finish());
                let mode = Mode::Bot {
                    token: token.clone(),
                    url,
                    channel: cfg.channel.clone(),
                };
                (mode, destination)
            }
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
                let destination = url.to_string();
                (Mode::Webhook(url), destination)
            }
            (None, None) => {
                return Err(SetupError::Slack(
                    "set either webhook_url or token (with channel)".into(),
                ));
            }
        };
        Ok(SlackNotifier {
            http,
            mode,
            timeout,
            pause: pause_for(destination),
            lanes: tokio::sync::Semaphore::new(LANES),
            severity: cfg.severity,
        })
    }

    /// Checks the bot token with `auth.test` (nothing is posted); `Ok` for
    /// a webhook, which has no such call.
    pub async fn healthcheck(&self) -> Result<(), NotifyError> {
        let Mode::Bot { token, url, .. } = &self.mode else {
            return Ok(());
        };
        let url = url.join("auth.test").map_err(|e| {
            NotifyError::permanent(Medium::Slack, format!("api_url is not a URL: {e}"))
        })?;
        let req = self
            .http
            .post(url)
            .bearer_auth(token.expose_secret())
            .send();
        let resp = match tokio::time::timeout(self.timeout, req).await {
            Err(_) => return Err(self.no_answer()),
            Ok(Err(e)) => return Err(self.transport_error(e)),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let body = match crate::net::read_capped(resp, ANSWER_MAX).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(crate::net::ReadError::Transport(e)) => return Err(self.transport_error(e)),
            Err(crate::net::ReadError::TooLarge(_)) => String::new(),
        };
        let snippet: String = body.trim().chars().take(200).collect();
        if !status.is_success() {
            return Err(NotifyError::permanent(
                Medium::Slack,
                format!("auth.test: HTTP {} {snippet}", status.as_u16()),
            ));
        }
        match web_api_answer(&body, &snippet) {
            Answer::Accepted => Ok(()),
            Answer::RateLimited(_) => Err(NotifyError::transient(
                Medium::Slack,
                "auth.test: rate limited",
            )),
            Answer::Failed(e) => Err(e),
        }
    }

    fn no_answer(&self) -> NotifyError {
        NotifyError::transient(
            Medium::Slack,
            format!(
                "no answer from Slack within {} (slack.timeout in credentials.json)",
                humantime::format_duration(self.timeout)
            ),
        )
    }

    /// Posts one message as it is (Watcher's slack action), to `channel` in
    /// bot-token mode or to the webhook's own channel.
    pub async fn post_raw(
        &self,
        content: SlackMessageContent,
        channel: Option<&str>,
    ) -> Result<(), NotifyError> {
        self.post(content, channel, &serde_json::Map::new()).await
    }

    /// Posts `content`, with `look`'s fields (`username`, `icon_emoji`,
    /// `icon_url`) added to the request.
    async fn post(
        &self,
        content: SlackMessageContent,
        channel: Option<&str>,
        look: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), NotifyError> {
        let _lane = self.lanes.acquire().await;
        let started = Instant::now();
        loop {
            let now = Instant::now();
            let left = self
                .pause
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remaining(now);
            if let Some(left) = left {
                if started.elapsed().saturating_add(left) > IN_SEND_WAIT_MAX {
                    return Err(NotifyError::transient(
                        Medium::Slack,
                        format!(
                            "rate limited (HTTP 429): Slack asked for a pause of another {}s; not posting until it ends",
                            left.as_secs().max(1)
                        ),
                    )
                    .with_retry_after(Some(left)));
                }
                tokio::time::sleep(left).await;
                continue;
            }
            match self.post_once(&content, channel, look).await {
                Answer::Accepted => {
                    self.pause
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .backoffs = 0;
                    return Ok(());
                }
                Answer::Failed(e) => return Err(e),
                Answer::RateLimited(retry_after) => {
                    let wait = self
                        .pause
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .rate_limited(Instant::now(), retry_after);
                    tracing::warn!(
                        event = "slack_rate_limited",
                        retry_after_s = wait.as_secs(),
                        from_header = retry_after.is_some()
                    );
                }
            }
        }
    }

    /// One HTTP request, classified.
    async fn post_once(
        &self,
        content: &SlackMessageContent,
        channel: Option<&str>,
        look: &serde_json::Map<String, serde_json::Value>,
    ) -> Answer {
        let (req, payload) = match &self.mode {
            Mode::Webhook(url) => (
                self.http.post(url.clone()),
                serde_json::to_value(SlackApiPostWebhookMessageRequest::new(content.clone())),
            ),
            Mode::Bot {
                token,
                url,
                channel: default,
            } => {
                let Some(ch) = channel.or(default.as_deref()) else {
                    return Answer::Failed(NotifyError::permanent(
                        Medium::Slack,
                        "no channel: set slack.channel in credentials.json or in the alert",
                    ));
                };
                (
                    self.http
                        .post(url.clone())
                        .bearer_auth(token.expose_secret()),
                    serde_json::to_value(SlackApiChatPostMessageRequest::new(
                        SlackChannelId::new(ch.to_owned()),
                        content.clone(),
                    )),
                )
            }
        };
        let payload = match payload.and_then(|mut p| {
            if let Some(o) = p.as_object_mut() {
                o.extend(look.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            serde_json::to_vec(&p)
        }) {
            Ok(p) => p,
            Err(e) => {
                return Answer::Failed(NotifyError::permanent(
                    Medium::Slack,
                    format!("cannot encode the message: {e}"),
                ));
            }
        };
        let req = req
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )
            .body(payload);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Answer::Failed(self.transport_error(e)),
        };
        let status = resp.status();
        if let Some(location) = crate::net::redirect_location(&resp) {
            return Answer::Failed(NotifyError::permanent(
                Medium::Slack,
                format!(
                    "HTTP {} redirects to {location}; esalert does not follow redirects: set webhook_url (or api_url) to the address that answers",
                    status.as_u16()
                ),
            ));
        }
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Answer::RateLimited(retry_after(resp.headers(), chrono::Utc::now()));
        }
        let body = match crate::net::read_capped(resp, ANSWER_MAX).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(crate::net::ReadError::Transport(e)) if !status.is_success() => {
                return Answer::Failed(self.transport_error(e));
            }
            Err(_) => String::new(),
        };
        let snippet: String = body.trim().chars().take(200).collect();
        if !status.is_success() {
            let msg = format!("HTTP {} {snippet}", status.as_u16());
            return Answer::Failed(
                if status.is_server_error() || status == reqwest::StatusCode::REQUEST_TIMEOUT {
                    NotifyError::transient(Medium::Slack, msg)
                } else {
                    NotifyError::permanent(Medium::Slack, msg)
                },
            );
        }
        match &self.mode {
            // A webhook answers "ok"; Slack-compatible servers may say less.
            Mode::Webhook(_) => Answer::Accepted,
            Mode::Bot { .. } => web_api_answer(&body, &snippet),
        }
    }

    /// A failure to connect, send or read, without the URL (a webhook's
    /// path is its secret).
    fn transport_error(&self, e: reqwest::Error) -> NotifyError {
        if e.is_timeout() {
            return self.no_answer();
        }
        let e = e.without_url();
        let mut parts = vec![e.to_string()];
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            let t = s.to_string();
            if !parts.iter().any(|p| p.contains(&t)) {
                parts.push(t);
            }
            src = s.source();
        }
        NotifyError::transient(Medium::Slack, parts.join(": "))
    }
}

/// The pause a 429 asks for: `Retry-After` as seconds or as an HTTP date.
/// `None` when absent or unreadable (then esalert backs off by itself).
fn retry_after(
    headers: &reqwest::header::HeaderMap,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    // A date in the past means "now"; 1s keeps the pause meaningful.
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1)),
    )
}

/// Classifies a Web API answer (`{"ok": true}` or `{"ok": false, "error": …}`).
fn web_api_answer(body: &str, snippet: &str) -> Answer {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return Answer::Failed(NotifyError::transient(
            Medium::Slack,
            format!("Slack's answer is not JSON: {snippet:?}"),
        ));
    };
    if v.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        return Answer::Accepted;
    }
    let code = v
        .get("error")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown_error");
    match code {
        "ratelimited" | "rate_limited" => Answer::RateLimited(None),
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Answer::Failed(NotifyError::transient(
                Medium::Slack,
                format!("slack error {code}"),
            ))
        }
        _ => Answer::Failed(NotifyError::permanent(
            Medium::Slack,
            format!("slack error {code}"),
        )),
    }
}

impl Notifier for SlackNotifier {
    fn medium(&self) -> Medium {
        Medium::Slack
    }

    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let severity = n
                .setting("severity")
                .and_then(Severity::parse)
                .or(self.severity);
            let look: serde_json::Map<String, serde_json::Value> = LOOK
                .iter()
                .filter_map(|k| Some(((*k).to_owned(), n.setting(k)?.into())))
                .collect();
            for post in build_posts(n, severity) {
                self.post(post, n.channel(), &look).await?;
            }
            Ok(())
        })
    }
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

/// The colour bar of a post: the alert's `color` (a hex colour, or
/// Slack's `good`, `warning`, `danger`), else by severity; green once
/// resolved.
fn colour(n: &Notification, severity: Option<Severity>) -> Option<String> {
    if n.resolved {
        return Some("#2eb67d".into());
    }
    if let Some(c) = n.setting("color") {
        return Some(c.to_owned());
    }
    Some(
        match severity? {
            Severity::Critical => "#d00000",
            Severity::Error => "#e01e5a",
            Severity::Warning => "#ecb22e",
            Severity::Info => "#2eb67d",
        }
        .to_owned(),
    )
}

/// Settings an alert may give a post (ElastAlert's `slack_username_override`
/// and the like), as the top-level fields of the request.
const LOOK: &[&str] = &["username", "icon_emoji", "icon_url"];

/// The posts for one notification, in order. With a colour (a severity,
/// or resolved), the header stays on top and the rest goes in one
/// attachment carrying the colour bar.
pub fn build_posts(n: &Notification, severity: Option<Severity>) -> Vec<SlackMessageContent> {
    let colour = colour(n, severity);
    let sections = split_mrkdwn(&n.rendered.slack, SECTION_MAX);
    let groups: Vec<&[String]> = sections.chunks(SECTIONS_PER_POST).collect();
    let total = groups.len();
    let context = format!(
        "{}alert *{}* · hits {} · {}",
        if n.resolved { "✅ resolved · " } else { "" },
        n.alert,
        n.hits,
        fmt_time(&n.time)
    );
    groups
        .into_iter()
        .enumerate()
        .map(|(i, group)| {
            // `title` replaces the subject on Slack only (ElastAlert's
            // `slack_title`).
            let subject = n.setting("title").unwrap_or(&n.rendered.subject);
            let title = if total > 1 {
                format!("{subject} ({}/{})", i + 1, total)
            } else {
                subject.to_owned()
            };
            let title = crate::sinks::http::truncate(&title, HEADER_MAX);
            let header: SlackBlock = match n.setting("title_link") {
                // A header can't link: a bold linked line instead.
                Some(link) => SlackSectionBlock::new()
                    .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                        format!(
                            "*<{}|{}>*",
                            link.replace(['<', '>', '|'], ""),
                            crate::render::slack_escape(&title)
                        ),
                    )))
                    .into(),
                None => {
                    SlackHeaderBlock::new(SlackBlockPlainText::new(title.clone()).into()).into()
                }
            };
            let mut blocks: Vec<SlackBlock> = vec![header];
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
            let fallback = crate::sinks::http::truncate(
                &format!("{}: {}", crate::render::slack_escape(&title), first),
                1000,
            );
            let content = SlackMessageContent::new().with_text(fallback);
            match &colour {
                None => content.with_blocks(blocks),
                Some(c) => {
                    let body = blocks.split_off(1);
                    content.with_blocks(blocks).with_attachments(vec![
                        SlackMessageAttachment::new()
                            .with_color(c.clone())
                            .with_blocks(body),
                    ])
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = chrono::Utc::now();
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", "3600".parse().unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3600)));
        let at = (now + chrono::Duration::seconds(90)).to_rfc2822();
        h.insert("retry-after", at.parse().unwrap());
        let d = retry_after(&h, now).unwrap();
        assert!((89..=90).contains(&d.as_secs()), "{d:?}");
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn bare_429s_back_off_and_zero_is_not_a_tight_loop() {
        let now = Instant::now();
        let mut p = Pause::default();
        assert_eq!(p.rate_limited(now, None), Duration::from_secs(30));
        assert_eq!(p.rate_limited(now, None), Duration::from_secs(60));
        for _ in 0..40 {
            p.rate_limited(now, None);
        }
        assert_eq!(p.rate_limited(now, None), BACKOFF_MAX);
        assert_eq!(
            p.rate_limited(now, Some(Duration::ZERO)),
            Duration::from_secs(1)
        );
        assert_eq!(p.remaining(now), Some(BACKOFF_MAX));
    }
}
