//! The lease state machine against documents versioned as the cluster
//! versions them ([`MemDocs`]), each member on its own clock.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::docs::{Fault, MemDocs};
use super::*;
use crate::throttle::{Fence, FireId, StateBackend};

const L: Duration = Duration::from_secs(30);

struct Member {
    c: Arc<Cluster>,
    clock: Arc<ManualMono>,
}

fn member(docs: &Arc<MemDocs>, id: &str, start: u64, rules: &[&str]) -> Member {
    let clock = Arc::new(ManualMono::default());
    // Hosts' clocks have nothing in common.
    clock.advance(Duration::from_secs(start));
    let c = Cluster::new(
        docs.clone(),
        clock.clone(),
        id.to_owned(),
        L,
        PathBuf::from("/nonexistent/state"),
        "memory".into(),
    );
    c.set_rules(
        rules
            .iter()
            .map(|r| {
                (
                    (*r).to_owned(),
                    Arc::new(AtomicBool::new(false)),
                    *r == "amo",
                )
            })
            .collect(),
    );
    Member {
        c: Arc::new(c),
        clock,
    }
}

/// Every member ticks once, then every clock moves a tick on.
async fn round(ms: &[&Member]) {
    for m in ms {
        let _ = m.c.tick().await;
    }
    for m in ms {
        m.clock.advance(L / 3);
    }
}

fn owners(ms: &[&Member], rule: &str) -> Vec<String> {
    ms.iter()
        .filter(|m| m.c.owns(rule))
        .map(|m| m.c.me().to_owned())
        .collect()
}

fn lease_of(docs: &MemDocs, rule: &str) -> LeaseDoc {
    serde_json::from_value(docs.peek(&format!("lease:{rule}")).unwrap()).unwrap()
}

fn fire(rule: &str) -> FireId {
    FireId {
        rule: rule.into(),
        key: String::new(),
        matched_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        delivery: "slack".into(),
    }
}

const RULES: [&str; 6] = ["r1", "r2", "r3", "r4", "r5", "r6"];

#[tokio::test]
async fn each_rule_has_one_owner_its_preferred_member() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    let b = member(&docs, "b", 1_000_000, &RULES);
    for _ in 0..4 {
        round(&[&a, &b]).await;
        for r in RULES {
            assert!(owners(&[&a, &b], r).len() <= 1, "{r} owned twice");
        }
    }
    let live = vec!["a".to_owned(), "b".to_owned()];
    for r in RULES {
        assert_eq!(
            owners(&[&a, &b], r),
            [membership::preferred(r, &live).unwrap()],
            "{r}"
        );
    }
    assert!(!a.c.held().is_empty() && !b.c.held().is_empty());
}

#[tokio::test]
async fn a_dead_members_rules_are_taken_over_within_two_leases_with_a_new_epoch() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    let b = member(&docs, "b", 777, &RULES);
    for _ in 0..4 {
        round(&[&a, &b]).await;
    }
    let a_rules = a.c.held();
    assert!(!a_rules.is_empty());
    let epochs: Vec<u64> = a_rules.iter().map(|r| lease_of(&docs, r).epoch).collect();
    // a dies: b ticks alone; a's clock runs on (a paused process).
    let mut waited = Duration::ZERO;
    while !a_rules.iter().all(|r| b.c.owns(r)) {
        round(&[&b]).await;
        a.clock.advance(L / 3);
        waited += L / 3;
        for r in &a_rules {
            assert!(
                owners(&[&a, &b], r).len() <= 1,
                "{r} owned twice at {waited:?}"
            );
        }
        assert!(waited <= 2 * L, "not taken over within two leases");
    }
    for (r, e) in a_rules.iter().zip(epochs) {
        assert_eq!(lease_of(&docs, r).epoch, e + 1, "{r}");
        assert_eq!(lease_of(&docs, r).owner, "b");
    }
    assert!(
        a.c.held().is_empty(),
        "a still believes it owns {:?}",
        a.c.held()
    );
}

