//! A document store behind the Elasticsearch stand-in: searches are
//! answered from a fixed set of documents, evaluating the query clauses
//! ElastAlert rules use (`bool`, `range`, `term`, `terms`, `exists`,
//! `wildcard`, `match_all`, simple `field:value` `query_string`), `sort`
//! on the time field, `size`, `track_total_hits` and a `terms`
//! aggregation. Enough to replay a recorded time series through rules.

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::{Value, json};

use super::es::{EsStandIn, Reply};

/// Serves `docs` (each a `_source`) for every `_search` of `es`.
pub fn serve(es: &EsStandIn, index: &str, docs: Vec<Value>) {
    let docs = Arc::new(docs);
    let index = index.to_owned();
    es.respond_with(move |r| {
        let (path, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        if path.contains("/_search/scroll") {
            return Some(Reply::json(200, json!({"succeeded": true, "num_freed": 0})));
        }
        let mut body = r.body.clone();
        if body.is_null() {
            body = json!({});
        }
        if let Some(size) = param("size").and_then(|s| s.parse::<u64>().ok()) {
            body["size"] = json!(size);
        }
        if path.ends_with("/_count") {
            body["size"] = json!(0);
            let resp = search(&index, &docs, &body);
            return Some(Reply::json(
                200,
                json!({"count": resp["hits"]["total"]["value"],
                       "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
            ));
        }
        if !path.ends_with("/_search") {
            return None;
        }
        Some(Reply::json(200, search(&index, &docs, &body)))
    });
}

/// A field of a document: a flat dotted key or a nested path.
pub fn field<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(v) = doc.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    field(doc.get(head)?, rest)
}

fn cmp(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) {
        return x.partial_cmp(&y);
    }
    let (x, y) = (a.as_str()?, b.as_str()?);
    match (
        chrono::DateTime::parse_from_rfc3339(x),
        chrono::DateTime::parse_from_rfc3339(y),
    ) {
        (Ok(x), Ok(y)) => Some(x.cmp(&y)),
        _ => Some(x.cmp(y)),
    }
}

fn eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(items), b) => items.iter().any(|i| eq(i, b)),
        (a, b) => a == b || cmp(a, b) == Some(Ordering::Equal),
    }
}

fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len()).any(|i| go(&p[1..], &s[i..])),
            Some('?') => !s.is_empty() && go(&p[1..], &s[1..]),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(&p, &s)
}

