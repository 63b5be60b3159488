//! ElastAlert 2 rules dropped into `queries/`, through the real binary:
//! `check` reports problems at `path:line:col` naming the key, alerter or
//! type; `test --since/--until` replays a recorded series of documents
//! (served by the stand-in's document store) window by window; `once`
//! delivers to the rule's own Slack webhook and never again for the same
//! documents.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Value, json};
use support::{EsStandIn, Project, SlackStandIn, docstore, esalert_in};

fn esalert(dir: &Path) -> assert_cmd::Command {
    esalert_in(dir, "pw")
}

fn rule(p: &Project, name: &str, ext: &str, text: &str) {
    std::fs::write(p.queries().join(format!("{name}.{ext}")), text).unwrap();
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(support::repo().join("tests/fixtures/elastalert").join(name)).unwrap()
}

/// The recorded series of `series.json`, served for every search.
fn series_cluster() -> EsStandIn {
    let es = EsStandIn::start();
    let docs: Vec<Value> = serde_json::from_str(&fixture("series.json")).unwrap();
    docstore::serve(&es, "logs-2026.01.01", docs);
    es
}

/// `esalert test NAME --since … --until … --json`: the (window end, key)
/// pairs that would have been notified.
fn replay(p: &Project, name: &str) -> (BTreeSet<(String, String)>, Value) {
    let out = esalert(p.path())
        .args([
            "test",
            name,
            "--since",
            "2026-01-01T00:00:00Z",
            "--until",
            "2026-01-01T00:10:00Z",
            "--json",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut got = BTreeSet::new();
    for w in v["windows"].as_array().unwrap() {
        assert!(w.get("error").is_none(), "{w}");
        for n in w["notifications"].as_array().unwrap() {
            got.insert((
                w["window"]["end"].as_str().unwrap().to_owned(),
                n["key"].as_str().unwrap().to_owned(),
            ));
        }
    }
    (got, v)
}

/// Replays `fixture` as rule `name` on the recorded series.
fn scenario(name: &str, fixture_file: &str) -> (EsStandIn, BTreeSet<(String, String)>, Value) {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    rule(&p, name, "yaml", &fixture(fixture_file));
    let (got, v) = replay(&p, name);
    (es, got, v)
}

/// `esalert check`: whether it passed, and everything it printed.
fn check(p: &Project) -> (bool, String) {
    let out = esalert(p.path()).arg("check").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs `esalert once` on one rule over `docs` (see [`recent`]); its
/// alerts.log.
fn once(docs: &[(i64, Value)], name: &str, text: &str) -> (EsStandIn, String) {
    let es = recent(docs);
    let p = Project::new();
    p.credentials(&es.url);
    rule(&p, name, "yaml", text);
    esalert(p.path()).arg("once").assert().success();
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    (es, log)
}

/// A stand-in serving documents stamped `secs` seconds before now.
fn recent(docs: &[(i64, Value)]) -> EsStandIn {
    let es = EsStandIn::start();
    let now = chrono::Utc::now();
    let docs = docs
        .iter()
        .map(|(secs, d)| {
            let mut d = d.clone();
            d["@timestamp"] = json!((now - chrono::Duration::seconds(*secs)).to_rfc3339());
            d
        })
        .collect();
    docstore::serve(&es, "logs", docs);
    es
}

fn pairs(v: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    v.iter()
        .map(|(t, k)| (format!("2026-01-01T00:{t}.000Z"), (*k).to_owned()))
        .collect()
}

#[test]
fn check_reports_unknown_keys_and_unsupported_features_by_name_at_their_position() {
    let p = Project::new();
    p.credentials("http://127.0.0.1:9");
    rule(&p, "good", "yaml", &fixture("any_query_key.yaml"));
    rule(&p, "bad", "yaml", &fixture("bad.yaml"));
    rule(
        &p,
        "custom",
        "yml",
        "name: c\ntype: mymodule.MyRule\nindex: logs-*\nalert: debug\n",
    );
    let (passed, text) = check(&p);
    assert!(!passed);
    for want in [
        "queries/bad.yaml:9:3: alerter `alerta` is not supported by esalert yet",
        "queries/bad.yaml:11:1: warning: unknown key `realrt`; did you mean `realert`? (ElastAlert ignores it, and so does esalert)",
        "queries/bad.yaml:13:1: `match_enhancements`: enhancements are Python classes",
        "queries/bad.yaml:6:3: unknown query clause `trem`; did you mean `term`?",
        "queries/bad.yaml:15:1: this rule searches localhost:9200, and esalert searches localhost:9 (credentials.json)",
        "queries/custom.yml:2:1: custom rule type `mymodule.MyRule` is a Python class",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!text.contains("good.yaml"), "{text}");

    // One id, two files: the second is refused, by name.
    p.alert(
        "good",
        r#"{"index": "logs-*", "body": {"query": {"match_all": {}}}, "message": "m"}"#,
    );
    let (_, text) = check(&p);
    assert!(
        text.contains("queries/good.yaml: ") && text.contains("already defines the rule \"good\""),
        "{text}"
    );
    std::fs::remove_file(p.queries().join("good.json")).unwrap();

    // Alone, the good rule passes.
    std::fs::remove_file(p.queries().join("bad.yaml")).unwrap();
    std::fs::remove_file(p.queries().join("custom.yml")).unwrap();
    esalert(p.path()).arg("check").assert().success();
}

#[test]
fn yaml_syntax_errors_and_types_point_at_the_spot() {
    let p = Project::new();
    p.credentials("http://127.0.0.1:9");
    rule(
        &p,
        "syntax",
        "yaml",
        "name: x\ntype: any\nindex: [a, b\nalert: debug\n",
    );
    rule(
        &p,
        "types",
        "yaml",
        "name: x\ntype: frequency\nindex: a\nalert: debug\nnum_events: many\ntimeframe:\n  minute: 5\n",
    );
    let (_, text) = check(&p);
    assert!(text.contains("queries/syntax.yaml:4:"), "{text}");
    assert!(text.contains("not valid YAML"), "{text}");
    assert!(
        text.contains("queries/types.yaml:5:1: `num_events` must be a whole number"),
        "{text}"
    );
    assert!(
        text.contains("queries/types.yaml:7:3: `timeframe`: `minute` is not a unit"),
        "{text}"
    );
}

#[test]
fn any_matches_each_document_per_query_key_with_realert_as_the_throttle() {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    rule(&p, "logins", "yaml", &fixture("any_query_key.yaml"));
    let (got, v) = replay(&p, "logins");
    // realert 1 minute (the default): every window's first match per user.
    assert_eq!(
        got,
        pairs(&[
            ("01:00", "alice"),
            ("01:00", "bob"),
            ("04:00", "alice"),
            ("05:00", "carol")
        ]),
        "{v:#}"
    );
    // The filter (legacy `query: query_string:`) and the window reached the cluster.
    let s = &es.searches()[0];
    assert_eq!(s.path, "/logs-*/_search");
    let must = &s.body["query"]["bool"]["filter"]["bool"]["must"];
    assert_eq!(must[0]["range"]["@timestamp"]["gt"], "2026-01-01T00:00:00Z");
    assert_eq!(
        must[0]["range"]["@timestamp"]["lte"],
        "2026-01-01T00:01:00Z"
    );
    assert_eq!(must[1], json!({"query_string": {"query": "event:login"}}));

    // realert 5 minutes: alice's second login is within it.
    let text = fixture("any_query_key.yaml").replace("minutes: 1", "minutes: 5");
    rule(&p, "logins", "yaml", &text);
    let (got, _) = replay(&p, "logins");
    assert_eq!(
        got,
        pairs(&[("01:00", "alice"), ("01:00", "bob"), ("05:00", "carol")])
    );
}

#[test]
fn frequency_counts_per_query_key_across_windows_and_starts_over_after_a_match() {
    let (_es, got, v) = scenario("errors", "frequency_query_key.yaml");
    // web-1: three errors within 3 minutes, over three windows; its next
    // two don't make three. web-2: never three within 3 minutes. web-3:
    // three in one window.
    assert_eq!(
        got,
        pairs(&[("03:00", "web-1"), ("08:00", "web-3")]),
        "{v:#}"
    );
    // The debug alerter's line, as ElastAlert's debug alerter logs it.
    let subject = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["window"]["end"] == "2026-01-01T00:03:00.000Z")
        .map(|w| w["notifications"][0]["subject"].clone());
    assert_eq!(
        subject,
        Some(json!("Alert for Errors, web-1 at 2026-01-01T00:02:30Z:"))
    );
}

#[test]
fn frequency_with_a_count_query_counts_the_windows() {
    let (es, got, v) = scenario("volume", "frequency_count.yaml");
    // Per-window error counts 2,1,1,2,1,0,1,3: four within three minutes
    // at 00:03; the window starts over, and four again at 00:08.
    assert_eq!(got, pairs(&[("03:00", ""), ("08:00", "")]), "{v:#}");
    // …and every search was a count.
    for s in es.searches() {
        assert_eq!(s.body["size"], 0, "{}", s.body);
    }
}

#[test]
fn once_sends_to_the_rules_own_webhook_and_never_twice_for_the_same_documents() {
    let es = recent(&[(20, json!({"user": "alice", "event": "login"}))]);
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "logins",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nfilter:\n- term: {{event: login}}\nalert:\n- slack\n- debug\nslack_webhook_url: \"{}\"\n",
            slack.webhook_url()
        ),
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let body = posts[0].body.to_string();
    assert!(body.contains("Logins"), "{body}");
    assert!(
        body.contains("user: alice"),
        "ElastAlert's default body: {body}"
    );
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.contains("Alert for Logins at "), "{log}");

    // The next run searches from where this one ended: nothing again.
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(slack.delivered().len(), 1);
}

