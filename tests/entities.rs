//! Alerts about things, not files, through the real binary against the
//! stand-ins: per-entity matches and throttles (`group_by`), resolved
//! notices, the `max_groups` summary, digests, throttle backoff, silences
//! of one key, and the fallback message of a broken template.

mod support;

use serde_json::{Value, json};
use support::daemon::has;
use support::{
    EsStandIn, Project, Reply, SlackStandIn, SmtpServer, buckets, grouped_alert, log_lines,
};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

fn store(p: &Project) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p.path().join("throttle_period.json")).unwrap())
        .unwrap()
}

/// The text of every block of a Slack post, joined.
fn post_text(p: &support::slack::Post) -> String {
    p.body.to_string()
}

fn project(es: &EsStandIn, slack: &SlackStandIn, alert: &str) -> Project {
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("burst", alert);
    p
}

#[test]
fn two_entities_notify_apart_and_throttle_apart() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(&es, &slack, &grouped_alert(json!({})));
    // Below the condition's 5, 10.0.0.9 is no match at all.
    es.push(buckets(&[
        ("198.51.100.77", 40),
        ("192.0.2.200", 90),
        ("10.0.0.9", 2),
    ]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert!(post_text(&posts[0]).contains("40 failed logins from 198.51.100.77 (132 in all)"));
    assert!(post_text(&posts[1]).contains("90 failed logins from 192.0.2.200"));

    // 198.51.100.77 again (throttled) and a new attacker: only it fires.
    es.push(buckets(&[("198.51.100.77", 50), ("203.0.113.5", 7)]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    assert!(post_text(&posts[2]).contains("7 failed logins from 203.0.113.5"));
    let st = store(&p);
    let keys = &st["alerts"]["burst"]["keys"];
    for k in ["198.51.100.77", "192.0.2.200", "203.0.113.5"] {
        assert!(keys[k]["throttled_until"][""].is_string(), "{k}: {keys:#}");
    }
    assert!(keys.get("10.0.0.9").is_none(), "{keys:#}");
    // alerts.log says which entity fired and which was throttled.
    let lines = log_lines(p.path());
    let last: Vec<_> = lines.iter().rev().take(3).collect();
    assert!(
        last.iter()
            .any(|l| has(l, "key", "203.0.113.5") && has(l, "outcome", "fired")),
        "{last:#?}"
    );
    assert!(
        last.iter()
            .any(|l| has(l, "key", "198.51.100.77") && has(l, "outcome", "throttled")),
        "{last:#?}"
    );
}

#[test]
fn an_entity_that_goes_away_gets_one_resolved_notice() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &grouped_alert(json!({"notify_resolved": true, "resolve_after": "0s"})),
    );
    es.push(buckets(&[("198.51.100.77", 40), ("192.0.2.200", 90)]));
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 2);
    // 192.0.2.200 is gone; 198.51.100.77 still there (and throttled).
    es.push(buckets(&[("198.51.100.77", 41)]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    let resolved = post_text(&posts[2]);
    assert!(
        resolved.contains("[resolved] failed logins from 192.0.2.200"),
        "{resolved}"
    );
    assert!(resolved.contains("✅ resolved"), "{resolved}");
    // Still gone: nothing more. A failed search resolves nothing either.
    es.push(buckets(&[("198.51.100.77", 41)]));
    esalert(p.path()).arg("once").assert().success();
    es.push(Reply::error(503, "unavailable", "try later"));
    es.push(Reply::error(503, "unavailable", "try later"));
    es.push(Reply::error(503, "unavailable", "try later"));
    let _ = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(slack.delivered().len(), 3);
    assert!(
        log_lines(p.path())
            .iter()
            .any(|l| has(l, "event", "resolved") && has(l, "key", "192.0.2.200")),
        "resolution is logged"
    );
    // `status` lists the incidents still open.
    let out = esalert(p.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["incidents"], json!(["198.51.100.77"]), "{rows:#}");
    // It comes back: a new incident, but its throttle still runs.
    es.push(buckets(&[("192.0.2.200", 9), ("198.51.100.77", 41)]));
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 3);
}

#[test]
fn a_whole_alert_resolves_too() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &json!({"index": "logs", "body": {}, "throttle_period": "1h", "notify_resolved": true,
            "resolve_after": "0s", "subject": "{% if resolved %}all clear{% else %}errors{% endif %}",
            "message": "{% if resolved %}no errors now{% else %}{{ hits.total.value }} errors{% endif %}"})
        .to_string(),
    );
    es.push(Reply::total_v8(3, "eq"));
    esalert(p.path()).arg("once").assert().success();
    es.push(Reply::total_v8(0, "eq"));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    // The rule's own templates, with `resolved` set.
    let text = post_text(&posts[1]);
    assert!(
        text.contains("[resolved] all clear") && text.contains("no errors now"),
        "{text}"
    );
}

