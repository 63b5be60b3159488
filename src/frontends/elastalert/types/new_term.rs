//! `type: new_term`: a document whose value of one of `fields` (or of
//! `query_key`), or of a composite field list, was never seen before. As
//! ElastAlert does at start, the first run learns the values of the
//! `terms_window_size` before its window (terms aggregations, one per
//! `window_step_size`); unlike ElastAlert, what is known is the rule's
//! memory, so a restart never re-learns nor re-alerts on known terms.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Found, RuleType, TypeDef};
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

/// Values remembered at most, all fields together.
const MAX_VALUES: usize = 200_000;

/// ElastAlert asks for every term (Java's Integer.MAX_VALUE).
const ALL_TERMS: u64 = 2_147_483_647;

pub static TYPE: TypeDef = TypeDef {
    name: "new_term",
    keys: &[
        "fields",
        "terms_window_size",
        "window_step_size",
        "alert_on_missing_field",
        "use_keyword_postfix",
        "use_terms_query",
        "terms_size",
    ],
    build: |ch, c| {
        let fields: Vec<Vec<String>> = match ch.raw("fields") {
            None => match &c.query_key {
                // ElastAlert reads `query_key` as the one field.
                Some(q) => vec![vec![q.join(",")]],
                None => {
                    ch.require(
                        "fields",
                        "the fields whose new values are matches (or a `query_key`)",
                    );
                    return None;
                }
            },
            Some(Value::String(s)) => vec![vec![s.clone()]],
            Some(Value::Array(a)) if !a.is_empty() => {
                let mut out = Vec::new();
                for (i, f) in a.iter().enumerate() {
                    match f {
                        Value::String(s) => out.push(vec![s.clone()]),
                        Value::Array(parts)
                            if parts.iter().all(Value::is_string) && !parts.is_empty() =>
                        {
                            out.push(
                                parts
                                    .iter()
                                    .filter_map(|p| p.as_str().map(str::to_owned))
                                    .collect(),
                            )
                        }
                        _ => ch.problem(
                            &format!("/fields/{i}"),
                            "each of `fields` is a field name or a list of them (a composite term)",
                        ),
                    }
                }
                out
            }
            Some(_) => {
                ch.problem("/fields", "`fields` is a field name or a list of them");
                return None;
            }
        };
        if ch.boolean("use_terms_query") == Some(true) {
            ch.problem(
                "/use_terms_query",
                "`use_terms_query` with new_term is not supported by esalert yet; remove it",
            );
        }
        let window = ch
            .duration("terms_window_size")
            .unwrap_or(Duration::from_secs(30 * 86_400));
        let step = ch
            .duration("window_step_size")
            .unwrap_or(Duration::from_secs(86_400));
        if step.is_zero() {
            ch.problem("/window_step_size", "`window_step_size` must be above 0");
        }
        Some(Box::new(NewTerm {
            fields,
            window,
            step,
            missing: ch.boolean("alert_on_missing_field").unwrap_or(false),
            keyword: ch.boolean("use_keyword_postfix").unwrap_or(true),
        }))
    },
};

#[derive(Debug)]
struct NewTerm {
    fields: Vec<Vec<String>>,
    window: Duration,
    step: Duration,
    missing: bool,
    keyword: bool,
}

/// Python's truthiness of a looked-up value.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(m)) => !m.is_empty(),
    }
}

fn name(field: &[String]) -> String {
    field.join(",")
}

impl NewTerm {
    fn agg_field(&self, f: &str) -> String {
        if self.keyword && !f.ends_with(".keyword") {
            format!("{f}.keyword")
        } else {
            f.to_owned()
        }
    }

