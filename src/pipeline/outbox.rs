//! The outbox stage: a match's deliveries are written before any is sent;
//! each is sent through its sink with retries, and its result recorded as
//! soon as it is known, together with the throttle (and Watcher ack) its
//! success completes. A crash at any instant re-sends at most the delivery
//! that was in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};

use super::outcome::Outcome;
use super::{RunError, Runner};
use crate::alert::Alert;
use crate::notify::Notification;
use crate::render::{Window, fmt_time};
use crate::rule::{Plan, PlannedAction};
use crate::sinks::{Message, SinkError};
use crate::throttle::{
    AckState, AlertState, Delivery, DeliveryStatus, Fence, KeyState, Match, OUTBOX_MAX,
    OUTBOX_MAX_RULE, WHOLE_RULE,
};

/// The longest one delivery attempt may take, whatever the sink: a peer
/// that accepts a connection and never answers must not hold a rule.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a delivery was not sent.
enum Fenced {
    /// The sink failed (or the fence held it back: it stays owed).
    Sink(SinkError),
    /// The fence gave it up (`at_most_once`).
    Drop(String),
}

/// One delivery's result and attempts, once recorded.
type Sent = Result<(Result<(), SinkError>, u32), RunError>;

/// What delivering some matches came to.
#[derive(Debug, Clone)]
pub(crate) struct Delivered {
    pub outcome: Outcome,
    /// Errors by delivery id.
    pub errors: BTreeMap<String, String>,
    /// Attempts per sink in this run, and whether the last succeeded.
    pub attempts: BTreeMap<String, (u32, bool)>,
    /// Each action's result, in order: ok, or its first error.
    pub by_action: Vec<(String, Result<(), String>)>,
}

impl Delivered {
    fn dropped() -> Self {
        Delivered {
            outcome: Outcome::Dropped,
            errors: BTreeMap::new(),
            attempts: BTreeMap::new(),
            by_action: Vec::new(),
        }
    }
}

/// Keeps every match still owed and the newest one; beyond
/// [`OUTBOX_MAX`] owed matches of one key, or [`OUTBOX_MAX_RULE`] of the
/// rule, the oldest are dropped.
fn trim(name: &str, st: &mut AlertState) {
    let last = st.outbox.len().saturating_sub(1);
    let mut i = 0;
    st.outbox.retain(|m| {
        let keep = i == last || !m.settled();
        i += 1;
        keep
    });
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for m in st.outbox.iter().filter(|m| !m.settled()) {
        *per_key.entry(m.key.clone()).or_default() += 1;
    }
    let mut owed = st.outbox.iter().filter(|m| !m.settled()).count();
    for m in st.outbox.iter_mut().filter(|m| !m.settled()) {
        let of_key = per_key.entry(m.key.clone()).or_default();
        if *of_key <= OUTBOX_MAX && owed <= OUTBOX_MAX_RULE {
            continue;
        }
        *of_key = of_key.saturating_sub(1);
        owed = owed.saturating_sub(1);
        for d in m.deliveries.values_mut() {
            if d.status == DeliveryStatus::Pending {
                d.status = DeliveryStatus::Dropped;
            }
        }
        tracing::error!(alert = name, outcome = "dropped", key = m.key.as_str(), matched_at = %fmt_time(&m.matched_at),
            reason = format!("more than {OUTBOX_MAX} notifications of one key (or {OUTBOX_MAX_RULE} of the alert) owed; the oldest is given up"));
    }
}

/// Starts the throttle of `scope` of `key`: `secs` from `from`.
fn start_throttle(k: &mut KeyState, scope: &str, from: DateTime<Utc>, secs: u64) {
    let until = i64::try_from(secs)
        .ok()
        .and_then(chrono::Duration::try_seconds)
        .and_then(|p| from.checked_add_signed(p));
    if secs > 0
        && let Some(u) = until
    {
        let e = k.throttled_until.entry(scope.to_owned()).or_insert(u);
        *e = (*e).max(u);
        k.period_secs = Some(secs);
    }
}

