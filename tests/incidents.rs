//! Incident tools through the real binary against stand-ins that check
//! requests as PagerDuty and Opsgenie do: one incident per (alert, key),
//! repeats merged into it, the resolution closing it; the provider's own
//! error text in alerts.log, a rejection not retried, a 429 waited out, a
//! hang given up on; an alert's own severity and priority; keys never logged.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::opsgenie::Opsgenie;
use support::pagerduty::PagerDuty;
use support::peer::{Peer, Provider, Request, Told};
use support::{EsStandIn, Project, buckets, grouped_alert, opsgenie, pagerduty};

fn esalert(dir: &std::path::Path) -> assert_cmd::Command {
    support::esalert_in(dir, "pw")
}

/// A project whose `burst` alert ([`grouped_alert`]) is never throttled
/// (so a repeat is sent), resolves a key as soon as it stops matching, and
/// goes to `media`; `extra` is merged over the alert.
fn project(es: &EsStandIn, outputs: Value, media: &[&str], extra: Value) -> Project {
    let p = Project::new();
    std::fs::write(
        p.path().join("credentials.json"),
        json!({"elasticsearch": {"url": es.url}, "outputs": outputs}).to_string(),
    )
    .unwrap();
    let mut a = json!({"throttle_period": "0s", "notify_resolved": true,
        "resolve_after": "0s", "media": media});
    if let (Value::Object(a), Value::Object(e)) = (&mut a, extra) {
        a.extend(e);
    }
    p.alert("burst", &grouped_alert(a));
    p
}

fn oncall(pd: &Peer<PagerDuty>) -> Value {
    json!({"type": "pagerduty", "routing_key": pagerduty::ROUTING_KEY, "api_url": pd.url,
        "source": "siem-1", "timeout": "1s"})
}

fn genie(og: &Peer<Opsgenie>) -> Value {
    json!({"type": "opsgenie", "api_key": opsgenie::API_KEY, "api_url": og.url,
        "tags": ["auth"], "responders": [{"type": "team", "name": "SOC"}], "timeout": "1s"})
}

fn alerts_log(p: &Project) -> String {
    std::fs::read_to_string(p.path().join("alerts.log")).unwrap_or_default()
}

/// The requests about `key`, by the key in their details.
fn about<'a>(reqs: &'a [Request], field: &str, key: &str) -> Vec<&'a Request> {
    reqs.iter()
        .filter(|r| r.body.pointer(field).and_then(Value::as_str) == Some(key))
        .collect()
}

const A: &str = "198.51.100.77";
const B: &str = "192.0.2.200";

/// Runs `once` three times for an alert going to destination `name`: A
/// and B match, both again, then only A (so B resolves); the requests
/// `peer` accepted in each run, two in each.
fn trigger_repeat_resolve<P: Provider>(
    peer: &Peer<P>,
    name: &str,
    output: Value,
) -> (Project, [Vec<Request>; 3]) {
    let es = EsStandIn::start();
    let p = project(&es, json!({name: output}), &[name], json!({}));
    let runs: Vec<Vec<Request>> = [&[(A, 40), (B, 90)][..], &[(A, 41), (B, 91)], &[(A, 42)]]
        .iter()
        .map(|b| {
            let before = peer.delivered().len();
            es.push(buckets(b));
            esalert(p.path()).arg("once").assert().success();
            let run = peer.delivered()[before..].to_vec();
            assert_eq!(run.len(), 2, "{run:#?}");
            run
        })
        .collect();
    (p, runs.try_into().unwrap())
}

