//! Elasticsearch Watcher watches run unchanged: the reference watches from
//! `../shared/fixtures/watcher/` (copied to tests/fixtures/watcher), against
//! the Elasticsearch stand-in, a real SMTP server and a webhook receiver.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mail_parser::MimeHeaders;
use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackStandIn, SmtpServer, log_lines, repo};

fn fixture(p: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/watcher").join(p)).unwrap()
}

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("esalert").unwrap();
    c.current_dir(dir).env("ESALERT_TEST_PW", "pw");
    c
}

#[test]
fn errors_in_logs_renders_the_expected_logging_text() {
    let p = Project::new();
    p.alert("errors_in_logs", &fixture("errors_in_logs/watch.json"));
    // Dry run on the saved response.
    let out = esalert(p.path())
        .args(["test", "errors_in_logs", "--response"])
        .arg(repo().join("tests/fixtures/watcher/errors_in_logs/response.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alert"], "errors_in_logs");
    assert_eq!(v["matched"], true);
    assert_eq!(v["hits"], 3);
    let rec = &v["watch_record"];
    assert_eq!(rec["result"]["condition"]["met"], true);
    let a = &rec["result"]["actions"][0];
    assert_eq!(a["id"], "log");
    assert_eq!(a["type"], "logging");
    assert_eq!(a["status"], "simulated");
    assert_eq!(
        a["logging"]["logged_text"],
        "3 Errors have occurred in the logs:4:1:3:"
    );

    // For real, through `esalert once`, against the stand-in.
    let es = EsStandIn::start();
    es.set_default(Reply::json(
        200,
        serde_json::from_str(&fixture("errors_in_logs/response.json")).unwrap(),
    ));
    p.credentials(&es.url);
    esalert(p.path()).arg("once").assert().success();
    let reqs = es.searches();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/logs/_search?rest_total_hits_as_int=true");
    let watch: Value = serde_json::from_str(&fixture("errors_in_logs/watch.json")).unwrap();
    assert_eq!(reqs[0].body, watch["input"]["search"]["request"]["body"]);
    let lines = log_lines(p.path());
    let logged = lines
        .iter()
        .find(|l| has(l, "event", "watch_log"))
        .expect("logging action wrote to alerts.log");
    assert_eq!(logged["text"], "3 Errors have occurred in the logs:4:1:3:");
    assert_eq!(logged["level"], "INFO");
    assert!(lines.iter().any(|l| has(l, "alert", "errors_in_logs")
        && has(l, "action", "log")
        && has(l, "outcome", "success")));
    // The watch's throttle_period (15m) holds the action back on the next run.
    esalert(p.path()).arg("once").assert().success();
    let lines = log_lines(p.path());
    assert!(
        lines
            .iter()
            .any(|l| has(l, "action", "log") && has(l, "outcome", "throttled")),
        "{lines:#?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| has(l, "event", "watch_log"))
            .count(),
        1
    );
}

/// Requests a webhook receiver got: (method, URI, body).
type Hooks = Arc<Mutex<Vec<(String, String, String)>>>;

/// A webhook receiver that records requests.
fn webhook_server() -> (support::es::Server, Hooks) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let server = support::es::Server::start(0, move || {
        axum::Router::new().fallback(
            move |m: axum::http::Method, u: axum::http::Uri, b: String| {
                let g = g.clone();
                async move {
                    g.lock().unwrap().push((m.to_string(), u.to_string(), b));
                    "ok"
                }
            },
        )
    });
    (server, got)
}

