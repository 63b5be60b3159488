//! `compare` and `array_compare`, with Watcher's operands: a constant,
//! date math (`"<{now-5m}>"`, compared as epoch milliseconds) or another
//! value of the response (`"{{ctx.payload.aggregations.avg.value}}"`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::{Map, Value, json};

use super::{
    Check, CompileError, Op, Path, Scope, ScriptEngine, ScriptError, Verdict, parse_op, single,
};

/// The right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A constant.
    Const(Value),
    /// Date math evaluated at run time, e.g. `<{now-5m}>`.
    DateMath(String),
    /// Another value of the response.
    Path(Path),
}

impl Operand {
    /// Reads an operand as Watcher writes it.
    pub fn of(v: Value) -> Result<Operand, String> {
        if let Value::String(s) = &v {
            if s.starts_with("<{") && s.ends_with("}>") {
                // Checked now, so a bad or absurd expression is a load error.
                crate::datemath::compare_value(s, Utc::now())
                    .unwrap_or_else(|| Err(format!("{s:?} is not date math")))?;
                return Ok(Operand::DateMath(s.clone()));
            }
            if let Some(inner) = s
                .trim()
                .strip_prefix("{{")
                .and_then(|x| x.strip_suffix("}}"))
            {
                return Ok(Operand::Path(Path::parse(inner.trim())));
            }
        }
        Ok(Operand::Const(v))
    }

    /// The value to compare with, and whether it is epoch milliseconds.
    fn resolve(&self, response: Scope<'_>, now: DateTime<Utc>) -> Result<(Value, bool), String> {
        Ok(match self {
            Operand::Const(c) => (c.clone(), false),
            Operand::Path(p) => (response.resolve(p).cloned().unwrap_or(Value::Null), false),
            Operand::DateMath(s) => {
                let t = crate::datemath::compare_value(s, now)
                    .unwrap_or_else(|| Err(format!("{s:?} is not date math")))?;
                (json!(t.timestamp_millis()), true)
            }
        })
    }
}

/// Dates compare as epoch milliseconds when the right side is date math.
fn as_millis(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Number(n) => Some(Value::Number(n.clone())),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| json!(t.timestamp_millis()))
            .or_else(|| s.parse::<i64>().ok().map(|n| json!(n))),
        _ => None,
    }
}

fn cmp(op: Op, left: Option<&Value>, right: &(Value, bool)) -> bool {
    if right.1 {
        return op.apply(as_millis(left).as_ref(), &right.0);
    }
    op.apply(left, &right.0)
}

/// `{"compare": {"<path>": {"<op>": <value>}}}`.
#[derive(Debug, Clone)]
pub struct Compare {
    /// Where the left-hand value is.
    pub path: Path,
    /// The operator.
    pub op: Op,
    /// What to compare with.
    pub value: Operand,
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
            value: Operand::of(value).map_err(de::Error::custom)?,
        })
    }
}

impl Check for Compare {
    fn check(
        &self,
        _: &ScriptEngine,
        response: Scope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        let Some(left) = response.resolve(&self.path) else {
            return Ok(Verdict::missing(&self.path));
        };
        Ok(match self.value.resolve(response, now) {
            Ok(right) => Verdict::of(cmp(self.op, Some(left), &right)),
            Err(e) => Verdict::missing(e),
        })
    }

    fn counts_only(&self) -> bool {
        let p = self.path.to_string();
        (p == "hits.total" || p == "hits.total.value")
            && matches!(&self.value, Operand::Const(c) if c.is_number())
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
    /// What to compare with.
    pub value: Operand,
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
            value: Operand::of(body.value).map_err(de::Error::custom)?,
            quantifier: body.quantifier,
        })
    }
}

impl Check for ArrayCompare {
    fn check(
        &self,
        _: &ScriptEngine,
        response: Scope<'_>,
        now: DateTime<Utc>,
    ) -> Result<Verdict, ScriptError> {
        let Some(Value::Array(items)) = response.resolve(&self.array) else {
            return Ok(Verdict::missing(&self.array));
        };
        let right = match self.value.resolve(response, now) {
            Ok(r) => r,
            Err(e) => return Ok(Verdict::missing(e)),
        };
        let hit = |item: &Value| cmp(self.op, self.path.resolve(item), &right);
        Ok(Verdict::of(match self.quantifier {
            Quantifier::Some => items.iter().any(hit),
            Quantifier::All => items.iter().all(hit),
        }))
    }
}

fn compile_as<T: Check + for<'de> Deserialize<'de> + 'static>(
    body: &Value,
) -> Result<Arc<dyn Check>, CompileError> {
    T::deserialize(body)
        .map(|c| Arc::new(c) as Arc<dyn Check>)
        .map_err(|e| CompileError::Invalid(e.to_string()))
}

pub(super) fn compile_compare(
    body: &Value,
    _: Option<&ScriptEngine>,
) -> Result<Arc<dyn Check>, CompileError> {
    compile_as::<Compare>(body)
}

pub(super) fn compile_array_compare(
    body: &Value,
    _: Option<&ScriptEngine>,
) -> Result<Arc<dyn Check>, CompileError> {
    compile_as::<ArrayCompare>(body)
}
