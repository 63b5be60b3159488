//! `esalert test`: the request it shows, its exit codes and JSON, and the
//! dry run over past windows (`--since`), through the real binary.

mod support;

use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};
use support::{EsStandIn, Project, Reply, SlackStandIn, repo};

fn esalert(dir: &Path) -> Command {
    support::esalert_in(dir, "pw")
}

/// An hourly alert searching its window, throttled for `throttle`.
fn hourly(throttle: &str) -> String {
    json!({"index": "auth-*", "schedule": "1h", "throttle_period": throttle, "media": ["slack"],
        "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}},
        "subject": "Burst of {{ hits.total.value }}", "message": "{{ hits.total.value }} failures"})
    .to_string()
}

/// The `gte` of a search's range: which window it searched.
fn gte(body: &Value) -> String {
    body["query"]["range"]["@timestamp"]["gte"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn run(cmd: &mut Command) -> (Option<i32>, Value, String) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stderr}"));
    (out.status.code(), v, stderr)
}

#[test]
fn since_replays_each_window_with_throttle_and_counts_what_would_notify() {
    let es = EsStandIn::start();
    // Hits only in the windows starting at 02:00, 03:00, 04:00 and 09:00.
    let matching = ["02", "03", "04", "09"].map(|h| format!("2025-03-01T{h}:00:00.000Z"));
    es.respond_with(move |r| {
        let n = if matching.contains(&gte(&r.body)) {
            3
        } else {
            0
        };
        Some(Reply::total_v8(n, "eq"))
    });
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("burst", &hourly("2h"));
    let (code, v, stderr) = run(esalert(p.path()).args([
        "test",
        "burst",
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-01T12:00:00Z",
        "--json",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    // One search per hourly window, in order, each starting where the last ended.
    let starts: Vec<String> = es.searches().iter().map(|r| gte(&r.body)).collect();
    let want: Vec<String> = (0..12)
        .map(|h| format!("2025-03-01T{h:02}:00:00.000Z"))
        .collect();
    assert_eq!(starts, want);
    // Matches at the ticks 03, 04, 05 and 10; the 2h throttle from 03
    // holds back 04 only.
    assert_eq!(v["windows_searched"], 12, "{v:#}");
    assert_eq!(v["windows_matched"], 4, "{v:#}");
    assert_eq!(v["notifications"], 3, "{v:#}");
    assert_eq!(v["summary"], "would have sent 3 notifications over 12h");
    let notified: Vec<&str> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| !w["notifications"].as_array().unwrap().is_empty())
        .map(|w| w["due"].as_str().unwrap())
        .collect();
    assert_eq!(
        notified,
        [
            "2025-03-01T03:00:00.000Z",
            "2025-03-01T05:00:00.000Z",
            "2025-03-01T10:00:00.000Z"
        ]
    );
    let throttled: Vec<&str> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["outcome"] == "throttled")
        .map(|w| w["due"].as_str().unwrap())
        .collect();
    assert_eq!(throttled, ["2025-03-01T04:00:00.000Z"]);
    // Nothing was sent or stored, and nothing logged.
    assert!(slack.delivered().is_empty());
    assert!(!p.path().join("throttle_period.json").exists());
    assert!(!p.path().join("alerts.log").exists());
}

#[test]
fn since_json_has_the_summary_fields_and_one_entry_per_window_of_note() {
    let p = Project::new();
    p.alert("burst", &hourly("0s"));
    std::fs::write(
        p.path().join("r.json"),
        json!({"hits": {"total": {"value": 5, "relation": "eq"}, "hits": []}}).to_string(),
    )
    .unwrap();
    // No credentials: the saved response answers every window.
    let (code, v, stderr) = run(esalert(p.path()).args([
        "test",
        "burst",
        "--response",
        "r.json",
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-01T06:00:00Z",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "alert",
            "since",
            "until",
            "schedule",
            "first_window_start",
            "truncated",
            "windows_searched",
            "windows_matched",
            "windows_failed",
            "notifications",
            "keys",
            "notices",
            "summary",
            "windows"
        ]
    );
    assert_eq!(v["summary"], "would have sent 6 notifications over 6h");
    assert_eq!(v["keys"], json!([""]));
    assert_eq!(v["truncated"], false);
    let w = &v["windows"][0];
    assert_eq!(
        *w,
        json!({"due": "2025-03-01T01:00:00.000Z",
            "window": {"start": "2025-03-01T00:00:00.000Z", "end": "2025-03-01T01:00:00.000Z"},
            "outcome": "fired", "matched": true, "hits": 5,
            "notifications": [{"key": "", "subject": "Burst of 5", "text": "5 failures", "sinks": ["slack"]}]})
    );
    assert_eq!(v["windows"].as_array().unwrap().len(), 6);
}

#[test]
fn since_over_more_than_1440_windows_runs_the_last_1440_and_says_so() {
    let p = Project::new();
    p.alert(
        "every_minute",
        r#"{"index": "a", "schedule": "1m", "body": {}, "message": "m"}"#,
    );
    std::fs::write(p.path().join("r.json"), r#"{"hits": {"total": 0}}"#).unwrap();
    let (code, v, stderr) = run(esalert(p.path()).args([
        "test",
        "every_minute",
        "--response",
        "r.json",
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-03T00:00:00Z",
    ]));
    assert_eq!(code, Some(3), "nothing matched: {stderr}");
    assert!(
        stderr.contains("more than 1440 windows") && stderr.contains("the last 1440"),
        "{stderr}"
    );
    assert_eq!(v["truncated"], true);
    assert_eq!(v["windows_searched"], 1440);
    assert_eq!(v["first_window_start"], "2025-03-02T00:00:00.000Z");
    assert_eq!(v["summary"], "would have sent no notifications over 48h");
}

#[test]
fn exit_codes_are_0_matched_3_not_matched_1_error() {
    let es = EsStandIn::start();
    let p = Project::new();
    p.credentials(&es.url);
    p.alert("burst", &hourly("1h"));
    es.push(Reply::total_v8(2, "eq"));
    let (code, v, _) = run(esalert(p.path()).args(["test", "burst"]));
    assert_eq!((code, &v["matched"]), (Some(0), &json!(true)));
    es.push(Reply::total_v8(0, "eq"));
    let (code, v, _) = run(esalert(p.path()).args(["test", "burst", "--json"]));
    assert_eq!((code, &v["matched"]), (Some(3), &json!(false)));
    // A failed search: 1, and with --json the error is a JSON object.
    es.push(Reply::error(
        400,
        "parsing_exception",
        "unknown query [rnage]",
    ));
    let (code, v, stderr) = run(esalert(p.path()).args(["test", "burst", "--json"]));
    assert_eq!(code, Some(1));
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");
    assert_eq!(v["alert"], "burst");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown query [rnage]"),
        "{v}"
    );
    assert!(stderr.contains("unknown query [rnage]"), "{stderr}");
    // A missing alert too.
    let (code, v, _) = run(esalert(p.path()).args(["test", "nope", "--json"]));
    assert_eq!(code, Some(1));
    assert!(
        v["error"].as_str().unwrap().contains("no alert named"),
        "{v}"
    );
    // Over a range: 3 when no window matched, 1 when windows failed.
    es.respond_with(|_| Some(Reply::total_v8(0, "eq")));
    let since = [
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-01T03:00:00Z",
    ];
    let (code, v, _) = run(esalert(p.path()).args(["test", "burst"]).args(since));
    assert_eq!(code, Some(3), "{v}");
    assert_eq!(v["windows_searched"], 3);
    es.respond_with(|_| Some(Reply::error(500, "boom", "shard on fire")));
    let (code, v, _) = run(esalert(p.path()).args(["test", "burst"]).args(since));
    assert_eq!(code, Some(1), "{v}");
    assert_eq!(v["windows_failed"], 3);
    assert!(
        v["windows"][0]["error"]
            .as_str()
            .unwrap()
            .contains("shard on fire"),
        "{v}"
    );
}

#[test]
fn test_shows_the_request_it_sent() {
    let es = EsStandIn::start();
    es.push(Reply::total_v8(1, "eq"));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert("burst", &hourly("1h"));
    let (code, v, stderr) = run(esalert(p.path()).args(["test", "burst"]));
    assert_eq!(code, Some(0), "{stderr}");
    let sent = &es.searches()[0];
    assert_eq!(v["request"]["index"], json!(["auth-*"]));
    // Exactly the body that was searched, templates rendered.
    assert_eq!(v["request"]["body"], sent.body);
    assert!(sent.path.starts_with("/auth-*/_search"), "{}", sent.path);

    // A watch: its search input's index and body.
    p.alert(
        "errors_in_logs",
        &std::fs::read_to_string(repo().join("tests/fixtures/watcher/errors_in_logs/watch.json"))
            .unwrap(),
    );
    let (code, v, stderr) = run(esalert(p.path())
        .args(["test", "errors_in_logs", "--response"])
        .arg(repo().join("tests/fixtures/watcher/errors_in_logs/response.json")));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(v["request"]["index"], json!(["logs"]));
    assert_eq!(
        v["request"]["body"]["query"]["bool"]["must"][1]["range"]["@timestamp"]["gte"],
        "now-1m"
    );
}

#[test]
fn a_body_template_mistake_fails_even_with_a_saved_response() {
    let p = Project::new();
    p.alert(
        "bad_body",
        r#"{"index": "a", "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start.x.y }}"}}}}, "message": "m"}"#,
    );
    std::fs::write(p.path().join("r.json"), r#"{"hits": {"total": 1}}"#).unwrap();
    let (code, v, stderr) =
        run(esalert(p.path()).args(["test", "bad_body", "--response", "r.json"]));
    assert_eq!(code, Some(1));
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("alert bad_body: rendering body.query.range.@timestamp.gte failed"),
        "{err}"
    );
    assert!(stderr.contains("rendering body"), "{stderr}");
    // Over a range, every window says so and the run fails.
    let (code, v, _) = run(esalert(p.path()).args([
        "test",
        "bad_body",
        "--response",
        "r.json",
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-01T00:03:00Z",
    ]));
    assert_eq!(code, Some(1));
    assert_eq!(v["windows_failed"], 3, "{v}");
    assert!(
        v["windows"][0]["error"]
            .as_str()
            .unwrap()
            .contains("rendering body"),
        "{v}"
    );
}

#[test]
fn since_rejects_a_range_it_cannot_replay() {
    let p = Project::new();
    p.alert("burst", &hourly("1h"));
    std::fs::write(p.path().join("r.json"), r#"{"hits": {"total": 1}}"#).unwrap();
    for (args, want) in [
        (
            vec!["--since", "yesterday"],
            "give a duration back from now",
        ),
        (
            vec![
                "--since",
                "2025-03-01T00:10:00Z",
                "--until",
                "2025-03-01T00:50:00Z",
            ],
            "give a longer --since",
        ),
        (
            vec!["--since", "1h", "--until", "2h"],
            "is not before --until",
        ),
    ] {
        let (code, v, _) = run(esalert(p.path())
            .args(["test", "burst", "--response", "r.json"])
            .args(&args));
        assert_eq!(code, Some(1), "{args:?}");
        assert!(v["error"].as_str().unwrap().contains(want), "{args:?}: {v}");
    }
}

#[test]
fn since_counts_keys_of_a_grouped_alert_and_its_resolved_notices() {
    let es = EsStandIn::start();
    // 10.0.0.1 attacks from 01:00 to 03:00, 10.0.0.2 at 02:00 only,
    // 10.0.0.3 at 05:00 only (by the window's start).
    es.respond_with(|r| {
        let hour = gte(&r.body).get(11..13).unwrap_or("").to_owned();
        let mut b = Vec::new();
        if ["01", "02", "03"].contains(&hour.as_str()) {
            b.push(json!({"key": "10.0.0.1", "doc_count": 30}));
        }
        if hour == "02" {
            b.push(json!({"key": "10.0.0.2", "doc_count": 25}));
        }
        if hour == "05" {
            b.push(json!({"key": "10.0.0.3", "doc_count": 40}));
        }
        Some(Reply::with(
            b.len() as u64,
            json!({"aggregations": {"ips": {"buckets": b}}}),
        ))
    });
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "burst",
        &json!({"index": "auth-*", "schedule": "1h", "throttle_period": "6h", "media": ["slack"],
            "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}},
            "group_by": {"path": "aggregations.ips.buckets", "key": "key"},
            "condition": {"compare": {"doc_count": {"gte": 20}}},
            "notify_resolved": true,
            "subject": "burst from {{ group.key }}", "message": "{{ group.count }} failures"})
        .to_string(),
    );
    let (code, v, stderr) = run(esalert(p.path()).args([
        "test",
        "burst",
        "--since",
        "2025-03-01T00:00:00Z",
        "--until",
        "2025-03-01T08:00:00Z",
        "--json",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let sent: Vec<(String, String, Option<String>)> = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            w["notifications"].as_array().unwrap().iter().map(|n| {
                (
                    w["due"].as_str().unwrap()[11..13].to_owned(),
                    n["key"].as_str().unwrap().to_owned(),
                    n["kind"].as_str().map(str::to_owned),
                )
            })
        })
        .collect();
    let want = |h: &str, k: &str, kind: Option<&str>| {
        (h.to_owned(), k.to_owned(), kind.map(str::to_owned))
    };
    // Each key fires once (a 6h throttle, per key) and resolves once, the
    // run after it is last seen.
    assert_eq!(
        sent,
        [
            want("02", "10.0.0.1", None),
            want("03", "10.0.0.2", None),
            want("04", "10.0.0.2", Some("resolved")),
            want("05", "10.0.0.1", Some("resolved")),
            want("06", "10.0.0.3", None),
            want("07", "10.0.0.3", Some("resolved")),
        ],
        "{v:#}"
    );
    assert_eq!(
        v["summary"], "would have sent 6 notifications for 3 keys over 8h",
        "{v:#}"
    );
}
