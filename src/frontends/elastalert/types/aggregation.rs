//! ElastAlert's aggregation rule types, one search each run: its
//! aggregation query (`bucket_aggs` terms per `query_key` part,
//! `interval_aggs` date histogram per `bucket_interval`, then the rule's
//! own element) over each run's window (ElastAlert searches `buffer_time`
//! segments), checked bucket by bucket.
//!
//! - `metric_aggregation`: a metric (`metric_agg_type` of
//!   `metric_agg_key`) above `max_threshold` or below `min_threshold`;
//! - `percentage_match`: the share of documents that match
//!   `match_bucket_filter` above `max_percentage` or below
//!   `min_percentage` (of at least `min_denominator` documents).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Found, Match, RuleType, TypeDef};
use crate::frontends::elastalert::check::Checker;
use crate::frontends::elastalert::check::python_str;
use crate::frontends::elastalert::query::{base_query, parse_iso};
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

const TYPES: &[&str] = &[
    "min",
    "max",
    "avg",
    "sum",
    "cardinality",
    "value_count",
    "percentiles",
];

pub static TYPE: TypeDef = TypeDef {
    name: "metric_aggregation",
    keys: &[
        "metric_agg_key",
        "metric_agg_type",
        "percentile_range",
        "max_threshold",
        "min_threshold",
        "min_doc_count",
        "bucket_interval",
        "terms_size",
        "metric_agg_script",
        // Segment and bucket alignment: esalert searches each run's window.
        "sync_bucket_interval",
        "use_run_every_query_size",
        "allow_buffer_time_overlap",
    ],
    build: |ch, _| {
        let metric = MetricSpec::read(ch);
        let max = ch.number("max_threshold");
        let min = ch.number("min_threshold");
        if ch.raw("max_threshold").is_none() && ch.raw("min_threshold").is_none() {
            ch.problem(
                "/metric_agg_type",
                "a metric_aggregation rule needs `max_threshold` or `min_threshold`",
            );
        }
        let interval = bucket_interval(ch);
        let min_doc_count = ch.integer("min_doc_count", 0).unwrap_or(1);
        let terms_size = ch.integer("terms_size", 1).unwrap_or(50);
        Some(Box::new(Agg {
            leaf: Leaf::Metric(metric?),
            max,
            min,
            interval,
            min_doc_count,
            terms_size,
        }))
    },
};

pub static PERCENTAGE: TypeDef = TypeDef {
    name: "percentage_match",
    keys: &[
        "match_bucket_filter",
        "min_percentage",
        "max_percentage",
        "min_denominator",
        "bucket_interval",
        "terms_size",
        "min_doc_count",
        "sync_bucket_interval",
        "use_run_every_query_size",
        "allow_buffer_time_overlap",
    ],
    build: |ch, c| {
        ch.require(
            "match_bucket_filter",
            "the query clauses whose share of documents is checked",
        );
        let filter = ch.raw("match_bucket_filter").cloned();
        if ch.raw("max_percentage").is_none() && ch.raw("min_percentage").is_none() {
            ch.problem(
                "/match_bucket_filter",
                "a percentage_match rule needs `max_percentage` or `min_percentage`",
            );
        }
        if c.query_key.as_ref().is_some_and(|q| q.len() > 1) {
            ch.problem(
                "/query_key",
                "percentage_match takes one `query_key` field (ElastAlert fails on compound keys)",
            );
        }
        let max = ch.number("max_percentage");
        let min = ch.number("min_percentage");
        let min_denominator = ch.integer("min_denominator", 0).unwrap_or(0);
        let interval = bucket_interval(ch);
        let min_doc_count = ch.integer("min_doc_count", 0).unwrap_or(1);
        let terms_size = ch.integer("terms_size", 1).unwrap_or(50);
        Some(Box::new(Agg {
            leaf: Leaf::Percentage {
                filter: filter?,
                min_denominator: u64::try_from(min_denominator).unwrap_or(0),
            },
            max,
            min,
            interval,
            min_doc_count,
            terms_size,
        }))
    },
};

/// `bucket_interval` as ElastAlert writes it for Elasticsearch: the first
/// of seconds, minutes, hours, days, weeks it finds.
fn bucket_interval(ch: &mut Checker<'_>) -> Option<String> {
    let v = ch.raw("bucket_interval")?;
    let _ = ch.duration("bucket_interval");
    let unit = ["seconds", "minutes", "hours", "days", "weeks"]
        .into_iter()
        .find_map(|u| Some((u, v.get(u)?.as_i64()?)));
    match unit {
        Some((u, n)) => Some(format!("{n}{}", &u[..1])),
        None => {
            ch.problem(
                "/bucket_interval",
                "`bucket_interval` takes whole seconds, minutes, hours, days or weeks",
            );
            None
        }
    }
}

/// `metric_agg_key` / `metric_agg_type` (/ `percentile_range`,
/// `metric_agg_script`): one metric aggregation.
#[derive(Debug)]
pub(super) struct MetricSpec {
    /// The field.
    pub key: String,
    /// The aggregation.
    pub kind: String,
    /// `metric_<key>_<kind>`, the aggregation's name.
    pub metric_key: String,
    percentile: Option<f64>,
    script: Option<Value>,
}

