//! One evaluation of one alert: render the body, search, check the
//! condition, render the notification.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::alert::Alert;
use crate::alert::AlertFile;
use crate::condition::Condition;
use crate::condition::{Scope, ScriptEngine, ScriptError, hits_total};
use crate::notify::Notification;
use crate::pipeline::group::split;
use crate::render::{AlertInfo, GroupVars, Templates};
use crate::render::{MessageVars, RenderError, Rendered, Window};
use crate::search::{EsClient, SearchError};

/// Why an alert run failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The search failed.
    #[error("alert {alert}: search failed: {source}")]
    Search {
        /// The alert.
        alert: String,
        /// The cause.
        #[source]
        source: SearchError,
    },
    /// A template failed to render (the error names the alert).
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The rule is not a native alert (a watch, say).
    #[error("{0} is not a native alert")]
    NotNative(String),
    /// The condition script failed.
    #[error("alert {alert}: condition: {source}")]
    Condition {
        /// The alert.
        alert: String,
        /// The cause.
        #[source]
        source: ScriptError,
    },
}

impl EngineError {
    /// Whether the next run may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, EngineError::Search { source, .. } if source.is_transient())
    }

    /// The search error, if the search is what failed.
    pub fn search_error(&self) -> Option<&SearchError> {
        match self {
            EngineError::Search { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<EngineError> for crate::rule::EvalError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        match e {
            EngineError::Search { source, .. } => crate::rule::EvalError::search(message, source),
            _ => crate::rule::EvalError::new(message),
        }
    }
}

/// A native alert's own part.
#[derive(Debug, Clone)]
pub struct NativeAlert {
    /// The alert's name.
    pub name: String,
    /// The file's settings (the body is kept in [`Self::body`]).
    pub spec: Arc<AlertFile>,
    /// The search body as compact JSON text: a few hundred bytes per alert
    /// instead of a few kilobytes of `Value`, parsed again at each run.
    pub body: Arc<str>,
    /// The compiled condition.
    pub condition: Arc<Condition>,
    /// The compiled templates.
    pub templates: Arc<Templates>,
    /// `alert.*` for templates.
    pub info: Arc<AlertInfo>,
}

impl NativeAlert {
    /// The alert's settings for destination `name`: `outputs.<name>`, and
    /// for the destinations named `slack` and `email` the older `slack` and
    /// `email` sections.
    pub fn settings_for(&self, name: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut m = self.spec.outputs.get(name).cloned().unwrap_or_default();
        match name {
            "slack" => {
                if let Some(c) = self.spec.slack.as_ref().and_then(|s| s.channel.clone()) {
                    m.entry("channel").or_insert(c.into());
                }
            }
            "email" => {
                if let Some(e) = &self.spec.email {
                    if !e.to.is_empty() {
                        m.entry("to").or_insert(e.to.clone().into());
                    }
                    if !e.cc.is_empty() {
                        m.entry("cc").or_insert(e.cc.clone().into());
                    }
                }
            }
            _ => {}
        }
        m
    }

    /// The destinations a match goes to, each once, in the file's order.
    pub fn media(&self) -> Vec<String> {
        let mut m: Vec<String> = Vec::new();
        for d in &self.spec.media {
            if !m.contains(d) {
                m.push(d.clone());
            }
        }
        m
    }
}

impl Alert {
    /// The native alert, if this rule is one.
    pub fn native(&self) -> Option<&NativeAlert> {
        self.body_as()
    }
}

impl Notification {
    /// Builds the notification of a match of `alert`.
    pub fn new(alert: &NativeAlert, rendered: Rendered, hits: u64, time: DateTime<Utc>) -> Self {
        // Destination-specific parts are set per destination
        // (NativeAlert::plan in the native front end).
        Notification::of(&alert.name, rendered, hits, time)
    }
}

fn native(rule: &Alert) -> Result<&NativeAlert, EngineError> {
    rule.native()
        .ok_or_else(|| EngineError::NotNative(rule.name.clone()))
}

/// What one evaluation decided.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// The alert's name.
    pub alert: String,
    /// Whether the condition matched (for some key, with `group_by`).
    pub matched: bool,
    /// The response's hit count.
    pub hits: u64,
    /// The rendered subject, when matched without `group_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The rendered message, when matched without `group_by`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every flavour of the notification, when matched without `group_by`.
    #[serde(skip)]
    pub rendered: Option<Rendered>,
    /// With `group_by`: each matching key notified individually.
    #[serde(skip)]
    pub groups: Vec<(GroupVars, Rendered)>,
    /// With `group_by`: matching keys beyond `max_groups`, with counts.
    #[serde(skip)]
    pub overflow: Vec<(String, u64)>,
    /// Template errors that a fallback message stood in for.
    #[serde(skip)]
    pub template_errors: Vec<String>,
    /// Why the response was partial, if it was.
    #[serde(skip)]
    pub partial: Option<String>,
    /// A condition path that was missing from the response.
    #[serde(skip)]
    pub missing: Option<String>,
    /// The search's wall time.
    #[serde(skip)]
    pub took_ms: u64,
}

/// The default window: one schedule period up to now.
pub fn default_window(alert: &Alert, now: DateTime<Utc>) -> Window {
    Window {
        start: now - alert.period(now),
        end: now,
    }
}

