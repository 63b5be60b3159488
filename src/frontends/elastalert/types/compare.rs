//! `type: blacklist` and `type: whitelist`: a document matches when its
//! `compare_key` is in the blacklist, or not in the whitelist. As
//! ElastAlert does (`filter_by_list`, on by default), the list is also
//! added to the search as a `query_string`, so only candidates are fetched.

use std::collections::HashSet;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Found, RuleType, TypeDef};
use crate::frontends::elastalert::check::Checker;
use crate::frontends::elastalert::{Common, query};
use crate::rule::{EvalContext, EvalError};

pub static BLACKLIST: TypeDef = TypeDef {
    name: "blacklist",
    keys: &["compare_key", "blacklist", "filter_by_list"],
    build: |ch, c| build(ch, c, false),
};

pub static WHITELIST: TypeDef = TypeDef {
    name: "whitelist",
    keys: &["compare_key", "whitelist", "ignore_null", "filter_by_list"],
    build: |ch, c| build(ch, c, true),
};

fn build(ch: &mut Checker<'_>, c: &mut Common, white: bool) -> Option<Box<dyn RuleType>> {
    let list_name = if white { "whitelist" } else { "blacklist" };
    ch.require(
        "compare_key",
        "the field whose value is looked up in the list",
    );
    ch.require(list_name, "the values, a list of strings");
    let ignore_null = if white {
        ch.require(
            "ignore_null",
            "whether documents without `compare_key` are ignored",
        );
        ch.boolean("ignore_null")
    } else {
        Some(false)
    };
    // ElastAlert joins a list of compare keys with "," and looks that up.
    let compare_key = ch.strings("compare_key").map(|k| k.join(","));
    let written = ch.string_list(list_name)?;
    let mut list = Vec::new();
    for (i, e) in written.into_iter().enumerate() {
        match e.strip_prefix("!file") {
            None => list.push(e),
            Some(rest) => match read_list(ch.path(), rest.trim()) {
                Ok(lines) => list.extend(lines),
                Err(why) => ch.problem(&format!("/{list_name}/{i}"), why),
            },
        }
    }
    let compare_key = compare_key?;
    if ch.boolean("filter_by_list").unwrap_or(true) {
        // ElastAlert's `enhance_filter`.
        let terms: Vec<String> = list
            .iter()
            .map(|t| {
                if t.starts_with('/') && t.ends_with('/') {
                    format!("{compare_key}:{t}")
                } else {
                    format!("{compare_key}:\"{t}\"")
                }
            })
            .collect();
        let q = if white {
            format!("NOT {}", terms.join(" AND NOT "))
        } else {
            terms.join(" OR ")
        };
        if !terms.is_empty() {
            c.filters.push(json!({"query_string": {"query": q}}));
        }
    }
    Some(Box::new(Compare {
        compare_key,
        list: list.into_iter().collect(),
        white,
        ignore_null: ignore_null?,
    }))
}

/// A `!file PATH` list: one value per line (trailing whitespace
/// dropped), PATH relative to the rule's folder.
fn read_list(rule: &std::path::Path, file: &str) -> Result<Vec<String>, String> {
    if file.is_empty() {
        return Err("`!file` needs a path: `!file lists/admins.txt`".into());
    }
    let path = rule
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join(file);
    let bytes = crate::alert::read_regular(&path, crate::alert::MAX_FILE_SIZE)
        .map_err(|e| format!("cannot read the list {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("the list {} is not UTF-8", path.display()))?;
    Ok(text.lines().map(|l| l.trim_end().to_owned()).collect())
}

#[derive(Debug)]
struct Compare {
    compare_key: String,
    list: HashSet<String>,
    white: bool,
    ignore_null: bool,
}

impl Compare {
    fn matches(&self, term: Option<&Value>) -> bool {
        // Python's `term in set_of_strings`: only a string can be in it.
        let listed = matches!(term, Some(Value::String(s)) if self.list.contains(s));
        match (self.white, term) {
            (false, _) => listed,
            (true, None | Some(Value::Null)) => !self.ignore_null,
            (true, Some(_)) => !listed,
        }
    }
}

impl RuleType for Compare {
    fn evaluate<'a>(
        &'a self,
        c: &'a Common,
        cx: &'a EvalContext<'a>,
    ) -> BoxFuture<'a, Result<Found, EvalError>> {
        Box::pin(async move {
            let (docs, found) = super::documents(c, cx).await?;
            let matches = docs
                .into_iter()
                .filter(|m| {
                    self.matches(query::lookup(
                        &Value::Object(m.doc.clone()),
                        &self.compare_key,
                    ))
                })
                .collect();
            Ok(Found { matches, ..found })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_compare_strings_only_and_whitelist_minds_nulls() {
        let b = Compare {
            compare_key: "u".into(),
            list: HashSet::from(["root".to_owned(), "5".to_owned()]),
            white: false,
            ignore_null: false,
        };
        assert!(b.matches(Some(&json!("root"))));
        assert!(!b.matches(Some(&json!(5))));
        assert!(!b.matches(None));
        let w = Compare { white: true, ..b };
        assert!(!w.matches(Some(&json!("root"))));
        assert!(w.matches(Some(&json!("bob"))));
        assert!(w.matches(None));
        let w = Compare {
            ignore_null: true,
            ..w
        };
        assert!(!w.matches(None));
    }
}
