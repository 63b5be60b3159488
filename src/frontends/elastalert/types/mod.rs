//! ElastAlert rule types: one file each, one line in [`TYPES`].
//!
//! A type searches the window its way (documents, a count, terms) and
//! says which events match; everything after that (text, throttle per
//! `query_key`, digests, delivery) is the front end's and the pipeline's.

mod aggregation;
mod any;
mod cardinality;
mod change;
mod compare;
mod flatline;
mod frequency;
mod new_term;
mod spike;

use std::fmt;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use super::Common;
use super::check::Checker;
use crate::rule::{EvalContext, EvalError};

/// One match: the event ElastAlert would alert on.
#[derive(Debug, Clone)]
pub struct Match {
    /// Its `query_key` value (`None` without `query_key`).
    pub key: Option<String>,
    /// The event's time.
    pub time: DateTime<Utc>,
    /// The match as ElastAlert shows it (the document's fields, `_id`,
    /// `_index`, and what the type adds).
    pub doc: Map<String, Value>,
}

/// What a type found in one window.
#[derive(Debug, Default)]
pub struct Found {
    /// The matches, oldest first.
    pub matches: Vec<Match>,
    /// Documents the window held.
    pub hits: u64,
    /// Why the search read less than the window held.
    pub partial: Option<String>,
    /// Search wall time.
    pub took_ms: u64,
    /// What to remember for the next run (`None` keeps the last).
    pub memory: Option<Value>,
}

/// A rule type, compiled.
pub trait RuleType: Send + Sync + fmt::Debug {
    /// Searches `cx.window` and finds the matches.
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>>;
    /// The run's one search when a window without documents is a run
    /// without matches whose outcome that search's count alone decides
    /// (so that it can be folded), or why not.
    fn fold_body(&self, _c: &Common, _cx: &EvalContext<'_>) -> Result<Value, String> {
        Err("only `any` and `frequency` rules are folded".into())
    }
    /// ElastAlert's `get_match_str`: the type's paragraph in the default body.
    fn match_str(&self, _c: &Common, _m: &Match) -> String {
        String::new()
    }
}

/// A rule type as the registry knows it.
pub struct TypeDef {
    /// The `type:` value.
    pub name: &'static str,
    /// The keys only this type reads.
    pub keys: &'static [&'static str],
    /// Reads its keys (problems go to the checker).
    pub build: fn(&mut Checker<'_>, &mut Common) -> Option<Box<dyn RuleType>>,
}

/// Every supported type.
pub static TYPES: &[&TypeDef] = &[
    &any::TYPE,
    &frequency::TYPE,
    &compare::BLACKLIST,
    &compare::WHITELIST,
    &change::TYPE,
    &cardinality::TYPE,
    &flatline::TYPE,
    &spike::TYPE,
    &spike::AGGREGATION,
    &aggregation::TYPE,
    &aggregation::PERCENTAGE,
    &new_term::TYPE,
];

/// ElastAlert's other built-in types, which esalert does not run yet.
pub const NOT_YET: &[&str] = &[];

/// The type named `name`.
pub fn of(name: &str) -> Option<&'static TypeDef> {
    TYPES.iter().copied().find(|t| t.name == name)
}

/// Hashable keys of per-key state: ElastAlert's `hashable(value)`, as
/// text that keeps types apart (`"5"` and `5` differ).
pub fn state_key(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// The documents of the window, as matches of the rule's `query_key`,
/// for types that look at each document.
pub async fn documents(c: &Common, cx: &EvalContext<'_>) -> Result<(Vec<Match>, Found), EvalError> {
    let h = super::query::hits(c, cx, &c.id, &c.first_window(cx)).await?;
    let docs = h
        .docs
        .into_iter()
        .map(|(time, doc)| Match {
            key: c.key_of(&doc),
            time,
            doc: c.as_match(doc, time),
        })
        .collect();
    Ok((
        docs,
        Found {
            hits: h.total,
            partial: h.partial,
            took_ms: h.took_ms,
            ..Found::default()
        },
    ))
}
