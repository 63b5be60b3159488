//! Who is alive, as this process sees it, and who should own what.
//!
//! Every member rewrites `member:<id>` every third of the lease. A member
//! is alive while its document keeps changing: the observer notes, on its
//! *own* monotonic clock, when it first saw the document's current version;
//! if that is a lease time ago, the member is dead. No host's wall clock is
//! compared with another's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::docs::DocVersion;

/// What an observer knows of one member.
#[derive(Debug, Clone, Copy)]
struct Seen {
    version: Option<DocVersion>,
    /// When this version was first seen, on the observer's clock.
    since: Duration,
    /// When the member was first seen.
    first: Duration,
}

/// The members as observed.
#[derive(Debug, Default)]
pub struct Members {
    seen: BTreeMap<String, Seen>,
}

impl Members {
    /// Records what a read of member `id` showed at `now` (`None`: no
    /// document).
    pub fn observe(&mut self, id: &str, version: Option<DocVersion>, now: Duration) {
        match self.seen.get_mut(id) {
            Some(s) if s.version == version => {}
            Some(s) => {
                s.version = version;
                s.since = now;
            }
            None => {
                self.seen.insert(
                    id.to_owned(),
                    Seen {
                        version,
                        since: now,
                        first: now,
                    },
                );
            }
        }
    }

    /// Forgets members no longer registered.
    pub fn retain(&mut self, ids: &[String]) {
        self.seen.retain(|id, _| ids.contains(id));
    }

    /// Members whose document changed within `lease` of `now`, and `me`.
    pub fn live(&self, me: &str, now: Duration, lease: Duration) -> Vec<String> {
        let mut out: Vec<String> = self
            .seen
            .iter()
            .filter(|(id, s)| {
                *id == me || (s.version.is_some() && now.saturating_sub(s.since) < lease)
            })
            .map(|(id, _)| id.clone())
            .collect();
        if !out.iter().any(|m| m == me) {
            out.push(me.to_owned());
            out.sort();
        }
        out
    }

    /// Who may succeed an expired holder: live members seen for at least
    /// `settled` (their view of a lease is as old as ours; a member that
    /// just started sees every lease as new) whose document changed within
    /// `fresh` (a member that just died looks alive for a lease, and must
    /// not be waited for); `me` once we started `settled` ago. Falls back to
    /// every live member when none qualifies.
    pub fn candidates(
        &self,
        me: &str,
        now: Duration,
        t: super::lease::Timing,
        started: Duration,
    ) -> Vec<String> {
        let settled = t.expiry();
        let fresh = t.renew_every() * 2;
        let mut out: Vec<String> = self
            .seen
            .iter()
            .filter(|(id, s)| {
                if *id == me {
                    return false;
                }
                s.version.is_some()
                    && now.saturating_sub(s.first) >= settled
                    && now.saturating_sub(s.since) < fresh
            })
            .map(|(id, _)| id.clone())
            .collect();
        if now.saturating_sub(started) >= settled {
            out.push(me.to_owned());
        }
        if out.is_empty() {
            return self.live(me, now, t.lease);
        }
        out.sort();
        out
    }

    /// Members unchanged for longer than `after` (to unregister).
    pub fn dead_for(&self, me: &str, now: Duration, after: Duration) -> Vec<String> {
        self.seen
            .iter()
            .filter(|(id, s)| *id != me && now.saturating_sub(s.since) > after)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// A stable 64-bit hash of bytes (FNV-1a with a splitmix64 finish): the
/// same on every host and every run, unlike the std hasher.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The preferred owner of `rule` among `live` (rendezvous hashing: when a
/// member comes or goes, only the rules it wins or held move).
pub fn preferred<'a>(rule: &str, live: &'a [String]) -> Option<&'a str> {
    live.iter()
        .max_by_key(|m| {
            let mut b = Vec::with_capacity(m.len() + rule.len() + 1);
            b.extend_from_slice(m.as_bytes());
            b.push(0);
            b.extend_from_slice(rule.as_bytes());
            (stable_hash(&b), (*m).clone())
        })
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Duration = Duration::from_secs(30);

    fn v(n: i64) -> Option<DocVersion> {
        Some(DocVersion {
            seq_no: n,
            primary_term: 1,
        })
    }

    #[test]
    fn alive_while_the_document_changes_on_the_observers_clock() {
        let mut m = Members::default();
        let s = Duration::from_secs;
        m.observe("a", v(1), s(100));
        m.observe("b", v(2), s(100));
        assert_eq!(m.live("me", s(120), L), ["a", "b", "me"]);
        m.observe("a", v(3), s(125));
        m.observe("b", v(2), s(125));
        // b unchanged since 100 (its own clock never matters).
        assert_eq!(m.live("me", s(131), L), ["a", "me"]);
        assert_eq!(m.dead_for("me", s(131), s(30)), ["b"]);
    }

    #[test]
    fn rendezvous_moves_only_the_rules_of_the_member_that_left() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let two: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let mut counts = BTreeMap::new();
        for i in 0..300 {
            let r = format!("rule-{i}");
            let p3 = preferred(&r, &three).unwrap().to_owned();
            let p2 = preferred(&r, &two).unwrap();
            if p3 != "c" {
                assert_eq!(p3, p2, "{r} moved though its owner stayed");
            }
            *counts.entry(p3).or_insert(0) += 1;
        }
        assert!(counts.values().all(|n| *n > 60), "{counts:?}");
    }
}
