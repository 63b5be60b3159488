//! The throttle store's rules, each a test, driven through the library's
//! runner with a hand-moved clock against real peers; and its persistence
//! guarantees (atomic writes, corrupt store, lock).

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeZone;
use esalert::alert::{Alert, parse_alert};
use esalert::condition::ScriptEngine;
use esalert::config::Credentials;
use esalert::notify::Notifiers;
use esalert::pipeline::{ManualClock, Outcome, RetryPolicy, Runner, Settings};
use esalert::search::EsClient;
use esalert::throttle::{DeliveryStatus, Store, StoreError};
use serde_json::json;
use support::{EsStandIn, Reply, SlackReply, SlackStandIn, SmtpServer};

struct Rig {
    es: EsStandIn,
    slack: SlackStandIn,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    runner: Runner,
}

fn t0() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 12, 0, 0)
        .unwrap()
}

fn alert(throttle: &str) -> Alert {
    let text = json!({"index": "logs", "body": {}, "media": ["slack", "email"], "throttle_period": throttle,
        "subject": "errors", "message": "host {{ hits.hits.0._source.host }}"})
    .to_string();
    parse_alert(
        "errs",
        std::path::Path::new("errs.json"),
        &text,
        &ScriptEngine::default(),
    )
    .unwrap()
}

fn matching(host: &str) -> Reply {
    Reply::with(
        1,
        json!({"hits": {"total": {"value": 1, "relation": "eq"}, "hits": [{"_source": {"host": host}}]}}),
    )
}

fn rig() -> Rig {
    esalert::install_crypto_provider();
    let es = EsStandIn::start();
    es.set_default(matching("web-1"));
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let dir = tempfile::tempdir().unwrap();
    let creds = json!({"elasticsearch": {"url": es.url, "timeout": "2s"},
        "slack": slack.webhook_credentials(), "email": smtp.credentials()});
    let creds = Credentials::parse(std::path::Path::new("c.json"), &creds.to_string(), &|_| {
        None
    })
    .unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let runner = Runner::new(
        EsClient::new(&creds.elasticsearch).unwrap(),
        Arc::new(ScriptEngine::default()),
        Notifiers::from_credentials(&creds).unwrap(),
        Store::open(&dir.path().join("throttle_period.json")).unwrap(),
        clock.clone(),
        Settings {
            retry: RetryPolicy {
                tries: 1,
                min_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(10),
            },
            ..Settings::default()
        },
    );
    Rig {
        es,
        slack,
        smtp,
        dir,
        clock,
        runner,
    }
}

impl Rig {
    async fn run(&self, a: &Alert) -> Outcome {
        self.runner.run_alert(a).await.unwrap().outcome
    }

    async fn state(&self) -> esalert::throttle::AlertState {
        self.runner.state().get("errs").unwrap()
    }

    fn mins(&self, m: i64) {
        self.clock.advance(chrono::Duration::minutes(m));
    }
}

#[tokio::test]
async fn rule1_match_is_delivered_to_every_medium_then_throttled() {
    let r = rig();
    let a = alert("15m");
    assert_eq!(
        r.run(&a).await,
        Outcome::Fired(vec!["slack".into(), "email".into()])
    );
    assert_eq!(r.slack.delivered().len(), 1);
    assert_eq!(r.smtp.received().len(), 1);
    let st = r.state().await;
    assert_eq!(
        st.throttled_until(),
        Some(t0() + chrono::Duration::minutes(15))
    );
    assert_eq!(st.last_fired, Some(t0()));
    assert_eq!(st.last_outcome.as_deref(), Some("fired"));
    let m = st.last_match().unwrap();
    assert!(
        m.deliveries
            .values()
            .all(|d| d.status == DeliveryStatus::Sent && d.attempts == 1)
    );
    // The store on disk says the same (a new alert got its entry on its first run).
    let on_disk = Store::read_only(&r.dir.path().join("throttle_period.json")).unwrap();
    assert_eq!(
        on_disk.alerts["errs"].throttled_until(),
        Some(t0() + chrono::Duration::minutes(15))
    );
}

#[tokio::test]
async fn rules2_and_3_throttled_until_the_period_ends_then_delivered_again() {
    let r = rig();
    let a = alert("15m");
    r.run(&a).await;
    r.mins(5);
    assert_eq!(
        r.run(&a).await,
        Outcome::Throttled(t0() + chrono::Duration::minutes(15))
    );
    r.mins(9);
    assert!(matches!(r.run(&a).await, Outcome::Throttled(_)));
    assert_eq!(r.slack.delivered().len(), 1);
    r.mins(1); // exactly at throttled_until
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    assert_eq!(r.slack.delivered().len(), 2);
    assert_eq!(r.smtp.received().len(), 2);
}