#[test]
fn keys_beyond_max_groups_go_in_one_summary() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &grouped_alert(
            json!({"group_by": {"path": "aggregations.sources.buckets", "key": "key", "max_groups": 2}}),
        ),
    );
    es.push(buckets(&[
        ("a", 50),
        ("b", 40),
        ("c", 30),
        ("d", 20),
        ("e", 10),
    ]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    let summary = post_text(&posts[2]);
    assert!(summary.contains("3 more keys matched"), "{summary}");
    for (k, n) in [("c", 30), ("d", 20), ("e", 10)] {
        assert!(summary.contains(&format!("{k}\\t{n}")), "{k}: {summary}");
    }
    assert!(!summary.contains("a\\t50"), "{summary}");
    // The summary opens no incident of its own (nothing to resolve later).
    let st = store(&p);
    assert!(
        st["alerts"]["burst"]["keys"].get("(more)").is_none(),
        "{st:#}"
    );
    assert!(st["alerts"]["burst"]["keys"]["a"]["firing_since"].is_string());
}

#[test]
fn a_digest_sends_thirty_matches_in_one_email_and_one_slack_post() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    p.alert(
        "burst",
        &grouped_alert(
            json!({"media": ["slack", "email"], "digest": {"window": "2s", "max_items": 20}}),
        ),
    );
    let ips: Vec<String> = (1..=30).map(|i| format!("10.1.0.{i}")).collect();
    let first: Vec<(&str, u64)> = ips[..15].iter().map(|k| (k.as_str(), 6)).collect();
    let second: Vec<(&str, u64)> = ips[15..].iter().map(|k| (k.as_str(), 8)).collect();
    // Two runs (two processes: what was gathered survives in the store).
    es.push(buckets(&first));
    esalert(p.path()).arg("once").assert().success();
    es.push(buckets(&second));
    esalert(p.path()).arg("once").assert().success();
    assert!(slack.delivered().is_empty() && smtp.received().is_empty());
    let st = store(&p);
    assert_eq!(
        st["alerts"]["burst"]["digest"]["groups"][0]["total"], 30,
        "{st:#}"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    es.set_default(buckets(&[]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let mails = smtp.received();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    let text = post_text(&posts[0]);
    assert!(
        text.contains("[digest] burst: 30 matches for 30 keys in 2s"),
        "{text}"
    );
    assert!(
        text.contains("10.1.0.30"),
        "the table has every key: {text}"
    );
    assert!(
        text.contains("and 10 more"),
        "max_items caps the lines: {text}"
    );
    assert!(mails[0].data.contains("[digest] burst: 30 matches"));
    assert!(store(&p)["alerts"]["burst"].get("digest").is_none());
    // Nothing more once it is sent.
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 1);
}

#[test]
fn throttle_backoff_doubles_while_the_key_keeps_matching() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &json!({"index": "logs", "body": {}, "throttle_period": "1s",
            "throttle_backoff": {"factor": 2, "max": "3s"}, "message": "{{ hits.total.value }} errors"})
        .to_string(),
    );
    let period = |p: &Project| store(p)["alerts"]["burst"]["keys"][""]["period_secs"].clone();
    let mut expect = Vec::new();
    for want in [1, 2, 3, 3] {
        esalert(p.path()).arg("once").assert().success();
        assert_eq!(period(&p), want);
        expect.push(want);
        // Throttled right after it fired.
        esalert(p.path()).arg("once").assert().success();
        assert_eq!(slack.delivered().len(), expect.len());
        std::thread::sleep(std::time::Duration::from_millis(want * 1000 + 50));
    }
    let until = store(&p)["alerts"]["burst"]["keys"][""]["throttled_until"][""].clone();
    let last = store(&p)["alerts"]["burst"]["outbox"][0]["matched_at"].clone();
    let gap = chrono::DateTime::parse_from_rfc3339(until.as_str().unwrap()).unwrap()
        - chrono::DateTime::parse_from_rfc3339(last.as_str().unwrap()).unwrap();
    assert_eq!(gap.num_seconds(), 3, "capped at max");
}

