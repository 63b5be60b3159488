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
        let all: Vec<&Value> = hits.iter().map(|(_, d)| *d).collect();
        resp["aggregations"] = Value::Object(aggregate(aggs, &all));
    }
    resp
}

fn interval_ms(s: &str) -> i64 {
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().unwrap_or(1);
    n * match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 604_800_000,
        _ => 1_000,
    }
}

fn numbers(docs: &[&Value], f: &str) -> Vec<f64> {
    docs.iter()
        .filter_map(|d| field(d, f))
        .flat_map(|v| {
            list(v)
                .into_iter()
                .filter_map(Value::as_f64)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Elasticsearch's aggregations over `docs`: `terms`, `date_histogram`
/// (`fixed_interval`, empty buckets between the first and last), and the
/// metrics min, max, avg, sum, value_count and cardinality.
pub fn aggregate(
    aggs: &serde_json::Map<String, Value>,
    docs: &[&Value],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, a) in aggs {
        let sub = a["aggs"].as_object().cloned().unwrap_or_default();
        let bucket = |key: Value, members: Vec<&Value>, extra: Option<(&str, Value)>| {
            let mut b = json!({"key": key, "doc_count": members.len()});
            if let Some((k, v)) = extra {
                b[k] = v;
            }
            if let Value::Object(m) = &mut b {
                m.extend(aggregate(&sub, &members));
            }
            b
        };
        let result = if let Some(t) = a.get("terms") {
            let f = t["field"]
                .as_str()
                .unwrap_or("")
                .trim_end_matches(".keyword");
            let mut groups: Vec<(String, Value, Vec<&Value>)> = Vec::new();
            for d in docs {
                if let Some(v) = field(d, f) {
                    let k = v.to_string();
                    match groups.iter_mut().find(|g| g.0 == k) {
                        Some(g) => g.2.push(d),
                        None => groups.push((k, v.clone(), vec![d])),
                    }
                }
            }
            groups.sort_by(|a, b| b.2.len().cmp(&a.2.len()).then(a.0.cmp(&b.0)));
            let n = t["size"].as_u64().unwrap_or(10) as usize;
            let min = t["min_doc_count"].as_u64().unwrap_or(1) as usize;
            let buckets: Vec<Value> = groups
                .into_iter()
                .filter(|g| g.2.len() >= min)
                .take(n)
                .map(|(_, v, m)| bucket(v, m, None))
                .collect();
            json!({"buckets": buckets})
        } else if let Some(h) = a.get("date_histogram") {
            let f = h["field"].as_str().unwrap_or("@timestamp");
            let step = interval_ms(
                h["fixed_interval"]
                    .as_str()
                    .or(h["interval"].as_str())
                    .unwrap_or("1m"),
            );
            let key_of = |d: &&Value| {
                field(d, f)
                    .and_then(Value::as_str)
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.timestamp_millis().div_euclid(step) * step)
            };
            let keys: Vec<i64> = docs.iter().filter_map(key_of).collect();
            let mut buckets = Vec::new();
            if let (Some(lo), Some(hi)) = (keys.iter().min(), keys.iter().max()) {
                let mut k = *lo;
                while k <= *hi {
                    let members: Vec<&Value> = docs
                        .iter()
                        .copied()
                        .filter(|d| key_of(d) == Some(k))
                        .collect();
                    let s = chrono::DateTime::from_timestamp_millis(k)
                        .unwrap()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    buckets.push(bucket(json!(k), members, Some(("key_as_string", json!(s)))));
                    k += step;
                }
            }
            json!({"buckets": buckets})
        } else if let Some(q) = a.get("filter") {
            let members: Vec<&Value> = docs.iter().copied().filter(|d| matches(q, d)).collect();
            let mut b = json!({"doc_count": members.len()});
            if let Value::Object(m) = &mut b {
                m.extend(aggregate(&sub, &members));
            }
            b
        } else if let Some(f) = a.get("filters") {
            let mut buckets = serde_json::Map::new();
            let mut matched_any = vec![false; docs.len()];
            for (name, q) in f["filters"].as_object().into_iter().flatten() {
                let members: Vec<&Value> = docs
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| matches(q, d))
                    .map(|(i, d)| {
                        matched_any[i] = true;
                        *d
                    })
                    .collect();
                buckets.insert(name.clone(), bucket(Value::Null, members, None));
            }
            if f["other_bucket"] == true {
                let rest: Vec<&Value> = docs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !matched_any[*i])
                    .map(|(_, d)| *d)
                    .collect();
                buckets.insert("_other_".into(), bucket(Value::Null, rest, None));
            }
            for b in buckets.values_mut() {
                if let Value::Object(m) = b {
                    m.remove("key");
                }
            }
            json!({"buckets": buckets})
        } else if let Some((kind, spec)) = a
            .as_object()
            .and_then(|m| m.iter().find(|(k, _)| *k != "aggs"))
        {
            let f = spec["field"].as_str().unwrap_or("");
            let xs = numbers(docs, f);
            let value = match kind.as_str() {
                "min" => xs.iter().copied().reduce(f64::min).map(Value::from),
                "max" => xs.iter().copied().reduce(f64::max).map(Value::from),
                "sum" => Some(Value::from(xs.iter().sum::<f64>())),
                "avg" => {
                    (!xs.is_empty()).then(|| Value::from(xs.iter().sum::<f64>() / xs.len() as f64))
                }
                "value_count" => Some(Value::from(
                    docs.iter().filter(|d| field(d, f).is_some()).count(),
                )),
                "cardinality" => {
                    let mut seen: Vec<String> = docs
                        .iter()
                        .filter_map(|d| field(d, f))
                        .map(Value::to_string)
                        .collect();
                    seen.sort();
                    seen.dedup();
                    Some(Value::from(seen.len()))
                }
                _ => None,
            };
            json!({"value": value})
        } else {
            json!({})
        };
        out.insert(name.clone(), result);
    }
    out
}
