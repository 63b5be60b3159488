//! `{"type": "telegram", "bot_token": …, "chat_id": …}`: the Bot API's
//! `sendMessage` with `parse_mode: HTML`: the subject in bold, the message
//! escaped, in posts of at most 4,096 characters (as sent, after escaping;
//! pieces are cut before escaping, so never inside an entity).
//!
//! The bot token is part of every URL (`/bot<token>/…`): URLs are never
//! logged, and errors carry Telegram's `description`, not the request.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::chat::{self, Parts};
use super::destinations::{DestinationType, SettingError, no_lint, settings};
use super::{Message, Sink, SinkError, http};
use crate::alert::HumanDuration;
use crate::notify::Notification;
use crate::render::html_escape;

/// The longest text of one message.
pub(super) const MAX_TEXT: usize = 4096;

/// A chat: its numeric id or `@channelusername`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum ChatId {
    /// A numeric id (negative for groups and channels).
    Id(i64),
    /// `@channelusername`, or an id written as a string.
    Name(String),
}

/// The settings of a Telegram destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TelegramConfig {
    /// The bot's token from @BotFather (`${ENV}`).
    bot_token: SecretString,
    /// Where messages go; an alert may name another (`outputs.<name>.chat_id`).
    chat_id: ChatId,
    /// The Bot API's address (a local Bot API server, tests).
    #[serde(default = "default_api")]
    api_url: String,
    /// Overall timeout of one request.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

fn default_api() -> String {
    "https://api.telegram.org".into()
}

struct TelegramSink {
    name: String,
    client: reqwest::Client,
    /// `{api_url}/bot<token>`: a secret.
    base: SecretString,
    chat_id: ChatId,
    timeout: Duration,
    parts: Parts,
}

/// `{"type": "telegram", "bot_token": "${TELEGRAM_TOKEN}", "chat_id": -100123}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "telegram",
    overridable: &["chat_id"],
    build: |name, v, _| {
        let c: TelegramConfig = settings(v)?;
        match url::Url::parse(&c.api_url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => {
                return Err(SettingError::at(
                    "api_url",
                    "`api_url` must be an http or https URL",
                ));
            }
        }
        let token = c.bot_token.expose_secret();
        if token.is_empty() || !token.chars().all(|c| c.is_ascii_graphic() && c != '/') {
            return Err(SettingError::at(
                "bot_token",
                "`bot_token` is not a bot token like 123456:ABC-DEF… (its value is not shown)",
            ));
        }
        Ok(Arc::new(TelegramSink {
            name: name.to_owned(),
            client: crate::net::client(c.timeout.value)
                .map_err(|e| SettingError::at("", format!("no HTTP client: {e}")))?,
            base: SecretString::from(format!("{}/bot{token}", c.api_url.trim_end_matches('/'))),
            chat_id: c.chat_id,
            timeout: c.timeout.value,
            parts: Parts::default(),
        }))
    },
    lint: no_lint,
    notices: true,
};

/// The texts for one notification, in order: `<b>subject</b>` (with
/// `(1/2)` when there are several) and the escaped message.
pub(super) fn texts(n: &Notification) -> Vec<String> {
    let title = html_escape(&chat::title(n));
    let head = |label: &str| format!("<b>{title}{label}</b>\n");
    let widest = head(&chat::widest_label());
    let size = |piece: &str| chat::utf16_len(&widest) + chat::utf16_len(&html_escape(piece));
    let pieces = chat::fit(&n.rendered.text, MAX_TEXT, size);
    let total = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}{}", head(&chat::part_label(i, total)), html_escape(p)))
        .collect()
}

impl TelegramSink {
    /// The chat: the alert's own `chat_id`, or the destination's.
    fn chat(&self, n: &Notification) -> Result<Value, SinkError> {
        match n.settings.get("chat_id") {
            None => Ok(json!(self.chat_id)),
            Some(v @ (Value::String(_) | Value::Number(_))) => Ok(v.clone()),
            Some(_) => Err(SinkError::permanent(
                &self.name,
                "the alert's `chat_id` must be a number or a string like \"@channel\"",
            )),
        }
    }

    /// Telegram's verdict: `ok: true` is success; 429 and 5xx may pass
    /// (after `parameters.retry_after`); anything else needs a person and
    /// is reported with Telegram's `description`.
    fn verdict(&self, a: http::Answer) -> Result<Value, SinkError> {
        let v = a.json();
        if (200..300).contains(&a.status) && v["ok"] == json!(true) {
            return Ok(v);
        }
        let code = v["error_code"].as_u64().unwrap_or(u64::from(a.status));
        let what = match v["description"].as_str() {
            Some(d) => format!("HTTP {}: {}", a.status, http::truncate(d, 300)),
            None => format!("HTTP {}", a.status),
        };
        if code == 429 || a.status == 429 || a.status >= 500 {
            let wait = v["parameters"]["retry_after"]
                .as_u64()
                .map(|s| Duration::from_secs(s.min(3600)));
            let e = SinkError::transient(&self.name, what);
            return Err(if wait.is_some() {
                e.with_retry_after(wait)
            } else {
                // The header, if Telegram (or a proxy) sent one.
                match http::check(&self.name, a) {
                    Err(h) => e.with_retry_after(h.retry_after()),
                    Ok(_) => e,
                }
            });
        }
        Err(SinkError::permanent(&self.name, what))
    }
}

impl Sink for TelegramSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            let chat_id = self.chat(n)?;
            let bodies: Vec<Value> = texts(n)
                .into_iter()
                .map(|t| {
                    json!({"chat_id": chat_id, "text": t, "parse_mode": "HTML",
                        "link_preview_options": {"is_disabled": true}})
                })
                .collect();
            let url = format!("{}/sendMessage", self.base.expose_secret());
            self.parts
                .post_all(&bodies, |b| {
                    let req = http::json(self.client.post(&url), b);
                    async move {
                        let a = http::send(&self.name, req, self.timeout).await?;
                        self.verdict(a).map(drop)
                    }
                })
                .await
        })
    }

    /// `getMe`: the token is valid (it says nothing about the chat).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            let url = format!("{}/getMe", self.base.expose_secret());
            let a = http::send(&self.name, self.client.get(&url), self.timeout).await?;
            self.verdict(a).map(drop)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_escaped_and_cut_outside_entities() {
        let mut n = chat::example();
        n.rendered.subject = "<b>x</b> & y".into();
        n.rendered.text = "a<b>&amp;\n".repeat(2000);
        let t = texts(&n);
        assert!(t.len() > 1);
        for (i, s) in t.iter().enumerate() {
            assert!(chat::utf16_len(s) <= MAX_TEXT, "{}", s.len());
            let head = format!(
                "<b>&lt;b&gt;x&lt;/b&gt; &amp; y ({}/{})</b>\n",
                i + 1,
                t.len()
            );
            assert!(s.starts_with(&head), "{s:.80}");
            let body = &s[head.len()..];
            assert!(!body.contains('<') && !body.contains('>'));
            // Every `&` starts a whole entity.
            for (at, _) in body.match_indices('&') {
                let rest = &body[at..];
                assert!(
                    rest.starts_with("&lt;")
                        || rest.starts_with("&gt;")
                        || rest.starts_with("&amp;"),
                    "{rest:.10}"
                );
            }
        }
    }
}
