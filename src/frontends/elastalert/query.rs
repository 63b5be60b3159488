//! The searches an ElastAlert rule makes, built as ElastAlert 2 builds
//! them (`get_query`): the rule's filters under `bool.must`, the window as
//! `range: {ts: {gt: start, lte: end}}` in front, sorted by time.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::Common;
use crate::render::Window;
use crate::rule::{EvalContext, EvalError};

/// How documents write their time (`timestamp_type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TsType {
    /// ISO 8601 (the default).
    Iso,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// `timestamp_format`, a strftime pattern.
    Custom(String),
}

impl TsType {
    /// A time as the rule's documents write it, for a range query.
    pub fn format(&self, t: DateTime<Utc>) -> Value {
        match self {
            TsType::Iso => {
                // Python's isoformat with ElastAlert's "Z": no fraction
                // when there is none, microseconds otherwise.
                if t.timestamp_subsec_micros() == 0 {
                    Value::String(t.to_rfc3339_opts(SecondsFormat::Secs, true))
                } else if t.timestamp_subsec_micros().is_multiple_of(1000) {
                    Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true))
                } else {
                    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true))
                }
            }
            TsType::Unix => Value::from(t.timestamp()),
            TsType::UnixMs => Value::from(t.timestamp_millis()),
            TsType::Custom(f) => Value::String(t.format(f).to_string()),
        }
    }

    /// A document's time, if it has a readable one.
    pub fn parse(&self, v: &Value) -> Option<DateTime<Utc>> {
        match self {
            TsType::Iso => v.as_str().and_then(parse_iso),
            TsType::Unix => number(v).and_then(|s| {
                Utc.timestamp_millis_opt((s * 1000.0).round() as i64)
                    .single()
            }),
            TsType::UnixMs => number(v).and_then(|ms| Utc.timestamp_millis_opt(ms as i64).single()),
            TsType::Custom(f) => {
                let s = v.as_str()?;
                DateTime::parse_from_str(s, f)
                    .map(|d| d.to_utc())
                    .ok()
                    .or_else(|| {
                        NaiveDateTime::parse_from_str(s, f)
                            .ok()
                            .map(|n| n.and_utc())
                    })
            }
        }
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

/// ISO 8601 as dateutil reads what Elasticsearch stores: with or without
/// a zone (UTC when absent), a fraction, or a date alone.
pub fn parse_iso(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.to_utc());
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.to_utc());
        }
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, f) {
            return Some(n.and_utc());
        }
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|n| n.and_utc())
}

/// A time as Python's `str(datetime)` shows it, as ElastAlert's default
/// body prints a match's timestamp.
pub fn python_time(t: DateTime<Utc>) -> String {
    let micros = t.timestamp_subsec_micros();
    if micros == 0 {
        t.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
    } else {
        format!("{}.{micros:06}+00:00", t.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// ElastAlert's `lookup_es_key`: a dotted path where a field name may
/// itself hold dots (the longest name that exists wins).
pub fn lookup<'v>(doc: &'v Value, term: &str) -> Option<&'v Value> {
    lookup_in(doc.as_object()?, term)
}

/// [`lookup`] in a document's fields.
pub fn lookup_in<'v>(m: &'v Map<String, Value>, term: &str) -> Option<&'v Value> {
    if let Some(v) = m.get(term) {
        return Some(v);
    }
    let parts: Vec<&str> = term.split('.').collect();
    for i in (1..parts.len()).rev() {
        let head = parts[..i].join(".");
        if let Some(child) = m.get(&head)
            && let Some(v) = lookup(child, &parts[i..].join("."))
        {
            return Some(v);
        }
    }
    None
}

/// The rule's filters as a search (`get_query`), over `window` when given.
pub fn base_query(c: &Common, window: Option<&Window>, sort: bool) -> Map<String, Value> {
    let mut must: Vec<Value> = Vec::new();
    if let Some(w) = window {
        must.push(json!({"range": {c.timestamp_field.clone(): {
            "gt": c.timestamp_type.format(w.start),
            "lte": c.timestamp_type.format(w.end),
        }}}));
    }
    for f in &c.filters {
        // ElastAlert's docs still show `- query: {query_string: …}`; it
        // unwraps them, and so does esalert.
        match f.get("query") {
            Some(q) if !q.is_null() => must.push(q.clone()),
            _ => must.push(f.clone()),
        }
    }
    let mut body = Map::new();
    body.insert(
        "query".into(),
        json!({"bool": {"filter": {"bool": {"must": must}}}}),
    );
    if sort {
        body.insert(
            "sort".into(),
            json!([{c.timestamp_field.clone(): {"order": "asc"}}]),
        );
    }
    body
}

/// A search's documents: ElastAlert's match dicts (`_source` with `_id`
/// and `_index`), oldest first, and the window's total.
pub struct Hits {
    /// The documents, with their times.
    pub docs: Vec<(DateTime<Utc>, Map<String, Value>)>,
    /// How many documents the window holds.
    pub total: u64,
    /// Why fewer were read than the window holds, if so.
    pub partial: Option<String>,
    /// The search's wall time.
    pub took_ms: u64,
}

/// Runs one search (or answers with the saved response).
pub async fn run(
    c: &Common,
    cx: &EvalContext<'_>,
    rule: &str,
    body: Value,
) -> Result<(Value, u64), EvalError> {
    if let Some(saved) = cx.saved {
        return Ok((Value::clone(saved), 0));
    }
    let r = cx
        .es
        .search_for(rule, &c.index, &body, None)
        .await
        .map_err(|e| EvalError::search(format!("{rule}: search failed: {e}"), e))?;
    Ok((r.response, r.took_ms))
}

