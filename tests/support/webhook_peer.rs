//! A generic webhook receiver: checks the method, the path, the
//! `Authorization` it was told to expect and that a JSON `Content-Type`
//! comes with a JSON body; answers 200 `ok` or as told.

use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::peer::{Peer, Provider, Rejection, Request, json_response};

pub struct Webhook {
    /// The method requests must use.
    pub method: &'static str,
    /// The exact `Authorization` expected, if any.
    pub authorization: Option<String>,
}

impl Provider for Webhook {
    fn check(&self, r: &Request) -> Result<(), Rejection> {
        if r.method.as_str() != self.method {
            return Err(Rejection::new(
                405,
                format!("method {} not allowed", r.method),
            ));
        }
        if r.path != "/hook" {
            return Err(Rejection::new(404, format!("no route {}", r.path)));
        }
        if let Some(a) = &self.authorization
            && r.header("authorization") != a
        {
            return Err(Rejection::new(401, "bad credentials"));
        }
        if r.header("content-type").contains("json") && r.body.is_null() {
            return Err(Rejection::new(400, "the body is not JSON"));
        }
        Ok(())
    }

    fn ok(&self, _: &Request) -> Response {
        "ok".into_response()
    }

    fn error(&self, status: u16, text: &str, retry_after: Option<u64>) -> Response {
        json_response(status, &json!({"error": text}), retry_after)
    }
}

impl Peer {
    /// A webhook receiver at `{url}/hook`.
    pub fn webhook(method: &'static str, authorization: Option<String>) -> Peer {
        Peer::start(Webhook {
            method,
            authorization,
        })
    }
}