#[test]
fn blacklist_and_whitelist_match_listed_and_unlisted_values() {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    rule(&p, "blocked", "yaml", &fixture("blacklist.yaml"));
    rule(&p, "unknown", "yaml", &fixture("whitelist.yaml"));
    let (got, v) = replay(&p, "blocked");
    assert_eq!(got, pairs(&[("01:00", "")]), "{v:#}");
    // The list reached the search, as ElastAlert's `filter_by_list` puts it.
    let must = &es.searches()[0].body["query"]["bool"]["filter"]["bool"]["must"];
    assert_eq!(
        must[1],
        json!({"query_string": {"query": "user:\"bob\" OR user:\"mallory\""}})
    );
    let (got, v) = replay(&p, "unknown");
    assert_eq!(got, pairs(&[("05:00", "")]), "{v:#}");
}

#[test]
fn change_remembers_the_last_value_per_key_across_windows() {
    let (_es, got, v) = scenario("country", "change.yaml");
    // alice: NL (00:00:30), NL, then US at 00:03:10; carol has no country.
    assert_eq!(got, pairs(&[("04:00", "alice")]), "{v:#}");
}

#[test]
fn cardinality_counts_distinct_values_within_the_timeframe() {
    let (_es, got, v) = scenario("users", "cardinality.yaml");
    // alice then bob (two users > 1) in the first window; alice again at
    // 00:03:10 and carol at 00:05:00 while bob (00:00:40) is within 5 min.
    assert_eq!(
        got,
        pairs(&[("01:00", ""), ("04:00", ""), ("05:00", "")]),
        "{v:#}"
    );
}

