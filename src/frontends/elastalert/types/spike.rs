//! `type: spike`: the events of the last `timeframe` (current window)
//! against the `timeframe` before it (reference window), per `query_key`:
//! a match when current ≥ reference × `spike_height` (`up`) or ≤
//! reference ÷ `spike_height` (`down`), once both windows have filled
//! (`alert_on_new_data` for keys seen later), with `threshold_ref` /
//! `threshold_cur` minimums, or averages of `field_value`. ElastAlert's
//! `SpikeRule` step for step; both windows are the rule's memory.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::aggregation::{MetricSpec, search};
use super::frequency::{ALL, Mode, events, read_mode};
use super::{Found, Match, RuleType, TypeDef};
use crate::frontends::elastalert::check::Checker;
use crate::frontends::elastalert::check::python_str;
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

/// Documents kept per key for the matches a current window may produce;
/// later entries keep only their time and count.
const MAX_DOCS: usize = 1_000;

/// Keys remembered at most.
const MAX_KEYS: usize = 10_000;

pub static TYPE: TypeDef = TypeDef {
    name: "spike",
    keys: &[
        "spike_height",
        "spike_type",
        "timeframe",
        "use_count_query",
        "use_terms_query",
        "terms_size",
        "alert_on_new_data",
        "threshold_ref",
        "threshold_cur",
        "field_value",
    ],
    build: |ch, c| build(ch, c, false),
};

pub static AGGREGATION: TypeDef = TypeDef {
    name: "spike_aggregation",
    keys: &[
        "spike_height",
        "spike_type",
        "timeframe",
        "terms_size",
        "alert_on_new_data",
        "threshold_ref",
        "threshold_cur",
        "metric_agg_key",
        "metric_agg_type",
        "percentile_range",
        "metric_agg_script",
        "min_doc_count",
        "bucket_interval",
    ],
    build: |ch, c| build(ch, c, true),
};

fn build(ch: &mut Checker<'_>, c: &Common, aggregation: bool) -> Option<Box<dyn RuleType>> {
    {
        ch.require(
            "spike_height",
            "how many times the reference a spike is, e.g. 3",
        );
        ch.require("spike_type", "`up`, `down` or `both`");
        ch.require("timeframe", "the length of each window, e.g. `{hours: 1}`");
        let height = ch.number("spike_height");
        let kind = ch.string("spike_type");
        let timeframe = ch.duration("timeframe");
        let (up, down) = match kind.as_deref() {
            Some("up") => (true, false),
            Some("down") => (false, true),
            Some("both") => (true, true),
            Some(other) => {
                ch.problem(
                    "/spike_type",
                    format!("`spike_type` is up, down or both, not `{other}`"),
                );
                (false, false)
            }
            None => (false, false),
        };
        if height.is_some_and(|h| h <= 0.0) {
            ch.problem("/spike_height", "`spike_height` must be above 0");
        }
        let spike = Spike {
            height: height?,
            up,
            down,
            timeframe: timeframe?,
            new_data: ch.boolean("alert_on_new_data").unwrap_or(false),
            threshold_ref: ch.number("threshold_ref").unwrap_or(0.0),
            threshold_cur: ch.number("threshold_cur").unwrap_or(0.0),
            field_value: if aggregation {
                None
            } else {
                ch.string("field_value")
            },
            mode: if aggregation {
                Mode::Hits
            } else {
                read_mode(ch, c)
            },
            metric: if aggregation {
                Some(MetricSpec::read(ch)?)
            } else {
                None
            },
            terms_size: if aggregation {
                ch.integer("terms_size", 1).unwrap_or(50)
            } else {
                50
            },
            min_doc_count: if aggregation {
                ch.integer("min_doc_count", 0).unwrap_or(1)
            } else {
                1
            },
        };
        if aggregation && ch.raw("bucket_interval").is_some() {
            ch.problem("/bucket_interval", "spike_aggregation compares whole windows: remove `bucket_interval` (ElastAlert refuses it too)");
        }
        kind?;
        Some(Box::new(spike))
    }
}

#[derive(Debug)]
struct Spike {
    height: f64,
    up: bool,
    down: bool,
    timeframe: Duration,
    new_data: bool,
    threshold_ref: f64,
    threshold_cur: f64,
    field_value: Option<String>,
    mode: Mode,
    /// `spike_aggregation`: the metric compared instead of counts.
    metric: Option<MetricSpec>,
    terms_size: i64,
    min_doc_count: i64,
}

