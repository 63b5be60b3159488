//! Alert files: `queries/<name>.json`, one alert each.
//!
//! Loading is strict (unknown keys are errors, so typos are caught) and every
//! problem carries a `path:line:column` a user can jump to.

pub mod error;
mod loader;
pub mod locate;
pub mod problems;
pub mod schedule;
mod size;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use error::{LoadError, Problem};
pub use loader::{
    LoadReport, MAX_FILE_SIZE, ReadError, alert_files as loader_files, load_bytes, load_dir,
    load_file, load_named, parse_alert, read_alert_file, read_regular,
};
pub use schedule::{HumanDuration, MAX_DURATION, MAX_DURATION_TEXT, Schedule, check_max};
pub use size::ByteSize;

use crate::condition::ConditionSpec;

/// One index pattern or several.
#[derive(Debug, Clone, Serialize)]
pub struct Indices(pub Vec<String>);

impl<'de> Deserialize<'de> for Indices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_or_many(
            d,
            "`index` must be a string or an array of strings, e.g. \"winlogbeat-*\"",
            "`index` must name at least one non-empty index pattern",
        )
        .map(Indices)
    }
}

/// A string or a non-empty array of non-empty strings, as one list;
/// `wrong_type` and `empty` are the errors a user reads.
pub fn one_or_many<'de, D: Deserializer<'de>>(
    d: D,
    wrong_type: &str,
    empty: &str,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let v = match OneOrMany::deserialize(d).map_err(|_| serde::de::Error::custom(wrong_type))? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if v.is_empty() || v.iter().any(|s| s.trim().is_empty()) {
        return Err(serde::de::Error::custom(empty));
    }
    Ok(v)
}

/// Where a notification can go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Medium {
    /// Slack (webhook or bot token).
    Slack,
    /// Email over SMTP.
    Email,
}

impl Medium {
    /// The medium's name as written in files and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Medium::Slack => "slack",
            Medium::Email => "email",
        }
    }
}

/// Per-alert Slack settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlackOverride {
    /// Channel for this alert in bot-token mode, e.g. `#soc`.
    pub channel: Option<String>,
}

/// Per-alert email recipients.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EmailOverride {
    /// Replaces the default `To` recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// Replaces the default `Cc` recipients.
    #[serde(default)]
    pub cc: Vec<String>,
}

