//! Scheduling under load and after suspension, through the real daemon:
//! no missed ticks, no doubled ticks, no drift, no catch-up storm.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use support::daemon::{Daemon, has};
use support::{EsStandIn, Project, Reply};

fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

fn project(es: &EsStandIn, n: usize) -> Project {
    let p = Project::new();
    let creds = json!({"elasticsearch": {"url": es.url, "timeout": "5s"},
        "slack": {"webhook_url": "https://hooks.slack.com/services/T/B/X"}});
    std::fs::write(p.path().join("credentials.json"), creds.to_string()).unwrap();
    for i in 0..n {
        p.alert(
            &format!("soak_{i:03}"),
            &json!({"index": format!("soak-{i:03}"), "body": {}, "schedule": "1s",
                    "condition": {"never": {}}, "message": "m"})
            .to_string(),
        );
    }
    p
}

#[test]
fn soak_many_alerts_every_second_for_a_minute() {
    const ALERTS: usize = 100;
    const SECONDS: u64 = 60;
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let p = project(&es, ALERTS);
    let mut d = Daemon::start(p.path(), &[], &[]);
    d.wait_line(Duration::from_secs(15), "start", |l| {
        has(l, "event", "started")
    });
    // Measure between two half-second marks, far from the due instants.
    let now = secs(SystemTime::now());
    let from = now.floor() + 2.5;
    let to = from + SECONDS as f64;
    std::thread::sleep(Duration::from_secs_f64(to - now + 1.0));
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(30)).success());

    let mut per_alert: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in es.searches() {
        let t = secs(r.at);
        if t >= from && t < to {
            per_alert.entry(r.path.clone()).or_default().push(t);
        }
    }
    assert_eq!(per_alert.len(), ALERTS, "every alert ran");
    let mut worst_lag: f64 = 0.0;
    for (alert, times) in &per_alert {
        // Exactly one run per second boundary in the window: none missed, none doubled.
        assert_eq!(
            times.len() as u64,
            SECONDS,
            "{alert}: {} runs in {SECONDS}s",
            times.len()
        );
        let mut seconds: Vec<i64> = times.iter().map(|t| t.floor() as i64).collect();
        seconds.dedup();
        assert_eq!(
            seconds.len() as u64,
            SECONDS,
            "{alert}: two runs in one second"
        );
        for t in times {
            worst_lag = worst_lag.max(t - t.floor());
        }
    }
    // No drift: runs stay right after the second boundary for the whole minute.
    assert!(
        worst_lag < 0.5,
        "a run started {worst_lag:.3}s after its due time"
    );
    assert!(
        !d.lines()
            .iter()
            .any(|l| has(l, "outcome", "skipped") || has(l, "outcome", "error"))
    );
    eprintln!(
        "soak: {ALERTS} alerts x {SECONDS}s, worst start lag {:.1} ms",
        worst_lag * 1000.0
    );
}

#[test]
fn missed_ticks_after_suspension_run_once() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let p = project(&es, 1);
    let mut d = Daemon::start(p.path(), &[], &[]);
    d.wait_line(Duration::from_secs(15), "start", |l| {
        has(l, "event", "started")
    });
    std::thread::sleep(Duration::from_millis(2500));
    d.signal(libc::SIGSTOP);
    let stopped = secs(SystemTime::now());
    std::thread::sleep(Duration::from_secs(5));
    let resumed = secs(SystemTime::now());
    d.signal(libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(3));
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(Duration::from_secs(15)).success());
    let times: Vec<f64> = es.searches().iter().map(|r| secs(r.at)).collect();
    let during = times
        .iter()
        .filter(|t| **t > stopped + 0.2 && **t < resumed)
        .count();
    assert_eq!(during, 0, "ran while stopped?");
    let after = times
        .iter()
        .filter(|t| **t >= resumed && **t < resumed + 3.0)
        .count();
    // One catch-up run for the five missed ticks, then one per second.
    assert!(
        (3..=4).contains(&after),
        "{after} runs in the 3 s after waking: {times:?}"
    );
    let burst = times
        .iter()
        .filter(|t| **t >= resumed && **t < resumed + 0.5)
        .count();
    assert!(
        burst <= 2,
        "catch-up storm: {burst} runs right after waking"
    );
}
