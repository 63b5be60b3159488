//! Wall-clock steps.
//!
//! Due times live on the wall clock (a `5m` alert runs at minutes 0, 5, 10…),
//! but the time between two looks at it is measured on the boot-time clock,
//! which only moves forward at a steady rate and keeps counting through a
//! suspend. When the wall clock moved more than [`STEP_THRESHOLD`] away from
//! it, someone stepped the clock (NTP, an operator, a VM restore): the
//! scheduler logs `event=clock_step` and recomputes due times, so a step
//! back of an hour never leaves an alert silent for an hour.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

/// A wall-clock change this far from the steady clock's is a step, not
/// drift or scheduling jitter.
pub const STEP_THRESHOLD: Duration = Duration::from_secs(2);

/// Time since boot, suspend included (`CLOCK_BOOTTIME`): a suspend is not a
/// clock step, since the wall clock is right after it.
pub fn boottime() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Compares successive readings of the steady and the wall clock.
#[derive(Debug, Clone, Copy)]
pub struct StepDetector {
    steady: Duration,
    wall: DateTime<Utc>,
}

impl StepDetector {
    /// Starts from one reading of both clocks.
    pub fn new(steady: Duration, wall: DateTime<Utc>) -> StepDetector {
        StepDetector { steady, wall }
    }

    /// Takes a new reading; returns how far the wall clock jumped (positive
    /// forward) when it moved more than [`STEP_THRESHOLD`] away from the
    /// steady clock since the last reading.
    pub fn observe(&mut self, steady: Duration, wall: DateTime<Utc>) -> Option<TimeDelta> {
        let steady_elapsed = TimeDelta::from_std(steady.saturating_sub(self.steady)).ok()?;
        let wall_elapsed = wall.signed_duration_since(self.wall);
        self.steady = steady;
        self.wall = wall;
        let delta = wall_elapsed.checked_sub(&steady_elapsed)?;
        let limit = TimeDelta::from_std(STEP_THRESHOLD).ok()?;
        (delta.abs() > limit).then_some(delta)
    }
}

/// `delta` for the log: signed, whole seconds, e.g. `-3600s`.
pub fn fmt_delta(delta: TimeDelta) -> String {
    format!("{}s", delta.num_seconds())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, h, m, s).unwrap()
    }

    #[test]
    fn steady_ticks_and_jitter_are_not_steps() {
        let mut d = StepDetector::new(Duration::from_secs(100), at(12, 0, 0));
        assert_eq!(d.observe(Duration::from_secs(101), at(12, 0, 1)), None);
        // A late wake-up moves both clocks alike.
        assert_eq!(d.observe(Duration::from_secs(131), at(12, 0, 31)), None);
        // A second of drift is not a step.
        assert_eq!(d.observe(Duration::from_secs(132), at(12, 0, 33)), None);
    }

    #[test]
    fn steps_back_and_forward_are_detected_with_their_size() {
        let mut d = StepDetector::new(Duration::from_secs(100), at(12, 0, 0));
        let back = d.observe(Duration::from_secs(101), at(11, 0, 1)).unwrap();
        assert_eq!(fmt_delta(back), "-3600s");
        let fwd = d.observe(Duration::from_secs(102), at(13, 0, 2)).unwrap();
        assert_eq!(fmt_delta(fwd), "7200s");
        assert_eq!(d.observe(Duration::from_secs(103), at(13, 0, 3)), None);
    }
}
