//! `type: change`: a document matches when its `compare_key` values differ
//! from the last ones seen for its `query_key` (within `timeframe`, when
//! given). The last values per key are the rule's memory, so a restart
//! compares with what was seen before it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Found, RuleType, TypeDef};
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

/// Keys remembered at most; the ones seen longest ago go first.
const MAX_KEYS: usize = 10_000;

pub static TYPE: TypeDef = TypeDef {
    name: "change",
    keys: &["compare_key", "ignore_null", "timeframe"],
    build: |ch, c| {
        if c.query_key.is_none() {
            ch.require(
                "query_key",
                "the field whose values are followed for changes",
            );
        }
        ch.require(
            "compare_key",
            "the field (or fields) whose change is a match",
        );
        ch.require(
            "ignore_null",
            "whether documents without `compare_key` are ignored",
        );
        let compare = ch.strings("compare_key");
        let ignore_null = ch.boolean("ignore_null");
        let timeframe = ch.duration("timeframe");
        c.query_key.as_ref()?;
        Some(Box::new(Change {
            compare: compare?,
            ignore_null: ignore_null?,
            timeframe,
        }))
    },
};

#[derive(Debug)]
struct Change {
    compare: Vec<String>,
    ignore_null: bool,
    timeframe: Option<Duration>,
}

/// Python's falsiness, for `ignore_null` (booleans excepted, as ElastAlert does).
fn falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(_) => false,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Last values and their time (ms) per key.
type Seen = BTreeMap<String, (Vec<Value>, i64)>;

fn load(memory: Option<&Value>) -> Seen {
    memory
        .and_then(|m| m.get("seen"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.clone(),
                        (v.get(0)?.as_array()?.clone(), v.get(1)?.as_i64()?),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn save(seen: &Seen) -> Value {
    let m: Map<String, Value> = seen
        .iter()
        .map(|(k, (v, t))| (k.clone(), json!([v, t])))
        .collect();
    json!({"seen": m})
}

impl Change {
    /// ElastAlert's `ChangeRule.compare` for one event: the old values
    /// when it is a change.
    fn compare(
        &self,
        seen: &mut Seen,
        key: &str,
        values: Vec<Value>,
        ms: i64,
    ) -> Option<Vec<Value>> {
        if self.ignore_null && values.iter().any(falsy) {
            return None;
        }
        let mut changed = None;
        if let Some((prev, at)) = seen.get(key)
            && prev != &values
        {
            let tf = self
                .timeframe
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if tf.is_none_or(|tf| ms.saturating_sub(*at) <= tf) {
                changed = Some(prev.clone());
            }
        }
        seen.insert(key.to_owned(), (values, ms));
        changed
    }
}

impl RuleType for Change {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let mut seen = load(cx.memory);
            let (docs, mut found) = super::documents(c, cx).await?;
            for mut m in docs {
                let doc = Value::Object(m.doc.clone());
                let values: Vec<Value> = self
                    .compare
                    .iter()
                    .map(|k| query::lookup(&doc, k).cloned().unwrap_or(Value::Null))
                    .collect();
                let key = m.key.clone().unwrap_or_default();
                if let Some(old) =
                    self.compare(&mut seen, &key, values.clone(), m.time.timestamp_millis())
                {
                    m.doc.insert("old_value".into(), Value::Array(old));
                    m.doc.insert("new_value".into(), Value::Array(values));
                    found.matches.push(m);
                }
            }
            if seen.len() > MAX_KEYS {
                let mut by_age: Vec<(i64, String)> =
                    seen.iter().map(|(k, (_, t))| (*t, k.clone())).collect();
                by_age.sort();
                for (_, k) in by_age.iter().take(seen.len() - MAX_KEYS) {
                    seen.remove(k);
                }
            }
            found.memory = Some(save(&seen));
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_per_key_within_the_timeframe_and_nulls_ignored() {
        let r = Change {
            compare: vec!["country".into()],
            ignore_null: true,
            timeframe: Some(Duration::from_secs(60)),
        };
        let mut s = Seen::new();
        assert_eq!(r.compare(&mut s, "bob", vec![json!("NL")], 0), None);
        assert_eq!(r.compare(&mut s, "bob", vec![json!(null)], 1), None);
        assert_eq!(r.compare(&mut s, "bob", vec![json!("NL")], 2), None);
        assert_eq!(
            r.compare(&mut s, "bob", vec![json!("US")], 3),
            Some(vec![json!("NL")])
        );
        // Too long after the last sighting.
        assert_eq!(r.compare(&mut s, "bob", vec![json!("FR")], 100_000), None);
        assert_eq!(r.compare(&mut s, "eve", vec![json!("FR")], 100_001), None);
        assert_eq!(load(Some(&save(&s))), s);
    }
}
