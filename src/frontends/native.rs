//! Native alerts: `queries/<name>.json` with `index`, `body`, `condition`
//! and a Jinja `message` (see [`crate::alert`] for the file format and
//! [`crate::engine`] for one evaluation).

use std::any::Any;
use std::path::Path;

use futures::future::BoxFuture;
use serde_json::Value;

use super::FrontEnd;
use std::sync::Arc;

use crate::alert::locate::{Seg, locate, locate_in_string};
use crate::alert::problems::deserialize_all;
use crate::alert::{Alert, AlertFile, LoadError, Problem};
use crate::condition::Condition;
use crate::condition::ScriptEngine;
pub use crate::engine::NativeAlert;
use crate::notify::Notification;
use crate::render::{AlertInfo, Templates};
use crate::rule::{EvalContext, EvalError, Evaluated, Plan, PlannedAction, Rule, RuleBody};
use crate::sinks::Message;
use crate::throttle::RULE_SCOPE;

/// Reads native alert files.
pub struct NativeFrontEnd;

impl FrontEnd for NativeFrontEnd {
    fn name(&self) -> &'static str {
        "native"
    }

    fn claims(&self, _raw: &Value) -> bool {
        true
    }

    fn load(
        &self,
        name: &str,
        path: &Path,
        text: &str,
        _raw: &Value,
        scripts: &ScriptEngine,
    ) -> Result<Rule, LoadError> {
        parse_native(name, path, text, scripts)
    }
}

impl RuleBody for NativeAlert {
    fn kind(&self) -> &'static str {
        "native"
    }

    fn sinks(&self) -> Vec<String> {
        self.media().iter().map(|m| m.as_str().to_owned()).collect()
    }

    fn evaluate<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>> {
        Box::pin(async move {
            let eval = match cx.saved {
                Some(resp) => crate::engine::evaluate(rule, cx.scripts, resp, cx.now, cx.window),
                None => {
                    crate::engine::search_and_evaluate(rule, cx.es, cx.scripts, cx.now, cx.window)
                        .await
                }
            }
            .map_err(EvalError::from)?;
            let mut detail = serde_json::Map::new();
            if let Some(s) = &eval.subject {
                detail.insert("subject".into(), Value::String(s.clone()));
            }
            if let Some(m) = &eval.message {
                detail.insert("message".into(), Value::String(m.clone()));
            }
            let mut actions = Vec::new();
            if let Some(rendered) = eval.rendered {
                let n = Notification::new(self, rendered, eval.hits, cx.now);
                for m in self.media() {
                    actions.push(PlannedAction {
                        id: m.as_str().to_owned(),
                        kind: m.as_str(),
                        scope: RULE_SCOPE.to_owned(),
                        throttle: self.spec.throttle_period.value,
                        ackable: false,
                        plan: Plan::Send(vec![Message::Notification {
                            sink: m.as_str().to_owned(),
                            notification: n.clone(),
                        }]),
                    });
                }
            }
            Ok(Evaluated {
                matched: eval.matched,
                hits: eval.hits,
                partial: eval.partial,
                missing: eval.missing,
                took_ms: eval.took_ms,
                actions,
                detail,
            })
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Validates a native alert file (the JSON already parses to an object).
pub(super) fn parse_native(
    name: &str,
    path: &Path,
    text: &str,
    engine: &ScriptEngine,
) -> Result<Alert, LoadError> {
    // Pass 2: the schema; every problem, each with its position.
    let (spec, mut problems) = deserialize_all::<AlertFile>(path, text);
    let Some(spec) = spec else {
        return Err(LoadError::Invalid { problems });
    };

    // Pass 3: what serde cannot see, on whatever parsed; collect every problem.
    let here = |segs: &[Seg]| locate(text, segs);
    let body = Value::Object(spec.body.clone());
    let templates = match Templates::compile(name, &spec.subject, &spec.message, &body) {
        Ok(t) => Some(t),
        Err(errs) => {
            for e in errs {
                problems.push(Problem {
                    path: path.to_owned(),
                    position: match e.offset {
                        Some(at) => locate_in_string(text, &e.at, at),
                        None => here(&e.at),
                    },
                    message: e.error.to_string(),
                });
            }
            None
        }
    };
    let condition = match Condition::compile(spec.condition.clone(), engine) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Problem {
                path: path.to_owned(),
                position: here(&[Seg::key("condition"), Seg::key("script")]),
                message: e.to_string(),
            });
            None
        }
    };
    if spec.media.is_empty() {
        problems.push(Problem {
            path: path.to_owned(),
            position: here(&[Seg::key("media")]),
            message: "`media` is empty: name at least one of \"slack\", \"email\"".into(),
        });
    }
    let (Some(templates), Some(condition), true) = (templates, condition, problems.is_empty())
    else {
        // In the order a reader meets them in the file.
        problems.sort_by_key(|p| p.position.map(|p| (p.line, p.column)));
        return Err(LoadError::Invalid { problems });
    };
    let info = AlertInfo {
        name: name.to_owned(),
        description: spec.description.clone().unwrap_or_default(),
        index: spec.index.0.join(","),
    };
    // The body lives on as text in `NativeAlert::body`, not twice as a Value.
    let mut spec = spec;
    spec.body = serde_json::Map::new();
    // Compiled above; the parsed form would only take memory.
    spec.condition = crate::condition::ConditionSpec::compiled();
    let spec = Arc::new(spec);
    Ok(Alert {
        name: name.to_owned(),
        path: path.to_owned(),
        schedule: spec.schedule.clone(),
        timezone: spec.timezone,
        active: spec.active,
        query_delay: spec.query_delay.value,
        max_catchup: spec.max_catchup.value,
        body: Arc::new(NativeAlert {
            name: name.to_owned(),
            body: Arc::from(body.to_string()),
            spec,
            condition: Arc::new(condition),
            templates: Arc::new(templates),
            info: Arc::new(info),
        }),
    })
}
