//! The one core of the HTTP stand-ins for alert destinations (PagerDuty,
//! Opsgenie, webhook, Teams, Telegram, Discord, TheHive, Jira): a server on
//! 127.0.0.1 that records every request, checks it by the provider's rules
//! (a [`Provider`], with whatever state it keeps), and answers as the test
//! told it: accept, reject, refuse the key, rate-limit, fail (before or
//! after storing), or hang.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the stand-in answers the next request its provider's rules let
/// through, told with [`Peer::tell`]; [`Told::Accept`] when nothing is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    /// The provider's own answer (its success, or its refusal).
    Accept,
    /// The provider's "bad request" (400, or its own status) with this text.
    Reject(&'static str),
    /// 401: the key is not valid.
    Unauthorized,
    /// 429 asking to wait this many seconds.
    RateLimited(u64),
    /// 500, storing nothing.
    ServerError,
    /// Accept (storing what the provider stores), then answer 500: the
    /// answer lost in a crash after the write.
    StoreThenFail,
    /// No answer until the stand-in is dropped.
    Hang,
}

impl Told {
    /// The status of a told failure and its plain words, which a provider
    /// wraps in its own error body.
    pub fn status_text(&self) -> (u16, &'static str) {
        match self {
            Told::Reject(t) => (400, *t),
            Told::Unauthorized => (401, "Unauthorized"),
            Told::RateLimited(_) => (429, "Too Many Requests"),
            Told::Accept | Told::ServerError | Told::StoreThenFail | Told::Hang => {
                (500, "Internal Server Error")
            }
        }
    }
}

/// A request as it arrived, with the status it got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// The path, as sent (percent-encoded).
    pub path: String,
    /// The query, as sent ("" when none).
    pub query: String,
    pub headers: HeaderMap,
    /// The body as sent.
    pub text: String,
    /// The body as JSON (`Null` when it is none).
    pub body: Value,
    pub at: Instant,
    /// The status answered (0 for a hang).
    pub status: u16,
}

impl Request {
    /// A header's value, or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One provider: its rules, its answers, and the state it keeps (issues,
/// alerts) on `self`.
pub trait Provider: Send + 'static {
    /// Whether a 429 carries `Retry-After` (Telegram says it in the body only).
    const RETRY_AFTER_HEADER: bool = true;
    /// The rules checked before anything told (key, path, fields): `Err`
    /// is the provider's refusal, and uses up nothing told.
    fn check(&self, r: &Request) -> Result<(), Answer>;
    /// The provider's answer to a request it takes, keeping what it stores;
    /// it may still refuse (a duplicate, an unknown issue).
    fn accept(&mut self, r: &Request) -> Answer;
    /// The provider's answer when told to fail (`Reject`, `Unauthorized`,
    /// `RateLimited` or `ServerError`).
    fn fail(&self, told: &Told) -> Answer;
}

struct Inner<P> {
    provider: P,
    told: VecDeque<Told>,
    requests: Vec<Request>,
}

impl<P: Provider> Inner<P> {
    /// The answer to `r`, `None` for a hang.
    fn answer(&mut self, r: &Request) -> Option<Answer> {
        if let Err(refusal) = self.provider.check(r) {
            return Some(refusal);
        }
        let told = self.told.pop_front().unwrap_or(Told::Accept);
        Some(match told {
            Told::Accept => self.provider.accept(r),
            Told::Hang => return None,
            Told::StoreThenFail => {
                let stored = self.provider.accept(r);
                if !(200..300).contains(&stored.status) {
                    return Some(stored);
                }
                self.provider.fail(&Told::ServerError)
            }
            Told::RateLimited(secs) => {
                let mut a = self.provider.fail(&told);
                if P::RETRY_AFTER_HEADER {
                    a.retry_after = Some(secs);
                }
                a
            }
            _ => self.provider.fail(&told),
        })
    }
}

/// A running stand-in; dropping it releases hung requests and stops it.
pub struct Peer<P> {
    pub url: String,
    inner: Arc<Mutex<Inner<P>>>,
    release: tokio::sync::watch::Sender<bool>,
    _server: super::es::Server,
}

async fn handle<P: Provider>(
    inner: Arc<Mutex<Inner<P>>>,
    mut release: tokio::sync::watch::Receiver<bool>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut req = Request {
        method,
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        at: Instant::now(),
        status: 0,
    };
    let answer = {
        let mut s = inner.lock().unwrap();
        let answer = s.answer(&req);
        req.status = answer.as_ref().map_or(0, |a| a.status);
        s.requests.push(req);
        answer
    };
    match answer {
        Some(a) => a.into_response(),
        None => {
            let _ = release.wait_for(|r| *r).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

impl<P: Provider> Peer<P> {
    /// Starts a stand-in for `provider`.
    pub fn start(provider: P) -> Peer<P> {
        let inner = Arc::new(Mutex::new(Inner {
            provider,
            told: VecDeque::new(),
            requests: Vec::new(),
        }));
        let (release, rx) = tokio::sync::watch::channel(false);
        let st = inner.clone();
        let server = super::es::Server::start(0, move || {
            axum::Router::new()
                .fallback(move |m, u, h, b| handle(st.clone(), rx.clone(), m, u, h, b))
        });
        Peer {
            url: format!("http://127.0.0.1:{}", server.port),
            inner,
            release,
            _server: server,
        }
    }

    /// Answers the next request the rules let through as told (then
    /// accepts again).
    pub fn tell(&self, t: Told) {
        self.inner.lock().unwrap().told.push_back(t);
    }

    /// Every request received, in order, answered or not.
    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// The requests answered with a 2xx.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// The provider's state, to look at or change.
    pub fn with<T>(&self, f: impl FnOnce(&mut P) -> T) -> T {
        f(&mut self.inner.lock().unwrap().provider)
    }
}

impl<P> Drop for Peer<P> {
    fn drop(&mut self) {
        let _ = self.release.send(true);
    }
}

/// A provider's answer: a status and a body (JSON, text or none).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    body: String,
    content_type: Option<&'static str>,
    retry_after: Option<u64>,
}

impl Answer {
    pub fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            body: body.to_string(),
            content_type: Some("application/json"),
            retry_after: None,
        }
    }

    pub fn text(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.to_owned(),
            content_type: Some("text/plain; charset=utf-8"),
            retry_after: None,
        }
    }

    pub fn empty(status: u16) -> Answer {
        Answer {
            status,
            body: String::new(),
            content_type: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut b = Response::builder().status(self.status);
        if let Some(t) = self.content_type {
            b = b.header("content-type", t);
        }
        if let Some(s) = self.retry_after {
            b = b.header("retry-after", s.to_string());
        }
        b.body(self.body.into()).unwrap()
    }
}
