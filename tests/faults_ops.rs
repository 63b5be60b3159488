//! Issue 12, operations: alerting goes on while deliveries hang, an
//! unwritable store sends nothing, a new alert's first window, a crash
//! after a failed delivery, and what `status` tells the person on call.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply, SlackReply, SlackStandIn, range, wait_until, windowed};

const T: Duration = support::WAIT;

fn time(s: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap()
}

/// `GET /healthz`: status code and body.
fn healthz(port: u16) -> (u16, String) {
    support::http_get(port, "/healthz")
}

fn store(dir: &Path, state: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(state)).unwrap()).unwrap()
}

// ---- item 1: a hung Slack never stalls alerting --------------------------

#[test]
fn hung_slack_never_stops_searches_and_healthz_reports_stuck_deliveries() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(1, "eq"));
    let peer = support::silent_peer();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(json!({"webhook_url": format!("{peer}/hooks/T/B/X"), "timeout": "1s"})),
        None,
    );
    let names = ["hung0", "hung1", "hung2", "hung3"];
    for n in names {
        p.alert(n, &windowed("1s", json!({"index": n})));
    }
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start(
        p.path(),
        &[
            "--listen",
            &listen,
            "--stuck-after",
            "2s",
            "--error-alert-after",
            "1000",
        ],
        &[],
    );
    wait_until("every alert searched", || {
        let s = es.searches();
        names
            .iter()
            .all(|n| s.iter().any(|r| r.path.starts_with(&format!("/{n}/"))))
    });
    let start = Instant::now();
    let before = es.searches().len();
    // Deliveries hang on the peer (each attempt until slack.timeout), yet
    // /healthz must say so once they are owed longer than --stuck-after.
    let mut unhealthy = None;
    while start.elapsed() < Duration::from_secs(8) {
        let (code, body) = healthz(port);
        if code == 503 && unhealthy.is_none() {
            unhealthy = Some(body);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let searches: Vec<_> = es.searches().into_iter().skip(before).collect();
    for n in names {
        let mine = searches
            .iter()
            .filter(|r| r.path.starts_with(&format!("/{n}/")))
            .count();
        assert!(
            mine >= 6,
            "{n} searched {mine} times in 8s while Slack hung; it must search every tick"
        );
    }
    let skipped = d
        .lines()
        .iter()
        .filter(|l| has(l, "outcome", "skipped"))
        .count();
    assert_eq!(skipped, 0, "ticks were skipped while deliveries hung");
    let body = unhealthy.expect("/healthz never turned 503 while deliveries were stuck");
    assert!(body.starts_with("deliveries_stuck:"), "{body}");
    assert!(!body.contains("stuck_deliveries=0"), "{body}");
    assert!(body.contains("owed for more than 2s"), "{body}");
    // The hung attempts end in errors the log shows, not in silence.
    d.wait_line(T, "a delivery timing out", |l| {
        has(l, "event", "delivery_retry") && l.get("alert").is_some_and(|a| a.starts_with("hung"))
    });
}

// ---- item 7: an unwritable store sends nothing ---------------------------

#[test]
fn deleted_state_directory_sends_nothing_until_the_store_is_written_again() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("guarded", &windowed("1s", json!({})));
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start(
        p.path(),
        &[
            "--state",
            "state/throttle_period.json",
            "--listen",
            &listen,
            "--error-alert-after",
            "1000",
        ],
        &[],
    );
    wait_until("a search and a healthy daemon", || {
        !es.searches().is_empty() && healthz(port).0 == 200
    });
    let state_dir = p.path().join("state");
    std::fs::remove_dir_all(&state_dir).unwrap();
    es.set_default(Reply::total_v8(3, "eq"));
    let failed = d.wait_line(T, "store_write_failed", |l| {
        has(l, "event", "store_write_failed")
    });
    assert_eq!(failed["level"], "ERROR", "{failed:?}");
    wait_until("/healthz 503", || healthz(port).0 == 503);
    let (_, body) = healthz(port);
    assert!(body.starts_with("store_write_failed"), "{body}");
    // Matches keep coming; none may be sent without its record.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        slack.all_posts().is_empty(),
        "posted while the store could not be written: {:?}",
        slack.all_posts()
    );
    std::fs::create_dir(&state_dir).unwrap();
    wait_until("the owed notification", || slack.delivered().len() == 1);
    // The store was written before the post, and the throttle holds after it.
    let st = store(p.path(), "state/throttle_period.json");
    assert_eq!(
        st["alerts"]["guarded"]["outbox"][0]["deliveries"]["slack"]["status"], "sent",
        "{st:#}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(slack.all_posts().len(), 1, "{:?}", slack.all_posts());
    wait_until("/healthz 200 again", || healthz(port).0 == 200);
    d.wait_line(T, "fired", |l| {
        has(l, "alert", "guarded") && has(l, "outcome", "fired")
    });
}

