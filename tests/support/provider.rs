//! What every provider stand-in shares: a server on 127.0.0.1 that records
//! each request, checks it with the provider's own rules (a function the
//! provider's module gives), and answers as the test told it: accept,
//! reject, refuse the key, rate-limit with `Retry-After`, fail, or hang.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the stand-in answers the next valid request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Told {
    /// The provider's success.
    Accept,
    /// HTTP 400 (or the provider's own status for it) with its error body.
    Reject,
    /// HTTP 401: the key is not valid.
    Unauthorized,
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// HTTP 500.
    ServerError,
    /// Never answers (until the stand-in is dropped).
    Hang,
}

/// A request as it arrived.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    /// The path, as sent (percent-encoded).
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is none).
    pub body: Value,
    /// The body as sent.
    pub raw: String,
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

/// The provider's answer: status, extra headers, JSON body; `None` hangs.
pub type Answer = Option<(u16, Vec<(&'static str, String)>, Value)>;

/// The provider's rules: `Err` with its answer when the request is not
/// valid (auth, path, fields), else what it answers when told `told`.
pub type Rules = fn(&Request, &Told) -> Result<Answer, Answer>;

#[derive(Default)]
struct State {
    told: VecDeque<Told>,
    requests: Vec<Request>,
}

/// A provider stand-in; dropping it releases hung requests and stops it.
pub struct Peer {
    pub url: String,
    state: Arc<Mutex<State>>,
    release: tokio::sync::watch::Sender<bool>,
    _server: super::es::Server,
}

async fn handle(
    state: Arc<Mutex<State>>,
    rules: Rules,
    mut release: tokio::sync::watch::Receiver<bool>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw = String::from_utf8_lossy(&body).into_owned();
    let mut req = Request {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
        at: Instant::now(),
        status: 0,
    };
    let answer = {
        let mut s = state.lock().unwrap();
        // A request the provider refuses by its rules uses up nothing told.
        let told = s.told.front().cloned().unwrap_or(Told::Accept);
        let answer = match rules(&req, &told) {
            Ok(a) => {
                s.told.pop_front();
                a
            }
            Err(a) => a,
        };
        req.status = answer.as_ref().map_or(0, |a| a.0);
        s.requests.push(req);
        answer
    };
    let Some((status, extra, body)) = answer else {
        let _ = release.wait_for(|r| *r).await;
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut r = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    for (k, v) in extra {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

impl Peer {
    /// Starts a stand-in that follows `rules`.
    pub fn start(rules: Rules) -> Peer {
        let state = Arc::new(Mutex::new(State::default()));
        let (release, rx) = tokio::sync::watch::channel(false);
        let st = state.clone();
        let server = super::es::Server::start(0, move || {
            axum::Router::new()
                .fallback(move |m, u, h, b| handle(st.clone(), rules, rx.clone(), m, u, h, b))
        });
        Peer {
            url: format!("http://127.0.0.1:{}", server.port),
            state,
            release,
            _server: server,
        }
    }

    /// Answers the next valid request as told (then accepts again).
    pub fn tell(&self, t: Told) {
        self.state.lock().unwrap().told.push_back(t);
    }

    /// Every request received, answered or not.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered with a 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.release.send(true);
    }
}

/// The answer for `told` when it is not the provider's success: the
/// provider's `reject` and `unauthorized` bodies, 429 with `Retry-After`,
/// 500, or a hang.
pub fn as_told(told: &Told, reject: (u16, Value), unauthorized: Value) -> Answer {
    Some(match told {
        Told::Accept => unreachable!("the provider answers its own success"),
        Told::Reject => (reject.0, vec![], reject.1),
        Told::Unauthorized => (401, vec![], unauthorized),
        Told::RateLimited(secs) => (
            429,
            vec![("retry-after", secs.to_string())],
            serde_json::json!({"message": "rate limited"}),
        ),
        Told::ServerError => (
            500,
            vec![],
            serde_json::json!({"message": "internal error"}),
        ),
        Told::Hang => return None,
    })
}
