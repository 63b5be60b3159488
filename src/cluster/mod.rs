//! Several `esalert run` processes sharing their alerts through the cluster
//! (`--state es://<index>`): membership, leases, the delivery fence, and a
//! state backend over documents. See README, "Running several instances".
//!
//! Documents (all read by id, never through `_search`; all written by
//! `op_type=create` or a version-checked index):
//! - `members`: the ids of registered members;
//! - `member:<id>`: rewritten by its member every third of the lease;
//! - `lease:<rule>`: `{owner, epoch}` ([`lease`]);
//! - `state:<rule>`: the rule's state (throttles, outbox, acks, windows,
//!   rule-type memory), with the epoch of the owner that wrote it;
//! - `fire:<rule>:<key>:<tick>:<delivery>`: the delivery fence ([`fence`]).
//!
//! The owner of a rule keeps its state in memory, loaded by `GET` when it
//! takes the lease and written back (version-checked, carrying the epoch) at
//! every commit; a takeover first rewrites the state document with the new
//! epoch, so a deposed owner's next write fails with 409.

mod cleanup;
mod console;
pub mod docs;
mod fence;
pub mod lease;
mod leave;
pub mod membership;
pub mod open;
pub mod requests;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::throttle::{AlertState, ClusterDown};
use docs::{Cond, DocError, DocStore, DocVersion, Written};
use lease::{LeaseDoc, Step, Timing, View};
use membership::Members;

/// The default lease time.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// `--state es://...`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSpec {
    /// The index.
    pub index: String,
    /// Another cluster's URL; the one in credentials.json when `None`.
    pub url: Option<String>,
}

/// Why `--state es://...` can't be used.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Not of the form `es://<index>` or `es://<index>@<url>`.
    #[error(
        "--state {0}: expected es://<index> (on the cluster in credentials.json) or es://<index>@https://host:9200, e.g. es://.esalert-state"
    )]
    Malformed(String),
}

impl StateSpec {
    /// `Some` when `state` names shared state (`es://...`).
    pub fn parse(state: &str) -> Option<Result<StateSpec, SpecError>> {
        let rest = state.strip_prefix("es://")?;
        let (index, url) = match rest.split_once('@') {
            Some((i, u)) => (i, Some(u.to_owned())),
            None => (rest, None),
        };
        let ok = !index.is_empty()
            && index.len() <= 200
            && !index.contains(['/', '\\', '*', '?', '"', '<', '>', '|', ' ', ',', '#'])
            && url
                .as_deref()
                .is_none_or(|u| u.starts_with("http://") || u.starts_with("https://"));
        Some(if ok {
            Ok(StateSpec {
                index: index.to_owned(),
                url,
            })
        } else {
            Err(SpecError::Malformed(state.to_owned()))
        })
    }
}

/// A monotonic clock that keeps counting while the host sleeps.
pub trait Mono: Send + Sync {
    /// Time since an arbitrary start.
    fn now(&self) -> Duration;
}

/// `CLOCK_BOOTTIME`: a holder whose host was suspended finds its lease
/// expired on waking, as it is for everyone else.
#[derive(Debug, Default, Clone, Copy)]
pub struct BootClock;