#[test]
fn log_errors_watch_runs_input_transform_webhook_and_email() {
    let es = EsStandIn::start();
    // Input: the count. Transform: the documents.
    es.push(Reply::json(
        200,
        json!({"took": 1, "timed_out": false, "hits": {"total": 7, "hits": []}}),
    ));
    es.push(Reply::json(
        200,
        json!({"took": 1, "timed_out": false, "hits": {"total": 7, "hits": [
        {"_id": "a", "_source": {"status": "error", "message": "disk full"}}]}}),
    ));
    let smtp = SmtpServer::start();
    let (hook, got) = webhook_server();
    let p = Project::new();
    p.credentials_with(&es.url, None, Some(smtp.credentials()));
    // The reference watch, pointed at the local webhook receiver.
    let mut w: Value = serde_json::from_str(&fixture("log_errors.json")).unwrap();
    w["actions"]["my_webhook"]["webhook"]["host"] = json!("127.0.0.1");
    w["actions"]["my_webhook"]["webhook"]["port"] = json!(hook.port);
    // Its condition reads hits.total.value, which works on a numeric total too.
    p.alert("log_errors", &w.to_string());
    esalert(p.path()).arg("once").assert().success();
    let searches = es.searches();
    assert_eq!(searches.len(), 2, "input and transform");
    assert_eq!(
        searches[0].path,
        "/log-events/_search?rest_total_hits_as_int=true"
    );
    assert_eq!(
        searches[0].body,
        json!({"size": 0, "query": {"match": {"status": "error"}}})
    );
    assert_eq!(
        searches[1].body,
        json!({"query": {"match": {"status": "error"}}})
    );
    let hooks = got.lock().unwrap().clone();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].0, "POST");
    assert_eq!(hooks[0].2, "Encountered 7 errors");
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_tos, ["sys.admino@host.domain"]);
    let msg = mail_parser::MessageParser::default()
        .parse(mails[0].data.as_bytes())
        .unwrap();
    assert_eq!(msg.subject(), Some("Encountered 7 errors"));
    assert_eq!(msg.header_raw("X-Priority").map(str::trim), Some("2"));
    let att = msg.attachments().next().expect("data attachment");
    assert_eq!(att.attachment_name(), Some("attached_data.json"));
    let data: Value = serde_json::from_slice(att.contents()).unwrap();
    assert_eq!(
        data["hits"]["hits"][0]["_source"]["message"], "disk full",
        "the transformed payload"
    );
    let lines = log_lines(p.path());
    for id in ["my_webhook", "email_administrator"] {
        assert!(
            lines
                .iter()
                .any(|l| has(l, "action", id) && has(l, "outcome", "success")),
            "{id}: {lines:#?}"
        );
    }
}

