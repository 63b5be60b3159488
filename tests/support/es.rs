//! The Elasticsearch stand-in.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde_json::{Value, json};

/// One canned answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Duration,
    pub content_type: &'static str,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            delay: Duration::ZERO,
            content_type: "application/json",
        }
    }

    pub fn with_delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    fn envelope(total: Value, extra: Value) -> Value {
        let mut v = json!({
            "took": 3, "timed_out": false,
            "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
            "hits": {"total": total, "max_score": null, "hits": []}
        });
        if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
            m.extend(e);
        }
        v
    }

    /// 7.x with `rest_total_hits_as_int`: `hits.total` is a number.
    pub fn total_v7(n: u64) -> Reply {
        Reply::json(200, Self::envelope(json!(n), json!({})))
    }

    /// 7.x/8.x default: `hits.total` is `{value, relation}`.
    pub fn total_v8(n: u64, relation: &str) -> Reply {
        Reply::json(
            200,
            Self::envelope(json!({"value": n, "relation": relation}), json!({})),
        )
    }

    /// A 200 answer with the given body merged over a valid envelope.
    pub fn with(total: u64, extra: Value) -> Reply {
        Reply::json(
            200,
            Self::envelope(json!({"value": total, "relation": "eq"}), extra),
        )
    }

    /// An error answer shaped as Elasticsearch sends them.
    pub fn error(status: u16, kind: &str, reason: &str) -> Reply {
        Reply::json(
            status,
            json!({"error": {"root_cause": [{"type": kind, "reason": reason}],
                   "type": kind, "reason": reason}, "status": status}),
        )
    }

    /// A misspelt query inside a `bool`, as OpenSearch 2.19 answers it: the
    /// parser's wrapper on top, the `parsing_exception` with its position
    /// in the body as the root cause.
    pub fn misspelt_query(query: &str, line: u64, col: u64) -> Reply {
        let root = json!({"type": "parsing_exception",
            "reason": format!("unknown query [{query}] did you mean [match]?"), "line": line, "col": col});
        Reply::json(
            400,
            json!({"error": {"root_cause": [root.clone()], "type": "x_content_parse_exception",
                   "reason": format!("[{line}:{col}] [bool] failed to parse field [filter]"),
                   "caused_by": root}, "status": 400}),
        )
    }

    /// Every shard refused the query (a bad date in a range, a script
    /// error): the outer type says little, the root cause says what.
    pub fn all_shards_failed(kind: &str, reason: &str) -> Reply {
        let cause = json!({"type": kind, "reason": reason});
        Reply::json(
            400,
            json!({"error": {"root_cause": [cause.clone()], "type": "search_phase_execution_exception",
                   "reason": "all shards failed", "phase": "query", "grouped": true,
                   "failed_shards": [{"shard": 0, "index": "logs", "node": "n1", "reason": cause.clone()}],
                   "caused_by": cause}, "status": 400}),
        )
    }

    /// A 401 as a secured cluster sends it.
    pub fn unauthorized() -> Reply {
        Reply::error(
            401,
            "security_exception",
            "missing authentication credentials for REST request [/logs-*/_search]",
        )
    }

    /// A 200 answer with failed shards.
    pub fn shard_failures(total_hits: u64) -> Reply {
        let mut v = Self::envelope(json!({"value": total_hits, "relation": "eq"}), json!({}));
        v["_shards"] = json!({"total": 5, "successful": 3, "skipped": 0, "failed": 2,
        "failures": [
            {"shard": 1, "index": "logs-2026.11.21", "node": "n1",
             "reason": {"type": "query_shard_exception", "reason": "No mapping found for [@timestamp] in order to sort on"}},
            {"shard": 3, "index": "logs-2026.11.20", "node": "n2",
             "reason": {"type": "node_disconnected_exception", "reason": "[n2] disconnected"}}
        ]});
        Reply::json(200, v)
    }

    /// A 200 answer where the search timed out on the cluster.
    pub fn timed_out(total_hits: u64) -> Reply {
        let mut v = Self::envelope(json!({"value": total_hits, "relation": "eq"}), json!({}));
        v["timed_out"] = json!(true);
        Reply::json(200, v)
    }

    /// A 200 answer that is not JSON (a proxy's HTML page).
    pub fn not_json() -> Reply {
        Reply {
            status: 200,
            body: "<html><body>Bad Gateway</body></html>".into(),
            delay: Duration::ZERO,
            content_type: "text/html",
        }
    }

    /// A 200 answer cut off half-way.
    pub fn truncated() -> Reply {
        let full = Self::envelope(json!({"value": 1, "relation": "eq"}), json!({})).to_string();
        Reply {
            status: 200,
            body: full[..full.len() / 2].to_owned(),
            delay: Duration::ZERO,
            content_type: "application/json",
        }
    }
}