#[test]
fn a_silence_of_one_key_holds_only_that_key_and_ends() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(&es, &slack, &grouped_alert(json!({})));
    let until = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let out = esalert(p.path())
        .args([
            "silence",
            "burst",
            "--key",
            "192.0.2.200",
            "--until",
            &until,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    es.set_default(buckets(&[("198.51.100.77", 40), ("192.0.2.200", 90)]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert!(post_text(&posts[0]).contains("198.51.100.77"));
    assert!(
        log_lines(p.path()).iter().any(|l| has(l, "alert", "burst")
            && has(l, "key", "192.0.2.200")
            && has(l, "outcome", "silenced")
            && has(l, "silence", &id)),
        "the silenced key is logged"
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    assert!(post_text(&posts[1]).contains("90 failed logins from 192.0.2.200"));
}

#[test]
fn a_watch_groups_through_the_same_stage() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "hosts",
        &json!({
            "metadata": {"esalert": {"group_by": {"path": "aggregations.sources.buckets", "key": "key"}}},
            "trigger": {"schedule": {"interval": "1m"}},
            "input": {"search": {"request": {"indices": ["auth"], "body": {}}}},
            "condition": {"compare": {"ctx.payload.doc_count": {"gte": 5}}},
            "actions": {"notify": {"throttle_period": "1h", "slack": {"message": {
                "text": "{{group.key}}: {{ctx.payload.doc_count}}"}}}}
        })
        .to_string(),
    );
    es.push(buckets(&[("a", 6), ("b", 1), ("c", 9)]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    let texts: Vec<&str> = posts
        .iter()
        .filter_map(|p| p.body["text"].as_str())
        .collect();
    assert_eq!(texts, ["a: 6", "c: 9"], "{posts:#?}");
    es.push(buckets(&[("a", 6), ("d", 9)]));
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 3);
    assert_eq!(posts[2].body["text"], "d: 9");
}

#[test]
fn a_broken_template_still_notifies_with_a_fallback() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(4, "eq"));
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &json!({"index": "logs", "body": {}, "message": "host {{ hits.hits[0]._source.host.name }}"})
            .to_string(),
    );
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1, "a match is never lost to a template");
    let text = post_text(&posts[0]);
    assert!(text.contains("template error"), "{text}");
    assert!(text.contains("matched 4 hits"), "{text}");
    assert!(
        log_lines(p.path())
            .iter()
            .any(|l| has(l, "event", "template_error")),
        "logged"
    );
}

#[test]
fn group_by_mistakes_are_check_errors() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(
        &es,
        &slack,
        &grouped_alert(json!({"group_by": {"path": "x", "key": "k", "max_groups": 0}})),
    );
    let out = esalert(p.path())
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("max_groups") && s.contains("burst.json:"), "{s}");
}

#[test]
fn the_example_files_of_the_readme_pass_check() {
    let p = Project::new();
    let dir = support::repo().join("examples/alerts");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        p.alert(&name, &std::fs::read_to_string(&path).unwrap());
        n += 1;
    }
    assert!(n >= 5);
    let out = esalert(p.path())
        .args(["check", "--queries-only"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
