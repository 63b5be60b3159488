//! Every schema problem of a file in one round, not only the first.
//!
//! serde stops at the first error. So on an error the offending part of a
//! [`Value`] copy is taken out (an unknown key, a value of the wrong type) or
//! stood in for (a missing field), and the copy is deserialized again, until
//! it parses or [`MAX_ROUNDS`] is reached. What parsed in the end lets the
//! later checks (templates, condition, media) run as well.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::error::{Problem, json_problem};
use super::locate::{Seg, locate, pointer_mut};

/// Deserializations of one file at most: one per problem found.
pub const MAX_ROUNDS: usize = 50;

/// Stand-ins for a missing field, tried in order until one has the right type.
/// They are valid and harmless, so the later checks report nothing about them.
fn stand_ins() -> [Value; 5] {
    [
        Value::String("x".into()),
        Value::Object(Map::new()),
        Value::Array(Vec::new()),
        Value::from(0),
        Value::Bool(false),
    ]
}

/// Deserializes `text` (already known to be valid JSON) as `T`. Returns the
/// value, when the file parses or could be repaired so that it does, and
/// every schema problem, each with its position.
pub fn deserialize_all<T: DeserializeOwned>(path: &Path, text: &str) -> (Option<T>, Vec<Problem>) {
    // From the text first: a clean file costs one pass, and serde sees what
    // a `Value` hides (a duplicate key).
    let mut de = serde_json::Deserializer::from_str(text);
    let first = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(t) => return (Some(t), Vec::new()),
        Err(e) => e,
    };
    let first_at = segs(first.path());
    let mut first_problem = json_problem(path, first.inner(), Some(&first.path().to_string()));
    if !first_at.is_empty() {
        first_problem.position = locate(text, &first_at).or(first_problem.position);
    }
    let first_msg = message(first.inner());
    let mut problems = Problems::default();
    problems.push(&first_at, &first_msg, first_problem);
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return (None, problems.list);
    };
    // Fields stood in for, with the index of the stand-in in use.
    let mut standing: Vec<(Vec<Seg>, usize)> = Vec::new();
    let mut seen_first = false;
    let mut last: Option<(Vec<Seg>, String)> = None;
    for _ in 0..MAX_ROUNDS {
        let e = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return (Some(t), problems.list),
            Err(e) => e,
        };
        let at = segs(e.path());
        let msg = message(e.inner());
        if last.as_ref() == Some(&(at.clone(), msg.clone())) {
            // The repair did not help: stop rather than report it twice.
            return (None, problems.list);
        }
        last = Some((at.clone(), msg.clone()));
        // A stand-in of the wrong type: try the next one, silently.
        if let Some(slot) = standing.iter_mut().find(|(p, _)| at.starts_with(p)) {
            slot.1 += 1;
            let next = stand_ins().into_iter().nth(slot.1);
            if next.is_some_and(|v| set(&mut value, &slot.0, v)) {
                continue;
            }
            return (None, problems.list);
        }
        if !seen_first && at == first_at && msg == first_msg {
            seen_first = true;
        } else {
            let mut p = json_problem(path, e.inner(), Some(&e.path().to_string()));
            p.position = locate(text, &at);
            problems.push(&at, &msg, p);
        }
        let repaired = match missing_field(&msg) {
            Some(field) => {
                let mut slot = at.clone();
                slot.push(Seg::key(field));
                let ok = stand_ins()
                    .into_iter()
                    .next()
                    .is_some_and(|v| set(&mut value, &slot, v));
                standing.push((slot, 0));
                ok
            }
            None => remove(&mut value, &at),
        };
        if !repaired {
            return (None, problems.list);
        }
    }
    (None, problems.list)
}

/// The problems found so far. A misspelt key is one mistake, not two: an
/// unknown key close to a missing field becomes "did you mean".
#[derive(Default)]
struct Problems {
    list: Vec<Problem>,
    /// Unknown keys: the object they are in, the key, and their problem.
    unknown: Vec<(Vec<Seg>, String, usize)>,
}

