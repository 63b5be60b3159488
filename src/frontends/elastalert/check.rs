//! Reading an ElastAlert rule's keys with every problem collected, each at
//! its `line:column`: a wrong type, a missing key, an unknown one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::yaml::{Doc, escape};
use crate::alert::Problem;

/// The rule's top level, its positions, and the problems found so far.
pub struct Checker<'a> {
    /// The document.
    pub doc: &'a Doc,
    /// Its top-level mapping.
    pub top: &'a Map<String, Value>,
    path: PathBuf,
    /// What is wrong, in the order found.
    pub problems: Vec<Problem>,
    /// What ElastAlert ignores and esalert ignores too, said by `check`
    /// without refusing the rule.
    pub warnings: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker over `doc`, whose top level is `top`.
    pub fn new(path: &Path, doc: &'a Doc, top: &'a Map<String, Value>) -> Self {
        Checker {
            doc,
            top,
            path: path.to_owned(),
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a problem at the JSON pointer `at`.
    pub fn problem(&mut self, at: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: self.path.clone(),
            position: self.doc.position(at),
            message: message.into(),
        });
    }

    /// Records a warning at the JSON pointer `at`.
    pub fn warn(&mut self, at: &str, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: self.path.clone(),
            position: self.doc.position(at),
            message: message.into(),
        });
    }

    /// The raw value of a top-level key.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.top.get(key).filter(|v| !v.is_null())
    }

    fn at(key: &str) -> String {
        format!("/{}", escape(key))
    }

    /// A required key: a problem at the top of the file when absent.
    pub fn require(&mut self, key: &str, what: &str) -> Option<&'a Value> {
        let v = self.raw(key);
        if v.is_none() {
            self.problems.push(Problem {
                path: self.path.clone(),
                position: Some(crate::alert::locate::Position { line: 1, column: 1 }),
                message: format!("`{key}` is required: {what}"),
            });
        }
        v
    }

    /// A string key.
    pub fn string(&mut self, key: &str) -> Option<String> {
        match self.raw(key)? {
            Value::String(s) => Some(s.clone()),
            other => {
                self.problem(
                    &Self::at(key),
                    format!("`{key}` must be a string, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A boolean key.
    pub fn boolean(&mut self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.problem(
                    &Self::at(key),
                    format!("`{key}` must be true or false, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A whole number key, at least `min`.
    pub fn integer(&mut self, key: &str, min: i64) -> Option<i64> {
        match self.raw(key)? {
            Value::Number(n) if n.as_i64().is_some_and(|i| i >= min) => n.as_i64(),
            other => {
                self.problem(
                    &Self::at(key),
                    format!(
                        "`{key}` must be a whole number of at least {min}, found {}",
                        shown(other)
                    ),
                );
                None
            }
        }
    }

    /// A number key.
    pub fn number(&mut self, key: &str) -> Option<f64> {
        match self.raw(key)? {
            Value::Number(n) => n.as_f64(),
            other => {
                self.problem(
                    &Self::at(key),
                    format!("`{key}` must be a number, found {}", kind(other)),
                );
                None
            }
        }
    }

    /// A string or a list of strings (`index`, `query_key`, `compare_key`).
    pub fn strings(&mut self, key: &str) -> Option<Vec<String>> {
        let v = self.raw(key)?;
        let out = match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>(),
            _ => None,
        };
        match out {
            Some(list) if !list.is_empty() && list.iter().all(|s| !s.trim().is_empty()) => {
                Some(list)
            }
            _ => {
                self.problem(
                    &Self::at(key),
                    format!("`{key}` must be a non-empty string or a list of them"),
                );
                None
            }
        }
    }

    /// A list of strings.
    pub fn string_list(&mut self, key: &str) -> Option<Vec<String>> {
        let v = self.raw(key)?;
        match v
            .as_array()
            .and_then(|a| a.iter().map(python_scalar).collect::<Option<Vec<_>>>())
        {
            Some(l) => Some(l),
            None => {
                self.problem(&Self::at(key), format!("`{key}` must be a list of strings"));
                None
            }
        }
    }

    /// A duration written as Python `timedelta` arguments: `{minutes: 5}`.
    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        let v = self.raw(key)?;
        match timedelta(v) {
            Ok(d) => Some(d),
            Err(e) => {
                let at = match &e {
                    TimedeltaError::Unit(u) => format!("{}/{}", Self::at(key), escape(u)),
                    _ => Self::at(key),
                };
                self.problem(&at, format!("`{key}`: {e}"));
                None
            }
        }
    }
}

/// Why a `timedelta` is not one.
#[derive(Debug, thiserror::Error)]
pub enum TimedeltaError {
    /// Not a mapping.
    #[error("a duration is written as a mapping such as `{{minutes: 5}}`")]
    Shape,
    /// An unknown unit.
    #[error("`{0}` is not a unit; use weeks, days, hours, minutes, seconds or milliseconds")]
    Unit(String),
    /// A bad amount.
    #[error("`{0}` must be a number of at least 0")]
    Amount(String),
    /// Over esalert's limit.
    #[error("the duration is over {}", crate::alert::MAX_DURATION_TEXT)]
    TooLong,
    /// `schedule` where only a duration fits.
    #[error("a cron `schedule` is not supported here; give a duration such as `{{minutes: 5}}`")]
    Schedule,
}

/// A Python `timedelta(**v)`.
pub fn timedelta(v: &Value) -> Result<Duration, TimedeltaError> {
    let m = v.as_object().ok_or(TimedeltaError::Shape)?;
    let mut secs = 0f64;
    for (unit, amount) in m {
        let per = match unit.as_str() {
            "weeks" => 604_800.0,
            "days" => 86_400.0,
            "hours" => 3_600.0,
            "minutes" => 60.0,
            "seconds" => 1.0,
            "milliseconds" => 0.001,
            "microseconds" => 0.000_001,
            "schedule" => return Err(TimedeltaError::Schedule),
            _ => return Err(TimedeltaError::Unit(unit.clone())),
        };
        let n = amount
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| TimedeltaError::Amount(unit.clone()))?;
        secs += n * per;
    }
    let max = crate::alert::MAX_DURATION.as_secs_f64();
    if secs > max {
        return Err(TimedeltaError::TooLong);
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A value's kind, for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "true/false",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        other => kind(other).to_owned(),
    }
}

/// A scalar as Python's `str()` shows it; `None` for collections.
pub fn python_scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(_) | Value::Object(_) => None,
        other => Some(python_str(other)),
    }
}

/// `str(value)` in Python, for text ElastAlert builds with `format`.
pub fn python_str(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => {
            if n.is_f64() {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 1e16 {
                    format!("{f:.1}")
                } else {
                    f.to_string()
                }
            } else {
                n.to_string()
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => python_repr(v),
    }
}

/// `repr(value)` in Python (lists and dicts show their items this way).
fn python_repr(v: &Value) -> String {
    match v {
        Value::String(s) => {
            if s.contains('\'') && !s.contains('"') {
                format!("\"{s}\"")
            } else {
                format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(python_repr).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("'{k}': {}", python_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => python_str(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timedeltas_and_python_strings() {
        assert_eq!(
            timedelta(&json!({"minutes": 5, "seconds": 30})).unwrap(),
            Duration::from_secs(330)
        );
        assert_eq!(
            timedelta(&json!({"hours": 0.5})).unwrap(),
            Duration::from_secs(1800)
        );
        assert!(matches!(
            timedelta(&json!({"minute": 5})),
            Err(TimedeltaError::Unit(_))
        ));
        assert!(matches!(
            timedelta(&json!({"minutes": -1})),
            Err(TimedeltaError::Amount(_))
        ));
        assert!(matches!(timedelta(&json!(5)), Err(TimedeltaError::Shape)));
        assert_eq!(python_str(&json!(1.0)), "1.0");
        assert_eq!(python_str(&json!(true)), "True");
        assert_eq!(python_str(&json!(null)), "None");
        assert_eq!(python_str(&json!(["a", 1])), "['a', 1]");
        assert_eq!(python_str(&json!({"k": "v"})), "{'k': 'v'}");
    }
}
