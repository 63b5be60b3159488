//! Jira (REST v2): an issue per incident, comments for its repeats.
//!
//! Every issue esalert opens carries a label of the incident key of
//! (alert, group key). A match first searches for an issue of the project
//! with that label that is not done: if there is one, the match becomes a
//! comment on it; otherwise a new issue is opened. So a repeat never opens
//! a second ticket while the first is being worked on, and once it is done
//! the next match opens a fresh one. A resolved notice is a comment on the
//! open issue (nothing when there is none); esalert never transitions
//! issues, because workflows differ from project to project.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use super::destinations::{DestinationType, SettingError, settings};
use super::http;
use super::{Message, Sink, SinkError};
use crate::alert::HumanDuration;
use crate::notify::Notification;

/// Jira's limit on a summary.
const MAX_SUMMARY: usize = 255;
/// Below Jira's 32,767 characters for a description or a comment.
const MAX_TEXT: usize = 32_000;
/// Jira's limit on a label.
const MAX_LABEL: usize = 255;

/// `{"type": "jira", …}` in credentials.json.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Jira's address, e.g. `https://example.atlassian.net` (`api_url`
    /// means the same).
    #[serde(alias = "api_url")]
    url: String,
    /// The key of the project issues are opened in, e.g. `SOC`.
    project: String,
    /// The issue type of new issues.
    #[serde(default = "task")]
    issue_type: String,
    /// Jira Cloud: the account's email address, with `api_token`.
    #[serde(default)]
    username: Option<String>,
    /// Jira Cloud: an API token of `username` (basic auth).
    #[serde(default)]
    api_token: Option<SecretString>,
    /// Jira Data Center: a personal access token (bearer auth).
    #[serde(default)]
    token: Option<SecretString>,
    /// Labels of new issues besides the incident's and `esalert`; an
    /// alert's own `labels` replace them.
    #[serde(default)]
    labels: Vec<String>,
    /// The priority's name (`High`, …); the project's default when absent.
    /// An alert may override it.
    #[serde(default)]
    priority: Option<String>,
    /// Names of components new issues belong to.
    #[serde(default)]
    components: Vec<String>,
    /// Overall time for one request (a match makes two).
    #[serde(default = "crate::config::default_timeout")]
    timeout: HumanDuration,
}

fn task() -> String {
    "Task".into()
}

enum Auth {
    Basic(String, SecretString),
    Bearer(SecretString),
}

struct JiraSink {
    /// The destination's name.
    name: String,
    /// `url` without a trailing `/`.
    base: String,
    cfg: Config,
    auth: Auth,
    client: reqwest::Client,
}

/// `{"type": "jira", "url": …, "project": …, …}`.
pub(super) static TYPE: DestinationType = DestinationType {
    name: "jira",
    overridable: &["labels", "priority"],
    build: |name, v, _| Ok(Arc::new(JiraSink::new(name, settings(v)?)?)),
    lint: super::destinations::no_lint,
    notices: false,
};

/// Why a label can't be sent, if it can't.
fn label_problem(l: &str) -> Option<String> {
    if l.is_empty() || l.chars().any(char::is_whitespace) {
        Some(format!("Jira labels can't be empty or hold spaces: {l:?}"))
    } else if l.chars().count() > MAX_LABEL {
        Some(format!(
            "Jira labels are at most {MAX_LABEL} characters: {l:?}"
        ))
    } else {
        None
    }
}

/// A JQL string literal.
fn jql_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `text` in Jira's wiki markup, shown as written: a `{noformat}` block
/// keeps line breaks, and nothing a response value holds becomes markup
/// or a link. At most [`MAX_TEXT`] characters.
fn wiki_literal(text: &str) -> String {
    const FENCE: &str = "{noformat}";
    let inner = text.replace(FENCE, "{ noformat}");
    let inner = http::truncate(&inner, MAX_TEXT - 2 * (FENCE.len() + 1));
    format!("{FENCE}\n{inner}\n{FENCE}")
}

/// The label of the incident `n` is about: its incident key, which
/// holds no spaces for a native alert's name; a watch's id might.
fn incident_label(n: &Notification) -> String {
    n.incident_key()
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect()
}

