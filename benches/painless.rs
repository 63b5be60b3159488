//! A typical Watcher condition in esalert's Painless: a stream over the
//! 1,000 buckets of a terms aggregation (the budget: 50 µs).
//!
//! `cargo bench --bench painless`.

use criterion::{Criterion, criterion_group, criterion_main};
use esalert::condition::PainlessScript;
use serde_json::{Value, json};

fn payload(n: usize) -> Value {
    let buckets: Vec<Value> = (0..n)
        .map(|i| {
            json!({"key": format!("host-{i}"), "doc_count": 100 + i % 50,
                   "errors": {"doc_count": i % 7}, "avg_latency": {"value": i as f64 * 1.5}})
        })
        .collect();
    json!({"hits": {"total": 123456, "hits": []}, "aggregations": {"hosts": {"buckets": buckets}}})
}

fn bench(c: &mut Criterion) {
    let payload = payload(1000);
    let now = chrono::Utc::now();
    let condition = PainlessScript::compile(&json!({
        "source": "return ctx.payload.aggregations.hosts.buckets.stream().filter(b -> b.errors.doc_count * 100.0 / b.doc_count > params.pct).count() > 0;",
        "params": {"pct": 5}
    }))
    .unwrap();
    assert!(condition.condition(&payload, None, now).unwrap());
    c.bench_function(
        "painless condition: stream filter count, 1,000 buckets",
        |b| b.iter(|| condition.condition(&payload, None, now).unwrap()),
    );
    let any = PainlessScript::compile(&json!(
        "def hot = ctx.payload.aggregations.hosts.buckets.stream().filter(b -> b.avg_latency.value > 1400).map(b -> b.key).collect(Collectors.toList()); ctx.vars.hot = hot; return hot.size() > 0"
    ))
    .unwrap();
    assert!(any.condition(&payload, None, now).unwrap());
    c.bench_function(
        "painless condition: filter map collect into ctx.vars, 1,000 buckets",
        |b| b.iter(|| any.condition(&payload, None, now).unwrap()),
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
