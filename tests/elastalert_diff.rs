//! The differential test: each scenario of tests/fixtures/elastalert/ is
//! run through ElastAlert 2 itself (tests/elastalert_driver.py, window by
//! window over the same range) and through `esalert test --since/--until`,
//! both against the same recorded documents served by the stand-in, and
//! the (window, query key) pairs that alert must be equal.
//!
//! Needs ElastAlert 2 (`pip install elastalert2 pytz`, as .ci/run does):
//! the interpreter is `ESALERT_ELASTALERT_PYTHON`, else `python3`. Without
//! it the tests return early, except under CI, where they fail.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;

use serde_json::Value;
use support::{EsStandIn, Project, docstore, esalert_in, repo};

const START: &str = "2026-01-01T00:00:00Z";
const END: &str = "2026-01-01T00:10:00Z";

fn python() -> String {
    std::env::var("ESALERT_ELASTALERT_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether ElastAlert 2 can run here; under CI it must.
fn available() -> bool {
    let ok = Command::new(python())
        .args(["-c", "import elastalert.elastalert, pytz"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !support::opensearch::in_ci(),
            "CI=true and ElastAlert 2 is not importable by {}; .ci/run installs it",
            python()
        );
        let _ = writeln!(
            std::io::stderr(),
            "\n*** tests/elastalert_diff.rs: ElastAlert 2 is not installed, NOT compared (pip install elastalert2 pytz, or set ESALERT_ELASTALERT_PYTHON) ***\n"
        );
    }
    ok
}

fn cluster() -> EsStandIn {
    let es = EsStandIn::start();
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/elastalert/series.json")).unwrap();
    let docs: Vec<Value> = serde_json::from_str(&text).unwrap();
    docstore::serve(&es, "logs-2026.01.01", docs);
    es
}

fn elastalert(es: &EsStandIn, rule: &str) -> BTreeSet<(String, String)> {
    let path = repo().join("tests/fixtures/elastalert").join(rule);
    let out = Command::new(python())
        .arg(repo().join("tests/elastalert_driver.py"))
        .args([&es.url, path.to_str().unwrap(), START, END])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; install ElastAlert 2 (see .ci/run)", python()));
    assert!(
        out.status.success(),
        "ElastAlert 2 failed on {rule} (install it with `pip install elastalert2`, see .ci/run):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a[0].as_str().unwrap().to_owned(),
                a[1].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn esalert(es: &EsStandIn, rule: &str) -> BTreeSet<(String, String)> {
    let p = Project::new();
    p.credentials(&es.url);
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/elastalert").join(rule)).unwrap();
    let name = rule.trim_end_matches(".yaml");
    std::fs::write(p.queries().join(rule), text).unwrap();
    let out = esalert_in(p.path(), "pw")
        .args(["test", name, "--since", START, "--until", END, "--json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let mut got = BTreeSet::new();
    for w in v["windows"].as_array().unwrap() {
        assert!(w.get("error").is_none(), "{w}");
        for n in w["notifications"].as_array().unwrap() {
            got.insert((
                w["window"]["end"].as_str().unwrap().to_owned(),
                n["key"].as_str().unwrap().to_owned(),
            ));
        }
    }
    got
}

#[test]
fn esalert_alerts_as_elastalert_2_does_on_every_scenario() {
    if !available() {
        return;
    }
    let es = cluster();
    let mut failures = Vec::new();
    let mut compared = 0;
    for rule in [
        "any_query_key.yaml",
        "frequency_query_key.yaml",
        "frequency_count.yaml",
        "blacklist.yaml",
        "whitelist.yaml",
        "change.yaml",
        "cardinality.yaml",
        "flatline.yaml",
        "frequency_terms.yaml",
        "any_realert.yaml",
        "spike.yaml",
        "spike_query_key.yaml",
        "metric_max.yaml",
        "metric_interval.yaml",
        "percentage.yaml",
        "percentage_host.yaml",
        "new_term.yaml",
        "any_exponential.yaml",
        "spike_aggregation.yaml",
        "spike_aggregation_cardinality.yaml",
    ] {
        let theirs = elastalert(&es, rule);
        let ours = esalert(&es, rule);
        compared += 1;
        eprintln!("{rule}: {theirs:?}");
        // Every scenario alerts at least once: equal sets are not empty ones.
        assert!(
            !theirs.is_empty(),
            "{rule}: ElastAlert 2 alerted on nothing"
        );
        if theirs != ours {
            failures.push(format!(
                "{rule}:\n  ElastAlert 2: {theirs:?}\n  esalert:      {ours:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(compared, 20);
}

/// The window ends of `pairs`, one run (a minute) later.
fn one_run_later(pairs: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(end, key)| {
            let t =
                chrono::DateTime::parse_from_rfc3339(end).unwrap() + chrono::Duration::minutes(1);
            (
                t.to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                key.clone(),
            )
        })
        .collect()
}

/// `aggregation`: the same matches are gathered and sent together, but
/// ElastAlert sends at the first run strictly after the aggregation's end
/// (`ts_now() > alert_time`: with runs on the minute, one run after it;
/// live, whichever run its clock jitter puts past it), esalert's digest at
/// the first run at or after its end. A deliberate difference of one run.
#[test]
fn aggregation_sends_what_elastalert_2_sends_one_run_earlier() {
    if !available() {
        return;
    }
    let es = cluster();
    let theirs = elastalert(&es, "any_aggregation.yaml");
    let ours = esalert(&es, "any_aggregation.yaml");
    assert!(!theirs.is_empty());
    assert_eq!(one_run_later(&ours), theirs);
}

/// What one side sent: (window end, subject, text), in order.
type Sent = Vec<(String, String, String)>;

fn elastalert_sent(es: &EsStandIn, rule: &str) -> Sent {
    let path = repo().join("tests/fixtures/elastalert").join(rule);
    let out = Command::new(python())
        .arg(repo().join("tests/elastalert_driver.py"))
        .args([&es.url, path.to_str().unwrap(), START, END])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["time"].as_str().unwrap().to_owned(),
                s["title"].as_str().unwrap().to_owned(),
                s["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// esalert's digests, one run later (when ElastAlert sends them).
fn esalert_digests(es: &EsStandIn, rule: &str) -> Sent {
    let p = Project::new();
    p.credentials(&es.url);
    let text =
        std::fs::read_to_string(repo().join("tests/fixtures/elastalert").join(rule)).unwrap();
    std::fs::write(p.queries().join(rule), text).unwrap();
    let out = esalert_in(p.path(), "pw")
        .args([
            "test",
            rule.trim_end_matches(".yaml"),
            "--since",
            START,
            "--until",
            END,
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let mut sent = Vec::new();
    let windows = v["windows"]
        .as_array()
        .unwrap_or_else(|| panic!("{rule}: {v}"));
    for w in windows {
        assert!(w.get("error").is_none(), "{w}");
        for n in w["notifications"].as_array().unwrap() {
            assert_eq!(n["kind"], "digest", "{rule}: only digests are sent: {n}");
            let end = w["window"]["end"].as_str().unwrap().to_owned();
            let later = one_run_later(&BTreeSet::from([(end, String::new())]));
            sent.push((
                later.into_iter().next().unwrap().0,
                n["subject"].as_str().unwrap().to_owned(),
                n["text"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    sent
}

/// `aggregation` with `aggregation_key`, a `schedule`, `query_key`,
/// `summary_table_fields` (ASCII and Markdown tables, `max_rows`, prefix
/// and suffix) and `aggregation_summary_only`: the same notifications, with
/// the same subject and text, one run apart.
#[test]
fn aggregations_send_what_elastalert_2_sends_word_for_word() {
    if !available() {
        return;
    }
    let es = cluster();
    let mut failures = Vec::new();
    for rule in [
        "aggregation_key.yaml",
        "aggregation_schedule.yaml",
        "aggregation_query_key.yaml",
    ] {
        let theirs = elastalert_sent(&es, rule);
        let mut ours = esalert_digests(&es, rule);
        // ElastAlert would send a digest that closes in the range's last
        // run one run later: after the range.
        let end = END.replace("00Z", "00.000Z");
        ours.retain(|(t, _, _)| *t <= end);
        assert!(!theirs.is_empty(), "{rule}: ElastAlert 2 sent nothing");
        eprintln!("{rule}: {} notifications", theirs.len());
        if theirs != ours {
            failures.push(format!(
                "{rule}:\n  ElastAlert 2: {theirs:#?}\n  esalert:      {ours:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
