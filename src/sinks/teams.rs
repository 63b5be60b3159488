//! `{"type": "teams", "webhook_url": …}`: Microsoft Teams through a Power
//! Automate "Workflows" webhook (the Office 365 connectors are retired),
//! posting an Adaptive Card 1.4: the subject as a title, facts (alert, key,
//! hits, window) and the message. Teams takes at most 28 KB per post, so a
//! longer message goes as several cards marked `(1/2)`, `(2/2)`.

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

/// The largest payload Teams takes, in bytes of JSON.
pub(super) const MAX_PAYLOAD: usize = 28 * 1024;

/// The settings of a Teams destination.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamsConfig {
    /// The workflow's "When a Teams webhook request is received" URL (it
    /// carries its own signature: a secret).
    webhook_url: SecretString,
    /// Overall timeout of one post.
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

struct TeamsSink {
    name: String,
    client: reqwest::Client,
    url: SecretString,
    timeout: Duration,
    parts: Parts,
}

/// `{"type": "teams", "webhook_url": "${TEAMS_WEBHOOK}"}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "teams",
    overridable: &[],
    build: |name, v, _| {
        let c: TeamsConfig = settings(v)?;
        check_url(c.webhook_url.expose_secret())?;
        Ok(Arc::new(TeamsSink {
            name: name.to_owned(),
            client: crate::net::client(c.timeout.value)
                .map_err(|e| SettingError::at("", format!("no HTTP client: {e}")))?,
            url: c.webhook_url,
            timeout: c.timeout.value,
            parts: Parts::default(),
        }))
    },
    lint: no_lint,
    notices: true,
};

/// A `webhook_url` must be an http(s) URL; the error never shows it.
pub(super) fn check_url(u: &str) -> Result<(), SettingError> {
    match url::Url::parse(u) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        _ => Err(SettingError::at(
            "webhook_url",
            "`webhook_url` must be an http or https URL (its value is not shown: it is a secret)",
        )),
    }
}

/// One post: a card with `title`, the facts and `text`.
fn card(n: &Notification, title: &str, text: &str) -> Value {
    let mut facts = vec![json!({"title": "Alert", "value": n.alert})];
    if !n.key.is_empty() {
        facts.push(json!({"title": "Key", "value": n.key}));
    }
    facts.push(json!({"title": "Hits", "value": n.hits.to_string()}));
    if let Some(w) = chat::window_text(n) {
        facts.push(json!({"title": "Window", "value": w}));
    }
    let mut heading = json!({"type": "TextBlock", "text": title, "weight": "bolder", "size": "medium", "wrap": true});
    if n.resolved {
        heading["color"] = json!("good");
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    heading,
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": text, "wrap": true},
                ],
            },
        }],
    })
}

/// The posts for one notification: one card, or several of at most
/// [`MAX_PAYLOAD`] bytes each.
pub(super) fn posts(n: &Notification) -> Vec<Value> {
    let title = chat::title(n);
    let widest = format!("{title}{}", chat::widest_label());
    let size = |piece: &str| card(n, &widest, piece).to_string().len();
    let pieces = chat::fit(&n.rendered.text, MAX_PAYLOAD, size);
    let total = pieces.len();
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| card(n, &format!("{title}{}", chat::part_label(i, total)), p))
        .collect()
}

impl Sink for TeamsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            self.parts
                .post_all(&posts(n), |p| {
                    let req = http::json(self.client.post(self.url.expose_secret()), p);
                    async move { http::call(&self.name, req, self.timeout).await.map(drop) }
                })
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_message_becomes_cards_under_the_limit() {
        let mut n = chat::example();
        n.rendered.text = "line \"quoted\" \u{1}\n".repeat(5000);
        let p = posts(&n);
        assert!(p.len() > 1);
        for (i, c) in p.iter().enumerate() {
            assert!(c.to_string().len() <= MAX_PAYLOAD);
            let title = &c["attachments"][0]["content"]["body"][0]["text"];
            assert!(
                title
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("({}/{})", i + 1, p.len()))
            );
        }
        n.resolved = true;
        n.rendered.text = "short".into();
        let p = posts(&n);
        assert_eq!(p.len(), 1);
        let head = &p[0]["attachments"][0]["content"]["body"][0];
        assert_eq!(head["color"], "good");
        assert!(head["text"].as_str().unwrap().starts_with("✅ Resolved"));
    }
}