/// Starts the throttle of `scope` (and makes its Watcher actions ackable)
/// once every delivery of the scope in match `mi` succeeded; a match (not a
/// notice) opens its key's incident, for the resolved notice.
fn settle(st: &mut AlertState, mi: usize, scope: &str, t: DateTime<Utc>) {
    let Some(m) = st.outbox.get(mi) else { return };
    let in_scope: Vec<&Delivery> = m.deliveries.values().filter(|d| d.scope == scope).collect();
    if in_scope.is_empty() || in_scope.iter().any(|d| d.status != DeliveryStatus::Sent) {
        return;
    }
    st.last_fired = Some(t);
    if m.notice.is_some() {
        return;
    }
    let secs = in_scope.iter().map(|d| d.throttle_secs).max().unwrap_or(0);
    let ackable: Vec<String> = in_scope
        .iter()
        .filter(|d| d.ackable)
        .map(|d| d.action.clone())
        .collect();
    let subject = in_scope.iter().find_map(|d| d.message.subject());
    let matched_at = m.matched_at;
    let key = st.keys.entry(m.key.clone()).or_default();
    // Counted from the tick that matched, not from when delivery ended.
    start_throttle(key, scope, matched_at, secs);
    key.firing_since.get_or_insert(matched_at);
    if subject.is_some() {
        key.last_subject = subject;
    }
    for a in ackable {
        let s = key.ack.entry(a).or_default();
        if *s == AckState::AwaitsSuccessfulExecution {
            *s = AckState::Ackable;
        }
    }
}

/// The throttle period of a new match of `key`: the rule's, or with
/// `throttle_backoff` the previous one times the factor while the key's
/// incident is open.
fn period(rule: &Alert, k: Option<&KeyState>, base: Duration) -> u64 {
    let base = base.as_secs();
    match (&rule.policy.throttle_backoff, k) {
        (Some(b), Some(k)) if base > 0 && k.firing_since.is_some() => b.next(k.period_secs, base),
        _ => base,
    }
}

/// A new match's deliveries, by id.
fn deliveries(
    rule: &Alert,
    st: &AlertState,
    actions: &[&PlannedAction],
) -> BTreeMap<String, Delivery> {
    let mut out = BTreeMap::new();
    let mut order = 0u32;
    for a in actions {
        let Plan::Send(msgs) = &a.plan else { continue };
        let throttle_secs = period(rule, st.keys.get(&a.key), a.throttle);
        for (i, m) in msgs.iter().enumerate() {
            let id = if msgs.len() == 1 {
                a.id.clone()
            } else {
                format!("{}#{}", a.id, i + 1)
            };
            out.insert(
                id,
                Delivery {
                    action: a.id.clone(),
                    scope: a.scope.clone(),
                    throttle_secs,
                    ackable: a.ackable,
                    message: m.clone(),
                    order,
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    last_error: None,
                    sent_at: None,
                },
            );
            order = order.saturating_add(1);
        }
    }
    out
}

/// The end of the window that produced a match or a digest item is done:
/// from here on a crash delivers what is owed; it never notifies the
/// window again.
fn window_done(st: &mut AlertState, window: Window) {
    st.last_window_end = Some(st.last_window_end.map_or(window.end, |e| e.max(window.end)));
}

