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
fn posts_carry_the_colour_of_their_severity_and_resolved_ones_are_green_and_others_none() {
    let es = EsStandIn::start();
    let slack = SlackStandIn::start();
    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url},
            "slack": {"webhook_url": slack.webhook_url(), "severity": "warning"},
            "outputs": {"plain": {"type": "slack", "webhook_url": slack.webhook_url()}}})
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
    p.alert(
        "plain",
        &json!({"index": "plain", "body": {}, "media": ["plain"], "subject": "plain", "message": "m"})
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
    assert_eq!(posts.len(), 4, "{posts:#?}");
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
    // A destination without a severity: no bar, the blocks as they were.
    let plain = by_subject("plain", false);
    assert!(plain.get("attachments").is_none(), "{plain}");
    assert_eq!(plain["blocks"][1]["type"], "section");
}
