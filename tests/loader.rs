//! Loading alert files: every kind of bad file gives the right
//! `path:line:col: message`, and one bad file never stops the others.

mod support;

use chrono::TimeZone;
use esalert::alert::{LoadError, load_dir, parse_alert};
use esalert::condition::ScriptEngine;
use esalert::engine;
use serde_json::json;
use support::Project;

const GOOD: &str = r#"{"index": "logs-*", "body": {"query": {"match_all": {}}}, "message": "{{ hits.total }} hits"}"#;

fn problems(text: &str) -> Vec<String> {
    let e = parse_alert(
        "x",
        std::path::Path::new("queries/x.json"),
        text,
        &ScriptEngine::default(),
    )
    .expect_err("should not load");
    e.problems().iter().map(|p| p.to_string()).collect()
}

#[test]
fn bad_files_point_at_the_mistake() {
    // (file text, expected prefix "queries/x.json:L:C", expected fragment)
    let table: &[(&str, &str, &str)] = &[
        (
            "{\n  \"index\": \"a\",\n  \"body\": {,}\n}",
            "queries/x.json:3:12",
            "key must be a string",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"sechdule\": \"1m\"}",
            "queries/x.json:1:",
            "unknown field `sechdule`",
        ),
        (
            "{\"index\": 5, \"body\": {}, \"message\": \"m\"}",
            "queries/x.json:1:",
            "`index` must be a string or an array",
        ),
        (
            "{\"index\": \"a\", \"body\": [], \"message\": \"m\"}",
            "queries/x.json:1:",
            "invalid type: sequence, expected a map",
        ),
        (
            "{\"index\": \"a\", \"body\": {}}",
            "queries/x.json:1:",
            "missing field `message`",
        ),
        (
            "{\"index\": \"a\", \"body\": {},\n \"message\": \"m\",\n \"schedule\": \"every minute\"}",
            "queries/x.json:3:",
            "cron expression",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"schedule\": \"1 fortnight\"}",
            "queries/x.json:1:",
            "invalid duration",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"schedule\": \"0 0 25 * * *\"}",
            "queries/x.json:1:",
            "invalid cron expression",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"throttle_period\": \"soon\"}",
            "queries/x.json:1:",
            "invalid duration",
        ),
        (
            // A name that can't be a destination's (which destinations
            // exist is `check`'s to say, with credentials.json).
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"media\": [\"Pager Duty\"]}",
            "queries/x.json:1:",
            "\"Pager Duty\" is not a valid name",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"media\": []}",
            "queries/x.json:1:",
            "`media` is empty",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"active\": \"yes\"}",
            "queries/x.json:1:",
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            "{\"index\": \"a\",\n \"body\": {},\n \"message\": \"{{ hits.total \"}",
            "queries/x.json:3:22:",
            "template syntax error in message",
        ),
        (
            "{\"index\": \"a\",\n \"body\": {},\n \"message\": \"ok\",\n \"subject\": \"{{ hitz }}\"}",
            "queries/x.json:4:17:",
            "undefined variable `hitz`",
        ),
        (
            "{\"index\": \"a\",\n \"body\": {\"query\": {\"range\": {\"t\": {\"gte\": \"{{ window.begin\"}}}},\n \"message\": \"ok\"}",
            "queries/x.json:2:55:",
            "template syntax error in body.query.range.t.gte",
        ),
        (
            "{\"index\": \"a\",\n \"body\": {\"query\": {\"term\": {\"u\": \"{{ response.x }}\"}}},\n \"message\": \"ok\"}",
            "queries/x.json:2:",
            "undefined variable `response`",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\",\n  \"condition\": {\"script\": \"let x = ;\"}}",
            "queries/x.json:2:17",
            "script does not compile",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"condition\": {\"compare\": {\"a\": {\"above\": 1}}}}",
            "queries/x.json:1:",
            "unknown operator",
        ),
        (
            "{\"index\": \"a\", \"body\": {}, \"message\": \"m\", \"slack\": {\"chanel\": \"#x\"}}",
            "queries/x.json:1:",
            "unknown field `chanel`",
        ),
        ("[1, 2]", "queries/x.json:1:1", "must be a JSON object"),
        ("", "queries/x.json:1:", "EOF while parsing"),
    ];
    for (text, prefix, fragment) in table {
        let ps = problems(text);
        assert!(
            ps.iter()
                .any(|p| p.starts_with(prefix) && p.contains(fragment)),
            "for {text:?}\nwanted {prefix} … {fragment}\ngot {ps:#?}"
        );
    }
}