/// One event of a window.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    ms: i64,
    /// The event's weight: 1 per document, a count, a field's value, an
    /// aggregation's value (`None` when it had none).
    count: Option<f64>,
    placeholder: bool,
    doc: Option<Map<String, Value>>,
}

/// ElastAlert's `EventWindow`, keeping entries.
#[derive(Debug, Clone, Default, PartialEq)]
struct Win(VecDeque<Entry>);

impl Win {
    /// Appends and returns what fell out (oldest first).
    fn append(&mut self, e: Entry, tf: i64) -> Vec<Entry> {
        let at = self.0.partition_point(|x| x.ms <= e.ms);
        self.0.insert(at, e);
        let mut out = Vec::new();
        while let (Some(first), Some(last)) = (self.0.front(), self.0.back()) {
            if last.ms.saturating_sub(first.ms) >= tf {
                out.extend(self.0.pop_front());
            } else {
                break;
            }
        }
        out
    }

    fn count(&self) -> f64 {
        self.0.iter().filter_map(|e| e.count).sum()
    }

    fn mean(&self) -> Option<f64> {
        let real: Vec<f64> = self
            .0
            .iter()
            .filter(|e| !e.placeholder)
            .filter_map(|e| e.count)
            .collect();
        (!real.is_empty()).then(|| real.iter().sum::<f64>() / real.len() as f64)
    }

    fn min(&self) -> Option<f64> {
        self.0.iter().filter_map(|e| e.count).reduce(f64::min)
    }

    fn max(&self) -> Option<f64> {
        self.0.iter().filter_map(|e| e.count).reduce(f64::max)
    }
}

#[derive(Debug, Default)]
struct KeyState {
    first: Option<i64>,
    skip: Option<i64>,
    cur: Win,
    refw: Win,
}

#[derive(Debug, Default)]
struct State {
    filled: bool,
    keys: BTreeMap<String, KeyState>,
}

fn entry_json(e: &Entry, with_doc: bool) -> Value {
    match (&e.doc, with_doc) {
        (Some(d), true) => json!([e.ms, e.count, e.placeholder, d]),
        _ => json!([e.ms, e.count, e.placeholder]),
    }
}

fn entry_of(v: &Value) -> Option<Entry> {
    Some(Entry {
        ms: v.get(0)?.as_i64()?,
        count: v.get(1)?.as_f64(),
        placeholder: v.get(2)?.as_bool()?,
        doc: v.get(3).and_then(Value::as_object).cloned(),
    })
}

