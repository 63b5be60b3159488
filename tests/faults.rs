//! Fault injection through the real binary: the cluster down, slow, 5xx,
//! 429, garbage and back; Slack and SMTP failing; kill -9 mid-delivery.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{
    EsStandIn, Project, Reply, SlackReply, SlackStandIn, SmtpServer, range, wait_until, windowed,
};

const T: Duration = Duration::from_secs(20);

#[test]
fn outage_catch_up_covers_the_whole_gap_with_one_notification() {
    let mut es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let port = es.port;
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("gap", &windowed("1s", json!({})));
    let d = Daemon::start(p.path(), &["--error-alert-after", "100"], &[]);
    wait_until("three searches", || es.searches().len() >= 3);
    let before = es.searches();
    let (_, last_end) = range(before.last().unwrap());
    es.stop();
    std::thread::sleep(Duration::from_secs(5));
    d.wait_line(T, "errors while down", |l| {
        has(l, "alert", "gap") && has(l, "outcome", "error")
    });
    // Back up, with matching documents for the gap.
    let es2 = EsStandIn::start_on(port);
    es2.set_default(Reply::total_v8(7, "eq"));
    wait_until("a search after the outage", || !es2.searches().is_empty());
    let (gte, lt) = range(&es2.searches()[0]);
    assert_eq!(
        gte, last_end,
        "the catch-up search starts where the last successful one ended"
    );
    let span = chrono::DateTime::parse_from_rfc3339(&lt).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&gte).unwrap();
    assert!(
        span >= chrono::Duration::seconds(5),
        "covers the whole gap: {span}"
    );
    // Windows stay contiguous after that too.
    wait_until("more searches", || es2.searches().len() >= 3);
    let after = es2.searches();
    for w in after.windows(2) {
        assert_eq!(
            range(&w[1]).0,
            range(&w[0]).1,
            "gap or overlap between windows"
        );
    }
    // One notification for the outage's matches, not one per missed second.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slack.delivered().len(), 1);
    let text = slack.delivered()[0].body["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("esalert") || !text.is_empty());
    drop(d);
}

#[test]
fn catch_up_is_capped_by_max_catchup() {
    let mut es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let port = es.port;
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(json!({"webhook_url": "https://hooks.slack.com/services/T/B/X"})),
        None,
    );
    p.alert(
        "capped",
        &windowed("1s", json!({"max_catchup": "2s", "query_delay": "1s"})),
    );
    let d = Daemon::start(p.path(), &[], &[]);
    wait_until("a search", || es.searches().len() >= 2);
    // query_delay shifts both ends back.
    let r = es.searches().last().unwrap().clone();
    let lt = chrono::DateTime::parse_from_rfc3339(&range(&r).1).unwrap();
    let at: chrono::DateTime<chrono::Utc> = r.at.into();
    let lag = at - lt.with_timezone(&chrono::Utc);
    assert!(
        lag >= chrono::Duration::milliseconds(900) && lag < chrono::Duration::seconds(2),
        "query_delay: {lag}"
    );
    es.stop();
    std::thread::sleep(Duration::from_secs(5));
    let es2 = EsStandIn::start_on(port);
    es2.set_default(Reply::total_v8(0, "eq"));
    let line = d.wait_line(T, "catchup_truncated", |l| {
        has(l, "event", "catchup_truncated")
    });
    assert!(line["gap"].ends_with('s'), "{line:?}");
    wait_until("search after outage", || !es2.searches().is_empty());
    let (gte, lt) = range(&es2.searches()[0]);
    let span = chrono::DateTime::parse_from_rfc3339(&lt).unwrap()
        - chrono::DateTime::parse_from_rfc3339(&gte).unwrap();
    assert_eq!(span, chrono::Duration::seconds(2));
}