/// The alert file exactly as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFile {
    /// Index patterns to search, e.g. `"winlogbeat-*"`.
    pub index: Indices,
    /// The search request body, as pasted from Kibana Dev Tools. String values
    /// may hold templates such as `{{ window.start }}`. (Emptied once loaded:
    /// [`Alert::body`] keeps it.)
    pub body: Map<String, Value>,
    /// When the alert matches; by default when `hits.total > 0`.
    #[serde(default)]
    pub condition: ConditionSpec,
    /// The notification text (a Jinja template).
    pub message: String,
    /// The notification subject (a Jinja template).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// How often to run: a duration or a 6-field cron expression.
    #[serde(default)]
    pub schedule: Schedule,
    /// How long to stay quiet after firing; `0s` never throttles.
    #[serde(default = "default_throttle")]
    pub throttle_period: HumanDuration,
    /// Inactive alerts are validated but never run.
    #[serde(default = "yes")]
    pub active: bool,
    /// Where matches are sent: destination names from credentials.json
    /// (`slack` and `email` are its top-level sections; `outputs` names the rest).
    #[serde(default = "default_media", deserialize_with = "destination_names")]
    pub media: Vec<String>,
    /// The alert's own settings per destination, e.g.
    /// `{"oncall": {"severity": "warning"}}`; which keys a destination
    /// accepts depends on its type (`esalert check` says).
    #[serde(default)]
    pub outputs: std::collections::BTreeMap<String, Map<String, Value>>,
    /// Slack settings for this alert.
    #[serde(default)]
    pub slack: Option<SlackOverride>,
    /// Email recipients for this alert.
    #[serde(default)]
    pub email: Option<EmailOverride>,
    /// Free text for humans and templates.
    #[serde(default)]
    pub description: Option<String>,
    /// Shifts the search window back, for pipelines whose documents arrive late.
    #[serde(default = "zero")]
    pub query_delay: HumanDuration,
    /// The longest window a catch-up search covers after an outage.
    #[serde(default = "one_hour")]
    pub max_catchup: HumanDuration,
    /// IANA time zone for a cron schedule, e.g. `Europe/Madrid`; UTC when absent.
    #[serde(default, deserialize_with = "timezone")]
    pub timezone: Option<chrono_tz::Tz>,
    /// The largest search answer read for this alert; the cluster's
    /// `max_response_size` (default 10 MB) when absent.
    #[serde(default)]
    pub max_response_size: Option<ByteSize>,
    /// Per-entity matches: the condition is evaluated per element of an
    /// array in the response, and each key throttles and resolves alone.
    /// (This and the next settings are boxed and moved to the rule's
    /// `policy` once loaded: 10,000 alerts that don't use them carry 8 bytes
    /// each, not 200.)
    #[serde(default)]
    pub group_by: Option<Box<crate::pipeline::group::GroupBy>>,
    /// Send a `[resolved]` notice when a key that fired stops matching.
    #[serde(default)]
    pub notify_resolved: bool,
    /// How long a key goes unmatched before it is resolved; one schedule
    /// period when absent.
    #[serde(default)]
    pub resolve_after: Option<Box<HumanDuration>>,
    /// Merge matches into one notification per window.
    #[serde(default)]
    pub digest: Option<Box<crate::pipeline::digest::Digest>>,
    /// Lengthen the throttle while a key keeps matching.
    #[serde(default)]
    pub throttle_backoff: Option<Box<crate::rule::Backoff>>,
    /// With several instances sharing state (`--state es://...`): never
    /// send a delivery twice, even when an instance died while sending it
    /// (such a delivery is logged instead; it may be lost).
    #[serde(default)]
    pub at_most_once: bool,
    /// `false`: never fold this alert's count with other alerts' into one
    /// search (see `--max-fold`).
    #[serde(default)]
    pub fold: Option<bool>,
}

impl AlertFile {
    /// The pipeline's settings, the same for every front end, moved out of
    /// the file's settings (they live on in the rule's `policy`).
    pub fn take_policy(&mut self) -> crate::rule::Policy {
        crate::rule::Policy {
            group_by: self.group_by.take().map(|b| *b),
            notify_resolved: std::mem::take(&mut self.notify_resolved),
            resolve_after: self.resolve_after.take().map(|b| *b),
            digest: self.digest.take().map(|b| *b),
            throttle_backoff: self.throttle_backoff.take().map(|b| *b),
            at_most_once: self.at_most_once,
            fold: self.fold,
        }
    }
}

fn timezone<'de, D: Deserializer<'de>>(d: D) -> Result<Option<chrono_tz::Tz>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse::<chrono_tz::Tz>().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "unknown time zone {s:?}; use an IANA name such as \"Europe/Madrid\" or \"UTC\""
        ))
    })
}

fn default_subject() -> String {
    "[esalert] {{ alert.name }}".into()
}

fn default_throttle() -> HumanDuration {
    HumanDuration::parse("15m").expect("literal")
}

fn zero() -> HumanDuration {
    HumanDuration::parse("0s").expect("literal")
}

fn one_hour() -> HumanDuration {
    HumanDuration::parse("1h").expect("literal")
}

fn yes() -> bool {
    true
}

fn default_media() -> Vec<String> {
    vec!["slack".to_owned()]
}

fn destination_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(bad) = v.iter().find(|n| !valid_name(n)) {
        return Err(serde::de::Error::custom(format!(
            "`media` names destinations of credentials.json (`slack`, `email`, or a name under `outputs`); {bad:?} is not a valid name: use a-z, 0-9, _ and -"
        )));
    }
    Ok(v)
}

/// Every front end's files load into the one rule type.
pub use crate::rule::Rule as Alert;

/// Alert names are file stems, restricted so that they are safe in logs,
/// metrics labels and the store.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
