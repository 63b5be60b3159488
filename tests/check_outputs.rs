//! `esalert check` against credentials.json's destinations, through the
//! binary: an alert's `media` and `outputs` against the destinations that
//! exist and what their types let an alert set, every destination's own
//! problems at their setting, and `--online` asking the cluster and every
//! destination whether they accept esalert's credentials.

mod support;

use serde_json::json;
use support::{EsStandIn, Project, Reply, SlackStandIn, SmtpServer, check};

fn write_credentials(p: &Project, text: &str) {
    std::fs::write(p.path().join("credentials.json"), text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let path = p.path().join("credentials.json");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// credentials.json with a Slack webhook `chat` and a history `hist`.
const CHAT_AND_HISTORY: &str = r#"{"elasticsearch": {"url": "http://127.0.0.1:9"},
 "outputs": {"chat": {"type": "slack", "webhook_url": "https://hooks.example/1"},
             "hist": {"type": "elasticsearch"}}}"#;

/// `esalert check` of one alert file against [`CHAT_AND_HISTORY`]: it
/// fails; the lines it printed.
fn check_alert(alert: &str) -> Vec<String> {
    let p = Project::new();
    write_credentials(&p, CHAT_AND_HISTORY);
    p.alert("intrusion", alert);
    let (code, lines) = check(p.path(), &[]);
    assert_eq!(code, 1, "{lines:#?}");
    lines
}

#[test]
fn a_media_entry_naming_no_destination_is_an_error_at_that_entry() {
    let lines = check_alert(
        r#"{
  "index": "logs-*", "message": "m",
  "body": {},
  "media": ["chat",
            "caht", "email"]
}"#,
    );
    assert_eq!(
        lines,
        [
            "queries/intrusion.json:5:13: no destination named \"caht\" in credentials.json; the destinations are: chat, hist",
            "queries/intrusion.json:5:21: medium \"email\" is not configured in credentials.json; add a \"email\" section there or remove it from `media`",
        ],
        "{lines:#?}"
    );
}

#[test]
fn alert_settings_are_checked_against_the_destinations_type_and_media() {
    let lines = check_alert(
        r##"{
  "index": "logs-*", "message": "m",
  "body": {},
  "media": ["chat", "hist"],
  "outputs": {
    "chat": {"channel": "#soc", "to": ["soc@example.com"], "severity": "urgent"},
    "hist": {"index": "mine"},
    "oncall": {"severity": "critical"}
  }
}"##,
    );
    assert_eq!(
        lines,
        [
            "queries/intrusion.json:6:33: `to` can't be set by an alert for \"chat\" (a slack destination); an alert may set: channel, severity, color, title, title_link, username, icon_emoji, icon_url",
            "queries/intrusion.json:6:60: `severity` must be one of critical, error, warning, info",
            "queries/intrusion.json:7:14: `index` can't be set by an alert for \"hist\" (a elasticsearch destination); it takes no settings from alerts",
            "queries/intrusion.json:8:5: `outputs.oncall` is for a destination this alert does not send to; add \"oncall\" to `media`, or remove it",
        ],
        "{lines:#?}"
    );
}

#[test]
fn every_destinations_problems_are_reported_at_their_setting() {
    let p = Project::new();
    write_credentials(
        &p,
        r##"{
  "elasticsearch": {"url": "http://127.0.0.1:9"},
  "outputs": {
    "a": {"type": "slack", "webhook_url": "https://hooks.example/1", "colour": "red"},
    "b": {"type": "pagerdoody"},
    "c": {"type": "elasticsearch", "index": "History-%Y"},
    "d": {"type": "slack", "webhook_url": "https://hooks.example/2", "channel": "#ops"},
    "e": {"webhook_url": "https://hooks.example/3"},
    "f": {"type": "elasticsearch", "url": "history.example:9200"},
    "g": {"type": "slack", "webhook_url": "https://hooks.example/4", "severity": "urgent"}
  }
}"##,
    );
    p.alert(
        "ok",
        r#"{"index": "a", "body": {}, "media": ["d"], "message": "m"}"#,
    );
    let (code, lines) = check(p.path(), &[]);
    assert_eq!(code, 1);
    let expect = [
        "credentials.json:4:70: outputs.a.colour: unknown field `colour`",
        "credentials.json:5:11: outputs.b.type: unknown destination type \"pagerdoody\"",
        "credentials.json:6:36: outputs.c.index: `index` must be lower case",
        "credentials.json:7:70: outputs.d.channel: `channel` is ignored",
        "credentials.json:8:5: outputs.e.type: a destination needs a \"type\"",
        "credentials.json:9:36: outputs.f.url: `url` must be an http:// or https:// URL",
        "credentials.json:10:70: outputs.g.severity: unknown variant `urgent`",
    ];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(expect) {
        assert!(
            line.starts_with(want),
            "{line}\n  wanted {want}…\n{lines:#?}"
        );
    }
}

