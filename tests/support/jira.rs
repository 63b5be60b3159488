//! A Jira (REST v2) stand-in: issue search by JQL, new issues, comments
//! and `myself`, checking requests as Jira does (basic auth with an API
//! token or a bearer PAT, required fields and their types, the project,
//! issue types and priorities it knows, summary and label rules, text
//! limits) and answering as told: 2xx, 400 with Jira's error body, 401,
//! 429 with `Retry-After`, 500, or a hang. Tests move an issue to Done.

use serde_json::{Value, json};

use super::peer::{Answer, Peer, Provider, Request, Told};

pub const PROJECT: &str = "SOC";
pub const USER: &str = "bot@example.com";
pub const API_TOKEN: &str = "jira-api-token-0123";
pub const PAT: &str = "jira-pat-0123";

/// An issue as the stand-in keeps it.
#[derive(Clone, Debug)]
pub struct Issue {
    pub key: String,
    pub fields: Value,
    /// `To Do`, `In Progress` or `Done`.
    pub status: String,
    pub comments: Vec<String>,
}

/// Jira, with the issues it keeps.
#[derive(Default)]
pub struct Jira {
    issues: Vec<Issue>,
    /// Answer `search` with 410, as Jira Cloud does since it moved to
    /// `search/jql`.
    cloud: bool,
}

pub type JiraStandIn = Peer<Jira>;

fn errors(status: u16, messages: &[&str], fields: Value) -> Answer {
    Answer::json(status, json!({"errorMessages": messages, "errors": fields}))
}

fn field_error(field: &str, m: &str) -> Answer {
    errors(400, &[], json!({ field: m }))
}

/// The label and project of `project = "X" AND labels = "L" AND
/// statusCategory != Done [ORDER BY …]`, the only JQL esalert writes;
/// anything else is a JQL error.
fn parse_jql(jql: &str) -> Result<(String, String), String> {
    let jql = jql.split(" ORDER BY ").next().unwrap_or_default();
    let (mut project, mut label, mut open_only) = (None, None, false);
    for clause in jql.split(" AND ") {
        let clause = clause.trim();
        let quoted = |rest: &str| -> Option<String> {
            let r = rest.trim().strip_prefix('"')?.strip_suffix('"')?;
            Some(r.replace("\\\"", "\"").replace("\\\\", "\\"))
        };
        if let Some(r) = clause.strip_prefix("project = ") {
            project = quoted(r);
        } else if let Some(r) = clause.strip_prefix("labels = ") {
            label = quoted(r);
        } else if clause == "statusCategory != Done" {
            open_only = true;
        } else {
            return Err(format!(
                "Error in the JQL Query: the clause {clause:?} is not understood."
            ));
        }
    }
    match (project, label, open_only) {
        (Some(p), Some(l), true) => Ok((p, l)),
        _ => Err(format!(
            "the stand-in expects project, labels and statusCategory clauses: {jql}"
        )),
    }
}

/// Jira's checks of `fields` for a new issue.
fn validate(fields: &Value) -> Result<(), Answer> {
    if !fields.is_object() {
        return Err(errors(
            400,
            &["Can not deserialize instance of com.atlassian.jira.rest.v2.issue.IssueUpdateBean"],
            json!({}),
        ));
    }
    if fields["project"]["key"].as_str() != Some(PROJECT) {
        return Err(field_error("project", "valid project is required"));
    }
    match fields["issuetype"]["name"].as_str() {
        Some("Task" | "Bug" | "Incident") => {}
        _ => {
            return Err(field_error("issuetype", "Specify a valid issue type"));
        }
    }
    match fields["summary"].as_str() {
        None | Some("") => {
            return Err(field_error(
                "summary",
                "You must specify a summary of the issue.",
            ));
        }
        Some(s) if s.contains('\n') => {
            return Err(field_error(
                "summary",
                "The summary is invalid because it contains newline characters.",
            ));
        }
        Some(s) if s.chars().count() > 255 => {
            return Err(field_error(
                "summary",
                "Summary must be less than 255 characters.",
            ));
        }
        _ => {}
    }
    if let Some(d) = fields.get("description") {
        match d.as_str() {
            Some(d) if d.chars().count() <= 32_767 => {}
            Some(_) => {
                return Err(field_error(
                    "description",
                    "The entered text is too long. It exceeds the allowed limit of 32,767 characters.",
                ));
            }
            None => {
                return Err(field_error(
                    "description",
                    "Operation value must be a string",
                ));
            }
        }
    }
    if let Some(ls) = fields.get("labels") {
        let ok = ls.as_array().is_some_and(|a| {
            a.iter().all(|l| {
                l.as_str()
                    .is_some_and(|l| !l.is_empty() && !l.contains(' ') && l.chars().count() <= 255)
            })
        });
        if !ok {
            return Err(field_error("labels", "The label can't contain spaces."));
        }
    }
    if let Some(p) = fields.get("priority") {
        match p["name"].as_str() {
            Some("Highest" | "High" | "Medium" | "Low" | "Lowest") => {}
            _ => return Err(field_error("priority", "The priority selected is invalid.")),
        }
    }
    Ok(())
}