impl Problems {
    fn push(&mut self, at: &[Seg], msg: &str, p: Problem) {
        if let Some(field) = missing_field(msg) {
            // At most one edit in three characters, as a typo makes.
            let near = self.unknown.iter().position(|(parent, key, _)| {
                parent.as_slice() == at
                    && strsim::damerau_levenshtein(key, field).saturating_mul(3) <= field.len()
            });
            if let Some((_, key, i)) = near.map(|n| self.unknown.swap_remove(n))
                && let Some(typo) = self.list.get_mut(i)
            {
                typo.message = format!("unknown field `{key}`: did you mean `{field}`?");
                return;
            }
        }
        if let Some(key) = msg
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            && let Some((_, parent)) = at.split_last()
        {
            self.unknown
                .push((parent.to_vec(), key.to_owned(), self.list.len()));
        }
        self.list.push(p);
    }
}

/// serde's message without " at line L column C".
fn message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(i) => full[..i].to_owned(),
        None => full,
    }
}

/// The field named by serde's "missing field `x`".
fn missing_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("missing field `")?.split('`').next()
}

fn segs(path: &serde_path_to_error::Path) -> Vec<Seg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::key(key.as_str())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

/// Takes out the member of an object that holds the value at `at` (a bad
/// element takes its whole array with it, so that later indexes still match
/// the file). False when there is nothing to take out.
fn remove(value: &mut Value, at: &[Seg]) -> bool {
    let Some(last_key) = at.iter().rposition(|s| matches!(s, Seg::Key(_))) else {
        return false;
    };
    let Some(Seg::Key(k)) = at.get(last_key) else {
        return false;
    };
    match pointer_mut(value, &at[..last_key]) {
        Some(Value::Object(m)) => m.shift_remove(k).is_some(),
        _ => false,
    }
}

/// Sets the member at `at` (whose last segment is a key) to `v`.
fn set(value: &mut Value, at: &[Seg], v: Value) -> bool {
    let Some((Seg::Key(k), parent)) = at.split_last() else {
        return false;
    };
    match pointer_mut(value, parent) {
        Some(Value::Object(m)) => {
            m.insert(k.clone(), v);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: String,
        body: Map<String, Value>,
        #[serde(default)]
        n: u32,
        #[serde(default)]
        list: Vec<u8>,
    }

    fn run(text: &str) -> (Option<T>, Vec<String>) {
        let (t, ps) = deserialize_all::<T>(Path::new("f.json"), text);
        (t, ps.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn reports_each_problem_once_with_its_position() {
        let (t, ps) =
            run("{\"a\": \"x\", \"body\": {},\n \"zz\": 1,\n \"n\": \"no\",\n \"list\": [1, -1]}");
        assert!(t.is_some(), "{ps:?}");
        assert_eq!(ps.len(), 3, "{ps:?}");
        assert!(
            ps[0].starts_with("f.json:2:2: unknown field `zz`"),
            "{ps:?}"
        );
        assert!(ps[1].starts_with("f.json:3:2: invalid type"), "{ps:?}");
        assert!(ps[2].starts_with("f.json:4:14: invalid value"), "{ps:?}");
        assert!(ps.iter().all(|p| !p.contains("missing field `body`")));
    }

    #[test]
    fn missing_fields_are_stood_in_for_silently() {
        let (t, ps) = run("{\"q\": 1}");
        assert!(t.is_some(), "{ps:?}");
        assert_eq!(ps.len(), 3, "{ps:?}");
        assert!(ps.iter().any(|p| p.contains("missing field `a`")));
        assert!(ps.iter().any(|p| p.contains("missing field `body`")));
        assert!(ps.iter().any(|p| p.contains("unknown field `q`")));
    }

    #[test]
    fn a_misspelt_key_is_one_problem() {
        let (t, ps) = run("{\"a\": \"x\",\n \"bdoy\": {}}");
        assert!(t.is_some(), "{ps:?}");
        assert_eq!(
            ps,
            ["f.json:2:2: unknown field `bdoy`: did you mean `body`?"]
        );
    }

    #[test]
    fn clean_text_parses_once() {
        let (t, ps) = run("{\"a\": \"x\", \"body\": {}}");
        assert!(t.is_some() && ps.is_empty());
    }
}
