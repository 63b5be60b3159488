//! Silences through the real binary: made, listed and ended without a
//! daemon, held against matches, and expiring by themselves.

mod support;

use serde_json::{Value, json};
use support::daemon::has;
use support::{EsStandIn, Project, Reply, SlackStandIn, log_lines};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

fn project(es: &EsStandIn, slack: &SlackStandIn) -> Project {
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "errs",
        &json!({"index": "logs", "body": {}, "throttle_period": "1h", "message": "{{ hits.total.value }} errors"})
            .to_string(),
    );
    p
}

#[test]
fn a_silenced_match_is_logged_not_sent_and_unsilence_lets_it_through() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let slack = SlackStandIn::start();
    let p = project(&es, &slack);
    let out = esalert(p.path())
        .args(["silence", "errs", "--for", "2h", "--reason", "maintenance"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 8, "{id}");
    let list = esalert(p.path())
        .args(["silence", "--list", "--json"])
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["rule"], "errs");
    assert_eq!(list[0]["reason"], "maintenance");

    esalert(p.path()).arg("once").assert().success();
    assert!(slack.delivered().is_empty(), "a silenced match is not sent");
    let lines = log_lines(p.path());
    assert!(
        lines.iter().any(|l| has(l, "alert", "errs")
            && has(l, "outcome", "silenced")
            && has(l, "silence", &id)),
        "{lines:#?}"
    );
    // `status` shows it.
    let status = esalert(p.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    let rows: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(rows[0]["silences"][0]["id"], id.as_str());

    esalert(p.path())
        .args(["unsilence", &id])
        .assert()
        .success();
    // A silence starts no throttle: the match is delivered at the next run.
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 1);
    // Ending it twice is an error that says so.
    let again = esalert(p.path()).args(["unsilence", &id]).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no silence"));
}

#[test]
fn a_silence_ends_by_itself() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let slack = SlackStandIn::start();
    let p = project(&es, &slack);
    let until = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    esalert(p.path())
        .args(["silence", "errs", "--until", &until])
        .assert()
        .success();
    esalert(p.path()).arg("once").assert().success();
    assert!(slack.delivered().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(2500));
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(
        slack.delivered().len(),
        1,
        "delivered once the silence ended"
    );
    let list = esalert(p.path())
        .args(["silence", "--list"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).trim().is_empty());
}

#[test]
fn silences_are_checked_before_they_are_made() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = project(&es, &slack);
    for (args, says) in [
        (vec!["silence", "nope", "--for", "1h"], "no alert named"),
        (vec!["silence", "errs"], "--for DURATION or --until TIME"),
        (
            vec!["silence", "errs", "--until", "2001-01-01T00:00:00Z"],
            "not in the future",
        ),
        (vec!["silence", "errs", "--for", "400d"], "at most 365 days"),
        (
            vec!["silence", "errs", "--until", "tomorrow"],
            "2026-12-01T08:00:00Z",
        ),
    ] {
        let out = esalert(p.path()).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!p.path().join("throttle_period.json.silences.json").exists());
}