/// A request the stand-in received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: String,
    pub at: std::time::SystemTime,
}

/// Answers a request from what it asks (its body's time range, say), or
/// passes it on to the queue and the default.
type Responder = Arc<dyn Fn(&Recorded) -> Option<Reply> + Send + Sync>;

#[derive(Default)]
struct State {
    in_flight: usize,
    max_in_flight: usize,
    queue: VecDeque<Reply>,
    default: Option<Reply>,
    responder: Option<Responder>,
    requests: Vec<Recorded>,
    connections: usize,
    /// `_msearch` requests received (their searches are in `requests`).
    msearches: usize,
}

/// An axum app served on its own thread and runtime. Dropping it stops it.
pub struct Server {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Serves `app()` on 127.0.0.1:`port` (0 for any); `on_accept` runs for
    /// every new TCP connection.
    pub fn start_counting(
        port: u16,
        app: impl FnOnce() -> axum::Router + Send + 'static,
        on_accept: impl Fn() + Send + Sync + 'static,
    ) -> Server {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ptx, prx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => l,
                    Err(e) => {
                        ptx.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                ptx.send(Ok(listener.local_addr().unwrap().port())).unwrap();
                let listener = listener.tap_io(move |_| on_accept());
                axum::serve(listener, app())
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let port = prx.recv().expect("server port").expect("bind server");
        Server {
            port,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    /// Serves `app()` without counting connections.
    pub fn start(port: u16, app: impl FnOnce() -> axum::Router + Send + 'static) -> Server {
        Self::start_counting(port, app, || {})
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Elasticsearch stand-in. Dropping it stops the server.
pub struct EsStandIn {
    pub url: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: Server,
}

/// The reply for one request: the responder's, `/`'s, the queue's or the
/// default, recording the request.
fn reply_for(s: &mut State, recorded: Recorded, method: &Method, path: &str) -> Option<Reply> {
    let answered =
        filters_agg(s, &recorded).or_else(|| s.responder.clone().and_then(|r| r(&recorded)));
    s.requests.push(recorded);
    if let Some(r) = answered {
        Some(r)
    } else if *method == Method::GET && path == "/" {
        Some(Reply::json(
            200,
            json!({"name": "standin", "cluster_name": "esalert-test",
                   "version": {"number": "8.15.0", "distribution": "elasticsearch"},
                   "tagline": "You Know, for Search"}),
        ))
    } else {
        s.queue.pop_front().or_else(|| s.default.clone())
    }
}

/// A search with a `filters` aggregation (a fold of alerts' counts): each
/// filter is answered as a search of its own with that query (by the
/// responder, else the default), its `hits.total` the bucket's count. A
/// filter answered with an error fails the whole search, as a bad query
/// does on Elasticsearch; a partial answer makes it partial.
/// Recognised by `track_total_hits: false`, which folds always set.
fn filters_agg(s: &State, recorded: &Recorded) -> Option<Reply> {
    // Only esalert's folds (no total asked for): other clients' `filters`
    // aggregations (ElastAlert's percentage_match) go to the responder.
    if recorded.body.get("track_total_hits") != Some(&Value::Bool(false)) {
        return None;
    }
    let aggs = recorded
        .body
        .get("aggs")
        .or(recorded.body.get("aggregations"))?
        .as_object()?;
    let (name, agg) = aggs.iter().next()?;
    let filters = agg.get("filters")?.get("filters")?.as_object()?;
    let mut buckets = serde_json::Map::new();
    let mut extra = json!({});
    for (k, q) in filters {
        let one = Recorded {
            body: json!({"query": q}),
            raw: json!({"query": q}).to_string(),
            ..recorded.clone()
        };
        let reply = s
            .responder
            .clone()
            .and_then(|r| r(&one))
            .or_else(|| s.default.clone())?;
        if reply.status >= 400 {
            return Some(reply);
        }
        let v: Value = serde_json::from_str(&reply.body).ok()?;
        let t = &v["hits"]["total"];
        let n = t.as_u64().or(t["value"].as_u64()).unwrap_or(0);
        buckets.insert(k.clone(), json!({"doc_count": n}));
        if v["_shards"]["failed"].as_u64().unwrap_or(0) > 0 {
            extra["_shards"] = v["_shards"].clone();
        }
        if v["timed_out"] == json!(true) {
            extra["timed_out"] = json!(true);
        }
    }
    extra["aggregations"] = json!({name: {"buckets": buckets}});
    // `track_total_hits: false`: no total.
    Some(Reply::json(200, Reply::envelope(Value::Null, extra)))
}

/// `_msearch`: each search is answered (and recorded) as if it had come
/// alone to `/<index>/_search`; a reply that is not JSON breaks the whole
/// answer, as a broken connection would.
fn msearch(s: &mut State, headers: &HeaderMap, body: &[u8]) -> Reply {
    s.msearches += 1;
    let text = String::from_utf8_lossy(body);
    // The responder may answer the whole request (a failure of it all).
    let whole = Recorded {
        method: "POST".into(),
        path: "/_msearch".into(),
        headers: headers.clone(),
        body: Value::Null,
        raw: text.clone().into_owned(),
        at: std::time::SystemTime::now(),
    };
    if let Some(r) = s.responder.clone().and_then(|f| f(&whole)) {
        return r;
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut items = Vec::new();
    let mut delay = Duration::ZERO;
    for pair in lines.chunks(2) {
        let header: Value = serde_json::from_str(pair[0]).unwrap_or(Value::Null);
        let raw = pair.get(1).copied().unwrap_or("{}");
        let index = header["index"].as_str().unwrap_or("_all");
        let path = format!("/{index}/_search");
        let recorded = Recorded {
            method: "POST".into(),
            path: path.clone(),
            headers: headers.clone(),
            body: serde_json::from_str(raw).unwrap_or(Value::Null),
            raw: raw.to_owned(),
            at: std::time::SystemTime::now(),
        };
        let reply = reply_for(s, recorded, &Method::POST, &path)
            .unwrap_or_else(|| Reply::error(500, "standin", "no reply queued"));
        delay = delay.max(reply.delay);
        // As Elasticsearch: every body is parsed before any runs, and one
        // that does not parse fails the whole request.
        if reply.status == 400 && reply.body.contains("x_content_parse_exception") {
            return reply;
        }
        match serde_json::from_str::<Value>(&reply.body) {
            Ok(Value::Object(mut m)) => {
                m.insert("status".into(), json!(reply.status));
                items.push(Value::Object(m));
            }
            _ => return reply,
        }
    }
    Reply::json(200, json!({"took": 1, "responses": items})).with_delay(delay)
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = if uri.path().ends_with("/_msearch") {
        let mut s = state.lock().unwrap();
        Some(msearch(&mut s, &headers, &body))
    } else {
        let mut s = state.lock().unwrap();
        let recorded = Recorded {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            raw: String::from_utf8_lossy(&body).into_owned(),
            at: std::time::SystemTime::now(),
        };
        reply_for(&mut s, recorded, &method, uri.path())
    };
    let reply = reply.unwrap_or_else(|| Reply::error(500, "standin", "no reply queued"));
    {
        let mut s = state.lock().unwrap();
        s.in_flight += 1;
        s.max_in_flight = s.max_in_flight.max(s.in_flight);
    }
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    state.lock().unwrap().in_flight -= 1;
    (
        StatusCode::from_u16(reply.status).unwrap(),
        [("content-type", reply.content_type)],
        reply.body,
    )
        .into_response()
}

impl EsStandIn {
    /// Starts on a free port of 127.0.0.1.
    pub fn start() -> EsStandIn {
        Self::start_on(0)
    }

    /// Starts on a given port (0 for any), e.g. to restart after [`stop`].
    pub fn start_on(port: u16) -> EsStandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let counted = state.clone();
        let server = Server::start_counting(
            port,
            move || axum::Router::new().fallback(move |m, u, h, b| handle(st.clone(), m, u, h, b)),
            move || counted.lock().unwrap().connections += 1,
        );
        EsStandIn {
            url: format!("http://127.0.0.1:{}", server.port),
            port: server.port,
            state,
            server,
        }
    }

    /// Queues a reply for the next search (before the default).
    pub fn push(&self, r: Reply) {
        self.state.lock().unwrap().queue.push_back(r);
    }

    /// Answers each request `f` has an answer for (e.g. by the time range
    /// its body searches), before the queue and the default.
    pub fn respond_with(&self, f: impl Fn(&Recorded) -> Option<Reply> + Send + Sync + 'static) {
        self.state.lock().unwrap().responder = Some(Arc::new(f));
    }

    /// The reply when nothing is queued.
    pub fn set_default(&self, r: Reply) {
        self.state.lock().unwrap().default = Some(r);
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Requests to `_search` only.
    pub fn searches(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.contains("/_search"))
            .collect()
    }

    /// The most searches that were in progress at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// `_msearch` requests received so far.
    pub fn msearches(&self) -> usize {
        self.state.lock().unwrap().msearches
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    /// Stops the server and waits for it.
    pub fn stop(&mut self) {
        self.server.stop();
    }
}