#[test]
fn flatline_matches_while_a_timeframe_holds_too_few_events() {
    let (_es, got, v) = scenario("quiet", "flatline.yaml");
    // web-2 logs at 00:00:15, 00:03:20 and 00:06:30: two minutes without
    // an event at 00:03, 00:06, 00:09 and, still quiet, 00:10.
    assert_eq!(
        got,
        pairs(&[("03:00", ""), ("06:00", ""), ("09:00", ""), ("10:00", "")]),
        "{v:#}"
    );
}

#[test]
fn new_term_learns_its_baseline_once_and_remembers_terms_across_restarts() {
    let es = recent(&[
        (3 * 86_400, json!({"user": "alice"})),
        (20, json!({"user": "alice"})),
        (15, json!({"user": "mallory"})),
    ]);
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "newuser",
        "yaml",
        "name: New user\ntype: new_term\nindex: logs-*\nfields: [user]\nterms_window_size: {days: 7}\nalert: debug\n",
    );
    esalert(p.path()).arg("once").assert().success();
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.contains("new_field: user"), "{log}");
    assert!(log.contains("user: mallory"), "{log}");
    assert!(
        !log.contains("user: alice"),
        "alice is in the baseline: {log}"
    );
    // Seven daily baseline searches, then the window's.
    let first = es.searches().len();
    assert_eq!(first, 8);
    // A restart: the terms come from the store, not a new baseline.
    esalert(p.path()).arg("once").assert().success();
    assert_eq!(es.searches().len(), first + 1);
}

