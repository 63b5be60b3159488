//! One pipeline under every kind of rule: watches get the outbox, the
//! retries, the escaping and the window rules that native alerts have,
//! through the real binary against local peers.

mod support;

use serde_json::{Value, json};
use support::daemon::has;
use support::{EsStandIn, Project, Reply, SlackReply, SlackStandIn, SmtpServer, log_lines};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

/// `esalert check --queries-only` on a project that has problems: asserts
/// it exits 1 and returns what it printed (stdout and stderr).
fn check_problems(p: &Project) -> String {
    let out = esalert(p.path())
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
        + String::from_utf8_lossy(&out.stderr).as_ref()
}

fn store(p: &Project) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.path().join("throttle_period.json")).unwrap())
        .unwrap()
}

fn two_channel_watch() -> String {
    json!({
        "trigger": {"schedule": {"interval": "1m"}},
        "input": {"search": {"request": {"indices": ["logs"], "body": {}}}},
        "condition": {"compare": {"ctx.payload.hits.total": {"gt": 0}}},
        "actions": {"notify": {"throttle_period": "1h", "slack": {"message": {
            "to": ["#ops", "#sec"], "text": "{{ctx.payload.hits.total}} errors"}}}}
    })
    .to_string()
}

#[test]
fn watch_slack_outage_is_delivered_later_once_per_channel() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v7(3));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.bot_credentials("#default")), None);
    p.alert("errs", &two_channel_watch());
    // #ops gets through; #sec fails all three attempts of the run.
    slack.push(SlackReply::Ok);
    for _ in 0..3 {
        slack.push(SlackReply::ServerError);
    }
    esalert(p.path()).arg("once").assert().failure();
    let lines = log_lines(p.path());
    assert!(
        lines
            .iter()
            .any(|l| has(l, "alert", "errs") && has(l, "outcome", "partial")),
        "{lines:#?}"
    );
    assert_eq!(
        store(&p)["alerts"]["errs"]["outbox"][0]["deliveries"]["notify#2"]["status"],
        "pending"
    );
    // Slack is back: only the channel still owed is posted, once.
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    let channels: Vec<&str> = posts
        .iter()
        .filter_map(|p| p.body["channel"].as_str())
        .collect();
    assert_eq!(channels, ["#ops", "#sec"], "{posts:#?}");
    // And the action is throttled now, for both channels.
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 2);
    assert!(
        log_lines(p.path())
            .iter()
            .any(|l| has(l, "action", "notify") && has(l, "outcome", "throttled"))
    );
}

#[test]
fn a_watch_whose_every_action_failed_is_failed_not_fired() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v7(3));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.bot_credentials("#default")), None);
    p.alert("errs", &two_channel_watch());
    for _ in 0..6 {
        slack.push(SlackReply::ServerError);
    }
    esalert(p.path()).arg("once").assert().failure();
    let lines = log_lines(p.path());
    let run = lines
        .iter()
        .find(|l| has(l, "alert", "errs") && l.contains_key("outcome") && !l.contains_key("action"))
        .unwrap_or_else(|| panic!("the run's line: {lines:#?}"));
    assert_eq!(run["outcome"], "failed", "{lines:#?}");
    assert_eq!(run["level"], "ERROR");
    assert!(
        lines
            .iter()
            .any(|l| has(l, "action", "notify") && has(l, "outcome", "failure"))
    );
    // It counts toward "alert is failing".
    assert_eq!(store(&p)["alerts"]["errs"]["consecutive_failures"], 1);
}

