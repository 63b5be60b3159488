//! A Slack stand-in: accepts webhook posts and `chat.postMessage`, records
//! the JSON payloads, and answers as queued (200 ok, `ok:false`, 429 with
//! or without `Retry-After`, 500).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// How the stand-in answers one post.
#[derive(Clone, Debug)]
pub enum SlackReply {
    Ok,
    /// `{"ok": false, "error": code}` with HTTP 200, as the Web API does.
    Error(&'static str),
    /// HTTP 429 with `Retry-After: secs`.
    RateLimited(u64),
    /// HTTP 429 with `Retry-After` as written (e.g. an HTTP date).
    RateLimitedUntil(String),
    /// HTTP 429 with no `Retry-After` and an empty body.
    RateLimitedEmpty,
    /// HTTP 500.
    ServerError,
}

/// A received post.
#[derive(Clone, Debug)]
pub struct Post {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct State {
    delay: std::time::Duration,
    queue: VecDeque<SlackReply>,
    posts: Vec<Post>,
    /// `auth.test` calls, by the token they carried.
    auth_tests: Vec<String>,
}

/// The bot token the stand-in accepts.
pub const BOT_TOKEN: &str = "xoxb-test-token";

/// `auth.test` as Slack answers it: HTTP 200 either way, `ok` saying
/// whether the bearer token is a valid one.
fn auth_test(state: &Mutex<State>, headers: &HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    state
        .lock()
        .unwrap()
        .auth_tests
        .push(token.clone().unwrap_or_default());
    match token.as_deref() {
        None => axum::Json(json!({"ok": false, "error": "not_authed"})).into_response(),
        Some(BOT_TOKEN) => axum::Json(json!({"ok": true, "url": "https://esalert-test.slack.com/",
            "team": "esalert test", "user": "esalert", "team_id": "T000", "user_id": "U000",
            "bot_id": "B123", "is_enterprise_install": false}))
        .into_response(),
        Some(_) => axum::Json(json!({"ok": false, "error": "invalid_auth"})).into_response(),
    }
}

pub struct SlackStandIn {
    pub url: String,
    state: Arc<Mutex<State>>,
    _server: super::es::Server,
}

async fn handle(state: Arc<Mutex<State>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if uri.path() == "/api/auth.test" {
        return auth_test(&state, &headers);
    }
    let reply = {
        let mut s = state.lock().unwrap();
        let reply = s.queue.pop_front().unwrap_or(SlackReply::Ok);
        // Only accepted posts count as delivered; failed ones are recorded
        // with a marker so tests can count attempts.
        s.posts.push(Post {
            path: uri.path().to_owned(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            at: std::time::Instant::now(),
        });
        if !matches!(reply, SlackReply::Ok) {
            let last = s.posts.last_mut().unwrap();
            last.body["__rejected"] = json!(true);
        }
        reply
    };
    let delay = state.lock().unwrap().delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let webhook = uri.path().starts_with("/hooks/");
    match reply {
        SlackReply::Ok if webhook => ([("content-type", "text/plain")], "ok").into_response(),
        SlackReply::Ok => axum::Json(json!({"ok": true, "channel": "C123", "ts": "1700000000.000100",
            "message": {"type": "message", "subtype": "bot_message", "text": "posted", "ts": "1700000000.000100", "bot_id": "B123"}})).into_response(),
        SlackReply::Error(code) => axum::Json(json!({"ok": false, "error": code})).into_response(),
        SlackReply::RateLimited(secs) => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "rate limited",
        )
            .into_response(),
        SlackReply::RateLimitedUntil(at) => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", at)],
            "rate limited",
        )
            .into_response(),
        SlackReply::RateLimitedEmpty => axum::http::StatusCode::TOO_MANY_REQUESTS.into_response(),
        SlackReply::ServerError => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
    }
}

impl SlackStandIn {
    pub fn start() -> SlackStandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let server = super::es::Server::start(0, move || {
            let st = st.clone();
            axum::Router::new().fallback(move |u, h, b| handle(st.clone(), u, h, b))
        });
        SlackStandIn {
            url: format!("http://127.0.0.1:{}", server.port),
            state,
            _server: server,
        }
    }

    /// Makes every answer take this long (the post is recorded on arrival).
    pub fn set_delay(&self, d: std::time::Duration) {
        self.state.lock().unwrap().delay = d;
    }

    pub fn push(&self, r: SlackReply) {
        self.state.lock().unwrap().queue.push_back(r);
    }

    /// Drops the queued replies: every post is accepted from now on.
    pub fn clear_queue(&self) {
        self.state.lock().unwrap().queue.clear();
    }

    /// Every post received, accepted or not.
    pub fn all_posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }

    /// Posts that were accepted (delivered).
    pub fn delivered(&self) -> Vec<Post> {
        self.all_posts()
            .into_iter()
            .filter(|p| p.body.get("__rejected").is_none())
            .collect()
    }

    /// The tokens of the `auth.test` calls so far.
    pub fn auth_tests(&self) -> Vec<String> {
        self.state.lock().unwrap().auth_tests.clone()
    }

    /// A webhook URL on this server.
    pub fn webhook_url(&self) -> String {
        format!("{}/hooks/T000/B000/XXXX", self.url)
    }

    /// The `slack` section of credentials.json for webhook mode.
    pub fn webhook_credentials(&self) -> Value {
        json!({"webhook_url": self.webhook_url()})
    }

    /// The `slack` section for bot-token mode.
    pub fn bot_credentials(&self, channel: &str) -> Value {
        json!({"token": BOT_TOKEN, "channel": channel, "api_url": format!("{}/api", self.url)})
    }
}