#[test]
fn elastalert_yaml_beside_credentials_sets_rule_defaults_and_refuses_a_second_cluster() {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "logins",
        "yaml",
        &fixture("any_query_key.yaml").replace("realert:\n  minutes: 1\n", ""),
    );
    std::fs::write(
        p.path().join("elastalert.yaml"),
        "rules_folder: rules\nrun_every:\n  minutes: 2\nbuffer_time:\n  minutes: 15\nrealert:\n  minutes: 0\nes_host: localhost\n",
    )
    .unwrap();
    let (passed, text) = check(&p);
    assert!(!passed);
    assert!(
        text.contains("elastalert.yaml:8:1: `es_host`: credentials.json's \"elasticsearch\" section names the cluster already"),
        "{text}"
    );
    std::fs::write(
        p.path().join("elastalert.yaml"),
        "run_every:\n  minutes: 2\nrealert:\n  minutes: 0\n",
    )
    .unwrap();
    let (got, v) = replay(&p, "logins");
    assert_eq!(v["windows_searched"], 5, "{v:#}");
    assert_eq!(v["schedule"], "2m");
    // Two-minute windows; no realert, so alice twice in the first.
    assert_eq!(
        got,
        [
            ("02:00", "alice"),
            ("02:00", "bob"),
            ("04:00", "alice"),
            ("06:00", "carol")
        ]
        .iter()
        .map(|(t, k)| (format!("2026-01-01T00:{t}.000Z"), (*k).to_owned()))
        .collect(),
        "{v:#}"
    );
}

/// An ElastAlert deployment's config.yaml, as elastalert.yaml and without
/// credentials.json, names the cluster: its rules run as they are.
#[test]
fn elastalert_yaml_connection_settings_name_the_cluster_without_credentials_json() {
    let es = series_cluster();
    let port = es.url.rsplit(':').next().unwrap().trim_end_matches('/');
    let p = Project::new();
    rule(&p, "logins", "yaml", &fixture("any_query_key.yaml"));
    std::fs::write(
        p.path().join("elastalert.yaml"),
        format!(
            "rules_folder: rules\nrun_every:\n  minutes: 1\nbuffer_time:\n  minutes: 15\n\
             es_host: 127.0.0.1\nes_port: {port}\nuse_ssl: false\nes_username: elastic\n\
             es_password: pw\nes_conn_timeout: 5\nwriteback_index: elastalert_status\n"
        ),
    )
    .unwrap();
    assert!(!p.path().join("credentials.json").exists());
    let (passed, text) = check(&p);
    assert!(passed, "{text}");
    let (got, _) = replay(&p, "logins");
    assert!(!got.is_empty());
    // The stand-in saw ElastAlert's user: the settings were used.
    let seen = es.requests();
    assert!(
        seen.iter().any(|r| r
            .headers
            .get("authorization")
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.starts_with("Basic "))),
        "{seen:?}"
    );

    // A mistake in them points at its line, for every command.
    std::fs::write(
        p.path().join("elastalert.yaml"),
        "es_port: 9200\nuse_ssl: maybe\n",
    )
    .unwrap();
    let out = esalert(p.path()).arg("check").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success());
    assert!(
        text.contains("elastalert.yaml:1:1: the connection settings need `es_host`"),
        "{text}"
    );
    assert!(text.contains("elastalert.yaml:2:1: `use_ssl`"), "{text}");
}

#[test]
fn alert_text_jinja_renders_the_rule_and_the_match() {
    let es = recent(&[(
        20,
        json!({"user": "alice", "event": "login", "geo.country": "NL"}),
    )]);
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "jinja",
        "yaml",
        "name: Logins\nowner: soc\ntype: any\nindex: logs-*\nalert: debug\nalert_text_type: alert_text_jinja\n\
         alert_subject: \"{{ user }} logged in\"\n\
         alert_text: \"{{ user | upper }} from {{ _data['geo.country'] }}, for {{ owner }}\"\n",
    );
    rule(
        &p,
        "broken",
        "yaml",
        "name: b\ntype: any\nindex: logs-*\nalert: debug\nalert_text_type: alert_text_jinja\nalert_text: \"{% if %}\"\n",
    );
    let (_, text) = check(&p);
    assert!(
        text.contains("queries/broken.yaml:6:1: `alert_text` is not a valid Jinja template"),
        "{text}"
    );
    std::fs::remove_file(p.queries().join("broken.yaml")).unwrap();
    esalert(p.path()).arg("once").assert().success();
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.contains("ALICE from NL, for soc"), "{log}");
}

