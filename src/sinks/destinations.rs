//! Named destinations: `credentials.json`'s `outputs` map.
//!
//! ```json
//! "outputs": {
//!   "soc-slack": {"type": "slack", "webhook_url": "${SOC_WEBHOOK}"},
//!   "oncall":    {"type": "pagerduty", "routing_key": "${PD_ROUTING_KEY}"}
//! }
//! ```
//!
//! Each destination type is one file in this module's parent, exposing a
//! [`DestinationType`], and one line in [`TYPES`]. A type's settings are a
//! serde struct with `deny_unknown_fields` and a doc comment per field; an
//! alert names destinations in its `media` and may override the settings
//! its type lists as [`DestinationType::overridable`] (`outputs.<name>` in
//! the alert file), which reach the sink as [`Notification::settings`].
//!
//! [`Notification::settings`]: crate::notify::Notification::settings

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Sink;
use crate::config::Credentials;

/// What a destination is built with besides its own settings.
pub struct Context<'a> {
    /// The whole credentials file (the history destination indexes into
    /// the searched cluster unless told otherwise).
    pub credentials: &'a Credentials,
}

/// A problem with one setting of a destination: where (the path inside the
/// destination's object, e.g. `["routing_key"]`) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    /// Keys (and indexes as strings) from the destination's object.
    pub at: Vec<String>,
    /// What is wrong, for a person.
    pub message: String,
}

impl SettingError {
    /// A problem at `at` (a key of the destination's object, or "").
    pub fn at(at: &str, message: impl Into<String>) -> Self {
        SettingError {
            at: at
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            message: message.into(),
        }
    }
}

/// Builds a destination named `name` from its settings.
pub type BuildFn = fn(&str, &Value, &Context<'_>) -> Result<Arc<dyn Sink>, SettingError>;

/// One type of destination.
pub struct DestinationType {
    /// The `type` written in credentials.json.
    pub name: &'static str,
    /// Settings an alert may give for itself (`outputs.<name>.<key>`).
    pub overridable: &'static [&'static str],
    /// Builds it; errors name the setting.
    pub build: BuildFn,
    /// Settings that parse but are ignored in this configuration (e.g. a
    /// `channel` with a Slack webhook): for `esalert check`.
    pub lint: fn(&Value) -> Vec<SettingError>,
    /// Whether esalert's notices about itself ("alert is failing", "the
    /// cluster is unreachable") go here unless `notices` says otherwise:
    /// destinations people read, not ticket systems.
    pub notices: bool,
}

/// The notification a destination was given: every type under `outputs`
/// takes notifications, never Watcher's own messages.
pub fn notification<'m>(
    name: &str,
    m: &'m super::Message,
) -> Result<&'m crate::notify::Notification, super::SinkError> {
    match m {
        super::Message::Notification { notification, .. } => Ok(notification),
        other => Err(super::SinkError::permanent(
            name,
            format!(
                "destination {name:?} sends notifications, not {} messages",
                other.sink()
            ),
        )),
    }
}

/// No lint beyond the schema.
pub fn no_lint(_: &Value) -> Vec<SettingError> {
    Vec::new()
}

/// Every destination type; adding one is a file and a line here.
pub static TYPES: &[&DestinationType] = &[
    &super::slack::TYPE,
    &super::email::TYPE,
    &super::pagerduty::TYPE,
    &super::opsgenie::TYPE,
    &super::webhook_dest::TYPE,
    &super::teams::TYPE,
    &super::telegram::TYPE,
    &super::discord::TYPE,
    &super::history::TYPE,
    &super::thehive::TYPE,
    &super::jira::TYPE,
    &super::command::TYPE,
];

/// The type named `name`.
pub fn of_type(name: &str) -> Option<&'static DestinationType> {
    TYPES.iter().copied().find(|t| t.name == name)
}

/// Names that are not destinations' to take: Watcher actions' sinks.
pub const RESERVED: &[&str] = &["webhook", "index", "logging"];