#[test]
fn cluster_health_watch_uses_the_http_input() {
    let es = EsStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(&es.url, None, Some(smtp.credentials()));
    let mut w: Value = serde_json::from_str(&fixture("cluster_health.json")).unwrap();
    w["input"]["http"]["request"]["host"] = json!("127.0.0.1");
    w["input"]["http"]["request"]["port"] = json!(es.port);
    p.alert("cluster_health", &w.to_string());
    es.push(Reply::json(
        200,
        json!({"cluster_name": "prod", "status": "red", "number_of_nodes": 3}),
    ));
    esalert(p.path()).arg("once").assert().success();
    let reqs = es.requests();
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/_cluster/health");
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].data.contains("Cluster Status Warning"));
    assert!(mails[0].data.contains("Cluster status is RED"));
    // Green: condition not met, nothing sent, and the test command shows why.
    es.push(Reply::json(
        200,
        json!({"cluster_name": "prod", "status": "green"}),
    ));
    let out = esalert(p.path())
        .args(["test", "cluster_health"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matched"], false);
    assert_eq!(
        v["watch_record"]["result"]["input"]["payload"]["_status_code"],
        200
    );
    assert_eq!(v["watch_record"]["result"]["condition"]["met"], false);
    assert_eq!(smtp.received().len(), 1);
}

#[test]
fn slack_action_with_dynamic_attachments_and_per_action_settings() {
    let es = EsStandIn::start();
    es.set_default(Reply::json(
        200,
        json!({"hits": {"total": 2, "hits": [
        {"_id": "1", "_source": {"host": "web-1", "cpu": 97}},
        {"_id": "2", "_source": {"host": "web-2", "cpu": 91}}]}}),
    ));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.bot_credentials("#default")), None);
    p.alert("cpu", &json!({
        "trigger": {"schedule": {"interval": "1m"}},
        "input": {"search": {"request": {"indices": ["<metrics-{now/d}>"], "body": {"query": {"range": {"cpu": {"gte": 90}}}}}}},
        "condition": {"compare": {"ctx.payload.hits.total": {"gte": 1}}},
        "actions": {
            "notify": {"throttle_period": "1h", "slack": {"message": {
                "to": ["#ops", "@oncall"], "from": "esalert",
                "text": "{{ctx.payload.hits.total}} hosts over 90% CPU",
                "dynamic_attachments": {"list_path": "ctx.payload.hits.hits",
                    "attachment_template": {"title": "{{_source.host}}", "text": "CPU {{_source.cpu}}%", "color": "danger"}}}}},
            "per_host": {"foreach": "ctx.payload.hits.hits", "max_iterations": 1,
                "condition": {"compare": {"ctx.payload.hits.total": {"gt": 1}}},
                "logging": {"text": "host {{ctx.payload._source.host}}"}},
            "never_runs": {"condition": {"never": {}}, "logging": {"text": "x"}}
        }
    }).to_string());
    esalert(p.path()).arg("once").assert().success();
    let today = chrono::Utc::now()
        .format("/metrics-%Y.%m.%d/_search")
        .to_string();
    assert!(
        es.searches()[0].path.starts_with(&today),
        "{}",
        es.searches()[0].path
    );
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "one post per channel");
    assert_eq!(posts[0].body["channel"], "#ops");
    assert_eq!(posts[1].body["channel"], "@oncall");
    assert_eq!(posts[0].body["text"], "2 hosts over 90% CPU");
    let atts = posts[0].body["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    assert_eq!(atts[0]["title"], "web-1");
    assert_eq!(atts[1]["text"], "CPU 91%");
    let lines = log_lines(p.path());
    let texts: Vec<_> = lines
        .iter()
        .filter(|l| has(l, "event", "watch_log"))
        .map(|l| l["text"].clone())
        .collect();
    assert_eq!(texts, ["host web-1"], "foreach with max_iterations 1");
    assert!(
        lines
            .iter()
            .any(|l| has(l, "action", "never_runs") && has(l, "outcome", "condition_failed"))
    );
}

#[test]
fn ack_state_machine() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v7(1));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "acked",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"search": {"request": {"indices": "a", "body": {}}}},
            "condition": {"compare": {"ctx.payload.hits.total": {"gt": 0}}},
            "throttle_period_in_millis": 0,
            "actions": {"log": {"logging": {"text": "hit"}}, "other": {"logging": {"text": "also"}}}
        })
        .to_string(),
    );
    let state = |p: &Project| -> Value {
        let out = esalert(p.path())
            .args(["status", "--json"])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v[0]["actions"].clone()
    };
    assert_eq!(
        state(&p),
        json!({"log": "awaits_successful_execution", "other": "awaits_successful_execution"})
    );
    // Acking an action that never ran does nothing.
    esalert(p.path())
        .args(["ack", "acked", "log"])
        .assert()
        .success();
    assert_eq!(state(&p)["log"], "awaits_successful_execution");
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(state(&p), json!({"log": "ackable", "other": "ackable"}));
    esalert(p.path())
        .args(["ack", "acked", "log"])
        .assert()
        .success();
    assert_eq!(state(&p), json!({"log": "acked", "other": "ackable"}));
    esalert(p.path()).arg("once").assert().success();
    let lines = log_lines(p.path());
    assert!(
        lines
            .iter()
            .any(|l| has(l, "action", "log") && has(l, "outcome", "acked"))
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| has(l, "event", "watch_log") && has(l, "text", "hit"))
            .count(),
        1
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| has(l, "event", "watch_log") && has(l, "text", "also"))
            .count(),
        2
    );
    // The test command shows the ack without changing anything.
    let out = esalert(p.path())
        .args(["test", "acked", "--response", "/dev/stdin"])
        .write_stdin(r#"{"hits": {"total": 1}}"#)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["watch_record"]["result"]["actions"][0]["status"], "acked");
    // The condition turns false: back to awaits_successful_execution.
    es.set_default(Reply::total_v7(0));
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(
        state(&p),
        json!({"log": "awaits_successful_execution", "other": "awaits_successful_execution"})
    );
    es.set_default(Reply::total_v7(1));
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(
        log_lines(p.path())
            .iter()
            .filter(|l| has(l, "event", "watch_log") && has(l, "text", "hit"))
            .count(),
        2
    );
    // Unknown actions and native alerts are refused.
    esalert(p.path())
        .args(["ack", "acked", "nope"])
        .assert()
        .failure();
}

