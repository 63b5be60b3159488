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
    member_at(docs, id, start, rules, std::path::Path::new("/nonexistent"))
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

/// Rounds of `a` and `b`, never a rule owned twice; then each rule is
/// owned by its preferred member.
async fn settle_on_preferred(a: &Member, b: &Member, rounds: usize) {
    for _ in 0..rounds {
        round(&[a, b]).await;
        for r in RULES {
            assert!(owners(&[a, b], r).len() <= 1, "{r} owned twice");
        }
    }
    let live = vec![a.c.me().to_owned(), b.c.me().to_owned()];
    for r in RULES {
        assert_eq!(
            owners(&[a, b], r),
            [membership::preferred(r, &live).unwrap()],
            "{r}"
        );
    }
}

#[tokio::test]
async fn each_rule_has_one_owner_its_preferred_member() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    let b = member(&docs, "b", 1_000_000, &RULES);
    settle_on_preferred(&a, &b, 4).await;
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
        // b observes every sixth of the lease.
        let _ = b.c.tick().await;
        for m in [&a, &b] {
            m.clock.advance(L / 6);
        }
        waited += L / 6;
        for r in &a_rules {
            assert!(
                owners(&[&a, &b], r).len() <= 1,
                "{r} owned twice at {waited:?}"
            );
        }
        assert!(
            waited <= L * 3 / 2 + L / 6,
            "not taken over within 1.5 leases and a tick"
        );
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
    let _ = sb.commit().await;
    assert!(
        a.c.held().is_empty(),
        "a lapsed lease is dropped, not written"
    );
    let doc = docs.peek("state:r").unwrap();
    assert_eq!(doc["owner"], "b");
    assert_eq!(doc["state"]["consecutive_failures"], 1);
    // Even with its clock lying (a broken clock check), the version check
    // refuses the write: its epoch is fenced.
    round(&[&a]).await;
    assert!(!a.c.owns("r"), "a does not take it back");
    let st = a.c.lock().views.get("r").copied();
    let _ = st;
    a.c.lock().held.insert(
        "r".into(),
        Held {
            epoch: 1,
            valid_until: Duration::MAX,
            releasing: false,
            st: Default::default(),
            state_version: Some(docs::DocVersion {
                seq_no: 1,
                primary_term: 1,
            }),
            changes: 0,
            flushed: 0,
            sending: 0,
        },
    );
    sb.update_rule("r", |st| st.consecutive_failures = 99);
    let _ = sb.commit().await;
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
    settle_on_preferred(&a, &b, 6).await;
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

/// The load shared state adds (BENCHMARKS.md): three instances, 1,000
/// alerts each running once a minute without matching, the default lease.
#[tokio::test]
async fn load_per_minute_per_thousand_alerts() {
    use std::sync::atomic::Ordering::Relaxed;
    let docs = Arc::new(MemDocs::new());
    let names: Vec<String> = (0..1000).map(|i| format!("rule-{i:04}")).collect();
    let rules: Vec<&str> = names.iter().map(String::as_str).collect();
    let ms: Vec<Member> = ["a", "b", "c"]
        .iter()
        .enumerate()
        .map(|(i, id)| member(&docs, id, 10 + i as u64, &rules))
        .collect();
    let tick = L / 6;
    // Settle: everyone registered, every rule with its preferred owner.
    for _ in 0..12 {
        for m in &ms {
            let _ = m.c.tick().await;
            m.clock.advance(tick);
        }
    }
    assert_eq!(ms.iter().map(|m| m.c.held().len()).sum::<usize>(), 1000);
    let (r0, d0, w0) = (
        docs.requests(),
        docs.doc_ops.0.load(Relaxed),
        docs.doc_ops.1.load(Relaxed),
    );
    // One minute: each rule's run changes its bookkeeping once.
    let ticks = (Duration::from_secs(60).as_millis() / tick.as_millis()) as usize;
    for t in 0..ticks {
        for m in &ms {
            let sb: &dyn StateBackend = m.c.as_ref();
            let slot = |r: &str| r[5..].parse::<usize>().unwrap_or(0) % ticks;
            for r in m.c.held().iter().filter(|r| slot(r) == t) {
                sb.update_rule(r, |st| st.consecutive_failures = 0);
            }
            let _ = m.c.tick().await;
            sb.commit().await.unwrap();
            m.c.cleanup_fires().await.unwrap();
            m.clock.advance(tick);
        }
    }
    let requests = docs.requests() - r0;
    let read = docs.doc_ops.0.load(Relaxed) - d0;
    let written = docs.doc_ops.1.load(Relaxed) - w0;
    eprintln!(
        "shared state, 3 instances, 1,000 alerts, lease {L:?}: {requests} requests/min \
         ({} per instance), {read} documents read/min, {written} written/min",
        requests / 3
    );
    // Requests don't grow with the number of alerts: a read every sixth
    // of the lease, a renewal every third, a flush of what changed.
    assert!(requests <= 3 * 40, "{requests} requests a minute");
    // Documents: each lease renewed every third of the lease (6,000), each
    // alert's state once per run (1,000), the members' beats.
    assert!(written <= 7_100, "{written} documents written a minute");
}