/// Whether `doc` matches query clause `q`.
pub fn matches(q: &Value, doc: &Value) -> bool {
    let Some((kind, body)) = q.as_object().and_then(|m| m.iter().next()) else {
        return true;
    };
    match kind.as_str() {
        "match_all" => true,
        "bool" => {
            let all = |k: &str| list(&body[k]).into_iter().all(|c| matches(c, doc));
            let should = list(&body["should"]);
            all("must")
                && all("filter")
                && !list(&body["must_not"]).into_iter().any(|c| matches(c, doc))
                && (should.is_empty() || should.into_iter().any(|c| matches(c, doc)))
        }
        "range" => body.as_object().is_some_and(|m| {
            m.iter().all(|(f, r)| {
                let Some(v) = field(doc, f) else { return false };
                r.as_object().is_some_and(|r| {
                    r.iter()
                        .all(|(op, bound)| match (op.as_str(), cmp(v, bound)) {
                            ("gt", Some(o)) => o == Ordering::Greater,
                            ("gte", Some(o)) => o != Ordering::Less,
                            ("lt", Some(o)) => o == Ordering::Less,
                            ("lte", Some(o)) => o != Ordering::Greater,
                            ("format", _) => true,
                            _ => false,
                        })
                })
            })
        }),
        "term" => body.as_object().is_some_and(|m| {
            m.iter().all(|(f, v)| {
                let want = v.get("value").unwrap_or(v);
                field(doc, f.trim_end_matches(".keyword")).is_some_and(|x| eq(x, want))
            })
        }),
        "terms" => body.as_object().is_some_and(|m| {
            m.iter().all(|(f, vs)| {
                let x = field(doc, f.trim_end_matches(".keyword"));
                x.is_some_and(|x| list(vs).into_iter().any(|v| eq(x, v)))
            })
        }),
        "exists" => body["field"]
            .as_str()
            .is_some_and(|f| field(doc, f).is_some_and(|v| !v.is_null())),
        "wildcard" => body.as_object().is_some_and(|m| {
            m.iter().all(|(f, v)| {
                let p = v.get("value").unwrap_or(v).as_str().unwrap_or("");
                field(doc, f)
                    .and_then(Value::as_str)
                    .is_some_and(|s| glob(p, s))
            })
        }),
        "query_string" => {
            let q = body["query"].as_str().unwrap_or("*").trim();
            q == "*"
                || q.split(" OR ").any(|alt| {
                    alt.split(" AND ").all(|term| {
                        let (neg, term) = match term.trim().strip_prefix("NOT ") {
                            Some(t) => (true, t),
                            None => (false, term.trim()),
                        };
                        let hit = match term.split_once(':') {
                            Some((f, v)) => {
                                let v = v.trim_matches('"');
                                field(doc, f).is_some_and(|x| match x {
                                    Value::String(s) => glob(v, s),
                                    other => {
                                        serde_json::from_str::<Value>(v).is_ok_and(|p| p == *other)
                                    }
                                })
                            }
                            None => doc.to_string().contains(term.trim_matches('"')),
                        };
                        hit != neg
                    })
                })
        }
        _ => false,
    }
}

/// The response to one search body over `docs`.
pub fn search(index: &str, docs: &[Value], body: &Value) -> Value {
    let q = body
        .get("query")
        .cloned()
        .unwrap_or(json!({"match_all": {}}));
    let mut hits: Vec<(usize, &Value)> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| matches(&q, d))
        .collect();
    if let Some((f, o)) = body["sort"]
        .get(0)
        .and_then(Value::as_object)
        .and_then(|m| m.iter().next())
    {
        let desc = o["order"] == "desc";
        hits.sort_by(|a, b| {
            let o = match (field(a.1, f), field(b.1, f)) {
                (Some(x), Some(y)) => cmp(x, y).unwrap_or(Ordering::Equal),
                _ => Ordering::Equal,
            };
            if desc { o.reverse() } else { o }
        });
    }
    let total = hits.len();
    let size = body["size"].as_u64().unwrap_or(10) as usize;
    let page: Vec<Value> = hits
        .iter()
        .take(size)
        .map(|(i, d)| json!({"_index": index, "_id": format!("doc{i}"), "_source": d}))
        .collect();
    let mut resp = json!({
        "took": 1, "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "max_score": null, "hits": page}
    });
    if let Some(aggs) = body["aggs"].as_object() {
        let mut out = serde_json::Map::new();
        for (name, a) in aggs {
            let Some(f) = a["terms"]["field"].as_str() else {
                continue;
            };
            let mut counts: Vec<(String, Value, u64)> = Vec::new();
            for (_, d) in &hits {
                if let Some(v) = field(d, f.trim_end_matches(".keyword")) {
                    let k = v.to_string();
                    match counts.iter_mut().find(|c| c.0 == k) {
                        Some(c) => c.2 += 1,
                        None => counts.push((k, v.clone(), 1)),
                    }
                }
            }
            counts.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
            let n = a["terms"]["size"].as_u64().unwrap_or(10) as usize;
            let buckets: Vec<Value> = counts
                .into_iter()
                .take(n)
                .map(|(_, v, c)| json!({"key": v, "doc_count": c}))
                .collect();
            out.insert(name.clone(), json!({"buckets": buckets}));
        }
        resp["aggregations"] = Value::Object(out);
    }
    resp
}
