//! The `java.time` basics watches use: `Instant`, `ZonedDateTime`,
//! `Duration`, `ChronoUnit`, `ZoneId`, `DayOfWeek`, with Java's `toString`.

use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, Offset, TimeZone, Timelike, Utc};

use super::eval::Ex;

/// `DayOfWeek` constants, Monday first.
pub const DAYS: [&str; 7] = [
    "MONDAY",
    "TUESDAY",
    "WEDNESDAY",
    "THURSDAY",
    "FRIDAY",
    "SATURDAY",
    "SUNDAY",
];

/// A time zone: a fixed offset (`Z`, `+02:00`) or a region (`Europe/Paris`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// A fixed offset in seconds; 0 is `ZoneOffset.UTC`.
    Offset(i32),
    /// A region.
    Region(chrono_tz::Tz),
}

impl Zone {
    /// Parses `ZoneId.of` names.
    pub fn of(s: &str) -> Result<Zone, Ex> {
        if s == "Z" {
            return Ok(Zone::Offset(0));
        }
        if s.starts_with(['+', '-']) {
            return parse_offset(s).map(Zone::Offset).ok_or_else(|| {
                Ex::new(
                    "DateTimeException",
                    format!("Invalid ID for ZoneOffset, invalid format: {s}"),
                )
            });
        }
        s.parse::<chrono_tz::Tz>()
            .map(Zone::Region)
            .map_err(|_| Ex::new("ZoneRulesException", format!("Unknown time-zone ID: {s}")))
    }

    fn offset_at(&self, secs: i64) -> i32 {
        match self {
            Zone::Offset(o) => *o,
            Zone::Region(tz) => Utc
                .timestamp_opt(secs, 0)
                .single()
                .map(|t| {
                    tz.offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(0),
        }
    }
}

fn parse_offset(s: &str) -> Option<i32> {
    let sign = if s.starts_with('-') { -1 } else { 1 };
    let rest = &s[1..];
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i32>().ok()?, m.parse::<i32>().ok()?),
        None if rest.len() == 4 => (rest[..2].parse().ok()?, rest[2..].parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    (h <= 18 && m < 60).then_some(sign * (h * 3600 + m * 60))
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Offset(o) => f.write_str(&offset_str(*o)),
            Zone::Region(tz) => f.write_str(tz.name()),
        }
    }
}

fn offset_str(o: i32) -> String {
    if o == 0 {
        return "Z".into();
    }
    let sign = if o < 0 { '-' } else { '+' };
    let a = o.unsigned_abs();
    let (h, m, s) = (a / 3600, (a % 3600) / 60, a % 60);
    if s == 0 {
        format!("{sign}{h:02}:{m:02}")
    } else {
        format!("{sign}{h:02}:{m:02}:{s:02}")
    }
}

/// `ChronoUnit` constants, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    /// NANOS
    Nanos,
    /// MICROS
    Micros,
    /// MILLIS
    Millis,
    /// SECONDS
    Seconds,
    /// MINUTES
    Minutes,
    /// HOURS
    Hours,
    /// HALF_DAYS
    HalfDays,
    /// DAYS
    Days,
    /// WEEKS
    Weeks,
    /// MONTHS
    Months,
    /// YEARS
    Years,
}

impl Unit {
    /// By constant name.
    pub fn of(s: &str) -> Option<Unit> {
        Some(match s {
            "NANOS" => Unit::Nanos,
            "MICROS" => Unit::Micros,
            "MILLIS" => Unit::Millis,
            "SECONDS" => Unit::Seconds,
            "MINUTES" => Unit::Minutes,
            "HOURS" => Unit::Hours,
            "HALF_DAYS" => Unit::HalfDays,
            "DAYS" => Unit::Days,
            "WEEKS" => Unit::Weeks,
            "MONTHS" => Unit::Months,
            "YEARS" => Unit::Years,
            _ => return None,
        })
    }

