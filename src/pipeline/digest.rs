//! The digest stage: matches within a window (or until a cron time) are
//! merged into one notification, sent when the digest closes.
//!
//! A digest may be split by a value of the match (`key`: one digest per
//! value, each closing on its own) and may carry a summary table counting
//! each combination of some fields (`fields`). ElastAlert's `aggregation`,
//! `aggregation_key` and `summary_table_fields` compile to exactly this.
//!
//! What a digest has gathered lives in the store ([`DigestState`]), written
//! in the same update as the end of the window that produced it, so a crash
//! or restart during a digest window loses nothing and counts nothing
//! twice.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::alert::HumanDuration;
use crate::render::fmt_time;

/// Digests open at once per rule; matches of further values go to
/// [`OVERFLOW_GROUP`].
pub const MAX_GROUPS: usize = 1000;
/// The digest of `key` values beyond [`MAX_GROUPS`].
pub const OVERFLOW_GROUP: &str = "(more)";
/// Distinct rows a summary table counts; the rest count in one row.
pub const MAX_ROWS: usize = 1000;
/// The longest text kept per match (`format: matches`).
const MAX_TEXT: usize = 16 * 1024;
/// ElastAlert's separator between aggregated matches.
const SEPARATOR: &str = "\n----------------------------------------\n";

/// `digest` as written in a rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "DigestSpec")]
pub struct Digest {
    /// When a digest closes, counted from its first match.
    pub close: Close,
    /// A path in each match: one digest per value.
    pub key: Option<String>,
    /// The summary table's columns.
    pub fields: Vec<TableField>,
    /// Matches listed in the notification; the tables count all.
    pub max_items: usize,
    /// Rows of the summary table, the most frequent first.
    pub max_rows: Option<usize>,
    /// How the notification reads.
    pub format: DigestFormat,
    /// How the summary table is drawn.
    pub table: TableStyle,
    /// A line above the summary table (`format: matches`).
    pub heading: Option<String>,
    /// Text before the summary.
    pub prefix: String,
    /// Text after the summary.
    pub suffix: String,
    /// Only the summary table, no matches.
    pub summary_only: bool,
}

/// When a digest closes.
#[derive(Debug, Clone)]
pub enum Close {
    /// This long after its first match.
    After(HumanDuration),
    /// At the cron schedule's next time after its first match.
    Schedule {
        /// As written.
        expr: String,
        /// Parsed.
        cron: Box<croner::Cron>,
    },
}

impl Close {
    /// When a digest opened at `opened` closes (`None`: never, which only
    /// an impossible schedule gives).
    pub fn at(&self, opened: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> Option<DateTime<Utc>> {
        match self {
            Close::After(d) => {
                let window = chrono::Duration::from_std(d.value).unwrap_or(chrono::Duration::MAX);
                opened.checked_add_signed(window)
            }
            Close::Schedule { cron, .. } => {
                let tz = tz.unwrap_or(chrono_tz::UTC);
                cron.find_next_occurrence(&opened.with_timezone(&tz), false)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
            }
        }
    }
}

impl std::fmt::Display for Close {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Close::After(d) => write!(f, "{d}"),
            Close::Schedule { expr, .. } => write!(f, "until {expr:?}"),
        }
    }
}

/// A summary table column: a path in the match, and its header.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TableField {
    /// The path is the header.
    Path(String),
    /// A path with its own header.
    Named {
        /// Where the value is.
        path: String,
        /// The column's header (the path when absent).
        header: Option<String>,
    },
}

impl TableField {
    /// Where the value is.
    pub fn path(&self) -> &str {
        match self {
            TableField::Path(p) | TableField::Named { path: p, .. } => p,
        }
    }

    /// The column's header.
    pub fn header(&self) -> &str {
        match self {
            TableField::Named {
                header: Some(h), ..
            } => h,
            other => other.path(),
        }
    }
}

