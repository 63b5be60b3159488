//! The built `esalert` binary, as a user runs it.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use assert_cmd::Command;
use serde_json::{Value, json};
use support::{EsStandIn, Project, Reply, SlackStandIn, SmtpServer, repo};

const PW: &str = "pw-that-must-never-be-logged";

fn esalert(dir: &Path) -> Command {
    support::esalert_in(dir, PW)
}

fn log_lines(dir: &Path) -> Vec<BTreeMap<String, String>> {
    assert!(dir.join("alerts.log").exists(), "alerts.log exists");
    support::log_lines(dir)
}

#[test]
fn help_on_every_command() {
    for args in [
        vec!["--help"],
        vec!["check", "--help"],
        vec!["test", "--help"],
        vec!["once", "--help"],
    ] {
        let out = esalert(&repo()).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: esalert"), "{args:?}: {text}");
    }
}

#[test]
fn check_passes_on_shipped_examples() {
    esalert(&repo())
        .args(["check", "--queries-only"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn check_reports_every_problem_with_positions() {
    let p = Project::new();
    p.alert("ok", r#"{"index": "a", "body": {}, "message": "m"}"#);
    p.alert(
        "typo",
        "{\"index\": \"a\",\n \"body\": {},\n \"mesage\": \"m\"}",
    );
    p.alert("syntax", "{\"index\": \"a\",\n \"body\": {\n}\n,}");
    p.alert(
        "tmpl",
        "{\"index\": \"a\",\n \"body\": {},\n \"message\": \"{{ nope }}\"}",
    );
    let out = esalert(p.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/syntax.json:4:2: ")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/typo.json:3:") && l.contains("unknown field `mesage`")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/tmpl.json:3:17: ")
                && l.contains("undefined variable `nope`")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("credentials.json: cannot read credentials file")),
        "{stdout}"
    );
    // --queries-only skips credentials; options work after the subcommand and from the environment.
    let out = esalert(p.path())
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    std::fs::rename(p.queries(), p.path().join("rules")).unwrap();
    let out = esalert(p.path())
        .args(["check", "--queries-only", "--queries", "rules"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
    let out = esalert(p.path())
        .env("ESALERT_QUERIES", "rules")
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 3);
}

#[test]
fn check_validates_credentials() {
    let p = Project::new();
    p.alert("ok", r#"{"index": "a", "body": {}, "message": "m"}"#);
    std::fs::write(
        p.path().join("credentials.json"),
        "{\"elasticsearch\": {\"url\": \"http://x\",\n \"password\": \"${ESALERT_NOT_SET_ANYWHERE}\"}}",
    )
    .unwrap();
    let out = esalert(p.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(
            "credentials.json:2:2: environment variable ESALERT_NOT_SET_ANYWHERE is not set"
        ),
        "{stdout}"
    );
    p.credentials("http://127.0.0.1:9");
    // The alert sends to slack by default, and credentials have no slack section.
    let out = esalert(p.path()).arg("check").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("queries/ok.json: medium \"slack\" is not configured"),
        "{stdout}"
    );
    p.credentials_with(
        "http://127.0.0.1:9",
        Some(json!({"webhook_url": "https://hooks.slack.com/services/T/B/X"})),
        None,
    );
    esalert(p.path()).arg("check").assert().success();
}

#[test]
fn test_dry_runs_each_shipped_example_against_its_saved_response() {
    let state_before = std::fs::read(repo().join("throttle_period.json")).unwrap();
    for name in ["admin_logins", "service_error_rate", "failed_login_burst"] {
        let out = esalert(&repo())
            .args(["test", name, "--response"])
            .arg(format!("tests/fixtures/responses/{name}.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        // Whether it would be folded, and why not when not.
        let fold: &[&str] = if v["fold"] == true {
            &["fold"]
        } else {
            &["fold", "fold_reason"]
        };
        if name == "failed_login_burst" {
            // Grouped by source address: one message per entity.
            assert_eq!(
                keys,
                [&["alert", "matched", "hits", "groups"], fold, &["request"]].concat()
            );
        } else {
            assert_eq!(
                keys,
                [
                    &["alert", "matched", "hits", "subject", "message"],
                    fold,
                    &["request"]
                ]
                .concat()
            );
        }
        assert_eq!(v["alert"], name);
        assert_eq!(v["matched"], true);
        assert!(v["hits"].as_u64().unwrap() > 0);
    }
    let out = esalert(&repo())
        .args([
            "test",
            "admin_logins",
            "--response",
            "tests/fixtures/responses/admin_logins.json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains("- Administrator: 2") && msg.contains("- svc_backup: 1"),
        "{msg}"
    );
    let v: Value = serde_json::from_slice(
        &esalert(&repo())
            .args([
                "test",
                "failed_login_burst",
                "--response",
                "tests/fixtures/responses/failed_login_burst.json",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let groups = v["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "only 203.0.113.45 is over 20: {v}");
    assert_eq!(groups[0]["key"], "203.0.113.45");
    assert!(
        groups[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("48 failed logons from 203.0.113.45 against 31 account(s)"),
        "{v}"
    );
    // Nothing changed on disk.
    assert_eq!(
        std::fs::read(repo().join("throttle_period.json")).unwrap(),
        state_before
    );
}

#[test]
fn test_reports_no_match_and_errors() {
    let p = Project::new();
    p.alert("quiet", r#"{"index": "a", "body": {}, "message": "m"}"#);
    std::fs::write(
        p.path().join("empty.json"),
        json!({"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}).to_string(),
    )
    .unwrap();
    let out = esalert(p.path())
        .args(["test", "quiet", "--response", "empty.json"])
        .output()
        .unwrap();
    // Not matched: exit code 3.
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v,
        json!({"alert": "quiet", "matched": false, "hits": 0, "fold": true,
               "request": {"index": ["a"], "body": {}}})
    );
    // No alerts.log from a dry run.
    assert!(!p.path().join("alerts.log").exists());

    let out = esalert(p.path())
        .args(["test", "missing"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("no alert named \"missing\"")
    );

    std::fs::write(p.path().join("bad.json"), "{\"hits\": ").unwrap();
    let out = esalert(p.path())
        .args(["test", "quiet", "--response", "bad.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("bad.json:1:") && err.contains("not valid JSON"),
        "{err}"
    );
}

#[test]
fn test_searches_the_cluster_when_no_response_is_given() {
    let es = EsStandIn::start();
    es.push(Reply::with(
        2,
        json!({"aggregations": {"users": {"buckets": [{"key": "root", "doc_count": 2}]}}}),
    ));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert("live", r#"{"index": "auth-*", "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}"}}}}, "message": "{% for b in aggregations.users.buckets %}{{ b.key }}={{ b.doc_count }}{% endfor %}"}"#);
    let out = esalert(p.path()).args(["test", "live"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["message"], "root=2");
    let reqs = es.searches();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/auth-*/_search");
    let gte = reqs[0].body["query"]["range"]["@timestamp"]["gte"]
        .as_str()
        .unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(gte).is_ok(), "{gte}");
}

#[test]
fn once_runs_every_active_alert_and_logs_logfmt() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v7(3));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "hits_alert",
        r#"{"index": "a", "body": {}, "message": "{{ hits.total }} \"hits\""}"#,
    );
    p.alert("quiet_alert", r#"{"index": "a", "body": {}, "condition": {"compare": {"hits.total": {"gt": 100}}}, "message": "m"}"#);
    p.alert(
        "off_alert",
        r#"{"index": "a", "body": {}, "active": false, "message": "m"}"#,
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(es.searches().len(), 2, "inactive alerts never run");
    let lines = log_lines(p.path());
    let by_alert = |a: &str| {
        lines
            .iter()
            .find(|l| l.get("alert").map(String::as_str) == Some(a))
            .cloned()
    };
    let m = by_alert("hits_alert").expect("hits_alert logged");
    assert_eq!(m["outcome"], "fired");
    assert_eq!(m["media"], "slack");
    assert_eq!(m["hits"], "3");
    assert_eq!(slack.delivered().len(), 1);
    assert_eq!(m["level"], "INFO");
    assert!(m["took_ms"].parse::<u64>().is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(&m["ts"]).is_ok());
    assert_eq!(by_alert("quiet_alert").unwrap()["outcome"], "no_match");
    assert!(by_alert("off_alert").is_none());
    // The same lines go to stderr.
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("alert=hits_alert outcome=fired media=slack hits=3"),
        "{stderr}"
    );
    // alerts.log is a symlink to today's file, so tail -F follows rotation.
    let link = p.path().join("alerts.log");
    assert!(link.is_symlink());
    let target = std::fs::read_link(&link).unwrap();
    let today = chrono::Utc::now().format("alerts.log.%Y-%m-%d").to_string();
    assert!(target.to_string_lossy().ends_with(&today), "{target:?}");
    // No secret anywhere.
    let log = std::fs::read_to_string(&link).unwrap();
    assert!(!log.contains(PW) && !stderr.contains(PW));
}

#[test]
fn once_exits_1_when_any_alert_fails_and_logs_why() {
    let es = EsStandIn::start();
    es.set_default(Reply::error(
        400,
        "parsing_exception",
        "unknown query [mtach]",
    ));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "broken_query",
        r#"{"index": "a", "body": {"query": {"mtach": {}}}, "message": "m"}"#,
    );
    p.alert("broken_file", "{");
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = log_lines(p.path());
    let err = lines
        .iter()
        .find(|l| l.get("alert").map(String::as_str) == Some("broken_query"))
        .expect("error logged");
    assert_eq!(err["outcome"], "error");
    assert_eq!(err["level"], "ERROR");
    assert!(
        err["error"].contains("alert broken_query")
            && err["error"].contains("unknown query [mtach]"),
        "{err:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.get("event").map(String::as_str) == Some("rejected")
                && l["alert"] == "broken_file"
                && l["problem"].contains("broken_file.json:1:1")),
        "{lines:?}"
    );
}

#[test]
fn once_without_cluster_fails_clearly() {
    let p = Project::new();
    p.credentials("http://127.0.0.1:9");
    p.alert("a", r#"{"index": "a", "body": {}, "message": "m"}"#);
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines = log_lines(p.path());
    assert!(
        lines
            .iter()
            .any(|l| l.get("outcome").map(String::as_str) == Some("error")
                && l["error"].contains("connection refused")),
        "{lines:?}"
    );
}

#[test]
fn once_twice_fires_then_throttles_and_status_shows_it() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    p.alert("both", r#"{"index": "a", "body": {}, "media": ["slack", "email"], "throttle_period": "1h", "message": "{{ hits.total.value }} hits"}"#);
    p.alert(
        "quiet",
        r#"{"index": "a", "body": {}, "active": false, "schedule": "5m", "message": "m"}"#,
    );
    esalert(p.path()).arg("once").assert().success();
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 1);
    assert_eq!(smtp.received().len(), 1);
    let lines = log_lines(p.path());
    let outcomes: Vec<&str> = lines
        .iter()
        .filter(|l| l.get("alert").map(String::as_str) == Some("both"))
        .map(|l| l["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["fired", "throttled"]);
    let fired = lines
        .iter()
        .find(|l| l.get("outcome").map(String::as_str) == Some("fired"))
        .unwrap();
    assert_eq!(fired["media"], "slack,email");
    let throttled = lines
        .iter()
        .find(|l| l.get("outcome").map(String::as_str) == Some("throttled"))
        .unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(&throttled["until"]).is_ok());

    let out = esalert(p.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["name"], "both");
    assert_eq!(rows[0]["active"], true);
    assert_eq!(rows[0]["schedule"], "1m");
    assert_eq!(rows[0]["last_outcome"], "throttled");
    assert!(rows[0]["throttled_until"].is_string());
    assert_eq!(rows[1]["name"], "quiet");
    assert_eq!(rows[1]["active"], false);
    assert!(rows[1]["last_run"].is_null());
    let out = esalert(p.path()).arg("status").output().unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("THROTTLED UNTIL"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("both ") && lines[1].contains("throttled"),
        "{table}"
    );
    assert!(
        lines[2].starts_with("quiet") && lines[2].contains(" no "),
        "{table}"
    );
    assert!(!table.contains(PW));
}

#[test]
fn test_send_delivers_without_touching_the_store() {
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(
        "http://127.0.0.1:9",
        Some(slack.webhook_credentials()),
        None,
    );
    p.alert(
        "demo",
        r#"{"index": "a", "body": {}, "message": "{{ hits.total }} hits"}"#,
    );
    std::fs::write(
        p.path().join("r.json"),
        r#"{"hits": {"total": 4, "hits": []}}"#,
    )
    .unwrap();
    let out = esalert(p.path())
        .args(["test", "demo", "--response", "r.json", "--send"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivered"]["slack"], "sent");
    assert_eq!(slack.delivered().len(), 1);
    assert!(!p.path().join("throttle_period.json").exists());
    // A second --send is not throttled.
    esalert(p.path())
        .args(["test", "demo", "--response", "r.json", "--send"])
        .assert()
        .success();
    assert_eq!(slack.delivered().len(), 2);
}