    /// Length in nanoseconds (months and years: not exact).
    fn nanos(self) -> Option<i128> {
        Some(match self {
            Unit::Nanos => 1,
            Unit::Micros => 1_000,
            Unit::Millis => 1_000_000,
            Unit::Seconds => 1_000_000_000,
            Unit::Minutes => 60_000_000_000,
            Unit::Hours => 3_600_000_000_000,
            Unit::HalfDays => 43_200_000_000_000,
            Unit::Days => 86_400_000_000_000,
            Unit::Weeks => 604_800_000_000_000,
            Unit::Months | Unit::Years => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Nanos => "Nanos",
            Unit::Micros => "Micros",
            Unit::Millis => "Millis",
            Unit::Seconds => "Seconds",
            Unit::Minutes => "Minutes",
            Unit::Hours => "Hours",
            Unit::HalfDays => "HalfDays",
            Unit::Days => "Days",
            Unit::Weeks => "Weeks",
            Unit::Months => "Months",
            Unit::Years => "Years",
        }
    }
}

/// A `java.time` value. Instants are nanoseconds since the epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeV {
    /// `Instant`.
    Instant(i128),
    /// `ZonedDateTime`.
    Zoned(i128, Zone),
    /// `Duration`, in nanoseconds.
    Duration(i128),
    /// `ChronoUnit`.
    Unit(Unit),
    /// `ZoneId`.
    Zone(Zone),
    /// `DayOfWeek`, 1 (Monday) to 7.
    Day(u32),
}

const NANOS: i128 = 1_000_000_000;
/// Java's Instant range, about ±1e9 years, in seconds.
const MAX_SECS: i128 = 31_556_889_864_403_199;

fn overflow() -> Ex {
    Ex::new(
        "DateTimeException",
        "Instant exceeds minimum or maximum instant",
    )
}

/// Checks an instant against Java's range.
pub fn instant(n: i128) -> Result<TimeV, Ex> {
    if n.div_euclid(NANOS).abs() > MAX_SECS {
        return Err(overflow());
    }
    Ok(TimeV::Instant(n))
}

fn secs_nanos(n: i128) -> (i64, u32) {
    let s = n.div_euclid(NANOS);
    (
        i64::try_from(s).unwrap_or(i64::MAX),
        u32::try_from(n.rem_euclid(NANOS)).unwrap_or(0),
    )
}

/// The local date and time of an instant in a zone.
fn local(n: i128, zone: Zone) -> Option<NaiveDateTime> {
    let (s, ns) = secs_nanos(n);
    let off = zone.offset_at(s);
    let utc = DateTime::from_timestamp(s, ns)?;
    Some(utc.naive_utc() + chrono::Duration::seconds(i64::from(off)))
}

/// Back from local date and time in a zone to an instant.
fn from_local(l: NaiveDateTime, zone: Zone) -> Result<i128, Ex> {
    let utc = match zone {
        Zone::Offset(o) => {
            let fo = FixedOffset::east_opt(o).ok_or_else(overflow)?;
            fo.from_local_datetime(&l)
                .single()
                .map(|t| t.with_timezone(&Utc))
        }
        Zone::Region(tz) => tz
            .from_local_datetime(&l)
            .earliest()
            .or_else(|| {
                tz.from_local_datetime(&(l + chrono::Duration::hours(1)))
                    .earliest()
            })
            .map(|t| t.with_timezone(&Utc)),
    }
    .ok_or_else(overflow)?;
    Ok(i128::from(utc.timestamp()) * NANOS + i128::from(utc.timestamp_subsec_nanos()))
}

fn fraction(ns: u32) -> String {
    if ns == 0 {
        String::new()
    } else if ns.is_multiple_of(1_000_000) {
        format!(".{:03}", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!(".{:06}", ns / 1_000)
    } else {
        format!(".{ns:09}")
    }
}

/// Parses ISO-8601 date-times as `Instant.parse` and `ZonedDateTime.parse` do.
pub fn parse(s: &str, zoned: bool) -> Result<TimeV, Ex> {
    let bad = || {
        Ex::new(
            "DateTimeParseException",
            format!("Text '{s}' could not be parsed"),
        )
    };
    let (body, region) = match s.find('[') {
        Some(i) if zoned && s.ends_with(']') => (&s[..i], Some(&s[i + 1..s.len() - 1])),
        _ => (s, None),
    };
    let t = DateTime::parse_from_rfc3339(body)
        .or_else(|_| DateTime::parse_from_str(body, "%Y-%m-%dT%H:%M%:z"))
        .or_else(|_| DateTime::parse_from_str(&body.replace('Z', "+00:00"), "%Y-%m-%dT%H:%M%:z"))
        .map_err(|_| bad())?;
    let n = i128::from(t.timestamp()) * NANOS + i128::from(t.timestamp_subsec_nanos());
    if !zoned {
        return instant(n);
    }
    let zone = match region {
        Some(r) => Zone::of(r).map_err(|_| bad())?,
        None => Zone::Offset(t.offset().local_minus_utc()),
    };
    Ok(TimeV::Zoned(n, zone))
}

impl fmt::Display for TimeV {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeV::Instant(n) => {
                let (s, ns) = secs_nanos(*n);
                match DateTime::from_timestamp(s, 0) {
                    Some(t) => write!(f, "{}{}Z", t.format("%Y-%m-%dT%H:%M:%S"), fraction(ns)),
                    None => f.write_str("?"),
                }
            }
            TimeV::Zoned(n, zone) => {
                let Some(l) = local(*n, *zone) else {
                    return f.write_str("?");
                };
                let (s, ns) = secs_nanos(*n);
                write!(f, "{}", l.format("%Y-%m-%dT%H:%M"))?;
                if l.second() != 0 || ns != 0 {
                    write!(f, ":{:02}{}", l.second(), fraction(ns))?;
                }
                f.write_str(&offset_str(zone.offset_at(s)))?;
                if let Zone::Region(tz) = zone {
                    write!(f, "[{}]", tz.name())?;
                }
                Ok(())
            }
            TimeV::Duration(n) => f.write_str(&duration_str(*n)),
            TimeV::Unit(u) => f.write_str(u.name()),
            TimeV::Zone(z) => write!(f, "{z}"),
            TimeV::Day(d) => f.write_str(
                DAYS.get(d.saturating_sub(1) as usize)
                    .copied()
                    .unwrap_or("?"),
            ),
        }
    }
}