impl State {
    fn load(m: Option<&Value>) -> State {
        let Some(m) = m else {
            return State::default();
        };
        let win = |v: &Value| {
            Win(v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(entry_of)
                .collect())
        };
        State {
            filled: m["filled"].as_bool().unwrap_or(false),
            keys: m["keys"]
                .as_object()
                .map(|k| {
                    k.iter()
                        .map(|(qk, s)| {
                            (
                                qk.clone(),
                                KeyState {
                                    first: s["first"].as_i64(),
                                    skip: s["skip"].as_i64(),
                                    cur: win(&s["cur"]),
                                    refw: win(&s["ref"]),
                                },
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn save(&self) -> Value {
        let keys: Map<String, Value> = self
            .keys
            .iter()
            .map(|(k, s)| {
                let cur: Vec<Value> = s
                    .cur
                    .0
                    .iter()
                    .enumerate()
                    .map(|(i, e)| entry_json(e, i < MAX_DOCS))
                    .collect();
                let refw: Vec<Value> = s.refw.0.iter().map(|e| entry_json(e, false)).collect();
                (
                    k.clone(),
                    json!({"first": s.first, "skip": s.skip, "cur": cur, "ref": refw}),
                )
            })
            .collect();
        json!({"filled": self.filled, "keys": keys})
    }
}

impl Spike {
    fn tf(&self) -> i64 {
        i64::try_from(self.timeframe.as_millis()).unwrap_or(i64::MAX)
    }

    /// `get_spike_values`: reference and current.
    fn values(&self, s: &KeyState) -> (Option<f64>, Option<f64>) {
        if self.field_value.is_some() {
            return (s.refw.mean(), s.cur.mean());
        }
        match self.metric.as_ref().map(|m| m.kind.as_str()) {
            Some("avg") => (s.refw.mean(), s.cur.mean()),
            Some("min") => (s.refw.min(), s.cur.min()),
            Some("max") => (s.refw.max(), s.cur.max()),
            _ => (Some(s.refw.count()), Some(s.cur.count())),
        }
    }

    /// ElastAlert's `find_matches`, including its quirks: with counts, a
    /// reference of 0 is a spike up unless `threshold_ref` says otherwise.
    fn spiked(&self, r: Option<f64>, c: Option<f64>) -> bool {
        match (self.field_value.is_none(), r, c) {
            (true, Some(r), Some(c)) => {
                if c < self.threshold_cur || r < self.threshold_ref {
                    return false;
                }
            }
            (_, Some(r), Some(c)) if r != 0.0 && c != 0.0 => {}
            _ => return false,
        }
        let (r, c) = (r.unwrap_or(0.0), c.unwrap_or(0.0));
        (self.up && c >= r * self.height) || (self.down && c <= r / self.height)
    }

    fn handle(
        &self,
        st: &mut State,
        qk: &str,
        e: Entry,
        has_qk: bool,
        c: &Common,
        out: &mut Vec<Match>,
    ) {
        let tf = self.tf();
        let ms = e.ms;
        let s = st.keys.entry(qk.to_owned()).or_default();
        let first = *s.first.get_or_insert(ms);
        for old in s.cur.append(e, tf) {
            s.refw.append(Entry { doc: None, ..old }, tf);
        }
        if ms.saturating_sub(first) < tf.saturating_mul(2) {
            if !(st.filled && has_qk && self.new_data) || s.skip.is_some_and(|k| ms < k) {
                return;
            }
        } else {
            st.filled = true;
        }
        let (r, cur) = self.values(s);
        if !self.spiked(r, cur) {
            return;
        }
        // The first real event of the current window (ElastAlert's loop
        // leaves the last one when none qualifies).
        let pick = if self.field_value.is_some() {
            s.cur.0.iter().find(|x| !x.placeholder)
        } else {
            s.cur.0.iter().find(|x| x.count.is_some_and(|c| c != 0.0))
        }
        .or(s.cur.0.back())
        .cloned();
        let Some(m) = pick else { return };
        let time = chrono::DateTime::from_timestamp_millis(m.ms).unwrap_or_default();
        let mut doc = m.doc.unwrap_or_else(|| {
            let mut d = Map::new();
            d.insert(c.timestamp_field.clone(), c.timestamp_type.format(time));
            d
        });
        let num = |v: Option<f64>| match v {
            Some(f) if self.field_value.is_none() && self.metric.is_none() => json!(f as i64),
            Some(f) => json!(f),
            None => Value::Null,
        };
        doc.insert("spike_count".into(), num(cur));
        doc.insert("reference_count".into(), num(r));
        let key = has_qk.then(|| qk.to_owned());
        out.push(Match { key, time, doc });
        s.refw.0.clear();
        s.first = None;
        s.skip = Some(m.ms.saturating_add(tf.saturating_mul(2)));
    }
}

/// The leaves of `bucket_aggs` (one per query_key term, compound keys
/// nested), with the key parts leading to each.
fn leaves_of<'v>(
    data: &'v Value,
    parts: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, &'v Value)>,
) {
    match data["bucket_aggs"]["buckets"].as_array() {
        Some(buckets) => {
            for b in buckets {
                parts.push(python_str(&b["key"]));
                leaves_of(b, parts, out);
                parts.pop();
            }
        }
        None => out.push((parts.clone(), data)),
    }
}

impl RuleType for Spike {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let mut st = State::load(cx.memory);
            let mut found = Found::default();
            let mut out = Vec::new();
            let has_qk = c.query_key.is_some();
            if let Some(metric) = &self.metric {
                let (resp, took) = search(
                    c,
                    cx,
                    metric.element(),
                    None,
                    self.terms_size,
                    self.min_doc_count,
                )
                .await?;
                found.took_ms = took;
                found.hits = query::total(&resp);
                let end = cx.window.end;
                let mut leaves = Vec::new();
                leaves_of(&resp["aggregations"], &mut Vec::new(), &mut leaves);
                for (parts, data) in leaves {
                    let qk = if parts.is_empty() {
                        ALL.to_owned()
                    } else {
                        parts.join(",")
                    };
                    let mut doc = Map::new();
                    doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(end));
                    if let Some(q) = &c.query_key {
                        doc.insert(q.join(","), Value::String(qk.clone()));
                    }
                    let count = metric.values(data).into_iter().next().flatten();
                    let entry = Entry {
                        ms: end.timestamp_millis(),
                        count,
                        placeholder: false,
                        doc: Some(doc),
                    };
                    self.handle(&mut st, &qk, entry, has_qk, c, &mut out);
                }
            }
            let evs = if self.metric.is_some() {
                Vec::new()
            } else {
                events(c, cx, self.mode, &mut found).await?
            };
            for e in evs {
                let doc = Value::Object(e.event.doc.clone());
                let qk = match (self.mode, &c.query_key) {
                    (Mode::Hits, Some(q)) => match query::lookup(&doc, &q.join(",")) {
                        None | Some(Value::Null) => "other".to_owned(),
                        Some(v) => python_str(v),
                    },
                    (Mode::Hits, None) | (Mode::Count, _) => ALL.to_owned(),
                    (Mode::Terms(_), _) => e.window_key.clone(),
                };
                let count = match &self.field_value {
                    None => e.count as f64,
                    Some(f) => match e.event.doc.get(f).map(|v| match v {
                        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        _ => None,
                    }) {
                        Some(Some(n)) => n as f64,
                        _ => continue,
                    },
                };
                let entry = Entry {
                    ms: e.ms,
                    count: Some(count),
                    placeholder: false,
                    doc: Some(e.event.doc),
                };
                self.handle(&mut st, &qk, entry, has_qk, c, &mut out);
            }
            // `garbage_collect(end)`: a placeholder for every key. ElastAlert
            // runs it after document, count and terms searches, not after
            // an aggregation search that covers the run's one segment.
            let end = cx.window.end;
            let keys: Vec<String> = if self.metric.is_some() {
                Vec::new()
            } else {
                st.keys.keys().cloned().collect()
            };
            for qk in keys {
                if let Some(s) = st.keys.get(&qk)
                    && qk != ALL
                    && s.refw.count() == 0.0
                    && s.cur.count() == 0.0
                {
                    st.keys.remove(&qk);
                    continue;
                }
                let mut doc = Map::new();
                doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(end));
                doc.insert("placeholder".into(), Value::Bool(true));
                if let Some(q) = &c.query_key {
                    doc.insert(q.join(","), Value::String(qk.clone()));
                }
                let entry = Entry {
                    ms: end.timestamp_millis(),
                    count: Some(0.0),
                    placeholder: true,
                    doc: Some(doc),
                };
                self.handle(&mut st, &qk, entry, has_qk, c, &mut out);
            }
            // A bound on memory: past it, the keys quiet longest go.
            if st.keys.len() > MAX_KEYS {
                let mut last: Vec<(i64, String)> = st
                    .keys
                    .iter()
                    .map(|(k, s)| (s.cur.0.back().map_or(i64::MIN, |e| e.ms), k.clone()))
                    .collect();
                last.sort();
                for (_, k) in last.iter().take(st.keys.len() - MAX_KEYS) {
                    st.keys.remove(k);
                }
            }
            found.matches = out;
            found.memory = Some(st.save());
            Ok(found)
        })
    }

    fn match_str(&self, c: &Common, m: &Match) -> String {
        let tf = humantime::format_duration(self.timeframe);
        let get = |k: &str| m.doc.get(k).cloned().unwrap_or(Value::Null);
        if let Some(metric) = &self.metric {
            let round = |k: &str| {
                get(k).as_f64().map_or("None".to_owned(), |f| {
                    python_str(&json!((f * 100.0).round() / 100.0))
                })
            };
            return format!(
                "An abnormal {0} of {1} ({2}) occurred around {3}.\nPreceding that time, there was a {0} of {1} of ({4}) within {tf}\n\n",
                metric.kind,
                metric.key,
                round("spike_count"),
                c.pretty_ts(m.time),
                round("reference_count")
            );
        }
        match &self.field_value {
            None => format!(
                "An abnormal number ({}) of events occurred around {}.\nPreceding that time, there were only {} events within {tf}\n\n",
                python_str(&get("spike_count")),
                c.pretty_ts(m.time),
                python_str(&get("reference_count"))
            ),
            Some(f) => format!(
                "An abnormal average value ({:.2}) of field '{f}' occurred around {}.\nPreceding that time, the field had an average value of ({:.2}) within {tf}\n\n",
                get("spike_count").as_f64().unwrap_or(0.0),
                c.pretty_ts(m.time),
                get("reference_count").as_f64().unwrap_or(0.0)
            ),
        }
    }
}
