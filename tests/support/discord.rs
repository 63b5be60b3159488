//! A Discord webhook stand-in at `/api/webhooks/<id>/<token>`: checks a
//! post the way Discord does (`content` or `embeds`, `content` at most
//! 2,000 characters, `username` at most 80), and that `allowed_mentions`
//! is `{"parse": []}` so nothing in it can ping; `GET` answers the webhook
//! object. Answers 204 (200 with `?wait=true`), or Discord's
//! `{"message", "code"}` errors and its 429 with `retry_after`.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

pub const PATH: &str = "/api/webhooks/1100/SECRETwebhookTOKEN";
pub const MAX_CONTENT: usize = 2000;

pub struct Discord;

fn form(field: &str, code: &str, message: &str) -> Answer {
    Answer::json(
        400,
        json!({"message": "Invalid Form Body", "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}}}),
    )
}

impl Provider for Discord {
    fn check(&self, r: &Request) -> Result<(), Answer> {
        if r.path != PATH {
            return Err(Answer::json(
                401,
                json!({"message": "Invalid Webhook Token", "code": 50027}),
            ));
        }
        if r.method == "GET" {
            return Ok(());
        }
        if r.method != "POST" {
            return Err(Answer::json(
                405,
                json!({"message": "405: Method Not Allowed", "code": 0}),
            ));
        }
        let b = &r.body;
        let content = match &b["content"] {
            Value::Null => None,
            Value::String(s) => Some(s.as_str()),
            _ => {
                return Err(form(
                    "content",
                    "STRING_TYPE_CONVERT",
                    "Could not interpret value as string.",
                ));
            }
        };
        if content.is_none_or(|c| c.trim().is_empty())
            && b["embeds"].as_array().is_none_or(Vec::is_empty)
        {
            return Err(Answer::json(
                400,
                json!({"message": "Cannot send an empty message", "code": 50006}),
            ));
        }
        if content.is_some_and(|c| c.encode_utf16().count() > MAX_CONTENT) {
            return Err(form(
                "content",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 2000 or fewer in length.",
            ));
        }
        if b["username"]
            .as_str()
            .is_some_and(|u| u.chars().count() > 80)
        {
            return Err(form(
                "username",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 80 or fewer in length.",
            ));
        }
        // Not Discord's rule, esalert's: nothing in a post may ping.
        if b["allowed_mentions"] != json!({"parse": []}) {
            return Err(form(
                "allowed_mentions",
                "ESALERT_REQUIRED",
                "allowed_mentions must be {\"parse\": []}",
            ));
        }
        Ok(())
    }

    fn accept(&mut self, r: &Request) -> Answer {
        if r.method == "GET" {
            return Answer::json(
                200,
                json!({"type": 1, "id": "1100", "name": "alerts", "channel_id": "2200",
                "guild_id": "3300", "token": "SECRETwebhookTOKEN"}),
            );
        }
        if r.query.contains("wait=true") {
            return Answer::json(200, json!({"id": "4400", "content": r.body["content"]}));
        }
        Answer::empty(204)
    }

    /// A told rejection's text is Discord's JSON body, or its message.
    fn fail(&self, told: &Told) -> Answer {
        if let Told::RateLimited(s) = told {
            // The body's retry_after is in seconds, fractional.
            return Answer::json(
                429,
                json!({"message": "You are being rate limited.", "retry_after": *s as f64, "global": false}),
            );
        }
        let (status, text) = told.status_text();
        let body = serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({"message": text, "code": 0}));
        Answer::json(status, body)
    }
}

pub fn start() -> Peer<Discord> {
    Peer::start(Discord)
}

impl Peer<Discord> {
    /// The webhook's URL on this stand-in (the token is its secret).
    pub fn discord_url(&self) -> String {
        format!("{}{PATH}", self.url)
    }
}
