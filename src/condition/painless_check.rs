//! The `painless` condition kind: `{"painless": "source"}` or
//! `{"painless": {"source": "…", "params": {…}}}`. The script sees the
//! response (or a watch's payload, or one `group_by` element) as
//! `ctx.payload` and must return a boolean.

use std::sync::Arc;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::painless::{self, Env, Limits, Times};
use super::{Check, CompileError, Scope, ScriptEngine, ScriptError, Verdict};

/// A watch run's share of `ctx` for its scripts: `watch_id`, `metadata`,
/// the times, and `ctx.vars`, which the condition, transforms and action
/// conditions of one run share.
#[derive(Debug)]
pub struct WatchCtx {
    /// `watch_id` and `metadata`.
    pub base: Value,
    /// `ctx.vars`.
    pub vars: Mutex<Value>,
    /// The run's times.
    pub times: Times,
}

impl WatchCtx {
    /// `ctx.vars` now.
    pub fn vars(&self) -> std::sync::MutexGuard<'_, Value> {
        self.vars.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh context for one run of a watch.
    pub fn new(
        watch_id: &str,
        metadata: &Value,
        now: DateTime<Utc>,
        scheduled: DateTime<Utc>,
    ) -> Self {
        WatchCtx {
            base: json!({"watch_id": watch_id, "metadata": metadata}),
            vars: Mutex::new(json!({})),
            times: Times {
                execution: now,
                triggered: now,
                scheduled,
            },
        }
    }
}

/// A compiled Painless script with its `params`.
#[derive(Debug, Clone)]
pub struct PainlessScript {
    /// The script.
    pub script: painless::Script,
    /// `params`.
    pub params: Value,
}

/// What a run of a watch script gives back.
#[derive(Debug)]
pub struct ScriptRun {
    /// The result as JSON.
    pub result: Value,
    /// Whether the result is a map.
    pub is_map: bool,
    /// The result when it is a boolean.
    pub boolean: Option<bool>,
    /// `ctx.payload` after the run, when the script could change it.
    pub payload: Option<Value>,
}

impl PainlessScript {
    /// Compiles `{"source": …, "params": …}` or a bare source string.
    pub fn compile(body: &Value) -> Result<PainlessScript, String> {
        let (src, params) = match body {
            Value::String(s) => (s.as_str(), Value::Null),
            Value::Object(m) => (
                m.get("source")
                    .or(m.get("inline"))
                    .and_then(Value::as_str)
                    .ok_or("a Painless script needs `source`")?,
                m.get("params").cloned().unwrap_or(Value::Null),
            ),
            _ => {
                return Err(
                    "a Painless script is a string or {\"source\": …, \"params\": {…}}".into(),
                );
            }
        };
        let script = painless::compile(src).map_err(|e| e.to_string())?;
        Ok(PainlessScript { script, params })
    }

    /// Runs with `payload` as `ctx.payload` (and a watch's `ctx`), sharing `ctx.vars`.
    pub fn run(
        &self,
        payload: &Value,
        watch: Option<&WatchCtx>,
        now: DateTime<Utc>,
    ) -> Result<ScriptRun, painless::PainlessError> {
        let empty = json!({"vars": {}});
        let (mut base, times) = match watch {
            Some(w) => (w.base.clone(), w.times),
            None => (
                empty,
                Times {
                    execution: now,
                    triggered: now,
                    scheduled: now,
                },
            ),
        };
        if let Some(w) = watch {
            base["vars"] = w.vars().clone();
        }
        let out = self.script.run(
            Env {
                payload,
                ctx: &base,
                params: &self.params,
                times: Some(times),
            },
            Limits::default(),
        )?;
        let mut payload_after = None;
        if let Some(Value::Object(mut ctx)) = out.ctx {
            if let (Some(w), Some(v)) = (watch, ctx.remove("vars")) {
                *w.vars.lock().unwrap_or_else(PoisonError::into_inner) = v;
            }
            payload_after = ctx.remove("payload");
        }
        Ok(ScriptRun {
            result: out.result,
            is_map: out.is_map,
            boolean: out.boolean,
            payload: payload_after,
        })
    }

    /// Runs as a condition: the result must be a boolean, as Watcher requires.
    pub fn condition(
        &self,
        payload: &Value,
        watch: Option<&WatchCtx>,
        now: DateTime<Utc>,
    ) -> Result<bool, String> {
        let r = self.run(payload, watch, now).map_err(|e| e.to_string())?;
        r.boolean.ok_or_else(|| {
            format!(
                "a Painless condition must return a boolean, but this one returned {}",
                r.result
            )
        })
    }
}

#[derive(Debug)]
struct PainlessCheck(PainlessScript);

/// A condition that runs a compiled script (a watch's `script` condition).
pub fn condition(script: PainlessScript) -> super::Condition {
    super::Condition(Arc::new(PainlessCheck(script)))
}

impl Check for PainlessCheck {
    fn check(
        &self,
        _scripts: &ScriptEngine,
        at: Scope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        let matched = self
            .0
            .condition(at.item, at.watch, now)
            .map_err(ScriptError::Runtime)?;
        Ok(Verdict::of(matched))
    }
}

pub(super) fn compile_check(
    body: &Value,
    _engine: Option<&ScriptEngine>,
) -> Result<Arc<dyn Check>, CompileError> {
    PainlessScript::compile(body)
        .map(|s| Arc::new(PainlessCheck(s)) as Arc<dyn Check>)
        .map_err(CompileError::Invalid)
}
