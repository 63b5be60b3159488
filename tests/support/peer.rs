//! The core of the HTTP provider stand-ins (webhook, Teams, Telegram,
//! Discord): records every request, checks it the way the provider does
//! (a [`Provider`] says how), and answers as told: 2xx, 400 with the
//! provider's error body, 401, 429 with `Retry-After`, 500, or never.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::Value;

/// How the stand-in answers one request, queued with [`Peer::push`];
/// [`Answer::Ok`] when nothing is queued.
#[derive(Clone, Debug)]
pub enum Answer {
    /// The provider's success (if the request is valid).
    Ok,
    /// 400 with the provider's error body carrying this text.
    BadRequest(&'static str),
    /// 401 with the provider's error body.
    Unauthorized,
    /// 429 asking to wait this many seconds (`Retry-After` and the body).
    RateLimited(u64),
    /// 500.
    ServerError,
    /// No answer until the stand-in is dropped (at most a minute).
    Hang,
}

/// One received request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The body as sent.
    pub text: String,
    /// The body as JSON, or `Null`.
    pub body: Value,
    pub at: Instant,
    /// What the stand-in answered: the status.
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

/// What is wrong with a request, as the provider would say it.
pub struct Rejection {
    pub status: u16,
    pub text: String,
}

impl Rejection {
    pub fn new(status: u16, text: impl Into<String>) -> Self {
        Rejection {
            status,
            text: text.into(),
        }
    }
}

/// One provider's rules and answers.
pub trait Provider: Send + Sync + 'static {
    /// Checks a request the way the provider does.
    fn check(&self, r: &Request) -> Result<(), Rejection>;
    /// The provider's success answer to a valid request.
    fn ok(&self, r: &Request) -> Response;
    /// The provider's error answer: `status`, its text, and for 429 the
    /// seconds to wait.
    fn error(&self, status: u16, text: &str, retry_after: Option<u64>) -> Response;
}

struct State {
    queue: VecDeque<Answer>,
    requests: Vec<Request>,
}

pub struct Peer {
    pub url: String,
    state: Arc<Mutex<State>>,
    release: Arc<tokio::sync::Notify>,
    _server: super::es::Server,
}

async fn handle(
    provider: Arc<dyn Provider>,
    state: Arc<Mutex<State>>,
    release: Arc<tokio::sync::Notify>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let r = Request {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
        at: Instant::now(),
        status: 0,
    };
    // Recorded on arrival (a hung request counts), its status set once answered.
    let (told, at) = {
        let mut s = state.lock().unwrap();
        s.requests.push(r.clone());
        (
            s.queue.pop_front().unwrap_or(Answer::Ok),
            s.requests.len() - 1,
        )
    };
    let resp = match told {
        Answer::Hang => {
            let _ = tokio::time::timeout(Duration::from_secs(60), release.notified()).await;
            provider.error(500, "hung", None)
        }
        Answer::Ok => match provider.check(&r) {
            Ok(()) => provider.ok(&r),
            Err(e) => provider.error(e.status, &e.text, None),
        },
        Answer::BadRequest(t) => provider.error(400, t, None),
        Answer::Unauthorized => provider.error(401, "Unauthorized", None),
        Answer::RateLimited(s) => provider.error(429, "Too Many Requests", Some(s)),
        Answer::ServerError => provider.error(500, "Internal Server Error", None),
    };
    state.lock().unwrap().requests[at].status = resp.status().as_u16();
    resp
}

impl Peer {
    pub fn start(provider: impl Provider) -> Peer {
        let provider: Arc<dyn Provider> = Arc::new(provider);
        let state = Arc::new(Mutex::new(State {
            queue: VecDeque::new(),
            requests: Vec::new(),
        }));
        let release = Arc::new(tokio::sync::Notify::new());
        let (st, rel) = (state.clone(), release.clone());
        let server = super::es::Server::start(0, move || {
            axum::Router::new().fallback(move |m, u, h, b| {
                handle(provider.clone(), st.clone(), rel.clone(), m, u, h, b)
            })
        });
        Peer {
            url: format!("http://127.0.0.1:{}", server.port),
            state,
            release,
            _server: server,
        }
    }

    /// Queues the answer to the next request.
    pub fn push(&self, a: Answer) {
        self.state.lock().unwrap().queue.push_back(a);
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered with 2xx.
    pub fn delivered(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // A hanging answer ends now, so the server can stop.
        self.release.notify_waiters();
    }
}

/// `(status, JSON body, extra header)` as a response.
pub fn json_response(status: u16, body: &Value, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(axum::body::Body::from(body.to_string())).unwrap()
}
