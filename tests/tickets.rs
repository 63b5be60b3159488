//! Ticket destinations through the real binary against stand-ins that
//! check requests as the providers do: TheHive alerts (one per incident
//! and window, a retried window never a duplicate, observables from the
//! group key) and Jira issues (one open issue per incident, repeats and
//! resolutions as comments, a new issue once it is done).

mod support;

use serde_json::{Value, json};
use support::daemon::has;
use support::jira::JiraStandIn;
use support::peer::{Request, Told};
use support::thehive::HiveStandIn;
use support::{EsStandIn, Project, buckets, grouped_alert, log_lines};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

/// [`grouped_alert`] firing on every run, resolving as soon as a key is
/// gone, with response values that look like markup; `extra` keys are
/// merged over it.
fn burst(media: &str, extra: Value) -> String {
    let mut a = json!({
        "message": "{{ group.count }} failed logins from {{ group.key }}\n[click](http://evil.example) *now*",
        "throttle_period": "0s",
        "notify_resolved": true,
        "resolve_after": "0s",
        "media": [media],
    });
    if let (Value::Object(a), Value::Object(e)) = (&mut a, extra) {
        a.extend(e);
    }
    grouped_alert(a)
}

fn project(es: &EsStandIn, outputs: Value, alert: &str) -> Project {
    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url}, "outputs": outputs}).to_string(),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            p.path().join("credentials.json"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    }
    p.alert("burst", alert);
    p
}

/// A cluster where 192.0.2.200 is always over the limit, and a project
/// whose `burst` alert sends to the destination `dest` named `name`.
fn one_attacker(name: &str, dest: Value) -> (EsStandIn, Project) {
    let es = EsStandIn::start();
    es.set_default(buckets(&[("192.0.2.200", 90)]));
    let p = project(&es, json!({ name: dest }), &burst(name, json!({})));
    (es, p)
}

/// Waits for the wall clock to enter a later second than now, so the next
/// run's window ends in another second (TheHive's sourceRef has seconds).
fn next_second() {
    let now = chrono::Utc::now().timestamp();
    support::wait_until("the next second", || chrono::Utc::now().timestamp() > now);
}

/// alerts.log holds none of `secrets`.
fn assert_no_secrets(p: &Project, secrets: &[&str]) {
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    for s in secrets {
        assert!(!log.contains(s), "alerts.log shows a secret:\n{log}");
    }
}

fn posts(hive: &HiveStandIn) -> Vec<Request> {
    hive.requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/alert")
        .collect()
}

#[test]
fn thehive_gets_one_alert_per_window_with_the_entity_as_observable() {
    let es = EsStandIn::start();
    let hive = support::thehive::start();
    hive.require_organisation("acme");
    let p = project(
        &es,
        json!({"soc-hive": hive.destination(json!({
            "organisation": "acme", "tlp": 3, "tags": ["siem"],
            "observables": [{"dataType": "ip", "data": "{{ group.key }}"},
                            {"dataType": "other", "data": "esalert/{{alert.name}}"}]}))}),
        &burst(
            "soc-hive",
            json!({"outputs": {"soc-hive": {"severity": "high"}}}),
        ),
    );
    es.set_default(buckets(&[("198.51.100.77", 40)]));
    esalert(p.path()).arg("once").assert().success();
    let alerts = hive.alerts();
    assert_eq!(alerts.len(), 1, "{:#?}", hive.requests());
    let a = &alerts[0];
    assert_eq!(a["type"], "esalert");
    assert_eq!(a["source"], "esalert");
    assert_eq!(a["title"], "failed logins from 198.51.100.77");
    assert_eq!(a["severity"], 3, "the alert's override");
    assert_eq!(a["tlp"], 3);
    assert_eq!(a["tags"], json!(["siem", "esalert:burst"]));
    assert_eq!(
        a["observables"],
        json!([{"dataType": "ip", "data": "198.51.100.77"},
               {"dataType": "other", "data": "esalert/burst"}])
    );
    // The message is shown as written: the link is not a link.
    let d = a["description"].as_str().unwrap();
    assert!(
        d.starts_with(
            "```text\n40 failed logins from 198.51.100.77\n[click](http://evil.example) *now*\n```"
        ),
        "{d}"
    );
    let first_ref = a["sourceRef"].as_str().unwrap().to_owned();
    let (incident, secs) = first_ref.rsplit_once('-').unwrap();
    assert!(incident.starts_with("esalert-burst-"), "{first_ref}");
    assert!(secs.parse::<i64>().is_ok(), "{first_ref}");

    // The same entity in the next window: a new alert, the same incident.
    next_second();
    esalert(p.path()).arg("once").assert().success();
    let alerts = hive.alerts();
    assert_eq!(alerts.len(), 2, "{:#?}", hive.requests());
    let second_ref = alerts[1]["sourceRef"].as_str().unwrap();
    assert_ne!(second_ref, first_ref);
    assert!(
        second_ref.starts_with(&format!("{incident}-")),
        "{second_ref}"
    );

    // It goes away: TheHive alerts are closed by analysts, nothing is sent.
    es.set_default(buckets(&[]));
    let before = hive.requests().len();
    esalert(p.path()).arg("once").assert().success();
    assert!(
        log_lines(p.path())
            .iter()
            .any(|l| has(l, "event", "resolved") && has(l, "key", "198.51.100.77")),
        "the resolution happened"
    );
    assert_eq!(hive.requests().len(), before, "{:#?}", hive.requests());
    assert_no_secrets(&p, &[support::thehive::KEY]);
}

