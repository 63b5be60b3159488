//! What every provider stand-in (TheHive, Jira, …) shares: a server that
//! takes the next queued reply, hangs if told to, lets the provider answer
//! with a status and a JSON body, records the request with its status, and
//! adds `Retry-After` to a 429.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A request a stand-in received, with the status it answered.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub status: u16,
}

/// A provider's behaviour, over its own state.
pub trait Provider: Default + Send + 'static {
    /// How one request is answered (queued by the test).
    type Reply: Send;
    /// The next queued reply, or the normal one.
    fn next_reply(&mut self) -> Self::Reply;
    /// Whether this reply is never to come.
    fn hangs(reply: &Self::Reply) -> bool;
    /// `Retry-After` seconds when this reply is a 429.
    fn retry_after(reply: &Self::Reply) -> u64;
    /// The answer to `req` (whose `status` is not set yet).
    fn answer(&mut self, req: &Request, reply: Self::Reply) -> (StatusCode, Value);
    /// Keeps a request that was answered.
    fn record(&mut self, req: Request);
}

/// A running stand-in. Dropping it stops the server.
pub struct Peer<P> {
    pub url: String,
    pub state: Arc<Mutex<P>>,
    _server: super::es::Server,
}

async fn handle<P: Provider>(
    state: Arc<Mutex<P>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = state.lock().unwrap().next_reply();
    if P::hangs(&reply) {
        std::future::pending::<()>().await;
    }
    let retry_after = P::retry_after(&reply);
    let mut req = Request {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status: 0,
    };
    let mut s = state.lock().unwrap();
    let (status, answer) = s.answer(&req, reply);
    req.status = status.as_u16();
    s.record(req);
    let mut r = (status, axum::Json(answer)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert("retry-after", retry_after.to_string().parse().unwrap());
    }
    r
}

impl<P: Provider> Peer<P> {
    pub fn start() -> Peer<P> {
        let state = Arc::new(Mutex::new(P::default()));
        let st = state.clone();
        let server = super::es::Server::start(0, move || {
            let st = st.clone();
            axum::Router::new().fallback(move |m, u, h, b| handle(st.clone(), m, u, h, b))
        });
        Peer {
            url: format!("http://127.0.0.1:{}", server.port),
            state,
            _server: server,
        }
    }

    /// The provider's state, to look at or change.
    pub fn with<T>(&self, f: impl FnOnce(&mut P) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }
}