#[tokio::test]
async fn the_broken_variant_lets_two_owners_act_at_once() {
    let docs = Arc::new(MemDocs::new());
    let mut a = member(&docs, "a", 5, &["r"]);
    let mut b = member(&docs, "b", 9, &["r"]);
    a.c = Arc::new(Arc::try_unwrap(a.c).unwrap().broken());
    b.c = Arc::new(Arc::try_unwrap(b.c).unwrap().broken());
    round(&[&a]).await;
    assert!(a.c.owns("r"));
    for _ in 0..8 {
        round(&[&b]).await;
        a.clock.advance(L / 3);
    }
    assert!(b.c.owns("r"));
    round(&[&a, &b]).await;
    round(&[&a, &b]).await;
    assert_eq!(
        owners(&[&a, &b], "r").len(),
        2,
        "{:?}",
        docs.peek("lease:r")
    );
}

/// A member whose local location (silences mirror, ack requests) is in
/// `dir`; rule `amo` is `at_most_once`.
fn member_at(
    docs: &Arc<MemDocs>,
    id: &str,
    start: u64,
    rules: &[&str],
    dir: &std::path::Path,
) -> Member {
    let clock = Arc::new(ManualMono::default());
    // Hosts' clocks have nothing in common.
    clock.advance(Duration::from_secs(start));
    let c = Cluster::new(
        docs.clone(),
        clock.clone(),
        id.to_owned(),
        L,
        dir.join("state"),
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

/// A member restarted just before its predecessor's leases expire must
/// not be waited for: a settled member takes them at expiry, well within
/// 1.5 leases of the last renewal.
#[tokio::test]
async fn a_just_restarted_member_does_not_delay_a_takeover() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    let b = member(&docs, "b", 777, &RULES);
    for _ in 0..6 {
        round(&[&a, &b]).await;
    }
    let a_rules = a.c.held();
    assert!(!a_rules.is_empty());
    // a dies right after renewing; "a2" (a restarted) joins a lease later.
    let mut waited = Duration::ZERO;
    let mut a2: Option<Member> = None;
    while !a_rules
        .iter()
        .all(|r| b.c.owns(r) || a2.as_ref().is_some_and(|m| m.c.owns(r)))
    {
        if waited >= L && a2.is_none() {
            a2 = Some(member(&docs, "a2", 31, &RULES));
        }
        let _ = b.c.tick().await;
        if let Some(m) = &a2 {
            let _ = m.c.tick().await;
            m.clock.advance(L / 12);
        }
        b.clock.advance(L / 12);
        waited += L / 12;
        assert!(
            waited <= L * 4 / 3 + L / 12,
            "not taken over within {:?}: {:?}",
            L * 4 / 3,
            b.c.held()
        );
    }
    eprintln!("taken over {waited:?} after a stopped (lease {L:?})");
}

#[tokio::test]
async fn the_loop_wakes_when_a_lease_falls_due() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    let b = member(&docs, "b", 9, &["r"]);
    for _ in 0..4 {
        round(&[&a, &b]).await;
    }
    let other = if a.c.owns("r") { &b } else { &a };
    assert!(!other.c.owns("r"));
    let due = other.c.lock().next_due;
    let at = due.expect("the lease it waits on has a due time");
    let seen = other.c.lock().views["r"].since;
    assert!(
        at > seen && at <= seen + other.c.timing().abandoned(),
        "{at:?} {seen:?}"
    );
}