/// Evaluates a response that is already at hand (from a search or a file).
/// A template that fails to render is an error.
///
/// Copies the response once for the templates; [`evaluate_shared`] doesn't.
pub fn evaluate(
    alert: &Alert,
    scripts: &ScriptEngine,
    response: &Value,
    now: DateTime<Utc>,
    window: Window,
) -> Result<Evaluation, EngineError> {
    evaluate_shared(
        alert,
        scripts,
        &Arc::new(response.clone()),
        now,
        window,
        false,
    )
}

/// What a match is sent with when its templates fail: the match is never
/// lost to a template mistake.
fn fallback(
    alert: &NativeAlert,
    hits: u64,
    window: Window,
    group: Option<&GroupVars>,
    e: &RenderError,
) -> Rendered {
    let about = group.map(|g| format!(" for {}", g.key)).unwrap_or_default();
    Rendered::from_data(
        format!("[esalert] {}{about}: matched (template error)", alert.name),
        format!(
            "Alert {}{about} matched {hits} hits in the window {} – {}, but its message could not be rendered: {e}\n\nFix the template; `esalert check` shows where.",
            alert.name,
            crate::render::fmt_time(&window.start),
            crate::render::fmt_time(&window.end),
        ),
    )
}

/// [`evaluate`] on a response that templates can share without a copy.
/// With `lenient`, a template that fails to render is replaced by a
/// fallback message naming the error (what the daemon sends).
pub fn evaluate_shared(
    alert: &Alert,
    scripts: &ScriptEngine,
    response: &Arc<Value>,
    now: DateTime<Utc>,
    window: Window,
    lenient: bool,
) -> Result<Evaluation, EngineError> {
    let rule = alert;
    let alert = native(alert)?;
    let condition_error = |source| EngineError::Condition {
        alert: alert.name.clone(),
        source,
    };
    let mut eval = Evaluation {
        alert: alert.name.clone(),
        matched: false,
        hits: hits_total(response),
        subject: None,
        message: None,
        rendered: None,
        groups: Vec::new(),
        overflow: Vec::new(),
        template_errors: Vec::new(),
        partial: None,
        missing: None,
        took_ms: 0,
    };
    let render = |group: Option<&GroupVars>,
                  script_message: Option<String>,
                  errors: &mut Vec<String>|
     -> Result<Rendered, EngineError> {
        let r = alert.templates.render_message(&MessageVars {
            response,
            alert: &alert.info,
            now,
            window,
            // Destinations are named, their types known only with the
            // credentials: every flavour is rendered.
            slack: true,
            html: true,
            group,
            resolved: false,
        });
        let rendered = match r {
            Ok(r) => r,
            Err(e) if lenient => {
                errors.push(e.to_string());
                fallback(
                    alert,
                    group.map_or(hits_total(response), |g| g.count),
                    window,
                    group,
                    &e,
                )
            }
            Err(e) => return Err(e.into()),
        };
        Ok(match script_message.filter(|m| !m.trim().is_empty()) {
            Some(m) => Rendered::from_data(rendered.subject, m),
            None => rendered,
        })
    };
    match &rule.policy.group_by {
        None => {
            let verdict = alert
                .condition
                .evaluate_at(scripts, response, now)
                .map_err(condition_error)?;
            eval.matched = verdict.matched;
            eval.missing = verdict.missing;
            if verdict.matched {
                let rendered = render(None, verdict.message, &mut eval.template_errors)?;
                eval.subject = Some(rendered.subject.clone());
                eval.message = Some(rendered.text.clone());
                eval.rendered = Some(rendered);
            }
        }
        Some(spec) => {
            let mut missing = None;
            let mut messages = std::collections::HashMap::new();
            let grouped = split(response, spec, |item, key| {
                let v =
                    alert
                        .condition
                        .evaluate_in(scripts, Scope::element(item, response), now)?;
                if v.missing.is_some() && missing.is_none() {
                    missing = v.missing.clone();
                }
                if v.matched
                    && let Some(m) = v.message
                {
                    messages.entry(key.to_owned()).or_insert(m);
                }
                Ok(v.matched)
            })
            .map_err(condition_error)?;
            eval.missing = grouped.missing.clone().or(missing);
            eval.matched = !grouped.groups.is_empty() || !grouped.overflow.is_empty();
            for g in grouped.groups {
                let m = messages.remove(&g.key);
                let rendered = render(Some(&g), m, &mut eval.template_errors)?;
                eval.groups.push((g, rendered));
            }
            eval.overflow = grouped.overflow;
        }
    }
    Ok(eval)
}

/// Renders the body, searches, and evaluates ([`evaluate_shared`]'s
/// `lenient`).
pub async fn search_and_evaluate(
    alert: &Alert,
    es: &EsClient,
    scripts: &ScriptEngine,
    now: DateTime<Utc>,
    window: Window,
    lenient: bool,
) -> Result<Evaluation, EngineError> {
    let rule = alert;
    let alert = native(rule)?;
    let body = alert
        .templates
        .render_body(&alert.body, &alert.info, now, window)?;
    let result = es
        .search_for(
            &alert.name,
            &alert.spec.index.0,
            &body,
            alert.spec.max_response_size,
        )
        .await
        .map_err(|source| EngineError::Search {
            alert: alert.name.clone(),
            source,
        })?;
    let response = Arc::new(result.response);
    let mut eval = evaluate_shared(rule, scripts, &response, now, window, lenient)?;
    eval.partial = result.partial;
    eval.took_ms = result.took_ms;
    Ok(eval)
}
