//! The one rule every front end compiles to, and what its evaluation yields.
//!
//! A [`Rule`] carries what the pipeline needs of any rule (name, schedule,
//! window settings) and a [`RuleBody`]: the front end's own part, which runs
//! query → transform → condition → render and returns planned actions. What
//! happens to those actions (throttle, ack, outbox, delivery, retry,
//! history) is the pipeline's, the same for every front end.

use std::any::Any;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::alert::schedule::Schedule;
use crate::condition::ScriptEngine;
use crate::render::Window;
use crate::search::{EsClient, SearchError};
use crate::sinks::Message;

/// A loaded, validated rule, ready to run.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The file stem.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// When it runs.
    pub schedule: Schedule,
    /// IANA time zone of a cron schedule; UTC when absent.
    pub timezone: Option<chrono_tz::Tz>,
    /// Inactive rules are validated but never run.
    pub active: bool,
    /// Shifts the window back, for documents that arrive late.
    pub query_delay: Duration,
    /// The longest window a catch-up search covers after an outage.
    pub max_catchup: Duration,
    /// What the pipeline does with matches besides throttling them.
    pub policy: Arc<Policy>,
    /// The front end's part.
    pub body: Arc<dyn RuleBody>,
}

/// The pipeline's settings of a rule, the same for every front end: native
/// alerts write them at the top level, watches under `metadata.esalert`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Per-entity matches, throttles and resolutions.
    #[serde(default)]
    pub group_by: Option<crate::pipeline::group::GroupBy>,
    /// Send a resolved notice when a key that fired stops matching.
    #[serde(default)]
    pub notify_resolved: bool,
    /// How long a key must go unmatched to count as resolved; one schedule
    /// period when absent.
    #[serde(default)]
    pub resolve_after: Option<crate::alert::HumanDuration>,
    /// Merge matches into one notification per window.
    #[serde(default)]
    pub digest: Option<crate::pipeline::digest::Digest>,
    /// Lengthen the throttle while a key keeps matching.
    #[serde(default)]
    pub throttle_backoff: Option<Backoff>,
    /// With shared state: a delivery an instance began and may have sent
    /// before dying is logged by the next owner, not sent again.
    #[serde(default)]
    pub at_most_once: bool,
    /// `"fold": false`: never fold this rule's count with other rules'
    /// (see [`crate::search::fold`]); folding is on when absent.
    #[serde(default)]
    pub fold: Option<bool>,
}

/// `throttle_backoff`: each throttle period is the previous one times
/// `factor`, up to `max`, until the key resolves (ElastAlert's
/// `exponential_realert`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    /// The multiplier, from 1 to 100.
    #[serde(deserialize_with = "factor")]
    pub factor: f64,
    /// The longest throttle period.
    pub max: crate::alert::HumanDuration,
}

fn factor<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let f = <f64 as serde::Deserialize>::deserialize(d)?;
    if (1.0..=100.0).contains(&f) {
        Ok(f)
    } else {
        Err(serde::de::Error::custom(format!(
            "`throttle_backoff.factor` must be between 1 and 100, found {f}"
        )))
    }
}

impl Backoff {
    /// The period after `prev` seconds, given the base period.
    pub fn next(&self, prev: Option<u64>, base: u64) -> u64 {
        let max = self.max.value.as_secs().max(base);
        match prev {
            None => base,
            Some(p) => {
                let next = (p.max(1) as f64 * self.factor).round();
                if next.is_finite() && next < max as f64 {
                    (next as u64).max(base)
                } else {
                    max
                }
            }
        }
    }
}

impl Policy {
    /// `policy` behind an `Arc`, the same one for every rule that sets
    /// nothing (most rules: 10,000 of them needn't hold 10,000 copies).
    pub fn shared(policy: Policy) -> Arc<Policy> {
        static DEFAULT: std::sync::LazyLock<Arc<Policy>> =
            std::sync::LazyLock::new(|| Arc::new(Policy::default()));
        if policy.is_default() {
            DEFAULT.clone()
        } else {
            Arc::new(policy)
        }
    }

