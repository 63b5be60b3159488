//! A generic webhook receiver: checks the method, the path, the
//! `Authorization` it was told to expect and that a JSON `Content-Type`
//! comes with a JSON body; answers 200 `ok` or as told.

use serde_json::json;

use super::peer::{Answer, Peer, Provider, Request, Told};

pub struct Webhook {
    /// The method requests must use.
    pub method: &'static str,
    /// The exact `Authorization` expected, if any.
    pub authorization: Option<String>,
}

fn error(status: u16, text: impl Into<String>) -> Answer {
    Answer::json(status, json!({"error": text.into()}))
}

impl Provider for Webhook {
    fn check(&self, r: &Request) -> Result<(), Answer> {
        if r.method.as_str() != self.method {
            return Err(error(405, format!("method {} not allowed", r.method)));
        }
        if r.path != "/hook" {
            return Err(error(404, format!("no route {}", r.path)));
        }
        if let Some(a) = &self.authorization
            && r.header("authorization") != a
        {
            return Err(error(401, "bad credentials"));
        }
        if r.header("content-type").contains("json") && r.body.is_null() {
            return Err(error(400, "the body is not JSON"));
        }
        Ok(())
    }

    fn accept(&mut self, _: &Request) -> Answer {
        Answer::text(200, "ok")
    }

    fn fail(&self, told: &Told) -> Answer {
        let (status, text) = told.status_text();
        error(status, text)
    }
}

/// A webhook receiver at `{url}/hook`.
pub fn start(method: &'static str, authorization: Option<String>) -> Peer<Webhook> {
    Peer::start(Webhook {
        method,
        authorization,
    })
}