/// How a digest's notification reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DigestFormat {
    /// `[digest] …` with a table of keys and one line per match.
    #[default]
    Summary,
    /// The first match's subject; the summary table, then every match's
    /// text separated by dashes (ElastAlert's aggregated alert).
    Matches,
}

/// How the summary table is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStyle {
    /// Boxed with `+-|=` (as Python's texttable draws it).
    #[default]
    Ascii,
    /// A Markdown table.
    Markdown,
    /// An HTML `<table>`.
    Html,
}

/// `digest` as written, before its checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DigestSpec {
    /// How long matches are gathered, from the first one.
    #[serde(default)]
    window: Option<HumanDuration>,
    /// Or until this cron schedule's next time (5 fields, or 6 with
    /// seconds first), in the alert's time zone.
    #[serde(default)]
    schedule: Option<String>,
    /// A path in each match: one digest per value.
    #[serde(default)]
    key: Option<String>,
    /// Summary table columns: paths, or `{path, header}`.
    #[serde(default)]
    fields: Vec<TableField>,
    /// Matches listed in the notification (default 50).
    #[serde(default)]
    max_items: Option<usize>,
    /// Rows of the summary table, the most frequent first.
    #[serde(default)]
    max_rows: Option<usize>,
    /// `summary` (default) or `matches`.
    #[serde(default)]
    format: DigestFormat,
    /// `ascii` (default), `markdown` or `html`.
    #[serde(default)]
    table: TableStyle,
    /// A line above the summary table.
    #[serde(default)]
    heading: Option<String>,
    /// Text before the summary.
    #[serde(default)]
    prefix: Option<String>,
    /// Text after the summary.
    #[serde(default)]
    suffix: Option<String>,
    /// Only the summary table, no matches.
    #[serde(default)]
    summary_only: bool,
}

impl TryFrom<DigestSpec> for Digest {
    type Error = String;

    fn try_from(s: DigestSpec) -> Result<Self, String> {
        let close = match (s.window, s.schedule) {
            (Some(w), None) => Close::After(w),
            (None, Some(expr)) => Close::Schedule {
                cron: Box::new(parse_cron(&expr)?),
                expr,
            },
            _ => {
                return Err(
                    "a digest needs exactly one of `window` (a duration such as \"10m\") \
                     and `schedule` (a cron expression such as \"0 9 * * *\")"
                        .into(),
                );
            }
        };
        if s.summary_only && s.fields.is_empty() {
            return Err("`summary_only` needs `fields` (the summary table's columns)".into());
        }
        Ok(Digest {
            close,
            key: s.key,
            fields: s.fields,
            max_items: s.max_items.unwrap_or(50),
            max_rows: s.max_rows,
            format: s.format,
            table: s.table,
            heading: s.heading,
            prefix: s.prefix.unwrap_or_default(),
            suffix: s.suffix.unwrap_or_default(),
            summary_only: s.summary_only,
        })
    }
}

/// A cron expression of 5 fields (minutes first, as cron and ElastAlert's
/// croniter read it) or 6 (seconds first).
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    let mut c = croner::Cron::new(expr.trim());
    if expr.split_whitespace().count() == 6 {
        c.with_seconds_required();
    }
    c.parse()
        .map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

impl Digest {
    /// A digest closing `close`, otherwise as the defaults.
    pub fn new(close: Close) -> Self {
        Digest {
            close,
            key: None,
            fields: Vec::new(),
            max_items: 50,
            max_rows: None,
            format: DigestFormat::Summary,
            table: TableStyle::Ascii,
            heading: None,
            prefix: String::new(),
            suffix: String::new(),
            summary_only: false,
        }
    }

    /// The entry one match makes, its values read by `lookup` (a front
    /// end's own path semantics and formatting; `None`: missing).
    pub fn entry(
        &self,
        key: &str,
        lookup: impl Fn(&str) -> Option<String>,
        subject: String,
        text: String,
    ) -> DigestEntry {
        DigestEntry {
            key: key.to_owned(),
            group: self.key.as_deref().and_then(&lookup).unwrap_or_default(),
            row: self.fields.iter().map(|f| lookup(f.path())).collect(),
            subject,
            text: if self.format == DigestFormat::Matches {
                text
            } else {
                String::new()
            },
        }
    }
}

