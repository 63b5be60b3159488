//! Watcher triggers as esalert schedules: `interval`, `hourly`, `daily`,
//! `weekly`, `monthly` and Quartz `cron`, each with an optional `timezone`.

use serde_json::Value;

use crate::alert::{HumanDuration, Schedule};

fn cron(expr: &str) -> Result<croner::Cron, String> {
    croner::Cron::new(expr)
        .with_seconds_required()
        .parse()
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

fn numbers(v: &Value, what: &str, max: u64) -> Result<String, String> {
    let mut out = Vec::new();
    for x in list(v) {
        let n = x
            .as_u64()
            .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            .filter(|n| *n <= max)
            .ok_or_else(|| format!("{what} must be numbers from 0 to {max}, found {x}"))?;
        out.push(n.to_string());
    }
    if out.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(out.join(","))
}

/// `"noon"`, `"midnight"`, `"17:00"`, lists of them, or `{hour, minute}`:
/// returns `(minutes, hours)` cron fields, one pair per distinct time.
fn times(at: Option<&Value>) -> Result<Vec<(String, String)>, String> {
    let Some(at) = at else {
        return Ok(vec![("0".into(), "0".into())]);
    };
    if let Value::Object(m) = at {
        let hours = numbers(m.get("hour").unwrap_or(&Value::from(0)), "at.hour", 23)?;
        let minutes = numbers(m.get("minute").unwrap_or(&Value::from(0)), "at.minute", 59)?;
        return Ok(vec![(minutes, hours)]);
    }
    list(at)
        .into_iter()
        .map(|t| {
            let s = t
                .as_str()
                .ok_or_else(|| format!("`at` must be a time like \"17:00\", found {t}"))?;
            let (h, m) = match s {
                "noon" => (12, 0),
                "midnight" => (0, 0),
                _ => {
                    let (h, m) = s
                        .split_once(':')
                        .ok_or_else(|| format!("time {s:?} is not HH:mm, noon or midnight"))?;
                    let h: u32 = h
                        .parse()
                        .ok()
                        .filter(|h| *h < 24)
                        .ok_or_else(|| format!("bad hour in {s:?}"))?;
                    let m: u32 = m
                        .parse()
                        .ok()
                        .filter(|m| *m < 60)
                        .ok_or_else(|| format!("bad minute in {s:?}"))?;
                    (h, m)
                }
            };
            Ok((m.to_string(), h.to_string()))
        })
        .collect()
}

fn day_name(v: &Value) -> Result<String, String> {
    let s = v
        .as_str()
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| v.to_string());
    let d = match s.as_str() {
        "sunday" | "sun" | "1" => "SUN",
        "monday" | "mon" | "2" => "MON",
        "tuesday" | "tue" | "3" => "TUE",
        "wednesday" | "wed" | "4" => "WED",
        "thursday" | "thu" | "5" => "THU",
        "friday" | "fri" | "6" => "FRI",
        "saturday" | "sat" | "7" => "SAT",
        _ => return Err(format!("unknown day {v}")),
    };
    Ok(d.into())
}

/// Quartz cron (seconds first, `?`, optional year, days of week 1–7 from
/// Sunday) to croner's syntax.
pub fn quartz(expr: &str) -> Result<croner::Cron, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    let fields = match fields.len() {
        6 => fields,
        7 if fields[6] == "*" || fields[6] == "?" => fields[..6].to_vec(),
        7 => {
            return Err(format!(
                "cron {expr:?}: a year field other than * is not supported"
            ));
        }
        n => {
            return Err(format!(
                "cron {expr:?} has {n} fields; Watcher cron has 6 or 7, seconds first"
            ));
        }
    };
    let dow: String = {
        // Shift numeric days: Quartz 1=SUN..7=SAT, croner 0=SUN..6=SAT.
        let mut out = String::new();
        let mut num = String::new();
        for c in fields[5].chars().chain(std::iter::once('\0')) {
            if c.is_ascii_digit() && !out.ends_with('#') && !out.ends_with('/') {
                num.push(c);
                continue;
            }
            if !num.is_empty() {
                let n: u32 = num.parse().map_err(|_| "bad day number")?;
                if !(1..=7).contains(&n) {
                    return Err(format!("cron {expr:?}: day of week {n} is not 1-7"));
                }
                out.push_str(&(n - 1).to_string());
                num.clear();
            }
            if c != '\0' {
                out.push(c);
            }
        }
        out
    };
    let mut f: Vec<String> = fields.iter().map(|s| s.replace('?', "*")).collect();
    f[5] = dow.replace('?', "*");
    cron(&f.join(" "))
}