#[test]
fn a_thehive_retry_after_a_lost_answer_is_not_a_duplicate() {
    let hive = support::thehive::start();
    let (_es, p) = one_attacker("soc-hive", hive.destination(json!({})));
    // TheHive stores the alert, then the answer is a 500.
    hive.tell(Told::StoreThenFail);
    esalert(p.path()).arg("once").assert().success();
    let tries = posts(&hive);
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0].status, 500);
    assert_eq!(tries[1].status, 400, "the retry is refused as a duplicate");
    assert_eq!(tries[0].body["sourceRef"], tries[1].body["sourceRef"]);
    assert_eq!(hive.alerts().len(), 1);
    let lines = log_lines(p.path());
    assert!(
        lines
            .iter()
            .any(|l| has(l, "outcome", "fired") && has(l, "media", "soc-hive")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| has(l, "outcome", "failed")),
        "{lines:#?}"
    );
}

#[test]
fn thehive_refusals_are_logged_with_its_message_and_not_retried() {
    let hive = support::thehive::start();
    let (_es, p) = one_attacker("soc-hive", hive.destination(json!({})));
    hive.tell(Told::Reject("Invalid value for customFields"));
    esalert(p.path()).arg("once").assert().code(1);
    assert_eq!(posts(&hive).len(), 1, "a refusal is not retried");
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(
        log.contains("TheHive refused the alert: BadRequest: Invalid value for customFields"),
        "{log}"
    );
    assert!(hive.alerts().is_empty());
    assert_no_secrets(&p, &[support::thehive::KEY]);
}

fn jira_issue_posts(jira: &JiraStandIn) -> usize {
    jira.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/rest/api/2/issue")
        .count()
}