#[test]
fn top_count_keys_add_the_commonest_values_around_each_notified_match() {
    let (es, log) = once(
        &[
            (50, json!({"host": "b", "user": "z"})),
            (40, json!({"host": "a", "user": "x"})),
            (30, json!({"host": "a", "user": "y"})),
            (25, json!({"host": "a", "user": "x"})),
        ],
        "top",
        "name: Top users\ntype: any\nindex: logs-*\nquery_key: host\ntop_count_keys: [user]\nalert: debug\n",
    );
    // Host a's users, counted within host a (its query_key), commonest first.
    assert!(log.contains("user.keyword:\\nx: 2\\ny: 1\\n"), "{log}");
    assert!(log.contains("user.keyword:\\nz: 1\\n"), "{log}");
    let terms = es
        .searches()
        .into_iter()
        .filter(|s| s.body["aggs"]["counts"]["terms"]["field"] == "user.keyword")
        .count();
    assert_eq!(terms, 2, "one terms search per notified key");
}

#[test]
fn email_alerter_sends_elastalerts_subject_and_body_to_the_rules_recipients() {
    let es = recent(&[(20, json!({"user": "alice", "event": "login"}))]);
    let smtp = support::SmtpServer::start();
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "mail",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nquery_key: user\nalert: [email]\n\
             email: [soc@example.com, oncall@example.com]\ncc: boss@example.com\n\
             from_addr: elastalert@example.com\nsmtp_host: 127.0.0.1\nsmtp_port: {}\n",
            smtp.port
        ),
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.mail_from, "elastalert@example.com");
    let mut to = m.rcpt_tos.clone();
    to.sort();
    assert_eq!(
        to,
        ["boss@example.com", "oncall@example.com", "soc@example.com"]
    );
    assert!(
        m.data.contains("Subject: ElastAlert: Logins - alice"),
        "{}",
        m.data
    );
    assert!(m.data.contains("user: alice"), "{}", m.data);
}

#[test]
fn blacklist_reads_file_lists_beside_the_rule() {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    std::fs::create_dir(p.queries().join("lists")).unwrap();
    std::fs::write(p.queries().join("lists/blocked.txt"), "bob\nmallory  \n").unwrap();
    rule(
        &p,
        "blocked",
        "yaml",
        &fixture("blacklist.yaml").replace("- bob\n- mallory\n", "- \"!file lists/blocked.txt\"\n"),
    );
    rule(
        &p,
        "missing",
        "yaml",
        &fixture("blacklist.yaml").replace("- bob\n", "- \"!file nope.txt\"\n"),
    );
    let (_, text) = check(&p);
    assert!(
        text.contains("queries/missing.yaml:6:3: cannot read the list"),
        "{text}"
    );
    std::fs::remove_file(p.queries().join("missing.yaml")).unwrap();
    let (got, v) = replay(&p, "blocked");
    assert_eq!(got, pairs(&[("01:00", "")]), "{v:#}");
    let must = &es.searches()[0].body["query"]["bool"]["filter"]["bool"]["must"];
    assert_eq!(
        must[1],
        json!({"query_string": {"query": "user:\"bob\" OR user:\"mallory\""}})
    );
}

