//! esalert's Painless against the real one: every script of the corpus in
//! `tests/fixtures/painless/` runs in esalert and through
//! `POST _scripts/painless/_execute` on the real node (OpenSearch 2.19.6
//! with lang-painless, started by `tests/support/opensearch.rs`), and both
//! must give the same result (Java's `toString` of it, which is what
//! `_execute` answers) or fail with the same class of error.
//!
//! The corpus scripts are written as watch scripts: they read `ctx.payload`,
//! `ctx.metadata`, `ctx.vars`, `ctx.watch_id` and `params`. `_execute` runs
//! in the `painless_test` context, which has `params` only, so the node gets
//! the ctx map as `params.ctx` and the script with every `ctx` identifier
//! (outside strings and after no `.`) rewritten to `params.ctx`.
//!
//! Corpus files are JSON: `{"payload": {…}, "cases": [{"name", "source",
//! "params"?, "payload"?}]}`; a case's payload replaces the file's.
//! Outside CI without a node, only the esalert side runs (it must not panic).

mod support;

use esalert::condition::painless::{self, Env, Limits};
use serde_json::{Value, json};
use support::repo;

struct Case {
    file: String,
    name: String,
    source: String,
    params: Value,
    payload: Value,
}

fn corpus() -> Vec<Case> {
    let dir = repo().join("tests/fixtures/painless");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        for c in v["cases"].as_array().unwrap() {
            out.push(Case {
                file: file.clone(),
                name: c["name"].as_str().unwrap().to_owned(),
                source: c["source"].as_str().unwrap().to_owned(),
                params: c.get("params").cloned().unwrap_or(json!({})),
                payload: c
                    .get("payload")
                    .or(v.get("payload"))
                    .cloned()
                    .unwrap_or(json!({})),
            });
        }
    }
    out
}

/// `ctx` → `params.ctx`, outside string literals and not after a `.`.
fn rewrite(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != c {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.push_str(&src[start..i]);
            continue;
        }
        let word = |k: usize| {
            b.get(k)
                .is_some_and(|x| x.is_ascii_alphanumeric() || *x == b'_')
        };
        if src[i..].starts_with("ctx")
            && !(i > 0 && (word(i - 1) || b[i - 1] == b'.'))
            && !word(i + 3)
        {
            out.push_str("params.ctx");
            i += 3;
            continue;
        }
        let ch = src[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn ctx_rest() -> Value {
    json!({"watch_id": "corpus_watch", "metadata": {"name": "corpus", "threshold": 5, "tags": ["a", "b"]}, "vars": {}})
}

/// esalert's answer: `Ok(toString)` or `Err(error class)`.
fn esalert_side(c: &Case) -> Result<String, (String, String)> {
    let script = painless::compile(&c.source).map_err(|e| (e.class(), e.to_string()))?;
    let ctx = ctx_rest();
    let env = Env {
        payload: &c.payload,
        ctx: &ctx,
        params: &c.params,
        times: None,
    };
    script
        .run(env, Limits::default())
        .map(|o| o.java)
        .map_err(|e| (e.class(), e.to_string()))
}

fn rewrite_is_right() {
    assert_eq!(
        rewrite("ctx.payload.x + 'ctx' + a.ctx + myctx; def f = ctx"),
        "params.ctx.payload.x + 'ctx' + a.ctx + myctx; def f = params.ctx"
    );
}

#[test]
fn corpus_matches_the_real_painless() {
    rewrite_is_right();
    let cases = corpus();
    assert!(cases.len() >= 150, "the corpus has {} scripts", cases.len());
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(
            names.insert(format!("{}/{}", c.file, c.name)),
            "duplicate case {}",
            c.name
        );
    }
    let ours: Vec<_> = cases
        .iter()
        .map(|c| {
            if std::env::var("PL_DEBUG").is_ok() {
                eprintln!("case {}", c.name);
            }
            esalert_side(c)
        })
        .collect();
    let Some(es) = support::opensearch::engine() else {
        return;
    };
    // `painless_test` compiles at most 75 scripts per 5 minutes by default.
    let lift = |key: &str, value: &str| {
        let body = json!({"transient": {key: value}});
        matches!(
            es.call("PUT", "/_cluster/settings", Some(&body)),
            Ok((200, _))
        )
    };
    assert!(
        lift(
            "script.context.painless_test.max_compilations_rate",
            "unlimited"
        ) || lift("script.max_compilations_rate", "10000/1m"),
        "could not lift the script compilation rate limit"
    );
    let started = std::time::Instant::now();
    let mut failures = Vec::new();
    let mut errors = 0;
    for (c, mine) in cases.iter().zip(&ours) {
        let mut params = c.params.clone();
        let mut ctx = ctx_rest();
        ctx["payload"] = c.payload.clone();
        params["ctx"] = ctx;
        let body = json!({"script": {"source": rewrite(&c.source), "params": params}});
        let (status, v) = es
            .call("POST", "/_scripts/painless/_execute", Some(&body))
            .unwrap();
        let theirs: Result<String, (String, String)> = if status == 200 {
            Ok(v["result"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| v["result"].to_string()))
        } else {
            let e = &v["error"];
            let class = e["caused_by"]["type"].as_str().unwrap_or("?").to_owned();
            let reason = e["reason"].as_str().unwrap_or("").to_owned();
            Err((class, format!("{reason}: {}", e["caused_by"]["reason"])))
        };
        let same = match (mine, &theirs) {
            (Ok(a), Ok(b)) => a == b,
            (Err((a, _)), Err((b, why))) => {
                errors += 1;
                a == b
                    || (a == "compile" && why.starts_with("compile error"))
                    // esalert refuses an unknown method when parsing, Painless when calling it.
                    || (a == "compile" && b == "illegal_argument_exception" && why.contains("not found"))
                    || (a == "limit" && why.contains("maximum number of statements"))
            }
            _ => false,
        };
        if !same {
            failures.push(format!(
                "{}/{}:\n  source:   {}\n  esalert:  {mine:?}\n  painless: {theirs:?}",
                c.file, c.name, c.source
            ));
        }
    }
    eprintln!(
        "painless corpus: {} scripts ({errors} expected errors), {} differ, {:.1}s against {} {}",
        cases.len(),
        failures.len(),
        started.elapsed().as_secs_f64(),
        es.distribution,
        es.version
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