#[test]
fn jira_opens_one_issue_per_incident_and_comments_while_it_is_open() {
    let es = EsStandIn::start();
    let jira = support::jira::start();
    let p = project(
        &es,
        json!({"tickets": jira.destination(json!({"labels": ["ops"], "components": ["SIEM"]}))}),
        &burst(
            "tickets",
            json!({"outputs": {"tickets": {"priority": "High", "labels": ["siem"]}}}),
        ),
    );
    es.set_default(buckets(&[("198.51.100.77", 40)]));
    esalert(p.path()).arg("once").assert().success();
    let issues = jira.issues();
    assert_eq!(issues.len(), 1, "{:#?}", jira.requests());
    let f = &issues[0].fields;
    assert_eq!(f["summary"], "failed logins from 198.51.100.77");
    assert_eq!(f["issuetype"]["name"], "Task");
    assert_eq!(f["priority"]["name"], "High");
    assert_eq!(f["components"], json!([{"name": "SIEM"}]));
    let labels: Vec<&str> = f["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(labels[0].starts_with("esalert-burst-"), "{labels:?}");
    assert_eq!(
        labels[1..],
        ["esalert", "siem"],
        "the alert's labels replace the destination's"
    );
    assert_eq!(
        f["description"],
        "{noformat}\n40 failed logins from 198.51.100.77\n[click](http://evil.example) *now*\n{noformat}"
    );
    let search = jira
        .requests()
        .into_iter()
        .find(|r| r.path == "/rest/api/2/search")
        .unwrap();
    assert!(search.query.contains("statusCategory"), "{}", search.query);

    // A repeat is a comment on the open issue.
    esalert(p.path()).arg("once").assert().success();
    let issues = jira.issues();
    assert_eq!(issues.len(), 1, "{:#?}", jira.requests());
    assert_eq!(issues[0].comments.len(), 1);
    assert!(issues[0].comments[0].contains("40 failed logins from 198.51.100.77"));

    // Once it is done, the next match opens a new issue.
    jira.set_status("SOC-1", "Done");
    esalert(p.path()).arg("once").assert().success();
    let issues = jira.issues();
    assert_eq!(issues.len(), 2, "{:#?}", jira.requests());
    assert_eq!(issues[1].key, "SOC-2");
    assert_eq!(
        issues[1].fields["labels"][0], labels[0],
        "the same incident"
    );
    assert_eq!(
        issues[0].comments.len(),
        1,
        "nothing more on the done issue"
    );

    // It goes away: a comment on the open issue, which stays open.
    es.set_default(buckets(&[]));
    esalert(p.path()).arg("once").assert().success();
    let issues = jira.issues();
    assert_eq!(issues.len(), 2);
    assert_eq!(issues[1].comments.len(), 1, "{:#?}", issues[1]);
    assert!(
        issues[1].comments[0].contains("[resolved] failed logins from 198.51.100.77"),
        "{}",
        issues[1].comments[0]
    );
    assert_eq!(issues[1].status, "To Do");
    assert_no_secrets(&p, &[support::jira::API_TOKEN]);
}

#[test]
fn jira_refusals_are_logged_with_its_messages_and_not_retried() {
    let jira = support::jira::start();
    let (es, p) = one_attacker("tickets", jira.destination(json!({})));
    // The search is answered; the new issue is refused.
    jira.tell(Told::Accept);
    jira.tell(Told::Reject("Issue type is not available for this project"));
    esalert(p.path()).arg("once").assert().code(1);
    assert_eq!(jira_issue_posts(&jira), 1, "a refusal is not retried");
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(
        log.contains("Jira refused: Issue type is not available for this project"),
        "{log}"
    );
    assert_no_secrets(&p, &[support::jira::API_TOKEN]);
    // A field error names the field, as Jira does.
    let p = project(
        &es,
        json!({"tickets": jira.destination(json!({}))}),
        &burst(
            "tickets",
            json!({"outputs": {"tickets": {"priority": "Urgent"}}}),
        ),
    );
    esalert(p.path()).arg("once").assert().code(1);
    assert_eq!(jira_issue_posts(&jira), 2);
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(
        log.contains("Jira refused: priority: The priority selected is invalid."),
        "{log}"
    );
    assert!(jira.issues().is_empty());
    assert_no_secrets(&p, &[support::jira::API_TOKEN]);
}

#[test]
fn jira_cloud_without_the_old_search_and_a_data_center_token() {
    let jira = support::jira::start();
    jira.retire_search();
    let (_es, p) = one_attacker(
        "tickets",
        json!({"type": "jira", "url": jira.url, "project": "SOC", "token": support::jira::PAT}),
    );
    esalert(p.path()).arg("once").assert().success();
    esalert(p.path()).arg("once").assert().success();
    let issues = jira.issues();
    assert_eq!(issues.len(), 1, "{:#?}", jira.requests());
    assert_eq!(issues[0].comments.len(), 1, "found through search/jql");
    assert!(
        jira.requests()
            .iter()
            .any(|r| r.path == "/rest/api/2/search/jql" && r.status == 200)
    );
    assert_no_secrets(&p, &[support::jira::PAT]);
}

#[test]
fn a_rate_limit_is_waited_out_and_a_wrong_token_is_not_retried() {
    let hive = support::thehive::start();
    let (_es, p) = one_attacker("soc-hive", hive.destination(json!({})));
    hive.tell(Told::RateLimited(1));
    esalert(p.path()).arg("once").assert().success();
    let tries = posts(&hive);
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 201]
    );
    assert_eq!(hive.alerts().len(), 1);

    let jira = support::jira::start();
    let (_es, p) = one_attacker(
        "tickets",
        jira.destination(json!({"api_token": "not-the-token"})),
    );
    esalert(p.path()).arg("once").assert().code(1);
    assert_eq!(jira.requests().len(), 1, "{:#?}", jira.requests());
    let log = std::fs::read_to_string(p.path().join("alerts.log")).unwrap();
    assert!(
        log.contains("HTTP 401: Jira refused: You are not authenticated.")
            && log.contains("check `username` and `api_token`"),
        "{log}"
    );
    assert_no_secrets(&p, &["not-the-token"]);
}
