//! A Telegram Bot API stand-in: `/bot<token>/sendMessage` and `getMe`.
//! Checks the token, `chat_id` and `text` the way Telegram does, and with
//! `parse_mode: HTML` parses the entities like Telegram (only its tags,
//! balanced; `&` only in `&lt;`, `&gt;`, `&amp;`, `&quot;` or a numeric
//! entity), then the 4,096-character limit of the parsed text. Answers
//! `{"ok": true, …}` or Telegram's `{"ok": false, "error_code", "description"}`.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

pub const TOKEN: &str = "123456:AAHsecretTOKENxyz";
pub const MAX_TEXT: usize = 4096;

pub struct Telegram;

const TAGS: &[&str] = &[
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "a",
    "code",
    "pre",
    "span",
    "tg-spoiler",
    "tg-emoji",
    "blockquote",
];

/// Telegram's error body.
fn error(status: u16, text: impl Into<String>) -> Answer {
    Answer::json(
        status,
        json!({"ok": false, "error_code": status, "description": text.into()}),
    )
}

fn bad(text: impl Into<String>) -> Answer {
    error(400, format!("Bad Request: {}", text.into()))
}

/// The text Telegram shows for `html`, or why it can't parse it.
pub fn parse_html(html: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut open: Vec<String> = Vec::new();
    let mut i = 0;
    while i < html.len() {
        let rest = &html[i..];
        let c = rest.chars().next().unwrap();
        if c == '<' {
            let end = rest.find('>').ok_or(format!(
                "can't parse entities: unclosed start tag at byte offset {i}"
            ))?;
            let tag = &rest[1..end];
            if let Some(name) = tag.strip_prefix('/') {
                if open.pop().as_deref() != Some(name.trim()) {
                    return Err(format!(
                        "can't parse entities: unmatched end tag at byte offset {i}, expected \"</{}>\"",
                        name.trim()
                    ));
                }
            } else {
                let name = tag.split_whitespace().next().unwrap_or("");
                if !TAGS.contains(&name) {
                    return Err(format!(
                        "can't parse entities: unsupported start tag \"{name}\" at byte offset {i}"
                    ));
                }
                open.push(name.to_owned());
            }
            i += end + 1;
        } else if c == '&' {
            let end = rest.find(';').filter(|e| *e <= 10).ok_or(format!(
                "can't parse entities: unknown entity at byte offset {i}"
            ))?;
            let ent = &rest[1..end];
            let ch = match ent {
                "lt" => '<',
                "gt" => '>',
                "amp" => '&',
                "quot" => '"',
                _ => ent
                    .strip_prefix("#x")
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32)
                    .ok_or(format!(
                        "can't parse entities: unsupported entity \"&{ent};\" at byte offset {i}"
                    ))?,
            };
            out.push(ch);
            i += end + 1;
        } else {
            out.push(c);
            i += c.len_utf8();
        }
    }
    if let Some(t) = open.pop() {
        return Err(format!(
            "can't parse entities: can't find end tag corresponding to start tag \"{t}\""
        ));
    }
    Ok(out)
}

impl Provider for Telegram {
    // Telegram sends no Retry-After header: the delay is in the body.
    const RETRY_AFTER_HEADER: bool = false;

    fn check(&self, r: &Request) -> Result<(), Answer> {
        let Some(rest) = r.path.strip_prefix("/bot") else {
            return Err(error(404, "Not Found"));
        };
        let (token, method) = rest.split_once('/').unwrap_or((rest, ""));
        if token != TOKEN {
            return Err(error(401, "Unauthorized"));
        }
        match (r.method.as_str(), method) {
            ("GET" | "POST", "getMe") => return Ok(()),
            ("POST", "sendMessage") => {}
            _ => return Err(error(404, "Not Found: method not found")),
        }
        if !r.header("content-type").starts_with("application/json") {
            return Err(bad("message text is empty"));
        }
        let b = &r.body;
        match &b["chat_id"] {
            Value::Number(n) if n.is_i64() => {}
            Value::String(s) if !s.is_empty() => {}
            Value::Null => return Err(bad("chat_id is empty")),
            _ => return Err(bad("chat not found")),
        }
        if b["chat_id"] == json!(-404) {
            return Err(bad("chat not found"));
        }
        let text = b["text"]
            .as_str()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| bad("message text is empty"))?;
        let shown = match b["parse_mode"].as_str() {
            None => text.to_owned(),
            Some("HTML") => parse_html(text).map_err(bad)?,
            Some(m) => return Err(bad(format!("unsupported parse_mode \"{m}\""))),
        };
        if shown.encode_utf16().count() > MAX_TEXT {
            return Err(bad("message is too long"));
        }
        Ok(())
    }

    fn accept(&mut self, r: &Request) -> Answer {
        let result = if r.path.ends_with("/getMe") {
            json!({"id": 123456, "is_bot": true, "first_name": "esalert", "username": "esalert_bot"})
        } else {
            json!({"message_id": 1, "date": 1700000000, "chat": {"id": r.body["chat_id"], "type": "group"}, "text": "…"})
        };
        Answer::json(200, json!({"ok": true, "result": result}))
    }

    fn fail(&self, told: &Told) -> Answer {
        if let Told::RateLimited(s) = told {
            return Answer::json(
                429,
                json!({"ok": false, "error_code": 429,
                    "description": format!("Too Many Requests: retry after {s}"),
                    "parameters": {"retry_after": s}}),
            );
        }
        let (status, text) = told.status_text();
        error(status, text)
    }
}

pub fn start() -> Peer<Telegram> {
    Peer::start(Telegram)
}
