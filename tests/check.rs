//! `esalert check` catches what would fail at run time, every problem of a
//! file at once, each at its `path:line:col`, through the built binary.

mod support;

use serde_json::json;
use support::{Project, check};

#[test]
fn three_mistakes_in_one_file_are_three_lines_in_one_round() {
    let p = Project::new();
    p.alert(
        "three",
        r##"{
  "index": "logs-*",
  "body": {},
  "throttle": "5m",
  "active": "yes",
  "message": "{{ hits.total }} {% if %}"
}"##,
    );
    let (code, lines) = check(p.path(), &["--queries-only"]);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("queries/three.json:4:3: unknown field `throttle`"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with(
            "queries/three.json:5:3: invalid type: string \"yes\", expected a boolean"
        ),
        "{lines:#?}"
    );
    // The syntax error points into the template, at the `%}` after `if`.
    assert!(
        lines[2].starts_with("queries/three.json:6:38: template syntax error in message"),
        "{lines:#?}"
    );
}

#[test]
fn names_that_never_exist_are_errors_at_their_expression() {
    let p = Project::new();
    p.alert(
        "names",
        r##"{
  "index": "logs-*",
  "body": {"query": {"range": {"@timestamp": {"gte": "{{ window.begin }}"}}}},
  "subject": "[{{ alert.nmae }}] {{ group.kee }}",
  "message": "{{ alert.name }} {{ window.start }} {{ group.item.host.name }} {{ hits.total.value }}"
}"##,
    );
    let (code, lines) = check(p.path(), &["--queries-only"]);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines.contains(&"queries/names.json:4:19: template subject uses `alert.nmae`, which never exists: `alert` has name, description, index".to_owned()),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/names.json:4:37: ")
                && l.contains("`group.kee`")
                && l.contains("`group` has key, item, count")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/names.json:3:58: template body.query.range.@timestamp.gte uses `window.begin`, which never exists: `window` has start, end")),
        "{lines:#?}"
    );
}

#[test]
fn saved_responses_show_names_the_response_lacks() {
    let p = Project::new();
    p.alert(
        "ssh",
        "{\n  \"index\": \"logs-*\",\n  \"body\": {},\n  \"subject\": \"{{ hits.total.value }} logins\",\n  \"message\": \"Host:\\n{{ hits.hits[0]._source.host.name }} user {% for h in hits.hits %}{{ h._source.user.name }}{% endfor %}\"\n}",
    );
    // An alert without a saved response is not rendered.
    p.alert(
        "other",
        r##"{"index": "a", "body": {}, "message": "{{ hits.x.y }}"}"##,
    );
    let responses = p.path().join("saved");
    std::fs::create_dir(&responses).unwrap();
    std::fs::write(
        responses.join("ssh.json"),
        json!({"hits": {"total": {"value": 1}, "hits": [{"_source": {"user": {"name": "root"}}}]}})
            .to_string(),
    )
    .unwrap();
    let (code, lines) = check(p.path(), &["--queries-only", "--responses", "saved"]);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "queries/ssh.json:5:25: message: hits.hits[0]._source.host.name is undefined in saved/ssh.json"
        ]
    );

    // The default directory is used when present and skipped when absent.
    let (code, lines) = check(p.path(), &["--queries-only"]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}");
    let default = p.path().join("tests/fixtures/responses");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(
        default.join("ssh.json"),
        json!({"hits": {"total": {"value": 2}, "hits": [{"_source": {"host": {"name": "h"}, "user": {"name": "u"}}}]}})
            .to_string(),
    )
    .unwrap();
    std::fs::write(default.join("other.json"), r##"{"hits": {}}"##).unwrap();
    let (code, lines) = check(p.path(), &["--queries-only"]);
    assert_eq!(code, 1);
    assert_eq!(
        lines,
        [
            "queries/other.json:1:43: message: hits.x.y is undefined in tests/fixtures/responses/other.json"
        ]
    );

    // A directory asked for by name must exist.
    let (code, lines) = check(p.path(), &["--queries-only", "--responses", "nowhere"]);
    assert_eq!(code, 1);
    assert!(
        lines.iter().any(|l| l.starts_with("nowhere: --responses")),
        "{lines:#?}"
    );
}

