//! Elasticsearch date math: `now-5m`, `now/d`, `now-1d/d`, and index
//! names such as `<logs-{now/d}>` or `<logs-{now/M{yyyy.MM}}>`.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

/// Evaluates `now[(+|-)N unit]...[/unit]` at `now`.
pub fn eval(expr: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let rest = expr
        .trim()
        .strip_prefix("now")
        .ok_or_else(|| format!("date math {expr:?} must start with `now`"))?;
    let mut t = now;
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let op = b[i] as char;
        i += 1;
        if op == '/' {
            let unit = rest.get(i..i + 1).ok_or("rounding needs a unit")?;
            t = round_down(t, unit)?;
            i += 1;
            continue;
        }
        if op != '+' && op != '-' {
            return Err(format!("unexpected {op:?} in date math {expr:?}"));
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = if start == i {
            1
        } else {
            rest[start..i].parse().map_err(|_| "bad number")?
        };
        let unit = rest
            .get(i..i + 1)
            .ok_or_else(|| format!("missing unit in {expr:?}"))?;
        i += 1;
        let n = if op == '-' { -n } else { n };
        t = add(t, n, unit)?;
    }
    Ok(t)
}

/// Date math that leaves chrono's range (about ±262,000 years) is an error,
/// never a panic: `now-9999999999d` is something a file can say.
fn add(t: DateTime<Utc>, n: i64, unit: &str) -> Result<DateTime<Utc>, String> {
    let out_of_range = || format!("date math `{n:+}{unit}` is out of the supported date range");
    let span = match unit {
        "y" => {
            let year = i32::try_from(n)
                .ok()
                .and_then(|n| t.year().checked_add(n))
                .ok_or_else(out_of_range)?;
            return t.with_year(year).ok_or_else(out_of_range);
        }
        "M" => {
            let months = i64::from(t.year())
                .checked_mul(12)
                .and_then(|m| m.checked_add(i64::from(t.month0())))
                .and_then(|m| m.checked_add(n))
                .ok_or_else(out_of_range)?;
            let y = i32::try_from(months.div_euclid(12)).map_err(|_| out_of_range())?;
            // rem_euclid(12) is in 0..12.
            let m = u32::try_from(months.rem_euclid(12)).map_err(|_| out_of_range())? + 1;
            let day = t.day().min(days_in_month(y, m).ok_or_else(out_of_range)?);
            return Utc
                .with_ymd_and_hms(y, m, day, t.hour(), t.minute(), t.second())
                .single()
                .and_then(|d| d.with_nanosecond(t.nanosecond()))
                .ok_or_else(out_of_range);
        }
        "w" => Duration::try_weeks(n),
        "d" => Duration::try_days(n),
        "h" | "H" => Duration::try_hours(n),
        "m" => Duration::try_minutes(n),
        "s" => Duration::try_seconds(n),
        other => return Err(format!("unknown date math unit {other:?}")),
    };
    span.and_then(|d| t.checked_add_signed(d))
        .ok_or_else(out_of_range)
}

fn days_in_month(y: i32, m: u32) -> Option<u32> {
    let next = if m == 12 {
        (y.checked_add(1)?, 1)
    } else {
        (y, m + 1)
    };
    let first = chrono::NaiveDate::from_ymd_opt(next.0, next.1, 1)?;
    Some(first.pred_opt()?.day())
}

fn round_down(t: DateTime<Utc>, unit: &str) -> Result<DateTime<Utc>, String> {
    let d = t.date_naive();
    let out_of_range = || format!("rounding `/{unit}` is out of the supported date range");
    let midnight = |d: Option<chrono::NaiveDate>| {
        d.and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| Utc.from_utc_datetime(&dt))
            .ok_or_else(out_of_range)
    };
    match unit {
        "y" => midnight(d.with_ordinal(1)),
        "M" => midnight(d.with_day(1)),
        "w" => midnight(d.checked_sub_signed(Duration::days(i64::from(
            d.weekday().num_days_from_monday(),
        )))),
        "d" => midnight(Some(d)),
        "h" | "H" => t
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .ok_or_else(out_of_range),
        "m" => t
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .ok_or_else(out_of_range),
        "s" => t.with_nanosecond(0).ok_or_else(out_of_range),
        other => Err(format!("unknown rounding unit {other:?}")),
    }
}

