//! `lease:<rule>`: who owns a rule, and the fencing token.
//!
//! The document holds `{owner, epoch}`. It is taken by `op_type=create`, or
//! by a version-checked write once it has not changed for lease + margin on
//! the taker's own clock (or at once when its owner released it); a
//! takeover increments `epoch`. The owner renews it (a version-checked
//! write) every third of the lease and acts only until lease time after it
//! *sent* its last successful renewal: a taker waits at least lease +
//! margin after it *saw* that renewal, so the two never act at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::docs::{Cond, Doc, DocVersion};

/// The lease document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseDoc {
    /// The owning member; empty once released.
    pub owner: String,
    /// The fencing token: raised by every takeover.
    pub epoch: u64,
    /// Bumped by every renewal, so that the document changes.
    #[serde(default)]
    pub beat: u64,
    /// Wall time of the renewal, for people (`esalert status`); never
    /// compared by esalert.
    #[serde(default)]
    pub renewed_at: String,
    /// The lease time, in milliseconds, for `esalert status`.
    #[serde(default)]
    pub lease_ms: u64,
}

/// What this member knows of one lease it does not hold.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// The version last read.
    pub version: Option<DocVersion>,
    /// When that version was first seen, on our clock.
    pub since: Duration,
}

/// What to do about one rule's lease at this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing.
    Wait,
    /// Renew the lease we hold (at the version read).
    Renew(DocVersion),
    /// Hand it to its preferred owner.
    Release(DocVersion),
    /// Take it with this epoch.
    Take(Cond, u64),
    /// Someone else owns it now: forget the rule.
    Lost,
}

/// The timing of leases.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long a renewal lets its sender act.
    pub lease: Duration,
    /// Added to the lease before another member takes over.
    pub margin: Duration,
}

impl Timing {
    /// Lease `lease`, margin a sixth of it.
    pub fn new(lease: Duration) -> Timing {
        Timing {
            lease,
            margin: lease / 6,
        }
    }

    /// How often members and leases are observed: a sixth of the lease,
    /// so a dead member's alerts are taken over within 1.5 leases.
    pub fn tick(&self) -> Duration {
        self.lease / 6
    }

    /// How often leases (and this member's document) are renewed.
    pub fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// How long a lease must stay unchanged before its successor takes it.
    pub fn expiry(&self) -> Duration {
        self.lease + self.margin
    }

    /// How long before any live member takes it: one observation later,
    /// for when the successor is dead or views of who is alive differ.
    pub fn abandoned(&self) -> Duration {
        self.expiry() + self.tick()
    }

    /// How long a lease released by its owner waits for its preferred
    /// member before any member takes it.
    pub fn unclaimed(&self) -> Duration {
        self.tick() * 2
    }
}

/// Inputs of [`decide`] about one rule.
#[derive(Debug)]
pub struct Situation<'a> {
    /// This member.
    pub me: &'a str,
    /// The epoch we hold the rule at, if we do.
    pub held: Option<u64>,
    /// The lease document as read now.
    pub doc: Option<&'a Doc>,
    /// Our view of it, updated with this read.
    pub view: View,
    /// Now, on our clock.
    pub now: Duration,
    /// The preferred owner among live members.
    pub preferred: Option<&'a str>,
    /// Who takes it once it expired: the preferred among live members
    /// other than the lease's holder that are settled (observed for a
    /// lease and more, so their view of the lease is as old as anyone's)
    /// and fresh (beat within two renewals: a member that just died may
    /// look alive for a lease, and must not be waited for).
    pub successor: Option<&'a str>,
    /// Whether the rule is running or delivering here (no release then).
    pub busy: bool,
}

/// Records a read of a lease in `view`: a new version restarts its clock.
pub fn observe(view: Option<View>, doc: Option<&Doc>, now: Duration) -> View {
    let version = doc.map(|d| d.version);
    match view {
        Some(v) if v.version == version => v,
        _ => View {
            version,
            since: now,
        },
    }
}

/// The step for one rule.
pub fn decide(s: &Situation<'_>, t: Timing) -> Step {
    let parsed = s.doc.map(|d| {
        (
            serde_json::from_value::<LeaseDoc>(d.source.clone()).ok(),
            d.version,
        )
    });
    let i_prefer = s.preferred == Some(s.me);
    match (s.held, parsed) {
        (Some(epoch), Some((Some(l), v))) if l.owner == s.me && l.epoch == epoch => {
            // Still ours (a new version of our own document comes from a
            // primary failover, or from our write whose answer was lost).
            if !i_prefer && s.preferred.is_some() && !s.busy {
                Step::Release(v)
            } else {
                Step::Renew(v)
            }
        }
        (Some(_), _) => Step::Lost,
        (None, None) => {
            if i_prefer {
                Step::Take(Cond::Create, 1)
            } else {
                Step::Wait
            }
        }
        // A document we can't read is never overwritten.
        (None, Some((None, _))) => Step::Wait,
        (None, Some((Some(l), v))) => {
            if l.owner == s.me {
                // Ours from a write whose answer we missed: same epoch.
                return Step::Take(Cond::Match(v), l.epoch);
            }
            let next = l.epoch.saturating_add(1);
            match due(s, &l, t) {
                Some(at) if s.now >= at => Step::Take(Cond::Match(v), next),
                _ => Step::Wait,
            }
        }
    }
}

/// When this member takes a lease it does not hold, if the document stays
/// as read: at once when released and we are preferred (else a little
/// later), at expiry when we are the successor, one observation later
/// otherwise. Both are on our clock, from when we first saw this version;
/// the owner stops acting a lease after it *sent* the renewal that made
/// it, which was before we saw it.
fn due(s: &Situation<'_>, l: &LeaseDoc, t: Timing) -> Option<Duration> {
    if l.owner.is_empty() {
        return Some(if s.preferred == Some(s.me) {
            s.view.since
        } else {
            s.view.since + t.unclaimed()
        });
    }
    if l.owner == s.me {
        return None;
    }
    Some(if s.successor == Some(s.me) {
        s.view.since + t.expiry()
    } else {
        s.view.since + t.abandoned()
    })
}

/// When [`decide`] would next take a lease we wait on, if nothing changes:
/// the lease loop wakes then instead of at its next observation.
pub fn next_due(s: &Situation<'_>, t: Timing) -> Option<Duration> {
    if s.held.is_some() {
        return None;
    }
    let l = serde_json::from_value::<LeaseDoc>(s.doc?.source.clone()).ok()?;
    due(s, &l, t).filter(|at| *at > s.now)
}
