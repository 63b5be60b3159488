//! `type: flatline`: fewer than `threshold` events within `timeframe`, per
//! `query_key`. ElastAlert's rule, step for step: the event windows of
//! `frequency`, checked after each run's last document and once more at
//! the end of the run with an empty event at the window's end; a key keeps
//! matching each run until it has events again (or is forgotten, with
//! `forget_keys`). Windows and first-event times are the rule's memory.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::frequency::{ALL, Mode, Window, events, load, read_mode, save};
use super::{Found, Match, RuleType, TypeDef};
use crate::frontends::elastalert::Common;
use crate::rule::{EvalContext, EvalError};

/// Keys remembered at most.
const MAX_KEYS: usize = 10_000;

pub static TYPE: TypeDef = TypeDef {
    name: "flatline",
    keys: &[
        "threshold",
        "timeframe",
        "use_count_query",
        "use_terms_query",
        "terms_size",
        "forget_keys",
    ],
    build: |ch, c| {
        ch.require(
            "threshold",
            "the fewest events in `timeframe` that are not a match",
        );
        ch.require(
            "timeframe",
            "the span events are counted over, e.g. `{minutes: 5}`",
        );
        let threshold = ch.integer("threshold", 0);
        let timeframe = ch.duration("timeframe");
        let forget_keys = ch.boolean("forget_keys").unwrap_or(false);
        let mode = read_mode(ch, c);
        Some(Box::new(Flatline {
            threshold: u64::try_from(threshold?).ok()?,
            timeframe: timeframe?,
            forget_keys,
            mode,
        }))
    },
};

#[derive(Debug)]
struct Flatline {
    threshold: u64,
    timeframe: Duration,
    forget_keys: bool,
    mode: Mode,
}

struct State {
    windows: BTreeMap<String, Window>,
    first: BTreeMap<String, i64>,
}

impl Flatline {
    fn tf(&self) -> i64 {
        i64::try_from(self.timeframe.as_millis()).unwrap_or(i64::MAX)
    }

    /// ElastAlert's `FlatlineRule.check_for_match(key, end=True)`; `last`
    /// is the newest event of the key's window.
    fn check(&self, st: &mut State, key: &str, last: &Match, c: &Common, out: &mut Vec<Match>) {
        let Some(w) = st.windows.get(key) else {
            return;
        };
        let (Some(newest), Some(oldest)) = (w.0.back().map(|e| e.0), w.0.front().map(|e| e.0))
        else {
            return;
        };
        let first = *st.first.entry(key.to_owned()).or_insert(newest);
        if newest.saturating_sub(first) < self.tf() {
            return;
        }
        let count = w.count();
        if count >= self.threshold {
            return;
        }
        let mut m = last.clone();
        m.doc.insert("key".into(), Value::String(key.to_owned()));
        m.doc.insert("count".into(), Value::from(count));
        m.doc
            .insert("threshold".into(), Value::from(self.threshold));
        if c.query_key.is_none() {
            m.key = None;
        }
        out.push(m);
        if self.forget_keys {
            st.first.remove(key);
            st.windows.remove(key);
        } else {
            st.first
                .insert(key.to_owned(), oldest.min(newest.saturating_sub(self.tf())));
        }
    }
}

impl RuleType for Flatline {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let mut st = State {
                windows: load(cx.memory),
                first: cx
                    .memory
                    .and_then(|m| m.get("first"))
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            let mut found = Found::default();
            let mut out = Vec::new();
            let evs = events(c, cx, self.mode, &mut found).await?;
            let tf = self.tf();
            let mut last = None;
            for e in evs {
                st.windows
                    .entry(e.window_key.clone())
                    .or_default()
                    .append(e.ms, e.count, tf);
                last = Some(e);
            }
            // Only documents are checked after the run's last one; counts
            // and terms wait for the end of the run, as in ElastAlert.
            if self.mode == Mode::Hits
                && let Some(e) = last
            {
                self.check(&mut st, &e.window_key, &e.event, c, &mut out);
            }
            // `garbage_collect(end)`: an empty event for every key.
            let end = cx.window.end;
            let mut keys: Vec<String> = st.windows.keys().cloned().collect();
            if keys.is_empty() && c.query_key.is_none() {
                keys.push(ALL.to_owned());
            }
            for key in keys {
                st.windows
                    .entry(key.clone())
                    .or_default()
                    .append(end.timestamp_millis(), 0, tf);
                st.first
                    .entry(key.clone())
                    .or_insert(end.timestamp_millis());
                let mut doc = Map::new();
                doc.insert(c.timestamp_field.clone(), c.timestamp_type.format(end));
                let placeholder = Match {
                    key: c.query_key.as_ref().map(|_| key.clone()),
                    time: end,
                    doc,
                };
                self.check(&mut st, &key, &placeholder, c, &mut out);
            }
            // A bound on memory: past it, the keys whose last event is
            // oldest go (they would keep matching as flat).
            if st.windows.len() > MAX_KEYS {
                let mut last: Vec<(i64, String)> = st
                    .windows
                    .iter()
                    .map(|(k, w)| {
                        (
                            w.0.iter().rev().find(|e| e.1 > 0).map_or(i64::MIN, |e| e.0),
                            k.clone(),
                        )
                    })
                    .collect();
                last.sort();
                for (_, k) in last.iter().take(st.windows.len() - MAX_KEYS) {
                    st.windows.remove(k);
                    st.first.remove(k);
                }
            }
            found.matches = out;
            let mut memory = save(&st.windows);
            memory["first"] = json!(st.first);
            found.memory = Some(memory);
            Ok(found)
        })
    }

    fn match_str(&self, c: &Common, m: &Match) -> String {
        let tf = chrono::Duration::from_std(self.timeframe).unwrap_or(chrono::Duration::zero());
        format!(
            "An abnormally low number of events occurred around {}.\nBetween {} and {}, there were less than {} events.\n\n",
            c.pretty_ts(m.time),
            c.pretty_ts(m.time.checked_sub_signed(tf).unwrap_or(m.time)),
            c.pretty_ts(m.time),
            self.threshold
        )
    }
}