/// Parses `trigger.schedule`.
pub fn parse(schedule: &Value) -> Result<(Schedule, Option<chrono_tz::Tz>), String> {
    let Value::Object(m) = schedule else {
        return Err("`trigger.schedule` must be an object".into());
    };
    let tz = match m.get("timezone") {
        None => None,
        Some(Value::String(s)) => Some(
            s.parse::<chrono_tz::Tz>()
                .map_err(|_| format!("unknown time zone {s:?}"))?,
        ),
        Some(other) => return Err(format!("`timezone` must be a string, found {other}")),
    };
    let kinds: Vec<&String> = m.keys().filter(|k| *k != "timezone").collect();
    if kinds.len() != 1 {
        return Err("`trigger.schedule` needs exactly one of interval, hourly, daily, weekly, monthly, cron".into());
    }
    let kind = kinds[0].as_str();
    let v = &m[kind];
    let any = |crons: Vec<croner::Cron>, desc: String| Schedule::Any { expr: desc, crons };
    let sched = match kind {
        "interval" => {
            let text = match v {
                Value::Number(n) => format!("{n}s"),
                Value::String(s) if s.chars().all(|c| c.is_ascii_digit()) => format!("{s}s"),
                Value::String(s) => s.clone(),
                other => return Err(format!("interval must be like \"5m\", found {other}")),
            };
            let d = HumanDuration::parse(&text)?;
            if d.value.as_secs() < 1 {
                return Err("interval must be at least 1s".into());
            }
            Schedule::Every(d)
        }
        "hourly" => {
            let minutes = numbers(
                v.get("minute").unwrap_or(&Value::from(0)),
                "hourly.minute",
                59,
            )?;
            any(
                vec![cron(&format!("0 {minutes} * * * *"))?],
                format!("hourly at minute {minutes}"),
            )
        }
        "daily" => {
            let crons = times(v.get("at"))?
                .into_iter()
                .map(|(mi, h)| cron(&format!("0 {mi} {h} * * *")))
                .collect::<Result<_, _>>()?;
            any(crons, format!("daily {v}"))
        }
        "weekly" | "monthly" => {
            let mut crons = Vec::new();
            for entry in list(v) {
                let on = entry
                    .get("on")
                    .ok_or_else(|| format!("{kind} needs `on`"))?;
                let days = if kind == "weekly" {
                    list(on)
                        .into_iter()
                        .map(day_name)
                        .collect::<Result<Vec<_>, _>>()?
                        .join(",")
                } else {
                    let d = numbers(on, "monthly.on", 31)?;
                    if d.split(',').any(|x| x == "0") {
                        return Err("monthly.on days are 1-31".into());
                    }
                    d
                };
                for (mi, h) in times(entry.get("at"))? {
                    crons.push(if kind == "weekly" {
                        cron(&format!("0 {mi} {h} * * {days}"))?
                    } else {
                        cron(&format!("0 {mi} {h} {days} * *"))?
                    });
                }
            }
            any(crons, format!("{kind} {v}"))
        }
        "cron" => {
            let exprs: Vec<&str> = list(v)
                .into_iter()
                .map(|x| {
                    x.as_str().ok_or_else(|| {
                        format!("cron must be a string or a list of strings, found {x}")
                    })
                })
                .collect::<Result<_, _>>()?;
            let crons = exprs.iter().map(|e| quartz(e)).collect::<Result<_, _>>()?;
            any(crons, exprs.join(" | "))
        }
        other => {
            return Err(format!(
                "unknown schedule type {other:?}; use interval, hourly, daily, weekly, monthly or cron"
            ));
        }
    };
    Ok((sched, tz))
}