fn duration_str(n: i128) -> String {
    if n == 0 {
        return "PT0S".into();
    }
    let secs = n.div_euclid(NANOS);
    let nanos = n.rem_euclid(NANOS);
    // Java: hours and minutes from the (floored) seconds, truncating.
    let eff = if secs < 0 && nanos > 0 {
        secs + 1
    } else {
        secs
    };
    let hours = eff / 3600;
    let minutes = (eff % 3600) / 60;
    let s = eff % 60;
    let mut out = String::from("PT");
    if hours != 0 {
        out.push_str(&format!("{hours}H"));
    }
    if minutes != 0 {
        out.push_str(&format!("{minutes}M"));
    }
    if s == 0 && nanos == 0 && out.len() > 2 {
        return out;
    }
    if secs < 0 && nanos > 0 {
        if s == 0 {
            out.push_str("-0");
        } else {
            out.push_str(&s.to_string());
        }
    } else {
        out.push_str(&s.to_string());
    }
    if nanos > 0 {
        let frac = if secs < 0 { NANOS - nanos } else { nanos };
        let f = format!("{frac:09}");
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
    out.push('S');
    out
}

impl TimeV {
    /// Java class name.
    pub fn type_name(&self) -> &'static str {
        match self {
            TimeV::Instant(_) => "java.time.Instant",
            TimeV::Zoned(..) => "java.time.ZonedDateTime",
            TimeV::Duration(_) => "java.time.Duration",
            TimeV::Unit(_) => "java.time.temporal.ChronoUnit",
            TimeV::Zone(_) => "java.time.ZoneId",
            TimeV::Day(_) => "java.time.DayOfWeek",
        }
    }

    /// The instant of an `Instant` or `ZonedDateTime`.
    pub fn nanos(&self) -> Option<i128> {
        match self {
            TimeV::Instant(n) | TimeV::Zoned(n, _) | TimeV::Duration(n) => Some(*n),
            _ => None,
        }
    }

    /// A watch's `ctx.execution_time`: a `ZonedDateTime` in UTC.
    pub fn zoned_utc(t: DateTime<Utc>) -> TimeV {
        TimeV::Zoned(
            i128::from(t.timestamp()) * NANOS + i128::from(t.timestamp_subsec_nanos()),
            Zone::Offset(0),
        )
    }
}

/// `unit.between(a, b)`.
pub fn between(unit: Unit, a: &TimeV, b: &TimeV) -> Result<i64, Ex> {
    let (Some(x), Some(y)) = (a.nanos(), b.nanos()) else {
        return Err(Ex::new("ClassCastException", "between needs two temporals"));
    };
    let n = match unit.nanos() {
        Some(u) => (y - x) / u,
        None => {
            let zone = match a {
                TimeV::Zoned(_, z) => *z,
                _ => {
                    return Err(Ex::new(
                        "UnsupportedTemporalTypeException",
                        format!("Unsupported unit: {}", unit.name()),
                    ));
                }
            };
            let (Some(la), Some(lb)) = (local(x, zone), local(y, zone)) else {
                return Err(overflow());
            };
            let mut months = i128::from(lb.year() - la.year()) * 12 + i128::from(lb.month())
                - i128::from(la.month());
            let rest = |l: NaiveDateTime| (l.day(), l.time());
            if months > 0 && rest(lb) < rest(la) {
                months -= 1;
            } else if months < 0 && rest(lb) > rest(la) {
                months += 1;
            }
            if unit == Unit::Years {
                months / 12
            } else {
                months
            }
        }
    };
    i64::try_from(n).map_err(|_| Ex::new("ArithmeticException", "long overflow"))
}

