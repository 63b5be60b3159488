//! Conditions: does a search response warrant a notification?
//!
//! One implementation per kind, for every front end: `compare` and
//! `array_compare` follow Elasticsearch Watcher's semantics (with date math
//! and `{{ctx.payload…}}` operands) so that watches port over unchanged;
//! `script` runs sandboxed Rhai. Each kind is a [`Check`] in a file of its
//! own and one line in [`KINDS`].

mod compare;
mod constant;
pub mod painless;
pub mod painless_check;
pub mod script;

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value};

pub use compare::{ArrayCompare, Compare, Operand, Quantifier};
pub use painless_check::{PainlessScript, WatchCtx};
pub use script::{ScriptEngine, ScriptError};

/// A comparison operator, as Watcher names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    NotEq,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
}

impl Op {
    /// Parses an operator by its Watcher name (`eq`, `not_eq`, `gt`, …).
    pub fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "eq" => Op::Eq,
            "not_eq" => Op::NotEq,
            "gt" => Op::Gt,
            "gte" => Op::Gte,
            "lt" => Op::Lt,
            "lte" => Op::Lte,
            _ => return None,
        })
    }

    /// Applies the operator to two JSON values, leniently as Watcher does:
    /// numbers compare numerically (a numeric string counts as a number),
    /// strings lexically, booleans only with booleans. Anything that cannot be
    /// compared is false, except for `not_eq`.
    pub fn apply(self, left: Option<&Value>, right: &Value) -> bool {
        let left = left.unwrap_or(&Value::Null);
        if left.is_null() || right.is_null() {
            let both = left.is_null() && right.is_null();
            return match self {
                Op::Eq => both,
                Op::NotEq => !both,
                _ => false,
            };
        }
        let ord = lenient_cmp(left, right);
        match self {
            Op::Eq => ord == Some(Ordering::Equal) || (ord.is_none() && left == right),
            Op::NotEq => !(ord == Some(Ordering::Equal) || (ord.is_none() && left == right)),
            Op::Gt => ord == Some(Ordering::Greater),
            Op::Gte => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => ord == Some(Ordering::Less),
            Op::Lte => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        }
    }
}

const OPS: &str = "eq, not_eq, gt, gte, lt, lte";

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn lenient_cmp(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            as_number(left)?.partial_cmp(&as_number(right)?)
        }
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::String(b)) => Some(a.cmp(&b.parse().ok()?)),
        (Value::String(a), Value::Bool(b)) => Some(a.parse::<bool>().ok()?.cmp(b)),
        _ => None,
    }
}

/// A dot-separated path into a response: `aggregations.users.buckets.0.doc_count`.
///
/// A leading `ctx.payload.` is dropped so that Watcher paths work as written.
#[derive(Clone, PartialEq, Eq)]
pub struct Path {
    segs: Vec<String>,
}

impl Path {
    /// Parses a dotted path; the empty string names the value itself.
    pub fn parse(s: &str) -> Path {
        let s = s.strip_prefix("ctx.payload").unwrap_or(s);
        let s = s.strip_prefix('.').unwrap_or(s);
        Path {
            segs: s
                .split('.')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Resolves the path, or `None` when any part is missing.
    ///
    /// `hits.total` is the hit count on both response shapes: a number
    /// (7.x with `rest_total_hits_as_int`) or `{"value": n, "relation": ..}`.
    /// `hits.total.value` works on both as well.
    pub fn resolve<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        resolve_segs(&self.segs, root)
    }
}

fn resolve_segs<'v>(segs: &[String], root: &'v Value) -> Option<&'v Value> {
    {
        let mut cur = root;
        let mut parent_is_hits = false;
        for (i, seg) in segs.iter().enumerate() {
            let at_root_hits_total = i == 1 && segs[0] == "hits" && seg == "total";
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                // `hits.total.value` on a 7.x numeric total.
                Value::Number(_) if parent_is_hits && seg == "value" => cur,
                _ => return None,
            };
            parent_is_hits = at_root_hits_total;
            if at_root_hits_total
                && i + 1 == segs.len()
                && let Value::Object(m) = cur
            {
                return m.get("value");
            }
        }
        Some(cur)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segs.join("."))
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