#[tokio::test]
async fn leaving_hands_the_leases_over_at_once() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &RULES);
    let b = member(&docs, "b", 777, &RULES);
    settle_on_preferred(&a, &b, 6).await;
    let a_rules = a.c.held();
    assert!(!a_rules.is_empty());
    assert_eq!(a.c.leave().await, a_rules.len());
    assert!(a.c.held().is_empty() && a_rules.iter().all(|r| !a.c.owns(r)));
    for r in &a_rules {
        assert_eq!(lease_of(&docs, r).owner, "", "{r} released");
    }
    // b's very next round takes them all: a is gone, b preferred.
    b.clock.advance(L / 6);
    b.c.tick().await.unwrap();
    for r in &a_rules {
        assert!(b.c.owns(r), "{r} not taken over at once");
        assert_eq!(
            lease_of(&docs, r).epoch,
            2,
            "{r}: a takeover raises the epoch"
        );
    }
    // a no longer takes part.
    a.c.tick().await.unwrap();
    assert!(a.c.held().is_empty());
}

#[tokio::test]
async fn old_fire_documents_are_deleted_by_their_owner() {
    let docs = Arc::new(MemDocs::new());
    let a = member(&docs, "a", 5, &["r"]);
    round(&[&a]).await;
    let old = fire("r");
    let new = FireId {
        matched_at: Utc::now(),
        ..fire("r")
    };
    for f in [&old, &new] {
        assert_eq!(a.c.fence(f).await, Fence::Go);
        a.c.fired(f, true).await;
    }
    let fires = |d: &MemDocs| {
        d.ids()
            .into_iter()
            .filter(|i| i.starts_with("fire:"))
            .count()
    };
    assert_eq!(fires(&docs), 2);
    assert_eq!(a.c.cleanup_fires().await.unwrap(), 1, "the 2025 one only");
    assert_eq!(fires(&docs), 1);
    // Bounded in time: not again before two leases.
    let before = docs.requests();
    assert_eq!(a.c.cleanup_fires().await.unwrap(), 0);
    assert_eq!(docs.requests(), before, "no request");
    a.clock.advance(L * 2);
    assert_eq!(a.c.cleanup_fires().await.unwrap(), 0);
    assert_eq!(docs.requests(), before + 1);
    assert!(a.c.fire_horizon() >= Duration::from_secs(24 * 3600));
}

#[tokio::test]
async fn silences_and_acks_made_in_the_shared_state_reach_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let docs = Arc::new(MemDocs::new());
    let a = member_at(&docs, "a", 5, &["w"], dir.path());
    round(&[&a]).await;
    assert!(a.c.owns("w"));
    let now = Utc::now();
    let until = now + chrono::Duration::hours(1);
    let id = requests::add_silence(docs.as_ref(), "w", None, until, Some("maint".into()), now)
        .await
        .unwrap();
    // Expired or not, a silence must end in the future.
    assert!(
        requests::add_silence(docs.as_ref(), "w", None, now, None, now)
            .await
            .is_err()
    );
    round(&[&a]).await;
    let mirror = crate::silence::path_for(&dir.path().join("state"));
    let local = crate::silence::in_force(&mirror, now).unwrap();
    assert_eq!(local.len(), 1, "mirrored for the pipeline");
    assert_eq!(local[0].id, id);
    assert!(
        requests::end_silence(docs.as_ref(), &id, now)
            .await
            .unwrap()
    );
    round(&[&a]).await;
    assert!(crate::silence::in_force(&mirror, now).unwrap().is_empty());

    requests::request_ack(docs.as_ref(), "w", &["page".into()], now)
        .await
        .unwrap();
    round(&[&a]).await;
    let file = crate::watcher::ack_request_path(&dir.path().join("state"), "w");
    assert_eq!(
        crate::watcher::take_ack_request(&file),
        Some(vec!["page".to_owned()])
    );
    // The run applied it and its state was written: the request is done.
    let sb: &dyn StateBackend = a.c.as_ref();
    sb.update_rule("w", |st| st.consecutive_failures = 0);
    sb.commit().await.unwrap();
    round(&[&a]).await;
    let left = docs.peek(requests::ACKS).unwrap();
    assert_eq!(left["requests"], serde_json::json!([]), "{left}");
}
