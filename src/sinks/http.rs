//! What every HTTP destination shares: one call with an overall timeout,
//! the answer classified the same way everywhere (2xx success; 408, 425,
//! 429 with its `Retry-After`, 5xx and timeouts transient; any other status
//! permanent, with the provider's own error text), and text cut to a
//! provider's limits with a visible marker.

use std::time::Duration;

use super::SinkError;
use super::destinations::SettingError;

/// The most of a provider's answer that is read.
pub const MAX_ANSWER: u64 = 1 << 20;

/// How much of a provider's error text goes into the log.
const ERROR_TEXT: usize = 300;

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as text (lossy).
    pub body: String,
}

impl Answer {
    /// The body as JSON, or `Null`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `req` and reads the answer within `timeout` overall; a redirect
/// is a permanent error naming where it pointed (never followed, so a body
/// never reaches a host nobody configured). Every status comes back; see
/// [`check`] for the verdict.
pub async fn send(
    sink: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, SinkError> {
    send_capped(sink, req, timeout, MAX_ANSWER).await
}

/// [`send`], reading at most `cap` bytes of the answer.
pub async fn send_capped(
    sink: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
    cap: u64,
) -> Result<Answer, SinkError> {
    let no_answer = || {
        SinkError::transient(
            sink,
            format!("no answer within {}", humantime::format_duration(timeout)),
        )
    };
    // reqwest's own timeout says only "error sending request".
    let failed = |e: reqwest::Error| {
        if e.is_timeout() {
            no_answer()
        } else {
            SinkError::transient(sink, e.without_url().to_string())
        }
    };
    let call = async {
        let resp = req.timeout(timeout).send().await.map_err(failed)?;
        let status = resp.status().as_u16();
        if resp.status().is_redirection() {
            return Err(SinkError::permanent(
                sink,
                format!(
                    "HTTP {status}: redirect to {} not followed; point `url`/`api_url` at the final address",
                    crate::net::redirect_location(&resp).unwrap_or_else(|| "?".into())
                ),
            ));
        }
        let headers = resp.headers().clone();
        let body = crate::net::read_capped(resp, cap)
            .await
            .map_err(|e| match e {
                crate::net::ReadError::TooLarge(cap) => SinkError::permanent(
                    sink,
                    format!("the answer is larger than {cap} bytes and was not read further"),
                ),
                crate::net::ReadError::Transport(e) => failed(e),
            })?;
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(no_answer()),
        Ok(r) => r,
    }
}

/// The verdict on an answer: 2xx is the answer; otherwise an error that
/// says whether retrying may help, with the provider's error text.
pub fn check(sink: &str, a: Answer) -> Result<Answer, SinkError> {
    let status = a.status;
    if (200..300).contains(&status) {
        return Ok(a);
    }
    let text = one_line(&a.body, ERROR_TEXT);
    let message = if text.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {text}")
    };
    match status {
        408 | 425 | 429 | 500..=599 => {
            Err(SinkError::transient(sink, message).with_retry_after(retry_after(&a.headers)))
        }
        _ => Err(SinkError::permanent(sink, message)),
    }
}

/// [`send`] then [`check`].
pub async fn call(
    sink: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, SinkError> {
    check(sink, send(sink, req, timeout).await?)
}

/// `req` with `body` as its JSON body (reqwest's `json` feature is off).
pub fn json(req: reqwest::RequestBuilder, body: &serde_json::Value) -> reqwest::RequestBuilder {
    req.header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

/// An HTTP destination's base address (its `api_url`, or the provider's
/// `default`; no trailing `/`) and a client with `timeout` overall: the
/// checks every provider's settings need before anything is sent.
pub fn endpoint(
    api_url: Option<&str>,
    default: &str,
    timeout: Duration,
) -> Result<(String, reqwest::Client), SettingError> {
    let base = base_url(api_url.unwrap_or(default), "api_url", default)?;
    if timeout.is_zero() {
        return Err(SettingError::at(
            "timeout",
            "`timeout` must be more than 0s, e.g. \"30s\"",
        ));
    }
    let client = crate::net::client(timeout)
        .map_err(|e| SettingError::at("", format!("cannot set up HTTPS: {e}")))?;
    Ok((base, client))
}

/// `Retry-After` in seconds (the HTTP-date form is rare from APIs and
/// ignored), at most an hour.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|s| Duration::from_secs(s.min(3600)))
}

/// An address setting (`url`, `api_url`), checked (http or https, with a
/// host) and without a trailing `/`, ready for paths to be appended. The
/// value is never shown: an address may carry credentials.
pub fn base_url(url: &str, setting: &str, example: &str) -> Result<String, SettingError> {
    let bad = || {
        SettingError::at(
            setting,
            format!(
                "`{setting}` must be an http:// or https:// address with a host, e.g. \"{example}\""
            ),
        )
    };
    let u = url::Url::parse(url.trim()).map_err(|_| bad())?;
    if !matches!(u.scheme(), "http" | "https") || !u.has_host() {
        return Err(bad());
    }
    Ok(url.trim().trim_end_matches('/').to_owned())
}

/// The first `max` characters of `s` on one line.
fn one_line(s: &str, max: usize) -> String {
    truncate(&s.split_whitespace().collect::<Vec<_>>().join(" "), max)
}

/// `s` cut to at most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

/// `s` in pieces of at most `max` characters, cut at line breaks where
/// possible (a longer line is cut where it must).
pub fn split(s: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut len = 0;
    for line in s.split_inclusive('\n') {
        let mut rest = line;
        while !rest.is_empty() {
            let n = rest.chars().count();
            if len + n <= max {
                cur.push_str(rest);
                len += n;
                break;
            }
            if len > 0 {
                out.push(std::mem::take(&mut cur));
                len = 0;
                continue;
            }
            let cut = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
            out.push(rest[..cut].to_owned());
            rest = &rest[cut..];
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str, retry: Option<&str>) -> Answer {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(reqwest::header::RETRY_AFTER, r.parse().unwrap());
        }
        Answer {
            status,
            headers,
            body: body.into(),
        }
    }

    #[test]
    fn answers_are_classified_with_the_providers_text() {
        assert!(check("x", answer(202, "", None)).is_ok());
        let e = check("x", answer(429, "slow down", Some("7"))).unwrap_err();
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let e = check("x", answer(503, "", None)).unwrap_err();
        assert!(e.is_transient());
        let e = check("x", answer(400, "{\"message\":\n \"bad key\"}", None)).unwrap_err();
        assert!(!e.is_transient());
        assert_eq!(e.to_string(), "x: HTTP 400: {\"message\": \"bad key\"}");
    }

    #[test]
    fn text_is_cut_with_a_marker_and_split_at_lines() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(split("aa\nbb\ncc\n", 6), ["aa\nbb\n", "cc\n"]);
        assert_eq!(split("abcdefgh", 3), ["abc", "def", "gh"]);
        assert_eq!(split("", 3), [""]);
        let long = "x".repeat(10_000);
        assert!(split(&long, 2000).iter().all(|p| p.chars().count() <= 2000));
    }
}