/// What a condition is evaluated against: the whole response, or (with
/// `group_by`) one element of it, where paths are relative to the element
/// and `response.` still reaches the whole response.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'v> {
    /// The element (or the response itself).
    pub item: &'v Value,
    /// The whole response, when `item` is an element of it.
    pub response: Option<&'v Value>,
    /// A watch run's `ctx` for Painless scripts.
    pub watch: Option<&'v WatchCtx>,
}

impl<'v> Scope<'v> {
    /// The whole response.
    pub fn whole(response: &'v Value) -> Self {
        Scope {
            item: response,
            response: None,
            watch: None,
        }
    }

    /// The same scope inside a watch run.
    pub fn in_watch(self, watch: &'v WatchCtx) -> Self {
        Scope {
            watch: Some(watch),
            ..self
        }
    }

    /// One element of `response`.
    pub fn element(item: &'v Value, response: &'v Value) -> Self {
        Scope {
            item,
            response: Some(response),
            watch: None,
        }
    }

    /// Resolves a path in this scope.
    pub fn resolve(&self, p: &Path) -> Option<&'v Value> {
        match (self.response, p.segs.split_first()) {
            (Some(r), Some((first, rest))) if first == "response" => resolve_segs(rest, r),
            _ => p.resolve(self.item),
        }
    }
}

/// The hit count of a response, whichever shape `hits.total` has.
pub fn hits_total(response: &Value) -> u64 {
    Path::parse("hits.total")
        .resolve(response)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The result of evaluating a condition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// Whether the alert should fire.
    pub matched: bool,
    /// A message from a script that replaces the rendered one.
    pub message: Option<String>,
    /// Set when a path was missing from the response; worth a log line.
    pub missing: Option<String>,
}

impl Verdict {
    fn of(matched: bool) -> Self {
        Verdict {
            matched,
            ..Verdict::default()
        }
    }

    fn missing(what: impl fmt::Display) -> Self {
        Verdict {
            missing: Some(what.to_string()),
            ..Verdict::default()
        }
    }
}

/// One kind of condition, compiled.
pub trait Check: Send + Sync + fmt::Debug {
    /// Evaluates against a response (or a watch's payload, or one element
    /// of either) at `now`.
    fn check(
        &self,
        scripts: &ScriptEngine,
        at: Scope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError>;
    /// Whether the verdict on a whole response depends on its hit count
    /// alone (so that a count folded with other alerts' can decide it).
    fn counts_only(&self) -> bool {
        false
    }
}

/// Why a condition does not compile.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The body does not fit the kind.
    #[error("{0}")]
    Invalid(String),
    /// The script does not compile.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Compiles (with an engine) or validates (without) one kind's body.
pub type CompileFn = fn(&Value, Option<&ScriptEngine>) -> Result<Arc<dyn Check>, CompileError>;

/// A kind of condition: its name in files, and how to compile its body.
/// Without a script engine, compiling only validates (at parse time).
pub struct Kind {
    /// `compare`, `script`, …
    pub name: &'static str,
    /// Compiles (or, without an engine, validates) a body.
    pub compile: CompileFn,
}

/// Every kind of condition; adding one is a file and a line here.
pub static KINDS: &[Kind] = &[
    Kind {
        name: "always",
        compile: constant::always,
    },
    Kind {
        name: "never",
        compile: constant::never,
    },
    Kind {
        name: "compare",
        compile: compare::compile_compare,
    },
    Kind {
        name: "array_compare",
        compile: compare::compile_array_compare,
    },
    Kind {
        name: "script",
        compile: script::compile_check,
    },
    Kind {
        name: "painless",
        compile: painless_check::compile_check,
    },
];

fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// A condition as written in a file: `{"<kind>": <body>}`, checked against
/// its kind when parsed so that mistakes carry the file's position.
#[derive(Debug, Clone)]
pub struct ConditionSpec {
    kind: &'static str,
    body: Value,
}

impl ConditionSpec {
    /// Parses `{"<kind>": <body>}`; `allow` limits the kinds (watches
    /// can't run Rhai).
    pub fn parse(v: &Value, allow: &dyn Fn(&str) -> bool) -> Result<ConditionSpec, String> {
        let names = || KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ");
        let Value::Object(m) = v else {
            return Err(format!("a condition is an object with one of {}", names()));
        };
        if m.len() != 1 {
            return Err(format!(
                "a condition has exactly one kind, found {}; use one of {}",
                m.len(),
                names()
            ));
        }
        let Some((name, body)) = m.iter().next() else {
            return Err(format!("a condition needs one of {}", names()));
        };
        let k = kind(name)
            .filter(|k| allow(k.name))
            .ok_or_else(|| format!("unknown condition {name:?}; use one of {}", names()))?;
        (k.compile)(body, None).map_err(|e| e.to_string())?;
        Ok(ConditionSpec {
            kind: k.name,
            body: body.clone(),
        })
    }

