//! `{"type": "discord", "webhook_url": …}`: a Discord webhook post whose
//! `content` is the subject in bold and the message, at most 2,000
//! characters a post (split otherwise, marked `(1/2)`). Every post says
//! `allowed_mentions: {"parse": []}`: an `@everyone` or a `<@id>` in a
//! response is shown, never pings anyone.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::chat::{self, Parts};
use super::destinations::{DestinationType, SettingError, no_lint, settings};
use super::{Message, Sink, SinkError, http};
use crate::alert::HumanDuration;
use crate::notify::Notification;

/// The longest `content` of one post.
pub(super) const MAX_CONTENT: usize = 2000;

/// The settings of a Discord destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscordConfig {
    /// The webhook's URL (`https://discord.com/api/webhooks/<id>/<token>`;
    /// it carries the token: a secret).
    webhook_url: SecretString,
    /// The name posts appear under, instead of the webhook's.
    #[serde(default)]
    username: Option<String>,
    /// The avatar posts appear with, instead of the webhook's.
    #[serde(default)]
    avatar_url: Option<String>,
    /// Overall timeout of one request.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

struct DiscordSink {
    name: String,
    client: reqwest::Client,
    url: SecretString,
    username: Option<String>,
    avatar_url: Option<String>,
    timeout: Duration,
    parts: Parts,
}

/// `{"type": "discord", "webhook_url": "${DISCORD_WEBHOOK}"}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "discord",
    overridable: &["username", "avatar_url"],
    build: |name, v, _| {
        let c: DiscordConfig = settings(v)?;
        super::teams::check_url(c.webhook_url.expose_secret())?;
        if c.username.as_ref().is_some_and(|u| u.chars().count() > 80) {
            return Err(SettingError::at(
                "username",
                "`username` is longer than Discord's 80 characters",
            ));
        }
        Ok(Arc::new(DiscordSink {
            name: name.to_owned(),
            client: crate::net::client(c.timeout.value)
                .map_err(|e| SettingError::at("", format!("no HTTP client: {e}")))?,
            url: c.webhook_url,
            username: c.username,
            avatar_url: c.avatar_url,
            timeout: c.timeout.value,
            parts: Parts::default(),
        }))
    },
    lint: no_lint,
    notices: true,
};

/// `s` with Discord's markdown characters escaped, so a subject shows as
/// written inside `**…**`.
fn escape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The `content` of each post for one notification.
pub(super) fn contents(n: &Notification) -> Vec<String> {
    let title = escape_markdown(&chat::title(n));
    let head = |label: &str| format!("**{title}{label}**\n");
    let widest = head(&chat::widest_label());
    let size = |piece: &str| chat::utf16_len(&widest) + chat::utf16_len(piece);
    let pieces = chat::fit(&n.rendered.text, MAX_CONTENT, size);
    let total = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}{p}", head(&chat::part_label(i, total))))
        .collect()
}

impl DiscordSink {
    /// Discord's verdict: 2xx is success; a 429 waits the body's
    /// `retry_after` (seconds, fractional); others as every provider.
    fn verdict(&self, a: http::Answer) -> Result<(), SinkError> {
        if a.status == 429 {
            let v = a.json();
            let wait = v["retry_after"]
                .as_f64()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(|s| Duration::from_secs_f64(s.min(3600.0)));
            let global = if v["global"] == json!(true) {
                " (global)"
            } else {
                ""
            };
            let e = http::check(&self.name, a).err();
            let header = e.as_ref().and_then(SinkError::retry_after);
            return Err(SinkError::transient(
                &self.name,
                format!("HTTP 429: rate limited{global}"),
            )
            .with_retry_after(wait.or(header)));
        }
        http::check(&self.name, a).map(drop)
    }
}

impl Sink for DiscordSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            let username = n.setting("username").or(self.username.as_deref());
            let avatar = n.setting("avatar_url").or(self.avatar_url.as_deref());
            let bodies: Vec<Value> = contents(n)
                .into_iter()
                .map(|content| {
                    let mut b = json!({"content": content, "allowed_mentions": {"parse": []}});
                    if let Some(u) = username {
                        b["username"] = json!(u);
                    }
                    if let Some(a) = avatar {
                        b["avatar_url"] = json!(a);
                    }
                    b
                })
                .collect();
            self.parts
                .post_all(&bodies, |b| {
                    let req = http::json(self.client.post(self.url.expose_secret()), b);
                    async move { self.verdict(http::send(&self.name, req, self.timeout).await?) }
                })
                .await
        })
    }

    /// `GET` the webhook: Discord answers with the webhook object while
    /// the URL (and its token) is valid, and posts nothing.
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let req = self.client.get(self.url.expose_secret());
            self.verdict(http::send(&self.name, req, self.timeout).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_fit_and_the_subject_is_shown_as_written() {
        let mut n = chat::example();
        n.rendered.subject = "**@everyone** _x_".into();
        n.rendered.text = "@everyone 😀\n".repeat(400);
        let c = contents(&n);
        assert!(c.len() > 1);
        for (i, s) in c.iter().enumerate() {
            assert!(chat::utf16_len(s) <= MAX_CONTENT);
            assert!(s.starts_with(&format!(
                "**\\*\\*@everyone\\*\\* \\_x\\_ ({}/{})**\n",
                i + 1,
                c.len()
            )));
        }
    }
}
