//! Folding: alerts due together whose hit count alone decides them are
//! counted by one search (a `filters` aggregation, one filter per alert);
//! only those whose count makes them match search again for their hits and
//! message. Every alert's outcome line and notification are compared with
//! `--max-fold 0 --search-batch 1` (each alert searching alone): first
//! against the stand-in (errors, caps, opt-outs, `--max-fold` splitting),
//! then with 200 alerts against the real OpenSearch node.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use support::es::Recorded;
use support::{EsStandIn, Project, Reply, SlackStandIn, esalert_in, log_lines};

/// Outcome lines by alert (and partial-result lines), without the fields
/// that say when and how fast, or whether the count was folded.
type Lines = BTreeMap<String, BTreeMap<String, String>>;

fn outcome_lines(p: &Project) -> Lines {
    let mut out = BTreeMap::new();
    for mut l in log_lines(p.path()) {
        let Some(alert) = l.get("alert").cloned() else {
            continue;
        };
        for k in ["ts", "took_ms", "window_start", "window_end", "folded"] {
            l.remove(k);
        }
        let key = match (l.get("outcome"), l.get("event")) {
            (Some(_), None) => alert,
            (None, Some(e)) if e == "partial_result" => format!("{alert} partial"),
            _ => continue,
        };
        out.insert(key, l);
    }
    out
}

fn folded_alerts(p: &Project) -> Vec<String> {
    log_lines(p.path())
        .into_iter()
        .filter(|l| l.get("folded").is_some_and(|f| f == "true"))
        .map(|l| l["alert"].clone())
        .collect()
}

/// What was sent to Slack (the text and its sections, not the time it
/// was sent), sorted: alerts run in any order.
fn sent(slack: &SlackStandIn) -> Vec<String> {
    let mut v: Vec<String> = slack
        .delivered()
        .iter()
        .map(|p| {
            let sections: Vec<&str> = p.body["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|b| b["type"] == "section")
                .filter_map(|b| b["text"]["text"].as_str())
                .collect();
            format!("{} | {}", p.body["text"], sections.join("\n"))
        })
        .collect();
    v.sort();
    v
}

/// The host a search (or one filter of a folded search) asks about.
fn host_of(r: &Recorded) -> Option<usize> {
    if r.path.contains("_msearch") {
        return None;
    }
    let at = r.raw.find("\"host\":\"h")? + "\"host\":\"h".len();
    r.raw[at..].split('"').next()?.parse().ok()
}

fn is_fold(r: &Recorded) -> bool {
    r.body["aggs"]["esalert_fold"].is_object()
}

/// A stand-in answering each host's search with `hits(host)` hits (as
/// Elasticsearch does, capped at `track_total_hits`, 10,000 by default),
/// `h13` a query that does not parse, `h14` a partial answer.
fn cluster(bad: bool) -> EsStandIn {
    let es = EsStandIn::start();
    es.respond_with(move |r| {
        let h = host_of(r)?;
        let n = hits(h);
        Some(match h {
            13 if bad => Reply::misspelt_query("mtach", 1, 30),
            14 if bad => Reply::shard_failures(n),
            _ => {
                let cap = match &r.body["track_total_hits"] {
                    Value::Bool(true) => u64::MAX,
                    v => v.as_u64().unwrap_or(10_000),
                };
                if n > cap {
                    Reply::total_v8(cap, "gte")
                } else {
                    Reply::total_v8(n, "eq")
                }
            }
        })
    });
    es
}

fn hits(host: usize) -> u64 {
    match host {
        1 => 1,
        3 => 12_000,
        4 => 4,
        7 => 5,
        10 => 3,
        _ => 0,
    }
}

/// An alert on host `h` over its window, sorted as rules usually are.
fn alert(h: usize, extra: Value) -> String {
    let mut a = json!({"index": "logs", "schedule": "1m", "media": ["slack"],
        "body": {"query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}},
            {"term": {"host": format!("h{h}")}}]}},
            "sort": [{"@timestamp": "desc"}]},
        "message": format!("h{h}: {{{{ hits.total.value }}}} hits")});
    if let (Value::Object(m), Value::Object(e)) = (&mut a, extra) {
        m.extend(e);
    }
    a.to_string()
}

