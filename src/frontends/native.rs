//! Native alerts: `queries/<name>.json` with `index`, `body`, `condition`
//! and a Jinja `message` (see [`crate::alert`] for the file format and
//! [`crate::engine`] for one evaluation).

use std::any::Any;
use std::path::Path;

use futures::future::BoxFuture;
use serde_json::Value;

use super::FrontEnd;
use crate::alert::LoadError;
use crate::condition::ScriptEngine;
pub use crate::engine::NativeAlert;
use crate::notify::Notification;
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
        crate::alert::parse_native(name, path, text, scripts)
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