/// What one match adds to a digest; a front end makes these.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestEntry {
    /// Its group key.
    pub key: String,
    /// Its value of the digest's `key` (`""`: none).
    pub group: String,
    /// Its values of the digest's `fields` (`None`: missing).
    pub row: Vec<Option<String>>,
    /// Its subject.
    pub subject: String,
    /// Its text (kept for `format: matches` only).
    pub text: String,
}

/// What the rule's digests gathered so far, one per `key` value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "StateRepr")]
pub struct DigestState {
    /// Open digests, in order of opening.
    pub groups: Vec<DigestGroup>,
}

/// The stored forms: the one before digests had keys is read as one group.
#[derive(Deserialize)]
#[serde(untagged)]
enum StateRepr {
    Groups { groups: Vec<DigestGroup> },
    Single(DigestGroup),
}

impl From<StateRepr> for DigestState {
    fn from(r: StateRepr) -> Self {
        match r {
            StateRepr::Groups { groups } => DigestState { groups },
            StateRepr::Single(g) => DigestState {
                groups: if g.total > 0 { vec![g] } else { Vec::new() },
            },
        }
    }
}

/// One open digest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestGroup {
    /// Its `key` value (`""`: the rule's only digest).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// The tick of its first match.
    pub opened_at: Option<DateTime<Utc>>,
    /// When it closes (fixed when it opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_at: Option<DateTime<Utc>>,
    /// Per group key, in order of first match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DigestItem>,
    /// The summary table: each combination of `fields` values and its count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<DigestRow>,
    /// The first `max_items` matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<DigestLine>,
    /// Matches gathered, all keys.
    #[serde(default)]
    pub total: u64,
}

/// One key's row in the table of keys.
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

/// One row of the summary table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestRow {
    /// The `fields` values (`None`: missing).
    pub values: Vec<Option<String>>,
    /// Matches with these values.
    pub count: u64,
}

/// One listed match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LineRepr")]
pub struct DigestLine {
    /// Its subject.
    pub subject: String,
    /// Its text (`format: matches`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// A listed match as stored: a subject alone before texts were kept.
#[derive(Deserialize)]
#[serde(untagged)]
enum LineRepr {
    Subject(String),
    Full {
        subject: String,
        #[serde(default)]
        text: String,
    },
}

impl From<LineRepr> for DigestLine {
    fn from(r: LineRepr) -> Self {
        match r {
            LineRepr::Subject(subject) => DigestLine {
                subject,
                text: String::new(),
            },
            LineRepr::Full { subject, text } => DigestLine { subject, text },
        }
    }
}

impl DigestState {
    /// Adds one match at `tick`; a new group closes as `spec` says (in the
    /// rule's time zone `tz`).
    pub fn add(
        &mut self,
        spec: &Digest,
        entry: DigestEntry,
        tick: DateTime<Utc>,
        tz: Option<chrono_tz::Tz>,
    ) {
        let mut group = entry.group;
        if !self.groups.iter().any(|g| g.group == group) && self.groups.len() >= MAX_GROUPS {
            group = OVERFLOW_GROUP.to_owned();
        }
        let i = match self.groups.iter().position(|g| g.group == group) {
            Some(i) => i,
            None => {
                self.groups.push(DigestGroup {
                    group,
                    opened_at: Some(tick),
                    closes_at: spec.close.at(tick, tz),
                    ..DigestGroup::default()
                });
                self.groups.len() - 1
            }
        };
        let Some(g) = self.groups.get_mut(i) else {
            return;
        };
        g.total = g.total.saturating_add(1);
        match g.items.iter_mut().find(|i| i.key == entry.key) {
            Some(i) => {
                i.count = i.count.saturating_add(1);
                i.last_seen = i.last_seen.max(tick);
            }
            None => g.items.push(DigestItem {
                key: entry.key,
                count: 1,
                first_seen: tick,
                last_seen: tick,
            }),
        }
        if !spec.fields.is_empty() {
            let mut values = entry.row;
            if !g.rows.iter().any(|r| r.values == values) && g.rows.len() >= MAX_ROWS {
                values = vec![Some("(other)".to_owned()); spec.fields.len()];
            }
            match g.rows.iter_mut().find(|r| r.values == values) {
                Some(r) => r.count = r.count.saturating_add(1),
                None => g.rows.push(DigestRow { values, count: 1 }),
            }
        }
        if g.lines.len() < spec.max_items {
            g.lines.push(DigestLine {
                subject: entry.subject,
                text: crate::sinks::http::truncate(&entry.text, MAX_TEXT),
            });
        }
    }

