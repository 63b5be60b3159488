//! Conditions and scripts through the public API: Watcher semantics for
//! every operator and quantifier, both `hits.total` shapes, missing paths.

use esalert::condition::script::Limits;
use esalert::condition::{CompileError, Condition, ConditionSpec, ScriptEngine, ScriptError};
use serde_json::{Value, json};

fn cond(spec: Value) -> Condition {
    let spec: ConditionSpec = serde_json::from_value(spec).expect("spec parses");
    Condition::compile(spec, &ScriptEngine::default()).expect("compiles")
}

fn eval(spec: Value, response: &Value) -> bool {
    cond(spec)
        .evaluate(&ScriptEngine::default(), response)
        .unwrap()
        .matched
}

#[test]
fn compare_every_operator_on_numbers_and_strings() {
    let resp = json!({"n": 5, "f": 2.5, "s": "beta", "ns": "10", "b": true, "z": null});
    // (path, op, value, expected)
    let table: &[(&str, &str, Value, bool)] = &[
        ("n", "eq", json!(5), true),
        ("n", "eq", json!(5.0), true),
        ("n", "eq", json!(6), false),
        ("n", "not_eq", json!(6), true),
        ("n", "not_eq", json!(5), false),
        ("n", "gt", json!(4), true),
        ("n", "gt", json!(5), false),
        ("n", "gte", json!(5), true),
        ("n", "gte", json!(6), false),
        ("n", "lt", json!(6), true),
        ("n", "lt", json!(5), false),
        ("n", "lte", json!(5), true),
        ("n", "lte", json!(4), false),
        ("f", "gt", json!(2), true),
        ("f", "lt", json!(3), true),
        // Numbers against numeric strings compare numerically, both ways.
        ("n", "eq", json!("5"), true),
        ("n", "lt", json!("10"), true),
        ("ns", "gt", json!(9), true),
        ("ns", "eq", json!(10), true),
        // Strings compare lexically ("10" < "9" as text, but ns vs "9" is text vs text).
        ("s", "eq", json!("beta"), true),
        ("s", "gt", json!("alpha"), true),
        ("s", "lt", json!("alpha"), false),
        ("s", "not_eq", json!("alpha"), true),
        ("ns", "lt", json!("9"), true),
        // A non-numeric string can't be ordered against a number.
        ("s", "gt", json!(1), false),
        ("s", "lt", json!(1), false),
        ("s", "eq", json!(1), false),
        ("s", "not_eq", json!(1), true),
        // Booleans.
        ("b", "eq", json!(true), true),
        ("b", "eq", json!("true"), true),
        ("b", "not_eq", json!(false), true),
        // Null.
        ("z", "eq", json!(null), true),
        ("z", "not_eq", json!(null), false),
        ("z", "gt", json!(0), false),
        ("z", "not_eq", json!(0), true),
    ];
    for (path, op, value, want) in table {
        let spec = json!({"compare": {*path: {*op: value}}});
        assert_eq!(eval(spec.clone(), &resp), *want, "{spec}");
    }
}