#[test]
fn ack_reaches_a_running_daemon() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v7(1));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "live",
        &json!({
            "trigger": {"schedule": {"interval": "1s"}},
            "input": {"simple": {"n": 1}},
            "condition": {"always": {}},
            "throttle_period": "0s",
            "actions": {"log": {"logging": {"text": "tick"}}}
        })
        .to_string(),
    );
    let d = Daemon::start(p.path(), &[], &[]);
    d.wait_line(Duration::from_secs(10), "executed", |l| {
        has(l, "action", "log") && has(l, "outcome", "success")
    });
    let out = esalert(p.path()).args(["ack", "live"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("next run"));
    d.wait_line(Duration::from_secs(10), "acked", |l| {
        has(l, "action", "log") && has(l, "outcome", "acked")
    });
}

#[test]
fn check_rejects_unsupported_painless_and_actions_with_positions() {
    let p = Project::new();
    // Painless within the supported language passes.
    p.alert("painless_ok", "{\n  \"trigger\": {\"schedule\": {\"interval\": \"5m\"}},\n  \"input\": {\"simple\": {}},\n  \"condition\": {\"script\": {\"source\": \"return ctx.payload.hits.total > 5\"}},\n  \"transform\": {\"script\": \"return ['n': ctx.payload.hits.total]\"},\n  \"actions\": {}\n}");
    // What is outside it is named, with its place in the script.
    p.alert("painless", "{\n  \"trigger\": {\"schedule\": {\"interval\": \"5m\"}},\n  \"input\": {\"simple\": {}},\n  \"condition\": {\"script\": {\"source\": \"def hits = ctx.payload.hits.hits;\\nreturn hits.stream()\\n  .collect(Collectors.groupingBy(h -> h._id)).size() > 1\"}},\n  \"actions\": {}\n}");
    p.alert("stored", "{\n  \"trigger\": {\"schedule\": {\"interval\": \"5m\"}},\n  \"input\": {\"simple\": {}},\n  \"condition\": {\"script\": {\"id\": \"no_such_script\"}},\n  \"actions\": {}\n}");
    p.alert("pager", "{\n  \"trigger\": {\"schedule\": {\"interval\": \"5m\"}},\n  \"input\": {\"simple\": {}},\n  \"actions\": {\n    \"page\": {\"pagerduty\": {\"event\": {}}},\n    \"ticket\": {\"jira\": {}}\n  }\n}");
    p.alert(
        "badsched",
        "{\"trigger\": {\"schedule\": {\"cron\": \"0 0 25 * * ?\"}}, \"input\": {\"simple\": {}}}",
    );
    let out = esalert(p.path())
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("painless_ok.json"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(
            "queries/painless.json:4:17: `Collectors.groupingBy` is not supported (line 3, column 12)"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("queries/stored.json:4:17:")
                && l.contains("stored script `no_such_script` was not found")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("queries/pager.json:5:14:") && l.contains("\"pagerduty\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("queries/pager.json:6:16:") && l.contains("\"jira\"")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("queries/badsched.json:1:") && l.contains("cron")),
        "{text}"
    );
}

fn next5(schedule: Value, from: &str) -> Vec<String> {
    let (s, tz) = esalert::watcher::schedule::parse(&schedule).unwrap();
    let mut t: DateTime<Utc> = DateTime::parse_from_rfc3339(from).unwrap().into();
    (0..5)
        .map(|_| {
            t = s.next_after(t, tz).unwrap();
            t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
        })
        .collect()
}

