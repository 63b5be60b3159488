//! Conditions: does a search response warrant a notification?
//!
//! `compare` and `array_compare` follow Elasticsearch Watcher's semantics so
//! that watches port over unchanged; `script` runs sandboxed Rhai.

pub mod script;

use std::cmp::Ordering;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value};

pub use script::{ScriptEngine, ScriptError};

/// A condition as written in an alert file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConditionSpec {
    /// Always matches.
    Always(Empty),
    /// Never matches.
    Never(Empty),
    /// Compares one value of the response with a constant.
    Compare(Compare),
    /// Compares a value inside every element of an array.
    ArrayCompare(ArrayCompare),
    /// A Rhai script that sees `response` and returns a bool or a map.
    Script(String),
}

impl Default for ConditionSpec {
    fn default() -> Self {
        ConditionSpec::Compare(Compare {
            path: Path::parse("hits.total"),
            op: Op::Gt,
            value: Value::from(0),
        })
    }
}

/// `{}`: the only body `always` and `never` accept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

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
        let mut cur = root;
        let mut parent_is_hits = false;
        for (i, seg) in self.segs.iter().enumerate() {
            let at_root_hits_total = i == 1 && self.segs[0] == "hits" && seg == "total";
            cur = match cur {
                Value::Object(m) => m.get(seg)?,
                Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                // `hits.total.value` on a 7.x numeric total.
                Value::Number(_) if parent_is_hits && seg == "value" => cur,
                _ => return None,
            };
            parent_is_hits = at_root_hits_total;
            if at_root_hits_total
                && i + 1 == self.segs.len()
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

/// The hit count of a response, whichever shape `hits.total` has.
pub fn hits_total(response: &Value) -> u64 {
    Path::parse("hits.total")
        .resolve(response)
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `{"compare": {"<path>": {"<op>": <value>}}}`.
#[derive(Debug, Clone)]
pub struct Compare {
    /// Where the left-hand value is.
    pub path: Path,
    /// The operator.
    pub op: Op,
    /// The constant to compare with.
    pub value: Value,
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
    Ok(map.into_iter().next().expect("one entry"))
}

fn parse_op<E: de::Error>(name: &str) -> Result<Op, E> {
    Op::parse(name).ok_or_else(|| E::custom(format!("unknown operator {name:?}; use one of {OPS}")))
}

impl<'de> Deserialize<'de> for Compare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EX: &str = r#"{"hits.total": {"gt": 0}}"#;
        let map = Map::deserialize(d)?;
        let (path, ops) = single::<D::Error>(map, "compare", EX)?;
        let Value::Object(ops) = ops else {
            return Err(de::Error::custom(format!(
                "compare on {path:?} needs an object with one operator, like {EX}"
            )));
        };
        let (op, value) = single::<D::Error>(ops, &format!("compare on {path:?}"), EX)?;
        Ok(Compare {
            path: Path::parse(&path),
            op: parse_op(&op)?,
            value,
        })
    }
}

/// Whether some or all elements must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantifier {
    /// At least one element (false on an empty array).
    Some,
    /// Every element (true on an empty array).
    All,
}

/// `{"array_compare": {"<array>": {"path": "<inner>", "<op>": {"value": v, "quantifier": q}}}}`.
#[derive(Debug, Clone)]
pub struct ArrayCompare {
    /// The array.
    pub array: Path,
    /// The value inside each element; empty for the element itself.
    pub path: Path,
    /// The operator.
    pub op: Op,
    /// The constant to compare with.
    pub value: Value,
    /// `some` (the default) or `all`.
    pub quantifier: Quantifier,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpBody {
    value: Value,
    #[serde(default = "some")]
    quantifier: Quantifier,
}

fn some() -> Quantifier {
    Quantifier::Some
}

impl<'de> Deserialize<'de> for ArrayCompare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const EX: &str = r#"{"aggregations.x.buckets": {"path": "doc_count", "gte": {"value": 5, "quantifier": "some"}}}"#;
        let map = Map::deserialize(d)?;
        let (array, inner) = single::<D::Error>(map, "array_compare", EX)?;
        let Value::Object(mut inner) = inner else {
            return Err(de::Error::custom(format!(
                "array_compare on {array:?} needs an object, like {EX}"
            )));
        };
        let path = match inner.remove("path") {
            None => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => {
                return Err(de::Error::custom(format!(
                    "array_compare `path` must be a string, found {other}"
                )));
            }
        };
        let (op, body) = single::<D::Error>(inner, &format!("array_compare on {array:?}"), EX)?;
        let op = parse_op(&op)?;
        let body = OpBody::deserialize(body).map_err(|e| {
            de::Error::custom(format!("array_compare operator body: {e}; write it like {{\"value\": 5, \"quantifier\": \"some\"}}"))
        })?;
        Ok(ArrayCompare {
            array: Path::parse(&array),
            path: Path::parse(&path),
            op,
            value: body.value,
            quantifier: body.quantifier,
        })
    }
}

/// A condition ready to evaluate.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Always matches.
    Always,
    /// Never matches.
    Never,
    /// See [`Compare`].
    Compare(Compare),
    /// See [`ArrayCompare`].
    ArrayCompare(ArrayCompare),
    /// A compiled Rhai script.
    Script(script::Script),
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

    fn missing(path: &Path) -> Self {
        Verdict {
            missing: Some(path.to_string()),
            ..Verdict::default()
        }
    }
}

impl Condition {
    /// Compiles a spec; only scripts can fail here.
    pub fn compile(spec: ConditionSpec, engine: &ScriptEngine) -> Result<Condition, ScriptError> {
        Ok(match spec {
            ConditionSpec::Always(_) => Condition::Always,
            ConditionSpec::Never(_) => Condition::Never,
            ConditionSpec::Compare(c) => Condition::Compare(c),
            ConditionSpec::ArrayCompare(c) => Condition::ArrayCompare(c),
            ConditionSpec::Script(src) => Condition::Script(engine.compile(&src)?),
        })
    }

    /// Evaluates the condition against a search response.
    pub fn evaluate(
        &self,
        engine: &ScriptEngine,
        response: &Value,
    ) -> Result<Verdict, ScriptError> {
        Ok(match self {
            Condition::Always => Verdict::of(true),
            Condition::Never => Verdict::of(false),
            Condition::Compare(c) => match c.path.resolve(response) {
                Some(v) => Verdict::of(c.op.apply(Some(v), &c.value)),
                None => Verdict::missing(&c.path),
            },
            Condition::ArrayCompare(c) => match c.array.resolve(response) {
                Some(Value::Array(items)) => {
                    let hit = |item: &Value| c.op.apply(c.path.resolve(item), &c.value);
                    Verdict::of(match c.quantifier {
                        Quantifier::Some => items.iter().any(hit),
                        Quantifier::All => items.iter().all(hit),
                    })
                }
                _ => Verdict::missing(&c.array),
            },
            Condition::Script(s) => engine.run(s, response)?,
        })
    }
}