impl Mono for BootClock {
    fn now(&self) -> Duration {
        crate::daemon::clock_step::boottime()
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualMono(Mutex<Duration>);

impl ManualMono {
    /// Moves it forward.
    pub fn advance(&self, d: Duration) {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g += d;
    }
}

impl Mono for ManualMono {
    fn now(&self) -> Duration {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A rule this member holds.
#[derive(Debug)]
struct Held {
    epoch: u64,
    /// Until when (our clock) we may act: lease time after the last
    /// successful renewal was sent.
    valid_until: Duration,
    /// Set while the lease is being handed over: nothing runs or sends.
    releasing: bool,
    st: AlertState,
    state_version: Option<DocVersion>,
    /// Bumped by every change; `flushed` is the count last written.
    changes: u64,
    flushed: u64,
    /// Deliveries between the fence and their result.
    sending: usize,
}

#[derive(Debug, Default)]
struct Inner {
    /// Rules loaded here, with the daemon's "running" flags.
    rules: BTreeMap<String, Arc<AtomicBool>>,
    members: Members,
    registered: Vec<String>,
    views: HashMap<String, View>,
    held: HashMap<String, Held>,
    /// Changes to rules not held (the lease was lost mid-run): the next
    /// commit fails, so nothing decided on them is sent.
    orphaned: bool,
    cluster_notified: Option<ClusterDown>,
    beat: u64,
    live: Vec<String>,
    /// When the last renewal was sent (our clock).
    last_renewal: Option<Duration>,
    /// Fire documents this member created, by id, with their version.
    fires: HashMap<String, DocVersion>,
    /// When this member first reached the cluster (our clock).
    started: Option<Duration>,
    /// Rules taken whose state is being loaded: no lease step meanwhile.
    loading: std::collections::HashSet<String>,
    /// When the next lease we wait on falls due, if none changes.
    next_due: Option<Duration>,
    /// How long reads take, smoothed: the loop wakes that much before a
    /// lease falls due.
    read_latency: Duration,
    /// Set once this member left (shutdown): no more rounds.
    left: bool,
    /// When old fire documents were last cleaned up.
    last_cleanup: Option<Duration>,
    /// How long fire documents are kept: the longest throttle period or
    /// retry age of the rules loaded, and two leases.
    fire_horizon: Duration,
    /// The version of `silences` last mirrored (`Some(None)`: none there).
    silences_seen: Option<Option<DocVersion>>,
    /// Acknowledgement requests handed to the pipeline: id, watch.
    acks_pending: HashMap<String, String>,
}

/// One member of the shared state: owner of some rules, observer of all.
pub struct Cluster {
    docs: Arc<dyn DocStore>,
    mono: Arc<dyn Mono>,
    me: String,
    timing: Timing,
    inner: Mutex<Inner>,
    writing: tokio::sync::Mutex<()>,
    /// Held through a round, so that leaving waits for the round in flight.
    rounds: tokio::sync::Mutex<()>,
    /// Changes to held rules so far, and the count the last flush covered
    /// with its error (group commit).
    changes: std::sync::atomic::AtomicU64,
    flushed: Mutex<(u64, Option<String>)>,
    location: PathBuf,
    /// Whether the last tick reached the cluster.
    reachable: AtomicBool,
    label: String,
    at_most_once: Mutex<std::collections::HashSet<String>>,
    /// Test of the tests only: version checks off (see [`Cluster::broken`]).
    broken: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("me", &self.me).finish()
    }
}

/// A member id: host, process and start time, so a restarted process is a
/// new member (its old leases expire as any dead member's).
pub fn member_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".into());
    let nanos = chrono::Utc::now().timestamp_subsec_nanos();
    format!("{host}-{}-{:08x}", std::process::id(), nanos)
}

fn ts_now() -> String {
    crate::render::fmt_time(&chrono::Utc::now())
}

/// A document id from parts; hashed when too long for the cluster (512 bytes).
pub(crate) fn doc_id(prefix: &str, parts: &[&str]) -> String {
    let id = std::iter::once(prefix)
        .chain(parts.iter().copied())
        .collect::<Vec<_>>()
        .join(":");
    if id.len() <= 500 {
        return id;
    }
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}:sha256:{hex}")
}

impl Cluster {
    /// A member `me` of the shared state in `docs`; `location` is where
    /// local requests (silences, acks) are kept.
    pub fn new(
        docs: Arc<dyn DocStore>,
        mono: Arc<dyn Mono>,
        me: String,
        lease: Duration,
        location: PathBuf,
        label: String,
    ) -> Cluster {
        Cluster {
            docs,
            mono,
            me,
            timing: Timing::new(lease),
            inner: Mutex::new(Inner::default()),
            writing: tokio::sync::Mutex::new(()),
            rounds: tokio::sync::Mutex::new(()),
            changes: std::sync::atomic::AtomicU64::new(0),
            flushed: Mutex::new((0, None)),
            location,
            reachable: AtomicBool::new(true),
            label,
            at_most_once: Mutex::default(),
            broken: AtomicBool::new(false),
        }
    }