impl Runner {
    /// Writes new matches to the outbox, one per group key, with the end of
    /// the window that produced them (in memory; the caller commits before
    /// delivering). `notice` marks notices of the pipeline's making.
    /// Returns the matches' numbers.
    pub(super) fn write_match(
        &self,
        rule: &Alert,
        actions: &[PlannedAction],
        tick: DateTime<Utc>,
        window: Window,
        notice: Option<&str>,
    ) -> Vec<u64> {
        let mut by_key: Vec<(&str, Vec<&PlannedAction>)> = Vec::new();
        for a in actions {
            match by_key.iter_mut().find(|(k, _)| *k == a.key) {
                Some((_, v)) => v.push(a),
                None => by_key.push((&a.key, vec![a])),
            }
        }
        self.state
            .update_rule(&rule.name, |st| {
                let mut seqs = Vec::new();
                for (key, actions) in &by_key {
                    let deliveries = deliveries(rule, st, actions);
                    let seq = st.outbox.last().map_or(1, |m| m.seq.saturating_add(1));
                    st.outbox.push(Match {
                        seq,
                        matched_at: tick,
                        key: (*key).to_owned(),
                        // The summary of keys beyond max_groups is a notice:
                        // it opens no incident of its own.
                        notice: notice.map(str::to_owned).or_else(|| {
                            (*key == super::group::OVERFLOW_KEY).then(|| "more".to_owned())
                        }),
                        deliveries,
                    });
                    seqs.push(seq);
                }
                window_done(st, window);
                trim(&rule.name, st);
                seqs
            })
            // Only a backend that never ran the change: no match, nothing sent.
            .unwrap_or_default()
    }

    /// Adds matches to the rule's open digests instead of the outbox: the
    /// front end's `entries` of each key let through, or one made of the
    /// key's subject. Their throttles start now (there is no delivery of
    /// their own to wait for), in the same write as the window's end.
    pub(super) fn gather(
        &self,
        rule: &Alert,
        spec: &super::digest::Digest,
        actions: &[PlannedAction],
        entries: &[super::digest::DigestEntry],
        tick: DateTime<Utc>,
        window: Window,
    ) {
        self.state.update_rule(&rule.name, |st| {
            let mut seen: Vec<&str> = Vec::new();
            for a in actions {
                let Plan::Send(msgs) = &a.plan else { continue };
                let secs = period(rule, st.keys.get(&a.key), a.throttle);
                let subject = msgs.iter().find_map(Message::subject);
                let k = st.keys.entry(a.key.clone()).or_default();
                start_throttle(k, &a.scope, tick, secs);
                k.firing_since.get_or_insert(tick);
                if subject.is_some() {
                    k.last_subject = subject.clone();
                }
                if seen.contains(&a.key.as_str()) {
                    continue;
                }
                seen.push(&a.key);
                let digest = st.digest.get_or_insert_with(Default::default);
                let mut any = false;
                for e in entries.iter().filter(|e| e.key == a.key) {
                    digest.add(spec, e.clone(), tick, rule.timezone);
                    any = true;
                }
                if !any {
                    let line = subject.unwrap_or_else(|| format!("{} {}", rule.name, a.key));
                    let e = spec.entry(&a.key, |_| None, line, String::new());
                    digest.add(spec, e, tick, rule.timezone);
                }
            }
            window_done(st, window);
        });
    }

    /// Closes the rule's digests that are due, writing one notification
    /// each to the outbox. Returns the matches' numbers.
    pub(super) fn close_digest(
        &self,
        rule: &Alert,
        tick: DateTime<Utc>,
        window: Window,
    ) -> Vec<u64> {
        let Some(spec) = rule.policy.digest.as_ref() else {
            return Vec::new();
        };
        let due = self
            .state
            .update_rule(&rule.name, |st| {
                let Some(d) = st.digest.as_mut() else {
                    return Vec::new();
                };
                let due = d.take_due(spec, tick, rule.timezone);
                if d.groups.is_empty() {
                    st.digest = None;
                }
                due
            })
            .unwrap_or_default();
        let mut out = Vec::new();
        for group in due {
            let (subject, text) = group.render(&rule.name, spec);
            let key = if group.group.is_empty() {
                WHOLE_RULE.to_owned()
            } else {
                group.group.clone()
            };
            let actions = rule.body.notice(
                rule,
                &crate::rule::Notice {
                    key,
                    subject,
                    text,
                    hits: group.total,
                    time: tick,
                    resolved: false,
                    first_key: group.items.first().map(|i| i.key.clone()),
                },
            );
            if actions.is_empty() {
                tracing::warn!(
                    alert = rule.name.as_str(),
                    event = "digest_dropped",
                    reason = "none of the rule's actions can carry a digest"
                );
                continue;
            }
            out.extend(self.write_match(rule, &actions, tick, window, Some("digest")));
        }
        out
    }