    /// Removes and returns the digests that are due at `tick`.
    pub fn take_due(
        &mut self,
        spec: &Digest,
        tick: DateTime<Utc>,
        tz: Option<chrono_tz::Tz>,
    ) -> Vec<DigestGroup> {
        let (due, open) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(|g| g.due(spec, tick, tz));
        self.groups = open;
        due
    }

    /// Matches gathered, all groups.
    pub fn total(&self) -> u64 {
        self.groups.iter().map(|g| g.total).sum()
    }
}

impl DigestGroup {
    /// Whether it has closed at `tick`.
    pub fn due(&self, spec: &Digest, tick: DateTime<Utc>, tz: Option<chrono_tz::Tz>) -> bool {
        let closes = self
            .closes_at
            .or_else(|| self.opened_at.and_then(|o| spec.close.at(o, tz)));
        closes.is_some_and(|c| tick >= c)
    }

    /// The digest's subject and text.
    pub fn render(&self, alert: &str, spec: &Digest) -> (String, String) {
        match spec.format {
            DigestFormat::Summary => self.render_summary(alert, spec),
            DigestFormat::Matches => self.render_matches(alert, spec),
        }
    }

    fn render_summary(&self, alert: &str, spec: &Digest) -> (String, String) {
        let keys = self.items.len();
        let of = if self.group.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.group)
        };
        let subject = format!(
            "[digest] {alert}{of}: {} match{} for {keys} key{} in {}",
            self.total,
            if self.total == 1 { "" } else { "es" },
            if keys == 1 { "" } else { "s" },
            spec.close
        );
        let mut text = spec.prefix.clone();
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str("key\tcount\tfirst seen\tlast seen\n");
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
        if !spec.fields.is_empty() {
            text.push_str(&self.table(spec));
            text.push('\n');
        }
        if !spec.summary_only {
            for l in &self.lines {
                text.push_str("• ");
                text.push_str(&l.subject);
                text.push('\n');
            }
            let left = self.total.saturating_sub(self.lines.len() as u64);
            if left > 0 {
                text.push_str(&format!(
                    "… and {left} more (max_items {})\n",
                    spec.max_items
                ));
            }
        }
        text.push_str(&spec.suffix);
        (subject, text)
    }

    /// ElastAlert's aggregated alert: `create_title` of the first match and
    /// `create_alert_body` of them all.
    fn render_matches(&self, alert: &str, spec: &Digest) -> (String, String) {
        let subject = self
            .lines
            .first()
            .map_or_else(|| alert.to_owned(), |l| l.subject.clone());
        let mut text = String::new();
        if !spec.fields.is_empty() {
            text.push_str(&spec.prefix);
            if !text.is_empty() {
                text.push('\n');
            }
            if let Some(h) = &spec.heading {
                text.push_str(h);
                text.push_str("\n\n");
            }
            let table = self.table(spec);
            match spec.table {
                // As ElastAlert: the HTML table replaces what came before.
                TableStyle::Html => text = table,
                TableStyle::Ascii => {
                    text.push_str(&table);
                    text.push_str("\n\n");
                }
                TableStyle::Markdown => {
                    text.push_str(&table);
                    text.push('\n');
                }
            }
            if let Some(n) = spec.max_rows {
                text.push_str(&format!("Showing top {n} rows\n"));
            }
            text.push_str(&spec.suffix);
        }
        if !spec.summary_only {
            let many = self.total > 1;
            for l in &self.lines {
                text.push_str(&l.text);
                if many {
                    text.push_str(SEPARATOR);
                }
            }
            let left = self.total.saturating_sub(self.lines.len() as u64);
            if left > 0 {
                text.push_str(&format!(
                    "\n({left} more matches not listed; at most {} are)\n",
                    spec.max_items
                ));
            }
        }
        (subject, text)
    }

    /// The summary table with a `count` column, the most frequent rows
    /// first when `max_rows` limits them.
    fn table(&self, spec: &Digest) -> String {
        let mut rows: Vec<&DigestRow> = self.rows.iter().collect();
        if let Some(n) = spec.max_rows {
            // Stable: equal counts keep their order of first appearance.
            rows.sort_by_key(|r| std::cmp::Reverse(r.count));
            rows.truncate(n);
        }
        let mut header: Vec<String> = spec.fields.iter().map(|f| f.header().to_owned()).collect();
        header.push("count".to_owned());
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let mut cells: Vec<String> = r
                    .values
                    .iter()
                    .map(|v| v.clone().unwrap_or_else(|| "None".to_owned()))
                    .collect();
                cells.push(r.count.to_string());
                cells
            })
            .collect();
        match spec.table {
            TableStyle::Ascii => ascii_table(&header, &body, 80),
            TableStyle::Markdown => {
                let mut t = format!("| {} |\n", header.join(" | "));
                t.push_str(&"|-----".repeat(header.len()));
                t.push_str("|\n");
                for r in &body {
                    for (i, v) in r.iter().enumerate() {
                        if i + 1 == r.len() {
                            t.push_str(&format!("| {v} |\n"));
                        } else {
                            t.push_str(&format!("| {v} "));
                        }
                    }
                }
                t
            }
            TableStyle::Html => {
                let esc = |s: &str| {
                    s.replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('"', "&quot;")
                };
                let mut t = String::from("<table>\n    <thead>\n        <tr>\n");
                for h in &header {
                    t.push_str(&format!("            <th>{}</th>\n", esc(h)));
                }
                t.push_str("        </tr>\n    </thead>\n    <tbody>\n");
                for r in &body {
                    t.push_str("        <tr>\n");
                    for c in r {
                        t.push_str(&format!("            <td>{}</td>\n", esc(c)));
                    }
                    t.push_str("        </tr>\n");
                }
                t.push_str("    </tbody>\n</table>");
                t
            }
        }
    }
}