#[test]
fn scan_entire_timeframe_fills_a_stateful_rules_first_window() {
    let es = series_cluster();
    let p = Project::new();
    p.credentials(&es.url);
    let keys = |text: &str| {
        rule(&p, "errors", "yaml", text);
        let out = esalert(p.path())
            .args([
                "test",
                "errors",
                "--since",
                "2026-01-01T00:02:00Z",
                "--until",
                "2026-01-01T00:03:00Z",
                "--json",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["keys"].clone()
    };
    // One window, 00:02–00:03: web-1's earlier errors (00:00:10, 00:01:20)
    // are not seen…
    assert_eq!(keys(&fixture("frequency_query_key.yaml")), json!([]));
    // …unless the first run looks back over the timeframe.
    let scan = fixture("frequency_query_key.yaml") + "scan_entire_timeframe: true\n";
    assert_eq!(keys(&scan), json!(["web-1"]));
    let first =
        &es.searches()[es.searches().len() - 1].body["query"]["bool"]["filter"]["bool"]["must"][0];
    assert_eq!(
        first["range"]["@timestamp"]["gt"], "2026-01-01T00:00:00Z",
        "{first}"
    );
}

#[test]
fn command_alerter_runs_argv_without_a_shell_only_when_credentials_allow_it() {
    let es = recent(&[(20, json!({"user": "alice; rm -rf /", "event": "login"}))]);
    let p = Project::new();
    let out = p.path().join("ran.txt");
    rule(
        &p,
        "cmd",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nalert: [command]\n\
             command: [\"python3\", \"-c\", \"import sys; open(sys.argv[1], 'w').write(sys.argv[2] + chr(10) + sys.stdin.read())\", \"{}\", \"%(user)s\"]\n\
             pipe_match_json: true\nfail_on_non_zero_exit: true\n",
            out.display()
        ),
    );
    let creds = |allow: bool| {
        let c = json!({"elasticsearch": {"url": es.url, "timeout": "2s"}, "allow_command_alerter": allow});
        let path = p.path().join("credentials.json");
        std::fs::write(&path, c.to_string()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    // Off by default: nothing runs, and the log says how to allow it.
    creds(false);
    esalert(p.path()).arg("once").output().unwrap();
    assert!(!out.exists());
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.contains("allow_command_alerter"), "{log}");

    // Allowed: the match's field is one argument, whatever it holds, and
    // the match is the program's input. (A new state: the first match
    // was given up as undeliverable.)
    std::fs::remove_file(p.path().join("throttle_period.json")).ok();
    creds(true);
    let o = esalert(p.path()).arg("once").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let ran = std::fs::read_to_string(&out).unwrap();
    let (arg, stdin) = ran.split_once('\n').unwrap();
    assert_eq!(arg, "alice; rm -rf /");
    let m: Value = serde_json::from_str(stdin).unwrap();
    assert_eq!(m["user"], "alice; rm -rf /");
}

#[test]
fn email_alerter_reads_bcc_reply_to_the_auth_file_and_html_format() {
    let es = recent(&[(20, json!({"user": "alice", "event": "login"}))]);
    let smtp = support::SmtpServer::start_with_login("mailer", "s3cret");
    let p = Project::new();
    p.credentials(&es.url);
    // In a folder of its own: every YAML file directly in queries/ is a rule.
    std::fs::create_dir(p.queries().join("auth")).unwrap();
    std::fs::write(
        p.queries().join("auth/smtp.yaml"),
        "user: mailer\npassword: s3cret\n",
    )
    .unwrap();
    rule(
        &p,
        "mail",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nalert: [email]\n\
             email: soc@example.com\nbcc: [audit@example.com]\nemail_reply_to: noc@example.com\n\
             smtp_auth_file: auth/smtp.yaml\nemail_format: html\n\
             alert_text: '<b>{{0}}</b> logged in'\nalert_text_args: [user]\nalert_text_type: alert_text_only\n\
             from_addr: elastalert@example.com\nsmtp_host: 127.0.0.1\nsmtp_port: {}\n",
            smtp.port
        ),
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.login.as_deref(), Some("mailer"), "authenticated");
    let mut to = m.rcpt_tos.clone();
    to.sort();
    assert_eq!(to, ["audit@example.com", "soc@example.com"]);
    assert!(
        !m.data.contains("audit@example.com"),
        "Bcc is not a header: {}",
        m.data
    );
    assert!(m.data.contains("Reply-To: noc@example.com"), "{}", m.data);
    assert!(m.data.contains("Content-Type: text/html"), "{}", m.data);
    assert!(m.data.contains("<b>alice</b> logged in"), "{}", m.data);
    // The password is read from its file when sending: not in the store.
    let store = std::fs::read_to_string(p.path().join("throttle_period.json")).unwrap();
    assert!(!store.contains("s3cret"), "{store}");

    // A missing auth file is a `check` error at its line.
    rule(
        &p,
        "mail",
        "yaml",
        "name: Logins\ntype: any\nindex: logs-*\nalert: [email]\nemail: soc@example.com\nsmtp_auth_file: nope.yaml\n",
    );
    let (ok, text) = check(&p);
    assert!(!ok);
    assert!(
        text.contains("queries/mail.yaml:6:1: `smtp_auth_file`") && text.contains("nope.yaml"),
        "{text}"
    );
}

#[test]
fn slack_alerter_reads_username_icon_colour_title_and_link() {
    let es = recent(&[(20, json!({"user": "alice", "event": "login"}))]);
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "logins",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nalert: [slack]\nslack_webhook_url: \"{}\"\n\
             slack_username_override: esalert-bot\nslack_emoji_override: ':lock:'\n\
             slack_msg_color: warning\nslack_title: Login seen\n\
             slack_title_link: https://kibana.example.com/app/discover\n",
            slack.webhook_url()
        ),
    );
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1, "{posts:?}");
    let b = &posts[0].body;
    assert_eq!(b["username"], "esalert-bot", "{b}");
    assert_eq!(b["icon_emoji"], ":lock:", "{b}");
    assert_eq!(b["attachments"][0]["color"], "warning", "{b}");
    let header = b["blocks"][0].to_string();
    assert!(
        header.contains("<https://kibana.example.com/app/discover|Login seen>"),
        "{b}"
    );
    assert!(
        b["attachments"][0].to_string().contains("user: alice"),
        "{b}"
    );

    // Without slack_msg_color, ElastAlert's red `danger` bar.
    let p = Project::new();
    p.credentials(&es.url);
    rule(
        &p,
        "logins",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nalert: [slack]\nslack_webhook_url: \"{}\"\n",
            slack.webhook_url()
        ),
    );
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert_eq!(
        posts[1].body["attachments"][0]["color"], "danger",
        "{}",
        posts[1].body
    );
    assert!(posts[1].body.get("username").is_none());
}

