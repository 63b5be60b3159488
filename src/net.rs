//! Outbound HTTP, one way for every peer: the cluster, Slack, and Watcher
//! `http` inputs, `webhook` and `index` actions.
//!
//! reqwest has no default timeout and follows redirects. A peer that never
//! answers would then hold an alert forever, and a redirect would turn a
//! search into a bodiless GET or re-post it (credentials included) to
//! another host. So every client built here has an overall timeout and
//! follows no redirect: a 3xx is an error naming its `Location`.

use std::time::Duration;

use percent_encoding::percent_decode_str;

/// The overall timeout when the settings name none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest wait for a TCP (and TLS) connection, within the overall timeout.
const CONNECT_MAX: Duration = Duration::from_secs(10);

/// A client builder with an overall `timeout` (connect, send, and read the
/// whole body), no redirects and esalert's user agent. Add TLS settings and
/// build.
pub fn builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(CONNECT_MAX))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(concat!("esalert/", env!("CARGO_PKG_VERSION")))
}

/// A client for Watcher `http` inputs and `webhook` actions (and anything
/// else that talks to a URL from a file): [`builder`] as is.
pub fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    builder(timeout).build()
}

/// The `Location` of a redirect answer, without user info, or `None` when
/// the status is not a redirect. Say it in the error: the URL to configure.
pub fn redirect_location(resp: &reqwest::Response) -> Option<String> {
    if !resp.status().is_redirection() {
        return None;
    }
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    Some(match loc {
        Some(l) if !l.trim().is_empty() => redact_url(l.trim()),
        _ => "(no Location header)".to_owned(),
    })
}

/// `url` with any `user:password@` removed, for logs, errors and notices.
/// Text that does not parse as a URL is returned with everything between
/// `://` and the last `@` of the authority cut out.
pub fn redact_url(url: &str) -> String {
    split_userinfo(url).0
}

/// Splits `url` into the URL without user info and the user and password it
/// carried (percent-decoded), if any.
pub fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    match url::Url::parse(url) {
        Ok(mut u) if u.has_host() => {
            if u.username().is_empty() && u.password().is_none() {
                return (url.to_owned(), None);
            }
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let user = decode(u.username());
            let pass = decode(u.password().unwrap_or(""));
            // Both setters only fail on URLs without a host, excluded above.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let mut clean = u.to_string();
            // Url adds a "/" path to a bare host; keep the text as written.
            if !url.ends_with('/') && u.path() == "/" && u.query().is_none() {
                clean.pop();
            }
            (clean, Some((user, pass)))
        }
        _ => {
            let Some(start) = url.find("://").map(|i| i + 3) else {
                return (url.to_owned(), None);
            };
            let end = url[start..]
                .find(['/', '?', '#'])
                .map_or(url.len(), |i| start + i);
            match url[start..end].rfind('@') {
                Some(at) => (
                    format!("{}{}", &url[..start], &url[start + at + 1..]),
                    Some((String::new(), String::new())),
                ),
                None => (url.to_owned(), None),
            }
        }
    }
}

/// Why a body could not be read in full.
#[derive(Debug)]
pub enum ReadError {
    /// The body is longer than the cap (in bytes).
    TooLarge(u64),
    /// The connection failed or timed out while reading.
    Transport(reqwest::Error),
}

/// Reads a response body, stopping as soon as it is longer than `cap`
/// bytes: a huge answer costs `cap` bytes of memory, not its size.
pub async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, ReadError> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(ReadError::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Transport)? {
        let len = u64::try_from(body.len().saturating_add(chunk.len())).unwrap_or(u64::MAX);
        if len > cap {
            return Err(ReadError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_split_off() {
        let (u, c) = split_userinfo("http://es%40corp:p%3Ass@127.0.0.1:9200");
        assert_eq!(u, "http://127.0.0.1:9200");
        assert_eq!(c, Some(("es@corp".into(), "p:ss".into())));
        let (u, c) = split_userinfo("https://host/prefix/");
        assert_eq!((u.as_str(), c), ("https://host/prefix/", None));
        assert_eq!(redact_url("https://u:pw@host/x?y=1"), "https://host/x?y=1");
        assert_eq!(redact_url("weird://u:pw@ho st/x"), "weird://ho st/x");
    }
}