#[test]
fn schedules_next_five_fire_times() {
    let from = "2026-11-20T10:07:30Z"; // a Friday
    let table: Vec<(Value, [&str; 5])> = vec![
        (
            json!({"interval": "10m"}),
            [
                "2026-11-20T10:10:00Z",
                "2026-11-20T10:20:00Z",
                "2026-11-20T10:30:00Z",
                "2026-11-20T10:40:00Z",
                "2026-11-20T10:50:00Z",
            ],
        ),
        (
            json!({"interval": 90}),
            [
                "2026-11-20T10:09:00Z",
                "2026-11-20T10:10:30Z",
                "2026-11-20T10:12:00Z",
                "2026-11-20T10:13:30Z",
                "2026-11-20T10:15:00Z",
            ],
        ),
        (
            json!({"hourly": {"minute": [0, 30]}}),
            [
                "2026-11-20T10:30:00Z",
                "2026-11-20T11:00:00Z",
                "2026-11-20T11:30:00Z",
                "2026-11-20T12:00:00Z",
                "2026-11-20T12:30:00Z",
            ],
        ),
        (
            json!({"daily": {"at": ["midnight", "noon", "17:45"]}}),
            [
                "2026-11-20T12:00:00Z",
                "2026-11-20T17:45:00Z",
                "2026-11-21T00:00:00Z",
                "2026-11-21T12:00:00Z",
                "2026-11-21T17:45:00Z",
            ],
        ),
        (
            json!({"daily": {"at": {"hour": [9, 18], "minute": [0, 30]}}}),
            [
                "2026-11-20T18:00:00Z",
                "2026-11-20T18:30:00Z",
                "2026-11-21T09:00:00Z",
                "2026-11-21T09:30:00Z",
                "2026-11-21T18:00:00Z",
            ],
        ),
        (
            json!({"weekly": [{"on": "friday", "at": "noon"}, {"on": ["monday", "tuesday"], "at": "09:00"}]}),
            [
                "2026-11-20T12:00:00Z",
                "2026-11-23T09:00:00Z",
                "2026-11-24T09:00:00Z",
                "2026-11-27T12:00:00Z",
                "2026-11-30T09:00:00Z",
            ],
        ),
        (
            json!({"monthly": {"on": [1, 15], "at": "midnight"}}),
            [
                "2026-12-01T00:00:00Z",
                "2026-12-15T00:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-01-15T00:00:00Z",
                "2027-02-01T00:00:00Z",
            ],
        ),
        (
            json!({"cron": "0 0/15 9-17 ? * MON-FRI"}),
            [
                "2026-11-20T10:15:00Z",
                "2026-11-20T10:30:00Z",
                "2026-11-20T10:45:00Z",
                "2026-11-20T11:00:00Z",
                "2026-11-20T11:15:00Z",
            ],
        ),
        // Quartz day numbers: 2 = Monday.
        (
            json!({"cron": ["0 0 8 ? * 2", "0 0 20 ? * 6 *"]}),
            [
                "2026-11-20T20:00:00Z",
                "2026-11-23T08:00:00Z",
                "2026-11-27T20:00:00Z",
                "2026-11-30T08:00:00Z",
                "2026-12-04T20:00:00Z",
            ],
        ),
        // 09:00 in Madrid: 08:00 UTC in winter; and across the March change.
        (
            json!({"timezone": "Europe/Madrid", "daily": {"at": "09:00"}}),
            [
                "2026-11-21T08:00:00Z",
                "2026-11-22T08:00:00Z",
                "2026-11-23T08:00:00Z",
                "2026-11-24T08:00:00Z",
                "2026-11-25T08:00:00Z",
            ],
        ),
    ];
    for (sched, want) in table {
        assert_eq!(next5(sched.clone(), from), want, "{sched}");
    }
    assert_eq!(
        next5(
            json!({"timezone": "Europe/Madrid", "cron": "0 0 9 * * ?"}),
            "2026-03-27T12:00:00Z"
        ),
        [
            "2026-03-28T08:00:00Z",
            "2026-03-29T07:00:00Z",
            "2026-03-30T07:00:00Z",
            "2026-03-31T07:00:00Z",
            "2026-04-01T07:00:00Z"
        ]
    );
    for bad in [
        json!({"cron": "0 0 8 ? * 9"}),
        json!({"daily": {"at": "25:00"}}),
        json!({"weekly": {"on": "funday"}}),
        json!({"yearly": {}}),
        json!({"timezone": "Mars/Olympus", "interval": "1m"}),
    ] {
        assert!(esalert::watcher::schedule::parse(&bad).is_err(), "{bad}");
    }
}