/// The daemon picks up an edit of elastalert.yaml: its ElastAlert rules
/// are reloaded with the new defaults at the next rescan.
#[test]
fn the_daemon_reloads_elastalert_rules_when_elastalert_yaml_changes() {
    use support::daemon::{Daemon, has};
    let es = recent(&[]);
    let p = Project::new();
    p.credentials(&es.url);
    std::fs::write(
        p.path().join("elastalert.yaml"),
        "run_every:\n  minutes: 5\n",
    )
    .unwrap();
    rule(
        &p,
        "logins",
        "yaml",
        "name: Logins\ntype: any\nindex: logs-*\nalert: debug\n",
    );
    let d = Daemon::start(p.path(), &["--rescan", "1s"], &[]);
    let t = std::time::Duration::from_secs(15);
    let loaded = d.wait_line(t, "loaded", |l| {
        has(l, "alert", "logins") && has(l, "event", "loaded")
    });
    assert_eq!(loaded["schedule"], "5m", "{loaded:?}");
    std::fs::write(
        p.path().join("elastalert.yaml"),
        "run_every:\n  minutes: 2\n",
    )
    .unwrap();
    let reloaded = d.wait_line(t, "reloaded", |l| {
        has(l, "alert", "logins") && has(l, "event", "reloaded")
    });
    assert_eq!(reloaded["schedule"], "2m", "{reloaded:?}");
}

/// What real rule folders hold and ElastAlert runs: keys it ignores (a
/// SIEM's own tags, `doc_type`, another type's keys), the same cluster as
/// the global config, `${VAR}` from the environment. The rule runs; `check`
/// says what is ignored, at its line.
#[test]
fn rules_with_keys_elastalert_ignores_and_environment_variables_run() {
    let es = recent(&[(20, json!({"user": "alice", "event": "login"}))]);
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials(&es.url);
    let port = es.url.rsplit(':').next().unwrap().trim_end_matches('/');
    rule(
        &p,
        "logins",
        "yaml",
        &format!(
            "name: Logins\ntype: any\nindex: logs-*\nes_host: localhost\nes_port: {port}\n\
             doc_type: _doc\nmitre_attack_tactic: TA0001\nnum_events: 3\n\
             filter:\n- term: {{event: login}}\nalert: [slack]\nslack_webhook_url: ${{TEST_HOOK}}\n"
        ),
    );
    let out = esalert(p.path())
        .env("TEST_HOOK", slack.webhook_url())
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for want in [
        "queries/logins.yaml:4:1: warning: the rule's connection settings are ignored",
        "queries/logins.yaml:6:1: warning: `doc_type` does not apply to this rule type",
        "queries/logins.yaml:7:1: warning: unknown key `mitre_attack_tactic` (ElastAlert ignores it",
        "queries/logins.yaml:8:1: warning: `num_events` does not apply to this rule type",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    esalert(p.path())
        .env("TEST_HOOK", slack.webhook_url())
        .arg("once")
        .assert()
        .success();
    assert_eq!(
        slack.delivered().len(),
        1,
        "posted to the hook from the environment"
    );
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(log.contains("event=ignored"), "{log}");
}
