//! A minimal Elasticsearch stand-in for the load benchmark, in its own
//! process so that its CPU isn't counted as esalert's.
//!
//! `es_standin [--latency-ms N] [--total N] [--slack-rate R]` prints
//! `PORT <port>` once listening, answers every `_search` with a small
//! recorded response (with `hits.total` N) after the latency, accepts Slack
//! webhook posts on `/hooks/...` at most R a second (429 with `Retry-After: 1`
//! above that), and reports `{"requests", "connections", "slack",
//! "slack_429"}` on `GET /_stats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;

const RESPONSE: &str = r#"{"took":3,"timed_out":false,"_shards":{"total":6,"successful":6,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]},"aggregations":{"users":{"doc_count_error_upper_bound":0,"sum_other_doc_count":0,"buckets":[{"key":"Administrator","doc_count":0},{"key":"svc_backup","doc_count":0},{"key":"da_jsmith","doc_count":0}]}}}"#;

fn main() {
    let mut latency = 0u64;
    let mut total = 0u64;
    let mut slack_rate = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v: u64 = args.next().and_then(|v| v.parse().ok()).expect("a number");
        match a.as_str() {
            "--latency-ms" => latency = v,
            "--total" => total = v,
            "--slack-rate" => slack_rate = v,
            other => panic!("unknown option {other}"),
        }
    }
    let response = RESPONSE.replace("\"value\":0", &format!("\"value\":{total}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let slack = Arc::new(AtomicU64::new(0));
        let slack_429 = Arc::new(AtomicU64::new(0));
        // (second, posts accepted in it)
        let window = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        let (r, c, sl, s4) = (
            requests.clone(),
            connections.clone(),
            slack.clone(),
            slack_429.clone(),
        );
        let (sl2, s42) = (slack.clone(), slack_429.clone());
        let app = axum::Router::new()
            .route(
                "/_stats",
                axum::routing::get(move || {
                    let (r, c, sl, s4) = (r.clone(), c.clone(), sl.clone(), s4.clone());
                    async move {
                        format!(
                            "{{\"requests\":{},\"connections\":{},\"slack\":{},\"slack_429\":{}}}",
                            r.load(Ordering::Relaxed),
                            c.load(Ordering::Relaxed),
                            sl.load(Ordering::Relaxed),
                            s4.load(Ordering::Relaxed)
                        )
                    }
                }),
            )
            .route(
                "/hooks/{*rest}",
                axum::routing::post(move || {
                    let (sl, s4, w) = (sl2.clone(), s42.clone(), window.clone());
                    async move {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .unwrap()
                            .as_secs();
                        let ok = {
                            let mut w = w.lock().unwrap();
                            if w.0 != now {
                                *w = (now, 0);
                            }
                            w.1 += 1;
                            w.1 <= slack_rate
                        };
                        if ok {
                            sl.fetch_add(1, Ordering::Relaxed);
                            (axum::http::StatusCode::OK, [("retry-after", "0")], "ok")
                        } else {
                            s4.fetch_add(1, Ordering::Relaxed);
                            (
                                axum::http::StatusCode::TOO_MANY_REQUESTS,
                                [("retry-after", "1")],
                                "rate_limited",
                            )
                        }
                    }
                }),
            )
            .fallback(move || {
                let r = requests.clone();
                let response = response.clone();
                async move {
                    if latency > 0 {
                        tokio::time::sleep(Duration::from_millis(latency)).await;
                    }
                    r.fetch_add(1, Ordering::Relaxed);
                    ([("content-type", "application/json")], response)
                }
            });
        let listener = listener.tap_io(move |_| {
            connections.fetch_add(1, Ordering::Relaxed);
        });
        axum::serve(listener, app).await.expect("serve");
    });
}