    /// ElastAlert's `get_all_terms`: what the `terms_window_size` before
    /// `end` holds, step by step.
    async fn baseline(
        &self,
        c: &Common,
        cx: &EvalContext<'_>,
        end: chrono::DateTime<chrono::Utc>,
    ) -> Result<BTreeMap<String, Vec<Value>>, EvalError> {
        let mut seen = BTreeMap::new();
        let span = chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::zero());
        let step = chrono::Duration::from_std(self.step).unwrap_or(chrono::Duration::days(1));
        for field in &self.fields {
            let mut values: Vec<Value> = Vec::new();
            let mut aggs = json!({"values": {"terms": {"field": self.agg_field(field.last().map_or("", |s| s)), "size": ALL_TERMS}}});
            for sub in field.iter().rev().skip(1) {
                aggs = json!({"values": {"terms": {"field": self.agg_field(sub), "size": ALL_TERMS}, "aggs": aggs}});
            }
            let mut t = end.checked_sub_signed(span).unwrap_or(end);
            while t < end {
                let next = t.checked_add_signed(step).unwrap_or(end).min(end);
                let mut must = vec![json!({"range": {c.timestamp_field.clone(): {
                    "lt": c.timestamp_type.format(next), "gte": c.timestamp_type.format(t)}}})];
                must.extend(c.filters.iter().cloned());
                let body = json!({"aggs": {"filtered": {"filter": {"bool": {"must": must}}, "aggs": aggs}}, "size": 0});
                let (resp, _) = query::run(c, cx, &c.id, body).await?;
                flatten(
                    &resp["aggregations"]["filtered"]["values"]["buckets"],
                    &mut Vec::new(),
                    field.len(),
                    &mut values,
                );
                t = next;
            }
            values.sort_by_key(Value::to_string);
            values.dedup();
            seen.insert(name(field), values);
        }
        Ok(seen)
    }
}

/// `flatten_aggregation_hierarchy`: composite terms as arrays.
fn flatten(buckets: &Value, prefix: &mut Vec<Value>, depth: usize, out: &mut Vec<Value>) {
    for b in buckets.as_array().into_iter().flatten() {
        prefix.push(b["key"].clone());
        if prefix.len() < depth {
            flatten(&b["values"]["buckets"], prefix, depth, out);
        } else if depth == 1 {
            out.push(b["key"].clone());
        } else {
            out.push(Value::Array(prefix.clone()));
        }
        prefix.pop();
    }
}

impl RuleType for NewTerm {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let names: Vec<String> = self.fields.iter().map(|f| name(f)).collect();
            let remembered = cx
                .memory
                .filter(|m| m["fields"] == json!(names))
                .and_then(|m| m["seen"].as_object())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_array().cloned().unwrap_or_default()))
                        .collect::<BTreeMap<_, _>>()
                });
            let mut seen = match remembered {
                Some(s) => s,
                None => self.baseline(c, cx, cx.window.start).await?,
            };
            let (docs, mut found) = super::documents(c, cx).await?;
            for m in docs {
                let doc = Value::Object(m.doc.clone());
                for field in &self.fields {
                    let key = name(field);
                    let value = if field.len() == 1 {
                        query::lookup(&doc, &field[0])
                            .filter(|v| truthy(Some(v)))
                            .cloned()
                    } else {
                        field
                            .iter()
                            .map(|f| query::lookup(&doc, f).filter(|v| truthy(Some(v))).cloned())
                            .collect::<Option<Vec<_>>>()
                            .map(Value::Array)
                    };
                    match value {
                        None if self.missing => {
                            let mut hit = m.clone();
                            hit.doc
                                .insert("missing_field".into(), Value::String(key.clone()));
                            found.matches.push(hit);
                        }
                        None => {}
                        Some(v) => {
                            let known = seen.entry(key.clone()).or_default();
                            if !known.contains(&v) {
                                let mut hit = m.clone();
                                hit.doc
                                    .insert("new_field".into(), Value::String(key.clone()));
                                found.matches.push(hit);
                                known.push(v);
                            }
                        }
                    }
                }
            }
            let total: usize = seen.values().map(Vec::len).sum();
            if total > MAX_VALUES {
                found.partial.get_or_insert(format!(
                    "new_term remembers at most {MAX_VALUES} values; the oldest are forgotten"
                ));
                let mut over = total - MAX_VALUES;
                for v in seen.values_mut() {
                    let cut = over.min(v.len());
                    v.drain(..cut);
                    over -= cut;
                }
            }
            found.memory = Some(json!({"fields": names, "seen": seen}));
            Ok(found)
        })
    }
}
