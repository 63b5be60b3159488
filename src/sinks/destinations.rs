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

/// No lint beyond the schema.
pub fn no_lint(_: &Value) -> Vec<SettingError> {
    Vec::new()
}

/// Every destination type; adding one is a file and a line here.
pub static TYPES: &[&DestinationType] = &[
    &super::slack::TYPE,
    &super::email::TYPE,
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

/// Builds every destination of `outputs`.
pub fn build_all(
    creds: &Credentials,
) -> Result<Vec<crate::notify::Destination>, (String, SettingError)> {
    let cx = Context { credentials: creds };
    let mut out = Vec::new();
    for (name, v) in &creds.outputs {
        if !crate::alert::valid_name(name) || RESERVED.contains(&name.as_str()) {
            return Err((
                name.clone(),
                SettingError::at(
                    "",
                    format!(
                        "{name:?} can't name a destination: use a-z, 0-9, _ and -, and none of {}",
                        RESERVED.join(", ")
                    ),
                ),
            ));
        }
        if (name == "slack" && creds.slack.is_some()) || (name == "email" && creds.email.is_some())
        {
            return Err((
                name.clone(),
                SettingError::at(
                    "",
                    format!(
                        "{name:?} is already the top-level \"{name}\" section; give this destination another name"
                    ),
                ),
            ));
        }
        let t = type_of(v).map_err(|e| (name.clone(), e))?;
        let sink = (t.build)(name, v, &cx).map_err(|e| (name.clone(), e))?;
        out.push((name.clone(), t, sink));
    }
    Ok(out)
}