    /// Retries deliveries owed by earlier matches, or drops matches that
    /// grew too old. `None` when nothing was owed.
    pub(super) async fn retry_owed(
        &self,
        rule: &Alert,
        except: &[u64],
        now: DateTime<Utc>,
    ) -> Result<Option<Delivered>, RunError> {
        let max_age = chrono::Duration::from_std(self.settings.max_retry_age)
            .unwrap_or(chrono::Duration::hours(1));
        let (dropped, oldest) = self
            .state
            .update_rule(&rule.name, |st| {
                let mut dropped = Vec::new();
                for m in st
                    .outbox
                    .iter_mut()
                    .filter(|m| !m.settled() && !except.contains(&m.seq))
                {
                    if now.signed_duration_since(m.matched_at) <= max_age {
                        continue;
                    }
                    let mut reasons = Vec::new();
                    for (id, d) in m.deliveries.iter_mut() {
                        if d.status == DeliveryStatus::Pending {
                            d.status = DeliveryStatus::Dropped;
                            reasons.push(format!(
                                "{id}: {}",
                                d.last_error.as_deref().unwrap_or("never delivered")
                            ));
                        }
                    }
                    dropped.push((m.matched_at, reasons));
                }
                let oldest = st
                    .outbox
                    .iter()
                    .find(|m| !m.settled() && !except.contains(&m.seq))
                    .map(|m| m.matched_at);
                (dropped, oldest)
            })
            .unwrap_or_default();
        if !dropped.is_empty() {
            self.state.commit().await?;
            for (matched_at, reasons) in &dropped {
                tracing::error!(
                    alert = rule.name.as_str(),
                    outcome = "dropped",
                    matched_at = %fmt_time(matched_at),
                    reason = format!(
                        "undelivered for longer than max_retry_age ({}); {}",
                        humantime::format_duration(self.settings.max_retry_age),
                        reasons.join("; ")
                    )
                );
            }
        }
        let Some(oldest) = oldest else {
            return Ok((!dropped.is_empty()).then(Delivered::dropped));
        };
        tracing::info!(alert = rule.name.as_str(), event = "redeliver", matched_at = %fmt_time(&oldest));
        self.deliver(
            &rule.name,
            &|m: &Match| !m.settled() && !except.contains(&m.seq),
            now,
        )
        .await
        .map(Some)
    }