/// Jira's `{"errorMessages": [...], "errors": {field: message}}`, joined.
fn jira_errors(v: &Value) -> Option<String> {
    let mut out: Vec<String> = v["errorMessages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    if let Some(errs) = v["errors"].as_object() {
        out.extend(
            errs.iter()
                .map(|(k, m)| format!("{k}: {}", m.as_str().unwrap_or_default())),
        );
    }
    (!out.is_empty()).then(|| out.join("; "))
}

impl JiraSink {
    fn new(name: &str, cfg: Config) -> Result<JiraSink, SettingError> {
        let base = http::base_url(&cfg.url, "url", "https://example.atlassian.net")?;
        let auth = match (&cfg.username, &cfg.api_token, &cfg.token) {
            (Some(u), Some(t), None) => Auth::Basic(u.clone(), t.clone()),
            (None, None, Some(t)) => Auth::Bearer(t.clone()),
            (Some(_), None, None) => {
                return Err(SettingError::at(
                    "api_token",
                    "`username` needs an `api_token` (Jira Cloud: id.atlassian.com → Security → API tokens)",
                ));
            }
            (None, Some(_), None) => {
                return Err(SettingError::at(
                    "username",
                    "`api_token` needs the account's `username` (its email address)",
                ));
            }
            (None, None, None) => {
                return Err(SettingError::at(
                    "",
                    "give `username` and `api_token` (Jira Cloud) or `token` (a Data Center personal access token)",
                ));
            }
            (_, _, Some(_)) => {
                return Err(SettingError::at(
                    "token",
                    "give either `token` or `username` and `api_token`, not both",
                ));
            }
        };
        if cfg.project.trim().is_empty() {
            return Err(SettingError::at(
                "project",
                "`project` is the project's key, e.g. \"SOC\"",
            ));
        }
        for (i, l) in cfg.labels.iter().enumerate() {
            if let Some(p) = label_problem(l) {
                return Err(SettingError::at(&format!("labels.{i}"), p));
            }
        }
        let client = crate::net::client(cfg.timeout.value)
            .map_err(|e| SettingError::at("", format!("cannot set up HTTPS: {e}")))?;
        Ok(JiraSink {
            name: name.to_owned(),
            base,
            cfg,
            auth,
            client,
        })
    }

    fn timeout(&self) -> Duration {
        self.cfg.timeout.value
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .client
            .request(method, format!("{}/rest/api/2/{path}", self.base));
        match &self.auth {
            Auth::Basic(u, t) => r.basic_auth(u, Some(t.expose_secret())),
            Auth::Bearer(t) => r.bearer_auth(t.expose_secret()),
        }
    }

    /// Sends `req`; see [`Self::verdict`].
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, SinkError> {
        self.verdict(http::send(&self.name, req, self.timeout()).await?)
    }

    /// The answer's JSON, or an error: a refusal carries Jira's own
    /// messages and what to check.
    fn verdict(&self, a: http::Answer) -> Result<Value, SinkError> {
        let status = a.status;
        if (400..500).contains(&status) && !matches!(status, 408 | 425 | 429) {
            let hint = match status {
                401 => " (check `username` and `api_token`, or `token`)",
                403 => " (the account may not use this project)",
                _ => "",
            };
            if let Some(msg) = jira_errors(&a.json()) {
                return Err(SinkError::permanent(
                    &self.name,
                    format!("HTTP {status}: Jira refused: {msg}{hint}"),
                ));
            }
            if !hint.is_empty() {
                return Err(SinkError::permanent(
                    &self.name,
                    format!("HTTP {status}{hint}"),
                ));
            }
        }
        Ok(http::check(&self.name, a)?.json())
    }