#[test]
fn cluster_errors_backoff_recovery_and_alerts_about_alerting() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "flaky",
        &windowed(
            "2s",
            json!({"throttle_period": "0s", "condition": {"never": {}}}),
        ),
    );
    // 503 then 429, then a good answer: one run, retried with backoff, no error.
    es.push(Reply::error(
        503,
        "unavailable_shards_exception",
        "primary shard is not active",
    ));
    es.push(Reply::error(
        429,
        "es_rejected_execution_exception",
        "rejected execution",
    ));
    es.set_default(Reply::total_v8(0, "eq"));
    let d = Daemon::start(p.path(), &["--error-alert-after", "3"], &[]);
    d.wait_line(T, "run after retries", |l| {
        has(l, "alert", "flaky") && has(l, "outcome", "no_match")
    });
    assert_eq!(
        d.lines()
            .iter()
            .filter(|l| has(l, "event", "search_retry"))
            .count(),
        2
    );
    assert!(!d.lines().iter().any(|l| has(l, "outcome", "error")));

    // A query error, three runs in a row: one "is failing" notice.
    es.set_default(Reply::error(
        400,
        "parsing_exception",
        "unknown query [mtach]",
    ));
    let failing = d.wait_line(T, "failing notice", |l| has(l, "event", "notice"));
    assert!(
        failing["subject"].contains("esalert: alert flaky is failing"),
        "{failing:?}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let notices: Vec<_> = slack
        .delivered()
        .into_iter()
        .map(|p| p.body["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(notices[0].contains("unknown query [mtach]"), "{notices:?}");
    // Garbage answers are errors too, without a second notice.
    es.set_default(Reply::not_json());
    d.wait_line(T, "not json", |l| {
        has(l, "outcome", "error") && l["error"].contains("not JSON")
    });
    es.set_default(Reply::truncated());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(slack.delivered().len(), 1);
    // Recovery: one notice.
    es.set_default(Reply::total_v8(0, "eq"));
    wait_until("recovered notice", || slack.delivered().len() == 2);
    assert!(
        slack.delivered()[1].body["text"]
            .as_str()
            .unwrap()
            .contains("recovered")
    );
}

#[test]
fn auth_errors_logged_every_run_with_a_hint() {
    let es = EsStandIn::start();
    es.set_default(Reply::unauthorized());
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(json!({"webhook_url": "https://hooks.slack.com/services/T/B/X"})),
        None,
    );
    p.alert("auth", &windowed("1s", json!({})));
    let d = Daemon::start(p.path(), &["--error-alert-after", "1000"], &[]);
    wait_until("five searches", || es.searches().len() >= 5);
    std::thread::sleep(Duration::from_millis(500));
    let errors: Vec<_> = d
        .lines()
        .into_iter()
        .filter(|l| has(l, "alert", "auth") && has(l, "outcome", "error"))
        .collect();
    // Every evaluation is one line in alerts.log, repeated 401s included.
    assert!(errors.len() >= 5, "{errors:?}");
    assert!(
        errors[0]["error"].contains("check username/password or api_key"),
        "{:?}",
        errors[0]
    );
    assert!(!errors[0]["error"].contains("pw"), "no secret in the log");
}

#[test]
fn unreachable_cluster_gives_one_notice_for_all_alerts() {
    let mut es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let port = es.port;
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    quiet_alerts(&p, 5);
    let d = Daemon::start(p.path(), &["--error-alert-after", "2"], &[]);
    wait_until("first searches", || es.searches().len() >= 5);
    es.stop();
    d.wait_line(T, "cluster notice", |l| {
        has(l, "event", "notice") && l["subject"].contains("unreachable")
    });
    std::thread::sleep(Duration::from_secs(3));
    let posts = slack.delivered();
    assert_eq!(
        posts.len(),
        1,
        "one notice for the cluster, not one per alert"
    );
    assert!(
        posts[0].body["text"]
            .as_str()
            .unwrap()
            .contains("connection refused")
    );
    let es2 = EsStandIn::start_on(port);
    es2.set_default(Reply::total_v8(0, "eq"));
    wait_until("reachable notice", || slack.delivered().len() == 2);
    assert!(
        slack.delivered()[1].body["text"]
            .as_str()
            .unwrap()
            .contains("reachable again")
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slack.delivered().len(), 2, "no per-alert recovery notices");
}

#[test]
fn slow_cluster_times_out_and_runs_do_not_stack() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq").with_delay(Duration::from_secs(4)));
    let p = Project::new();
    let creds = json!({"elasticsearch": {"url": es.url, "timeout": "1500ms"},
        "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}});
    std::fs::write(p.path().join("credentials.json"), creds.to_string()).unwrap();
    p.alert("slow", &windowed("1s", json!({})));
    let d = Daemon::start(p.path(), &[], &[]);
    let e = d.wait_line(T, "timeout", |l| {
        has(l, "alert", "slow") && has(l, "outcome", "error")
    });
    assert!(e["error"].contains("no answer"), "{e:?}");
    std::thread::sleep(Duration::from_secs(4));
    // The stand-in keeps sleeping on abandoned requests, so judge by when
    // requests were sent: a new one only after the last one timed out.
    let times: Vec<_> = es.searches().iter().map(|r| r.at).collect();
    assert!(times.len() >= 3);
    for w in times.windows(2) {
        let gap = w[1].duration_since(w[0]).unwrap();
        assert!(
            gap >= Duration::from_millis(1400),
            "a run started {gap:?} after the previous one"
        );
    }
    assert!(d.lines().iter().any(|l| has(l, "outcome", "skipped")));
}

#[test]
fn slack_and_smtp_outage_loses_nothing() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(1, "eq"));
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    p.alert(
        "both",
        &windowed("1s", json!({"media": ["slack", "email"]})),
    );
    for _ in 0..20 {
        slack.push(SlackReply::ServerError);
    }
    smtp.set_mode("451");
    let d = Daemon::start(p.path(), &[], &[]);
    d.wait_line(T, "failed", |l| {
        has(l, "alert", "both") && has(l, "outcome", "failed")
    });
    smtp.set_mode("ok");
    d.wait_line(T, "partial", |l| {
        has(l, "alert", "both") && has(l, "outcome", "partial")
    });
    wait_until("slack delivered", || !slack.delivered().is_empty());
    d.wait_line(T, "fired", |l| {
        has(l, "alert", "both") && has(l, "outcome", "fired")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(slack.delivered().len(), 1);
    assert_eq!(smtp.received().len(), 1);
}

#[test]
fn kill_9_during_delivery_never_loses_a_notification() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(1, "eq"));
    let slack = SlackStandIn::start();
    slack.set_delay(Duration::from_millis(400));
    let smtp = SmtpServer::start();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    let mut kills = 0;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for round in 0..8 {
        // A new match each round: a fresh alert name, so throttling of the
        // earlier rounds doesn't hide anything.
        p.alert(
            &format!("k{round}"),
            &windowed("1s", json!({"media": ["slack", "email"]})),
        );
        let mut d = Daemon::start(p.path(), &[], &[]);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let wait = 1200 + rng % 1500;
        std::thread::sleep(Duration::from_millis(wait));
        d.signal(libc::SIGKILL);
        let _ = d.wait_exit(T);
        kills += 1;
    }
    // A last start delivers whatever is owed.
    let d = Daemon::start(p.path(), &[], &[]);
    let path = p.path().join("throttle_period.json");
    wait_until("every match settled", || {
        let Ok(text) = std::fs::read_to_string(&path) else {
            return false;
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        (0..8).all(|r| {
            let outbox = v["alerts"][format!("k{r}")]["outbox"].as_array();
            outbox.is_some_and(|o| {
                !o.is_empty()
                    && o.iter().all(|m| {
                        let m = &m["deliveries"];
                        m["slack"]["status"] == "sent" && m["email"]["status"] == "sent"
                    })
            })
        })
    });
    drop(d);
    let slack_by_alert = |a: &str| {
        slack
            .all_posts()
            .iter()
            .filter(|p| {
                p.body["text"]
                    .as_str()
                    .unwrap_or("")
                    .contains("hits between")
                    && p.body["blocks"].to_string().contains(&format!("*{a}*"))
            })
            .count()
    };
    let mail_by_alert = |a: &str| {
        smtp.received()
            .iter()
            .filter(|m| m.data.contains(&format!("X-Esalert-Alert: {a}")))
            .count()
    };
    let mut extra = 0;
    for r in 0..8 {
        let a = format!("k{r}");
        let (s, m) = (slack_by_alert(&a), mail_by_alert(&a));
        assert!(
            s >= 1 && m >= 1,
            "{a}: slack {s}, email {m}: a notification was lost"
        );
        // At most one extra per medium, for the delivery in flight at a crash.
        assert!(s <= 2 && m <= 2, "{a}: slack {s}, email {m}");
        extra += s - 1 + m - 1;
    }
    assert!(extra <= kills, "{extra} duplicates for {kills} kills");
}

#[test]
fn rejected_credentials_give_one_notice_for_all_alerts() {
    let es = EsStandIn::start();
    es.set_default(Reply::unauthorized());
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    quiet_alerts(&p, 5);
    let d = Daemon::start(p.path(), &["--error-alert-after", "2"], &[]);
    d.wait_line(T, "cluster notice", |l| {
        has(l, "event", "notice") && l["subject"].contains("rejects esalert's credentials")
    });
    std::thread::sleep(Duration::from_secs(3));
    let posts = slack.delivered();
    // A rotated password is one notice, not one per alert and medium.
    assert_eq!(posts.len(), 1, "{posts:#?}");
    let text = posts[0].body["text"].as_str().unwrap();
    assert!(text.contains("401"), "{text}");
    es.set_default(Reply::total_v8(0, "eq"));
    wait_until("accepted again notice", || slack.delivered().len() == 2);
    assert!(
        slack.delivered()[1].body["text"]
            .as_str()
            .unwrap()
            .contains("succeed again")
    );
}

#[test]
fn a_failing_alert_notice_says_its_reason_once() {
    let es = EsStandIn::start();
    es.set_default(Reply::error(
        400,
        "parsing_exception",
        "unknown query [mtach]",
    ));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("bad", &windowed("1s", json!({})));
    let d = Daemon::start(p.path(), &["--error-alert-after", "2"], &[]);
    d.wait_line(T, "failing notice", |l| {
        has(l, "event", "notice") && l["subject"].contains("is failing")
    });
    let posts = slack.delivered();
    let text = posts[0].body["text"].as_str().unwrap();
    // Slack's text is "subject: message": the reason follows once.
    assert!(
        text.starts_with("esalert: alert bad is failing: search failed: HTTP 400"),
        "{text}"
    );
    assert_eq!(text.matches("is failing").count(), 1, "{text}");
}

/// `n` alerts on a 1s schedule that never match: only their failures speak.
fn quiet_alerts(p: &Project, n: usize) {
    for i in 0..n {
        p.alert(
            &format!("a{i}"),
            &windowed("1s", json!({"condition": {"never": {}}})),
        );
    }
}
