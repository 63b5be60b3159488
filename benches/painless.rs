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

/// CPU time this thread has used: on a shared machine, wall time also
/// counts other processes' turns.
fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn cpu_per_run(f: impl Fn()) -> std::time::Duration {
    for _ in 0..200 {
        f();
    }
    let n = 3000;
    let t0 = thread_cpu();
    for _ in 0..n {
        f();
    }
    (thread_cpu() - t0) / n
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
    println!(
        "painless condition, stream over 1,000 buckets: {:?} CPU time per evaluation",
        cpu_per_run(|| {
            condition.condition(&payload, None, now).unwrap();
        })
    );
    c.bench_function(
        "painless condition: stream filter count, 1,000 buckets",
        |b| b.iter(|| condition.condition(&payload, None, now).unwrap()),
    );
    let hot = "def hot = ctx.payload.aggregations.hosts.buckets.stream().filter(b -> b.avg_latency.value > 1400).map(b -> b.key).collect(Collectors.toList());";
    let any = PainlessScript::compile(&json!(format!(
        "{hot} ctx.vars.hot = hot; return hot.size() > 0"
    )))
    .unwrap();
    assert!(any.condition(&payload, None, now).unwrap());
    // The same without the write: what copy-on-write should come near.
    let read_only =
        PainlessScript::compile(&json!(format!("{hot} return hot.size() > 0"))).unwrap();
    assert!(read_only.condition(&payload, None, now).unwrap());
    println!(
        "painless condition, filter map collect into ctx.vars: {:?} CPU time per evaluation (without the write: {:?})",
        cpu_per_run(|| {
            any.condition(&payload, None, now).unwrap();
        }),
        cpu_per_run(|| {
            read_only.condition(&payload, None, now).unwrap();
        })
    );
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