    fn is_default(&self) -> bool {
        // Destructured so that a new field can't be forgotten here (one was:
        // `at_most_once` alone used to be dropped for the shared default).
        let Policy {
            group_by,
            notify_resolved,
            resolve_after,
            digest,
            throttle_backoff,
            at_most_once,
            fold,
        } = self;
        group_by.is_none()
            && !notify_resolved
            && resolve_after.is_none()
            && digest.is_none()
            && throttle_backoff.is_none()
            && !at_most_once
            && fold.is_none()
    }

    /// Whether the rule's count may be folded with other rules'.
    pub fn folds(&self) -> bool {
        self.fold != Some(false)
    }

    /// How long a key goes unmatched before it is resolved.
    pub fn resolve_after(&self, period: chrono::Duration) -> chrono::Duration {
        self.resolve_after
            .as_ref()
            .and_then(|d| chrono::Duration::from_std(d.value).ok())
            .unwrap_or(period)
    }
}

impl Rule {
    /// The front end's part as its concrete type, for front-end tools
    /// (`ack` for watches, benches for native alerts).
    pub fn body_as<T: 'static>(&self) -> Option<&T> {
        self.body.as_any().downcast_ref::<T>()
    }

    /// The default window length at `due`: one schedule period.
    pub fn period(&self, due: DateTime<Utc>) -> chrono::Duration {
        self.schedule.period_at(due, self.timezone)
    }
}

/// What the pipeline gives a front end for one evaluation.
pub struct EvalContext<'a> {
    /// The cluster.
    pub es: &'a EsClient,
    /// For `http` inputs.
    pub http: &'a reqwest::Client,
    /// For Rhai conditions.
    pub scripts: &'a ScriptEngine,
    /// When the run started.
    pub now: DateTime<Utc>,
    /// The scheduled tick.
    pub scheduled: DateTime<Utc>,
    /// The time range to search.
    pub window: Window,
    /// A saved response that stands for every search (`test --response`),
    /// shared so that templates read it without a copy.
    pub saved: Option<&'a std::sync::Arc<Value>>,
    /// What the rule body asked to remember at its last successful run
    /// (stateful rule types: known terms, previous counts).
    pub memory: Option<&'a Value>,
    /// (Group key, scope) pairs whose actions won't be delivered this run
    /// (throttled, acknowledged), so that the front end can skip their work.
    pub suppressed: &'a (dyn Fn(&str, &str) -> Option<&'static str> + Sync),
}

/// An action a match asks for.
#[derive(Debug, Clone)]
pub struct PlannedAction {
    /// The action's id (`slack`, `email`, a Watcher action id).
    pub id: String,
    /// The group key it is about ([`crate::throttle::WHOLE_RULE`] without
    /// `group_by`).
    pub key: String,
    /// Its type, for logs (`slack`, `email`, `webhook`, …).
    pub kind: &'static str,
    /// The throttle scope: [`crate::throttle::RULE_SCOPE`] when the rule
    /// throttles as a whole.
    pub scope: String,
    /// The scope's throttle period.
    pub throttle: Duration,
    /// Whether Watcher acknowledgement applies.
    pub ackable: bool,
    /// What to send, or why nothing is.
    pub plan: Plan,
}

/// A notification the pipeline composes rather than the rule's templates.
#[derive(Debug, Clone)]
pub struct Notice {
    /// The group key it is about.
    pub key: String,
    /// One line.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// The hit count it stands for.
    pub hits: u64,
    /// When.
    pub time: DateTime<Utc>,
    /// A resolved notice: the rule's templates are tried first with
    /// `resolved` set, and sinks mark it (green bar, ✅).
    pub resolved: bool,
    /// A digest's first match's group key (front ends title a digest as
    /// they title that match).
    pub first_key: Option<String>,
}

/// What an action will do.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Deliver these messages.
    Send(Vec<Message>),
    /// Its own condition was false (Watcher `condition_failed`).
    ConditionFailed,
    /// Left out by the front end because its scope was suppressed.
    Suppressed(&'static str),
}

