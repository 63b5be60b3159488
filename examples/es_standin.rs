//! A minimal Elasticsearch stand-in for the load benchmark, in its own
//! process so that its CPU isn't counted as esalert's.
//!
//! `es_standin [--latency-ms N]` prints `PORT <port>` once listening, answers
//! every `_search` with a small recorded response after the latency, and
//! reports `{"requests", "connections"}` on `GET /_stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;

const RESPONSE: &str = r#"{"took":3,"timed_out":false,"_shards":{"total":6,"successful":6,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]},"aggregations":{"users":{"doc_count_error_upper_bound":0,"sum_other_doc_count":0,"buckets":[{"key":"Administrator","doc_count":0},{"key":"svc_backup","doc_count":0},{"key":"da_jsmith","doc_count":0}]}}}"#;

fn main() {
    let mut latency = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--latency-ms" {
            latency = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--latency-ms N");
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        let (r, c) = (requests.clone(), connections.clone());
        let app = axum::Router::new()
            .route(
                "/_stats",
                axum::routing::get(move || {
                    let (r, c) = (r.clone(), c.clone());
                    async move {
                        format!(
                            "{{\"requests\":{},\"connections\":{}}}",
                            r.load(Ordering::Relaxed),
                            c.load(Ordering::Relaxed)
                        )
                    }
                }),
            )
            .fallback(move || {
                let r = requests.clone();
                async move {
                    if latency > 0 {
                        tokio::time::sleep(Duration::from_millis(latency)).await;
                    }
                    r.fetch_add(1, Ordering::Relaxed);
                    ([("content-type", "application/json")], RESPONSE)
                }
            });
        let listener = listener.tap_io(move |_| {
            connections.fetch_add(1, Ordering::Relaxed);
        });
        axum::serve(listener, app).await.expect("serve");
    });
}
