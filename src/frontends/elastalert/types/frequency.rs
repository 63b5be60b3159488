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
use crate::frontends::elastalert::check::Checker;
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
        ch.require("num_events", "how many events in `timeframe` make a match");
        ch.require(
            "timeframe",
            "the span events are counted over, e.g. `{minutes: 5}`",
        );
        let n = ch.integer("num_events", 1);
        let tf = ch.duration("timeframe");
        if ch.boolean("attach_related") == Some(true) {
            ch.problem(
                "/attach_related",
                "`attach_related` is not supported by esalert yet; remove it",
            );
        }
        let mode = read_mode(ch, c);
        Some(Box::new(Frequency {
            num_events: u64::try_from(n?).ok()?,
            timeframe: tf?,
            mode,
        }))
    },
};

/// `use_count_query` / `use_terms_query` / `terms_size`: how a type that
/// counts events gets them.
pub(super) fn read_mode(ch: &mut Checker<'_>, c: &Common) -> Mode {
    let count_query = ch.boolean("use_count_query").unwrap_or(false);
    let terms_query = ch.boolean("use_terms_query").unwrap_or(false);
    let terms_size = ch.integer("terms_size", 1).unwrap_or(50);
    if terms_query && c.query_key.is_none() {
        ch.problem(
            "/use_terms_query",
            "`use_terms_query` needs a `query_key` to count by",
        );
    }
    if terms_query {
        Mode::Terms(u64::try_from(terms_size).unwrap_or(50))
    } else if count_query {
        Mode::Count
    } else {
        Mode::Hits
    }
}

/// How events are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
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
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Window(pub(super) VecDeque<(i64, u64)>);

impl Window {
    pub(super) fn append(&mut self, ms: i64, count: u64, timeframe_ms: i64) {
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

    pub(super) fn count(&self) -> u64 {
        self.0.iter().fold(0u64, |a, (_, c)| a.saturating_add(*c))
    }
}

pub(super) fn load(memory: Option<&Value>) -> BTreeMap<String, Window> {
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

pub(super) fn save(windows: &BTreeMap<String, Window>) -> Value {
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

pub(super) fn garbage_collect(
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
pub(super) const ALL: &str = "all";

/// One event for a window: a document (count 1), or a count of the run's
/// window (`use_count_query`), or of one term (`use_terms_query`).
pub(super) struct Event {
    /// The window it goes to ([`ALL`] without `query_key`).
    pub window_key: String,
    /// Its time.
    pub ms: i64,
    /// How many events it stands for.
    pub count: u64,
    /// The match it would be.
    pub event: Match,
}

/// The run's events, oldest first; `found` gets the hit count and timing.
pub(super) async fn events(
    c: &Common,
    cx: &EvalContext<'_>,
    mode: Mode,
    found: &mut Found,
) -> Result<Vec<Event>, EvalError> {
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
    let mut out = Vec::new();
    match mode {
        Mode::Hits => {
            let h = query::hits(c, cx, &c.id, &c.first_window(cx)).await?;
            found.hits = h.total;
            found.partial = h.partial;
            found.took_ms = h.took_ms;
            for (time, doc) in h.docs {
                let key = c.key_of(&doc);
                out.push(Event {
                    window_key: key.clone().unwrap_or_else(|| ALL.to_owned()),
                    ms: time.timestamp_millis(),
                    count: 1,
                    event: Match {
                        key,
                        time,
                        doc: c.as_match(doc, time),
                    },
                });
            }
        }
        Mode::Count => {
            let (n, took) = query::count(c, cx, &c.id, &cx.window).await?;
            found.hits = n;
            found.took_ms = took;
            out.push(Event {
                window_key: ALL.to_owned(),
                ms: end_ms,
                count: n,
                event: Match {
                    key: None,
                    time: end,
                    doc: stamp(None),
                },
            });
        }
        Mode::Terms(size) => {
            let field = c
                .query_key
                .as_ref()
                .map(|q| q.join(","))
                .unwrap_or_default();
            let (buckets, took) = query::terms(c, cx, &c.id, &cx.window, &field, size).await?;
            found.took_ms = took;
            for (value, n) in buckets {
                found.hits = found.hits.saturating_add(n);
                let key = python_str(&value);
                out.push(Event {
                    window_key: key.clone(),
                    ms: end_ms,
                    count: n,
                    event: Match {
                        key: Some(key),
                        time: end,
                        doc: stamp(Some((&field, value))),
                    },
                });
            }
        }
    }
    Ok(out)
}

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
            let events = events(c, cx, self.mode, &mut found).await?;
            for e in events {
                if self.add(&mut windows, &e.window_key, e.ms, e.count) {
                    found.matches.push(e.event);
                }
            }
            garbage_collect(&mut windows, end, self.timeframe);
            found.memory = Some(save(&windows));
            Ok(found)
        })
    }

    fn fold_body(&self, c: &Common, cx: &EvalContext<'_>) -> Result<Value, String> {
        match self.mode {
            Mode::Hits => Ok(query::hits_body(c, &c.first_window(cx))),
            Mode::Count => Ok(query::count_body(c, &cx.window)),
            Mode::Terms(_) => Err("`use_terms_query` counts per term".into()),
        }
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