#[tokio::test]
async fn rule4_zero_throttle_never_throttles() {
    let r = rig();
    let a = alert("0s");
    for _ in 0..3 {
        assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    }
    assert_eq!(r.slack.delivered().len(), 3);
}

#[tokio::test]
async fn rule5_all_media_failed_nothing_throttled_next_run_delivers() {
    let r = rig();
    let a = alert("15m");
    r.slack.push(SlackReply::ServerError);
    r.smtp.set_mode("451");
    assert_eq!(r.run(&a).await, Outcome::Failed);
    let st = r.state().await;
    assert_eq!(st.throttled_until(), None);
    let m = st.last_match().unwrap();
    assert!(
        m.deliveries["slack"]
            .last_error
            .as_deref()
            .unwrap()
            .contains("HTTP 500")
    );
    assert!(
        m.deliveries["email"]
            .last_error
            .as_deref()
            .unwrap()
            .contains("451")
    );
    r.smtp.set_mode("ok");
    r.mins(1);
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    assert_eq!(r.slack.delivered().len(), 1);
    assert_eq!(r.smtp.received().len(), 1);
    // The throttle counts from the tick whose match was delivered (t0),
    // not from when the delivery finally got through.
    assert_eq!(
        r.state().await.throttled_until(),
        Some(t0() + chrono::Duration::minutes(15))
    );
}

#[tokio::test]
async fn rule6_partial_failure_retries_only_failed_media_with_the_original_message() {
    let r = rig();
    let a = alert("15m");
    r.smtp.set_mode("550");
    assert_eq!(r.run(&a).await, Outcome::Partial);
    assert_eq!(r.slack.delivered().len(), 1);
    assert_eq!(
        r.state().await.throttled_until(),
        None,
        "throttling waits for the last medium"
    );
    // The response changes, the retry still sends what was rendered for the match.
    r.es.set_default(matching("web-2"));
    r.mins(1);
    assert_eq!(r.run(&a).await, Outcome::Partial);
    r.smtp.set_mode("ok");
    r.mins(1);
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    assert_eq!(
        r.slack.delivered().len(),
        1,
        "slack is not sent this match again"
    );
    let mails = r.smtp.received();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].data.contains("host web-1"), "{}", mails[0].data);
    let st = r.state().await;
    // Throttling starts when the last medium succeeds, counted from the
    // tick that matched.
    assert_eq!(
        st.throttled_until(),
        Some(t0() + chrono::Duration::minutes(15))
    );
    assert_eq!(st.last_match().unwrap().deliveries["email"].attempts, 3);
}

#[tokio::test]
async fn rule6_match_older_than_max_retry_age_is_dropped() {
    let r = rig();
    let a = alert("15m");
    r.smtp.set_mode("550");
    assert_eq!(r.run(&a).await, Outcome::Partial);
    r.es.set_default(Reply::total_v8(0, "eq"));
    r.mins(30);
    r.run(&a).await; // no match; the retry still fails
    r.mins(31);
    assert_eq!(r.run(&a).await, Outcome::NoMatch);
    let st = r.state().await;
    let m = st.last_match().unwrap();
    assert_eq!(m.deliveries["email"].status, DeliveryStatus::Dropped);
    assert_eq!(m.deliveries["slack"].status, DeliveryStatus::Sent);
    // A new match after the drop is delivered afresh.
    r.smtp.set_mode("ok");
    r.es.set_default(matching("web-3"));
    r.mins(1);
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    assert_eq!(r.slack.delivered().len(), 2);
}

#[tokio::test]
async fn rule7_condition_no_longer_met_does_not_reset_the_throttle() {
    let r = rig();
    let a = alert("15m");
    r.run(&a).await;
    let until = r.state().await.throttled_until();
    r.es.set_default(Reply::total_v8(0, "eq"));
    r.mins(2);
    assert_eq!(r.run(&a).await, Outcome::NoMatch);
    assert_eq!(r.state().await.throttled_until(), until);
    r.es.set_default(matching("web-1"));
    r.mins(2);
    assert!(matches!(r.run(&a).await, Outcome::Throttled(_)));
    assert_eq!(r.slack.delivered().len(), 1);
}

