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
use crate::render::{GroupVars, Rendered};
use crate::rule::{
    EvalContext, EvalError, Evaluated, Foldable, Notice, Plan, PlannedAction, Rule, RuleBody,
};
use crate::sinks::Message;
use crate::throttle::{RULE_SCOPE, WHOLE_RULE};

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
        self.media()
    }

    fn evaluate<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Evaluated, EvalError>> {
        Box::pin(async move {
            let eval = match cx.saved {
                Some(resp) => {
                    crate::engine::evaluate_shared(rule, cx.scripts, resp, cx.now, cx.window, true)
                }
                None => {
                    crate::engine::search_and_evaluate(
                        rule, cx.es, cx.scripts, cx.now, cx.window, true,
                    )
                    .await
                }
            }
            .map_err(EvalError::from)?;
            for e in &eval.template_errors {
                tracing::warn!(alert = rule.name.as_str(), event = "template_error", error = %e,
                    "a match is sent with a fallback message");
            }
            let mut detail = serde_json::Map::new();
            if let Some(s) = &eval.subject {
                detail.insert("subject".into(), Value::String(s.clone()));
            }
            if let Some(m) = &eval.message {
                detail.insert("message".into(), Value::String(m.clone()));
            }
            if !eval.template_errors.is_empty() {
                detail.insert(
                    "template_errors".into(),
                    Value::from(eval.template_errors.clone()),
                );
            }
            let mut actions = Vec::new();
            let mut keys = Vec::new();
            let mut digest = Vec::new();
            let spec = rule.policy.digest.as_ref();
            if let Some(rendered) = eval.rendered {
                if let Some(spec) = spec {
                    digest.push(spec.entry(
                        WHOLE_RULE,
                        |_| None,
                        rendered.subject.clone(),
                        rendered.text.clone(),
                    ));
                }
                let mut n = Notification::new(self, rendered, eval.hits, cx.now);
                n.window = Some(cx.window);
                actions.extend(self.plan(WHOLE_RULE, &n));
                keys.push(WHOLE_RULE.to_owned());
            }
            if rule.policy.group_by.is_some() {
                let mut groups = Vec::new();
                for (g, rendered) in eval.groups {
                    groups.push(serde_json::json!({"key": g.key, "count": g.count,
                        "subject": rendered.subject, "message": rendered.text}));
                    if let Some(spec) = spec {
                        // `key` and `fields` are paths in the group's item.
                        let lookup =
                            |p: &str| match crate::condition::Path::parse(p).resolve(&g.item) {
                                None | Some(Value::Null) => None,
                                Some(Value::String(s)) => Some(s.clone()),
                                Some(v) => Some(v.to_string()),
                            };
                        digest.push(spec.entry(
                            &g.key,
                            lookup,
                            rendered.subject.clone(),
                            rendered.text.clone(),
                        ));
                    }
                    let mut n = Notification::new(self, rendered, g.count, cx.now);
                    n.window = Some(cx.window);
                    actions.extend(self.plan(&g.key, &n));
                    keys.push(g.key);
                }
                let grouped = crate::pipeline::group::Grouped {
                    overflow: eval.overflow,
                    ..Default::default()
                };
                if let Some(text) = grouped.overflow_text() {
                    let total = grouped.overflow.iter().map(|(_, n)| *n).sum();
                    detail.insert("overflow".into(), Value::String(text.clone()));
                    actions.extend(self.notice(
                        rule,
                        &Notice {
                            key: crate::pipeline::group::OVERFLOW_KEY.to_owned(),
                            subject: format!(
                                "[esalert] {}: {} more keys matched",
                                self.name,
                                grouped.overflow.len()
                            ),
                            text,
                            hits: total,
                            time: cx.now,
                            resolved: false,
                            first_key: None,
                        },
                    ));
                    keys.extend(grouped.overflow.into_iter().map(|(k, _)| k));
                }
                detail.insert("groups".into(), Value::Array(groups));
            }
            Ok(Evaluated {
                digest,
                matched: eval.matched,
                hits: eval.hits,
                partial: eval.partial,
                missing: eval.missing,
                took_ms: eval.took_ms,
                actions,
                keys,
                memory: None,
                detail,
            })
        })
    }

    fn foldable<'a>(
        &'a self,
        rule: &'a Rule,
        cx: &'a EvalContext<'a>,
    ) -> Result<Foldable<'a>, String> {
        if rule.policy.group_by.is_some() {
            return Err("its condition is evaluated per group (`group_by`)".into());
        }
        if !self.condition.counts_only() {
            return Err("its condition reads more of the response than hits.total".into());
        }
        let body = self
            .templates
            .render_body(&self.body, &self.info, cx.now, cx.window)
            .map_err(|e| e.to_string())?;
        let (condition, scripts, now) = (&self.condition, cx.scripts, cx.now);
        Ok(Foldable {
            indices: self.spec.index.0.clone(),
            body,
            // The condition alone, on the count: nothing rendered, nothing
            // logged. An error is the run's own to report.
            needs_search: Box::new(move |count| {
                let response = crate::search::fold::counted(count);
                condition
                    .evaluate_at(scripts, &response, now)
                    .map_or(true, |v| v.matched || v.missing.is_some())
            }),
        })
    }

    fn notice(&self, rule: &Rule, notice: &Notice) -> Vec<PlannedAction> {
        let mut rendered = Rendered::from_data(
            if notice.resolved {
                format!("[resolved] {}", notice.subject)
            } else {
                notice.subject.clone()
            },
            notice.text.clone(),
        );
        if notice.resolved {
            // The rule's own templates, with `resolved` set, when they
            // render without a match's response.
            let group = GroupVars {
                key: notice.key.clone(),
                item: Arc::new(Value::Null),
                count: 0,
            };
            let empty = Arc::new(serde_json::json!({}));
            if let Ok(r) = self.templates.render_message(&crate::render::MessageVars {
                response: &empty,
                alert: &self.info,
                now: notice.time,
                window: crate::render::Window {
                    start: notice.time,
                    end: notice.time,
                },
                slack: true,
                html: true,
                group: rule.policy.group_by.as_ref().map(|_| &group),
                resolved: true,
            }) {
                rendered = Rendered {
                    subject: format!("[resolved] {}", r.subject),
                    ..r
                };
            }
        }
        let mut n = Notification::new(self, rendered, notice.hits, notice.time);
        n.resolved = notice.resolved;
        self.plan(&notice.key, &n)
            .into_iter()
            .map(|mut a| {
                // Pipeline notices never start or obey a throttle.
                a.throttle = std::time::Duration::ZERO;
                a
            })
            .collect()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl NativeAlert {
    /// One action per medium, all carrying notification `n` about `key`.
    /// One action per destination, each with the alert's settings for it.
    fn plan(&self, key: &str, n: &Notification) -> Vec<PlannedAction> {
        self.media()
            .into_iter()
            .map(|m| {
                let mut n = n.clone();
                n.key = key.to_owned();
                n.settings = self.settings_for(&m);
                PlannedAction {
                    id: m.clone(),
                    key: key.to_owned(),
                    kind: "notification",
                    scope: RULE_SCOPE.to_owned(),
                    throttle: self.spec.throttle_period.value,
                    ackable: false,
                    plan: Plan::Send(vec![Message::Notification {
                        sink: m,
                        notification: n,
                    }]),
                }
            })
            .collect()
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
    let policy = crate::rule::Policy::shared(spec.take_policy());
    let spec = Arc::new(spec);
    Ok(Alert {
        policy,
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