/// A cluster stand-in whose `_cluster/health` answers `health`.
fn cluster(health: Reply) -> EsStandIn {
    let es = EsStandIn::start();
    es.respond_with(move |r| (r.path == "/_cluster/health").then(|| health.clone()));
    es
}

fn green() -> Reply {
    Reply::json(
        200,
        json!({"cluster_name": "esalert-test", "status": "green", "timed_out": false,
            "number_of_nodes": 1, "active_shards_percent_as_number": 100.0}),
    )
}

#[test]
fn online_asks_the_cluster_and_every_destination() {
    let es = cluster(green());
    let history = cluster(green());
    let slack = SlackStandIn::start();
    let smtp = SmtpServer::start();
    let p = Project::new();
    let mut bot = slack.bot_credentials("#ops");
    bot["type"] = json!("slack");
    let mut mail = smtp.credentials();
    mail["type"] = json!("email");
    write_credentials(
        &p,
        &json!({"elasticsearch": {"url": es.url}, "slack": slack.webhook_credentials(),
            "outputs": {"ops": bot, "mail": mail,
                "hist": {"type": "elasticsearch", "url": history.url}}})
        .to_string(),
    );
    p.alert(
        "a",
        r#"{"index": "a", "body": {}, "media": ["ops"], "message": "m"}"#,
    );
    let (code, lines) = check(p.path(), &["--online"]);
    assert_eq!(
        lines,
        [
            format!("online: cluster: ok ({}, status green)", es.url),
            "online: hist: ok".into(),
            "online: mail: ok".into(),
            "online: ops: ok".into(),
            "online: slack: ok (an incoming webhook: it can't be asked anything without posting, so it was not probed)".into(),
        ],
        "{lines:#?}"
    );
    assert_eq!(code, 0);
    assert_eq!(slack.auth_tests(), ["xoxb-test-token"]);
    assert!(slack.all_posts().is_empty(), "a health check posted");
    assert!(smtp.received().is_empty(), "a health check sent mail");
    let asked = |s: &EsStandIn| {
        s.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/_cluster/health")
            .count()
    };
    assert_eq!((asked(&es), asked(&history)), (1, 1));
}

#[test]
fn online_names_each_destination_that_refuses_and_fails() {
    let es = cluster(Reply::unauthorized());
    let history = cluster(Reply::json(
        200,
        json!({"cluster_name": "h", "status": "red", "timed_out": false}),
    ));
    let slack = SlackStandIn::start();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Project::new();
    let mut bot = slack.bot_credentials("#ops");
    bot["type"] = json!("slack");
    bot["token"] = json!("xoxb-revoked");
    write_credentials(
        &p,
        &json!({"elasticsearch": {"url": es.url},
            "email": {"smtp_host": "127.0.0.1", "smtp_port": closed, "security": "none",
                "from": "esalert <alerts@example.com>", "to": ["soc@example.com"], "timeout": "3s"},
            "outputs": {"ops": bot, "hist": {"type": "elasticsearch", "url": history.url}}})
        .to_string(),
    );
    p.alert(
        "a",
        r#"{"index": "a", "body": {}, "media": ["ops"], "message": "m"}"#,
    );
    let (code, lines) = check(p.path(), &["--online"]);
    assert_eq!(code, 1, "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(
        lines[0].starts_with("online: cluster: HTTP 401 from the cluster"),
        "{lines:#?}"
    );
    assert!(
        lines[1].starts_with("online: email: SMTP: ") && lines[1].contains("onnect"),
        "{lines:#?}"
    );
    assert_eq!(
        lines[2],
        format!(
            "online: hist: {} is red: some primary shards are unassigned",
            history.url
        )
    );
    assert_eq!(lines[3], "online: ops: slack error invalid_auth");
    assert_eq!(slack.auth_tests(), ["xoxb-revoked"]);
}