    /// What stays of a spec once compiled: its kind, not its body.
    pub fn compiled() -> ConditionSpec {
        ConditionSpec {
            kind: "compiled",
            body: Value::Null,
        }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl Default for ConditionSpec {
    fn default() -> Self {
        ConditionSpec {
            kind: "compare",
            body: serde_json::json!({"hits.total": {"gt": 0}}),
        }
    }
}

impl<'de> Deserialize<'de> for ConditionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        ConditionSpec::parse(&v, &|_| true).map_err(de::Error::custom)
    }
}

/// A condition ready to evaluate.
#[derive(Debug, Clone)]
pub struct Condition(Arc<dyn Check>);

impl Condition {
    /// Compiles a spec; scripts need the engine.
    pub fn compile(spec: ConditionSpec, engine: &ScriptEngine) -> Result<Condition, CompileError> {
        let k = kind(spec.kind).ok_or_else(|| CompileError::Invalid(spec.kind.into()))?;
        (k.compile)(&spec.body, Some(engine)).map(Condition)
    }

    /// Compiles a spec that holds no Rhai script (watches: their scripts
    /// are Painless, which needs no engine).
    pub fn compile_without_scripts(spec: ConditionSpec) -> Result<Condition, CompileError> {
        if spec.kind == "script" {
            return Err(CompileError::Invalid(
                "a script condition needs the script engine".into(),
            ));
        }
        let k = kind(spec.kind).ok_or_else(|| CompileError::Invalid(spec.kind.into()))?;
        (k.compile)(&spec.body, None).map(Condition)
    }

    /// Always met (a watch without a condition).
    pub fn always() -> Condition {
        Condition(Arc::new(constant::Constant(true)))
    }

    /// Whether the verdict depends on `hits.total` alone (see
    /// [`Check::counts_only`]).
    pub fn counts_only(&self) -> bool {
        self.0.counts_only()
    }

    /// Evaluates the condition against a search response, now.
    pub fn evaluate(
        &self,
        engine: &ScriptEngine,
        response: &Value,
    ) -> Result<Verdict, ScriptError> {
        self.0.check(engine, Scope::whole(response), Utc::now())
    }

    /// Evaluates the condition against a response at `now` (date math).
    pub fn evaluate_at(
        &self,
        engine: &ScriptEngine,
        response: &Value,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        self.0.check(engine, Scope::whole(response), now)
    }

    /// Evaluates the condition in a scope (one element of a response) at `now`.
    pub fn evaluate_in(
        &self,
        engine: &ScriptEngine,
        at: Scope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        self.0.check(engine, at, now)
    }
}

fn single<E: de::Error>(
    map: Map<String, Value>,
    what: &str,
    example: &str,
) -> Result<(String, Value), E> {
    if map.len() != 1 {
        return Err(E::custom(format!(
            "{what} takes exactly one entry, found {}; write it like {example}",
            map.len()
        )));
    }
    map.into_iter()
        .next()
        .ok_or_else(|| E::custom(format!("{what} is empty; write it like {example}")))
}

fn parse_op<E: de::Error>(name: &str) -> Result<Op, E> {
    Op::parse(name).ok_or_else(|| E::custom(format!("unknown operator {name:?}; use one of {OPS}")))
}