/// Writes the alerts of the stand-in tests: hosts 0..n, with the
/// conditions, caps and opt-outs folding must get right.
fn project(es: &EsStandIn, slack: &SlackStandIn, n: usize) -> Project {
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for h in 0..n {
        let extra = match h {
            // A threshold above the count: no match, its count logged.
            4 => json!({"condition": {"compare": {"hits.total": {"gte": 5}}}}),
            7 => json!({"condition": {"compare": {"ctx.payload.hits.total": {"gt": 3}}}}),
            // Counts past the cap: its own search says `gte`.
            9 => json!({"condition": {"compare": {"hits.total.value": {"gte": 20000}}}}),
            // Opted out.
            5 => json!({"fold": false}),
            // Not count-only.
            6 => json!({"condition": {"script": "true"}}),
            // Another window.
            8 => json!({"schedule": "5m"}),
            _ => json!({}),
        };
        let mut text = alert(h, extra);
        if h == 9 {
            text = text.replace("\"host\":\"h9\"", "\"host\":\"h3\"");
        }
        p.alert(&format!("a{h:02}"), &text);
    }
    p
}

fn once(p: &Project, args: &[&str]) -> i32 {
    let out = esalert_in(p.path(), "pw")
        .arg("once")
        .args(args)
        .output()
        .unwrap();
    if !out.stderr.is_empty() {
        eprintln!("esalert once: {}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap_or(-1)
}

#[test]
fn counts_are_folded_and_only_matches_search_again_with_the_same_outcomes() {
    let (es, slack) = (cluster(false), SlackStandIn::start());
    let p = project(&es, &slack, 12);
    let code = once(&p, &[]);
    let searches = es.searches();
    let folds: Vec<&Recorded> = searches.iter().filter(|r| is_fold(r)).collect();
    assert_eq!(folds.len(), 1, "one folded search: {searches:#?}");
    let fold = &folds[0].body;
    assert_eq!(fold["size"], 0);
    assert_eq!(fold["track_total_hits"], false);
    assert_eq!(fold["sort"], json!([{"@timestamp": "desc"}]));
    // The window's range, which every alert's query requires, is the query.
    let common = &fold["query"]["bool"]["filter"];
    assert_eq!(common.as_array().map(Vec::len), Some(1), "{fold}");
    assert!(
        common[0]["range"]["@timestamp"]["gte"].is_string(),
        "{fold}"
    );
    let filters = fold["aggs"]["esalert_fold"]["filters"]["filters"]
        .as_object()
        .unwrap();
    let mut in_fold: Vec<usize> = filters
        .values()
        .filter_map(|q| {
            host_of(&Recorded {
                raw: q.to_string(),
                ..folds[0].clone()
            })
        })
        .collect();
    in_fold.sort();
    // Not a05 (fold: false), a06 (script), a08 (another window).
    assert_eq!(in_fold, vec![0, 1, 2, 3, 3, 4, 7, 10, 11], "{fold}");

    // Searched on their own: the opted-out, the script, the other window,
    // and those the count made match (h1, h3, h7, h10) or couldn't vouch
    // for (a09: 12,000 is past its cap).
    let mut alone: Vec<usize> = searches
        .iter()
        .filter(|r| !is_fold(r))
        .filter_map(host_of)
        .collect();
    alone.sort();
    assert_eq!(alone, vec![1, 3, 3, 5, 6, 7, 8, 10], "{searches:#?}");

    let folded = outcome_lines(&p);
    assert_eq!(folded["a00"]["outcome"], "no_match");
    assert_eq!(folded["a01"]["outcome"], "fired");
    assert_eq!(folded["a04"]["outcome"], "no_match");
    assert_eq!(folded["a04"]["hits"], "4");
    assert_eq!(folded["a03"]["hits"], "10000");
    assert!(folded["a09 partial"]["reason"].contains("lower bound"));
    let mut marked = folded_alerts(&p);
    marked.sort();
    // folded=true on the runs whose count the fold gave (not a03 and a09:
    // past the cap, their own searches answered).
    assert_eq!(
        marked,
        ["a00", "a01", "a02", "a04", "a07", "a10", "a11"].map(str::to_owned)
    );
    let folded_sent = sent(&slack);
    assert_eq!(folded_sent.len(), 5, "{folded_sent:#?}");

    // Exactly what each alert gets searching alone.
    let (es, slack) = (cluster(false), SlackStandIn::start());
    let p = project(&es, &slack, 12);
    assert_eq!(once(&p, &["--max-fold", "0", "--search-batch", "1"]), code);
    assert!(es.searches().iter().all(|r| !is_fold(r)));
    assert!(folded_alerts(&p).is_empty());
    assert_eq!(outcome_lines(&p), folded);
    assert_eq!(sent(&slack), folded_sent);
}

/// A filter the cluster can't parse fails the folded search; a partial
/// answer can't vouch for any count. Every alert then searches alone and
/// gets its own answer.
#[test]
fn a_bad_or_partial_filter_sends_every_alert_of_the_fold_alone() {
    let (es, slack) = (cluster(true), SlackStandIn::start());
    let p = project(&es, &slack, 15);
    let code = once(&p, &[]);
    assert_eq!(code, 1, "a13 fails");
    assert!(es.searches().iter().any(is_fold));
    let folded = outcome_lines(&p);
    assert_eq!(folded["a13"]["outcome"], "error");
    assert!(folded["a13"]["error"].contains("unknown query [mtach]"));
    assert_eq!(folded["a01"]["outcome"], "fired");
    assert!(folded_alerts(&p).is_empty(), "no count came from the fold");

    let (es, slack2) = (cluster(true), SlackStandIn::start());
    let p = project(&es, &slack2, 15);
    assert_eq!(once(&p, &["--max-fold", "0", "--search-batch", "1"]), code);
    assert_eq!(outcome_lines(&p), folded);
    assert_eq!(sent(&slack2), sent(&slack));

    // Without the bad one, the partial one alone spoils the fold too.
    let es = cluster(true);
    es.respond_with(move |r| {
        let h = host_of(r)?;
        Some(if h == 2 {
            Reply::shard_failures(0)
        } else {
            Reply::total_v8(hits(h), "eq")
        })
    });
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for h in [0, 1, 2] {
        p.alert(&format!("a{h:02}"), &alert(h, json!({})));
    }
    assert_eq!(once(&p, &[]), 0);
    let lines = outcome_lines(&p);
    assert!(
        lines["a02 partial"]["reason"].contains("shards failed"),
        "{lines:#?}"
    );
    assert_eq!(lines["a01"]["outcome"], "fired");
    assert!(folded_alerts(&p).is_empty());
}

/// `--max-fold 3`: nine alerts in three folded searches of three filters;
/// `--max-fold 0`: none.
#[test]
fn max_fold_splits_and_zero_turns_folding_off() {
    let es = EsStandIn::start();
    es.respond_with(|r| host_of(r).map(|_| Reply::total_v8(0, "eq")));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for h in 0..10 {
        p.alert(&format!("a{h:02}"), &alert(h, json!({})));
    }
    assert_eq!(once(&p, &["--max-fold", "3"]), 0);
    let searches = es.searches();
    let mut sizes: Vec<usize> = searches
        .iter()
        .filter(|r| is_fold(r))
        .map(|r| {
            r.body["aggs"]["esalert_fold"]["filters"]["filters"]
                .as_object()
                .map_or(0, |m| m.len())
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, vec![3, 3, 3], "{searches:#?}");
    // The tenth, with nothing to fold with, searched alone.
    assert_eq!(searches.iter().filter(|r| !is_fold(r)).count(), 1);
    assert_eq!(folded_alerts(&p).len(), 9);
    assert!(
        outcome_lines(&p)
            .values()
            .all(|l| l["outcome"] == "no_match")
    );

    let es = EsStandIn::start();
    es.respond_with(|r| host_of(r).map(|_| Reply::total_v8(0, "eq")));
    let p2 = Project::new();
    p2.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    for h in 0..10 {
        p2.alert(&format!("a{h:02}"), &alert(h, json!({})));
    }
    assert_eq!(once(&p2, &["--max-fold", "0"]), 0);
    assert!(es.searches().iter().all(|r| !is_fold(r)));
    assert_eq!(es.searches().len(), 10);
    assert!(folded_alerts(&p2).is_empty());
}

/// `esalert test` says whether the alert would be folded, and why not;
/// `esalert check` accepts `"fold": false`.
#[test]
fn test_says_whether_an_alert_is_folded() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(0, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert("plain", &alert(0, json!({})));
    p.alert("out", &alert(1, json!({"fold": false})));
    p.alert(
        "aggs",
        &alert(
            2,
            json!({"body": {"size": 0, "aggs": {"h": {"terms": {"field": "host"}}}}}),
        ),
    );
    p.alert(
        "script",
        &alert(3, json!({"condition": {"script": "true"}})),
    );
    let json_of = |name: &str| -> Value {
        let out = esalert_in(p.path(), "pw")
            .args(["test", name, "--json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    assert_eq!(json_of("plain")["fold"], true);
    assert!(json_of("plain").get("fold_reason").is_none());
    let out = json_of("out");
    assert_eq!(out["fold"], false);
    assert!(
        out["fold_reason"]
            .as_str()
            .unwrap()
            .contains("\"fold\": false"),
        "{out}"
    );
    assert!(
        json_of("aggs")["fold_reason"]
            .as_str()
            .unwrap()
            .contains("`aggs`")
    );
    assert!(
        json_of("script")["fold_reason"]
            .as_str()
            .unwrap()
            .contains("hits.total")
    );
    let (code, lines) = support::check(p.path(), &[]);
    assert_eq!(code, 0, "{lines:#?}");
}

/// Every alerts.log line of every alert, without the fields that say when
/// and how fast, or whether the count was folded; sorted per alert.
fn every_line(dir: &std::path::Path) -> BTreeMap<String, Vec<BTreeMap<String, String>>> {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for mut l in log_lines(dir) {
        let Some(alert) = l.get("alert").cloned() else {
            continue;
        };
        for k in ["ts", "took_ms", "window_start", "window_end", "folded"] {
            l.remove(k);
        }
        out.entry(alert).or_default().push(l);
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// A proxy in front of the node that counts search requests (`_search`
/// and `_msearch`), as the cluster receives them.
struct Counting {
    url: String,
    searches: Arc<AtomicUsize>,
    /// Each search request: its path and how many searches it carried.
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    _server: support::es::Server,
}

impl Counting {
    fn start(upstream: &str) -> Counting {
        esalert::install_crypto_provider();
        let searches = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (n, upstream, log) = (searches.clone(), upstream.to_owned(), seen.clone());
        let server = support::es::Server::start(0, move || {
            let client = reqwest::Client::new();
            axum::Router::new().fallback(
                move |method: axum::http::Method,
                      uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let (client, n, upstream) = (client.clone(), n.clone(), upstream.clone());
                    let log = log.clone();
                    async move {
                        let path = uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        if path.contains("/_search") || path.contains("/_msearch") {
                            n.fetch_add(1, Ordering::SeqCst);
                            let lines = body
                                .split(|b| *b == b'\n')
                                .filter(|l| !l.is_empty())
                                .count();
                            let folds = String::from_utf8_lossy(&body)
                                .matches("esalert_fold")
                                .count();
                            log.lock()
                                .unwrap()
                                .push(format!("{path}: {lines} lines, {folds} folds"));
                        }
                        let mut req = client
                            .request(method, format!("{upstream}{path}"))
                            .body(body);
                        if let Some(ct) = headers.get("content-type") {
                            req = req.header("content-type", ct.clone());
                        }
                        match req.send().await {
                            Ok(r) => {
                                let status = r.status().as_u16();
                                let ct = r
                                    .headers()
                                    .get("content-type")
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("application/json")
                                    .to_owned();
                                let bytes = r.bytes().await.unwrap_or_default();
                                axum::response::Response::builder()
                                    .status(status)
                                    .header("content-type", ct)
                                    .body(axum::body::Body::from(bytes))
                                    .unwrap()
                            }
                            Err(e) => axum::response::Response::builder()
                                .status(502)
                                .body(axum::body::Body::from(e.to_string()))
                                .unwrap(),
                        }
                    }
                },
            )
        });
        Counting {
            url: format!("http://127.0.0.1:{}", server.port),
            searches,
            seen,
            _server: server,
        }
    }
}

/// The equality test: 200 alerts (native ones with the default
/// condition and with thresholds, caps that their own search would report
/// as a lower bound, ElastAlert `any` rules) against the real node, with
/// documents that match some of them, run with folding and batching and
/// with both off: every alerts.log line and every notification is the
/// same, and the folded run sent at most three search requests.
#[test]
fn two_hundred_alerts_on_the_real_node_fold_to_the_same_outcomes() {
    let Some(es) = support::opensearch::engine() else {
        return;
    };
    let started = std::time::Instant::now();
    let index = "fold-equality";
    es.recreate(
        index,
        json!({"properties": {"@timestamp": {"type": "date"}, "host": {"type": "keyword"},
            "code": {"type": "keyword"}}}),
    );
    // Documents ten minutes old: inside the one-hour window of both runs.
    let at = chrono::Utc::now() - chrono::Duration::minutes(10);
    let count = |h: usize| match h % 10 {
        0 => 1,
        3 => 2,
        7 => 4,
        9 if h >= 175 => 6,
        _ => 0,
    };
    let mut docs = Vec::new();
    for h in 0..200 {
        for i in 0..count(h) {
            let t = at + chrono::Duration::seconds(i as i64);
            docs.push(
                json!({"@timestamp": t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "host": format!("h{h}"), "code": format!("c{i}")}),
            );
        }
    }
    es.bulk(index, &docs);

    let write = |p: &Project, url: &str, slack: &SlackStandIn| {
        std::fs::write(
            p.path().join("credentials.json"),
            json!({"elasticsearch": {"url": url, "timeout": "30s"},
                "slack": slack.webhook_credentials()})
            .to_string(),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let creds = p.path().join("credentials.json");
            std::fs::set_permissions(creds, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for h in 0..200 {
            let host = format!("h{h}");
            if h >= 180 {
                std::fs::write(
                    p.queries().join(format!("ea{h}.yaml")),
                    format!(
                        "name: EA {h}\ntype: any\nindex: {index}\nrun_every: {{hours: 1}}\nrealert: {{minutes: 0}}\n\
                         filter:\n- term: {{host: {host}}}\nalert: debug\n"
                    ),
                )
                .unwrap();
                continue;
            }
            let mut a = json!({"index": index, "schedule": "1h", "media": ["slack"],
                "body": {"query": {"bool": {"filter": [
                    {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}},
                    {"term": {"host": host}}]}},
                    "sort": [{"@timestamp": "desc"}], "size": 3},
                "message": "{{ hits.total.value }} hits on {{ hits.hits[0]._source.host }}, last {{ hits.hits[0]._source.code }}"});
            match h {
                160..170 => a["condition"] = json!({"compare": {"hits.total": {"gte": 3}}}),
                170..175 => {
                    a["condition"] = json!({"compare": {"ctx.payload.hits.total": {"gt": 1}}})
                }
                // Their own search counts to 2 and says `gte`.
                175..180 => {
                    a["body"]["track_total_hits"] = json!(2);
                    a["condition"] = json!({"compare": {"hits.total": {"gt": 5}}});
                }
                _ => {}
            }
            p.alert(&format!("a{h:03}"), &a.to_string());
        }
    };

    let proxy = Counting::start(&es.url);
    let (folded_p, slack) = (Project::new(), SlackStandIn::start());
    write(&folded_p, &proxy.url, &slack);
    let code = once(&folded_p, &[]);
    let folded_requests = proxy.searches.swap(0, Ordering::SeqCst);
    let requests = std::mem::take(&mut *proxy.seen.lock().unwrap());
    let folded = every_line(folded_p.path());
    let folded_sent = sent(&slack);
    assert_eq!(code, 0, "{folded:#?}");
    assert_eq!(folded.len(), 200, "{folded:#?}");
    // Matches: hosts ending in 0, 3, 7 (and in 9 past 175, by their own
    // search's capped count: no).
    let fired = folded
        .values()
        .flatten()
        .filter(|l| l.get("outcome").is_some_and(|o| o == "fired"))
        .count();
    assert!((40..=70).contains(&fired), "{fired} fired: {folded:#?}");
    assert!(
        folded_sent
            .iter()
            .any(|t| t.contains("4 hits on h7, last c3")),
        "{folded_sent:#?}"
    );
    let marked = folded_alerts(&folded_p).len();
    assert!(marked >= 190, "{marked} runs counted by the fold");

    let (alone_p, slack2) = (Project::new(), SlackStandIn::start());
    write(&alone_p, &proxy.url, &slack2);
    assert_eq!(
        once(&alone_p, &["--max-fold", "0", "--search-batch", "1"]),
        code
    );
    let alone_requests = proxy.searches.load(Ordering::SeqCst);
    assert!(
        alone_requests >= 200,
        "{alone_requests} search requests alone"
    );
    assert!(folded_alerts(&alone_p).is_empty());
    let alone = every_line(alone_p.path());
    let differ: Vec<_> = alone
        .iter()
        .filter(|(k, v)| folded.get(*k) != Some(*v))
        .map(|(k, v)| (k, v, folded.get(k)))
        .collect();
    assert!(differ.is_empty(), "alone vs folded: {differ:#?}");
    assert_eq!(alone.len(), folded.len());
    assert_eq!(sent(&slack2), folded_sent);
    assert!(
        folded_requests <= 3,
        "{folded_requests} search requests with folding: {requests:#?}"
    );
    eprintln!(
        "folding: {folded_requests} search requests folded, {alone_requests} alone, {fired} fired, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