    /// Delivers the owed deliveries of the selected matches, concurrently,
    /// recording each result as soon as it is known.
    pub(super) async fn deliver(
        &self,
        name: &str,
        select: &(dyn Fn(&Match) -> bool + Sync),
        now: DateTime<Utc>,
    ) -> Result<Delivered, RunError> {
        let work: Vec<(u64, String, Delivery)> = self.state.read_rule(name, |st| {
            st.map(|st| {
                st.outbox
                    .iter()
                    .filter(|m| select(m))
                    .flat_map(|m| {
                        m.deliveries
                            .iter()
                            .filter(|(_, d)| d.status == DeliveryStatus::Pending)
                            .map(|(id, d)| (m.seq, id.clone(), d.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
        });
        let seqs: Vec<u64> = work.iter().map(|(s, _, _)| *s).collect();
        // Actions are delivered concurrently; the messages of one action
        // (its channels, its foreach elements) in order.
        let mut lanes: Vec<Vec<usize>> = Vec::new();
        let mut ordered: Vec<usize> = (0..work.len()).collect();
        ordered.sort_by_key(|i| (work[*i].0, work[*i].2.order));
        for i in ordered {
            match lanes.iter_mut().find(|l| {
                l.first()
                    .is_some_and(|f| work[*f].2.action == work[i].2.action)
            }) {
                Some(l) => l.push(i),
                None => lanes.push(vec![i]),
            }
        }
        let work_ref = &work;
        let lane_results = futures::future::join_all(lanes.iter().map(|lane| async move {
            let mut out = Vec::new();
            for i in lane {
                let (seq, id, d) = &work_ref[*i];
                out.push((*i, self.deliver_one(name, *seq, id, d, now).await));
            }
            out
        }))
        .await;
        let mut results: Vec<Option<Sent>> = (0..work.len()).map(|_| None).collect();
        for (i, r) in lane_results.into_iter().flatten() {
            if let Some(slot) = results.get_mut(i) {
                *slot = Some(r);
            }
        }
        let mut out = Delivered {
            outcome: Outcome::Failed,
            errors: BTreeMap::new(),
            attempts: BTreeMap::new(),
            by_action: Vec::new(),
        };
        for ((_, id, d), r) in work.iter().zip(results) {
            let Some(r) = r else { continue };
            let (result, tries) = r?;
            let sink = d.message.sink().to_owned();
            let e = out.attempts.entry(sink).or_insert((0, true));
            e.0 = e.0.saturating_add(tries);
            e.1 = result.is_ok();
            let err = result.err().map(|e| e.to_string());
            if let Some(msg) = &err {
                out.errors.insert(id.clone(), msg.clone());
            }
            match out.by_action.iter_mut().find(|(a, _)| *a == d.action) {
                Some((_, r @ Ok(()))) => {
                    if let Some(msg) = err {
                        *r = Err(msg);
                    }
                }
                Some(_) => {}
                None => out
                    .by_action
                    .push((d.action.clone(), err.map_or(Ok(()), Err))),
            }
        }
        out.outcome = self.state.read_rule(name, |st| {
            let Some(st) = st else {
                return Outcome::Failed;
            };
            let mut all: Vec<&Delivery> = st
                .outbox
                .iter()
                .filter(|m| seqs.contains(&m.seq))
                .flat_map(|m| m.deliveries.values())
                .collect();
            all.sort_by_key(|d| d.order);
            if all.iter().all(|d| d.status != DeliveryStatus::Pending) {
                let mut ids: Vec<String> = Vec::new();
                for d in all {
                    if !ids.contains(&d.action) {
                        ids.push(d.action.clone());
                    }
                }
                Outcome::Fired(ids)
            } else if all.iter().any(|d| d.status == DeliveryStatus::Sent) {
                Outcome::Partial
            } else {
                Outcome::Failed
            }
        });
        Ok(out)
    }

    /// Sends one owed delivery and records its result (and the throttle it
    /// completes) durably.
    async fn deliver_one(
        &self,
        name: &str,
        seq: u64,
        id: &str,
        d: &Delivery,
        now: DateTime<Utc>,
    ) -> Sent {
        let (result, tries) = self.fenced_send(name, seq, id, d).await;
        let sent_at = self.clock.now();
        self.state.update_rule(name, |st| {
            let Some(mi) = st.outbox.iter().position(|m| m.seq == seq) else {
                return;
            };
            if let Some(x) = st.outbox[mi].deliveries.get_mut(id) {
                x.attempts = x.attempts.saturating_add(tries);
                match &result {
                    Err(Fenced::Drop(why)) => {
                        x.status = DeliveryStatus::Dropped;
                        x.last_error = Some(why.clone());
                    }
                    Ok(()) => {
                        x.status = DeliveryStatus::Sent;
                        x.sent_at = Some(sent_at);
                        x.last_error = None;
                    }
                    Err(Fenced::Sink(e)) => x.last_error = Some(e.to_string()),
                }
            }
            // The throttle starts in the same write as the result that
            // completes it: a crash can't deliver and forget to throttle.
            settle(st, mi, &d.scope, sent_at.max(now));
        });
        // Each result is durable as soon as it is known, so a crash
        // re-sends at most the delivery that was in flight.
        self.state.commit().await?;
        let result = result.map_err(|e| match e {
            Fenced::Sink(e) => e,
            Fenced::Drop(why) => SinkError::permanent(d.message.sink(), why),
        });
        Ok((result, tries))
    }

    /// Sends one delivery if the state backend's fence lets it (shared
    /// state: this process still owns the rule, and no earlier owner
    /// recorded it sent).
    async fn fenced_send(
        &self,
        name: &str,
        seq: u64,
        id: &str,
        d: &Delivery,
    ) -> (Result<(), Fenced>, u32) {
        let Some((key, matched_at)) = self.state.read_rule(name, |st| {
            st.and_then(|st| st.outbox.iter().find(|m| m.seq == seq))
                .map(|m| (m.key.clone(), m.matched_at))
        }) else {
            let why = "the match is no longer in this instance's outbox";
            return (
                Err(Fenced::Sink(SinkError::transient(d.message.sink(), why))),
                0,
            );
        };
        let fire = crate::throttle::FireId {
            rule: name.to_owned(),
            key,
            matched_at,
            delivery: id.to_owned(),
        };
        match self.state.fence(&fire).await {
            Fence::Go => {
                let (r, tries) = self.send_with_retries(&d.message, name).await;
                self.state.fired(&fire, r.is_ok()).await;
                (r.map_err(Fenced::Sink), tries)
            }
            Fence::Sent => (Ok(()), 0),
            Fence::Hold(why) => {
                tracing::warn!(
                    alert = name,
                    event = "delivery_held",
                    delivery = id,
                    reason = why.as_str()
                );
                (
                    Err(Fenced::Sink(SinkError::transient(d.message.sink(), why))),
                    0,
                )
            }
            Fence::Drop(why) => {
                tracing::error!(alert = name, outcome = "dropped", delivery = id, matched_at = %fmt_time(&matched_at), reason = why.as_str());
                (Err(Fenced::Drop(why)), 0)
            }
        }
    }

    /// Sends one message, retrying transient failures with exponential
    /// backoff and jitter. Returns the result and the number of attempts.
    pub(super) async fn send_with_retries(
        &self,
        m: &Message,
        alert: &str,
    ) -> (Result<(), SinkError>, u32) {
        let tries = AtomicU32::new(0);
        let p = self.settings.retry;
        let result = (|| async {
            tries.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(SEND_TIMEOUT, self.sinks.send(m)).await {
                Ok(r) => r,
                Err(_) => Err(SinkError::transient(
                    m.sink(),
                    format!(
                        "no answer within {}",
                        humantime::format_duration(SEND_TIMEOUT)
                    ),
                )),
            }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(p.min_delay)
                .with_max_delay(p.max_delay)
                .with_max_times(p.tries.saturating_sub(1))
                .with_jitter(),
        )
        .when(SinkError::is_transient)
        .adjust(|e, d| e.retry_after().map(|r| r.min(p.max_delay)).or(d))
        .notify(|e, d| {
            tracing::warn!(alert, event = "delivery_retry", sink = e.sink(), error = %e, retry_in_ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        })
        .await;
        (result, tries.load(Ordering::Relaxed))
    }

    /// Sends a notice about alerting itself to every destination that
    /// takes notices (`notices` in credentials.json).
    pub(super) async fn send_notice(&self, n: Notification) {
        for name in self.sinks.notice_targets() {
            let m = Message::Notification {
                sink: name.clone(),
                notification: n.clone(),
            };
            let (r, _) = self.send_with_retries(&m, &n.alert).await;
            match r {
                Ok(()) => {
                    tracing::warn!(event = "notice", medium = name.as_str(), subject = %n.rendered.subject)
                }
                Err(e) => {
                    tracing::error!(event = "notice_failed", medium = name.as_str(), subject = %n.rendered.subject, error = %e)
                }
            }
        }
    }
}