/// A response's hit count.
pub fn total(resp: &Value) -> u64 {
    let t = &resp["hits"]["total"];
    t.as_u64()
        .or_else(|| t["value"].as_u64())
        .unwrap_or_else(|| {
            resp["hits"]["hits"]
                .as_array()
                .map_or(0, |a| a.len() as u64)
        })
}

/// The search of [`hits`].
pub fn hits_body(c: &Common, window: &Window) -> Value {
    let mut body = base_query(c, Some(window), true);
    body.insert("size".into(), Value::from(c.max_query_size));
    body.insert("track_total_hits".into(), Value::Bool(true));
    if let Some(inc) = &c.include {
        body.insert("_source".into(), json!({"includes": inc}));
    }
    Value::Object(body)
}

/// The documents of the window (`size: max_query_size`).
pub async fn hits(
    c: &Common,
    cx: &EvalContext<'_>,
    rule: &str,
    window: &Window,
) -> Result<Hits, EvalError> {
    let (resp, took_ms) = run(c, cx, rule, hits_body(c, window)).await?;
    let mut docs = Vec::new();
    let mut unreadable = 0u64;
    for h in resp["hits"]["hits"].as_array().into_iter().flatten() {
        let mut src = h["_source"].as_object().cloned().unwrap_or_default();
        let Some(ts) = lookup(&Value::Object(src.clone()), &c.timestamp_field)
            .and_then(|v| c.timestamp_type.parse(v))
        else {
            unreadable += 1;
            continue;
        };
        for k in ["_id", "_index"] {
            if let Some(v) = h.get(k) {
                src.insert(k.into(), v.clone());
            }
        }
        docs.push((ts, src));
    }
    docs.sort_by_key(|(t, _)| *t);
    let total = total(&resp);
    let mut partial = crate::search::partial_reason(&resp);
    if total > docs.len() as u64 + unreadable {
        partial.get_or_insert(format!(
            "the window holds {total} documents and max_query_size is {}: only the first {} were read",
            c.max_query_size,
            docs.len()
        ));
    }
    if unreadable > 0 {
        partial.get_or_insert(format!(
            "{unreadable} documents had no readable `{}` and were skipped",
            c.timestamp_field
        ));
    }
    Ok(Hits {
        docs,
        total,
        partial,
        took_ms,
    })
}

/// The search of [`count`].
pub fn count_body(c: &Common, window: &Window) -> Value {
    let mut body = base_query(c, Some(window), false);
    body.insert("size".into(), Value::from(0));
    body.insert("track_total_hits".into(), Value::Bool(true));
    Value::Object(body)
}

/// The window's document count (`use_count_query`).
pub async fn count(
    c: &Common,
    cx: &EvalContext<'_>,
    rule: &str,
    window: &Window,
) -> Result<(u64, u64), EvalError> {
    let (resp, took) = run(c, cx, rule, count_body(c, window)).await?;
    Ok((total(&resp), took))
}

/// Document counts per value of `field` in the window (`use_terms_query`).
pub async fn terms(
    c: &Common,
    cx: &EvalContext<'_>,
    rule: &str,
    window: &Window,
    field: &str,
    size: u64,
) -> Result<(Vec<(Value, u64)>, u64), EvalError> {
    let mut body = base_query(c, Some(window), false);
    body.insert("size".into(), Value::from(0));
    body.insert(
        "aggs".into(),
        json!({"counts": {"terms": {"field": field, "size": size, "min_doc_count": 1}}}),
    );
    let (resp, took) = run(c, cx, rule, Value::Object(body)).await?;
    let buckets = resp["aggregations"]["counts"]["buckets"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|b| Some((b.get("key")?.clone(), b["doc_count"].as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok((buckets, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_and_written_as_elastalert_does() {
        let t = parse_iso("2026-01-02T03:04:05Z").unwrap();
        assert_eq!(TsType::Iso.format(t), json!("2026-01-02T03:04:05Z"));
        assert_eq!(parse_iso("2026-01-02T03:04:05"), Some(t));
        assert_eq!(parse_iso("2026-01-02T05:04:05+02:00"), Some(t));
        let ms = t + chrono::Duration::milliseconds(250);
        assert_eq!(TsType::Iso.format(ms), json!("2026-01-02T03:04:05.250Z"));
        assert_eq!(TsType::Unix.format(t), json!(t.timestamp()));
        assert_eq!(TsType::UnixMs.parse(&json!(t.timestamp_millis())), Some(t));
        assert_eq!(
            TsType::Unix.parse(&json!(t.timestamp().to_string())),
            Some(t)
        );
        assert_eq!(python_time(t), "2026-01-02 03:04:05+00:00");
        assert_eq!(python_time(ms), "2026-01-02 03:04:05.250000+00:00");
    }

    #[test]
    fn dotted_lookups_prefer_longer_field_names() {
        let d = json!({"a.b": {"c": 1}, "a": {"b": {"c": 2}, "x": 3}, "host.name": "h"});
        assert_eq!(lookup(&d, "a.b.c"), Some(&json!(1)));
        assert_eq!(lookup(&d, "a.x"), Some(&json!(3)));
        assert_eq!(lookup(&d, "host.name"), Some(&json!("h")));
        assert_eq!(lookup(&d, "nope.x"), None);
    }
}