    /// A deliberately broken member for the test of the tests: it writes
    /// leases and state last-writer-wins (no version checks) and counts a
    /// lease as expired by the wall-clock time in the document. The chaos
    /// test must fail against it.
    pub fn broken(self) -> Cluster {
        self.broken.store(true, Ordering::Relaxed);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This member's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The lease timing.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// The rules loaded here, each with its "running" flag, and which of
    /// them are `at_most_once`.
    pub fn set_rules(&self, rules: Vec<(String, Arc<AtomicBool>, bool)>) {
        let mut amo = self
            .at_most_once
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        amo.clear();
        let mut g = self.lock();
        g.rules.clear();
        for (name, running, at_most_once) in rules {
            if at_most_once {
                amo.insert(name.clone());
            }
            g.rules.insert(name, running);
        }
    }

    /// Whether this member may run `rule` now.
    pub fn owns(&self, rule: &str) -> bool {
        let now = self.mono.now();
        self.lock()
            .held
            .get(rule)
            .is_some_and(|h| !h.releasing && now < h.valid_until)
    }

    /// Whether the last tick reached the cluster.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// Requests made to the cluster so far.
    pub fn requests(&self) -> u64 {
        self.docs.requests()
    }

    /// The rules held now (for tests and logs).
    pub fn held(&self) -> Vec<String> {
        let now = self.mono.now();
        let mut v: Vec<String> = self
            .lock()
            .held
            .iter()
            .filter(|(_, h)| now < h.valid_until)
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    /// The members alive at the last tick.
    pub fn live(&self) -> Vec<String> {
        self.lock().live.clone()
    }

    /// One round: beat, observe members and leases, renew, release, take
    /// over, load what was taken, and write back what changed. Errors mean
    /// the cluster was not reached; leases then lapse on their own.
    pub async fn tick(&self) -> Result<(), DocError> {
        let r = match self.round(false).await {
            Ok((taken, _)) if taken.is_empty() => Ok(()),
            Ok((taken, sent_at)) => self.load_taken(&taken, sent_at).await,
            Err(e) => Err(e),
        };
        self.note_reachable(&r);
        r
    }

    /// Logs when the cluster stops or starts answering.
    fn note_reachable(&self, r: &Result<(), DocError>) {
        let was = self.reachable.swap(r.is_ok(), Ordering::Relaxed);
        match (&r, was) {
            (Err(e), true) => tracing::error!(
                event = "shared_state_unreachable",
                state = self.label.as_str(),
                error = %e,
                lease_s = self.timing.lease.as_secs_f64(),
                "no alert is run or sent by this instance once its leases lapse (fail closed)"
            ),
            (Ok(()), false) => tracing::warn!(
                event = "shared_state_reachable",
                state = self.label.as_str()
            ),
            _ => {}
        }
    }

    /// One round; returns the rules taken (their state not loaded yet) and
    /// when the take was sent. With `wait`, a lease falling due shortly
    /// after the read is waited for and taken in this round.
    async fn round(&self, wait: bool) -> Result<(Vec<(String, u64)>, Duration), DocError> {
        let _round = self.rounds.lock().await;
        if self.lock().left {
            return Ok((Vec::new(), self.mono.now()));
        }
        let t = self.timing;
        let broken = self.broken.load(Ordering::Relaxed);
        // One read: the registry, every registered member, every lease.
        let (registered, rules): (Vec<String>, Vec<String>) = {
            let g = self.lock();
            (g.registered.clone(), g.rules.keys().cloned().collect())
        };
        let mut ids = vec!["members".to_owned()];
        ids.extend(registered.iter().map(|m| doc_id("member", &[m])));
        if !registered.contains(&self.me) {
            ids.push(doc_id("member", &[&self.me]));
        }
        let member_count = ids.len();
        ids.extend(rules.iter().map(|r| doc_id("lease", &[r])));
        let requests_at = ids.len();
        ids.push(requests::SILENCES.to_owned());
        ids.push(requests::ACKS.to_owned());
        let asked = self.mono.now();
        let read = self.docs.mget(&ids).await?;
        // Versions are first seen when the read returns: no later than
        // that were they written.
        let seen = self.mono.now();
        let due = {
            let mut g = self.lock();
            g.started.get_or_insert(seen);
            let took = seen.saturating_sub(asked);
            g.read_latency = (g.read_latency * 3 + took) / 4;
            g.next_due.take()
        };
        let now = match due {
            Some(d) if wait && d > seen && d - seen <= t.tick() => {
                tokio::time::sleep(d - seen).await;
                self.mono.now()
            }
            _ => seen,
        };
        let mut writes: Vec<(String, Value, Cond)> = Vec::new();
        enum Kind {
            Beat,
            Registry,
            Lease(String, Step),
            Acks,
        }
        let mut kinds = Vec::new();

        // Membership.
        let registry = read.first().cloned().flatten();
        let mut reg_ids: Vec<String> = registry
            .as_ref()
            .and_then(|d| d.source["ids"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let live;
        let mut work;
        {
            let mut g = self.lock();
            for (i, m) in registered.iter().enumerate() {
                // A member that left (shut down) is gone at once.
                let doc = read
                    .get(i + 1)
                    .cloned()
                    .flatten()
                    .filter(|d| d.source["left"] != json!(true));
                g.members.observe(m, doc.map(|d| d.version), seen);
            }
            for m in &reg_ids {
                if !registered.contains(m) {
                    g.members.observe(m, None, seen);
                }
            }
            let dead = g.members.dead_for(&self.me, now, t.lease * 10);
            let before = reg_ids.len();
            reg_ids.retain(|m| !dead.contains(m));
            let pruned = reg_ids.len() != before;
            let joined = !reg_ids.contains(&self.me);
            if joined {
                reg_ids.push(self.me.clone());
            }
            if joined || pruned {
                let cond = registry
                    .as_ref()
                    .map_or(Cond::Create, |d| Cond::Match(d.version));
                writes.push(("members".into(), json!({"ids": reg_ids}), cond));
                kinds.push(Kind::Registry);
            }
            g.members.retain(&reg_ids);
            g.registered = reg_ids.clone();
            live = g.members.live(&self.me, now, t.lease);
            g.live = live.clone();
            // Observed every tick, renewed every third of the lease.
            let renew_due = g
                .last_renewal
                .is_none_or(|r| now.saturating_sub(r) + t.tick() / 2 >= t.renew_every());
            g.beat = g.beat.wrapping_add(1);
            let mine = read
                .get(
                    registered
                        .iter()
                        .position(|m| *m == self.me)
                        .map_or(member_count - 1, |i| i + 1),
                )
                .cloned()
                .flatten();
            if renew_due {
                writes.push((
                    doc_id("member", &[&self.me]),
                    json!({"id": self.me, "beat": g.beat, "beat_at": ts_now(),
                       "lease_ms": t.lease.as_millis() as u64, "pid": std::process::id()}),
                    mine.map_or(Cond::Create, |d| Cond::Match(d.version)),
                ));
                kinds.push(Kind::Beat);
            }

            // Leases.
            let started = g.started.unwrap_or(seen);
            let candidates = g.members.candidates(&self.me, now, t, started);
            let mut next_due: Option<Duration> = None;
            for (i, rule) in rules.iter().enumerate() {
                let doc = read.get(member_count + i).cloned().flatten();
                let view = lease::observe(g.views.get(rule).copied(), doc.as_ref(), seen);
                g.views.insert(rule.clone(), view);
                if g.loading.contains(rule) {
                    continue;
                }
                let held = g.held.get(rule).map(|h| h.epoch);
                let busy = g
                    .held
                    .get(rule)
                    .is_some_and(|h| h.sending > 0 || h.changes != h.flushed)
                    || g.rules.get(rule).is_some_and(|r| r.load(Ordering::SeqCst));
                let pref = membership::preferred(rule, &live);
                let holder = doc
                    .as_ref()
                    .and_then(|d| d.source["owner"].as_str())
                    .filter(|o| !o.is_empty() && *o != self.me.as_str());
                let not_holder = |m: &&String| Some(m.as_str()) != holder;
                let mut others: Vec<String> =
                    candidates.iter().filter(not_holder).cloned().collect();
                if others.is_empty() {
                    others = live.iter().filter(not_holder).cloned().collect();
                }
                let situation = lease::Situation {
                    me: &self.me,
                    held,
                    doc: doc.as_ref(),
                    view,
                    now,
                    preferred: pref,
                    successor: membership::preferred(rule, &others),
                    busy,
                };
                let mut step = lease::decide(&situation, t);
                if step == Step::Wait
                    && let Some(d) = lease::next_due(&situation, t)
                {
                    next_due = Some(next_due.map_or(d, |n| n.min(d)));
                }
                if broken {
                    step = broken_step(&self.me, held, doc.as_ref(), step);
                }
                let epoch = held.unwrap_or_default();
                let beat = g.beat;
                let lease_doc = |owner: &str, epoch: u64| {
                    serde_json::to_value(LeaseDoc {
                        owner: owner.to_owned(),
                        epoch,
                        beat,
                        renewed_at: ts_now(),
                        lease_ms: t.lease.as_millis() as u64,
                    })
                    .unwrap_or_default()
                };
                let w = match &step {
                    Step::Wait => None,
                    Step::Lost => {
                        g.held.remove(rule);
                        tracing::warn!(
                            event = "lease_lost",
                            alert = rule.as_str(),
                            member = self.me.as_str()
                        );
                        None
                    }
                    Step::Renew(_) if !renew_due => None,
                    Step::Renew(v) => Some((lease_doc(&self.me, epoch), Cond::Match(*v))),
                    Step::Release(v) => {
                        // Nothing may start once this is set; checked
                        // against the running flag after setting it.
                        if let Some(h) = g.held.get_mut(rule) {
                            h.releasing = true;
                        }
                        if g.rules.get(rule).is_some_and(|r| r.load(Ordering::SeqCst)) {
                            if let Some(h) = g.held.get_mut(rule) {
                                h.releasing = false;
                            }
                            Some((lease_doc(&self.me, epoch), Cond::Match(*v)))
                        } else {
                            Some((lease_doc("", epoch), Cond::Match(*v)))
                        }
                    }
                    Step::Take(c, e) => Some((lease_doc(&self.me, *e), *c)),
                };
                if let Some((src, c)) = w {
                    let step = match (&step, src["owner"].as_str()) {
                        (Step::Release(v), Some(o)) if !o.is_empty() => Step::Renew(*v),
                        _ => step,
                    };
                    writes.push((doc_id("lease", &[rule]), src, c));
                    kinds.push(Kind::Lease(rule.clone(), step));
                }
            }
            g.next_due = next_due;
            let silences = read.get(requests_at).cloned().flatten();
            let acks = read.get(requests_at + 1).cloned().flatten();
            work = self.requests_work(&mut g, silences.as_ref(), acks.as_ref());
            if let Some((src, c)) = work.acks_write.take() {
                writes.push((requests::ACKS.to_owned(), src, c));
                kinds.push(Kind::Acks);
            }
        }
        self.apply_requests_work(work);
        if broken {
            for w in &mut writes {
                if let Some(Some(d)) = ids
                    .iter()
                    .position(|i| *i == w.0)
                    .map(|p| read.get(p).cloned().flatten())
                {
                    w.2 = Cond::Match(d.version);
                } else {
                    w.2 = Cond::Create;
                }
            }
        }
        let sent_at = self.mono.now();
        let results = match self.docs.put(&writes).await {
            Ok(r) => r,
            Err(e) => {
                // Releases not done: the rules stay ours.
                let mut g = self.lock();
                for k in &kinds {
                    if let Kind::Lease(rule, Step::Release(_)) = k
                        && let Some(h) = g.held.get_mut(rule)
                    {
                        h.releasing = false;
                    }
                }
                return Err(e);
            }
        };
        let mut taken: Vec<(String, u64)> = Vec::new();
        {
            let mut g = self.lock();
            if kinds.iter().any(|k| matches!(k, Kind::Beat)) {
                g.last_renewal = Some(sent_at);
            }
            for (k, r) in kinds.iter().zip(&results) {
                let Kind::Lease(rule, step) = k else { continue };
                match (step, r) {
                    (Step::Renew(_), Written::Done(_)) => {
                        if let Some(h) = g.held.get_mut(rule) {
                            h.valid_until = sent_at + t.lease;
                        }
                    }
                    (Step::Release(_), Written::Done(_)) => {
                        g.held.remove(rule);
                        tracing::info!(
                            event = "lease_released",
                            alert = rule.as_str(),
                            member = self.me.as_str()
                        );
                    }
                    (Step::Release(_), Written::Conflict) => {
                        if let Some(h) = g.held.get_mut(rule) {
                            h.releasing = false;
                        }
                    }
                    (Step::Take(_, e), Written::Done(_)) => {
                        g.loading.insert(rule.clone());
                        taken.push((rule.clone(), *e));
                    }
                    // A conflict: the next read tells what happened.
                    _ => {}
                }
            }
        }
        Ok((taken, sent_at))
    }

    /// Loads the state of rules just taken and claims it with our epoch;
    /// until then (and if that fails) no lease step is taken for them, and
    /// a failed load is retried from the lease document, which names us.
    async fn load_taken(&self, taken: &[(String, u64)], sent_at: Duration) -> Result<(), DocError> {
        let r = self.load_taken_inner(taken, sent_at).await;
        let mut g = self.lock();
        for (rule, _) in taken {
            g.loading.remove(rule);
        }
        r
    }

    async fn load_taken_inner(
        &self,
        taken: &[(String, u64)],
        sent_at: Duration,
    ) -> Result<(), DocError> {
        let ids: Vec<String> = taken.iter().map(|(r, _)| doc_id("state", &[r])).collect();
        let read = self.docs.mget(&ids).await?;
        let mut claims = Vec::new();
        let mut states = Vec::new();
        for ((rule, epoch), doc) in taken.iter().zip(&read) {
            let st: AlertState = doc
                .as_ref()
                .and_then(|d| d.source.get("state"))
                .map(|s| serde_json::from_value(s.clone()))
                .transpose()
                .unwrap_or_else(|e| {
                    tracing::error!(event = "shared_state_corrupt", alert = rule.as_str(), error = %e,
                        "the rule's state document does not parse; starting it empty");
                    None
                })
                .unwrap_or_default();
            let cond = doc
                .as_ref()
                .map_or(Cond::Create, |d| Cond::Match(d.version));
            claims.push((ids_state(rule), self.state_source(rule, *epoch, &st), cond));
            states.push((rule.clone(), *epoch, st));
        }
        let results = self.docs.put(&claims).await?;
        let mut g = self.lock();
        for ((rule, epoch, st), r) in states.into_iter().zip(results) {
            if let Written::Done(v) = r {
                tracing::info!(
                    event = "lease_acquired",
                    alert = rule.as_str(),
                    member = self.me.as_str(),
                    epoch
                );
                g.held.insert(
                    rule,
                    Held {
                        epoch,
                        valid_until: sent_at + self.timing.lease,
                        releasing: false,
                        st,
                        state_version: Some(v),
                        changes: 0,
                        flushed: 0,
                        sending: 0,
                    },
                );
            }
        }
        Ok(())
    }

    fn state_source(&self, rule: &str, epoch: u64, st: &AlertState) -> Value {
        json!({"rule": rule, "owner": self.me, "epoch": epoch,
               "written_at": ts_now(), "state": st})
    }

    /// Runs [`tick`](Self::tick) every sixth of the lease until `stop`,
    /// and beside it writes changes nobody committed (a run's bookkeeping)
    /// as often, so a slow write never delays a renewal.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        // Beside the rounds: changes nobody committed, and old fire
        // documents (a slow cleanup delays nothing).
        self.every_tick(&stop, |me| async move {
            if let Err(e) = me.flush().await {
                tracing::debug!(event = "shared_state_flush_failed", error = %e);
            }
        });
        self.every_tick(&stop, |me| async move {
            if let Err(e) = me.cleanup_fires().await {
                tracing::warn!(event = "fire_cleanup_failed", error = %e,
                    "old fire documents stay until a later cleanup works");
            }
        });
        loop {
            let started = tokio::time::Instant::now();
            // Taken rules load beside the next rounds: a slow load must not
            // delay observing (and taking) other leases.
            let r = match self.round(true).await {
                Ok((taken, sent_at)) => {
                    if !taken.is_empty() {
                        let me = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = me.load_taken(&taken, sent_at).await {
                                tracing::debug!(event = "shared_state_load_failed", error = %e);
                            }
                        });
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            self.note_reachable(&r);
            tokio::select! {
                _ = tokio::time::sleep_until(self.wake_at(started)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Spawns `f` every tick until `stop`.
    fn every_tick<F, Fut>(self: &Arc<Self>, stop: &tokio::sync::watch::Receiver<bool>, f: F)
    where
        F: Fn(Arc<Self>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (me, mut stop) = (self.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(me.timing.tick()) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                f(me.clone()).await;
            }
        });
    }

    /// The next round: a tick after the last one started, or, when a lease
    /// falls due before that, just before it (by the time a read takes), so
    /// that a takeover waits for no observation.
    fn wake_at(&self, started: tokio::time::Instant) -> tokio::time::Instant {
        let regular = started + self.timing.tick();
        let (due, latency) = {
            let g = self.lock();
            (g.next_due, g.read_latency)
        };
        let Some(due) = due else { return regular };
        let lead = (latency * 3 / 2).min(self.timing.tick());
        let wait = due.saturating_sub(self.mono.now()).saturating_sub(lead);
        regular.min(tokio::time::Instant::now() + wait)
    }
}

fn ids_state(rule: &str) -> String {
    doc_id("state", &[rule])
}

/// The broken variant's step: a holder keeps renewing whatever the
/// document says (last writer wins), and a lease counts as expired by the
/// wall-clock time written in it.
fn broken_step(me: &str, held: Option<u64>, doc: Option<&docs::Doc>, step: Step) -> Step {
    let parsed = doc.and_then(|d| serde_json::from_value::<LeaseDoc>(d.source.clone()).ok());
    match (held, doc) {
        (Some(_), Some(d)) => return Step::Renew(d.version),
        (Some(e), None) => return Step::Take(Cond::Create, e),
        _ => {}
    }
    let (Some(l), Some(d)) = (parsed, doc) else {
        return step;
    };
    if l.owner == me || l.owner.is_empty() {
        return step;
    }
    let renewed = chrono::DateTime::parse_from_rfc3339(&l.renewed_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok();
    let expired = renewed.is_some_and(|r| {
        chrono::Utc::now()
            .signed_duration_since(r)
            .num_milliseconds()
            > i64::try_from(l.lease_ms).unwrap_or(i64::MAX)
    });
    if expired {
        Step::Take(Cond::Match(d.version), l.epoch.saturating_add(1))
    } else {
        step
    }
}

#[cfg(test)]
mod tests;