#[test]
fn watch_values_are_escaped_in_slack_and_html_email() {
    let es = EsStandIn::start();
    es.set_default(Reply::json(
        200,
        json!({"hits": {"total": 1, "hits": [{"_source": {
            "msg": "<!channel> <http://evil.example|click> & <img src=x onerror=alert(1)>"}}]}}),
    ));
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    p.alert(
        "esc",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"search": {"request": {"indices": ["logs"], "body": {}}}},
            "condition": {"always": {}},
            "actions": {
                "chat": {"slack": {"message": {
                    "text": "*alert* <https://kibana.example|open>: {{ctx.payload.hits.hits.0._source.msg}}",
                    "attachments": [{"title": "x", "text": "{{ctx.payload.hits.hits.0._source.msg}}"}]}}},
                "mail": {"email": {"to": "soc@example.com", "subject": "s",
                    "body": {"html": "<b>seen</b>: {{ctx.payload.hits.hits.0._source.msg}}"}}}
            }
        })
        .to_string(),
    );
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1);
    let text = posts[0].body["text"].as_str().unwrap();
    // The template's own markup stays; the value's can't ping or link.
    assert!(
        text.starts_with("*alert* <https://kibana.example|open>: "),
        "{text}"
    );
    assert!(text.contains("&lt;!channel&gt;"), "{text}");
    assert!(!text.contains("<!channel>"), "{text}");
    assert!(!text.contains("<http://evil"), "{text}");
    let att = posts[0].body["attachments"][0]["text"].as_str().unwrap();
    assert!(
        att.contains("&lt;!channel&gt;") && !att.contains("<!channel>"),
        "{att}"
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let m = mail_parser::MessageParser::default()
        .parse(mails[0].data.as_bytes())
        .unwrap();
    let html = m.body_html(0).unwrap();
    assert!(html.contains("<b>seen</b>"), "{html}");
    assert!(html.contains("&lt;img"), "{html}");
    assert!(!html.contains("<img"), "{html}");
}

#[test]
fn test_searches_one_schedule_period_of_a_cron_alert() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert(
        "hourly",
        &json!({"index": "logs", "schedule": "0 0 * * * *", "message": "m",
            "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}}})
        .to_string(),
    );
    // No hits: not matched, exit code 3.
    esalert(p.path()).args(["test", "hourly"]).assert().code(3);
    let r = &es.searches()[0].body["query"]["range"]["@timestamp"];
    let start = chrono::DateTime::parse_from_rfc3339(r["gte"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(r["lt"].as_str().unwrap()).unwrap();
    let len = end - start;
    // One period of an hourly cron, not one minute.
    assert!(
        len > chrono::Duration::minutes(59) && len <= chrono::Duration::hours(1),
        "{len}"
    );
}

#[test]
fn date_math_far_in_the_past_is_an_error_not_a_crash() {
    let p = Project::new();
    p.alert(
        "dm",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"search": {"request": {"indices": ["<logs-{now-9999999999d}>"], "body": {}}}},
            "condition": {"always": {}},
            "actions": {"log": {"logging": {"text": "x"}}}
        })
        .to_string(),
    );
    let err = check_problems(&p);
    assert!(err.contains("dm.json:") && err.contains("date"), "{err}");
}

#[test]
fn watch_http_requests_have_no_silent_defaults() {
    let p = Project::new();
    p.alert(
        "h",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"http": {"request": {"host": "example.internal", "pth": "/x"}}},
            "condition": {"always": {}},
            "actions": {"hook": {"webhook": {"host": "hooks.internal", "port": 99999, "path": "/"}}}
        })
        .to_string(),
    );
    let text = check_problems(&p);
    // A typo, a missing port and a port out of range: each named, with its place.
    assert!(text.contains("unknown key \"pth\""), "{text}");
    assert!(text.contains("needs `port`"), "{text}");
    assert!(
        text.contains("`port` must be a number from 1 to 65535"),
        "{text}"
    );
    assert!(
        text.lines().filter(|l| l.contains("h.json:")).count() >= 3,
        "{text}"
    );
}

#[test]
fn watch_typos_and_missing_index_are_check_errors() {
    let p = Project::new();
    p.alert(
        "t",
        &json!({
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"search": {"request": {"indices": ["logs"], "body": {}, "serch_type": "x"}, "extrct": ["a"]}},
            "condition": {"always": {}},
            "actions": {
                "log": {"logging": {"text": "x", "levl": "error"}},
                "save": {"index": {"doc_id": "1"}}
            }
        })
        .to_string(),
    );
    let text = check_problems(&p);
    for says in [
        "unknown key \"serch_type\" in a search request",
        "unknown key \"extrct\" in a search input",
        "unknown key \"levl\" in a logging action",
        "an index action needs `index`",
    ] {
        assert!(text.contains(says), "{says}: {text}");
    }
}
