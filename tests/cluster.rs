//! esalert against a real search engine: an OpenSearch 2.19.6 node started
//! by `tests/support/opensearch.rs`, or the cluster in `ESALERT_TEST_ES_URL`.
//!
//! Real mappings and documents, the shipped alerts through the real binary,
//! every condition type on real answers, the window's bounds, the engine's
//! own errors, and the Watcher reference watches. Each test owns its indices
//! (named `*esalert*`, and the watches' own), so the tests run in parallel and can be re-run on the
//! same cluster. Without an engine they return early, except under CI.

mod support;

use std::path::Path;

use chrono::{DateTime, Duration, SecondsFormat, TimeZone, Utc};
use esalert::alert::parse_alert;
use esalert::condition::{ScriptEngine, hits_total};
use esalert::config::EsConfig;
use esalert::engine;
use esalert::render::Window;
use esalert::search::EsClient;
use serde_json::{Value, json};
use support::daemon::has;
use support::opensearch::{Engine, engine};
use support::{Project, SlackStandIn, SmtpServer, log_lines, repo};

/// The engine, or an early return when there is none (outside CI); with an
/// index and mappings, that index is created afresh.
macro_rules! engine_or_return {
    () => {
        match engine() {
            Some(e) => e,
            None => return,
        }
    };
    ($index:expr, $mappings:expr) => {{
        let es = engine_or_return!();
        es.recreate($index, $mappings);
        es
    }};
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, to the millisecond (the precision of a `date` field).
fn now_ms() -> DateTime<Utc> {
    let n = Utc::now();
    Utc.timestamp_millis_opt(n.timestamp_millis()).unwrap()
}

fn esalert(dir: &Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

/// credentials.json for the engine, with optional Slack and email sections.
fn credentials(p: &Project, es: &Engine, slack: Option<Value>, email: Option<Value>) {
    let mut c = json!({"elasticsearch": es.credentials()});
    if let Some(s) = slack {
        c["slack"] = s;
    }
    if let Some(e) = email {
        c["email"] = e;
    }
    let path = p.path().join("credentials.json");
    std::fs::write(&path, c.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// Copies a shipped alert from `queries/` unchanged.
fn shipped(p: &Project, name: &str) -> String {
    let text =
        std::fs::read_to_string(repo().join("queries").join(format!("{name}.json"))).unwrap();
    p.alert(name, &text);
    text
}

/// Seeds the store so that the next `once` searches from `start` to now.
fn window_starts_at(p: &Project, name: &str, start: DateTime<Utc>) {
    let store = json!({"version": 1, "alerts": {name: {"last_window_end": ts(start)}}});
    std::fs::write(p.path().join("throttle_period.json"), store.to_string()).unwrap();
}

/// `esalert test NAME` against the engine: the printed JSON.
fn dry_run(p: &Project, name: &str) -> Value {
    let out = esalert(p.path()).args(["test", name]).output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "esalert test {name}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // 0 matched, 3 not matched; anything else is an error.
    assert_eq!(
        out.status.code(),
        Some(if v["matched"] == true { 0 } else { 3 }),
        "esalert test {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    v
}

/// Runs `esalert once` over the window from `start` to now and checks that
/// `name` fired on `hits` documents.
fn once_fires(p: &Project, name: &str, start: DateTime<Utc>, hits: u64) {
    window_starts_at(p, name, start);
    esalert(p.path()).arg("once").assert().success();
    let lines = log_lines(p.path());
    let line = lines
        .iter()
        .find(|l| has(l, "alert", name) && l.contains_key("outcome"))
        .unwrap_or_else(|| panic!("{name}: {lines:#?}"));
    assert_eq!(line["outcome"], "fired", "{line:?}");
    assert_eq!(line["hits"], hits.to_string(), "{line:?}");
}

/// The mrkdwn sections of a Slack post, joined.
fn slack_text(post: &support::slack::Post) -> String {
    post.body["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "section")
        .map(|b| b["text"]["text"].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn client(es: &Engine) -> EsClient {
    esalert::install_crypto_provider();
    let mut cfg = es.credentials();
    if cfg.get("password").is_some() {
        cfg["password"] = json!(std::env::var("ESALERT_TEST_ES_PASSWORD").unwrap());
    }
    let cfg: EsConfig = serde_json::from_value(cfg).unwrap();
    EsClient::new(&cfg).unwrap()
}

/// Windows Security events as winlogbeat ships them (ECS).
fn winlogbeat_mappings() -> Value {
    json!({"properties": {
        "@timestamp": {"type": "date"},
        "event": {"properties": {"code": {"type": "keyword"}, "action": {"type": "keyword"}}},
        "winlog": {"properties": {"event_data": {"properties": {
            "TargetUserName": {"type": "keyword"}, "LogonType": {"type": "keyword"}}}}},
        "source": {"properties": {"ip": {"type": "ip"}}},
        "host": {"properties": {"name": {"type": "keyword"}}},
        "message": {"type": "text"}
    }})
}

fn logon(at: DateTime<Utc>, code: &str, user: &str, ip: &str) -> Value {
    let action = match code {
        "4624" => "logged-in",
        "4625" => "logon-failed",
        _ => "logged-out",
    };
    json!({"@timestamp": ts(at), "event": {"code": code, "action": action},
           "winlog": {"event_data": {"TargetUserName": user, "LogonType": "3"}},
           "source": {"ip": ip}, "host": {"name": "dc01.corp.example"},
           "message": format!("An account {action}: {user} from {ip}")})
}

/// Web and application logs (ECS `service.name`, `http.response.status_code`).
fn service_mappings() -> Value {
    json!({"properties": {
        "@timestamp": {"type": "date"},
        "service": {"properties": {"name": {"type": "keyword"}}},
        "http": {"properties": {"response": {"properties": {"status_code": {"type": "long"}}}}},
        "url": {"properties": {"path": {"type": "keyword"}}},
        "message": {"type": "text"}
    }})
}

fn request(at: DateTime<Utc>, service: &str, status: u16) -> Value {
    json!({"@timestamp": ts(at), "service": {"name": service},
           "http": {"response": {"status_code": status}}, "url": {"path": format!("/{service}/api")},
           "message": format!("GET /{service}/api {status}")})
}

#[test]
fn engine_is_up_and_painless_execute_answers() {
    let es = engine_or_return!();
    let root = es.ok("GET", "/", None);
    assert!(root["version"]["number"].is_string(), "{root}");
    if es.started_here {
        assert_eq!(root["version"]["distribution"], "opensearch");
        assert_eq!(root["version"]["number"], "2.19.6");
    }
    // The Painless work tests its scripts against this endpoint.
    let r = es.ok(
        "POST",
        "/_scripts/painless/_execute",
        Some(
            &json!({"script": {"source": "params.count / params.total * 100",
                                "params": {"count": 5.0, "total": 20.0}}}),
        ),
    );
    assert_eq!(r["result"], "25.0", "{r}");
    let (status, err) = es
        .call(
            "POST",
            "/_scripts/painless/_execute",
            Some(&json!({"script": {"source": "params.missing.length()"}})),
        )
        .unwrap();
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["type"], "script_exception", "{err}");
}

#[test]
fn admin_logins_counts_and_buckets_from_real_documents() {
    let index = "winlogbeat-esalert-admin";
    let es = engine_or_return!(index, winlogbeat_mappings());
    let now = now_ms();
    let t0 = now - Duration::minutes(30);
    let m = |n: i64| t0 + Duration::minutes(n);
    es.bulk(
        index,
        &[
            logon(t0, "4624", "Administrator", "10.0.0.5"), // exactly window.start: in
            logon(m(1), "4624", "Administrator", "10.0.0.5"),
            logon(m(2), "4624", "Administrator", "10.0.0.6"),
            logon(m(5), "4624", "svc_backup", "10.0.0.7"),
            logon(m(3), "4624", "jdoe", "10.0.0.8"), // not privileged
            logon(m(4), "4634", "Administrator", "10.0.0.5"), // a logoff
            logon(t0 - Duration::milliseconds(1), "4624", "admin", "10.0.0.9"), // before
            logon(now + Duration::hours(1), "4624", "da_jsmith", "10.0.0.9"), // future
        ],
    );
    let p = Project::new();
    let slack = SlackStandIn::start();
    credentials(&p, es, Some(slack.bot_credentials("#alerts")), None);
    shipped(&p, "admin_logins");

    // `test` searches the last minute: nothing privileged there yet.
    let v = dry_run(&p, "admin_logins");
    assert_eq!(
        (v["matched"].clone(), v["hits"].clone()),
        (json!(false), json!(0)),
        "{v}"
    );
    es.bulk(
        index,
        &[logon(
            now_ms() - Duration::seconds(5),
            "4624",
            "admin",
            "10.1.1.1",
        )],
    );
    let v = dry_run(&p, "admin_logins");
    assert_eq!(
        (v["matched"].clone(), v["hits"].clone()),
        (json!(true), json!(1)),
        "{v}"
    );
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.starts_with("1 logon(s) by privileged accounts between "),
        "{msg}"
    );
    assert!(msg.ends_with(":\n- admin: 1\n"), "{msg}");

    // `once` searches from the stored window end (t0) to now.
    once_fires(&p, "admin_logins", t0, 5);
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "#alerts");
    let text = slack_text(&posts[0]);
    // Buckets by count, ties by key, as the terms aggregation orders them.
    assert!(
        text.contains(&format!(
            "5 logon(s) by privileged accounts between {} and ",
            ts(t0)
        )) && text.contains(":\n- Administrator: 3\n- admin: 1\n- svc_backup: 1"),
        "{text}"
    );
    let header = &posts[0].body["blocks"][0]["text"]["text"];
    assert_eq!(
        header,
        &json!(format!("Privileged logons: 5 since {}", ts(t0)))
    );
}

#[test]
fn failed_login_burst_script_reads_real_ip_buckets() {
    let index = "winlogbeat-esalert-burst";
    let es = engine_or_return!(index, winlogbeat_mappings());
    let t0 = now_ms() - Duration::minutes(30);
    let s = |n: i64| t0 + Duration::seconds(n);
    let users = ["Administrator", "admin", "guest"];
    let mut docs = Vec::new();
    for i in 0..25 {
        docs.push(logon(s(10 + i), "4625", users[i as usize % 3], "10.0.0.66"));
    }
    for i in 0..20 {
        docs.push(logon(s(40 + i), "4625", "svc_backup", "2001:db8::7"));
    }
    for i in 0..5 {
        docs.push(logon(s(70 + i), "4625", "jdoe", "192.168.1.20"));
    }
    for i in 0..30 {
        // An earlier burst, before the window.
        docs.push(logon(
            t0 - Duration::seconds(1 + i),
            "4625",
            "guest",
            "10.0.0.99",
        ));
    }
    for i in 0..30 {
        // Successful logons are not failures.
        docs.push(logon(s(100 + i), "4624", "guest", "10.0.0.66"));
    }
    es.bulk(index, &docs);
    let p = Project::new();
    let slack = SlackStandIn::start();
    credentials(&p, es, Some(slack.bot_credentials("#alerts")), None);
    shipped(&p, "failed_login_burst");

    let v = dry_run(&p, "failed_login_burst");
    assert_eq!(v["matched"], false, "nothing in the last minute: {v}");

    once_fires(&p, "failed_login_burst", t0, 50);
    // One notification per source address over the threshold, each to the
    // alert's channel; the others are no match.
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "{posts:#?}");
    let texts: Vec<String> = posts.iter().map(slack_text).collect();
    for p in &posts {
        assert_eq!(p.body["channel"], "#soc", "the alert's channel");
    }
    assert!(
        texts[0].starts_with("25 failed logons from 10.0.0.66 against 3 account(s)"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("20 failed logons from 2001:db8::7 against 1 account(s)"),
        "{texts:?}"
    );
    for t in &texts {
        assert!(
            !t.contains("192.168.1.20") && !t.contains("10.0.0.99"),
            "{t}"
        );
    }
}

#[test]
fn service_error_rate_array_compare_over_real_buckets() {
    let es = engine_or_return!();
    let (nginx, app) = ("logs-nginx-esalert", "logs-app-esalert");
    es.recreate(nginx, service_mappings());
    es.recreate(app, service_mappings());
    let t0 = now_ms() - Duration::minutes(3);
    let s = |n: i64| t0 + Duration::seconds(n);
    let mut web = Vec::new();
    for i in 0..40 {
        web.push(request(
            s(i),
            "checkout",
            if i % 10 == 0 { 503 } else { 200 },
        ));
    }
    for i in 0..50 {
        // An old outage, outside both windows.
        web.push(request(
            t0 - Duration::minutes(10) + Duration::seconds(i),
            "checkout",
            500,
        ));
    }
    es.bulk(nginx, &web);
    let mut apps = Vec::new();
    for i in 0..100 {
        apps.push(request(s(i), "search", if i < 2 { 500 } else { 200 }));
    }
    for i in 0..10 {
        // Fewer than min_doc_count (20): no bucket however bad.
        apps.push(request(s(i), "login", if i < 6 { 502 } else { 401 }));
    }
    es.bulk(app, &apps);
    let p = Project::new();
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    credentials(
        &p,
        es,
        Some(slack.webhook_credentials()),
        Some(smtp.credentials()),
    );
    shipped(&p, "service_error_rate");

    // The last 5 minutes hold every recent request.
    let v = dry_run(&p, "service_error_rate");
    assert_eq!(v["matched"], true, "{v}");
    assert_eq!(v["hits"], 150, "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.ends_with(":\n- checkout: 10.0% (4 of 40)\n"), "{msg}");
    assert!(!msg.contains("search:") && !msg.contains("login"), "{msg}");

    once_fires(&p, "service_error_rate", t0, 150);
    let text = slack_text(&slack.delivered()[0]);
    assert!(
        text.contains(&format!("between {} and ", ts(t0)))
            && text.contains("- checkout: 10.0% (4 of 40)"),
        "{text}"
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].rcpt_tos, ["oncall@example.com"]);
    assert!(
        mails[0].data.contains("checkout: 10.0% (4 of 40)"),
        "{}",
        mails[0].data
    );
}

/// A fixed clock far from the other tests' documents.
fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn window_start_is_included_and_end_excluded() {
    let index = "winlogbeat-esalert-window";
    let es = engine_or_return!(index, winlogbeat_mappings());
    let now = fixed_now();
    let ms = Duration::milliseconds(1);
    let c = client(es);
    let scripts = ScriptEngine::default();
    // Each alert counts its own event code, at the bounds of its own window.
    for (name, code) in [("admin_logins", "4624"), ("failed_login_burst", "4625")] {
        let path = repo().join("queries").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        let alert = parse_alert(name, &path, &text, &scripts).unwrap();
        let window = engine::default_window(&alert, now);
        assert!(window.end == now && window.start < now, "{name}");
        let docs: Vec<Value> = [
            (window.start - ms, "10.9.0.1"),
            (window.start, "10.9.0.2"),
            (now - ms, "10.9.0.3"),
            (now, "10.9.0.4"),
        ]
        .into_iter()
        .map(|(at, ip)| logon(at, code, "Administrator", ip))
        .collect();
        es.bulk(index, &docs);
        let ev = engine::search_and_evaluate(&alert, &c, &scripts, now, window, false)
            .await
            .unwrap();
        assert_eq!(ev.hits, 2, "{name}: the docs at start and at end - 1ms");
        // Which two, from a search with the same rendered range.
        let r = c
            .search(
                &[index.to_owned()],
                &json!({"size": 0, "query": {"bool": {"filter": [
                            {"term": {"event.code": code}},
                            {"range": {"@timestamp": {"gte": ts(window.start), "lt": ts(now)}}}]}},
                        "aggs": {"ips": {"terms": {"field": "source.ip"}}}}),
            )
            .await
            .unwrap();
        let keys: Vec<&str> = r.response["aggregations"]["ips"]["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["10.9.0.2", "10.9.0.3"], "{name}");
    }
}

#[tokio::test]
async fn every_condition_type_on_real_answers() {
    let index = "esalert-conditions";
    let es = engine_or_return!(index, service_mappings());
    let now = fixed_now();
    let window = Window {
        start: now - Duration::minutes(1),
        end: now,
    };
    let mut docs = Vec::new();
    for i in 0..7 {
        docs.push(request(window.start + Duration::seconds(i), "web", 200));
    }
    for i in 0..3 {
        docs.push(request(window.start + Duration::seconds(i), "db", 500));
    }
    es.bulk(index, &docs);
    let c = client(es);
    let scripts = ScriptEngine::default();
    let body = json!({"size": 0, "track_total_hits": true,
        "query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}},
        "aggs": {"services": {"terms": {"field": "service.name"}}}});
    let alert = |condition: Value| {
        let text = json!({"index": index, "body": body, "condition": condition,
                          "message": "{{ alert.name }}"})
        .to_string();
        parse_alert("c", Path::new("c.json"), &text, &scripts).unwrap()
    };
    // The two shapes of hits.total: `{value, relation}` and, with
    // rest_total_hits_as_int, a number.
    let rendered = json!({"size": 0, "track_total_hits": true,
        "query": {"range": {"@timestamp": {"gte": ts(window.start), "lt": ts(window.end)}}},
        "aggs": {"services": {"terms": {"field": "service.name"}}}});
    let as_object = c
        .search(&[index.to_owned()], &rendered)
        .await
        .unwrap()
        .response;
    let as_int = c
        .search_with(
            &[index.to_owned()],
            &[("rest_total_hits_as_int".into(), "true".into())],
            &rendered,
        )
        .await
        .unwrap()
        .response;
    assert_eq!(
        as_object["hits"]["total"],
        json!({"value": 10, "relation": "eq"})
    );
    assert_eq!(as_int["hits"]["total"], json!(10));
    for (response, shape) in [(&as_object, "object"), (&as_int, "number")] {
        assert_eq!(hits_total(response), 10, "{shape}");
        for (cond, want) in [
            (json!({"compare": {"hits.total": {"gt": 9}}}), true),
            (json!({"compare": {"hits.total": {"gt": 10}}}), false),
            (
                json!({"compare": {"ctx.payload.hits.total.value": {"gte": 10}}}),
                true,
            ),
            (json!({"compare": {"hits.total": {"eq": "10"}}}), true),
            (
                json!({"array_compare": {"aggregations.services.buckets": {"path": "doc_count", "gte": {"value": 7}}}}),
                true,
            ),
            (
                json!({"array_compare": {"aggregations.services.buckets": {"path": "doc_count", "gte": {"value": 7, "quantifier": "all"}}}}),
                false,
            ),
            (
                json!({"array_compare": {"aggregations.services.buckets": {"path": "key", "eq": {"value": "db", "quantifier": "some"}}}}),
                true,
            ),
            (
                json!({"script": "let b = response.aggregations.services.buckets; b.len() == 2 && b[0].key == \"web\" && b[1].doc_count == 3"}),
                true,
            ),
        ] {
            let ev =
                engine::evaluate(&alert(cond.clone()), &scripts, response, now, window).unwrap();
            assert_eq!(ev.matched, want, "{shape}: {cond}");
            assert_eq!(ev.hits, 10, "{shape}: {cond}");
        }
    }
    // A script's own message, built from real buckets.
    let ev = engine::search_and_evaluate(
        &alert(json!({"script": "let b = response.aggregations.services.buckets; #{matched: true, message: `${b[0].key}=${b[0].doc_count} ${b[1].key}=${b[1].doc_count} total=${response.hits.total.value}`}"})),
        &c,
        &scripts,
        now,
        window,
        false,
    )
    .await
    .unwrap();
    assert!(ev.matched);
    assert_eq!(ev.message.as_deref(), Some("web=7 db=3 total=10"));
}

#[test]
fn real_errors_reach_alerts_log_with_their_root_cause() {
    let index = "esalert-errors";
    let es = engine_or_return!(index, service_mappings());
    let now = now_ms();
    let docs: Vec<Value> = (0..7)
        .map(|i| request(now - Duration::seconds(10 + i), "web", 200))
        .collect();
    es.bulk(index, &docs);
    let p = Project::new();
    let slack = SlackStandIn::start();
    credentials(&p, es, Some(slack.webhook_credentials()), None);
    let alert = |name: &str, index: &str, body: Value, condition: Value| {
        p.alert(
            name,
            &json!({"index": index, "schedule": "5m", "body": body, "condition": condition,
                    "message": "{{ hits.total.value }}"})
            .to_string(),
        );
    };
    let range =
        json!({"range": {"@timestamp": {"gte": "{{ window.start }}", "lt": "{{ window.end }}"}}});
    alert(
        "misspelt",
        index,
        json!({"query": {"bool": {"filter": [{"mtach": {"message": "error"}}]}}}),
        json!({"always": {}}),
    );
    alert(
        "missing_index",
        "esalert-no-such-index",
        json!({"query": range}),
        json!({"always": {}}),
    );
    alert(
        "bad_date",
        index,
        json!({"query": {"range": {"@timestamp": {"gte": "{{ window.start }}", "format": "dd/MM/yyyy"}}}}),
        json!({"always": {}}),
    );
    alert(
        "lower_bound",
        index,
        json!({"size": 0, "track_total_hits": 3, "query": range}),
        json!({"compare": {"hits.total": {"gte": 5}}}),
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "some alerts failed");
    let lines = log_lines(p.path());
    let outcome = |name: &str| {
        lines
            .iter()
            .find(|l| has(l, "alert", name) && l.contains_key("outcome"))
            .unwrap_or_else(|| panic!("{name}: {lines:#?}"))
            .clone()
    };
    let e = outcome("misspelt");
    assert_eq!(e["outcome"], "error");
    let err = &e["error"];
    // Inside a bool filter the query parser wraps the root cause.
    assert!(err.contains("HTTP 400 from the cluster: "), "{err}");
    assert!(
        err.contains("parsing_exception: unknown query [mtach]"),
        "{err}"
    );
    assert!(
        err.contains("(line 1, column 38 of the search body as sent)"),
        "{err}"
    );

    let e = outcome("missing_index");
    assert_eq!(e["outcome"], "error");
    assert!(
        e["error"].contains(
            "HTTP 404 from the cluster: index_not_found_exception: no such index [esalert-no-such-index]"
        ),
        "{}",
        e["error"]
    );

    let e = outcome("bad_date");
    assert_eq!(e["outcome"], "error");
    let err = &e["error"];
    assert!(
        err.contains("HTTP 400 from the cluster: search_phase_execution_exception: all shards failed; root cause: parse_exception: failed to parse date field"),
        "{err}"
    );
    assert!(err.contains("dd/MM/yyyy"), "{err}");

    // A count the cluster stopped at: evaluated, and said so.
    let e = outcome("lower_bound");
    assert_eq!(e["outcome"], "no_match", "3 (at least) is not >= 5: {e:?}");
    assert_eq!(e["hits"], "3");
    let partial = lines
        .iter()
        .find(|l| has(l, "alert", "lower_bound") && has(l, "event", "partial_result"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(
        partial["reason"].contains("relation gte: at least 3"),
        "{partial:?}"
    );
    assert!(slack.all_posts().is_empty());
}

fn fixture(p: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/watcher").join(p)).unwrap()
}

#[test]
fn watcher_reference_watches_search_the_real_engine_unchanged() {
    let es = engine_or_return!();
    // errors_in_logs: its mapping (a 6.x mapping; the `log` type level is
    // gone since 7.0) and the events of its test1.json, offsets from now.
    let mapping: Value = serde_json::from_str(&fixture("errors_in_logs/mapping.json")).unwrap();
    let test1: Value = serde_json::from_str(&fixture("errors_in_logs/test1.json")).unwrap();
    let index = test1["index"].as_str().unwrap();
    es.recreate(index, mapping["mappings"]["log"].clone());
    // (Re)indexes the events relative to now, keeping test1.json's ids: the
    // logged text lists them, and the watch searches `now-1m`.
    let seed_events = || {
        let now = now_ms();
        for e in test1["events"].as_array().unwrap() {
            let at = now + Duration::seconds(e["offset"].as_i64().unwrap());
            let doc =
                json!({"@timestamp": ts(at), "message": e["message"], "loglevel": e["loglevel"]});
            es.ok(
                "PUT",
                &format!("/{index}/_doc/{}", e["id"].as_str().unwrap()),
                Some(&doc),
            );
        }
        es.ok("POST", &format!("/{index}/_refresh"), None);
    };
    seed_events();

    let p = Project::new();
    credentials(&p, es, None, None);
    p.alert("errors_in_logs", &fixture("errors_in_logs/watch.json"));
    let v = dry_run(&p, "errors_in_logs");
    assert_eq!(v["matched"], true, "{v}");
    assert_eq!(v["hits"], 3, "{v}");
    let action = &v["watch_record"]["result"]["actions"][0];
    assert_eq!(
        action["logging"]["logged_text"], "3 Errors have occurred in the logs:4:1:3:",
        "{v}"
    );
    seed_events();
    esalert(p.path()).arg("once").assert().success();
    let lines = log_lines(p.path());
    let logged = lines
        .iter()
        .find(|l| has(l, "event", "watch_log"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(logged["text"], "3 Errors have occurred in the logs:4:1:3:");

    // log_errors: a count input (hits.total as a number, read as
    // `hits.total.value`) and a search transform over `log-events`.
    es.recreate(
        "log-events",
        json!({"properties": {"@timestamp": {"type": "date"}, "status": {"type": "keyword"},
                              "message": {"type": "text"}}}),
    );
    let now = now_ms();
    let mut docs: Vec<Value> = (0..7)
        .map(|i| json!({"@timestamp": ts(now - Duration::seconds(i)), "status": "error", "message": format!("disk {i} full")}))
        .collect();
    docs.push(json!({"@timestamp": ts(now), "status": "ok", "message": "fine"}));
    es.bulk("log-events", &docs);
    p.alert("log_errors", &fixture("log_errors.json"));
    let v = dry_run(&p, "log_errors");
    assert_eq!(v["matched"], true, "7 > 5: {v}");
    assert_eq!(v["hits"], 7, "{v}");
    let rec = &v["watch_record"];
    let email = rec["result"]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == "email_administrator")
        .unwrap_or_else(|| panic!("{rec}"));
    assert_eq!(
        email["email"]["message"]["subject"]
            .as_str()
            .or(email["email"]["subject"].as_str()),
        Some("Encountered 7 errors"),
        "{email}"
    );

    // cluster_health: its http input, pointed at the engine (only host and port change).
    if es.started_here {
        let url = url::Url::parse(&es.url).unwrap();
        let mut w: Value = serde_json::from_str(&fixture("cluster_health.json")).unwrap();
        w["input"]["http"]["request"]["host"] = json!(url.host_str().unwrap());
        w["input"]["http"]["request"]["port"] = json!(url.port().unwrap());
        p.alert("cluster_health", &w.to_string());
        let v = dry_run(&p, "cluster_health");
        assert_eq!(v["matched"], false, "a healthy node is not red: {v}");
        let status = &v["watch_record"]["result"]["input"]["payload"]["status"];
        assert!(status == "green" || status == "yellow", "{v}");
    }
}