/// What one evaluation came to.
#[derive(Debug, Clone, Default)]
pub struct Evaluated {
    /// Whether the rule's condition matched.
    pub matched: bool,
    /// The response's hit count.
    pub hits: u64,
    /// Why the response was partial, if it was.
    pub partial: Option<String>,
    /// A condition path that was missing from the response.
    pub missing: Option<String>,
    /// The search's wall time.
    pub took_ms: u64,
    /// The actions, when matched.
    pub actions: Vec<PlannedAction>,
    /// Every key that matched (beyond `max_groups` too); `[""]` for a
    /// matched rule without `group_by`.
    pub keys: Vec<String>,
    /// What to remember for the next run, stored with the run's outcome
    /// (`None` keeps what was remembered).
    pub memory: Option<Value>,
    /// What each match adds to the rule's digest, when it has one (a
    /// key without entries adds one line, its subject).
    pub digest: Vec<crate::pipeline::digest::DigestEntry>,
    /// What `esalert test` prints besides `alert`, `matched` and `hits`
    /// (the rendered notification, or Watcher's `watch_record`).
    pub detail: serde_json::Map<String, Value>,
}

/// Why an evaluation failed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EvalError {
    message: String,
    search: Option<SearchError>,
}

impl EvalError {
    /// An error with its full message (naming the rule).
    pub fn new(message: impl Into<String>) -> Self {
        EvalError {
            message: message.into(),
            search: None,
        }
    }

    /// A failed search; `message` names the rule and includes the cause.
    pub fn search(message: impl Into<String>, source: SearchError) -> Self {
        EvalError {
            message: message.into(),
            search: Some(source),
        }
    }

    /// The search error, if the search is what failed.
    pub fn search_error(&self) -> Option<&SearchError> {
        self.search.as_ref()
    }
}

/// A front end's part of a rule.
pub trait RuleBody: Send + Sync + fmt::Debug + Any {
    /// `native`, `watch`, …
    fn kind(&self) -> &'static str;
    /// The sinks its actions may use, for `check` against credentials.
    fn sinks(&self) -> Vec<String>;
    /// Whether alerts.log gets one line per action (Watcher's history
    /// shape) besides the run's line.
    fn logs_actions(&self) -> bool {
        false
    }
    /// Query → transform → condition → group → render.
    fn evaluate<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>>;
    /// A notification of the pipeline's making (a resolved notice, a
    /// digest, a summary of keys beyond `max_groups`) to the rule's media.
    fn notice(&self, rule: &Rule, notice: &Notice) -> Vec<PlannedAction>;
    /// What the file holds that is ignored (said by `check` and logged at
    /// load, without refusing the rule).
    fn warnings(&self) -> &[crate::alert::Problem] {
        &[]
    }
    /// The search of a run whose hit count alone may decide it, so that
    /// it can be folded with other rules' into one count (see
    /// [`crate::search::fold`]); or why not.
    fn foldable<'a>(
        &'a self,
        _rule: &'a Rule,
        _cx: &'a EvalContext<'a>,
    ) -> Result<Foldable<'a>, String> {
        Err(format!("{} rules are not folded", self.kind()))
    }
    /// Itself, for [`Rule::body_as`].
    fn as_any(&self) -> &dyn Any;
}

/// A run's search that a count may answer: for every count `c` for which
/// `needs_search(c)` is false, the run evaluated on a response holding
/// only that count (no documents, [`crate::search::fold::counted`]) does
/// not match and is exactly the run evaluated on the search's own response.
pub struct Foldable<'a> {
    /// The indices searched.
    pub indices: Vec<String>,
    /// The search body exactly as the run sends it.
    pub body: Value,
    /// Whether a count needs the run's own search: it (may) match, or the
    /// rule looks at the documents. Decided without side effects.
    pub needs_search: Box<dyn Fn(u64) -> bool + Send + Sync + 'a>,
}

impl fmt::Debug for Foldable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Foldable")
            .field("indices", &self.indices)
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::Policy;

    #[test]
    fn a_policy_setting_alone_is_kept() {
        let p = Policy::shared(Policy {
            at_most_once: true,
            ..Policy::default()
        });
        assert!(p.at_most_once);
        let p = Policy::shared(Policy {
            fold: Some(false),
            ..Policy::default()
        });
        assert!(!p.folds());
        assert!(!Policy::shared(Policy::default()).at_most_once);
    }
}
