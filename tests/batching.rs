//! Batching: alerts run together send their searches as one `_msearch`
//! request, and each alert gets exactly what a search of its own would have
//! given it — its hits, its error, its partial answer, a retry when the
//! cluster sheds its search — compared line by line with `--search-batch 1`.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use support::{EsStandIn, Project, Reply, SlackStandIn, esalert_in, log_lines};

const ALERTS: usize = 12;

/// A stand-in answering each alert's index: `idx-3` a bad query, `idx-5`
/// shed once (429) then answered, `idx-7` partial, the others `i` hits.
fn cluster() -> EsStandIn {
    let es = EsStandIn::start();
    let shed = Arc::new(AtomicUsize::new(0));
    es.respond_with(move |r| {
        let i: usize = r
            .path
            .strip_prefix("/idx-")?
            .split('/')
            .next()?
            .parse()
            .ok()?;
        Some(match i {
            3 => Reply::all_shards_failed("parse_exception", "failed to parse date field [yesterday]"),
            // A body the cluster can't parse fails the whole `_msearch`.
            9 => Reply::misspelt_query("mtach", 1, 38),
            5 if shed.fetch_add(1, Ordering::SeqCst) == 0 => {
                Reply::error(429, "es_rejected_execution_exception", "queue full")
            }
            7 => Reply::with(
                7,
                json!({"_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 1,
                    "failures": [{"shard": 1, "reason": {"type": "node_closed", "reason": "gone"}}]}}),
            ),
            i => Reply::total_v8(i as u64, "eq"),
        })
    });
    es
}

/// Runs every alert once with `--search-batch batch`; the outcome line of
/// each alert (without times) and the stand-in.
fn run(batch: &str, alerts: usize) -> (BTreeMap<String, BTreeMap<String, String>>, EsStandIn) {
    let es = cluster();
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for i in 0..alerts {
        p.alert(
            &format!("a{i:02}"),
            &json!({"index": format!("idx-{i}"), "body": {"query": {"match_all": {}}},
                "media": ["slack"], "message": "{{ hits.total.value }} hits"})
            .to_string(),
        );
    }
    let out = esalert_in(p.path(), "pw")
        .args(["once", "--search-batch", batch])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "idx-3 fails the run");
    let mut lines = BTreeMap::new();
    for mut l in log_lines(p.path()) {
        if l.get("alert").is_none_or(|a| !a.starts_with('a')) {
            continue;
        }
        // Times of the run (the two runs happen at different times).
        for k in ["ts", "took_ms", "window_start", "window_end"] {
            l.remove(k);
        }
        // The outcome line, and the partial-result line, of each alert.
        let key = match (l.get("outcome"), l.get("event")) {
            (Some(_), _) => l["alert"].clone(),
            (None, Some(e)) if e == "partial_result" => format!("{} partial", l["alert"]),
            _ => continue,
        };
        lines.insert(key, l);
    }
    (lines, es)
}

#[test]
fn alerts_run_together_share_one_msearch_and_each_gets_its_own_answer() {
    // a00..a08: no body the cluster can't parse.
    let (batched, es) = run("100", 9);
    assert_eq!(es.msearches(), 1, "one _msearch for 9 alerts");
    // The shed search was tried again on its own.
    let alone: Vec<_> = es
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/idx-5/_search"))
        .collect();
    assert_eq!(alone.len(), 2, "{alone:?}");
    assert_eq!(batched.len(), 9 + 1, "{batched:#?}");
    assert_eq!(batched["a00"]["outcome"], "no_match");
    assert_eq!(batched["a01"]["outcome"], "fired");
    assert_eq!(batched["a01"]["hits"], "1");
    assert_eq!(batched["a03"]["outcome"], "error");
    assert!(
        batched["a03"]["error"].contains("failed to parse date field [yesterday]"),
        "{:?}",
        batched["a03"]
    );
    assert_eq!(batched["a05"]["outcome"], "fired");
    assert_eq!(batched["a05"]["hits"], "5");
    assert_eq!(batched["a07"]["outcome"], "fired", "{:?}", batched["a07"]);
    assert!(
        batched["a07 partial"]["reason"].contains("1 of 2 shards failed"),
        "{:?}",
        batched["a07 partial"]
    );

    // Exactly what each alert gets when it searches alone.
    let (alone, es) = run("1", 9);
    assert_eq!(es.msearches(), 0);
    assert_eq!(batched, alone);
}

/// One body the cluster can't parse fails a whole `_msearch` (Elasticsearch
/// and OpenSearch parse them all first): each search is then sent alone,
/// and every alert still gets its own answer.
#[test]
fn a_body_that_does_not_parse_spoils_no_other_alert() {
    let (batched, es) = run("100", ALERTS);
    assert_eq!(es.msearches(), 1);
    assert_eq!(batched["a09"]["outcome"], "error");
    assert!(
        batched["a09"]["error"].contains("unknown query [mtach]"),
        "{:?}",
        batched["a09"]
    );
    assert_eq!(batched["a04"]["hits"], "4", "{:?}", batched["a04"]);
    let (alone, _) = run("1", ALERTS);
    assert_eq!(batched, alone);
}

/// A failure of the whole request is every alert's failure, and a
/// transient one.
#[test]
fn a_failed_msearch_fails_every_alert_in_it() {
    let es = EsStandIn::start();
    es.set_default(Reply::error(
        503,
        "unavailable_shards_exception",
        "primary shard is not active",
    ));
    es.respond_with(|r| {
        r.path
            .starts_with("/_msearch")
            .then(|| Reply::error(503, "cluster_block_exception", "blocked"))
    });
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for i in 0..3 {
        p.alert(
            &format!("a{i}"),
            &json!({"index": format!("idx-{i}"), "body": {}, "media": ["slack"], "message": "m"})
                .to_string(),
        );
    }
    esalert_in(p.path(), "pw").arg("once").assert().code(1);
    let errors: Vec<_> = log_lines(p.path())
        .into_iter()
        .filter(|l| l.get("outcome").is_some_and(|o| o == "error"))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    for e in &errors {
        assert!(e["error"].contains("HTTP 503"), "{e:?}");
    }
}

/// More alerts due at one tick than `--max-concurrency`: the batch takes
/// the slots, the alerts waiting in it hold none, and every alert runs.
#[test]
fn more_alerts_than_slots_all_run_in_batches() {
    use support::daemon::{Daemon, has};
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for i in 0..10 {
        p.alert(
            &format!("a{i}"),
            &json!({"index": format!("idx-{i}"), "body": {}, "schedule": "2s",
                "throttle_period": "1h", "media": ["slack"], "message": "m"})
            .to_string(),
        );
    }
    let d = Daemon::start(p.path(), &["--max-concurrency", "2"], &[]);
    let t = std::time::Duration::from_secs(20);
    for i in 0..10 {
        let name = format!("a{i}");
        d.wait_line(t, &name, |l| {
            has(l, "alert", &name) && has(l, "outcome", "fired")
        });
    }
    assert!(es.msearches() >= 1);
    assert!(es.max_in_flight() <= 2, "{}", es.max_in_flight());
}