/// `t.plus(amount, unit)`; `amount` may be negative.
pub fn plus(t: &TimeV, amount: i64, unit: Unit) -> Result<TimeV, Ex> {
    match t {
        TimeV::Instant(n) => match unit.nanos() {
            Some(u) if unit <= Unit::Days => instant(n + i128::from(amount) * u),
            _ => Err(Ex::new(
                "UnsupportedTemporalTypeException",
                format!("Unsupported unit: {}", unit.name()),
            )),
        },
        TimeV::Duration(n) => match unit.nanos() {
            Some(u) if unit <= Unit::Days => n
                .checked_add(i128::from(amount) * u)
                .map(TimeV::Duration)
                .ok_or_else(|| Ex::new("ArithmeticException", "long overflow")),
            _ => Err(Ex::new(
                "UnsupportedTemporalTypeException",
                "Unit must not have an estimated duration",
            )),
        },
        TimeV::Zoned(n, zone) => {
            let z = *zone;
            match unit {
                Unit::Days | Unit::Weeks | Unit::Months | Unit::Years => {
                    let l = local(*n, z).ok_or_else(overflow)?;
                    let l = match unit {
                        Unit::Days => l.checked_add_signed(
                            chrono::Duration::try_days(amount).ok_or_else(overflow)?,
                        ),
                        Unit::Weeks => l.checked_add_signed(
                            chrono::Duration::try_weeks(amount).ok_or_else(overflow)?,
                        ),
                        _ => {
                            let months = if unit == Unit::Years {
                                amount.checked_mul(12)
                            } else {
                                Some(amount)
                            }
                            .ok_or_else(overflow)?;
                            let m = chrono::Months::new(
                                u32::try_from(months.unsigned_abs()).map_err(|_| overflow())?,
                            );
                            if months >= 0 {
                                l.checked_add_months(m)
                            } else {
                                l.checked_sub_months(m)
                            }
                        }
                    }
                    .ok_or_else(overflow)?;
                    Ok(TimeV::Zoned(from_local(l, z)?, z))
                }
                _ => {
                    let u = unit.nanos().ok_or_else(overflow)?;
                    match instant(n + i128::from(amount) * u)? {
                        TimeV::Instant(x) => Ok(TimeV::Zoned(x, z)),
                        other => Ok(other),
                    }
                }
            }
        }
        _ => Err(Ex::new("ClassCastException", "not a temporal")),
    }
}

/// `ZonedDateTime` fields: `getYear`, `getHour`, ….
pub fn field(t: &TimeV, name: &str) -> Option<i64> {
    let TimeV::Zoned(n, zone) = t else {
        return None;
    };
    let l = local(*n, *zone)?;
    Some(match name {
        "getYear" => i64::from(l.year()),
        "getMonthValue" => i64::from(l.month()),
        "getDayOfMonth" => i64::from(l.day()),
        "getDayOfYear" => i64::from(l.ordinal()),
        "getHour" => i64::from(l.hour()),
        "getMinute" => i64::from(l.minute()),
        "getSecond" => i64::from(l.second()),
        "getNano" => i64::from(secs_nanos(*n).1),
        "getDayOfWeek" => i64::from(l.weekday().number_from_monday()),
        _ => return None,
    })
}

/// `truncatedTo(unit)` of an instant or a zoned date-time.
pub fn truncate(t: &TimeV, unit: Unit) -> Result<TimeV, Ex> {
    let u = unit.nanos().filter(|_| unit <= Unit::Days).ok_or_else(|| {
        Ex::new(
            "UnsupportedTemporalTypeException",
            "Unit is too large to be used for truncation",
        )
    })?;
    match t {
        TimeV::Instant(n) => Ok(TimeV::Instant(n - n.rem_euclid(u))),
        TimeV::Zoned(n, zone) => {
            let off = i128::from(zone.offset_at(secs_nanos(*n).0)) * NANOS;
            let localn = n + off;
            Ok(TimeV::Zoned(localn - localn.rem_euclid(u) - off, *zone))
        }
        _ => Err(Ex::new("ClassCastException", "not a temporal")),
    }
}
