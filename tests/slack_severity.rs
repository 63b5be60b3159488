//! Slack destinations' colour bar per severity, through the real binary:
//! the destination's `severity`, an alert's own, and green once resolved.

mod support;

use serde_json::{Value, json};
use support::{EsStandIn, Project, Reply, SlackStandIn};

/// The colour bar of a post, and its attachment's blocks' types.
fn bar(post: &Value) -> (Option<&str>, Vec<&str>) {
    let att = &post["attachments"][0];
    let types = att["blocks"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["type"].as_str()).collect())
        .unwrap_or_default();
    (att["color"].as_str(), types)
}

#[test]
fn posts_carry_the_colour_of_their_severity_and_resolved_ones_are_green() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url},
            "slack": {"webhook_url": slack.webhook_url(), "severity": "warning"}})
        .to_string(),
    )
    .unwrap();
    p.alert(
        "disk",
        &json!({"index": "disk", "body": {}, "media": ["slack"], "subject": "disk", "message": "{{ hits.total.value }} full",
            "notify_resolved": true, "resolve_after": "0s"})
        .to_string(),
    );
    p.alert(
        "breach",
        &json!({"index": "breach", "body": {}, "media": ["slack"], "subject": "breach", "message": "m",
            "outputs": {"slack": {"severity": "critical"}}})
        .to_string(),
    );
    es.set_default(Reply::total_v8(2, "eq"));
    support::esalert_in(p.path(), "pw")
        .arg("once")
        .assert()
        .success();
    es.set_default(Reply::total_v8(0, "eq"));
    support::esalert_in(p.path(), "pw")
        .arg("once")
        .assert()
        .success();

    let posts: Vec<Value> = slack.delivered().into_iter().map(|p| p.body).collect();
    assert_eq!(posts.len(), 3, "{posts:#?}");
    let by_subject = |s: &str, resolved: bool| {
        posts
            .iter()
            .find(|p| {
                p["blocks"][0]["text"]["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(s) && t.contains("resolved") == resolved)
            })
            .unwrap_or_else(|| panic!("{s}: {posts:#?}"))
    };
    let disk = by_subject("disk", false);
    // The header stays on top; the message and context go in the bar.
    assert_eq!(disk["blocks"].as_array().unwrap().len(), 1, "{disk}");
    assert_eq!(disk["blocks"][0]["type"], "header");
    assert_eq!(bar(disk), (Some("#ecb22e"), vec!["section", "context"]));
    assert!(disk["attachments"].to_string().contains("2 full"), "{disk}");
    assert_eq!(bar(by_subject("breach", false)).0, Some("#d00000"));
    assert_eq!(bar(by_subject("disk", true)).0, Some("#2eb67d"));
}

#[test]
fn without_a_severity_posts_have_no_bar() {
    let es = EsStandIn::start();
    es.set_default(Reply::total_v8(1, "eq"));
    let slack = SlackStandIn::start();
    let p = Project::new();
    p.credentials_with(&es.url, Some(slack.webhook_credentials()), None);
    p.alert(
        "a",
        &json!({"index": "a", "body": {}, "message": "m"}).to_string(),
    );
    support::esalert_in(p.path(), "pw")
        .arg("once")
        .assert()
        .success();
    let posts = slack.delivered();
    assert_eq!(posts.len(), 1);
    assert!(
        posts[0].body.get("attachments").is_none(),
        "{:?}",
        posts[0].body
    );
    assert_eq!(posts[0].body["blocks"][1]["type"], "section");
}
