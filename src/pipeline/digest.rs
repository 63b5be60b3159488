//! The digest stage: matches (of every key) within a window are merged
//! into one notification sent when the window closes.
//!
//! What a digest has gathered lives in the store ([`DigestState`]), written
//! in the same update as the end of the window that produced it, so a crash
//! or restart during a digest window loses nothing and counts nothing
//! twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::HumanDuration;
use crate::render::fmt_time;

/// `digest` as written in a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// How long matches are gathered, from the first one.
    pub window: HumanDuration,
    /// Rendered lines included in the notification; the table counts all.
    #[serde(default = "default_max_items")]
    pub max_items: usize,
}

fn default_max_items() -> usize {
    50
}

/// What a digest gathered so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestState {
    /// The tick of its first match; it closes `window` later.
    pub opened_at: Option<DateTime<Utc>>,
    /// Per key, in order of first match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DigestItem>,
    /// The first `max_items` rendered lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// Matches gathered, all keys.
    #[serde(default)]
    pub total: u64,
}

/// One key's row in the summary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestItem {
    /// The group key ("" for a rule without `group_by`).
    pub key: String,
    /// Its matches in the window.
    pub count: u64,
    /// Its first match.
    pub first_seen: DateTime<Utc>,
    /// Its last match.
    pub last_seen: DateTime<Utc>,
}

impl DigestState {
    /// Adds one match of `key` at `tick`, with its rendered line.
    pub fn add(&mut self, key: &str, tick: DateTime<Utc>, line: String, max_items: usize) {
        self.opened_at.get_or_insert(tick);
        self.total = self.total.saturating_add(1);
        match self.items.iter_mut().find(|i| i.key == key) {
            Some(i) => {
                i.count = i.count.saturating_add(1);
                i.last_seen = i.last_seen.max(tick);
            }
            None => self.items.push(DigestItem {
                key: key.to_owned(),
                count: 1,
                first_seen: tick,
                last_seen: tick,
            }),
        }
        if self.lines.len() < max_items {
            self.lines.push(line);
        }
    }

    /// Whether the window that opened with the first match has closed.
    pub fn due(&self, spec: &Digest, tick: DateTime<Utc>) -> bool {
        let Some(opened) = self.opened_at else {
            return false;
        };
        let window = chrono::Duration::from_std(spec.window.value).unwrap_or(chrono::Duration::MAX);
        opened
            .checked_add_signed(window)
            .is_some_and(|end| tick >= end)
    }

    /// The digest's subject and text.
    pub fn render(&self, alert: &str, spec: &Digest) -> (String, String) {
        let keys = self.items.len();
        let subject = format!(
            "[digest] {alert}: {} match{} for {keys} key{} in {}",
            self.total,
            if self.total == 1 { "" } else { "es" },
            if keys == 1 { "" } else { "s" },
            spec.window
        );
        let mut text = String::from("key\tcount\tfirst seen\tlast seen\n");
        for i in &self.items {
            let key = if i.key.is_empty() { "-" } else { &i.key };
            text.push_str(&format!(
                "{key}\t{}\t{}\t{}\n",
                i.count,
                fmt_time(&i.first_seen),
                fmt_time(&i.last_seen)
            ));
        }
        text.push('\n');
        for l in &self.lines {
            text.push_str("• ");
            text.push_str(l);
            text.push('\n');
        }
        let left = self.total.saturating_sub(self.lines.len() as u64);
        if left > 0 {
            text.push_str(&format!(
                "… and {left} more (max_items {})\n",
                spec.max_items
            ));
        }
        (subject, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_counts_and_caps_lines() {
        let spec: Digest = serde_json::from_str(r#"{"window": "10m", "max_items": 2}"#).unwrap();
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut d = DigestState::default();
        for (i, k) in ["a", "b", "a"].iter().enumerate() {
            d.add(
                k,
                t0 + chrono::Duration::minutes(i as i64),
                format!("line {i}"),
                2,
            );
        }
        assert!(!d.due(&spec, t0 + chrono::Duration::minutes(9)));
        assert!(d.due(&spec, t0 + chrono::Duration::minutes(10)));
        let (subject, text) = d.render("x", &spec);
        assert_eq!(subject, "[digest] x: 3 matches for 2 keys in 10m");
        assert!(
            text.contains("a\t2\t2026-01-01T00:00:00.000Z\t2026-01-01T00:02:00.000Z"),
            "{text}"
        );
        assert!(text.contains("• line 1") && !text.contains("line 2"));
        assert!(text.contains("and 1 more"));
    }
}
