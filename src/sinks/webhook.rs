//! Watcher's `webhook` action: one HTTP request, 2xx is success.

use std::time::Duration;

use super::{Message, Sink, SinkError, WebhookRequest};
use futures::future::BoxFuture;

/// The client for requests to other services: an overall timeout on every
/// request (set per request), and redirects are not followed, so a body is
/// never re-sent to a host nobody configured.
pub fn outbound_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("esalert/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

impl WebhookRequest {
    /// Sends the request; returns the status, headers and body text.
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
        let call = async {
            let resp = r.timeout(timeout).send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, headers, text))
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(SinkError::transient(
                "webhook",
                format!("no answer within {}", humantime::format_duration(timeout)),
            )),
            Ok(Err(e)) => Err(SinkError::transient("webhook", e.without_url().to_string())),
            Ok(Ok(x)) => Ok(x),
        }
    }
}

pub(super) struct WebhookSink {
    http: reqwest::Client,
}

impl WebhookSink {
    pub(super) fn new() -> Self {
        WebhookSink {
            http: outbound_client(),
        }
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
            let (status, headers, body) = req.send(&self.http).await?;
            let snippet: String = body.chars().take(200).collect();
            match status {
                200..=299 => Ok(()),
                300..=399 => Err(SinkError::permanent(
                    "webhook",
                    format!(
                        "HTTP {status}: redirect to {} not followed; point the action at the final URL",
                        headers
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                    ),
                )),
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
