//! Due times: wall-clock-aligned intervals, cron in UTC and in a time zone
//! across both daylight-saving changes.

use chrono::{DateTime, Utc};
use esalert::alert::Schedule;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn next_n(s: &str, tz: Option<&str>, from: &str, n: usize) -> Vec<String> {
    let sched: Schedule = s.parse().unwrap();
    let tz = tz.map(|t| t.parse::<chrono_tz::Tz>().unwrap());
    let mut t = utc(from);
    (0..n)
        .map(|_| {
            t = sched.next_after(t, tz).unwrap();
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .collect()
}

#[test]
fn intervals_align_to_the_wall_clock() {
    assert_eq!(
        next_n("1m", None, "2026-11-21T20:41:17.250Z", 3),
        [
            "2026-11-21T20:42:00Z",
            "2026-11-21T20:43:00Z",
            "2026-11-21T20:44:00Z"
        ]
    );
    assert_eq!(
        next_n("5m", None, "2026-11-21T20:41:17Z", 3),
        [
            "2026-11-21T20:45:00Z",
            "2026-11-21T20:50:00Z",
            "2026-11-21T20:55:00Z"
        ]
    );
    assert_eq!(
        next_n("30s", None, "2026-11-21T20:41:00Z", 2),
        ["2026-11-21T20:41:30Z", "2026-11-21T20:42:00Z"]
    );
    // Exactly on a boundary: the next one, never the same instant again.
    assert_eq!(
        next_n("1m", None, "2026-11-21T20:42:00Z", 1),
        ["2026-11-21T20:43:00Z"]
    );
}

#[test]
fn cron_in_utc_and_in_a_zone() {
    assert_eq!(
        next_n("0 */15 9-10 * * 1-5", None, "2026-11-20T10:40:00Z", 3),
        [
            "2026-11-20T10:45:00Z",
            "2026-11-23T09:00:00Z",
            "2026-11-23T09:15:00Z"
        ]
    );
    // 09:00 in Madrid is 08:00 UTC in winter.
    assert_eq!(
        next_n(
            "0 0 9 * * *",
            Some("Europe/Madrid"),
            "2026-11-21T12:00:00Z",
            2
        ),
        ["2026-11-22T08:00:00Z", "2026-11-23T08:00:00Z"]
    );
}

#[test]
fn dst_gap_runs_once_at_the_shifted_time() {
    // 2026-03-29: Madrid skips from 02:00 to 03:00. 02:30 doesn't exist that day.
    let got = next_n(
        "0 30 2 * * *",
        Some("Europe/Madrid"),
        "2026-03-28T12:00:00Z",
        3,
    );
    assert_eq!(
        got,
        [
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
            "2026-03-31T00:30:00Z"
        ],
        "one run on the gap day (03:00 CEST), then 02:30 CEST"
    );
}

#[test]
fn dst_overlap_runs_once() {
    // 2026-10-25: Madrid repeats 02:00–03:00. 02:30 happens twice on the wall.
    let got = next_n(
        "0 30 2 * * *",
        Some("Europe/Madrid"),
        "2026-10-24T12:00:00Z",
        3,
    );
    assert_eq!(
        got,
        [
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z",
            "2026-10-27T01:30:00Z"
        ],
        "02:30 CEST once, not again at 02:30 CET"
    );
}

#[test]
fn utc_schedule_ignores_dst() {
    assert_eq!(
        next_n("0 30 2 * * *", None, "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T02:30:00Z", "2026-03-30T02:30:00Z"]
    );
}
