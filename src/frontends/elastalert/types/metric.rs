//! `type: metric_aggregation`: a metric (`metric_agg_type` of
//! `metric_agg_key`) over the window, per `query_key` term and per
//! `bucket_interval`, above `max_threshold` or below `min_threshold`.
//! The search is ElastAlert's aggregation query (`bucket_aggs` terms per
//! key part, `interval_aggs` date histogram, the metric), over each run's
//! window (ElastAlert searches `buffer_time` segments).

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Found, Match, RuleType, TypeDef};
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
    ],
    build: |ch, _| {
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
        let max = ch.number("max_threshold");
        let min = ch.number("min_threshold");
        if ch.raw("max_threshold").is_none() && ch.raw("min_threshold").is_none() {
            ch.problem(
                "/metric_agg_type",
                "a metric_aggregation rule needs `max_threshold` or `min_threshold`",
            );
        }
        let interval = match ch.raw("bucket_interval") {
            None => None,
            Some(v) => {
                let _ = ch.duration("bucket_interval");
                // ElastAlert takes the first of these units it finds.
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
        };
        let script = ch.raw("metric_agg_script").cloned();
        let min_doc_count = ch.integer("min_doc_count", 0).unwrap_or(1);
        let terms_size = ch.integer("terms_size", 1).unwrap_or(50);
        let (key, kind) = (key?, kind?);
        Some(Box::new(Metric {
            metric_key: format!("metric_{key}_{kind}"),
            key,
            kind,
            percentile,
            max,
            min,
            interval,
            script,
            min_doc_count,
            terms_size,
        }))
    },
};

#[derive(Debug)]
struct Metric {
    key: String,
    kind: String,
    metric_key: String,
    percentile: Option<f64>,
    max: Option<f64>,
    min: Option<f64>,
    interval: Option<String>,
    script: Option<Value>,
    min_doc_count: i64,
    terms_size: i64,
}

impl Metric {
    fn crossed(&self, v: Option<f64>) -> bool {
        let Some(v) = v else { return false };
        self.max.is_some_and(|m| v > m) || self.min.is_some_and(|m| v < m)
    }

    /// ElastAlert's `get_aggregation_query`.
    fn body(&self, c: &Common, cx: &EvalContext<'_>) -> Value {
        let mut agg = match &self.script {
            Some(Value::Object(s)) => json!({&self.kind: s}),
            Some(s) => json!({&self.kind: {"script": s}}),
            None => json!({&self.kind: {"field": self.key}}),
        };
        if self.kind == "percentiles" && agg[&self.kind].get("percents").is_none() {
            agg[&self.kind]["percents"] = json!([self.percentile]);
        }
        let mut aggs = json!({&self.metric_key: agg});
        if let Some(i) = &self.interval {
            aggs = json!({"interval_aggs": {"date_histogram": {"field": c.timestamp_field, "fixed_interval": i}, "aggs": aggs}});
        }
        if let Some(qk) = &c.query_key {
            for k in qk.iter().rev() {
                aggs = json!({"bucket_aggs": {"terms": {"field": k, "size": self.terms_size, "min_doc_count": self.min_doc_count}, "aggs": aggs}});
            }
        }
        let mut body = base_query(c, Some(&cx.window), false);
        body.insert("aggs".into(), aggs);
        body.insert("size".into(), json!(0));
        Value::Object(body)
    }

    fn value(&self, data: &Value) -> Vec<Option<f64>> {
        if self.kind == "percentiles" {
            data[&self.metric_key]["values"]
                .as_object()
                .map(|m| m.values().map(Value::as_f64).collect())
                .unwrap_or_default()
        } else {
            vec![data[&self.metric_key]["value"].as_f64()]
        }
    }

    fn push(
        &self,
        c: &Common,
        time: DateTime<Utc>,
        parts: &[(String, Value)],
        v: f64,
        out: &mut Vec<Match>,
    ) {
        let mut doc = Map::new();
        doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(time));
        doc.insert(self.metric_key.clone(), json!(v));
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
        if parts.len() <= 1 {
            doc.insert("metric_agg_value".into(), json!(v));
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
                for v in self.value(b) {
                    if self.crossed(v) {
                        self.push(c, t, parts, v.unwrap_or_default(), out);
                    }
                }
            }
            return;
        }
        for v in self.value(data) {
            if self.crossed(v) {
                self.push(c, time, parts, v.unwrap_or_default(), out);
            }
        }
    }
}

impl RuleType for Metric {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let (resp, took_ms) = query::run(c, cx, &c.id, self.body(c, cx)).await?;
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
        format!(
            "Threshold violation, {}:{} {} (min: {} max : {}) \n\n",
            self.kind,
            self.key,
            m.doc
                .get(&self.metric_key)
                .map(python_str)
                .unwrap_or_default(),
            opt(self.min),
            opt(self.max)
        )
    }
}
