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

fn add(t: DateTime<Utc>, n: i64, unit: &str) -> Result<DateTime<Utc>, String> {
    Ok(match unit {
        "y" => t
            .with_year(t.year() + n as i32)
            .ok_or("year out of range")?,
        "M" => {
            let months = t.year() as i64 * 12 + t.month0() as i64 + n;
            let (y, m) = (
                months.div_euclid(12) as i32,
                months.rem_euclid(12) as u32 + 1,
            );
            let day = t.day().min(days_in_month(y, m));
            Utc.with_ymd_and_hms(y, m, day, t.hour(), t.minute(), t.second())
                .single()
                .ok_or("bad date")?
                + Duration::nanoseconds(t.nanosecond() as i64)
        }
        "w" => t + Duration::weeks(n),
        "d" => t + Duration::days(n),
        "h" | "H" => t + Duration::hours(n),
        "m" => t + Duration::minutes(n),
        "s" => t + Duration::seconds(n),
        other => return Err(format!("unknown date math unit {other:?}")),
    })
}

fn days_in_month(y: i32, m: u32) -> u32 {
    let next = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    (Utc.with_ymd_and_hms(next.0, next.1, 1, 0, 0, 0).unwrap() - Duration::days(1)).day()
}

fn round_down(t: DateTime<Utc>, unit: &str) -> Result<DateTime<Utc>, String> {
    let d = t.date_naive();
    let midnight = |d: chrono::NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap());
    Ok(match unit {
        "y" => midnight(d.with_ordinal(1).unwrap()),
        "M" => midnight(d.with_day(1).unwrap()),
        "w" => midnight(d - Duration::days(d.weekday().num_days_from_monday() as i64)),
        "d" => midnight(d),
        "h" | "H" => t
            .with_minute(0)
            .unwrap()
            .with_second(0)
            .unwrap()
            .with_nanosecond(0)
            .unwrap(),
        "m" => t.with_second(0).unwrap().with_nanosecond(0).unwrap(),
        "s" => t.with_nanosecond(0).unwrap(),
        other => return Err(format!("unknown rounding unit {other:?}")),
    })
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
        let t = eval(expr, now + shift)?;
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