// ---- item 11: a new alert's first window ---------------------------------

#[test]
fn new_alert_whose_first_runs_fail_searches_from_its_first_due_tick() {
    let es = EsStandIn::start();
    // Each run tries a 503 three times; the first two runs fail.
    for _ in 0..6 {
        es.push(Reply::error(503, "unavailable", "cluster is starting"));
    }
    es.set_default(Reply::total_v8(0, "eq"));
    let p = Project::new();
    p.credentials(&es.url);
    p.alert("fresh", &windowed("1s", json!({})));
    let d = Daemon::start(p.path(), &["--error-alert-after", "1000"], &[]);
    wait_until("a successful search", || es.searches().len() >= 7);
    let s = es.searches();
    let (first_start, first_end) = range(&s[0]);
    assert_eq!(
        time(&first_end) - time(&first_start),
        chrono::Duration::seconds(1),
        "the first tick searches one period"
    );
    let (ok_start, ok_end) = range(&s[6]);
    assert_eq!(
        ok_start, first_start,
        "the first successful search starts at the first tick minus one period"
    );
    assert!(time(&ok_end) >= time(&first_end) + chrono::Duration::seconds(1));
    d.wait_line(T, "the failed runs", |l| {
        has(l, "alert", "fresh") && has(l, "outcome", "error")
    });
    // Retries of the search name their alert.
    let retry = d.wait_line(T, "search_retry", |l| has(l, "event", "search_retry"));
    assert_eq!(
        retry.get("alert").map(String::as_str),
        Some("fresh"),
        "{retry:?}"
    );
}

// ---- item 12: a failed delivery, then kill -9 ----------------------------

#[test]
fn kill_9_while_a_delivery_fails_delivers_once_after_restart_and_never_searches_the_window_again() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let slack = SlackStandIn::start();
    for _ in 0..500 {
        slack.push(SlackReply::ServerError);
    }
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("crashy", &windowed("1s", json!({})));
    let args = ["--error-alert-after", "1000"];
    let mut d = Daemon::start(p.path(), &args, &[]);
    // Killed while the first match's delivery is failing and being retried:
    // before the run could record anything after it.
    let start = Instant::now();
    while slack.all_posts().is_empty() {
        assert!(start.elapsed() < T, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(5));
    }
    d.signal(libc::SIGKILL);
    d.wait_exit(T);
    let matched = range(&es.searches()[0]);
    let st = store(p.path(), "throttle_period.json");
    let crashy = &st["alerts"]["crashy"];
    assert_eq!(
        crashy["outbox"][0]["deliveries"]["slack"]["status"], "pending",
        "{st:#}"
    );
    let saved_end = crashy["last_window_end"].as_str().unwrap().to_owned();
    assert!(
        time(&saved_end) >= time(&matched.1),
        "the matched window's end was written with the match: {saved_end} < {}",
        matched.1
    );

    slack.clear_queue();
    let before = es.searches().len();
    let d = Daemon::start(p.path(), &args, &[]);
    wait_until("the owed notification", || slack.delivered().len() == 1);
    let text = slack.delivered()[0].body["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        text.contains(&matched.0) && text.contains(&matched.1),
        "the notification of the window that matched ({matched:?}): {text}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(slack.delivered().len(), 1, "{:?}", slack.delivered());
    let after: Vec<_> = es.searches().into_iter().skip(before).collect();
    assert!(!after.is_empty());
    assert_eq!(
        time(&range(&after[0]).0),
        time(&saved_end),
        "resumes where it stopped"
    );
    for r in &after {
        let (gte, _) = range(r);
        assert!(
            time(&gte) >= time(&matched.1),
            "searched the notified window again: {gte} < {}",
            matched.1
        );
    }
    drop(d);
}