#[tokio::test]
async fn throttle_survives_a_restart() {
    let r = rig();
    let a = alert("15m");
    r.run(&a).await;
    let path = r.dir.path().join("throttle_period.json");
    let Rig {
        runner,
        es,
        slack,
        smtp,
        clock,
        dir,
    } = r;
    drop(runner); // releases the lock, like a process exit
    let creds = json!({"elasticsearch": {"url": es.url}, "slack": slack.webhook_credentials(), "email": smtp.credentials()});
    let creds = Credentials::parse(std::path::Path::new("c.json"), &creds.to_string(), &|_| {
        None
    })
    .unwrap();
    clock.advance(chrono::Duration::minutes(3));
    let runner = Runner::new(
        EsClient::new(&creds.elasticsearch).unwrap(),
        Arc::new(ScriptEngine::default()),
        Notifiers::from_credentials(&creds).unwrap(),
        Store::open(&path).unwrap(),
        clock.clone(),
        Settings::default(),
    );
    assert!(matches!(
        runner.run_alert(&a).await.unwrap().outcome,
        Outcome::Throttled(_)
    ));
    assert_eq!(slack.delivered().len(), 1);
    drop(dir);
}

#[test]
fn crash_between_temp_write_and_rename_leaves_old_or_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("throttle_period.json");
    let mut store = Store::open(&path).unwrap();
    store
        .data
        .alerts
        .entry("a".into())
        .or_default()
        .last_outcome = Some("fired".into());
    store.save().unwrap();
    let old = std::fs::read(&path).unwrap();
    store
        .data
        .alerts
        .entry("a".into())
        .or_default()
        .last_outcome = Some("throttled".into());
    let err = store
        .save_with(|tmp| {
            // The new version is complete in the temp file, but not in place.
            let tmp_text = std::fs::read_to_string(tmp).unwrap();
            assert!(tmp_text.contains("throttled"));
            Err(std::io::Error::other("simulated crash"))
        })
        .unwrap_err();
    assert!(err.to_string().contains("simulated crash"));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        old,
        "the old store is intact"
    );
    // No temp file is left behind, and the next save puts the new one in place.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    store.save().unwrap();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("throttled")
    );
    drop(store);
    let reopened = Store::open(&path).unwrap();
    assert_eq!(
        reopened.data.alerts["a"].last_outcome.as_deref(),
        Some("throttled")
    );
}

#[test]
fn corrupt_store_stops_startup_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("throttle_period.json");
    std::fs::write(
        &path,
        "{\"version\": 1,\n \"alerts\": {\"a\": {\"last_run\": \"yesterday\"}}}",
    )
    .unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { line: 2, .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}:2:", path.display())) && msg.contains("corrupt"),
        "{msg}"
    );
    // Never silently replaced.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("yesterday")
    );
    std::fs::write(&path, "{\"version\": 9, \"alerts\": {}}").unwrap();
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::Version { found: 9, .. }
    ));
    std::fs::write(&path, "{\"version\": 1, \"alerts\": {").unwrap();
    assert!(matches!(
        Store::open(&path).unwrap_err(),
        StoreError::Corrupt { .. }
    ));
}