/// Standard base64 with padding, for the expected `Basic` credentials.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn authorized(r: &Request) -> bool {
    let basic = base64(format!("{USER}:{API_TOKEN}").as_bytes());
    let got = r.header("authorization");
    got == format!("Basic {basic}") || got == format!("Bearer {PAT}")
}

fn unauthenticated() -> Answer {
    errors(
        401,
        &["You are not authenticated. Authentication required to perform this operation."],
        json!({}),
    )
}

impl Provider for Jira {
    fn check(&self, req: &Request) -> Result<(), Answer> {
        if !authorized(req) {
            return Err(unauthenticated());
        }
        Ok(())
    }

    fn accept(&mut self, req: &Request) -> Answer {
        answer(self, req)
    }

    fn fail(&self, told: &Told) -> Answer {
        match told {
            Told::Reject(m) => errors(400, &[m], json!({})),
            Told::Unauthorized => unauthenticated(),
            Told::RateLimited(_) => errors(429, &["Rate limit exceeded."], json!({})),
            _ => errors(500, &["Internal server error"], json!({})),
        }
    }
}

fn answer(s: &mut Jira, req: &Request) -> Answer {
    let (query, body) = (req.query.as_str(), &req.body);
    let path = req.path.strip_prefix("/rest/api/2/").unwrap_or("");
    match (req.method.as_str(), path) {
        ("GET", "myself") => Answer::json(
            200,
            json!({"accountId": "5b10a2844c20165700ede21g", "emailAddress": USER, "active": true}),
        ),
        ("GET", "search") if s.cloud => errors(
            410,
            &[
                "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API.",
            ],
            json!({}),
        ),
        ("GET", "search" | "search/jql") => {
            let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            let jql = params
                .iter()
                .find(|(k, _)| k == "jql")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let (project, label) = match parse_jql(&jql) {
                Ok(x) => x,
                Err(m) => return errors(400, &[&m], json!({})),
            };
            // Newest first, as `ORDER BY created DESC` asks.
            let found: Vec<Value> = s
                .issues
                .iter()
                .rev()
                .filter(|i| {
                    i.status != "Done"
                        && project == PROJECT
                        && i.fields["labels"]
                            .as_array()
                            .is_some_and(|ls| ls.iter().any(|l| l == &json!(label)))
                })
                .map(|i| json!({"id": "1", "key": i.key, "fields": {}}))
                .collect();
            Answer::json(
                200,
                json!({"startAt": 0, "maxResults": 50, "total": found.len(), "issues": found}),
            )
        }
        ("POST", "issue") => {
            if let Err(e) = validate(&body["fields"]) {
                return e;
            }
            let key = format!("{PROJECT}-{}", s.issues.len() + 1);
            s.issues.push(Issue {
                key: key.clone(),
                fields: body["fields"].clone(),
                status: "To Do".into(),
                comments: Vec::new(),
            });
            Answer::json(
                201,
                json!({"id": "10001", "key": key, "self": format!("http://jira/rest/api/2/issue/{key}")}),
            )
        }
        ("POST", p) if p.starts_with("issue/") && p.ends_with("/comment") => {
            let key = &p["issue/".len()..p.len() - "/comment".len()];
            let Some(issue) = s.issues.iter_mut().find(|i| i.key == key) else {
                return errors(
                    404,
                    &["Issue does not exist or you do not have permission to see it."],
                    json!({}),
                );
            };
            match body["body"].as_str() {
                Some(b) if !b.is_empty() && b.chars().count() <= 32_767 => {
                    issue.comments.push(b.to_owned());
                    Answer::json(201, json!({"id": "10000", "body": b}))
                }
                _ => field_error("comment", "Comment body can not be empty!"),
            }
        }
        _ => errors(404, &["null for uri"], json!({})),
    }
}

pub fn start() -> JiraStandIn {
    Peer::start(Jira::default())
}

impl JiraStandIn {
    /// Answers `search` with 410 Gone, as Jira Cloud does now.
    pub fn retire_search(&self) {
        self.with(|j| j.cloud = true);
    }

    /// Moves an issue to `status` (`Done` closes it for searches).
    pub fn set_status(&self, key: &str, status: &str) {
        self.with(|j| {
            let i = j.issues.iter_mut().find(|i| i.key == key).expect("issue");
            i.status = status.to_owned();
        });
    }

    pub fn issues(&self) -> Vec<Issue> {
        self.with(|j| j.issues.clone())
    }

    /// An `outputs` entry with basic auth (Jira Cloud).
    pub fn destination(&self, extra: Value) -> Value {
        let mut d = json!({"type": "jira", "url": self.url, "project": PROJECT,
            "username": USER, "api_token": API_TOKEN});
        if let (Value::Object(d), Value::Object(e)) = (&mut d, extra) {
            d.extend(e);
        }
        d
    }
}
