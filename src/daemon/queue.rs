//! The schedule's priority queue: which alert is due next.
//!
//! Walking every alert at every wake-up made a pass over N alerts cost
//! N × N (each completion woke the loop, which looked at all N). Here each
//! due time is an entry of a min-heap, so a tick or a completion costs
//! O(log N) per alert. Entries are never updated in place: whoever changes
//! an alert's `next_due` pushes a fresh entry, and an entry whose time is no
//! longer the alert's `next_due` (rescheduled, changed, removed) is dropped
//! when it reaches the top (lazy deletion). The heap is rebuilt when such
//! stale entries outnumber the live ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use chrono::{DateTime, Utc};

/// Due times by alert, earliest first.
#[derive(Debug, Default)]
pub struct DueQueue {
    heap: BinaryHeap<Reverse<(DateTime<Utc>, String)>>,
    /// Heap pushes and pops since the start: the scheduler's work, for
    /// `esalert_scheduler_operations_total` and the test that a pass is
    /// O(N), not O(N²).
    ops: u64,
}

impl DueQueue {
    /// A queue of `entries` (name and due time; `None`, inactive, is left out).
    pub fn rebuild<'a>(
        &mut self,
        entries: impl Iterator<Item = (&'a String, Option<DateTime<Utc>>)>,
    ) {
        let v: Vec<_> = entries
            .filter_map(|(n, d)| d.map(|d| Reverse((d, n.clone()))))
            .collect();
        self.ops = self.ops.saturating_add(v.len() as u64);
        self.heap = BinaryHeap::from(v);
    }

    /// Records that `name` is now due at `due` (nothing if inactive).
    pub fn push(&mut self, name: &str, due: Option<DateTime<Utc>>) {
        if let Some(d) = due {
            self.ops = self.ops.saturating_add(1);
            self.heap.push(Reverse((d, name.to_owned())));
        }
    }

    /// Whether stale entries outnumber live ones (`live` alerts), so that a
    /// rebuild is due.
    pub fn bloated(&self, live: usize) -> bool {
        self.heap.len() > live.saturating_mul(2).saturating_add(64)
    }

    /// Pops the earliest entry due at or before `now` that is still current
    /// (`current(name)` is the alert's `next_due` now), skipping stale ones.
    pub fn pop_due(
        &mut self,
        now: DateTime<Utc>,
        current: impl Fn(&str) -> Option<DateTime<Utc>>,
    ) -> Option<(String, DateTime<Utc>)> {
        while let Some(Reverse((due, _))) = self.heap.peek() {
            if *due > now {
                return None;
            }
            let Reverse((due, name)) = self.heap.pop()?;
            self.ops = self.ops.saturating_add(1);
            if current(&name) == Some(due) {
                return Some((name, due));
            }
        }
        None
    }

    /// The earliest current due time, dropping stale entries on top.
    pub fn earliest(
        &mut self,
        current: impl Fn(&str) -> Option<DateTime<Utc>>,
    ) -> Option<DateTime<Utc>> {
        while let Some(Reverse((due, name))) = self.heap.peek() {
            if current(name) == Some(*due) {
                return Some(*due);
            }
            self.heap.pop();
            self.ops = self.ops.saturating_add(1);
        }
        None
    }

    /// Pushes and pops so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    /// The daemon's use: pop what is due, give it its next due time, push.
    fn pass(
        q: &mut DueQueue,
        due: &mut BTreeMap<String, Option<DateTime<Utc>>>,
        now: DateTime<Utc>,
        period: i64,
    ) -> Vec<String> {
        let mut ran = Vec::new();
        loop {
            let popped = q.pop_due(now, |n| due.get(n).copied().flatten());
            let Some((name, _)) = popped else { break };
            let next = Some(at(((now - at(0)).num_seconds() / period + 1) * period));
            due.insert(name.clone(), next);
            q.push(&name, next);
            ran.push(name);
        }
        ran
    }

    #[test]
    fn a_pass_over_1000_alerts_costs_o_n_heap_operations() {
        let n = 1000;
        let mut due: BTreeMap<String, Option<DateTime<Utc>>> =
            (0..n).map(|i| (format!("a{i:04}"), Some(at(60)))).collect();
        let mut q = DueQueue::default();
        q.rebuild(due.iter().map(|(k, v)| (k, *v)));
        let before = q.ops();
        // Nothing due yet: a wake-up touches nothing.
        assert!(pass(&mut q, &mut due, at(59), 60).is_empty());
        assert_eq!(q.ops(), before);
        assert_eq!(q.earliest(|n| due.get(n).copied().flatten()), Some(at(60)));
        // The tick: every alert runs once, in name order, and the pass costs
        // one pop and one push per alert (the old loop: N looks per wake-up,
        // N wake-ups).
        let ran = pass(&mut q, &mut due, at(60), 60);
        assert_eq!(ran.len(), n);
        assert!(ran.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(q.ops() - before, 2 * n as u64);
        // A completion's wake-up: one peek, no operation.
        assert_eq!(q.earliest(|n| due.get(n).copied().flatten()), Some(at(120)));
        assert_eq!(q.ops() - before, 2 * n as u64);
        // Missed ticks coalesce: three periods later, each runs once.
        assert_eq!(pass(&mut q, &mut due, at(300), 60).len(), n);
        assert_eq!(q.ops() - before, 4 * n as u64);
    }

    #[test]
    fn rescheduled_and_removed_alerts_leave_only_stale_entries() {
        let mut due: BTreeMap<String, Option<DateTime<Utc>>> = [("a", 10), ("b", 20), ("c", 30)]
            .into_iter()
            .map(|(n, s)| (n.to_owned(), Some(at(s))))
            .collect();
        let mut q = DueQueue::default();
        q.rebuild(due.iter().map(|(k, v)| (k, *v)));
        // "a" moved later (an edit), "b" removed, "c" made due now (run now).
        due.insert("a".into(), Some(at(40)));
        q.push("a", Some(at(40)));
        due.remove("b");
        due.insert("c".into(), Some(at(5)));
        q.push("c", Some(at(5)));
        let cur =
            |due: &BTreeMap<String, Option<DateTime<Utc>>>, n: &str| due.get(n).copied().flatten();
        assert_eq!(q.earliest(|n| cur(&due, n)), Some(at(5)));
        assert_eq!(
            q.pop_due(at(35), |n| cur(&due, n)),
            Some(("c".into(), at(5)))
        );
        // The old entries of a, b and c are skipped, not run.
        assert_eq!(q.pop_due(at(35), |n| cur(&due, n)), None);
        assert_eq!(q.earliest(|n| cur(&due, n)), Some(at(40)));
        assert_eq!(q.len(), 1);
        // An inactive alert has no entry.
        q.push("d", None);
        assert_eq!(q.len(), 1);
        assert!(!q.bloated(1));
    }
}