/// A destination's type, from its `type` key.
pub fn type_of(settings: &Value) -> Result<&'static DestinationType, SettingError> {
    let names: Vec<&str> = TYPES.iter().map(|t| t.name).collect();
    let t = settings
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            SettingError::at(
                "type",
                format!(
                    "a destination needs a \"type\": one of {}",
                    names.join(", ")
                ),
            )
        })?;
    of_type(t).ok_or_else(|| {
        SettingError::at(
            "type",
            format!(
                "unknown destination type {t:?}; use one of {}",
                names.join(", ")
            ),
        )
    })
}

/// Parses a destination's settings (its object without `type`) into `T`;
/// errors name the setting (never its value: settings hold secrets).
pub fn settings<T: DeserializeOwned>(v: &Value) -> Result<T, SettingError> {
    let mut v = v.clone();
    if let Value::Object(m) = &mut v {
        m.remove("type");
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.inner().to_string();
        // serde quotes a value it met; secrets must not be shown.
        let message = if crate::config::is_secret_path(&at) {
            format!("`{at}` is not valid; its value is not shown because it is a secret")
        } else if at == "." {
            inner
        } else {
            format!("{inner} (at `{at}`)")
        };
        SettingError {
            at: if at == "." {
                Vec::new()
            } else {
                at.split('.').map(str::to_owned).collect()
            },
            message,
        }
    })
}

/// What is wrong with `name` as a destination's name, if anything.
fn name_problem(creds: &Credentials, name: &str) -> Option<SettingError> {
    if !crate::alert::valid_name(name) || RESERVED.contains(&name) {
        return Some(SettingError::at(
            "",
            format!(
                "{name:?} can't name a destination: use a-z, 0-9, _ and -, and none of {}",
                RESERVED.join(", ")
            ),
        ));
    }
    if (name == "slack" && creds.slack.is_some()) || (name == "email" && creds.email.is_some()) {
        return Some(SettingError::at(
            "",
            format!(
                "{name:?} is already the top-level \"{name}\" section; give this destination another name"
            ),
        ));
    }
    None
}

/// Builds every destination of `outputs`.
pub fn build_all(
    creds: &Credentials,
) -> Result<Vec<crate::notify::Destination>, (String, SettingError)> {
    let cx = Context { credentials: creds };
    let mut out = Vec::new();
    for (name, v) in &creds.outputs {
        if let Some(e) = name_problem(creds, name) {
            return Err((name.clone(), e));
        }
        let t = type_of(v).map_err(|e| (name.clone(), e))?;
        let sink = (t.build)(name, v, &cx).map_err(|e| (name.clone(), e))?;
        out.push((name.clone(), t, sink));
    }
    Ok(out)
}

/// Builds one destination of type `t` named `name` from `v`, with
/// credentials that have only a cluster: for a type's unit tests.
#[cfg(test)]
pub fn build_for_test(
    t: &DestinationType,
    name: &str,
    v: &Value,
) -> Result<Arc<dyn Sink>, SettingError> {
    crate::install_crypto_provider();
    let creds: Credentials = serde_json::from_value(
        serde_json::json!({"elasticsearch": {"url": "http://localhost:9200"}}),
    )
    .map_err(|e| SettingError::at("", e.to_string()))?;
    (t.build)(
        name,
        v,
        &Context {
            credentials: &creds,
        },
    )
}

/// Every problem of every destination of `outputs`, by destination name
/// (for `esalert check`, which reports them all at once where
/// [`build_all`] stops at the first): its name, its type, what building it
/// says, and its type's lint.
pub fn problems(creds: &Credentials) -> Vec<(String, SettingError)> {
    let cx = Context { credentials: creds };
    let mut out = Vec::new();
    for (name, v) in &creds.outputs {
        if let Some(e) = name_problem(creds, name) {
            out.push((name.clone(), e));
            continue;
        }
        let t = match type_of(v) {
            Ok(t) => t,
            Err(e) => {
                out.push((name.clone(), e));
                continue;
            }
        };
        if let Err(e) = (t.build)(name, v, &cx) {
            out.push((name.clone(), e));
        }
        out.extend((t.lint)(v).into_iter().map(|e| (name.clone(), e)));
    }
    out
}