// ---- operations: status --------------------------------------------------

fn esalert(dir: &Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

#[test]
fn status_shows_rejected_files_next_runs_failures_and_last_errors_and_exits_1() {
    let es = EsStandIn::start();
    // The first search (alert `a_error`, runs are in name order) is refused.
    es.push(Reply::error(
        400,
        "parsing_exception",
        "unknown query [mtach]",
    ));
    es.set_default(Reply::total_v8(1, "eq"));
    let slack = SlackStandIn::start();
    let closed = support::free_port();
    let p = Project::new();
    p.credentials_with(
        &es.url,
        Some(slack.webhook_credentials()),
        Some(
            json!({"smtp_host": "127.0.0.1", "smtp_port": closed, "security": "none",
            "from": "esalert <alerts@example.com>", "to": ["soc@example.com"], "timeout": "2s"}),
        ),
    );
    let alert = |media: &str| {
        json!({"index": "logs", "schedule": "1m", "throttle_period": "1h", "body": {},
            "media": [media], "message": "{{ hits.total.value }} hits"})
        .to_string()
    };
    p.alert("a_error", &alert("slack"));
    p.alert("b_failed", &alert("email"));
    p.alert("c_good", &alert("slack"));
    esalert(p.path())
        .args(["once", "--concurrency", "1"])
        .assert()
        .failure();
    p.alert("d_broken", "{\"index\": \"logs\",\n  \"shedule\": \"1m\"}");

    let out = esalert(p.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = |n: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap_or_else(|| panic!("no row {n}: {rows:#}"))
            .clone()
    };
    let a = row("a_error");
    assert_eq!(a["last_outcome"], "error");
    assert_eq!(a["consecutive_failures"], 1);
    assert!(
        a["last_error"]
            .as_str()
            .unwrap()
            .contains("unknown query [mtach]"),
        "{a}"
    );
    let b = row("b_failed");
    assert_eq!(b["last_outcome"], "failed");
    assert_eq!(b["consecutive_failures"], 1);
    assert!(b["last_error"].as_str().unwrap().contains("email"), "{b}");
    let c = row("c_good");
    assert_eq!(c["last_outcome"], "fired");
    assert_eq!(c["consecutive_failures"], 0);
    assert!(c["last_error"].is_null(), "{c}");
    let next = time(c["next_run"].as_str().unwrap());
    let now = chrono::Utc::now();
    assert!(
        next > now && next <= now + chrono::Duration::minutes(1),
        "{c}"
    );
    let broken = row("d_broken");
    // Every problem of the file is listed (the missing `body` and
    // `message` too); the misspelt key at its line and column.
    let problems: Vec<&str> = broken["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    let at = format!(
        "{}:2:",
        Path::new("queries").join("d_broken.json").display()
    );
    assert!(
        problems.iter().any(|problem| {
            let col = problem.strip_prefix(&at).and_then(|r| r.split_once(": "));
            col.is_some_and(|(c, msg)| c.parse::<u32>().is_ok() && msg.contains("shedule"))
        }),
        "not path:line:col: message: {problems:?}"
    );
    assert!(problems.len() >= 3, "{problems:?}");

    let out = esalert(p.path()).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("NEXT RUN"),
        "{table}"
    );
    assert!(table.contains("Rejected files"), "{table}");
    for problem in &problems {
        assert!(table.contains(problem), "{table}");
    }
    assert!(
        table.contains("a_error: ") && table.contains("unknown query [mtach]"),
        "{table}"
    );

    // Only a healthy alert left (the others' files removed): exit 0.
    for n in ["a_error", "b_failed", "d_broken"] {
        std::fs::remove_file(p.queries().join(format!("{n}.json"))).unwrap();
    }
    esalert(p.path()).arg("status").assert().success();
}