/// A table as Python's texttable draws it with its defaults (borders,
/// header line of `=`, lines between rows, headers centred, cells left,
/// words wrapped to fit `max_width`).
pub fn ascii_table(header: &[String], rows: &[Vec<String>], max_width: usize) -> String {
    let ncols = header.len();
    let len = |s: &str| s.split('\n').map(|l| l.chars().count()).max().unwrap_or(0);
    let mut widths: Vec<usize> = header.iter().map(|h| len(h)).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(len(c));
        }
    }
    let deco = 3 * ncols.saturating_sub(1) + 4;
    let content: usize = widths.iter().sum();
    if content + deco > max_width && max_width >= ncols + deco {
        // As texttable: hand out the width one column at a time.
        let mut available = max_width - deco;
        let mut fair = vec![0usize; ncols];
        let mut i = 0;
        while available > 0 && ncols > 0 {
            if fair[i] < widths[i] {
                fair[i] += 1;
                available -= 1;
            }
            i = (i + 1) % ncols;
        }
        widths = fair;
    }
    let hline = |c: char| {
        let mut l = String::from("+");
        for w in &widths {
            l.push(c);
            l.extend(std::iter::repeat_n(c, *w));
            l.push(c);
            l.push('+');
        }
        l.push('\n');
        l
    };
    let draw = |cells: &[String], centre: bool| {
        let wrapped: Vec<Vec<String>> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| {
                c.split('\n')
                    .flat_map(|l| {
                        if l.trim().is_empty() {
                            vec![String::new()]
                        } else {
                            wrap(l, *w)
                        }
                    })
                    .collect()
            })
            .collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let mut out = String::new();
        for i in 0..height {
            out.push_str("| ");
            for (j, (cell, w)) in wrapped.iter().zip(&widths).enumerate() {
                let s = cell.get(i).map_or("", String::as_str);
                let fill = w.saturating_sub(s.chars().count());
                if centre {
                    out.push_str(&" ".repeat(fill / 2));
                    out.push_str(s);
                    out.push_str(&" ".repeat(fill - fill / 2));
                } else {
                    out.push_str(s);
                    out.push_str(&" ".repeat(fill));
                }
                if j + 1 < wrapped.len() {
                    out.push_str(" | ");
                }
            }
            out.push_str(" |\n");
        }
        out
    };
    let mut out = hline('-');
    out.push_str(&draw(header, true));
    out.push_str(&hline('='));
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&draw(r, false));
        if i + 1 < rows.len() {
            out.push_str(&hline('-'));
        }
    }
    out.push_str(&hline('-'));
    out.pop();
    out
}

