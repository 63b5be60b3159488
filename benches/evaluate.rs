//! The evaluation pipeline on recorded responses: parse the response,
//! evaluate the condition, render subject and message (all flavours).
//!
//! `cargo bench --bench evaluate` prints criterion's timings, and before
//! them the allocations per evaluation, counted by the global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use esalert::alert::{Alert, parse_alert};
use esalert::condition::ScriptEngine;
use esalert::engine;
use serde_json::{Value, json};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn envelope(total: u64, hits: Vec<Value>, aggs: Value) -> Value {
    json!({"took": 12, "timed_out": false,
        "_shards": {"total": 6, "successful": 6, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "max_score": null, "hits": hits},
        "aggregations": aggs})
}

/// About 1 KB: one terms aggregation.
fn small() -> Vec<u8> {
    let buckets: Vec<Value> = [
        "Administrator",
        "svc_backup",
        "da_jsmith",
        "admin",
        "root_ops",
        "sql_svc",
        "svc_deploy",
        "helpdesk_adm",
        "exchange_adm",
        "backup_op",
        "sccm_push",
        "veeam_svc",
    ]
    .iter()
    .enumerate()
    .map(|(i, k)| json!({"key": k, "doc_count": 20 - i}))
    .collect();
    serde_json::to_vec(&envelope(45, vec![], json!({"users": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": buckets}}))).unwrap()
}

/// About 1 MB: 1,000 hits with `_source` documents.
fn big() -> Vec<u8> {
    let hits: Vec<Value> = (0..1000)
        .map(|i| {
            json!({"_index": "winlogbeat-2026.11.21", "_id": format!("doc-{i:06}"), "_score": 1.0,
                "_source": {"@timestamp": "2026-11-21T20:41:00.123Z", "event": {"code": "4624", "action": "logged-in", "outcome": "success"},
                    "host": {"name": format!("dc-{:02}.corp.example.com", i % 17), "ip": ["10.20.4.17"]},
                    "winlog": {"event_data": {"TargetUserName": format!("user{i}"), "LogonType": "3", "IpAddress": "203.0.113.45",
                        "WorkstationName": "WS-0042", "AuthenticationPackageName": "NTLM"}},
                    "message": "An account was successfully logged on. ".repeat(14)}})
        })
        .collect();
    let v = serde_json::to_vec(&envelope(1000, hits, json!({}))).unwrap();
    assert!(
        v.len() > 900_000 && v.len() < 1_300_000,
        "{} bytes",
        v.len()
    );
    v
}

/// A 5,000-bucket terms aggregation.
fn buckets() -> Vec<u8> {
    let b: Vec<Value> = (0..5000)
        .map(|i| json!({"key": format!("service-{i:04}"), "doc_count": 1000 + i % 97, "errors": {"doc_count": i % 53}}))
        .collect();
    serde_json::to_vec(&envelope(
        5_000_000,
        vec![],
        json!({"services": {"buckets": b}}),
    ))
    .unwrap()
}

fn alert(name: &str, text: Value) -> Alert {
    parse_alert(
        name,
        std::path::Path::new("bench.json"),
        &text.to_string(),
        &ScriptEngine::default(),
    )
    .unwrap()
}

fn cases() -> Vec<(&'static str, Alert, Vec<u8>)> {
    vec![
        (
            "small_1kb",
            alert(
                "small",
                json!({"index": "a", "body": {}, "condition": {"compare": {"hits.total": {"gt": 0}}},
                "message": "{{ hits.total.value }} logons:\n{% for b in aggregations.users.buckets %}- {{ b.key }}: {{ b.doc_count }}\n{% endfor %}"}),
            ),
            small(),
        ),
        (
            "hits_1mb",
            alert(
                "big",
                json!({"index": "a", "body": {}, "condition": {"compare": {"hits.total.value": {"gte": 1000}}},
                "message": "{{ hits.total.value }} logons, first by {{ hits.hits[0]._source.winlog.event_data.TargetUserName }} on {{ hits.hits[0]._source.host.name }}"}),
            ),
            big(),
        ),
        (
            "buckets_5000",
            alert(
                "buckets",
                json!({"index": "a", "body": {}, "condition": {"array_compare": {"aggregations.services.buckets": {"path": "errors.doc_count", "gte": {"value": 50}}}},
                "message": "{% for b in aggregations.services.buckets if b.errors.doc_count >= 50 %}{{ b.key }} {{ b.errors.doc_count }}/{{ b.doc_count }}\n{% endfor %}"}),
            ),
            buckets(),
        ),
    ]
}

fn evaluate(a: &Alert, scripts: &ScriptEngine, bytes: &[u8]) -> engine::Evaluation {
    let v: std::sync::Arc<Value> =
        std::sync::Arc::new(esalert::search::parse::from_slice(bytes).unwrap());
    let now = chrono::Utc::now();
    let e = engine::evaluate_shared(a, scripts, &v, now, engine::default_window(a, now), false)
        .unwrap();
    assert!(e.matched);
    e
}

fn bench(c: &mut Criterion) {
    let scripts = ScriptEngine::default();
    for (name, a, bytes) in cases() {
        evaluate(&a, &scripts, &bytes);
        let (n0, b0) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        const N: u64 = 20;
        for _ in 0..N {
            std::hint::black_box(evaluate(&a, &scripts, &bytes));
        }
        let (n1, b1) = (
            ALLOCS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        println!(
            "allocations {name}: {} per evaluation, {} KiB allocated per evaluation, response {} bytes",
            (n1 - n0) / N,
            (b1 - b0) / N / 1024,
            bytes.len()
        );
        let mut g = c.benchmark_group("evaluate");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| b.iter(|| evaluate(&a, &scripts, &bytes)));
        g.finish();
    }
    // Each step alone, on the 1 MB case, to see which dominates.
    let (_, a, bytes) = cases().remove(1);
    let v: std::sync::Arc<Value> =
        std::sync::Arc::new(esalert::search::parse::from_slice(&bytes).unwrap());
    let now = chrono::Utc::now();
    let mut g = c.benchmark_group("steps_1mb");
    g.bench_function("parse", |b| {
        b.iter(|| esalert::search::parse::from_slice(&bytes).unwrap())
    });
    g.bench_function("condition", |b| {
        let cond = &a.native().unwrap().condition;
        b.iter(|| cond.evaluate(&scripts, &v).unwrap())
    });
    g.bench_function("evaluate_parsed", |b| {
        b.iter(|| {
            engine::evaluate_shared(
                &a,
                &scripts,
                &v,
                now,
                engine::default_window(&a, now),
                false,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3)).warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
