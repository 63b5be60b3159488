//! Elasticsearch Watcher watches: a `queries/<id>.json` whose top level has
//! `trigger` and `input` (see [`crate::watcher`]).

use std::any::Any;
use std::path::Path;

use futures::future::BoxFuture;
use serde_json::Value;

use super::FrontEnd;
use std::sync::Arc;

use crate::alert::{Alert, LoadError, Problem};
use crate::condition::ScriptEngine;
use crate::rule::{EvalContext, EvalError, Evaluated, Notice, PlannedAction, Rule, RuleBody};
use crate::watcher::{ActionKind, Watch};

impl Rule {
    /// The Watcher watch, if this rule is one.
    pub fn watch(&self) -> Option<&Watch> {
        self.body_as()
    }
}

/// Reads watch files.
pub struct WatchFrontEnd;

impl FrontEnd for WatchFrontEnd {
    fn name(&self) -> &'static str {
        "watch"
    }

    fn claims(&self, raw: &Value) -> bool {
        crate::watcher::is_watch(raw)
    }

    fn load(
        &self,
        name: &str,
        path: &Path,
        text: &str,
        raw: &Value,
        _scripts: &ScriptEngine,
    ) -> Result<Rule, LoadError> {
        parse_watch(name, path, text, raw)
    }
}

impl RuleBody for Watch {
    fn kind(&self) -> &'static str {
        "watch"
    }

    fn sinks(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .actions
            .iter()
            .filter(|a| matches!(a.kind, ActionKind::Slack { .. } | ActionKind::Email { .. }))
            .map(|a| a.kind.type_name().to_owned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn logs_actions(&self) -> bool {
        true
    }

    fn evaluate<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>> {
        Box::pin(async move { Ok(crate::watcher::exec::evaluate(self, rule, cx).await?) })
    }

    fn notice(&self, _rule: &Rule, notice: &Notice) -> Vec<PlannedAction> {
        let mut n = notice.clone();
        if n.resolved {
            n.subject = format!("[resolved] {}", n.subject);
        }
        crate::watcher::exec::notice(self, &n, notice.time)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Validates a Watcher watch file.
pub(super) fn parse_watch(
    name: &str,
    path: &Path,
    text: &str,
    raw: &Value,
) -> Result<Alert, LoadError> {
    let scripts = crate::condition::painless::stored::dir_for(path);
    let watch = crate::watcher::parse_in(name, text, raw, &scripts).map_err(|found| {
        LoadError::Invalid {
            problems: found
                .into_iter()
                .map(|(position, message)| Problem {
                    path: path.to_owned(),
                    position,
                    message,
                })
                .collect(),
        }
    })?;
    let policy = policy(path, text, raw)?;
    Ok(Alert {
        policy: crate::rule::Policy::shared(policy),
        name: name.to_owned(),
        path: path.to_owned(),
        schedule: watch.schedule.clone(),
        timezone: watch.timezone,
        active: raw["status"]["state"]["active"].as_bool().unwrap_or(true),
        query_delay: std::time::Duration::ZERO,
        max_catchup: std::time::Duration::from_secs(3600),
        body: Arc::new(watch),
    })
}

/// The pipeline's settings of a watch, under `metadata.esalert` (where
/// Elasticsearch keeps the watch valid): `group_by`, `notify_resolved`,
/// `resolve_after`, `digest`, `throttle_backoff`.
fn policy(path: &Path, text: &str, raw: &Value) -> Result<crate::rule::Policy, LoadError> {
    let Some(v) = raw.pointer("/metadata/esalert") else {
        return Ok(crate::rule::Policy::default());
    };
    serde_path_to_error::deserialize(v).map_err(|e| {
        let mut segs = vec![
            crate::alert::locate::Seg::key("metadata"),
            crate::alert::locate::Seg::key("esalert"),
        ];
        for s in e.path().iter() {
            match s {
                serde_path_to_error::Segment::Map { key } => {
                    segs.push(crate::alert::locate::Seg::key(key))
                }
                serde_path_to_error::Segment::Seq { index } => {
                    segs.push(crate::alert::locate::Seg::Index(*index))
                }
                _ => {}
            }
        }
        LoadError::Invalid {
            problems: vec![Problem {
                path: path.to_owned(),
                position: crate::alert::locate::locate(text, &segs),
                message: format!("metadata.esalert.{}: {}", e.path(), e.inner()),
            }],
        }
    })
}