impl MetricSpec {
    /// Reads the metric keys.
    pub(super) fn read(ch: &mut Checker<'_>) -> Option<MetricSpec> {
        ch.require("metric_agg_key", "the field the metric is computed on");
        ch.require(
            "metric_agg_type",
            "min, max, avg, sum, cardinality, value_count or percentiles",
        );
        let key = ch.string("metric_agg_key");
        let kind = ch.string("metric_agg_type");
        if let Some(k) = &kind
            && !TYPES.contains(&k.as_str())
        {
            ch.problem(
                "/metric_agg_type",
                format!(
                    "`metric_agg_type` must be one of {}, not `{k}`",
                    TYPES.join(", ")
                ),
            );
        }
        let percentile = ch.number("percentile_range");
        if kind.as_deref() == Some("percentiles") && percentile.is_none() {
            ch.problem("/metric_agg_type", "`percentiles` needs `percentile_range`");
        }
        let script = ch.raw("metric_agg_script").cloned();
        let (key, kind) = (key?, kind?);
        Some(MetricSpec {
            metric_key: format!("metric_{key}_{kind}"),
            key,
            kind,
            percentile,
            script,
        })
    }

    /// The aggregation (`generate_aggregation_query`).
    pub(super) fn element(&self) -> Value {
        let kind = &self.kind;
        let mut agg = match &self.script {
            Some(Value::Object(s)) => json!({kind: s}),
            Some(s) => json!({kind: {"script": s}}),
            None => json!({kind: {"field": self.key}}),
        };
        if kind == "percentiles" && agg[kind].get("percents").is_none() {
            agg[kind]["percents"] = json!([self.percentile]);
        }
        json!({&self.metric_key: agg})
    }

    /// A bucket's values (one, or one per percentile).
    pub(super) fn values(&self, data: &Value) -> Vec<Option<f64>> {
        if self.kind == "percentiles" {
            data[&self.metric_key]["values"]
                .as_object()
                .map(|m| m.values().map(Value::as_f64).collect())
                .unwrap_or_default()
        } else {
            vec![data[&self.metric_key]["value"].as_f64()]
        }
    }
}

/// ElastAlert's `get_aggregation_query` and search: `element` per
/// `interval` bucket per `query_key` term, over the run's window.
pub(super) async fn search(
    c: &Common,
    cx: &EvalContext<'_>,
    element: Value,
    interval: Option<&str>,
    terms_size: i64,
    min_doc_count: i64,
) -> Result<(Value, u64), EvalError> {
    let mut aggs = element;
    if let Some(i) = interval {
        aggs = json!({"interval_aggs": {"date_histogram": {"field": c.timestamp_field, "fixed_interval": i}, "aggs": aggs}});
    }
    if let Some(qk) = &c.query_key {
        for k in qk.iter().rev() {
            aggs = json!({"bucket_aggs": {"terms": {"field": k, "size": terms_size, "min_doc_count": min_doc_count}, "aggs": aggs}});
        }
    }
    let mut body = base_query(c, Some(&cx.window), false);
    body.insert("aggs".into(), aggs);
    body.insert("size".into(), json!(0));
    query::run(c, cx, &c.id, Value::Object(body)).await
}

#[derive(Debug)]
struct Agg {
    leaf: Leaf,
    /// `max_threshold` / `max_percentage`.
    max: Option<f64>,
    /// `min_threshold` / `min_percentage`.
    min: Option<f64>,
    interval: Option<String>,
    min_doc_count: i64,
    terms_size: i64,
}

/// What each bucket holds and is checked for.
#[derive(Debug)]
enum Leaf {
    Metric(MetricSpec),
    Percentage { filter: Value, min_denominator: u64 },
}

impl Agg {
    fn crossed(&self, v: Option<f64>) -> bool {
        let Some(v) = v else { return false };
        self.max.is_some_and(|m| v > m) || self.min.is_some_and(|m| v < m)
    }

    /// The rule's own aggregation (`generate_aggregation_query`).
    fn element(&self) -> Value {
        match &self.leaf {
            Leaf::Metric(m) => m.element(),
            Leaf::Percentage { filter, .. } => json!({"percentage_match_aggs": {"filters": {
                "other_bucket": true,
                "filters": {"match_bucket": {"bool": {"must": filter}}}
            }}}),
        }
    }

