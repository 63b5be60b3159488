//! `type: frequency`: at least `num_events` events within `timeframe`, per
//! `query_key`. As ElastAlert does, events are kept in a window per key
//! that drops its oldest while it spans `timeframe` or more; a key that
//! reaches `num_events` matches once and starts over. The windows are the
//! rule's memory, so a restart neither forgets nor counts twice.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Found, Match, RuleType, TypeDef};
use crate::frontends::elastalert::check::python_str;
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

/// Keys remembered at most; the ones seen longest ago go first.
const MAX_KEYS: usize = 10_000;

pub static TYPE: TypeDef = TypeDef {
    name: "frequency",
    keys: &[
        "num_events",
        "timeframe",
        "use_count_query",
        "use_terms_query",
        "terms_size",
        "attach_related",
    ],
    build: |ch, c| {
        let num_events = ch.require("num_events", "how many events in `timeframe` make a match");
        let timeframe = ch.require(
            "timeframe",
            "the span events are counted over, e.g. `{minutes: 5}`",
        );
        let (num_events, timeframe) = (num_events.is_some(), timeframe.is_some());
        let n = if num_events {
            ch.integer("num_events", 1)
        } else {
            None
        };
        let tf = if timeframe {
            ch.duration("timeframe")
        } else {
            None
        };
        let count_query = ch.boolean("use_count_query").unwrap_or(false);
        let terms_query = ch.boolean("use_terms_query").unwrap_or(false);
        let terms_size = ch.integer("terms_size", 1).unwrap_or(50);
        if ch.boolean("attach_related") == Some(true) {
            ch.problem(
                "/attach_related",
                "`attach_related` is not supported by esalert yet; remove it",
            );
        }
        if terms_query && c.query_key.is_none() {
            ch.problem(
                "/use_terms_query",
                "`use_terms_query` needs a `query_key` to count by",
            );
        }
        let mode = if terms_query {
            Mode::Terms(u64::try_from(terms_size).unwrap_or(50))
        } else if count_query {
            Mode::Count
        } else {
            Mode::Hits
        };
        Some(Box::new(Frequency {
            num_events: u64::try_from(n?).ok()?,
            timeframe: tf?,
            mode,
        }))
    },
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Hits,
    Count,
    Terms(u64),
}

#[derive(Debug)]
struct Frequency {
    num_events: u64,
    timeframe: Duration,
    mode: Mode,
}

/// ElastAlert's `EventWindow` of one key: (time in ms, count), oldest first.
#[derive(Debug, Default, Clone)]
struct Window(VecDeque<(i64, u64)>);

impl Window {
    fn append(&mut self, ms: i64, count: u64, timeframe_ms: i64) {
        // Sorted by time; an equal time goes after the ones already there.
        let at = self.0.partition_point(|(t, _)| *t <= ms);
        self.0.insert(at, (ms, count));
        while let (Some(first), Some(last)) = (self.0.front(), self.0.back()) {
            if last.0.saturating_sub(first.0) >= timeframe_ms {
                self.0.pop_front();
            } else {
                break;
            }
        }
    }

    fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |a, (_, c)| a.saturating_add(*c))
    }
}

fn load(memory: Option<&Value>) -> BTreeMap<String, Window> {
    let mut out = BTreeMap::new();
    let Some(Value::Object(keys)) = memory.and_then(|m| m.get("windows")) else {
        return out;
    };
    for (k, v) in keys {
        let w: VecDeque<(i64, u64)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e.get(0)?.as_i64()?, e.get(1)?.as_u64()?)))
            .collect();
        if !w.is_empty() {
            out.insert(k.clone(), Window(w));
        }
    }
    out
}

fn save(windows: &BTreeMap<String, Window>) -> Value {
    let keys: Map<String, Value> = windows
        .iter()
        .map(|(k, w)| {
            (
                k.clone(),
                Value::from(w.0.iter().map(|(t, c)| json!([t, c])).collect::<Vec<_>>()),
            )
        })
        .collect();
    json!({"windows": keys})
}

impl Frequency {
    /// Adds one event of `key`; a match when the key's window reaches
    /// `num_events` (and the window starts over).
    fn add(&self, windows: &mut BTreeMap<String, Window>, key: &str, ms: i64, count: u64) -> bool {
        let tf = i64::try_from(self.timeframe.as_millis()).unwrap_or(i64::MAX);
        let w = windows.entry(key.to_owned()).or_default();
        w.append(ms, count, tf);
        if w.count() >= self.num_events {
            windows.remove(key);
            return true;
        }
        false
    }
}

