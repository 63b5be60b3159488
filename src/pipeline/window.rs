//! The window stage: which time range a run searches.
//!
//! From the end of the last successful window (so nothing goes unsearched
//! across outages and restarts) to the tick, both shifted back by
//! `query_delay`, and at most `max_catchup` long — never less than one
//! schedule period, so a daily rule searches its whole day. A rule's first
//! run searches one period; that start is recorded at once, so a rule whose
//! first runs fail still searches from when it was first due.

use chrono::{DateTime, Utc};

use crate::alert::Alert;
use crate::render::Window;
use crate::throttle::StateBackend;

fn chrono_of(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The window of a run for the tick `tick`.
pub(super) fn for_run(state: &dyn StateBackend, rule: &Alert, tick: DateTime<Utc>) -> Window {
    let end = tick
        .checked_sub_signed(chrono_of(rule.query_delay))
        .unwrap_or(tick);
    let period = rule.period(tick);
    let first = end.checked_sub_signed(period).unwrap_or(end);
    let last = state
        .update_rule(&rule.name, |st| *st.last_window_end.get_or_insert(first))
        .unwrap_or(first);
    // A window that ended after this one (the wall clock was stepped back):
    // search one period rather than nothing.
    let mut start = if last > end { first } else { last };
    let cap = chrono_of(rule.max_catchup).max(period);
    if end.signed_duration_since(start) > cap {
        let gap = end
            .signed_duration_since(start)
            .to_std()
            .unwrap_or_default();
        tracing::warn!(
            alert = rule.name.as_str(),
            event = "catchup_truncated",
            gap = %humantime::format_duration(std::time::Duration::from_secs(gap.as_secs())),
            searched = %humantime::format_duration(cap.to_std().unwrap_or_default()),
            "the gap since the last successful search is longer than max_catchup; only its end is searched"
        );
        start = end.checked_sub_signed(cap).unwrap_or(start);
    }
    Window { start, end }
}