#[test]
fn missing_store_is_created_and_only_one_holder_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/throttle_period.json");
    let held = Store::open(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&path).unwrap())
            .unwrap(),
        json!({"version": 2, "alerts": {}})
    );
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    // Another process can't take it either.
    let p = support::Project::new();
    p.credentials("http://127.0.0.1:9");
    p.alert("a", r#"{"index": "a", "body": {}, "message": "m"}"#);
    let out = assert_cmd::Command::cargo_bin("esalert")
        .unwrap()
        .current_dir(p.path())
        .env("ESALERT_TEST_PW", "x")
        .args(["once", "--state"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("in use by another esalert process"),
        "{stderr}"
    );
    drop(held);
    assert!(
        Store::open(&path).is_ok(),
        "the lock is released with the store"
    );
}

#[tokio::test]
async fn entries_of_deleted_alerts_are_pruned_after_seven_days() {
    let r = rig();
    let a = alert("0s");
    r.runner.run_all(std::slice::from_ref(&a)).await.unwrap();
    assert!(r.state().await.removed_at.is_none());
    // The file is gone: the entry is marked, then kept for 7 days.
    r.runner.run_all(&[]).await.unwrap();
    assert_eq!(r.state().await.removed_at, Some(t0()));
    r.clock.advance(chrono::Duration::days(6));
    r.runner.run_all(&[]).await.unwrap();
    assert!(r.runner.state().get("errs").is_some());
    // It comes back within the 7 days: the mark is cleared and state kept.
    r.runner.run_all(std::slice::from_ref(&a)).await.unwrap();
    assert!(r.state().await.removed_at.is_none());
    r.runner.run_all(&[]).await.unwrap();
    r.clock.advance(chrono::Duration::days(7));
    r.runner.run_all(&[]).await.unwrap();
    assert!(r.runner.state().get("errs").is_none());
    let on_disk = Store::read_only(&r.dir.path().join("throttle_period.json")).unwrap();
    assert!(on_disk.alerts.is_empty());
}

#[tokio::test]
async fn zero_throttle_delivers_a_new_match_while_an_earlier_one_is_owed() {
    let r = rig();
    let a = alert("0s");
    r.smtp.set_mode("451");
    r.slack.push(SlackReply::ServerError);
    assert_eq!(r.run(&a).await, Outcome::Failed);
    // A second match while the first is still owed: with no throttle it is
    // a notification of its own, not folded into the first.
    r.es.set_default(matching("web-2"));
    r.smtp.set_mode("ok");
    r.mins(1);
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    let hosts: Vec<String> = r
        .slack
        .delivered()
        .iter()
        .map(|p| p.body.to_string())
        .collect();
    assert_eq!(hosts.len(), 2, "{hosts:?}");
    assert!(
        hosts[0].contains("web-1") && hosts[1].contains("web-2"),
        "{hosts:?}"
    );
    assert_eq!(r.smtp.received().len(), 2);
}

#[tokio::test]
async fn throttle_counts_from_the_tick_that_fired() {
    let r = rig();
    let a = alert("30s");
    // The run for the tick at t0 starts (and delivers) two seconds late.
    r.clock.set(t0() + chrono::Duration::seconds(2));
    let rep = r.runner.run_alert_due(&a, Some(t0())).await.unwrap();
    assert!(matches!(rep.outcome, Outcome::Fired(_)));
    assert_eq!(
        r.state().await.throttled_until(),
        Some(t0() + chrono::Duration::seconds(30))
    );
    // The next tick, 30 s later, fires again: a 30 s throttle on a 30 s
    // schedule lets every tick through.
    r.clock.set(t0() + chrono::Duration::milliseconds(30_500));
    let due = t0() + chrono::Duration::seconds(30);
    let rep = r.runner.run_alert_due(&a, Some(due)).await.unwrap();
    assert!(
        matches!(rep.outcome, Outcome::Fired(_)),
        "{:?}",
        rep.outcome
    );
    assert_eq!(r.slack.delivered().len(), 2);
}

#[tokio::test]
async fn a_firing_is_on_disk_with_its_window_and_throttle_when_the_run_returns() {
    let r = rig();
    let a = alert("15m");
    assert!(matches!(r.run(&a).await, Outcome::Fired(_)));
    // Read the file itself, not the runner's memory: a kill -9 now must
    // neither re-send nor search and notify the same window again.
    let on_disk = Store::read_only(&r.dir.path().join("throttle_period.json")).unwrap();
    let st = &on_disk.alerts["errs"];
    assert_eq!(st.last_window_end, Some(t0()));
    assert_eq!(
        st.throttled_until(),
        Some(t0() + chrono::Duration::minutes(15))
    );
    assert!(
        st.last_match()
            .unwrap()
            .deliveries
            .values()
            .all(|d| d.status == DeliveryStatus::Sent)
    );
}

#[test]
fn a_version_1_store_is_migrated_with_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("throttle_period.json");
    let v1 = json!({"version": 1, "alerts": {"errs": {
        "throttled_until": "2099-01-01T00:00:00Z",
        "last_match": {"matched_at": "2026-11-21T12:00:00Z", "throttle_secs": 900,
            "notification": {"alert": "errs", "rendered": {"subject": "s", "text": "t", "slack": "t", "html": "t"},
                "hits": 1, "time": "2026-11-21T12:00:00Z"},
            "deliveries": {"slack": {"status": "sent", "attempts": 1}}}}}})
    .to_string();
    std::fs::write(&path, &v1).unwrap();
    let store = Store::open(&path).unwrap();
    assert_eq!(store.data.version, 2);
    assert!(store.data.alerts["errs"].throttled_until().is_some());
    let mut backup = path.as_os_str().to_owned();
    backup.push(".v1.bak");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), v1);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(on_disk["version"], 2);
}