    /// A bucket's values to check, each with what its match adds.
    fn value(&self, data: &Value) -> Vec<(Option<f64>, Map<String, Value>)> {
        match &self.leaf {
            Leaf::Metric(spec) => {
                let metric_key = &spec.metric_key;
                let vals = spec.values(data);
                vals.into_iter()
                    .map(|v| {
                        let mut m = Map::new();
                        m.insert(metric_key.clone(), json!(v));
                        m.insert("metric_agg_value".into(), json!(v));
                        (v, m)
                    })
                    .collect()
            }
            Leaf::Percentage {
                min_denominator, ..
            } => {
                let b = &data["percentage_match_aggs"]["buckets"];
                let (Some(hit), Some(other)) = (
                    b["match_bucket"]["doc_count"].as_u64(),
                    b["_other_"]["doc_count"].as_u64(),
                ) else {
                    return Vec::new();
                };
                let total = hit.saturating_add(other);
                if total == 0 || total < *min_denominator {
                    return Vec::new();
                }
                let pct = hit as f64 / total as f64 * 100.0;
                let mut m = Map::new();
                m.insert("percentage".into(), json!(pct));
                m.insert("denominator".into(), json!(total));
                vec![(Some(pct), m)]
            }
        }
    }

    fn push(
        &self,
        c: &Common,
        time: DateTime<Utc>,
        parts: &[(String, Value)],
        extra: Map<String, Value>,
        out: &mut Vec<Match>,
    ) {
        let mut doc = Map::new();
        doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(time));
        let metric_value = extra.get("metric_agg_value").cloned();
        for (k, v) in extra {
            if k != "metric_agg_value" {
                doc.insert(k, v);
            }
        }
        let key = match parts {
            [] => None,
            [(field, value)] => {
                // ElastAlert's `expand_string_into_dict`: `a.b` = v is
                // `a: {b: v}`, replacing any `a`.
                let mut segs = field.rsplit('.');
                let mut nested = value.clone();
                let mut top = segs.next().unwrap_or_default().to_owned();
                for s in segs {
                    nested = json!({top: nested});
                    top = s.to_owned();
                }
                doc.insert(top, nested);
                Some(python_str(value))
            }
            many => {
                let joined = many
                    .iter()
                    .map(|(_, v)| python_str(v))
                    .collect::<Vec<_>>()
                    .join(",");
                for (f, v) in many {
                    doc.insert(f.clone(), v.clone());
                }
                if let Some(q) = &c.query_key {
                    doc.insert(q.join(","), Value::String(joined.clone()));
                }
                Some(joined)
            }
        };
        if parts.len() <= 1
            && let Some(v) = metric_value
        {
            doc.insert("metric_agg_value".into(), v);
        }
        out.push(Match { key, time, doc });
    }

    /// `check_matches` (and its compound-key recursion) over one level.
    fn walk(
        &self,
        c: &Common,
        time: DateTime<Utc>,
        data: &Value,
        parts: &mut Vec<(String, Value)>,
        out: &mut Vec<Match>,
    ) {
        let depth = parts.len();
        let qk = c.query_key.as_deref().unwrap_or(&[]);
        if let Some(buckets) = data["bucket_aggs"]["buckets"].as_array() {
            let field = qk.get(depth).cloned().unwrap_or_default();
            for b in buckets {
                parts.push((field.clone(), b["key"].clone()));
                self.walk(c, time, b, parts, out);
                parts.pop();
            }
            return;
        }
        if let Some(buckets) = data["interval_aggs"]["buckets"].as_array() {
            for b in buckets {
                // Compound keys keep the run's time; others the bucket's.
                let t = if qk.len() > 1 {
                    time
                } else {
                    b["key_as_string"]
                        .as_str()
                        .and_then(parse_iso)
                        .unwrap_or(time)
                };
                for (v, extra) in self.value(b) {
                    if self.crossed(v) {
                        self.push(c, t, parts, extra, out);
                    }
                }
            }
            return;
        }
        for (v, extra) in self.value(data) {
            if self.crossed(v) {
                self.push(c, time, parts, extra, out);
            }
        }
    }
}

impl RuleType for Agg {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let (resp, took_ms) = search(
                c,
                cx,
                self.element(),
                self.interval.as_deref(),
                self.terms_size,
                self.min_doc_count,
            )
            .await?;
            let mut found = Found {
                hits: query::total(&resp),
                partial: crate::search::partial_reason(&resp),
                took_ms,
                ..Found::default()
            };
            if let Some(aggs) = resp.get("aggregations") {
                let mut out = Vec::new();
                self.walk(c, cx.window.end, aggs, &mut Vec::new(), &mut out);
                found.matches = out;
            }
            Ok(found)
        })
    }

    fn match_str(&self, _c: &Common, m: &Match) -> String {
        let opt = |v: Option<f64>| v.map_or("None".to_owned(), |f| python_str(&json!(f)));
        let get = |k: &str| m.doc.get(k).map(python_str).unwrap_or_default();
        match &self.leaf {
            Leaf::Metric(MetricSpec {
                key,
                kind,
                metric_key,
                ..
            }) => format!(
                "Threshold violation, {kind}:{key} {} (min: {} max : {}) \n\n",
                get(metric_key),
                opt(self.min),
                opt(self.max)
            ),
            Leaf::Percentage { .. } => format!(
                "Percentage violation, value: {} (min: {} max : {}) of {} items\n\n",
                get("percentage"),
                opt(self.min),
                opt(self.max),
                get("denominator")
            ),
        }
    }
}
