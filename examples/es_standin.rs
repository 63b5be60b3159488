//! A minimal Elasticsearch stand-in for the load and side-by-side
//! benchmarks, in its own process so that its CPU isn't counted as the
//! alerting tool's.
//!
//! `es_standin [--latency-ms N] [--total N] [--slack-rate R] [--response FILE]`
//! prints `PORT <port>` and `STATS <port>` once listening. On PORT it
//! answers every `_search` with a recorded response (with `hits.total` N,
//! or the contents of FILE) after the latency, every `_msearch` with one
//! such response per search, `GET /` with a version (as ElastAlert asks),
//! requests on ElastAlert's writeback index (`/elastalert*`) with an empty
//! search answer or `created`, accepts Slack webhook posts on
//! `/hooks/...` at most R a second (429 with `Retry-After: 1` above that),
//! and reports `{"requests", "searches", "msearches", "writeback",
//! "connections", "slack", "slack_429", "pass_start_ms", "last_search_ms"}`
//! on `GET /_stats` (the last two: Unix milliseconds of the first search
//! after five seconds without any, and of the latest). The STATS port
//! serves the same `/_stats` on connections that are not counted, so a
//! benchmark can poll without changing the connection count it reports.
//!
//! `requests` counts every request on PORT except `/_stats` and webhook
//! posts; `searches` counts searches outside the writeback index, each
//! search of an `_msearch` once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::serve::ListenerExt;

const RESPONSE: &str = r#"{"took":3,"timed_out":false,"_shards":{"total":6,"successful":6,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]},"aggregations":{"users":{"doc_count_error_upper_bound":0,"sum_other_doc_count":0,"buckets":[{"key":"Administrator","doc_count":0},{"key":"svc_backup","doc_count":0},{"key":"da_jsmith","doc_count":0}]}}}"#;

const INFO: &str = r#"{"name":"es-standin","cluster_name":"standin","version":{"number":"8.15.0","build_flavor":"default","lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;

const EMPTY: &str = r#"{"took":1,"timed_out":false,"_shards":{"total":1,"successful":1,"skipped":0,"failed":0},"hits":{"total":{"value":0,"relation":"eq"},"max_score":null,"hits":[]}}"#;

const CREATED: &str = r#"{"_index":"elastalert_status","_id":"standin","_version":1,"result":"created","_shards":{"total":1,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1}"#;

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    searches: AtomicU64,
    msearches: AtomicU64,
    writeback: AtomicU64,
    connections: AtomicU64,
    slack: AtomicU64,
    slack_429: AtomicU64,
    /// Unix milliseconds of the latest search, and of the first one after
    /// five seconds without any: a pass's start and (so far) end.
    last_search_ms: AtomicU64,
    pass_start_ms: AtomicU64,
}

impl Counters {
    fn searched(&self, n: u64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_search_ms.swap(now, Ordering::Relaxed);
        if now.saturating_sub(last) > 5000 {
            self.pass_start_ms.store(now, Ordering::Relaxed);
        }
        self.searches.fetch_add(n, Ordering::Relaxed);
    }

    fn json(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{{\"requests\":{},\"searches\":{},\"msearches\":{},\"writeback\":{},\"connections\":{},\"slack\":{},\"slack_429\":{},\"pass_start_ms\":{},\"last_search_ms\":{}}}",
            g(&self.requests),
            g(&self.searches),
            g(&self.msearches),
            g(&self.writeback),
            g(&self.connections),
            g(&self.slack),
            g(&self.slack_429),
            g(&self.pass_start_ms),
            g(&self.last_search_ms)
        )
    }
}

/// The `_msearch` answer for `n` searches: the response `n` times, each
/// with `"status":200`.
fn msearch_answer(response: &str, n: usize) -> String {
    let item = format!("{{\"status\":200,{}", &response[1..]);
    let mut out = String::with_capacity(32 + n * (item.len() + 1));
    out.push_str("{\"took\":3,\"responses\":[");
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&item);
    }
    out.push_str("]}");
    out
}

fn main() {
    let mut latency = 0u64;
    let mut total = 0u64;
    let mut slack_rate = 1u64;
    let mut file = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().expect("a value");
        let num = || v.parse::<u64>().expect("a number");
        match a.as_str() {
            "--latency-ms" => latency = num(),
            "--total" => total = num(),
            "--slack-rate" => slack_rate = num(),
            "--response" => file = Some(v),
            other => panic!("unknown option {other}"),
        }
    }
    let response: Arc<str> = match file {
        Some(f) => std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .trim()
            .into(),
        None => RESPONSE
            .replace("\"value\":0", &format!("\"value\":{total}"))
            .into(),
    };
    assert!(
        response.starts_with('{'),
        "the response must be a JSON object"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let n = Arc::new(Counters::default());
        // (second, posts accepted in it)
        let window = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let stats_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("PORT {}", listener.local_addr().expect("addr").port());
        println!(
            "STATS {}",
            stats_listener.local_addr().expect("addr").port()
        );
        let stats = {
            let n = n.clone();
            axum::routing::get(move || {
                let n = n.clone();
                async move { n.json() }
            })
        };
        let hooks = {
            let (n, w) = (n.clone(), window.clone());
            axum::routing::post(move || {
                let (n, w) = (n.clone(), w.clone());
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
                        n.slack.fetch_add(1, Ordering::Relaxed);
                        (axum::http::StatusCode::OK, [("retry-after", "0")], "ok")
                    } else {
                        n.slack_429.fetch_add(1, Ordering::Relaxed);
                        (
                            axum::http::StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            "rate_limited",
                        )
                    }
                }
            })
        };
        let cluster = {
            let n = n.clone();
            move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let (n, response) = (n.clone(), response.clone());
                async move {
                    n.requests.fetch_add(1, Ordering::Relaxed);
                    let path = uri.path();
                    let answer: String = if path.ends_with("/_msearch") {
                        // Header and body lines: two per search.
                        let lines = body
                            .split(|b| *b == b'\n')
                            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
                            .count();
                        let searches = lines / 2;
                        n.msearches.fetch_add(1, Ordering::Relaxed);
                        n.searched(searches as u64);
                        if latency > 0 {
                            tokio::time::sleep(Duration::from_millis(latency)).await;
                        }
                        msearch_answer(&response, searches)
                    } else if path.starts_with("/elastalert") {
                        // ElastAlert's writeback index: its status
                        // documents and the searches for them.
                        n.writeback.fetch_add(1, Ordering::Relaxed);
                        if path.ends_with("/_search") {
                            EMPTY.to_owned()
                        } else {
                            CREATED.to_owned()
                        }
                    } else if path.ends_with("/_search") {
                        n.searched(1);
                        if latency > 0 {
                            tokio::time::sleep(Duration::from_millis(latency)).await;
                        }
                        response.to_string()
                    } else if path == "/" {
                        INFO.to_owned()
                    } else {
                        // Index existence and the like: any 200 will do.
                        response.to_string()
                    };
                    ([("content-type", "application/json")], answer)
                }
            }
        };
        let app = axum::Router::new()
            .route("/_stats", stats.clone())
            .route("/hooks/{*rest}", hooks)
            .fallback(cluster);
        let stats_app = axum::Router::new().route("/_stats", stats);
        let counted = n.clone();
        let listener = listener.tap_io(move |_| {
            counted.connections.fetch_add(1, Ordering::Relaxed);
        });
        let stats_server = tokio::spawn(async move {
            axum::serve(stats_listener, stats_app)
                .await
                .expect("serve stats")
        });
        axum::serve(listener, app).await.expect("serve");
        let _ = stats_server.await;
    });
}