    /// The key of the project's issue for `label` that is not done, if any.
    async fn open_issue(&self, label: &str) -> Result<Option<String>, SinkError> {
        let jql = format!(
            "project = {} AND labels = {} AND statusCategory != Done ORDER BY created DESC",
            jql_str(&self.cfg.project),
            jql_str(label)
        );
        let query = [
            ("jql", jql.as_str()),
            ("fields", "key"),
            ("maxResults", "1"),
        ];
        let mut a = http::send(
            &self.name,
            self.request(reqwest::Method::GET, "search").query(&query),
            self.timeout(),
        )
        .await?;
        if a.status == 410 {
            // Jira Cloud retired `search` for `search/jql`, which takes the
            // same parameters; Data Center only has `search`.
            a = http::send(
                &self.name,
                self.request(reqwest::Method::GET, "search/jql")
                    .query(&query),
                self.timeout(),
            )
            .await?;
        }
        let v = self.verdict(a)?;
        let issues = v["issues"].as_array().ok_or_else(|| {
            SinkError::permanent(
                &self.name,
                "Jira's search answer has no `issues`: is `url` Jira's address?",
            )
        })?;
        Ok(issues
            .first()
            .and_then(|i| i["key"].as_str())
            .map(str::to_owned))
    }

    async fn comment(&self, issue: &str, text: &str) -> Result<(), SinkError> {
        let req = http::json(
            self.request(reqwest::Method::POST, &format!("issue/{issue}/comment")),
            &json!({"body": wiki_literal(text)}),
        );
        self.call(req).await.map(|_| ())
    }

    async fn create(&self, n: &Notification, label: String) -> Result<(), SinkError> {
        let extra = n
            .setting_list("labels")
            .unwrap_or_else(|| self.cfg.labels.clone());
        let mut labels = vec![label, "esalert".to_owned()];
        for l in extra {
            if let Some(p) = label_problem(&l) {
                return Err(SinkError::permanent(
                    &self.name,
                    format!("alert {}: outputs.{}.labels: {p}", n.alert, self.name),
                ));
            }
            if !labels.contains(&l) {
                labels.push(l);
            }
        }
        let mut fields = json!({
            "project": {"key": self.cfg.project},
            "issuetype": {"name": self.cfg.issue_type},
            "summary": http::truncate(&crate::render::one_line(&n.rendered.subject), MAX_SUMMARY),
            "description": wiki_literal(&n.rendered.text),
            "labels": labels,
        });
        if let Some(p) = n.setting("priority").or(self.cfg.priority.as_deref()) {
            fields["priority"] = json!({ "name": p });
        }
        if !self.cfg.components.is_empty() {
            fields["components"] = self
                .cfg
                .components
                .iter()
                .map(|c| json!({ "name": c }))
                .collect();
        }
        let req = http::json(
            self.request(reqwest::Method::POST, "issue"),
            &json!({ "fields": fields }),
        );
        let v = self.call(req).await?;
        tracing::debug!(
            alert = n.alert.as_str(),
            sink = self.name.as_str(),
            issue = v["key"].as_str().unwrap_or_default(),
            "Jira issue opened"
        );
        Ok(())
    }
}

impl Sink for JiraSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, m: &'a Message) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let n = super::destinations::notification(&self.name, m)?;
            let label = incident_label(n);
            let open = self.open_issue(&label).await?;
            let text = format!("{}\n\n{}", n.rendered.subject, n.rendered.text);
            match open {
                Some(issue) => self.comment(&issue, &text).await,
                // A resolution with nothing open has nothing to say.
                None if n.resolved => Ok(()),
                None => self.create(n, label).await,
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.call(self.request(reqwest::Method::GET, "myself"))
                .await
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jira_errors_are_joined_for_the_log() {
        let v = json!({"errorMessages": ["Project does not exist"], "errors": {"priority": "bad priority"}});
        assert_eq!(
            jira_errors(&v).as_deref(),
            Some("Project does not exist; priority: bad priority")
        );
        assert_eq!(
            jira_errors(&json!({"errorMessages": [], "errors": {}})),
            None
        );
    }

    #[test]
    fn text_is_literal_and_within_limits() {
        let w = wiki_literal("a {noformat} [x|http://evil]");
        assert_eq!(w, "{noformat}\na { noformat} [x|http://evil]\n{noformat}");
        assert!(wiki_literal(&"x".repeat(40_000)).chars().count() <= MAX_TEXT);
        assert_eq!(jql_str(r#"a"b\"#), r#""a\"b\\""#);
        assert!(label_problem("two words").is_some());
        assert!(label_problem("esalert-x-0123").is_none());
    }
}