#[test]
fn credentials_that_would_fail_at_run_time_are_reported_with_positions() {
    let p = Project::new();
    p.alert(
        "chan",
        "{\"index\": \"a\", \"body\": {}, \"message\": \"m\",\n  \"slack\": {\"channel\": \"#soc\"}}",
    );
    std::fs::write(p.path().join("not-a-cert.pem"), "hello\n").unwrap();
    let creds = p.path().join("credentials.json");
    std::fs::write(
        &creds,
        r##"{
  "elasticsearch": {
    "url": "localhost:9200",
    "ca_cert": "not-a-cert.pem"
  },
  "slack": {
    "webhook_url": "hooks.slack.com/services/T0/B0/XYZ-secret",
    "channel": "#alerts"
  }
}"##,
    )
    .unwrap();
    let (code, lines) = check(p.path(), &[]);
    assert_eq!(code, 1);
    let has = |prefix: &str, fragment: &str| {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(prefix) && l.contains(fragment)),
            "wanted {prefix} … {fragment} in {lines:#?}"
        );
    };
    has(
        "credentials.json:3:5: ",
        "`elasticsearch.url` must start with http:// or https://",
    );
    has("credentials.json:4:5: ", "holds no PEM certificate");
    has(
        "credentials.json:7:5: ",
        "`slack.webhook_url` must start with http:// or https://",
    );
    has("credentials.json:8:5: ", "`slack.channel` is ignored");
    has(
        "queries/chan.json:2:13: ",
        "`slack.channel` is ignored: credentials.json posts to Slack through an incoming webhook",
    );
    assert_eq!(lines.len(), 5, "one line per problem: {lines:#?}");
    assert!(
        lines.iter().all(|l| !l.contains("XYZ-secret")),
        "the webhook URL is a secret: {lines:#?}"
    );

    // A missing ca_cert; a bot token makes channels meaningful.
    std::fs::write(
        &creds,
        r##"{
  "elasticsearch": {"url": "https://localhost:9200",
    "ca_cert": "missing.pem"},
  "slack": {"token": "xoxb-1", "channel": "#alerts"}
}"##,
    )
    .unwrap();
    let (code, lines) = check(p.path(), &[]);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with("credentials.json:3:5: cannot read ca_cert missing.pem"),
        "{lines:#?}"
    );

    std::fs::write(
        &creds,
        r##"{"elasticsearch": {"url": "HTTPS://localhost:9200"}, "slack": {"token": "xoxb-1", "channel": "#alerts"}}"##,
    )
    .unwrap();
    let (code, lines) = check(p.path(), &[]);
    assert_eq!((code, lines.len()), (0, 0), "{lines:#?}");
}

#[test]
fn a_watch_reports_every_problem_too() {
    let p = Project::new();
    p.alert(
        "w",
        "{\n  \"trigger\": {\"schedule\": {\"interval\": \"5m\"}},\n  \"input\": {\"simple\": {}},\n  \"condtion\": {\"always\": {}},\n  \"actions\": {\n    \"log\": {\"logging\": {\"text\": \"{{ctx.payload}}\"}, \"throttle_perod\": \"5m\"},\n    \"page\": {\"pagerduty\": {}}\n  }\n}",
    );
    let (code, lines) = check(p.path(), &["--queries-only"]);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[0].starts_with("queries/w.json:4:3: unknown watch key `condtion`"),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("queries/w.json:6:53: ")
            && l.contains("`throttle_perod` is not an action key")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("queries/w.json:7:14: ") && l.contains("\"pagerduty\"")),
        "{lines:#?}"
    );
}
