//! Schedules and durations as written in alert files.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest duration any file may hold: one year (365 days). Longer
/// values are typos or attacks, and they overflow date arithmetic
/// (`now + 1000000y` is out of chrono's range), so they are refused at load.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_DURATION`] as written in messages and the README.
pub const MAX_DURATION_TEXT: &str = "365d (1 year)";

/// Refuses a duration over [`MAX_DURATION`], naming what it is.
pub fn check_max(what: &str, d: Duration) -> Result<Duration, String> {
    if d > MAX_DURATION {
        return Err(format!(
            "{what} is too long: it must be at most {MAX_DURATION_TEXT}"
        ));
    }
    Ok(d)
}

/// A humantime duration (`30s`, `15m`, `1h 30m`) that keeps its spelling for
/// display. At most [`MAX_DURATION`].
#[derive(Clone, PartialEq, Eq)]
pub struct HumanDuration {
    /// The parsed value.
    pub value: Duration,
    text: String,
}

impl HumanDuration {
    /// Builds a duration from its text form, e.g. `"15m"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let value = humantime::parse_duration(text.trim()).map_err(|e| {
            format!("invalid duration {text:?}: {e}; write it like \"30s\", \"15m\" or \"1h\"")
        })?;
        check_max(&format!("duration {:?}", text.trim()), value)?;
        Ok(HumanDuration {
            value,
            text: text.trim().to_owned(),
        })
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// When an alert runs: a fixed interval aligned to the wall clock, or a cron
/// expression with seconds first.
#[derive(Clone)]
pub enum Schedule {
    /// Every interval, e.g. `1m`.
    Every(HumanDuration),
    /// A 6-field cron expression (`sec min hour day month weekday`).
    Cron {
        /// The expression as written.
        expr: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
    },
    /// Several cron expressions, due at the earliest of them (Watcher's
    /// `hourly`, `daily`, `weekly`, `monthly` and cron lists).
    Any {
        /// A description, e.g. `daily at 17:00`.
        expr: String,
        /// The expressions.
        crons: Vec<croner::Cron>,
    },
}

impl Schedule {
    /// The length of the default search window: the interval, or one minute for cron.
    pub fn window(&self) -> Duration {
        match self {
            Schedule::Every(d) => d.value,
            Schedule::Cron { .. } | Schedule::Any { .. } => Duration::from_secs(60),
        }
    }
}

impl Schedule {
    /// The first due time strictly after `after`.
    ///
    /// Intervals are aligned to the wall clock (a `5m` alert is due at
    /// minutes 0, 5, 10…). Cron runs in `tz`: on a daylight-saving gap a
    /// time that doesn't exist runs once at the shifted time, and on an
    /// overlap a repeated time runs once.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
        tz: Option<chrono_tz::Tz>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::TimeZone;
        match self {
            Schedule::Every(d) => {
                let step = i64::try_from(d.value.as_millis()).ok()?.max(1000);
                let ms = after.timestamp_millis();
                let next = (ms.div_euclid(step) + 1) * step;
                chrono::Utc.timestamp_millis_opt(next).single()
            }
            Schedule::Cron { cron, .. } => {
                let tz = tz.unwrap_or(chrono_tz::UTC);
                cron.find_next_occurrence(&after.with_timezone(&tz), false)
                    .ok()
                    .map(|t| t.with_timezone(&chrono::Utc))
            }
            Schedule::Any { crons, .. } => {
                let tz = tz.unwrap_or(chrono_tz::UTC);
                crons
                    .iter()
                    .filter_map(|c| {
                        c.find_next_occurrence(&after.with_timezone(&tz), false)
                            .ok()
                    })
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .min()
            }
        }
    }
}

impl Schedule {
    /// The schedule's period at `due`: the interval, or for cron the time
    /// from `due` to the next due time (a weekday cron's Friday run covers
    /// up to Monday's). Between one second and 400 days.
    pub fn period_at(
        &self,
        due: chrono::DateTime<chrono::Utc>,
        tz: Option<chrono_tz::Tz>,
    ) -> chrono::Duration {
        const MAX: chrono::Duration = chrono::Duration::days(400);
        let p = match self {
            Schedule::Every(d) => chrono::Duration::from_std(d.value).unwrap_or(MAX),
            _ => {
                // At a due time, the time to the next one; between due
                // times (`esalert test`), one whole period.
                let from = match due.checked_sub_signed(chrono::Duration::milliseconds(1)) {
                    Some(before) if self.next_after(before, tz) == Some(due) => Some(due),
                    _ => self.next_after(due, tz),
                };
                from.and_then(|f| Some(self.next_after(f, tz)?.signed_duration_since(f)))
                    .unwrap_or(chrono::Duration::minutes(1))
            }
        };
        p.clamp(chrono::Duration::seconds(1), MAX)
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::Every(HumanDuration::parse("1m").expect("literal"))
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let fields = s.split_whitespace().count();
        if fields == 6 {
            let cron = croner::Cron::new(s)
                .with_seconds_required()
                .parse()
                .map_err(|e| format!("invalid cron expression {s:?}: {e}"))?;
            return Ok(Schedule::Cron {
                expr: s.to_owned(),
                cron: Box::new(cron),
            });
        }
        if let Ok(d) = humantime::parse_duration(s) {
            // A duration, but too long: say only that.
            check_max(&format!("schedule {s:?}"), d)?;
        }
        match HumanDuration::parse(s) {
            Ok(d) if d.value < Duration::from_secs(1) => {
                Err(format!("schedule {s:?} is shorter than the minimum of 1s"))
            }
            Ok(d) => Ok(Schedule::Every(d)),
            Err(e) if fields > 1 => Err(format!(
                "{e}; nor is it a cron expression: it has {fields} fields, and esalert wants 6, \
                 seconds first (e.g. \"0 */5 * * * *\" for every five minutes)"
            )),
            Err(e) => Err(format!("{e}, or as a 6-field cron expression")),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "{d}"),
            Schedule::Cron { expr, .. } | Schedule::Any { expr, .. } => f.write_str(expr),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({self})")
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_cron() {
        assert_eq!(
            "5m".parse::<Schedule>().unwrap().window(),
            Duration::from_secs(300)
        );
        assert!(matches!(
            "0 */5 * * * *".parse::<Schedule>().unwrap(),
            Schedule::Cron { .. }
        ));
        let e = "*/5 * * * *".parse::<Schedule>().unwrap_err();
        assert!(e.contains("it has 5 fields"), "{e}");
        let e = "0 61 * * * *".parse::<Schedule>().unwrap_err();
        assert!(e.contains("invalid cron"), "{e}");
        let e = "soon".parse::<Schedule>().unwrap_err();
        assert!(e.contains("invalid duration"), "{e}");
        assert!("0s".parse::<Schedule>().is_err());
    }

    #[test]
    fn durations_are_at_most_a_year() {
        assert_eq!(HumanDuration::parse("365d").unwrap().value, MAX_DURATION);
        for text in ["366d", "1000000y", "2y"] {
            let e = HumanDuration::parse(text).unwrap_err();
            assert!(e.contains("must be at most 365d (1 year)"), "{e}");
        }
        let e = "2y".parse::<Schedule>().unwrap_err();
        assert_eq!(
            e,
            "schedule \"2y\" is too long: it must be at most 365d (1 year)"
        );
    }
}