#[test]
fn hits_total_works_in_both_shapes() {
    let v7 = json!({"hits": {"total": 3, "hits": []}});
    let v8 = json!({"hits": {"total": {"value": 3, "relation": "eq"}, "hits": []}});
    let v8_zero = json!({"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}});
    for resp in [&v7, &v8] {
        assert!(eval(json!({"compare": {"hits.total": {"gt": 0}}}), resp));
        assert!(eval(json!({"compare": {"hits.total": {"eq": 3}}}), resp));
        assert!(eval(
            json!({"compare": {"hits.total.value": {"gte": 3}}}),
            resp
        ));
        assert!(eval(
            json!({"compare": {"ctx.payload.hits.total": {"eq": 3}}}),
            resp
        ));
        assert!(!eval(
            json!({"compare": {"hits.total.value": {"gt": 3}}}),
            resp
        ));
    }
    assert!(!eval(
        json!({"compare": {"hits.total": {"gt": 0}}}),
        &v8_zero
    ));
    // The default condition is hits.total > 0.
    let default = Condition::compile(ConditionSpec::default(), &ScriptEngine::default()).unwrap();
    let e = ScriptEngine::default();
    assert!(default.evaluate(&e, &v7).unwrap().matched);
    assert!(default.evaluate(&e, &v8).unwrap().matched);
    assert!(!default.evaluate(&e, &v8_zero).unwrap().matched);
    assert_eq!(esalert::condition::hits_total(&v7), 3);
    assert_eq!(esalert::condition::hits_total(&v8), 3);
}

#[test]
fn paths_reach_into_arrays_and_accept_ctx_payload() {
    let resp = json!({"aggregations": {"users": {"buckets": [
        {"key": "root", "doc_count": 7}, {"key": "bob", "doc_count": 1}]}}});
    assert!(eval(
        json!({"compare": {"aggregations.users.buckets.0.doc_count": {"eq": 7}}}),
        &resp
    ));
    assert!(eval(
        json!({"compare": {"ctx.payload.aggregations.users.buckets.1.key": {"eq": "bob"}}}),
        &resp
    ));
}

#[test]
fn missing_path_is_false_and_reported() {
    let resp = json!({"hits": {"total": 1}});
    for op in ["eq", "not_eq", "gt", "lt"] {
        let c = cond(json!({"compare": {"aggregations.nope.value": {op: 1}}}));
        let v = c.evaluate(&ScriptEngine::default(), &resp).unwrap();
        assert!(!v.matched, "{op}");
        assert_eq!(v.missing.as_deref(), Some("aggregations.nope.value"));
    }
    // An index past the end of an array is missing too.
    let c = cond(json!({"compare": {"hits.hits.5._id": {"eq": "x"}}}));
    let v = c
        .evaluate(&ScriptEngine::default(), &json!({"hits": {"hits": []}}))
        .unwrap();
    assert!(!v.matched && v.missing.is_some());
}

#[test]
fn array_compare_quantifiers_and_operators() {
    let resp = json!({"aggregations": {"svc": {"buckets": [
        {"key": "a", "doc_count": 10, "rate": {"value": 1.5}},
        {"key": "b", "doc_count": 30, "rate": {"value": 7.0}}]}},
        "empty": [], "plain": [1, 2, 3]});
    let t: &[(Value, bool)] = &[
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "gte": {"value": 25}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "gte": {"value": 25, "quantifier": "some"}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "gte": {"value": 25, "quantifier": "all"}}}),
            false,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "gte": {"value": 10, "quantifier": "all"}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "rate.value", "gt": {"value": 5}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "rate.value", "lt": {"value": 1}}}),
            false,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "key", "eq": {"value": "b"}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "key", "not_eq": {"value": "a", "quantifier": "all"}}}),
            false,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "lte": {"value": 10}}}),
            true,
        ),
        (
            json!({"aggregations.svc.buckets": {"path": "doc_count", "lt": {"value": 10}}}),
            false,
        ),
        (
            json!({"ctx.payload.aggregations.svc.buckets": {"path": "doc_count", "eq": {"value": 30}}}),
            true,
        ),
        // Empty arrays: all is true, some is false.
        (
            json!({"empty": {"path": "x", "gt": {"value": 0, "quantifier": "all"}}}),
            true,
        ),
        (
            json!({"empty": {"path": "x", "gt": {"value": 0, "quantifier": "some"}}}),
            false,
        ),
        // No path: the elements themselves.
        (json!({"plain": {"gt": {"value": 2}}}), true),
        (
            json!({"plain": {"gt": {"value": 0, "quantifier": "all"}}}),
            true,
        ),
        // An element missing the inner path compares as null.
        (
            json!({"aggregations.svc.buckets": {"path": "nope", "gt": {"value": 0}}}),
            false,
        ),
    ];
    for (spec, want) in t {
        let spec = json!({"array_compare": spec});
        assert_eq!(eval(spec.clone(), &resp), *want, "{spec}");
    }
    // A path that is not an array is missing, not a panic.
    let c = cond(json!({"array_compare": {"aggregations.svc": {"path": "x", "gt": {"value": 0}}}}));
    let v = c.evaluate(&ScriptEngine::default(), &resp).unwrap();
    assert!(!v.matched && v.missing.is_some());
}

#[test]
fn always_and_never() {
    assert!(eval(json!({"always": {}}), &json!({})));
    assert!(!eval(json!({"never": {}}), &json!({})));
}