#[test]
fn compare_with_date_math_and_path_values() {
    let p = Project::new();
    let now = chrono::Utc::now();
    let recent = (now - chrono::Duration::minutes(2)).to_rfc3339();
    let old = (now - chrono::Duration::minutes(20)).to_rfc3339();
    let w = |cond: Value| {
        json!({"trigger": {"schedule": {"interval": "1m"}}, "input": {"simple": {}}, "condition": cond, "actions": {}}).to_string()
    };
    let cases = [
        (
            json!({"compare": {"ctx.payload.last_seen": {"gte": "<{now-5m}>"}}}),
            json!({"last_seen": recent}),
            true,
        ),
        (
            json!({"compare": {"ctx.payload.last_seen": {"gte": "<{now-5m}>"}}}),
            json!({"last_seen": old}),
            false,
        ),
        (
            json!({"compare": {"ctx.payload.errors": {"gt": "{{ctx.payload.threshold}}"}}}),
            json!({"errors": 9, "threshold": 5}),
            true,
        ),
        (
            json!({"compare": {"ctx.payload.errors": {"gt": "{{ctx.payload.threshold}}"}}}),
            json!({"errors": 3, "threshold": 5}),
            false,
        ),
        (
            json!({"array_compare": {"ctx.payload.items": {"path": "v", "gte": {"value": 2, "quantifier": "all"}}}}),
            json!({"items": [{"v": 2}, {"v": 3}]}),
            true,
        ),
    ];
    for (i, (cond, payload, want)) in cases.into_iter().enumerate() {
        let name = format!("dm{i}");
        p.alert(&name, &w(cond.clone()));
        std::fs::write(p.path().join("r.json"), payload.to_string()).unwrap();
        let out = esalert(p.path())
            .args(["test", &name, "--response", "r.json"])
            .output()
            .unwrap();
        // 0 matched, 3 not matched.
        assert_eq!(
            out.status.code(),
            Some(if want { 0 } else { 3 }),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["matched"], want, "{cond} on {payload}");
    }
}

#[test]
fn index_action_writes_a_document_or_a_bulk_request() {
    let es = EsStandIn::start();
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "archive",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"simple": {"_doc": [{"_id": "a", "n": 1}, {"n": 2}]}},
            "actions": {"bulk": {"index": {"index": "alerts-archive"}}}
        })
        .to_string(),
    );
    p.alert("single", &json!({
        "trigger": {"schedule": {"interval": "1m"}},
        "input": {"simple": {"status": "red"}},
        "actions": {"one": {"index": {"index": "alerts", "doc_id": "cluster-status", "execution_time_field": "@timestamp"}}}
    }).to_string());
    es.set_default(Reply::json(
        200,
        json!({"errors": false, "items": [], "result": "created"}),
    ));
    esalert(p.path()).arg("once").assert().success();
    let reqs = es.requests();
    let bulk = reqs
        .iter()
        .find(|r| r.path == "/_bulk")
        .expect("a bulk request");
    assert_eq!(bulk.headers["content-type"], "application/x-ndjson");
    let lines: Vec<Value> = bulk
        .raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            json!({"index": {"_index": "alerts-archive", "_id": "a"}}),
            json!({"n": 1}),
            json!({"index": {"_index": "alerts-archive"}}),
            json!({"n": 2}),
        ]
    );
    let single = reqs
        .iter()
        .find(|r| r.path == "/alerts/_doc/cluster-status")
        .expect("an index request");
    assert_eq!(single.method, "PUT");
    assert_eq!(single.body["status"], "red");
    assert!(
        single.body["@timestamp"]
            .as_str()
            .is_some_and(|t| t.starts_with("20"))
    );
}