#[test]
fn pagerduty_triggers_repeats_and_resolves_each_key_by_its_dedup_key() {
    let pd = pagerduty::start();
    let (p, [first, again, last]) = trigger_repeat_resolve(&pd, "oncall", oncall(&pd));
    let key = "/payload/custom_details/key";
    let (a, b) = (about(&first, key, A)[0], about(&first, key, B)[0]);
    for (r, key, n) in [(a, A, 40), (b, B, 90)] {
        let e = &r.body;
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["routing_key"], pagerduty::ROUTING_KEY);
        assert_eq!(e["client"], "esalert");
        assert_eq!(e["payload"]["summary"], format!("failed logins from {key}"));
        assert_eq!(e["payload"]["source"], "siem-1");
        assert_eq!(e["payload"]["severity"], "error", "the default");
        let d = &e["payload"]["custom_details"];
        assert_eq!(d["alert"], "burst");
        assert_eq!(
            d["message"].as_str().unwrap(),
            format!("{n} failed logins from {key} (130 in all)")
        );
        assert_eq!(d["hits"], n, "the key's own count");
        assert!(
            d["window_start"].is_string() && d["window_end"].is_string(),
            "{d}"
        );
    }
    let (ka, kb) = (&a.body["dedup_key"], &b.body["dedup_key"]);
    assert_ne!(ka, kb, "two keys are two incidents");

    // The same two again: sent (throttle 0s), merged into the same incidents.
    assert_eq!(about(&again, key, A)[0].body["dedup_key"], *ka);
    assert_eq!(about(&again, key, B)[0].body["dedup_key"], *kb);

    // B stops: its incident is resolved, by its dedup_key only.
    let resolve: Vec<_> = last
        .iter()
        .filter(|r| r.body["event_action"] == "resolve")
        .collect();
    assert_eq!(resolve.len(), 1, "{last:#?}");
    assert_eq!(resolve[0].body["dedup_key"], *kb);
    assert!(
        resolve[0].body.get("payload").is_none(),
        "{:#}",
        resolve[0].body
    );
    assert!(
        last.iter()
            .any(|r| r.body["event_action"] == "trigger" && r.body["dedup_key"] == *ka)
    );
    assert!(!alerts_log(&p).contains(pagerduty::ROUTING_KEY));
}

#[test]
fn opsgenie_creates_repeats_and_closes_each_key_by_its_alias() {
    let og = opsgenie::start();
    let (p, [first, again, last]) = trigger_repeat_resolve(&og, "genie", genie(&og));
    let key = "/details/key";
    let (a, b) = (about(&first, key, A)[0], about(&first, key, B)[0]);
    for (r, key, n) in [(a, A, 40), (b, B, 90)] {
        assert_eq!(r.path, "/v2/alerts");
        assert_eq!(
            r.header("authorization"),
            format!("GenieKey {}", opsgenie::API_KEY)
        );
        let e = &r.body;
        assert_eq!(e["message"], format!("failed logins from {key}"));
        assert_eq!(
            e["description"],
            format!("{n} failed logins from {key} (130 in all)")
        );
        assert_eq!(e["priority"], "P3", "the default");
        assert_eq!(e["tags"], json!(["auth"]));
        assert_eq!(e["responders"], json!([{"type": "team", "name": "SOC"}]));
        assert_eq!(e["source"], "esalert");
        assert_eq!(e["details"]["alert"], "burst");
        assert_eq!(e["details"]["hits"], n.to_string());
    }
    let (ka, kb) = (
        a.body["alias"].as_str().unwrap(),
        b.body["alias"].as_str().unwrap(),
    );
    assert_ne!(ka, kb);

    assert_eq!(about(&again, key, A)[0].body["alias"], ka);
    assert_eq!(about(&again, key, B)[0].body["alias"], kb);

    let close: Vec<_> = last.iter().filter(|r| r.path.ends_with("/close")).collect();
    assert_eq!(close.len(), 1, "{last:#?}");
    assert_eq!(close[0].path, format!("/v2/alerts/{kb}/close"));
    assert_eq!(close[0].query, "identifierType=alias");
    assert_eq!(close[0].body["source"], "esalert");
    assert!(
        close[0].body["note"].as_str().unwrap().contains(B),
        "{:#}",
        close[0].body
    );
    assert!(last.iter().any(|r| r.body["alias"] == ka));
    assert!(!alerts_log(&p).contains(opsgenie::API_KEY));
}

/// A cluster where A matches, both stand-ins, and a project whose alert
/// goes to both (`extra` merged over it).
fn both(extra: Value) -> (EsStandIn, Peer<PagerDuty>, Peer<Opsgenie>, Project) {
    let es = EsStandIn::start();
    es.set_default(buckets(&[(A, 40)]));
    let (pd, og) = (pagerduty::start(), opsgenie::start());
    let p = project(
        &es,
        json!({"oncall": oncall(&pd), "genie": genie(&og)}),
        &["oncall", "genie"],
        extra,
    );
    (es, pd, og, p)
}

#[test]
fn a_rejection_is_logged_in_the_providers_words_and_not_retried() {
    let (_es, pd, og, p) = both(json!({}));
    pd.tell(Told::Reject("Invalid routing key"));
    og.tell(Told::Reject(
        "responders: Team with name [SOC] does not exist.",
    ));
    let _ = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(pd.requests().len(), 1, "a 400 is not retried");
    assert_eq!(og.requests().len(), 1, "a 422 is not retried");
    let log = alerts_log(&p);
    assert!(
        log.contains(
            "PagerDuty rejected the event (HTTP 400): Event object is invalid: Invalid routing key"
        ),
        "{log}"
    );
    assert!(
        log.contains("Team with name [SOC] does not exist."),
        "{log}"
    );

    assert!(!log.contains(pagerduty::ROUTING_KEY), "{log}");
}

