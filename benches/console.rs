//! The console's Alerts page with 10,000 alerts, server side: classify
//! every rule (for the counts and the filter), build the page's rows from
//! the state, render the HTML. The target is 200 ms (issue 18).
//!
//! `cargo bench --bench console`.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use esalert::alert::parse_alert;
use esalert::condition::ScriptEngine;
use esalert::console::alerts::{ListQuery, listing, render};
use esalert::console::{Console, Paths, Snapshot};
use esalert::daemon::Metrics;
use esalert::throttle::{MemoryState, StateBackend};

const ALERTS: usize = 10_000;

fn console(dir: &std::path::Path) -> Console {
    let scripts = Arc::new(ScriptEngine::default());
    let state: Arc<dyn StateBackend> = Arc::new(MemoryState::new());
    let now = Utc::now();
    let mut alerts = BTreeMap::new();
    for i in 0..ALERTS {
        let name = format!("alert_{i:05}");
        let text = serde_json::json!({"index": "logs-*", "body": {"query": {"match_all": {}}},
            "schedule": if i % 3 == 0 { "0 */5 * * * *" } else { "1m" },
            "throttle_period": "15m", "message": "{{ hits.total.value }} hits"})
        .to_string();
        let rule =
            parse_alert(&name, &dir.join(format!("{name}.json")), &text, &scripts).expect("alert");
        // A tenth fired and are throttled, a hundredth fail.
        state.update_rule(&name, |st| {
            st.last_run = Some(now);
            st.last_outcome = Some(
                match i % 100 {
                    0 => "error",
                    n if n % 10 == 1 => "fired",
                    _ => "no_match",
                }
                .to_owned(),
            );
            if i % 10 == 1 {
                let k = st.keys.entry(String::new()).or_default();
                k.throttled_until
                    .insert(String::new(), now + chrono::Duration::minutes(15));
                k.firing_since = Some(now);
            }
            if i % 100 == 0 {
                st.consecutive_failures = 3;
            }
        });
        alerts.insert(name, Arc::new(rule));
    }
    let c = Console::new(
        Paths {
            queries: dir.to_owned(),
            credentials: dir.join("credentials.json"),
            state: dir.join("throttle_period.json"),
            log_dir: dir.to_owned(),
        },
        &serde_json::from_value(
            serde_json::json!({"elasticsearch": {"url": "http://127.0.0.1:9"}}),
        )
        .expect("credentials"),
        Arc::new(Metrics::default()),
        state,
        scripts,
        None,
    )
    .expect("console");
    c.publish(Snapshot {
        alerts,
        rejected: BTreeMap::new(),
    });
    c
}

fn bench(cr: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = console(dir.path());
    let mut g = cr.benchmark_group("console_alerts_page_10k");
    for (label, q) in [
        ("first_page", ListQuery::default()),
        (
            "filtered_throttled",
            ListQuery {
                state: Some("throttled".into()),
                ..Default::default()
            },
        ),
        (
            "page_50",
            ListQuery {
                page: Some(50),
                ..Default::default()
            },
        ),
    ] {
        let html = render(&listing(&c, &q, Utc::now()), &q);
        assert!(html.contains("alert_"), "{label}: no rows");
        g.bench_function(label, |b| {
            b.iter(|| render(&listing(&c, &q, Utc::now()), &q).len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