#[test]
fn malformed_conditions_are_errors_not_panics() {
    let bad = [
        json!({"compare": {}}),
        json!({"compare": {"a": {"gt": 1}, "b": {"gt": 1}}}),
        json!({"compare": {"a": {"bigger": 1}}}),
        json!({"compare": {"a": 1}}),
        json!({"array_compare": {"a": {"path": 3, "gt": {"value": 1}}}}),
        json!({"array_compare": {"a": {"gt": {"value": 1, "quantifier": "most"}}}}),
        json!({"array_compare": {"a": {"gt": 1}}}),
        json!({"sometimes": {}}),
        json!({"always": {"x": 1}}),
        json!({"script": 5}),
    ];
    for b in bad {
        assert!(
            serde_json::from_value::<ConditionSpec>(b.clone()).is_err(),
            "{b} should not parse"
        );
    }
    let e = serde_json::from_value::<ConditionSpec>(json!({"compare": {"a": {"bigger": 1}}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown operator \"bigger\""), "{e}");
}

fn script(src: &str) -> Condition {
    cond(json!({ "script": src }))
}

#[test]
fn script_returns_bool_or_map_with_message() {
    let resp = json!({"hits": {"total": {"value": 4}}, "aggregations": {"x": {"buckets": [{"key": "a", "doc_count": 9}]}}});
    let e = ScriptEngine::default();
    let v = script("response.hits.total.value > 3")
        .evaluate(&e, &resp)
        .unwrap();
    assert!(v.matched && v.message.is_none());
    let v = script("response.hits.total.value > 10")
        .evaluate(&e, &resp)
        .unwrap();
    assert!(!v.matched);
    let v = script(
        r#"let b = response.aggregations.x.buckets[0]; #{matched: b.doc_count > 5, message: `${b.key} has ${b.doc_count}`}"#,
    )
    .evaluate(&e, &resp)
    .unwrap();
    assert!(v.matched);
    assert_eq!(v.message.as_deref(), Some("a has 9"));
    let v = script("#{matched: false}").evaluate(&e, &resp).unwrap();
    assert!(!v.matched && v.message.is_none());
}

#[test]
fn script_bad_returns_and_runtime_errors() {
    let e = ScriptEngine::default();
    let r = json!({});
    let err = script("42").evaluate(&e, &r).unwrap_err();
    assert!(matches!(err, ScriptError::BadReturn(_)), "{err}");
    let err = script("#{message: \"x\"}").evaluate(&e, &r).unwrap_err();
    assert!(matches!(err, ScriptError::BadReturn(_)), "{err}");
    let err = script("response.nope.deeper > 1")
        .evaluate(&e, &r)
        .unwrap_err();
    assert!(matches!(err, ScriptError::Runtime(_)), "{err}");
}

#[test]
fn endless_loop_stops_at_operation_limit() {
    let e = ScriptEngine::new(Limits {
        max_operations: 10_000,
        ..Limits::default()
    });
    let spec: ConditionSpec = serde_json::from_value(json!({"script": "loop { }"})).unwrap();
    let c = Condition::compile(spec, &e).unwrap();
    let started = std::time::Instant::now();
    let err = c.evaluate(&e, &json!({})).unwrap_err();
    assert!(
        matches!(err, ScriptError::TooManyOperations { limit: 10_000 }),
        "{err}"
    );
    assert!(err.to_string().contains("endless loop"), "{err}");
    // The default limit also stops it, well within a run's budget.
    let e = ScriptEngine::default();
    let c = Condition::compile(
        serde_json::from_value(json!({"script": "let x = 0; while true { x += 1; }"})).unwrap(),
        &e,
    )
    .unwrap();
    assert!(matches!(
        c.evaluate(&e, &json!({})).unwrap_err(),
        ScriptError::TooManyOperations { .. }
    ));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn scripts_are_sandboxed() {
    let e = ScriptEngine::default();
    // No eval, no modules, no deep recursion, no huge strings.
    for src in [r#"eval("1 + 1") == 2"#, r#"import "std" as s; true"#] {
        let spec: ConditionSpec = serde_json::from_value(json!({ "script": src })).unwrap();
        let r = Condition::compile(spec, &e)
            .map_err(|e| e.to_string())
            .and_then(|c| c.evaluate(&e, &json!({})).map_err(|e| e.to_string()));
        assert!(r.is_err(), "{src} must not run");
    }
    let deep = script("fn f(n) { f(n + 1) } f(0)").evaluate(&e, &json!({}));
    assert!(deep.is_err());
    let big = script(r#"let s = "x"; loop { s += s; }"#).evaluate(&e, &json!({}));
    assert!(big.is_err());
}

#[test]
fn script_syntax_error_has_position() {
    let spec: ConditionSpec = serde_json::from_value(json!({"script": "let x = ;\ntrue"})).unwrap();
    let err = Condition::compile(spec, &ScriptEngine::default()).unwrap_err();
    match err {
        CompileError::Script(ScriptError::Compile { line, .. }) => assert_eq!(line, 1),
        other => panic!("expected a compile error, got {other}"),
    }
}
