//! The real reqwest client against the Elasticsearch stand-in: response
//! shapes, error answers, and what goes over the wire.

mod support;

use std::time::{Duration, Instant};

use chrono::TimeZone;
use esalert::alert::parse_alert;
use esalert::condition::{ScriptEngine, hits_total};
use esalert::config::EsConfig;
use esalert::engine;
use esalert::search::{EsClient, SearchError};
use serde_json::{Value, json};
use support::{Cluster, EsStandIn, Reply};

fn client(url: &str, extra: Value) -> EsClient {
    esalert::install_crypto_provider();
    let mut cfg = json!({"url": url, "username": "elastic", "password": "s3cret", "timeout": "1s"});
    if let (Value::Object(m), Value::Object(e)) = (&mut cfg, extra) {
        m.extend(e);
    }
    let cfg: EsConfig = serde_json::from_value(cfg).unwrap();
    EsClient::new(&cfg).unwrap()
}

fn idx(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn both_total_shapes_give_the_same_count() {
    let es = EsStandIn::start();
    let c = client(&es.url, json!({}));
    es.push(Reply::total_v7(42));
    es.push(Reply::total_v8(42, "eq"));
    es.push(Reply::total_v8(10000, "gte"));
    let a = c.search(&idx(&["logs-*"]), &json!({})).await.unwrap();
    let b = c.search(&idx(&["logs-*"]), &json!({})).await.unwrap();
    let gte = c.search(&idx(&["logs-*"]), &json!({})).await.unwrap();
    assert_eq!(hits_total(&a.response), 42);
    assert_eq!(hits_total(&b.response), 42);
    assert_eq!(hits_total(&gte.response), 10000);
    assert!(a.partial.is_none() && b.partial.is_none());
    // A count the cluster stopped at is said to be one.
    assert!(gte.partial.unwrap().contains("lower bound"));
}

#[tokio::test]
async fn request_has_path_auth_and_rendered_body() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(1, "eq"));
    let c = client(&es.url, json!({}));
    let alert = parse_alert(
        "wire",
        std::path::Path::new("wire.json"),
        r#"{"index": ["winlogbeat-*", "logs 2026/11"], "body": {"size": 0, "query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}}}, "message": "{{ hits.total.value }}"}"#,
        &ScriptEngine::default(),
    )
    .unwrap();
    let now = chrono::Utc
        .with_ymd_and_hms(2026, 11, 21, 20, 41, 0)
        .unwrap();
    let ev = engine::search_and_evaluate(
        &alert,
        &c,
        &ScriptEngine::default(),
        now,
        engine::default_window(&alert, now),
        false,
    )
    .await
    .unwrap();
    assert!(ev.matched);
    assert_eq!(ev.message.as_deref(), Some("1"));
    let reqs = es.searches();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/winlogbeat-*,logs%202026%2F11/_search");
    assert_eq!(
        r.headers["authorization"].to_str().unwrap(),
        "Basic ZWxhc3RpYzpzM2NyZXQ="
    );
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(
        r.body,
        json!({"size": 0, "query": {"range": {"@timestamp": {"gte": "2026-11-21T20:40:00.000Z", "lt": "2026-11-21T20:41:00.000Z"}}}})
    );
}

#[tokio::test]
async fn api_key_auth_wins_over_basic() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let c = client(&es.url, json!({"api_key": "aWQ6a2V5"}));
    c.search(&idx(&["a"]), &json!({})).await.unwrap();
    assert_eq!(
        es.searches()[0].headers["authorization"].to_str().unwrap(),
        "ApiKey aWQ6a2V5"
    );
    assert!(!format!("{c:?}").contains("aWQ6a2V5"), "api key in Debug");
}

#[tokio::test]
async fn error_answers_are_typed_with_elasticsearch_reasons() {
    let es = EsStandIn::start();
    // One try each, so each answer is seen as it is.
    let c = client(&es.url, json!({})).with_retry(1, Duration::from_millis(1));
    let q = idx(&["logs-*"]);

    es.push(Reply::error(
        400,
        "parsing_exception",
        "unknown query [mtach]",
    ));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(
        matches!(&e, SearchError::Request { status: 400, kind, reason } if kind == "parsing_exception" && reason == "unknown query [mtach]"),
        "{e}"
    );
    assert!(!e.is_transient());

    // As a real engine answers (tests/cluster.rs sees the same on OpenSearch):
    // the root cause and the position reach the message.
    es.push(Reply::misspelt_query("mtach", 1, 38));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "HTTP 400 from the cluster: x_content_parse_exception: [1:38] [bool] failed to parse field [filter]; \
         root cause: parsing_exception: unknown query [mtach] did you mean [match]? (line 1, column 38 of the search body as sent)"
    );
    es.push(Reply::all_shards_failed(
        "parse_exception",
        "failed to parse date field [2026-11-21T20:40:00.000Z] with format [dd/MM/yyyy]",
    ));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(
        matches!(&e, SearchError::Request { status: 400, kind, reason }
            if kind == "search_phase_execution_exception"
            && reason.ends_with("root cause: parse_exception: failed to parse date field [2026-11-21T20:40:00.000Z] with format [dd/MM/yyyy]")),
        "{e}"
    );
    assert!(!e.is_transient());

    es.push(Reply::unauthorized());
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::Auth { status: 401, .. }), "{e}");
    assert!(
        e.to_string().contains("check username/password or api_key"),
        "{e}"
    );
    assert!(!e.is_transient());

    es.push(Reply::error(
        403,
        "security_exception",
        "action [indices:data/read/search] is unauthorized",
    ));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::Auth { status: 403, .. }), "{e}");

    es.push(Reply::error(
        503,
        "cluster_block_exception",
        "blocked by: [SERVICE_UNAVAILABLE/1/state not recovered / initialized]",
    ));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(
        matches!(&e, SearchError::Server { status: 503, reason } if reason.contains("state not recovered")),
        "{e}"
    );
    assert!(e.is_transient());

    es.push(Reply::error(
        429,
        "es_rejected_execution_exception",
        "rejected execution",
    ));
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::TooManyRequests { .. }), "{e}");
    assert!(e.is_transient());

    es.push(Reply::not_json());
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(
        matches!(&e, SearchError::NotJson { status: 200, snippet, .. } if snippet.contains("Bad Gateway")),
        "{e}"
    );

    es.push(Reply::truncated());
    let e = c.search(&q, &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::NotJson { .. }), "{e}");
}

