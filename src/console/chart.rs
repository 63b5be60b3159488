//! The hits-per-window chart, as SVG drawn on the server: no charting
//! library, nothing fetched. Colours come from classes in the stylesheet
//! (the CSP allows no inline style).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::html::esc;

const W: f64 = 760.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// Paths a hit-count comparison is written on.
const HIT_PATHS: [&str; 6] = [
    "hits.total",
    "hits.total.value",
    "ctx.payload.hits.total",
    "ctx.payload.hits.total.value",
    "payload.hits.total",
    "num_hits",
];

/// The hit count a rule's definition fires at, when it compares the hit
/// count with a number (native and watch `compare`, ElastAlert
/// `num_events`); a native alert without a condition fires above 0.
pub fn threshold(def: &Value) -> Option<f64> {
    if let Some(n) = def.get("num_events").and_then(Value::as_f64) {
        return Some(n);
    }
    match def.get("condition") {
        Some(c) => {
            let cmp = c.get("compare")?.as_object()?;
            HIT_PATHS.iter().find_map(|p| {
                let ops = cmp.get(*p)?.as_object()?;
                ["gt", "gte", "lt", "lte", "eq", "not_eq"]
                    .iter()
                    .find_map(|op| ops.get(*op)?.as_f64())
            })
        }
        None if def.get("index").is_some() && def.get("body").is_some() => Some(0.0),
        None => None,
    }
}

/// One run on the chart.
#[derive(Debug, Clone, Copy)]
pub struct Point<'a> {
    /// When.
    pub at: DateTime<Utc>,
    /// Its hits.
    pub hits: u64,
    /// Its outcome (a class: `p-fired`, `p-throttled`, …).
    pub outcome: &'a str,
}

fn class_of(outcome: &str) -> &'static str {
    match outcome {
        "fired" => "p-fired",
        "throttled" => "p-throttled",
        "silenced" => "p-silenced",
        "error" | "failed" | "partial" | "dropped" => "p-error",
        _ => "p-other",
    }
}

/// The chart of `points` between `since` and `until`, with a dashed line
/// at `threshold`.
pub fn svg(
    points: &[Point<'_>],
    threshold: Option<f64>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> String {
    let span = (until - since).num_milliseconds().max(1) as f64;
    let top = points
        .iter()
        .map(|p| p.hits as f64)
        .fold(threshold.unwrap_or(0.0), f64::max)
        .max(1.0)
        * 1.1;
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |t: DateTime<Utc>| {
        LEFT + ((t - since).num_milliseconds() as f64 / span).clamp(0.0, 1.0) * pw
    };
    let y = |v: f64| TOP + ph - (v / top).clamp(0.0, 1.0) * ph;
    let mut s = String::with_capacity(4096 + points.len() * 80);
    let _ = write!(
        s,
        "<svg class=\"chart\" id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"chart-title\"><title id=\"chart-title\">Hits per run, {} to {}</title>",
        esc(&crate::render::fmt_time(&since)),
        esc(&crate::render::fmt_time(&until))
    );
    // Axes and labels.
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\"/>",
        b = TOP + ph,
        r = LEFT + pw
    );
    for frac in [0.0, 0.5, 1.0] {
        let v = top / 1.1 * frac;
        let _ = write!(
            s,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            y(v) + 4.0,
            fmt_num(v)
        );
    }
    for (t, anchor) in [(since, "start"), (until, "end")] {
        let _ = write!(
            s,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(t),
            H - 8.0,
            esc(&t.format("%m-%d %H:%M").to_string())
        );
    }
    // The hits, as a line through every run, each run a dot.
    if !points.is_empty() {
        s.push_str("<polyline class=\"hits\" points=\"");
        for p in points {
            let _ = write!(s, "{:.1},{:.1} ", x(p.at), y(p.hits as f64));
        }
        s.push_str("\"/>");
        for p in points {
            let _ = write!(
                s,
                "<circle class=\"{}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{} hits={} {}</title></circle>",
                class_of(p.outcome),
                x(p.at),
                y(p.hits as f64),
                esc(&crate::render::fmt_time(&p.at)),
                p.hits,
                esc(p.outcome)
            );
        }
    } else {
        let _ = write!(
            s,
            "<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no runs logged in this span</text>",
            LEFT + pw / 2.0,
            TOP + ph / 2.0
        );
    }
    if let Some(t) = threshold {
        let _ = write!(
            s,
            "<line class=\"threshold\" id=\"threshold\" x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\"/><text class=\"label threshold-label\" x=\"{1:.1}\" y=\"{2:.1}\" text-anchor=\"end\">threshold {3}</text>",
            y(t),
            LEFT + pw,
            y(t) - 4.0,
            fmt_num(t)
        );
    }
    s.push_str("</svg>");
    s
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds_of_each_front_end() {
        assert_eq!(
            threshold(&json!({"condition": {"compare": {"hits.total": {"gte": 5}}}})),
            Some(5.0)
        );
        assert_eq!(
            threshold(&json!({"condition": {"compare": {"ctx.payload.hits.total": {"gt": 2}}}})),
            Some(2.0)
        );
        assert_eq!(
            threshold(&json!({"num_events": 10, "type": "frequency"})),
            Some(10.0)
        );
        assert_eq!(threshold(&json!({"index": "a", "body": {}})), Some(0.0));
        assert_eq!(
            threshold(&json!({"condition": {"script": {"source": "true"}}})),
            None
        );
    }

    #[test]
    fn draws_a_dot_per_run_and_the_threshold() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let pts: Vec<Point> = (0..3)
            .map(|i| Point {
                at: t0 + chrono::Duration::hours(i),
                hits: i as u64 * 4,
                outcome: "fired",
            })
            .collect();
        let s = svg(&pts, Some(5.0), t0, t0 + chrono::Duration::hours(3));
        assert_eq!(s.matches("<circle").count(), 3);
        assert!(s.contains("id=\"threshold\"") && s.contains("threshold 5"));
        assert!(!s.contains("style="));
    }
}