#[tokio::test]
async fn a_deposed_owner_that_wakes_can_neither_write_nor_send() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    let b = member(&docs, "b", 9, &["r"]);
    // a alone first: it owns r whoever is preferred later.
    round(&[&a]).await;
    assert!(a.c.owns("r"));
    let sb: &dyn StateBackend = a.c.as_ref();
    sb.update_rule("r", |st| st.consecutive_failures = 1);
    sb.commit().await.unwrap();
    // a is paused (SIGSTOP) mid-run: b takes over.
    for _ in 0..8 {
        round(&[&b]).await;
        a.clock.advance(L / 3);
    }
    assert!(b.c.owns("r"));
    // a wakes without having ticked: its lease has lapsed on its own clock.
    assert!(!a.c.owns("r"));
    assert!(matches!(a.c.fence(&fire("r")).await, Fence::Hold(_)));
    sb.update_rule("r", |st| st.consecutive_failures = 99);
    assert!(sb.commit().await.is_err());
    let doc = docs.peek("state:r").unwrap();
    assert_eq!(doc["owner"], "b");
    assert_eq!(doc["state"]["consecutive_failures"], 1);
    // Even with its clock lying (a broken clock check), the version check
    // refuses the write: its epoch is fenced.
    a.c.lock().held.get_mut("r").unwrap().valid_until = Duration::MAX;
    sb.update_rule("r", |st| st.consecutive_failures = 99);
    assert!(sb.commit().await.is_err());
    assert_eq!(
        docs.peek("state:r").unwrap()["state"]["consecutive_failures"],
        1
    );
    assert!(!a.c.owns("r"), "a must learn it was deposed");
}

#[tokio::test]
async fn a_primary_term_bump_costs_one_conflict_and_keeps_the_lease() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    round(&[&a]).await;
    let sb: &dyn StateBackend = a.c.as_ref();
    sb.update_rule("r", |st| st.consecutive_failures = 3);
    sb.commit().await.unwrap();
    let before = docs.requests();
    docs.bump_primary_term();
    sb.update_rule("r", |st| st.consecutive_failures = 4);
    sb.commit().await.unwrap();
    // One write refused, one re-read, one write accepted.
    assert_eq!(docs.requests() - before, 3);
    assert_eq!(
        docs.peek("state:r").unwrap()["state"]["consecutive_failures"],
        4
    );
    round(&[&a]).await;
    assert!(a.c.owns("r"));
    assert_eq!(
        lease_of(&docs, "r").epoch,
        1,
        "no takeover of our own lease"
    );
}

#[tokio::test]
async fn a_write_that_timed_out_but_was_applied_is_recognised_as_ours() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    // The lease create is applied, but a hears a timeout.
    docs.inject(Fault::AppliedButTimedOut);
    assert!(a.c.tick().await.is_err());
    assert!(!a.c.owns("r"), "a timed-out write is not done");
    assert_eq!(lease_of(&docs, "r").owner, "a");
    a.clock.advance(L / 3);
    a.c.tick().await.unwrap();
    assert!(a.c.owns("r"));
    assert_eq!(
        lease_of(&docs, "r").epoch,
        1,
        "our own lease, not a takeover"
    );
    // The same for a state write.
    let sb: &dyn StateBackend = a.c.as_ref();
    sb.update_rule("r", |st| st.consecutive_failures = 7);
    docs.inject(Fault::AppliedButTimedOut);
    assert!(sb.commit().await.is_err());
    sb.update_rule("r", |st| st.consecutive_failures = 8);
    sb.commit().await.unwrap();
    assert_eq!(
        docs.peek("state:r").unwrap()["state"]["consecutive_failures"],
        8
    );
}