#[tokio::test]
async fn load_shedding_answers_are_retried_with_backoff_others_are_not() {
    let es = EsStandIn::start();
    let c = client(&es.url, json!({})).with_retry(3, Duration::from_millis(50));
    es.push(Reply::error(
        503,
        "unavailable_shards_exception",
        "primary shard is not active",
    ));
    es.push(Reply::error(
        429,
        "es_rejected_execution_exception",
        "rejected",
    ));
    es.push(Reply::total_v8(4, "eq"));
    let started = Instant::now();
    let r = c.search(&idx(&["a"]), &json!({})).await.unwrap();
    assert_eq!(hits_total(&r.response), 4);
    assert_eq!(es.searches().len(), 3);
    assert!(started.elapsed() >= Duration::from_millis(50), "no backoff");
    // Three 503s: the last error is returned.
    for _ in 0..3 {
        es.push(Reply::error(503, "x", "still down"));
    }
    let e = c.search(&idx(&["a"]), &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::Server { status: 503, .. }), "{e}");
    assert_eq!(es.searches().len(), 6);
    // A bad query or a 500 is not retried.
    es.push(Reply::error(400, "parsing_exception", "bad"));
    c.search(&idx(&["a"]), &json!({})).await.unwrap_err();
    es.push(Reply::error(500, "x", "bug"));
    c.search(&idx(&["a"]), &json!({})).await.unwrap_err();
    assert_eq!(es.searches().len(), 8);
}

#[tokio::test]
async fn partial_results_are_returned_with_a_reason() {
    let es = EsStandIn::start();
    let c = client(&es.url, json!({}));
    es.push(Reply::shard_failures(7));
    let r = c.search(&idx(&["logs-*"]), &json!({})).await.unwrap();
    assert_eq!(hits_total(&r.response), 7);
    let why = r.partial.unwrap();
    assert!(
        why.contains("2 of 5 shards failed") && why.contains("No mapping found"),
        "{why}"
    );
    es.push(Reply::timed_out(3));
    let r = c.search(&idx(&["logs-*"]), &json!({})).await.unwrap();
    assert!(r.partial.unwrap().contains("timed out"));
}

#[tokio::test]
async fn slow_answer_hits_the_timeout() {
    let es = EsStandIn::start();
    es.push(Reply::total_v8(1, "eq").with_delay(Duration::from_secs(3)));
    let c = client(&es.url, json!({"timeout": "500ms"}));
    let started = Instant::now();
    let e = c.search(&idx(&["a"]), &json!({})).await.unwrap_err();
    assert!(matches!(e, SearchError::Timeout { .. }), "{e}");
    assert!(e.is_transient());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connection_refused_tls_and_dns_failures() {
    let mut es = EsStandIn::start();
    let url = es.url.clone();
    let https = url.replace("http://", "https://");
    // TLS to a plain-HTTP server fails the handshake.
    let e = client(&https, json!({}))
        .search(&idx(&["a"]), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("ca_cert"), "{e}");
    es.stop();
    let e = client(&url, json!({}))
        .search(&idx(&["a"]), &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, SearchError::ConnectionRefused { .. }), "{e}");
    assert!(e.is_transient());
    let e = client(
        "http://esalert-no-such-host.invalid:9200",
        json!({"timeout": "5s"}),
    )
    .search(&idx(&["a"]), &json!({}))
    .await
    .unwrap_err();
    assert!(matches!(e, SearchError::Dns { .. }), "{e}");
}

#[tokio::test]
async fn connections_are_pooled() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let c = client(&es.url, json!({}));
    for _ in 0..5 {
        c.search(&idx(&["a"]), &json!({})).await.unwrap();
    }
    assert_eq!(es.searches().len(), 5);
    assert_eq!(
        es.connections(),
        1,
        "sequential searches should reuse one connection"
    );
}

/// Runs against `ESALERT_TEST_ES_URL` when set, else the stand-in.
#[tokio::test]
async fn cluster_agnostic_search() {
    let cluster = Cluster::start();
    let pw = std::env::var("ESALERT_TEST_ES_PASSWORD").unwrap_or_default();
    let c = client(&cluster.url(), json!({"password": pw, "timeout": "10s"}));
    let r = c
        .search(
            &idx(&["*"]),
            &json!({"size": 0, "query": {"match_all": {}}}),
        )
        .await
        .unwrap();
    assert!(r.response["hits"]["total"].is_object() || r.response["hits"]["total"].is_number());
    let _ = hits_total(&r.response);
}