/// Formats with a Java-style pattern (`yyyy.MM.dd`, `HH:mm`).
fn format_java(t: DateTime<Utc>, pattern: &str) -> String {
    let mut out = pattern.to_owned();
    for (java, val) in [
        ("yyyy", format!("{:04}", t.year())),
        ("MM", format!("{:02}", t.month())),
        ("dd", format!("{:02}", t.day())),
        ("HH", format!("{:02}", t.hour())),
        ("mm", format!("{:02}", t.minute())),
        ("ss", format!("{:02}", t.second())),
    ] {
        out = out.replace(java, &val);
    }
    out
}

/// Resolves a date-math index name; other names are returned unchanged.
pub fn index_name(name: &str, now: DateTime<Utc>) -> Result<String, String> {
    let Some(inner) = name.strip_prefix('<').and_then(|n| n.strip_suffix('>')) else {
        return Ok(name.to_owned());
    };
    let mut out = String::new();
    let mut rest = inner;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        // `{now/d{yyyy.MM.dd|+01:00}}`: the format may hold its own braces.
        let (expr, fmt, consumed) = match (after.find('{'), after.find('}')) {
            (Some(f), Some(c)) if f < c => {
                let fend = after[f..]
                    .find('}')
                    .map(|x| f + x)
                    .ok_or("unclosed format")?;
                let close = after[fend + 1..]
                    .find('}')
                    .map(|x| fend + 1 + x)
                    .ok_or("unclosed {")?;
                (&after[..f], Some(&after[f + 1..fend]), close + 1)
            }
            (_, Some(c)) => (&after[..c], None, c + 1),
            _ => return Err(format!("unclosed {{ in index name {name:?}")),
        };
        let (pattern, offset) = match fmt {
            Some(f) => match f.split_once('|') {
                Some((p, tz)) => (p, Some(tz)),
                None => (f, None),
            },
            None => ("yyyy.MM.dd", None),
        };
        let shift = match offset {
            Some(o) => {
                let off: chrono::FixedOffset =
                    o.parse().map_err(|_| format!("bad time zone {o:?}"))?;
                Duration::seconds(off.local_minus_utc() as i64)
            }
            None => Duration::zero(),
        };
        let at = now
            .checked_add_signed(shift)
            .ok_or_else(|| format!("time zone {offset:?} is out of range"))?;
        let t = eval(expr, at)?;
        out.push_str(&format_java(t, pattern));
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A compare value of the form `<{now-5m}>`, if it is one.
pub fn compare_value(v: &str, now: DateTime<Utc>) -> Option<Result<DateTime<Utc>, String>> {
    let inner = v.strip_prefix("<{")?.strip_suffix("}>")?;
    Some(eval(inner, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 20, 41, 17).unwrap()
    }

    #[test]
    fn math() {
        assert_eq!(
            eval("now-5m", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 20, 36, 17).unwrap()
        );
        assert_eq!(
            eval("now/d", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 21, 0, 0, 0).unwrap()
        );
        assert_eq!(
            eval("now-1d/d", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert_eq!(
            eval("now+1M/M", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            eval("now/w", now()).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 16, 0, 0, 0).unwrap()
        );
        assert!(eval("yesterday", now()).is_err());
        assert!(eval("now-5x", now()).is_err());
    }

    #[test]
    fn math_out_of_range_is_an_error_not_a_panic() {
        for e in [
            "now-9999999999d",
            "now+9999999999999999w",
            "now-9223372036854775807s",
            "now+9223372036854775807M",
            "now+9223372036854775807y",
            "now+200000y+200000y",
            "now-99999999999h",
            "now-9999999999999999m",
        ] {
            let err = eval(e, now()).unwrap_err();
            assert!(
                err.contains("out of the supported date range"),
                "{e}: {err}"
            );
        }
        let err = index_name("<logs-{now-9999999999d}>", now()).unwrap_err();
        assert!(err.contains("out of the supported date range"), "{err}");
    }

    #[test]
    fn index_names() {
        assert_eq!(
            index_name("<logs-{now/d}>", now()).unwrap(),
            "logs-2026.11.21"
        );
        assert_eq!(
            index_name("<logs-{now/M{yyyy.MM}}>", now()).unwrap(),
            "logs-2026.11"
        );
        assert_eq!(
            index_name("<logs-{now-1d/d{yyyy-MM-dd}}>", now()).unwrap(),
            "logs-2026-11-20"
        );
        assert_eq!(
            index_name("<logs-{now/d{yyyy.MM.dd|+12:00}}>", now()).unwrap(),
            "logs-2026.11.22"
        );
        assert_eq!(index_name("plain-*", now()).unwrap(), "plain-*");
    }
}