#[tokio::test]
async fn an_unreachable_cluster_stops_everything_within_the_lease() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    round(&[&a]).await;
    assert!(a.c.owns("r"));
    docs.set_down(true);
    let mut waited = Duration::ZERO;
    while a.c.owns("r") {
        round(&[&a]).await;
        waited += L / 3;
        assert!(waited <= L, "still acting {waited:?} into the outage");
    }
    assert!(!a.c.reachable());
    assert!(matches!(a.c.fence(&fire("r")).await, Fence::Hold(_)));
    // Back: nobody took it, so the renewal succeeds and a goes on.
    docs.set_down(false);
    round(&[&a]).await;
    assert!(a.c.owns("r"));
    assert!(a.c.reachable());
}

#[tokio::test]
async fn the_fence_sends_once_and_resends_or_drops_what_a_dead_owner_left() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r", "amo"]);
    round(&[&a]).await;
    let r = fire("r");
    let amo = fire("amo");
    assert_eq!(a.c.fence(&r).await, Fence::Go);
    a.c.fired(&r, true).await;
    assert_eq!(a.c.fence(&amo).await, Fence::Go);
    // a dies before recording `amo`; a second `r` delivery is also cut off.
    let r2 = FireId {
        delivery: "email".into(),
        ..fire("r")
    };
    assert_eq!(a.c.fence(&r2).await, Fence::Go);
    let b = member(&docs, "b", 50, &["r", "amo"]);
    for _ in 0..8 {
        round(&[&b]).await;
    }
    assert!(b.c.owns("r") && b.c.owns("amo"));
    assert_eq!(b.c.fence(&r).await, Fence::Sent, "sent once, never again");
    assert_eq!(b.c.fence(&r2).await, Fence::Go, "at-least-once: resent");
    assert!(
        matches!(b.c.fence(&amo).await, Fence::Drop(_)),
        "at_most_once: logged"
    );
}

#[tokio::test]
async fn a_new_member_gets_its_rules_handed_over_never_owned_twice() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    round(&[&a]).await;
    assert_eq!(a.c.held().len(), RULES.len());
    let b = member(&docs, "b", 3, &RULES);
    for _ in 0..6 {
        round(&[&a, &b]).await;
        for r in RULES {
            assert!(owners(&[&a, &b], r).len() <= 1, "{r} owned twice");
        }
    }
    let live = vec!["a".to_owned(), "b".to_owned()];
    for r in RULES {
        assert_eq!(
            owners(&[&a, &b], r),
            [membership::preferred(r, &live).unwrap()]
        );
    }
}

#[tokio::test]
async fn a_busy_rule_is_not_handed_over() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    round(&[&a]).await;
    let b = member(&docs, "b", 3, &RULES);
    let live = vec!["a".to_owned(), "b".to_owned()];
    let moving = RULES
        .iter()
        .find(|r| membership::preferred(r, &live) == Some("b"))
        .unwrap();
    assert_eq!(a.c.fence(&fire(moving)).await, Fence::Go);
    for _ in 0..6 {
        round(&[&a, &b]).await;
    }
    assert!(a.c.owns(moving), "handed over while delivering");
    a.c.fired(&fire(moving), true).await;
    for _ in 0..3 {
        round(&[&a, &b]).await;
    }
    assert!(b.c.owns(moving));
}

#[test]
fn state_specs() {
    assert!(
        StateSpec::parse(".esalert-state.json").is_none(),
        "a file path is the file backend"
    );
    assert_eq!(
        StateSpec::parse("es://.esalert-state").unwrap().unwrap(),
        StateSpec {
            index: ".esalert-state".into(),
            url: None
        }
    );
    assert_eq!(
        StateSpec::parse("es://st@https://other:9200")
            .unwrap()
            .unwrap(),
        StateSpec {
            index: "st".into(),
            url: Some("https://other:9200".into())
        }
    );
    assert!(StateSpec::parse("es://a/b").unwrap().is_err());
    assert!(StateSpec::parse("es://").unwrap().is_err());
    assert!(StateSpec::parse("es://x@ftp://h").unwrap().is_err());
}
