//! The group stage: per-entity matches (`group_by`).
//!
//! A response's array (aggregation buckets, `hits.hits`) is split by a key
//! (a host, a user, a bucket key); the condition is evaluated once per
//! element, and each key with an element that meets it is a match of its
//! own, with its own throttle, outbox entry, silence and resolution. Every
//! front end calls [`split`]; what a group then renders to is the front
//! end's.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::condition::Path;
use crate::render::GroupVars;

/// The key of elements that lack the key path.
pub const MISSING_KEY: &str = "(missing)";

/// The key under which keys beyond `max_groups` are summarised.
pub const OVERFLOW_KEY: &str = "(more)";

/// The most `max_groups` may be.
pub const MAX_GROUPS_LIMIT: usize = 10_000;

/// `group_by` as written in a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBy {
    /// The array to split: `aggregations.sources.buckets`, `hits.hits`.
    pub path: String,
    /// The path inside each element that names the entity, or several
    /// paths for a composite key (joined with `|`).
    #[serde(deserialize_with = "key_paths")]
    pub key: Vec<String>,
    /// Keys notified individually per run; the rest go in one summary.
    #[serde(default = "default_max_groups", deserialize_with = "max_groups")]
    pub max_groups: usize,
}

fn default_max_groups() -> usize {
    100
}

fn key_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    crate::alert::one_or_many(
        d,
        "`group_by.key` must be a path such as \"key\" or \"_source.source.ip\", or an array of paths",
        "`group_by.key` must name at least one non-empty path",
    )
}

fn max_groups<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_GROUPS_LIMIT).contains(&n) => Ok(n),
        _ => Err(serde::de::Error::custom(format!(
            "`group_by.max_groups` must be between 1 and {MAX_GROUPS_LIMIT}, found {n}"
        ))),
    }
}

/// What splitting a response came to.
#[derive(Debug, Clone, Default)]
pub struct Grouped {
    /// The matching keys notified individually, in response order.
    pub groups: Vec<GroupVars>,
    /// Matching keys beyond `max_groups`, with their counts.
    pub overflow: Vec<(String, u64)>,
    /// Set when `path` is not an array in the response.
    pub missing: Option<String>,
}

impl Grouped {
    /// Every matching key, overflow included.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.groups
            .iter()
            .map(|g| g.key.as_str())
            .chain(self.overflow.iter().map(|(k, _)| k.as_str()))
    }

    /// The summary line of the keys beyond `max_groups`.
    pub fn overflow_text(&self) -> Option<String> {
        if self.overflow.is_empty() {
            return None;
        }
        let mut text = format!(
            "{} more keys matched beyond max_groups ({} notified individually):\n",
            self.overflow.len(),
            self.groups.len()
        );
        for (k, n) in &self.overflow {
            text.push_str(&format!("{k}\t{n}\n"));
        }
        Some(text)
    }
}

/// The key of one element; parts that don't resolve are [`MISSING_KEY`].
fn key_of(spec: &GroupBy, item: &Value) -> String {
    let parts: Vec<String> = spec
        .key
        .iter()
        .map(|p| match Path::parse(p).resolve(item) {
            None | Some(Value::Null) => MISSING_KEY.to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        })
        .collect();
    parts.join("|")
}

/// Splits `response` by `spec`, keeping the elements `meets` accepts
/// (given each element and its key).
/// A key's count is the sum of its elements' `doc_count` (buckets) or the
/// number of its elements (hits); its item is its first element.
pub fn split<E>(
    response: &Value,
    spec: &GroupBy,
    mut meets: impl FnMut(&Value, &str) -> Result<bool, E>,
) -> Result<Grouped, E> {
    let path = Path::parse(&spec.path);
    let Some(Value::Array(items)) = path.resolve(response) else {
        return Ok(Grouped {
            missing: Some(spec.path.clone()),
            ..Grouped::default()
        });
    };
    let mut order: Vec<(String, Arc<Value>, u64)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for item in items {
        let key = key_of(spec, item);
        if !meets(item, &key)? {
            continue;
        }
        let count = item.get("doc_count").and_then(Value::as_u64).unwrap_or(1);
        match index.get(&key) {
            Some(&i) => {
                if let Some(e) = order.get_mut(i) {
                    e.2 = e.2.saturating_add(count);
                }
            }
            None => {
                index.insert(key.clone(), order.len());
                order.push((key, Arc::new(item.clone()), count));
            }
        }
    }
    let mut out = Grouped::default();
    for (i, (key, item, count)) in order.into_iter().enumerate() {
        if i < spec.max_groups {
            out.groups.push(GroupVars { key, item, count });
        } else {
            out.overflow.push((key, count));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: Value) -> GroupBy {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn buckets_split_by_key_with_doc_counts_and_overflow() {
        let r = json!({"aggregations": {"ips": {"buckets": [
            {"key": "a", "doc_count": 9}, {"key": "b", "doc_count": 2},
            {"key": "c", "doc_count": 7}, {"key": "d", "doc_count": 8}]}}});
        let s = spec(json!({"path": "aggregations.ips.buckets", "key": "key", "max_groups": 2}));
        let g = split::<()>(&r, &s, |i, _| Ok(i["doc_count"].as_u64().unwrap() >= 5)).unwrap();
        let keys: Vec<_> = g.groups.iter().map(|g| (g.key.as_str(), g.count)).collect();
        assert_eq!(keys, [("a", 9), ("c", 7)]);
        assert_eq!(g.overflow, [("d".to_owned(), 8)]);
        assert!(g.overflow_text().unwrap().contains("d\t8"));
    }

    #[test]
    fn hits_group_by_composite_key_and_count_elements() {
        let r = json!({"hits": {"hits": [
            {"_source": {"ip": "1.1.1.1", "user": "x"}},
            {"_source": {"ip": "1.1.1.1", "user": "x"}},
            {"_source": {"ip": "2.2.2.2"}}]}});
        let s = spec(json!({"path": "hits.hits", "key": ["_source.ip", "_source.user"]}));
        let g = split::<()>(&r, &s, |_, _| Ok(true)).unwrap();
        let keys: Vec<_> = g.groups.iter().map(|g| (g.key.as_str(), g.count)).collect();
        assert_eq!(keys, [("1.1.1.1|x", 2), ("2.2.2.2|(missing)", 1)]);
    }

    #[test]
    fn a_missing_array_is_reported_not_matched() {
        let s = spec(json!({"path": "aggregations.nope.buckets", "key": "key"}));
        let g = split::<()>(&json!({}), &s, |_, _| Ok(true)).unwrap();
        assert!(g.groups.is_empty());
        assert_eq!(g.missing.as_deref(), Some("aggregations.nope.buckets"));
    }

    #[test]
    fn bad_specs_are_refused() {
        for v in [
            json!({"path": "x", "key": []}),
            json!({"path": "x", "key": "k", "max_groups": 0}),
            json!({"path": "x", "key": "k", "extra": 1}),
        ] {
            assert!(serde_json::from_value::<GroupBy>(v).is_err());
        }
    }
}
