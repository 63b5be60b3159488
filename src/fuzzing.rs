//! Entry points for the fuzz targets in `fuzz/` (and their smoke test).
//! Each must return normally for any input: bad input never panics.

use crate::condition::{Condition, ConditionSpec, ScriptEngine};

/// The alert-file loader on arbitrary bytes.
pub fn loader(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let engine = ScriptEngine::new(crate::condition::script::Limits {
        max_operations: 10_000,
        ..Default::default()
    });
    let _ = crate::alert::parse_alert("fuzz", std::path::Path::new("fuzz.json"), text, &engine);
}

/// The ElastAlert rule loader (YAML, schema, rule types) on arbitrary bytes.
pub fn elastalert(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::frontends::elastalert::load("fuzz", std::path::Path::new("fuzz.yaml"), text);
}

/// A condition (first line, JSON) evaluated on a response (the rest, JSON).
pub fn condition(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (spec, response) = text.split_once('\n').unwrap_or((text, "{}"));
    let (Ok(spec), Ok(response)) = (
        serde_json::from_str::<ConditionSpec>(spec),
        serde_json::from_str::<serde_json::Value>(response),
    ) else {
        return;
    };
    let engine = ScriptEngine::new(crate::condition::script::Limits {
        max_operations: 10_000,
        ..Default::default()
    });
    if let Ok(c) = Condition::compile(spec, &engine) {
        let _ = c.evaluate(&engine, &response);
    }
    let _ = crate::condition::hits_total(&response);
}

/// The logfmt writer: whatever the value, the line stays one parseable line.
pub fn logfmt(data: &[u8]) {
    let value = String::from_utf8_lossy(data);
    let mut out = String::new();
    crate::log::escape_value(&value, &mut out);
    assert!(
        !out.contains('\n') && !out.contains('\r'),
        "newline in {out:?}"
    );
    if out.starts_with('"') {
        assert!(out.len() >= 2 && out.ends_with('"'), "unterminated {out:?}");
        // Unescape and compare: the value survives the round trip.
        let inner = &out[1..out.len() - 1];
        let mut back = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => back.push('\n'),
                    Some('r') => back.push('\r'),
                    Some('t') => back.push('\t'),
                    Some('u') => {
                        let hex: String =
                            chars.by_ref().skip(1).take_while(|c| *c != '}').collect();
                        back.push(
                            char::from_u32(u32::from_str_radix(&hex, 16).expect("hex"))
                                .expect("char"),
                        );
                    }
                    Some(c) => back.push(c),
                    None => panic!("dangling escape in {out:?}"),
                },
                '"' => panic!("unescaped quote in {out:?}"),
                c => back.push(c),
            }
        }
        assert_eq!(back, value, "round trip");
    } else {
        assert!(
            !out.contains(' ') && !out.contains('=') && !out.is_empty(),
            "{out:?}"
        );
        assert_eq!(out, value);
    }
}

/// The Painless parser and interpreter on arbitrary source, run against a
/// small payload within tight bounds.
pub fn painless(data: &[u8]) {
    use crate::condition::painless::{self, Env, Limits};
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(script) = painless::compile(src) else {
        return;
    };
    let payload = serde_json::json!({"hits": {"total": 3, "hits": [{"_source": {"a": 1, "s": "x"}}]},
        "aggregations": {"b": {"buckets": [{"key": "k", "doc_count": 2}]}}});
    let ctx = serde_json::json!({"vars": {}, "metadata": {"m": [1, 2.5, null]}});
    let params = serde_json::json!({"p": 1});
    let limits = Limits {
        max_loop: 5_000,
        max_steps: 20_000,
        max_string: 64 << 10,
        max_collection: 5_000,
        ..Limits::default()
    };
    let _ = script.run(
        Env {
            payload: &payload,
            ctx: &ctx,
            params: &params,
            times: None,
        },
        limits,
    );
}
