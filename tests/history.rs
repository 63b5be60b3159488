//! The `elasticsearch` destination (a history index) through the real
//! binary: fired and resolved documents on a real OpenSearch node (started
//! by `tests/support/opensearch.rs`; without one these return early, except
//! under CI), and the per-item answers of `_bulk` from the Elasticsearch
//! stand-in.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::opensearch::{Engine, engine};
use support::{EsStandIn, Project, Reply, log_lines};

fn esalert(dir: &Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

fn write_credentials(p: &Project, c: &Value) {
    let path = p.path().join("credentials.json");
    std::fs::write(&path, c.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// An alert on `index` that sends to `history` and resolves on the first
/// run without hits.
fn alert(p: &Project, index: &str) {
    p.alert(
        "intrusion",
        &json!({"index": index, "body": {"query": {"match_all": {}}}, "media": ["history"],
            "notify_resolved": true, "resolve_after": "0s", "throttle_period": "0s",
            "subject": "{{ hits.total.value }} intrusion(s)", "message": "from {{ alert.name }}"})
        .to_string(),
    );
}

/// A project on the engine whose `intrusion` alert searches `src` (made
/// afresh with `docs` documents) and sends to a history destination
/// writing to `index`.
fn project(es: &Engine, src: &str, docs: usize, index: &str) -> Project {
    es.recreate(src, json!({"properties": {"msg": {"type": "keyword"}}}));
    es.bulk(src, &vec![json!({"msg": "x"}); docs]);
    let p = Project::new();
    write_credentials(
        &p,
        &json!({"elasticsearch": es.credentials(),
            "outputs": {"history": {"type": "elasticsearch", "index": index}}}),
    );
    alert(&p, src);
    p
}

/// Every document of the indices `pattern` matches, oldest first.
fn history(es: &Engine, pattern: &str) -> Vec<Value> {
    es.ok("POST", &format!("/{pattern}/_refresh"), None);
    let v = es.ok(
        "POST",
        &format!("/{pattern}/_search"),
        Some(&json!({"size": 100, "sort": [{"@timestamp": "asc"}]})),
    );
    v["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["_source"].clone())
        .collect()
}

/// `esalert once` in `p`: stdout and stderr, after asserting it succeeded.
fn once(p: &Project) {
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(p.path().join("alerts.log")).unwrap_or_default()
    );
}

#[test]
fn a_fired_and_a_resolved_document_land_in_the_daily_history_index() {
    let Some(es) = engine() else { return };
    let (s, v) = es.call("DELETE", "/esalert-hist-a-*", None).unwrap();
    assert!(s == 200 || s == 404, "{s} {v}");
    let p = project(es, "esalert-hist-src", 2, "esalert-hist-a-%Y.%m.%d");
    once(&p);
    // No more hits: the alert resolves.
    es.recreate(
        "esalert-hist-src",
        json!({"properties": {"msg": {"type": "keyword"}}}),
    );
    once(&p);

    let docs = history(es, "esalert-hist-a-*");
    assert_eq!(docs.len(), 2, "{docs:#?}");
    let (fired, resolved) = (&docs[0], &docs[1]);
    assert_eq!(fired["outcome"], "fired");
    assert_eq!(fired["alert"], "intrusion");
    assert_eq!(fired["key"], "");
    assert_eq!(fired["hits"], 2);
    assert_eq!(fired["subject"], "2 intrusion(s)");
    assert_eq!(fired["message"], "from intrusion");
    let incident = fired["incident_key"].as_str().unwrap();
    assert!(incident.starts_with("esalert-intrusion-"), "{incident}");
    let (start, end) = (
        fired["window"]["start"].as_str().unwrap(),
        fired["window"]["end"].as_str().unwrap(),
    );
    assert!(start < end, "{start} {end}");
    assert!(fired["@timestamp"].as_str().unwrap() <= resolved["@timestamp"].as_str().unwrap());
    assert_eq!(resolved["outcome"], "resolved");
    assert_eq!(resolved["incident_key"], incident);
    assert_eq!(resolved["hits"], 0);
    // One index a day, named by the notification's UTC date.
    let day = chrono::DateTime::parse_from_rfc3339(fired["@timestamp"].as_str().unwrap())
        .unwrap()
        .format("%Y.%m.%d")
        .to_string();
    let (status, _) = es
        .call("GET", &format!("/esalert-hist-a-{day}"), None)
        .unwrap();
    assert_eq!(status, 200, "no index esalert-hist-a-{day}");
}

#[test]
fn documents_go_into_a_data_stream() {
    let Some(es) = engine() else { return };
    let (s, v) = es
        .call("DELETE", "/_data_stream/esalert-hist-ds", None)
        .unwrap();
    assert!(s == 200 || s == 404, "{s} {v}");
    es.ok(
        "PUT",
        "/_index_template/esalert-hist-ds",
        Some(&json!({"index_patterns": ["esalert-hist-ds"], "data_stream": {}, "priority": 500})),
    );
    let p = project(es, "esalert-hist-ds-src", 1, "esalert-hist-ds");
    once(&p);
    let docs = history(es, "esalert-hist-ds");
    assert_eq!(docs.len(), 1, "{docs:#?}");
    assert_eq!(docs[0]["outcome"], "fired");
    let ds = es.ok("GET", "/_data_stream/esalert-hist-ds", None);
    assert_eq!(ds["data_streams"][0]["name"], "esalert-hist-ds", "{ds}");
}

#[test]
fn a_mapping_conflict_is_a_permanent_error_naming_the_items_error() {
    let Some(es) = engine() else { return };
    // `alert` holds a name; a `long` field can't take it.
    es.recreate(
        "esalert-hist-m",
        json!({"properties": {"alert": {"type": "long"}, "@timestamp": {"type": "date"}}}),
    );
    let p = project(es, "esalert-hist-m-src", 1, "esalert-hist-m");
    esalert(p.path()).arg("once").output().unwrap();
    let lines = log_lines(p.path());
    assert!(
        !lines
            .iter()
            .any(|l| l.get("event").map(String::as_str) == Some("delivery_retry")),
        "a mapping conflict was retried: {lines:#?}"
    );
    let failed = line(&lines, "outcome", "failed");
    let errors = &failed["errors"];
    assert!(
        errors.contains("history: document 0 refused by esalert-hist-m: HTTP 400")
            && errors.contains("mapper_parsing_exception"),
        "{errors}"
    );
    assert!(history(es, "esalert-hist-m").is_empty());
}

/// The first alerts.log line whose `key` is `value`.
fn line<'a>(log: &'a [Line], key: &str, value: &str) -> &'a Line {
    log.iter()
        .find(|l| l.get(key).map(String::as_str) == Some(value))
        .unwrap_or_else(|| panic!("no {key}={value} in {log:#?}"))
}

type Line = std::collections::BTreeMap<String, String>;

/// A `_bulk` answer with one item.
fn bulk_item(status: u16, error: Option<(&str, &str)>) -> Reply {
    let mut item = json!({"_index": "h", "_id": "x", "status": status});
    if let Some((kind, reason)) = error {
        item["error"] = json!({"type": kind, "reason": reason});
    }
    Reply::json(
        200,
        json!({"took": 1, "errors": error.is_some(), "items": [{"create": item}]}),
    )
}

/// A project whose `intrusion` alert sends to a history destination on the
/// stand-in, whose `_bulk` answers come from `bulk` in turn.
fn on_standin(bulk: Vec<Reply>) -> (EsStandIn, Project) {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(3, "eq"));
    let queue = std::sync::Mutex::new(std::collections::VecDeque::from(bulk));
    es.respond_with(move |r| {
        r.path
            .starts_with("/_bulk")
            .then(|| queue.lock().unwrap().pop_front())
            .flatten()
    });
    let p = Project::new();
    write_credentials(
        &p,
        &json!({"elasticsearch": {"url": es.url},
            "outputs": {"history": {"type": "elasticsearch", "index": "h"}}}),
    );
    alert(&p, "logs");
    (es, p)
}

