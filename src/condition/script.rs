//! Sandboxed Rhai conditions.
//!
//! Rhai has no file, network or environment access unless a host registers
//! it; this engine registers none, disables `eval`, discards `print`, and caps
//! operations, call depth, string, array and map sizes so that a runaway
//! script fails fast instead of hanging the daemon.

use std::sync::Arc;

use rhai::{AST, Dynamic, Engine, EvalAltResult, Map, Scope};
use serde_json::Value;

use super::Verdict;

/// Limits applied to every script.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum number of operations per run.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum length of any string, in bytes.
    pub max_string_size: usize,
    /// Maximum number of elements in an array.
    pub max_array_size: usize,
    /// Maximum number of entries in a map.
    pub max_map_size: usize,
    /// Maximum memory one run may allocate, in bytes, on top of the
    /// response it is given: the per-value limits above don't bound the
    /// total (a map of many strings, each under the string limit), this does.
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 1_000_000,
            max_call_levels: 32,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_memory: 64 << 20,
        }
    }
}

/// Errors of compiling or running a script.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script does not parse.
    #[error("script does not compile at script line {line}, column {column}: {reason}")]
    Compile {
        /// 1-based line inside the script.
        line: usize,
        /// 1-based column inside the script.
        column: usize,
        /// Rhai's message.
        reason: String,
    },
    /// The script ran past its operation limit (an endless loop, usually).
    #[error("script stopped after {limit} operations (the limit); check it for an endless loop")]
    TooManyOperations {
        /// The limit that was hit.
        limit: u64,
    },
    /// The script allocated more than its memory budget.
    #[error(
        "script stopped: it used more than {} of memory (the limit); check it for strings or maps growing in a loop",
        crate::alloc_budget::fmt_bytes(*limit)
    )]
    TooMuchMemory {
        /// The limit that was hit, in bytes.
        limit: usize,
    },
    /// Any other run-time failure.
    #[error("script failed: {0}")]
    Runtime(String),
    /// The script returned something that is neither a bool nor a map.
    #[error(
        "script returned {0}; return a bool, or a map like #{{matched: true, message: \"...\"}}"
    )]
    BadReturn(String),
}

/// The token a run is terminated with when its memory budget is spent.
const OUT_OF_MEMORY: &str = "esalert: memory budget spent";

/// A compiled script.
#[derive(Debug, Clone)]
pub struct Script {
    ast: Arc<AST>,
    /// Whether the source names `response` (per-element runs convert it
    /// only then).
    names_response: bool,
}

/// The shared, sandboxed Rhai engine.
pub struct ScriptEngine {
    engine: Engine,
    limits: Limits,
}

impl std::fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("limits", &self.limits)
            .finish()
    }
}

impl Default for ScriptEngine {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl ScriptEngine {
    /// Builds an engine with the given limits.
    pub fn new(limits: Limits) -> Self {
        let mut engine = Engine::new();
        engine
            .set_max_operations(limits.max_operations)
            .set_max_call_levels(limits.max_call_levels)
            .set_max_string_size(limits.max_string_size)
            .set_max_array_size(limits.max_array_size)
            .set_max_map_size(limits.max_map_size)
            .set_max_expr_depths(64, 32)
            .disable_symbol("eval");
        // Checked at every operation: one operation allocates at most about
        // one value of the sizes above, so a run never holds much more
        // than `max_memory`.
        engine
            .on_progress(|_| crate::alloc_budget::exceeded().then(|| Dynamic::from(OUT_OF_MEMORY)));
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        ScriptEngine { engine, limits }
    }

    /// Compiles a script, reporting the position of a syntax error.
    pub fn compile(&self, source: &str) -> Result<Script, ScriptError> {
        let ast = self.engine.compile(source).map_err(|e| {
            let pos = e.position();
            ScriptError::Compile {
                line: pos.line().unwrap_or(0),
                column: pos.position().unwrap_or(0),
                reason: e.err_type().to_string(),
            }
        })?;
        Ok(Script {
            ast: Arc::new(ast),
            names_response: source.contains("response"),
        })
    }

