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
use crate::rule::{EvalContext, EvalError, Evaluated, Rule, RuleBody};
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
        _rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>> {
        Box::pin(async move { Ok(crate::watcher::exec::evaluate(self, cx).await?) })
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
    let watch = crate::watcher::parse(name, text, raw).map_err(|found| LoadError::Invalid {
        problems: found
            .into_iter()
            .map(|(position, message)| Problem {
                path: path.to_owned(),
                position,
                message,
            })
            .collect(),
    })?;
    Ok(Alert {
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