fn bulks(es: &EsStandIn) -> Vec<support::es::Recorded> {
    es.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/_bulk"))
        .collect()
}

#[test]
fn a_429_on_an_item_is_retried_and_the_retry_is_the_same_document() {
    let (es, p) = on_standin(vec![
        bulk_item(
            429,
            Some((
                "es_rejected_execution_exception",
                "rejected execution of coordinating operation",
            )),
        ),
        bulk_item(201, None),
    ]);
    once(&p);
    let sent = bulks(&es);
    assert_eq!(sent.len(), 2, "{sent:#?}");
    // One `create` and one document per request, the same both times.
    let lines: Vec<&str> = sent[0].raw.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let meta: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(meta["create"]["_index"], "h");
    assert!(meta["create"]["_id"].is_string(), "{meta}");
    assert_eq!(sent[0].raw, sent[1].raw);
    let doc: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(doc["outcome"], "fired");
    assert_eq!(doc["hits"], 3);
    assert!(doc.get("_id").is_none(), "{doc}");
    let log = log_lines(p.path());
    let retry = line(&log, "event", "delivery_retry");
    assert!(
        retry["error"].contains("HTTP 429: es_rejected_execution_exception"),
        "{retry:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.get("outcome").map(String::as_str) == Some("fired")),
        "{log:#?}"
    );
}

#[test]
fn a_refused_item_is_permanent_and_an_existing_one_is_done() {
    let (es, p) = on_standin(vec![bulk_item(
        400,
        Some((
            "mapper_parsing_exception",
            "failed to parse field [hits] of type [boolean]",
        )),
    )]);
    esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(bulks(&es).len(), 1, "a refused document was sent again");
    let log = log_lines(p.path());
    let failed = line(&log, "outcome", "failed");
    assert!(
        failed["errors"].contains(
            "document 0 refused by h: HTTP 400: mapper_parsing_exception: failed to parse field [hits]"
        ),
        "{failed:?}"
    );

    // 409: an earlier try got through (its answer was lost); nothing to do.
    let (es, p) = on_standin(vec![bulk_item(
        409,
        Some((
            "version_conflict_engine_exception",
            "document already exists",
        )),
    )]);
    once(&p);
    assert_eq!(bulks(&es).len(), 1);
    assert!(
        log_lines(p.path())
            .iter()
            .any(|l| l.get("outcome").map(String::as_str) == Some("fired"))
    );
}