    /// Runs a script with `response` in scope.
    pub fn run(&self, script: &Script, response: &Value) -> Result<Verdict, ScriptError> {
        let response: Dynamic =
            rhai::serde::to_dynamic(response).map_err(|e| ScriptError::Runtime(e.to_string()))?;
        let mut scope = Scope::new();
        scope.push_constant("response", response);
        self.run_in(script, scope)
    }

    /// Runs a script on one element of a response (`group_by`): `item` is
    /// the element and `response` the whole response, converted only when
    /// the script names it (a large response is costly per element).
    pub fn run_item(
        &self,
        script: &Script,
        item: &Value,
        response: &Value,
    ) -> Result<Verdict, ScriptError> {
        let to =
            |v: &Value| rhai::serde::to_dynamic(v).map_err(|e| ScriptError::Runtime(e.to_string()));
        let mut scope = Scope::new();
        scope.push_constant("item", to(item)?);
        if script.names_response {
            scope.push_constant("response", to(response)?);
        }
        self.run_in(script, scope)
    }

    fn run_in(&self, script: &Script, mut scope: Scope<'_>) -> Result<Verdict, ScriptError> {
        // Opened after the response is converted: the budget is for what
        // the script itself builds.
        let budget = crate::alloc_budget::Budget::open(self.limits.max_memory);
        let out = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &script.ast);
        // Whatever the script built is freed before the budget closes.
        drop(scope);
        let out = out.map_err(|e| match *e {
            EvalAltResult::ErrorTooManyOperations(_) => ScriptError::TooManyOperations {
                limit: self.limits.max_operations,
            },
            EvalAltResult::ErrorTerminated(ref token, _) if token.to_string() == OUT_OF_MEMORY => {
                ScriptError::TooMuchMemory {
                    limit: budget.limit(),
                }
            }
            other => ScriptError::Runtime(other.to_string()),
        });
        drop(budget);
        verdict(out?)
    }
}

fn verdict(out: Dynamic) -> Result<Verdict, ScriptError> {
    if let Some(b) = out.clone().try_cast::<bool>() {
        return Ok(Verdict {
            matched: b,
            ..Verdict::default()
        });
    }
    if let Some(map) = out.clone().try_cast::<Map>() {
        let matched = map
            .get("matched")
            .and_then(|v| v.clone().try_cast::<bool>())
            .ok_or_else(|| ScriptError::BadReturn("a map without a bool `matched`".into()))?;
        let message = match map.get("message") {
            None => None,
            Some(m) if m.is_unit() => None,
            Some(m) => Some(m.to_string()),
        };
        return Ok(Verdict {
            matched,
            message,
            missing: None,
        });
    }
    Err(ScriptError::BadReturn(format!(
        "a value of type {}",
        out.type_name()
    )))
}

/// A script condition, compiled.
#[derive(Debug)]
struct ScriptCheck(Script);

impl super::Check for ScriptCheck {
    fn check(
        &self,
        scripts: &ScriptEngine,
        at: super::Scope<'_>,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Verdict, ScriptError> {
        match at.response {
            None => scripts.run(&self.0, at.item),
            Some(whole) => scripts.run_item(&self.0, at.item, whole),
        }
    }
}

/// A condition that passes when parsing: a script must be a string; it is
/// compiled once the engine is at hand.
#[derive(Debug)]
struct Unchecked;

impl super::Check for Unchecked {
    fn check(
        &self,
        _: &ScriptEngine,
        _: super::Scope<'_>,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<Verdict, ScriptError> {
        Err(ScriptError::Runtime("script was never compiled".into()))
    }
}

pub(super) fn compile_check(
    body: &Value,
    engine: Option<&ScriptEngine>,
) -> Result<Arc<dyn super::Check>, super::CompileError> {
    let Value::String(src) = body else {
        return Err(super::CompileError::Invalid(
            "`script` takes the Rhai source as a string".into(),
        ));
    };
    match engine {
        Some(e) => Ok(Arc::new(ScriptCheck(e.compile(src)?))),
        None => Ok(Arc::new(Unchecked)),
    }
}
