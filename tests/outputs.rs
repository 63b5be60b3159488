//! Named destinations (`outputs` in credentials.json) through the real
//! binary: an alert's `media` names them, its `outputs` section overrides
//! what its type allows, and esalert's notices reach the ones people read.

mod support;

use serde_json::{Value, json};
use support::{EsStandIn, Project, Reply, SlackStandIn};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

fn credentials(p: &Project, es: &EsStandIn, outputs: Value) {
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url}, "outputs": outputs}).to_string(),
    )
    .unwrap();
}

#[test]
fn two_alerts_reach_two_slack_webhooks_by_name() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let (soc, ops) = (SlackStandIn::start(), SlackStandIn::start());
    let p = Project::new();
    credentials(
        &p,
        &es,
        json!({"soc-slack": {"type": "slack", "webhook_url": soc.webhook_url()},
               "ops-slack": {"type": "slack", "webhook_url": ops.webhook_url()}}),
    );
    p.alert(
        "intrusion",
        &json!({"index": "a", "body": {}, "media": ["soc-slack"], "message": "{{ hits.total.value }} intrusions"}).to_string(),
    );
    p.alert(
        "disk",
        &json!({"index": "b", "body": {}, "media": ["ops-slack"], "message": "disk {{ hits.total.value }}"}).to_string(),
    );
    esalert(p.path()).arg("once").assert().success();
    let (s, o) = (soc.delivered(), ops.delivered());
    assert_eq!(s.len(), 1, "{s:#?}");
    assert_eq!(o.len(), 1, "{o:#?}");
    assert!(s[0].body.to_string().contains("2 intrusions"));
    assert!(o[0].body.to_string().contains("disk 2"));
}

#[test]
fn an_alert_overrides_what_its_destination_allows() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(2, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    let mut bot = slack.bot_credentials("#general");
    bot["type"] = json!("slack");
    credentials(&p, &es, json!({"chat": bot}));
    p.alert(
        "intrusion",
        &json!({"index": "a", "body": {}, "media": ["chat"], "outputs": {"chat": {"channel": "#soc"}},
            "message": "m"}).to_string(),
    );
    esalert(p.path()).arg("once").assert().success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "#soc");
}

#[test]
fn a_broken_destination_stops_esalert_with_its_setting_named() {
    let es = EsStandIn::start();
    let p = Project::new();
    credentials(
        &p,
        &es,
        json!({"x": {"type": "slack", "webhook_url": "https://hooks.example/1", "colour": "red"}}),
    );
    let out = esalert(p.path()).arg("once").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("outputs.x") && err.contains("colour"), "{err}");
    credentials(&p, &es, json!({"x": {"type": "pagerdoody"}}));
    let out = esalert(p.path()).arg("once").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("outputs.x.type: unknown destination type") && err.contains("pagerdoody"),
        "{err}"
    );
}

/// A destination a rule configures itself (`Message::Inline`) is built from
/// the same registry on first use and delivers like a named one.
#[tokio::test]
async fn a_destination_a_rule_configures_itself_is_built_on_first_use() {
    esalert::install_crypto_provider();
    let slack = SlackStandIn::start();
    let creds = esalert::config::Credentials::parse(
        std::path::Path::new("credentials.json"),
        &json!({"elasticsearch": {"url": "http://127.0.0.1:1"}}).to_string(),
        &|_| None,
    )
    .unwrap();
    let notifiers = esalert::notify::Notifiers::from_credentials(&creds).unwrap();
    let es = esalert::search::EsClient::new(&creds.elasticsearch).unwrap();
    let sinks = esalert::sinks::Sinks::new(&notifiers, &es);
    let n = esalert::notify::Notification::of(
        "rule",
        esalert::render::Rendered::from_data("subject".into(), "inline text".into()),
        1,
        chrono::Utc::now(),
    );
    let m = esalert::sinks::Message::Inline {
        destination: json!({"type": "slack", "webhook_url": slack.webhook_url()}),
        notification: n.clone(),
    };
    sinks.send(&m).await.unwrap();
    sinks.send(&m).await.unwrap();
    assert_eq!(slack.delivered().len(), 2);
    assert!(
        slack.delivered()[0]
            .body
            .to_string()
            .contains("inline text")
    );
    // A broken one is a permanent error naming the setting.
    let bad = esalert::sinks::Message::Inline {
        destination: json!({"type": "slack", "webhok_url": "x"}),
        notification: n,
    };
    let e = sinks.send(&bad).await.unwrap_err();
    assert!(!e.is_transient());
    assert!(e.to_string().contains("webhok_url"), "{e}");
}
