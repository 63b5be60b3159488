//! A Teams "Workflows" webhook stand-in: checks the message the way the
//! flow's trigger and Teams do (an Adaptive Card attachment of a known
//! version with TextBlocks and FactSets, at most 28 KB) and answers 202
//! or as told, with Power Automate's error shape.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

/// The largest payload Teams takes.
pub const MAX_PAYLOAD: usize = 28 * 1024;

/// The path of the workflow URL (its signature is in the query).
pub const PATH: &str = "/workflows/abc123/triggers/manual/paths/invoke";

pub struct Teams;

/// Power Automate's error body.
fn error(status: u16, text: impl Into<String>) -> Answer {
    let code = match status {
        400 | 413 => "TriggerInputSchemaMismatch",
        401 => "DirectApiAuthorizationRequired",
        429 => "WorkflowTriggeredTooFrequently",
        _ => "InternalServerError",
    };
    Answer::json(
        status,
        json!({"error": {"code": code, "message": text.into()}}),
    )
}

fn bad(text: impl Into<String>) -> Answer {
    error(400, text)
}

fn check_element(e: &Value, at: usize) -> Result<(), Answer> {
    match e["type"].as_str() {
        Some("TextBlock") => match &e["text"] {
            Value::String(_) => Ok(()),
            _ => Err(bad(format!(
                "body[{at}]: a TextBlock needs a string `text`"
            ))),
        },
        Some("FactSet") => {
            let facts = e["facts"]
                .as_array()
                .ok_or_else(|| bad(format!("body[{at}]: a FactSet needs `facts`")))?;
            for f in facts {
                if !f["title"].is_string() || !f["value"].is_string() {
                    return Err(bad(format!(
                        "body[{at}]: a fact needs string `title` and `value`"
                    )));
                }
            }
            Ok(())
        }
        other => Err(bad(format!("body[{at}]: unknown element type {other:?}"))),
    }
}

impl Provider for Teams {
    fn check(&self, r: &Request) -> Result<(), Answer> {
        if r.method != "POST" || r.path != PATH {
            return Err(error(404, "The workflow was not found"));
        }
        if !r.query.contains("sig=") {
            return Err(error(401, "The request must be signed"));
        }
        if r.text.len() > MAX_PAYLOAD {
            return Err(error(
                413,
                format!("The payload is {} bytes; the limit is 28 KB", r.text.len()),
            ));
        }
        let b = &r.body;
        if b["type"] != "message" {
            return Err(bad("`type` must be \"message\""));
        }
        let atts = b["attachments"]
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| bad("`attachments` must be a non-empty array"))?;
        for a in atts {
            if a["contentType"] != "application/vnd.microsoft.card.adaptive" {
                return Err(bad(
                    "an attachment's contentType must be application/vnd.microsoft.card.adaptive",
                ));
            }
            let c = &a["content"];
            if c["type"] != "AdaptiveCard"
                || c["$schema"] != "http://adaptivecards.io/schemas/adaptive-card.json"
            {
                return Err(bad(
                    "the attachment's content must be an AdaptiveCard with its $schema",
                ));
            }
            if !matches!(
                c["version"].as_str(),
                Some("1.0" | "1.1" | "1.2" | "1.3" | "1.4" | "1.5")
            ) {
                return Err(bad("unsupported AdaptiveCard version"));
            }
            let body = c["body"]
                .as_array()
                .ok_or_else(|| bad("the card needs a `body`"))?;
            for (i, e) in body.iter().enumerate() {
                check_element(e, i)?;
            }
        }
        Ok(())
    }

    fn accept(&mut self, _: &Request) -> Answer {
        Answer::empty(202)
    }

    fn fail(&self, told: &Told) -> Answer {
        let (status, text) = told.status_text();
        error(status, text)
    }
}

/// A workflow stand-in; its URL is [`Peer::teams_url`].
pub fn start() -> Peer<Teams> {
    Peer::start(Teams)
}

impl Peer<Teams> {
    /// The workflow's URL on this stand-in (the `sig` is its secret).
    pub fn teams_url(&self) -> String {
        format!(
            "{}{PATH}?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETsig123",
            self.url
        )
    }
}

/// The card of a Teams post.
pub fn card(post: &Value) -> &Value {
    &post["attachments"][0]["content"]
}