#[test]
fn a_malformed_routing_key_is_refused_by_pagerduty_and_not_logged() {
    let es = EsStandIn::start();
    es.set_default(buckets(&[("198.51.100.77", 40)]));
    let pd = pagerduty::start();
    let mut out = oncall(&pd);
    out["routing_key"] = json!("SHORT-SECRET-KEY-1");
    let p = project(&es, json!({"oncall": out}), &["oncall"], json!({}));
    let _ = esalert(p.path()).arg("once").output().unwrap();
    let reqs = pd.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].body["routing_key"], "SHORT-SECRET-KEY-1");
    let log = alerts_log(&p);
    assert!(
        log.contains("Length of 'routing_key' is incorrect (should be 32 characters)"),
        "{log}"
    );
    assert!(!log.contains("SHORT-SECRET-KEY-1"), "{log}");
}

#[test]
fn a_refused_opsgenie_key_names_the_setting_never_the_key() {
    let es = EsStandIn::start();
    es.set_default(buckets(&[("198.51.100.77", 40)]));
    let og = opsgenie::start();
    let p = project(&es, json!({"genie": genie(&og)}), &["genie"], json!({}));
    og.tell(Told::Unauthorized);
    let _ = esalert(p.path()).arg("once").output().unwrap();
    assert_eq!(og.requests().len(), 1, "a 401 is not retried");
    let log = alerts_log(&p);
    assert!(
        log.contains(
            "Opsgenie refused the key (HTTP 401): check `api_key` of destination \\\"genie\\\""
        ),
        "{log}"
    );
    assert!(log.contains("Could not authenticate"), "{log}");
    assert!(!log.contains(opsgenie::API_KEY), "{log}");
}

#[test]
fn a_429_is_waited_out_and_a_hang_given_up_on_then_both_deliver() {
    let (_es, pd, og, p) = both(json!({}));
    pd.tell(Told::RateLimited(1));
    og.tell(Told::Hang);
    esalert(p.path()).arg("once").assert().success();
    let (pr, or) = (pd.requests(), og.requests());
    assert_eq!(pr.len(), 2, "{pr:#?}");
    assert_eq!((pr[0].status, pr[1].status), (429, 202));
    assert!(
        pr[1].at - pr[0].at >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(or.len(), 2, "{or:#?}");
    assert_eq!((or[0].status, or[1].status), (0, 202));
    assert!(
        or[1].at - or[0].at >= Duration::from_secs(1),
        "the 1s timeout ran out"
    );
    let log = alerts_log(&p);
    assert!(log.contains("no answer within 1s"), "{log}");
    assert!(!log.contains(pagerduty::ROUTING_KEY) && !log.contains(opsgenie::API_KEY));
}

#[test]
fn an_alert_gives_its_own_severity_priority_and_tags() {
    let (_es, pd, og, p) = both(json!({"outputs": {"oncall": {"severity": "critical"},
            "genie": {"priority": "P1", "tags": ["brute-force", "ssh"]}}}));
    esalert(p.path()).arg("once").assert().success();
    let (pr, or) = (pd.delivered(), og.delivered());
    assert_eq!(pr.len(), 1);
    assert_eq!(pr[0].body["payload"]["severity"], "critical");
    assert_eq!(or.len(), 1);
    assert_eq!(or[0].body["priority"], "P1");
    assert_eq!(or[0].body["tags"], json!(["brute-force", "ssh"]));
}

#[test]
fn long_subjects_are_cut_to_the_providers_limits() {
    let (_es, pd, og, p) =
        both(json!({"subject": "{% for i in range(300) %}too long {% endfor %}{{ group.key }}"}));
    esalert(p.path()).arg("once").assert().success();
    let (pr, or) = (pd.delivered(), og.delivered());
    assert_eq!(
        (pr.len(), or.len()),
        (1, 1),
        "both accepted: {pr:#?} {or:#?}"
    );
    let summary = pr[0].body["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with('…'));
    let message = or[0].body["message"].as_str().unwrap();
    assert_eq!(message.chars().count(), 130);
    assert!(message.ends_with('…'));
}
