//! Watcher's `webhook` action: one HTTP request, 2xx is success.

use std::time::Duration;

use futures::future::BoxFuture;

use super::{Message, Sink, SinkError, WebhookRequest};

/// The client for requests to other services: an overall timeout on every
/// request, and redirects are not followed, so a body is never re-sent to a
/// host nobody configured. `None` only if TLS can't be set up at all.
pub fn outbound_client() -> Option<reqwest::Client> {
    crate::net::client(crate::net::DEFAULT_TIMEOUT).ok()
}

/// The most a webhook's or an http input's answer may be.
pub const MAX_ANSWER: u64 = 10 << 20;

impl WebhookRequest {
    /// Sends the request; returns the status, headers and body text. A
    /// redirect is an error naming where it pointed; it is not followed.
    pub async fn send(
        &self,
        http: &reqwest::Client,
    ) -> Result<(u16, reqwest::header::HeaderMap, String), SinkError> {
        let err = |m: String| SinkError::permanent("webhook", m);
        let method = reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|e| err(format!("method {:?}: {e}", self.method)))?;
        let mut r = http.request(method, &self.url).query(&self.params);
        for (k, v) in &self.headers {
            r = r.header(k.as_str(), v.as_str());
        }
        if let Some((u, p)) = &self.auth {
            r = r.basic_auth(u, Some(p));
        }
        if let Some(b) = &self.body {
            r = r.body(b.clone());
        }
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        let a = super::http::send_capped("webhook", r, timeout, MAX_ANSWER).await?;
        Ok((a.status, a.headers, a.body))
    }
}

pub(super) struct WebhookSink {
    http: reqwest::Client,
}

impl WebhookSink {
    pub(super) fn new() -> Option<Self> {
        Some(WebhookSink {
            http: outbound_client()?,
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let Message::Webhook(req) = m else {
                return Err(SinkError::permanent("webhook", "not a webhook message"));
            };
            let (status, _, body) = req.send(&self.http).await?;
            let snippet: String = body.chars().take(200).collect();
            match status {
                200..=299 => Ok(()),
                408 | 429 | 500..=599 => Err(SinkError::transient(
                    "webhook",
                    format!("HTTP {status}: {snippet}"),
                )),
                _ => Err(SinkError::permanent(
                    "webhook",
                    format!("HTTP {status}: {snippet}"),
                )),
            }
        })
    }
}