#[test]
fn all_template_problems_are_reported_at_once() {
    let text = "{\"index\": \"a\",\n \"body\": {},\n \"message\": \"{{ oops }}\",\n \"subject\": \"{% if %}\"}";
    let ps = problems(text);
    assert_eq!(ps.len(), 2, "{ps:#?}");
}

#[test]
fn one_bad_file_never_stops_the_others() {
    let p = Project::new();
    p.alert("good_one", GOOD);
    p.alert("broken", "{ not json");
    p.alert("good_two", GOOD);
    p.alert("Bad_Name", GOOD);
    std::fs::write(p.queries().join("notes.txt"), "ignored").unwrap();
    std::fs::write(p.queries().join(".hidden.json"), "{").unwrap();
    std::fs::write(p.queries().join("good_one.json~"), "{").unwrap();
    std::fs::write(p.queries().join(".good_one.json.swp"), "{").unwrap();
    let report = load_dir(&p.queries(), &ScriptEngine::default()).unwrap();
    let names: Vec<_> = report.alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["good_one", "good_two"]);
    let errs: Vec<String> = report
        .errors
        .iter()
        .flat_map(LoadError::problems)
        .map(|p| p.to_string())
        .collect();
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("Bad_Name.json") && e.contains("not allowed"))
    );
    assert!(errs.iter().any(|e| e.contains("broken.json:1:3")));
}

#[test]
fn size_encoding_and_symlink_limits() {
    let p = Project::new();
    let big = format!(
        "{{\"index\": \"a\", \"body\": {{}}, \"message\": \"m\", \"description\": \"{}\"}}",
        "x".repeat(1 << 20)
    );
    p.alert("too_big", &big);
    std::fs::write(p.queries().join("latin1.json"), b"{\"index\": \"caf\xe9\"}").unwrap();
    let outside = p.path().join("outside.json");
    std::fs::write(&outside, GOOD).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, p.queries().join("escape.json")).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        p.queries().join("fine.json"),
        p.queries().join("inside.json"),
    )
    .unwrap();
    p.alert("fine", GOOD);
    let report = load_dir(&p.queries(), &ScriptEngine::default()).unwrap();
    let names: Vec<_> = report.alerts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["fine", "inside"]);
    let errs: Vec<String> = report
        .errors
        .iter()
        .flat_map(LoadError::problems)
        .map(|p| p.to_string())
        .collect();
    assert!(
        errs.iter()
            .any(|e| e.contains("too_big.json") && e.contains("1 MiB")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("latin1.json:1:15") && e.contains("UTF-8")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("escape.json") && e.contains("outside the queries directory")),
        "{errs:#?}"
    );
}

#[test]
fn defaults_and_body_rendering() {
    let text = r#"{"index": ["a-*", "b"], "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}, "size": 0, "aggs": {"k": {"terms": {"field": "{{ alert.name }}.keyword"}}}}, "message": "m"}"#;
    let a = parse_alert(
        "win",
        std::path::Path::new("win.json"),
        text,
        &ScriptEngine::default(),
    )
    .unwrap();
    let n = a.native().unwrap();
    assert_eq!(n.spec.schedule.to_string(), "1m");
    assert_eq!(n.spec.throttle_period.to_string(), "15m");
    assert!(n.spec.active);
    assert_eq!(n.spec.media, ["slack"]);
    assert_eq!(n.spec.subject, "[esalert] {{ alert.name }}");
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 20, 41, 0)
        .unwrap();
    let w = engine::default_window(&a, now);
    let body = n.templates.render_body(&n.body, &n.info, now, w).unwrap();
    assert_eq!(
        body,
        json!({"query": {"range": {"@timestamp": {"gte": "2026-11-21T20:40:00.000Z", "lt": "2026-11-21T20:41:00.000Z"}}}, "size": 0, "aggs": {"k": {"terms": {"field": "win.keyword"}}}})
    );
}