fn garbage_collect(
    windows: &mut BTreeMap<String, Window>,
    end: DateTime<Utc>,
    timeframe: Duration,
) {
    let tf = i64::try_from(timeframe.as_millis()).unwrap_or(i64::MAX);
    let end = end.timestamp_millis();
    windows.retain(|_, w| {
        w.0.back()
            .is_some_and(|(t, _)| end.saturating_sub(*t) <= tf)
    });
    if windows.len() > MAX_KEYS {
        let mut last: Vec<(i64, String)> = windows
            .iter()
            .map(|(k, w)| (w.0.back().map_or(0, |e| e.0), k.clone()))
            .collect();
        last.sort();
        for (_, k) in last.iter().take(windows.len() - MAX_KEYS) {
            windows.remove(k);
        }
    }
}

/// The key ElastAlert uses for events of a rule without `query_key`.
const ALL: &str = "all";

impl RuleType for Frequency {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let mut windows = load(cx.memory);
            let mut found = Found::default();
            let end = cx.window.end;
            let end_ms = end.timestamp_millis();
            let stamp = |extra: Option<(&str, Value)>| {
                let mut doc = Map::new();
                doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(end));
                if let Some((k, v)) = extra {
                    doc.insert(k.to_owned(), v);
                }
                doc
            };
            match self.mode {
                Mode::Hits => {
                    let h = query::hits(c, cx, &c.id, &cx.window).await?;
                    found.hits = h.total;
                    found.partial = h.partial;
                    found.took_ms = h.took_ms;
                    for (time, doc) in h.docs {
                        let key = c.key_of(&doc);
                        if self.add(
                            &mut windows,
                            key.as_deref().unwrap_or(ALL),
                            time.timestamp_millis(),
                            1,
                        ) {
                            found.matches.push(Match {
                                key,
                                time,
                                doc: c.as_match(doc, time),
                            });
                        }
                    }
                }
                Mode::Count => {
                    let (n, took) = query::count(c, cx, &c.id, &cx.window).await?;
                    found.hits = n;
                    found.took_ms = took;
                    if n > 0 && self.add(&mut windows, ALL, end_ms, n) {
                        found.matches.push(Match {
                            key: None,
                            time: end,
                            doc: stamp(None),
                        });
                    }
                }
                Mode::Terms(size) => {
                    let field = c
                        .query_key
                        .as_ref()
                        .map(|q| q.join(","))
                        .unwrap_or_default();
                    let (buckets, took) =
                        query::terms(c, cx, &c.id, &cx.window, &field, size).await?;
                    found.took_ms = took;
                    for (value, n) in buckets {
                        found.hits = found.hits.saturating_add(n);
                        let key = python_str(&value);
                        if self.add(&mut windows, &key, end_ms, n) {
                            found.matches.push(Match {
                                key: Some(key),
                                time: end,
                                doc: stamp(Some((&field, value))),
                            });
                        }
                    }
                }
            }
            garbage_collect(&mut windows, end, self.timeframe);
            found.memory = Some(save(&windows));
            Ok(found)
        })
    }

    fn match_str(&self, c: &Common, m: &Match) -> String {
        let tf = chrono::Duration::from_std(self.timeframe).unwrap_or(chrono::Duration::zero());
        let start = m.time.checked_sub_signed(tf).unwrap_or(m.time);
        format!(
            "At least {} events occurred between {} and {}\n\n",
            self.num_events,
            c.pretty_ts(start),
            c.pretty_ts(m.time)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn window_drops_events_a_timeframe_apart_and_starts_over_after_a_match() {
        let f = Frequency {
            num_events: 3,
            timeframe: Duration::from_secs(60),
            mode: Mode::Hits,
        };
        let mut w = BTreeMap::new();
        assert!(!f.add(&mut w, "a", 0, 1));
        assert!(!f.add(&mut w, "a", 30_000, 1));
        // 60 s after the first: the first drops out (span >= timeframe).
        assert!(!f.add(&mut w, "a", 60_000, 1));
        assert!(f.add(&mut w, "a", 61_000, 1));
        assert!(!w.contains_key("a"));
        // Memory round-trips.
        f.add(&mut w, "b", 5, 2);
        assert_eq!(load(Some(&save(&w))).get("b").map(Window::count), Some(2));
        garbage_collect(
            &mut w,
            Utc.timestamp_millis_opt(70_006).unwrap(),
            f.timeframe,
        );
        assert!(w.is_empty());
    }
}