/// Greedy word wrapping to `width` characters, long words broken (as
/// Python's `textwrap.wrap`).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_len = 0usize;
    for word in line.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let need = if cur_len == 0 {
                word.len()
            } else {
                cur_len + 1 + word.len()
            };
            if need <= width {
                if cur_len > 0 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                cur_len = need;
                break;
            }
            if word.len() > width {
                // Break the word: fill the current line, carry the rest.
                let room = if cur_len == 0 {
                    width
                } else {
                    width.saturating_sub(cur_len + 1)
                };
                if room == 0 {
                    out.push(std::mem::take(&mut cur));
                    cur_len = 0;
                    continue;
                }
                if cur_len > 0 {
                    cur.push(' ');
                }
                let rest = word.split_off(room.min(word.len()));
                cur.extend(word.iter());
                out.push(std::mem::take(&mut cur));
                cur_len = 0;
                word = rest;
                if word.is_empty() {
                    break;
                }
                continue;
            }
            out.push(std::mem::take(&mut cur));
            cur_len = 0;
        }
    }
    if cur_len > 0 || out.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn entry(spec: &Digest, key: &str, i: usize) -> DigestEntry {
        spec.entry(key, |_| None, format!("line {i}"), format!("text {i}"))
    }

    #[test]
    fn gathers_counts_and_caps_lines() {
        let spec: Digest = serde_json::from_str(r#"{"window": "10m", "max_items": 2}"#).unwrap();
        let mut d = DigestState::default();
        for (i, k) in ["a", "b", "a"].iter().enumerate() {
            let tick = t0() + chrono::Duration::minutes(i as i64);
            d.add(&spec, entry(&spec, k, i), tick, None);
        }
        let g = &d.groups[0];
        assert!(!g.due(&spec, t0() + chrono::Duration::minutes(9), None));
        assert!(g.due(&spec, t0() + chrono::Duration::minutes(10), None));
        let (subject, text) = g.render("x", &spec);
        assert_eq!(subject, "[digest] x: 3 matches for 2 keys in 10m");
        assert!(
            text.contains("a\t2\t2026-01-01T00:00:00.000Z\t2026-01-01T00:02:00.000Z"),
            "{text}"
        );
        assert!(text.contains("• line 1") && !text.contains("line 2"));
        assert!(text.contains("and 1 more"));
    }

    #[test]
    fn one_digest_per_key_value_each_closing_on_its_own() {
        let spec: Digest =
            serde_json::from_str(r#"{"window": "5m", "key": "host", "fields": ["user"]}"#).unwrap();
        let mut d = DigestState::default();
        let add = |d: &mut DigestState, host: &str, user: &str, min: i64| {
            let e = spec.entry(
                "",
                |p| Some(if p == "host" { host } else { user }.to_owned()),
                "s".into(),
                "t".into(),
            );
            d.add(&spec, e, t0() + chrono::Duration::minutes(min), None);
        };
        add(&mut d, "web", "alice", 0);
        add(&mut d, "db", "bob", 2);
        add(&mut d, "web", "alice", 3);
        add(&mut d, "web", "carol", 4);
        let due = d.take_due(&spec, t0() + chrono::Duration::minutes(5), None);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].group, "web");
        assert_eq!(due[0].total, 3);
        assert_eq!(
            due[0].rows,
            vec![
                DigestRow {
                    values: vec![Some("alice".into())],
                    count: 2
                },
                DigestRow {
                    values: vec![Some("carol".into())],
                    count: 1
                }
            ]
        );
        assert_eq!(d.groups.len(), 1, "db stays open until minute 7");
        assert!(
            d.take_due(&spec, t0() + chrono::Duration::minutes(7), None)
                .len()
                == 1
        );
    }

    #[test]
    fn a_schedule_closes_at_its_next_time() {
        let spec: Digest = serde_json::from_str(r#"{"schedule": "30 9 * * mon-fri"}"#).unwrap();
        // 2026-01-01 is a Thursday.
        let at = spec.close.at(t0(), None).unwrap();
        assert_eq!(fmt_time(&at), "2026-01-01T09:30:00.000Z");
        let tz: chrono_tz::Tz = "Europe/Berlin".parse().unwrap();
        let at = spec.close.at(t0(), Some(tz)).unwrap();
        assert_eq!(fmt_time(&at), "2026-01-01T08:30:00.000Z");
        let bad = serde_json::from_str::<Digest>(r#"{"window": "1m", "schedule": "* * * * *"}"#);
        assert!(bad.unwrap_err().to_string().contains("exactly one of"));
        let bad = serde_json::from_str::<Digest>(r#"{"schedule": "61 * * * *"}"#);
        assert!(bad.unwrap_err().to_string().contains("invalid cron"));
    }

    #[test]
    fn reads_the_stored_form_of_the_previous_version() {
        let old = r#"{"opened_at":"2026-01-01T00:00:00Z","items":[{"key":"","count":1,
            "first_seen":"2026-01-01T00:00:00Z","last_seen":"2026-01-01T00:00:00Z"}],
            "lines":["hello"],"total":1}"#;
        let d: DigestState = serde_json::from_str(old).unwrap();
        assert_eq!(d.groups.len(), 1);
        assert_eq!(d.groups[0].lines[0].subject, "hello");
        let again: DigestState = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn ascii_tables_are_drawn_as_texttable_draws_them() {
        let h = vec!["host".to_owned(), "user".to_owned(), "count".to_owned()];
        let rows = vec![
            vec!["web-1".to_owned(), "alice".to_owned(), "3".to_owned()],
            vec!["db".to_owned(), "None".to_owned(), "12".to_owned()],
        ];
        assert_eq!(
            ascii_table(&h, &rows, 80),
            "+-------+-------+-------+\n\
             | host  | user  | count |\n\
             +=======+=======+=======+\n\
             | web-1 | alice | 3     |\n\
             +-------+-------+-------+\n\
             | db    | None  | 12    |\n\
             +-------+-------+-------+"
        );
        // Too wide: columns share the width and cells wrap.
        let h = vec!["a".repeat(50), "b".repeat(40), "count".to_owned()];
        let rows = vec![vec!["x".repeat(70), "y".to_owned(), "1".to_owned()]];
        let t = ascii_table(&h, &rows, 80);
        assert!(t.lines().all(|l| l.chars().count() == 80), "{t}");
        assert!(t.contains("|         aaaaaaaaaaaaaaaaa         |"), "{t}");
        assert!(t.contains("| xxxx                              |"), "{t}");
    }
}
