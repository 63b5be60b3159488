//! `type: cardinality`: more than `max_cardinality` (or, once `timeframe`
//! has passed, fewer than `min_cardinality`) distinct values of
//! `cardinality_field` within `timeframe`, per `query_key`. The values seen
//! and when are the rule's memory, as ElastAlert keeps them in its process.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Found, Match, RuleType, TypeDef, state_key};
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

/// Distinct values remembered at most, all keys together.
const MAX_VALUES: usize = 100_000;

pub static TYPE: TypeDef = TypeDef {
    name: "cardinality",
    keys: &[
        "cardinality_field",
        "max_cardinality",
        "min_cardinality",
        "timeframe",
    ],
    build: |ch, _| {
        ch.require(
            "cardinality_field",
            "the field whose distinct values are counted",
        );
        ch.require(
            "timeframe",
            "the span values are counted over, e.g. `{hours: 1}`",
        );
        let field = ch.string("cardinality_field");
        let timeframe = ch.duration("timeframe");
        let max = ch.integer("max_cardinality", 0);
        let min = ch.integer("min_cardinality", 0);
        if ch.raw("max_cardinality").is_none() && ch.raw("min_cardinality").is_none() {
            ch.problem(
                "/cardinality_field",
                "a cardinality rule needs `max_cardinality` or `min_cardinality`",
            );
            return None;
        }
        Some(Box::new(Cardinality {
            field: field?,
            timeframe: timeframe?,
            max: max.and_then(|n| usize::try_from(n).ok()),
            min: min.and_then(|n| usize::try_from(n).ok()),
        }))
    },
};

#[derive(Debug)]
struct Cardinality {
    field: String,
    timeframe: Duration,
    max: Option<usize>,
    min: Option<usize>,
}

/// Per key: each value's last time (ms), and the key's first event.
#[derive(Debug, Default, PartialEq)]
struct State {
    cache: BTreeMap<String, BTreeMap<String, i64>>,
    first: BTreeMap<String, i64>,
}

const ALL: &str = "all";

impl State {
    fn load(memory: Option<&Value>) -> State {
        let ms_map = |v: &Value| -> BTreeMap<String, i64> {
            v.as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, t)| Some((k.clone(), t.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default()
        };
        let Some(m) = memory else {
            return State::default();
        };
        State {
            cache: m["cache"]
                .as_object()
                .map(|c| c.iter().map(|(k, v)| (k.clone(), ms_map(v))).collect())
                .unwrap_or_default(),
            first: ms_map(&m["first"]),
        }
    }

    fn save(&self) -> Value {
        json!({"cache": self.cache, "first": self.first})
    }
}

impl Cardinality {
    fn tf(&self) -> i64 {
        i64::try_from(self.timeframe.as_millis()).unwrap_or(i64::MAX)
    }

    /// ElastAlert's `check_for_match`; pushes the event when it matches.
    fn check(
        &self,
        st: &mut State,
        key: &str,
        event: &Match,
        gc: bool,
        out: &mut Vec<Match>,
        c: &Common,
    ) {
        let ms = event.time.timestamp_millis();
        let first = st.first.get(key).copied().unwrap_or(ms);
        let elapsed = ms.saturating_sub(first) > self.tf();
        let n = st.cache.get(key).map_or(0, BTreeMap::len);
        let over = self.max.is_some_and(|m| n > m);
        let under = self.min.is_some_and(|m| n < m) && elapsed;
        if !(over || under) {
            return;
        }
        if gc {
            self.collect(st, ms, out, c);
            self.check(st, key, event, false, out, c);
        } else {
            st.first.remove(key);
            out.push(event.clone());
        }
    }

    /// ElastAlert's `garbage_collect`: forget values older than the
    /// timeframe; with `min_cardinality`, check every key at `ms`.
    fn collect(&self, st: &mut State, ms: i64, out: &mut Vec<Match>, c: &Common) {
        let tf = self.tf();
        for terms in st.cache.values_mut() {
            terms.retain(|_, t| ms.saturating_sub(*t) <= tf);
        }
        if self.min.is_some() {
            let keys: Vec<String> = st.cache.keys().cloned().collect();
            let time: DateTime<Utc> = Utc.timestamp_millis_opt(ms).single().unwrap_or_default();
            for key in keys {
                let mut doc = Map::new();
                doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(time));
                let qk = c.query_key.as_ref().map(|_| key.clone());
                if let Some(q) = &c.query_key {
                    doc.insert(q.join(","), Value::String(key.clone()));
                }
                let placeholder = Match { key: qk, time, doc };
                self.check(st, &key, &placeholder, false, out, c);
            }
        }
    }
}

impl RuleType for Cardinality {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let mut st = State::load(cx.memory);
            let (docs, mut found) = super::documents(c, cx).await?;
            let mut out = Vec::new();
            for m in docs {
                let key = m.key.clone().unwrap_or_else(|| ALL.to_owned());
                let ms = m.time.timestamp_millis();
                st.cache.entry(key.clone()).or_default();
                st.first.entry(key.clone()).or_insert(ms);
                let doc = Value::Object(m.doc.clone());
                let value = query::lookup(&doc, &self.field);
                if value.is_some_and(|v| !v.is_null()) {
                    if let Some(terms) = st.cache.get_mut(&key) {
                        terms.insert(state_key(value), ms);
                    }
                    self.check(&mut st, &key, &m, true, &mut out, c);
                }
            }
            self.collect(&mut st, cx.window.end.timestamp_millis(), &mut out, c);
            // A bound on memory: past it, the oldest values go.
            let total: usize = st.cache.values().map(BTreeMap::len).sum();
            if total > MAX_VALUES {
                let mut all: Vec<(i64, String, String)> = st
                    .cache
                    .iter()
                    .flat_map(|(k, t)| t.iter().map(|(v, ms)| (*ms, k.clone(), v.clone())))
                    .collect();
                all.sort();
                for (_, k, v) in all.iter().take(total - MAX_VALUES) {
                    if let Some(t) = st.cache.get_mut(k) {
                        t.remove(v);
                    }
                }
            }
            found.matches = out;
            found.memory = Some(st.save());
            Ok(found)
        })
    }

    fn match_str(&self, c: &Common, m: &Match) -> String {
        let tf = chrono::Duration::from_std(self.timeframe).unwrap_or(chrono::Duration::zero());
        let start = c.pretty_ts(m.time.checked_sub_signed(tf).unwrap_or(m.time));
        let end = c.pretty_ts(m.time);
        match (self.max, self.min) {
            (Some(max), _) => format!(
                "A maximum of {max} unique {}(s) occurred since last alert or between {start} and {end}\n\n",
                self.field
            ),
            (None, min) => format!(
                "Less than {} unique {}(s) occurred since last alert or between {start} and {end}\n\n",
                min.unwrap_or(0),
                self.field
            ),
        }
    }
}