#[test]
fn render_errors_name_the_alert_and_never_send_empty() {
    let e = ScriptEngine::default();
    let now = chrono::Utc::now();
    // Strict undefined: an attribute missing from the response is an error, not "".
    let a = parse_alert("strict", std::path::Path::new("s.json"),
        r#"{"index": "a", "body": {}, "condition": {"always": {}}, "message": "{{ aggregations.users.buckets }}"}"#, &e).unwrap();
    let w = engine::default_window(&a, now);
    let err = engine::evaluate(
        &a,
        &e,
        &json!({"hits": {"total": 1}, "aggregations": {}}),
        now,
        w,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("alert strict") && err.contains("message"),
        "{err}"
    );
    // A message that renders to nothing is refused.
    let a = parse_alert("empty", std::path::Path::new("e.json"),
        r#"{"index": "a", "body": {}, "condition": {"always": {}}, "message": "{% if false %}x{% endif %}  "}"#, &e).unwrap();
    let err = engine::evaluate(&a, &e, &json!({"hits": {"total": 1}}), now, w)
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    // Fuel bounds a template that would loop for ages.
    let a = parse_alert("fuel", std::path::Path::new("f.json"),
        r#"{"index": "a", "body": {}, "condition": {"always": {}}, "message": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x"}"#, &e).unwrap();
    let err = engine::evaluate(&a, &e, &json!({}), now, w)
        .unwrap_err()
        .to_string();
    assert!(err.contains("alert fuel") && err.contains("fuel"), "{err}");
}

#[test]
fn shipped_examples_load_and_match_their_fixtures() {
    let e = ScriptEngine::default();
    let report = load_dir(&support::repo().join("queries"), &e).unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.alerts.len() >= 3);
    for a in &report.alerts {
        let fixture = support::repo().join(format!("tests/fixtures/responses/{}.json", a.name));
        let resp: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&fixture).unwrap()).unwrap();
        let now = chrono::Utc::now();
        let ev = engine::evaluate(a, &e, &resp, now, engine::default_window(a, now)).unwrap();
        assert!(ev.matched, "{} should match its fixture", a.name);
        // One message, or one per entity with `group_by`.
        let mut messages: Vec<String> = ev.message.into_iter().collect();
        messages.extend(ev.groups.into_iter().map(|(_, r)| r.text));
        assert!(!messages.is_empty(), "{}", a.name);
        assert!(messages.iter().all(|m| !m.trim().is_empty()), "{}", a.name);
        // Examples filter on the window, not on now-1m.
        let body = a.native().unwrap().body.to_string();
        assert!(
            body.contains("{{ window.start }}") && !body.contains("now-"),
            "{}",
            a.name
        );
    }
}

#[test]
fn a_thousand_files_at_once() {
    let p = Project::new();
    for i in 0..1000 {
        let text = if i % 100 == 7 {
            "{\"index\": ".to_owned()
        } else {
            GOOD.replace("logs-*", &format!("logs-{i}"))
        };
        p.alert(&format!("alert_{i:04}"), &text);
    }
    let started = std::time::Instant::now();
    let report = load_dir(&p.queries(), &ScriptEngine::default()).unwrap();
    assert_eq!(report.alerts.len(), 990);
    assert_eq!(report.errors.len(), 10);
    // Each error names its file: the broken ones are alert_XX07.json.
    assert!(
        report
            .errors
            .iter()
            .all(|e| e.to_string().contains("07.json:")),
        "{:?}",
        report.errors
    );
    eprintln!("loaded 1000 files in {:?}", started.elapsed());
}

#[test]
fn templates_cannot_read_files_or_the_environment() {
    let e = ScriptEngine::default();
    // No such variable as env; check reports it.
    let ps = problems("{\"index\": \"a\", \"body\": {}, \"message\": \"{{ env.HOME }}\"}");
    assert!(ps[0].contains("undefined variable `env`"), "{ps:?}");
    // include/import have no loader: rendering fails, nothing is read.
    for msg in [
        "{% include '/etc/passwd' %}",
        "{% import '/etc/passwd' as p %}x",
        "{% extends '/etc/hostname' %}",
    ] {
        let text = json!({"index": "a", "body": {}, "condition": {"always": {}}, "message": msg})
            .to_string();
        let now = chrono::Utc::now();
        match parse_alert("sec", std::path::Path::new("s.json"), &text, &e) {
            Err(_) => {}
            Ok(a) => {
                let r = engine::evaluate(&a, &e, &json!({}), now, engine::default_window(&a, now));
                let err = r.expect_err("must not render").to_string();
                assert!(!err.contains("root:"), "{err}");
            }
        }
    }
}

#[test]
fn scripts_cannot_do_io() {
    let e = ScriptEngine::default();
    for src in [
        r#"open("/etc/passwd")"#,
        r#"read_file("/etc/passwd")"#,
        r#"env("HOME")"#,
        r#"system("id")"#,
        r#"http_get("http://127.0.0.1/")"#,
    ] {
        let text = json!({"index": "a", "body": {}, "message": "m", "condition": {"script": src}})
            .to_string();
        let r = parse_alert("io", std::path::Path::new("io.json"), &text, &e).and_then(|a| {
            let now = chrono::Utc::now();
            engine::evaluate(&a, &e, &json!({}), now, engine::default_window(&a, now)).map_err(
                |err| LoadError::Invalid {
                    problems: vec![esalert::alert::Problem {
                        path: "x".into(),
                        position: None,
                        message: err.to_string(),
                    }],
                },
            )
        });
        let err = r.expect_err(src).to_string();
        assert!(err.contains("Function not found"), "{src}: {err}");
    }
}
