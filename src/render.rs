//! Templates: the search body's string values, the subject and the message.
//!
//! Jinja syntax through minijinja, with strict undefined behaviour (a typo is
//! an error, never an empty string) and a fuel bound so that a template can't
//! spin forever over a huge response. Templates have no file or environment
//! access: minijinja registers none and esalert adds none.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::{Environment, UndefinedBehavior, Value as TValue, context};
use serde::Serialize;
use serde_json::Value;

use crate::alert::locate::{Seg, pointer_mut};

/// Instructions a single render may execute.
pub const FUEL: u64 = 5_000_000;

/// The most text one template may render to: far beyond what any Slack
/// post (40,000 characters) or readable email holds.
pub const OUTPUT_CAP: usize = 1 << 20;

/// The most memory one render may allocate on top of its inputs. Fuel
/// bounds the number of steps, not their size (a string doubled in a loop
/// takes one step per doubling), so growth is bounded separately: see
/// [`crate::alloc_budget`]. Checked at every value written, every item of
/// `range()` and when the render ends.
pub const MEMORY: usize = 64 << 20;

/// Variables visible to body templates.
pub const BODY_VARS: &[&str] = &["alert", "now", "window"];
/// Variables visible to subject and message templates.
pub const MESSAGE_VARS: &[&str] = &[
    "alert",
    "now",
    "window",
    "response",
    "hits",
    "aggregations",
    "group",
    "resolved",
];
/// The attributes of the variables whose shape esalert fixes; the others
/// (`response`, `hits`, `aggregations`) are the cluster's answer, free-form.
/// `group.item` is free-form below its name.
const ATTRIBUTES: &[(&str, &[&str])] = &[
    ("alert", &["name", "description", "index"]),
    ("window", &["start", "end"]),
    ("group", &["key", "item", "count"]),
    ("now", &[]),
    ("resolved", &[]),
];

/// Global functions minijinja provides, which look like variables to
/// `undeclared_variables`.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "debug", "loop"];

/// Errors of compiling or rendering a template.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The template does not parse.
    #[error("template syntax error in {template}: {reason}")]
    Syntax {
        /// Which template (`message`, `subject`, or a body path).
        template: String,
        /// minijinja's message, including the line inside the template.
        reason: String,
    },
    /// The template names a variable that will never exist.
    #[error(
        "template {template} uses undefined variable `{var}`; the variables are: {}",
        known.join(", ")
    )]
    UndefinedVariable {
        /// Which template.
        template: String,
        /// The unknown variable.
        var: String,
        /// The variables this template may use.
        known: &'static [&'static str],
    },
    /// The template names an attribute that will never exist, e.g. `window.begin`.
    #[error("template {template} uses `{name}`, which never exists: {hint}")]
    UnknownAttribute {
        /// Which template.
        template: String,
        /// The dotted name, e.g. `alert.nmae`.
        name: String,
        /// What exists instead.
        hint: String,
    },
    /// An expression met a value that is not there, e.g. a field the
    /// response lacks.
    #[error("alert {alert}: rendering {template} failed: {expr} is undefined")]
    Undefined {
        /// The alert.
        alert: String,
        /// Which template.
        template: String,
        /// The expression as written in the template.
        expr: String,
        /// Where the expression starts in the template's text (bytes).
        offset: Option<usize>,
    },
    /// Rendering failed at run time.
    #[error("alert {alert}: rendering {template} failed: {reason}")]
    Render {
        /// The alert.
        alert: String,
        /// Which template.
        template: String,
        /// minijinja's message.
        reason: String,
    },
    /// The output grew past [`OUTPUT_CAP`].
    #[error(
        "alert {alert}: {template} rendered to more than {} (the limit); render less, e.g. fewer hits or a `truncate` filter",
        crate::alloc_budget::fmt_bytes(OUTPUT_CAP)
    )]
    TooLarge {
        /// The alert.
        alert: String,
        /// Which template.
        template: String,
    },
    /// The render allocated more than [`MEMORY`].
    #[error(
        "alert {alert}: rendering {template} used more than {} of memory (the limit); check it for strings growing in a loop",
        crate::alloc_budget::fmt_bytes(MEMORY)
    )]
    TooMuchMemory {
        /// The alert.
        alert: String,
        /// Which template.
        template: String,
    },
    /// The message rendered to nothing; esalert never sends an empty message.
    #[error("alert {alert}: {template} rendered to an empty string; nothing is sent")]
    Empty {
        /// The alert.
        alert: String,
        /// Which template.
        template: String,
    },
}

impl RenderError {
    /// Which template failed (`subject`, `message`, a body path).
    pub fn template(&self) -> Option<&str> {
        match self {
            RenderError::Syntax { template, .. }
            | RenderError::UndefinedVariable { template, .. }
            | RenderError::UnknownAttribute { template, .. }
            | RenderError::Undefined { template, .. }
            | RenderError::Render { template, .. }
            | RenderError::TooLarge { template, .. }
            | RenderError::TooMuchMemory { template, .. }
            | RenderError::Empty { template, .. } => Some(template),
        }
    }
}

/// The search window of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Window {
    /// Inclusive start.
    #[serde(serialize_with = "rfc3339")]
    pub start: DateTime<Utc>,
    /// End, which is "now" for a live run.
    #[serde(serialize_with = "rfc3339")]
    pub end: DateTime<Utc>,
}

/// Formats a time as esalert writes every time: RFC 3339, UTC, milliseconds.
pub fn fmt_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&fmt_time(t))
}

/// `alert.*` inside templates.
#[derive(Debug, Clone, Serialize)]
pub struct AlertInfo {
    /// The alert's name (its file stem).
    pub name: String,
    /// Its description, or an empty string.
    pub description: String,
    /// Its index patterns joined with commas.
    pub index: String,
}

/// The compiled templates of one alert.
///
/// Memory matters with thousands of alerts, and a compiled minijinja
/// template costs kilobytes. So templates that are only text and
/// `{{ dotted.names }}` (most body ranges and subjects) are rendered by a
/// plain substitution, and the others are compiled on first use: an alert
/// that never matches never pays for its message templates.
pub struct Templates {
    alert: String,
    /// Sources of the templates minijinja renders, by name (flavours included).
    sources: Vec<(String, String)>,
    /// Templates that are plain substitutions, by name (flavours included).
    simple: std::collections::HashMap<String, Vec<Piece>>,
    env: std::sync::OnceLock<Environment<'static>>,
    body: Vec<(Vec<Seg>, String)>,
}

/// A part of a plain-substitution template.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    /// A dotted name, and where it starts in the template's text.
    Var(Vec<String>, usize),
}

/// Splits `text {{ a.b }} text` into pieces; `None` when the template uses
/// anything more (tags, filters, expressions, whitespace control).
fn simple_pieces(src: &str) -> Option<Vec<Piece>> {
    if src.contains("{%") || src.contains("{#") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(open) = rest.find("{{") {
        // Where the name starts, past `{{` and blanks.
        let blanks = rest[open + 2..].len() - rest[open + 2..].trim_start().len();
        let at = src
            .len()
            .saturating_sub(rest.len())
            .saturating_add(open + 2 + blanks);
        if open > 0 {
            out.push(Piece::Text(rest[..open].to_owned()));
        }
        let after = &rest[open + 2..];
        let close = after.find("}}")?;
        let expr = &after[..close];
        if expr.starts_with('-') || expr.ends_with('-') {
            return None;
        }
        let path: Vec<String> = expr.trim().split('.').map(str::to_owned).collect();
        let ident = |p: &String| {
            let mut c = p.chars();
            c.next()
                .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        };
        if path.is_empty() || !path.iter().all(ident) {
            return None;
        }
        out.push(Piece::Var(path, at));
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return None;
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    Some(out)
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("alert", &self.alert)
            .finish()
    }
}

/// A template to compile, with where it came from for error reporting.
pub struct Source {
    /// Where it sits in the alert file.
    pub path: Vec<Seg>,
    /// Its name in errors: `message`, `subject` or `body.query...`.
    pub name: String,
    /// The template text.
    pub text: String,
}

/// Collects every string value inside `body` that holds template syntax.
pub fn body_sources(body: &Value) -> Vec<Source> {
    fn walk(v: &Value, path: &mut Vec<Seg>, out: &mut Vec<Source>) {
        match v {
            Value::String(s) if s.contains("{{") || s.contains("{%") || s.contains("{#") => {
                let mut full = vec![Seg::key("body")];
                full.extend(path.iter().cloned());
                out.push(Source {
                    name: seg_name(&full),
                    path: full,
                    text: s.clone(),
                });
            }
            Value::Object(m) => {
                for (k, v) in m {
                    path.push(Seg::key(k.as_str()));
                    walk(v, path, out);
                    path.pop();
                }
            }
            Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(v, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(body, &mut Vec::new(), &mut out);
    out
}

fn seg_name(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Escapes `&`, `<` and `>` so that response data can't ping `<!channel>`
/// or forge a link in Slack mrkdwn.
pub fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Message templates are compiled once per output flavour. Values
/// interpolated into the Slack and HTML flavours are escaped; the template's
/// own literal text is not, so it may still use mrkdwn or HTML.
const FLAVOURS: &[&str] = &[".slack", ".html"];

/// The error a render stops with when its memory budget is spent; turned
/// into [`RenderError::TooMuchMemory`].
fn out_of_memory() -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        "memory budget of the render spent",
    )
}

/// `range()` as minijinja's, but a loop over it ends once the render's
/// memory budget is spent, so a loop growing a value can't run on to the
/// end of its range (the render then fails with [`RenderError::TooMuchMemory`]).
#[derive(Debug)]
struct BudgetedRange(TValue);

impl minijinja::value::Object for BudgetedRange {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &TValue) -> Option<TValue> {
        self.0.get_item(key).ok().filter(|v| !v.is_undefined())
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        let items = self.0.try_iter().into_iter().flatten();
        minijinja::value::Enumerator::Iter(Box::new(
            items.take_while(|_| !crate::alloc_budget::exceeded()),
        ))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        self.0.len()
    }
}

fn new_env() -> Environment<'static> {
    use minijinja::AutoEscape;
    let mut env = Environment::new();
    // The `debug` feature is on for error spans (which expression failed);
    // its debug info would copy values into errors, so it stays off.
    env.set_debug(false);
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.add_function(
        "range",
        |lower: isize, upper: Option<isize>, step: Option<isize>| {
            minijinja::functions::range(lower, upper, step)
                .map(|r| TValue::from_object(BudgetedRange(r)))
        },
    );
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else if name.ends_with(".slack") {
            AutoEscape::Custom("slack")
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        // Every value written passes here, in captured blocks too.
        if crate::alloc_budget::exceeded() {
            return Err(out_of_memory());
        }
        if state.auto_escape() == AutoEscape::Custom("slack") && !value.is_safe() {
            let text = match value.as_str() {
                Some(s) => slack_escape(s),
                None => slack_escape(&value.to_string()),
            };
            return out.write_str(&text).map_err(minijinja::Error::from);
        }
        minijinja::escape_formatter(out, state, value)
    });
    env
}

impl Templates {
    /// Compiles the subject, message and body templates of an alert.
    ///
    /// On failure returns each broken template's path with its error, so that
    /// `check` can report all of them at once.
    pub fn compile(
        alert: &str,
        subject: &str,
        message: &str,
        body: &Value,
    ) -> Result<Templates, Vec<TemplateError>> {
        let mut env = new_env();
        let mut errors = Vec::new();
        let mut body_paths = Vec::new();
        let fixed = [
            Source {
                path: vec![Seg::key("subject")],
                name: "subject".into(),
                text: subject.into(),
            },
            Source {
                path: vec![Seg::key("message")],
                name: "message".into(),
                text: message.into(),
            },
        ];
        let body_srcs = body_sources(body);
        for (src, known) in fixed
            .into_iter()
            .map(|s| (s, MESSAGE_VARS))
            .chain(body_srcs.into_iter().map(|s| (s, BODY_VARS)))
        {
            if src.name == "message" {
                for flavour in FLAVOURS {
                    // Same text as the plain template; its errors are reported once.
                    let _ =
                        env.add_template_owned(format!("{}{flavour}", src.name), src.text.clone());
                }
            }
            if let Err(e) = env.add_template_owned(src.name.clone(), src.text.clone()) {
                errors.push(TemplateError {
                    at: src.path,
                    offset: e.range().map(|r| r.start),
                    error: RenderError::Syntax {
                        template: src.name,
                        reason: e.to_string(),
                    },
                });
                continue;
            }
            let tmpl = env.get_template(&src.name).expect("just added");
            errors.extend(unknown_names(&tmpl, &src, known));
            if src.path.first() == Some(&Seg::key("body")) {
                body_paths.push((src.path[1..].to_vec(), src.name));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Everything is valid; keep sources, not the compiled templates.
        let mut sources = Vec::new();
        let mut simple = std::collections::HashMap::new();
        for (name, tmpl) in env.templates() {
            let src = tmpl.source().to_owned();
            match simple_pieces(&src) {
                Some(p) => {
                    simple.insert(name.to_owned(), p);
                }
                None => sources.push((name.to_owned(), src)),
            }
        }
        Ok(Templates {
            alert: alert.to_owned(),
            sources,
            simple,
            env: std::sync::OnceLock::new(),
            body: body_paths,
        })
    }

    fn env(&self) -> &Environment<'static> {
        self.env.get_or_init(|| {
            let mut env = new_env();
            for (name, src) in &self.sources {
                // Compiled once already at load, so this cannot fail.
                let _ = env.add_template_owned(name.clone(), src.clone());
            }
            env
        })
    }

    fn render(&self, name: &str, ctx: &TValue) -> Result<String, RenderError> {
        if let Some(pieces) = self.simple.get(name) {
            return self.render_simple(name, pieces, ctx);
        }
        let tmpl = self
            .env()
            .get_template(name)
            .map_err(|e| self.err(name, e))?;
        let budget = crate::alloc_budget::Budget::open(MEMORY);
        let mut out = CappedWriter::default();
        let result = tmpl.render_captured_to(ctx, &mut out).map(drop);
        let spent = budget.exceeded();
        drop(budget);
        let template = || {
            name.trim_end_matches(".slack")
                .trim_end_matches(".html")
                .to_owned()
        };
        if out.over {
            return Err(RenderError::TooLarge {
                alert: self.alert.clone(),
                template: template(),
            });
        }
        if spent {
            return Err(RenderError::TooMuchMemory {
                alert: self.alert.clone(),
                template: template(),
            });
        }
        result.map_err(|e| self.err(name, e))?;
        String::from_utf8(out.buf).map_err(|e| RenderError::Render {
            alert: self.alert.clone(),
            template: template(),
            reason: e.to_string(),
        })
    }

    fn render_simple(
        &self,
        name: &str,
        pieces: &[Piece],
        ctx: &TValue,
    ) -> Result<String, RenderError> {
        let escape: fn(&str) -> String = if name.ends_with(".slack") {
            slack_escape
        } else if name.ends_with(".html") {
            |s| minijinja::HtmlEscape(s).to_string()
        } else {
            str::to_owned
        };
        let mut out = String::new();
        for p in pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(path, at) => {
                    let mut v = ctx.clone();
                    for seg in path {
                        v = v.get_attr(seg).unwrap_or_default();
                        if v.is_undefined() {
                            return Err(RenderError::Undefined {
                                alert: self.alert.clone(),
                                template: name
                                    .trim_end_matches(".slack")
                                    .trim_end_matches(".html")
                                    .to_owned(),
                                expr: path.join("."),
                                offset: Some(*at),
                            });
                        }
                    }
                    out.push_str(&escape(&v.to_string()));
                }
            }
            if out.len() > OUTPUT_CAP {
                return Err(RenderError::TooLarge {
                    alert: self.alert.clone(),
                    template: name
                        .trim_end_matches(".slack")
                        .trim_end_matches(".html")
                        .to_owned(),
                });
            }
        }
        Ok(out)
    }

    fn err(&self, template: &str, e: minijinja::Error) -> RenderError {
        if e.kind() == minijinja::ErrorKind::UndefinedError
            && let Some(range) = e.range()
            && let Some(expr) = self.env().get_template(template).ok().and_then(|t| {
                let src = t.source();
                let start = expr_start(src, range.start);
                src.get(start..range.end)
                    .map(|e| (start, e.trim().to_owned()))
            })
        {
            return RenderError::Undefined {
                alert: self.alert.clone(),
                template: template
                    .trim_end_matches(".slack")
                    .trim_end_matches(".html")
                    .to_owned(),
                expr: expr.1,
                offset: Some(expr.0),
            };
        }
        let mut reason = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            src = s.source();
        }
        RenderError::Render {
            alert: self.alert.clone(),
            template: template.to_owned(),
            reason,
        }
    }

    /// Renders the search body: a copy of `body` whose templated strings are
    /// replaced by their rendered text. Structure is never templated, so the
    /// result is always valid JSON.
    pub fn render_body(
        &self,
        body: &str,
        alert: &AlertInfo,
        now: DateTime<Utc>,
        window: Window,
    ) -> Result<Value, RenderError> {
        let mut out: Value = serde_json::from_str(body).expect("the body was valid JSON at load");
        if self.body.is_empty() {
            return Ok(out);
        }
        let ctx = context! { alert => TValue::from_serialize(alert), now => fmt_time(&now), window => TValue::from_serialize(window) };
        for (path, name) in &self.body {
            let text = self.render(name, &ctx)?;
            if let Some(slot) = pointer_mut(&mut out, path) {
                *slot = Value::String(text);
            }
        }
        Ok(out)
    }

    /// Renders subject and message, in every flavour, for a matched response.
    pub fn render_message(&self, vars: &MessageVars<'_>) -> Result<Rendered, RenderError> {
        let ctx = message_context(vars);
        let subject = self.render("subject", &ctx)?;
        let text = self.render("message", &ctx)?;
        for (name, t) in [("subject", &subject), ("message", &text)] {
            if t.trim().is_empty() {
                return Err(RenderError::Empty {
                    alert: self.alert.clone(),
                    template: name.into(),
                });
            }
        }
        Ok(Rendered {
            subject: one_line(&subject),
            // Only the flavours some medium of the alert will send.
            slack: if vars.slack {
                self.render("message.slack", &ctx)?
            } else {
                String::new()
            },
            html: if vars.html {
                self.render("message.html", &ctx)?
            } else {
                String::new()
            },
            text,
        })
    }
}

/// Where the expression whose part starts at `at` begins: minijinja's span
/// of a failed lookup starts at the attribute (`.host.name`), the reader
/// wants the whole path (`hits.hits[0]._source.host.name`).
fn expr_start(src: &str, mut at: usize) -> usize {
    let b = src.as_bytes();
    while let Some(prev) = at.checked_sub(1).and_then(|i| b.get(i)) {
        match prev {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => at -= 1,
            b']' => match src.get(..at).and_then(|s| s.rfind('[')) {
                Some(open) => at = open,
                None => break,
            },
            _ => break,
        }
    }
    at
}

/// A template that will fail, with where it sits in the alert file.
#[derive(Debug)]
pub struct TemplateError {
    /// The template's place in the alert file.
    pub at: Vec<Seg>,
    /// Where the mistake starts in the template's text (bytes), when known.
    pub offset: Option<usize>,
    /// What is wrong.
    pub error: RenderError,
}

/// Variables and attributes `tmpl` uses that can never exist: every one,
/// each with where it is first used.
fn unknown_names(
    tmpl: &minijinja::Template<'_, '_>,
    src: &Source,
    known: &'static [&'static str],
) -> Vec<TemplateError> {
    let mut out = Vec::new();
    let mut vars: Vec<_> = tmpl.undeclared_variables(false).into_iter().collect();
    vars.sort();
    for var in vars {
        if !known.contains(&var.as_str()) && !GLOBALS.contains(&var.as_str()) {
            out.push(TemplateError {
                at: src.path.clone(),
                offset: find_name(&src.text, &var),
                error: RenderError::UndefinedVariable {
                    template: src.name.clone(),
                    var,
                    known,
                },
            });
        }
    }
    let mut names: Vec<_> = tmpl.undeclared_variables(true).into_iter().collect();
    names.sort();
    for name in names {
        let mut parts = name.split('.');
        let (Some(var), Some(attr)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Some((_, attrs)) = ATTRIBUTES.iter().find(|(v, _)| *v == var) else {
            continue;
        };
        if !known.contains(&var) || attrs.contains(&attr) {
            continue;
        }
        let hint = if attrs.is_empty() {
            format!("`{var}` has no attributes")
        } else {
            format!("`{var}` has {}", attrs.join(", "))
        };
        let written = format!("{var}.{attr}");
        out.push(TemplateError {
            at: src.path.clone(),
            offset: find_name(&src.text, &written),
            error: RenderError::UnknownAttribute {
                template: src.name.clone(),
                name: written,
                hint,
            },
        });
    }
    out
}

/// Where `name` (a variable or `var.attr`) is first used inside a tag of
/// `src`: the byte offset, for an error's column.
fn find_name(src: &str, name: &str) -> Option<usize> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(open) = src.get(from..).and_then(|r| r.find(['{'])) {
        let start = from.saturating_add(open);
        let tag = src.get(start..start.saturating_add(2));
        let close = match tag {
            Some("{{") => "}}",
            Some("{%") => "%}",
            _ => {
                from = start.saturating_add(1);
                continue;
            }
        };
        let end = src
            .get(start..)
            .and_then(|r| r.find(close))
            .map_or(src.len(), |e| start.saturating_add(e));
        let inside = src.get(start..end).unwrap_or("");
        let mut at = 0;
        while let Some(i) = inside.get(at..).and_then(|r| r.find(name)) {
            let i = at.saturating_add(i);
            let before = inside.get(..i).and_then(|b| b.chars().next_back());
            let after = inside
                .get(i.saturating_add(name.len())..)
                .and_then(|a| a.chars().next());
            if !before.is_some_and(|c| ident(c) || c == '.') && !after.is_some_and(ident) {
                return Some(start.saturating_add(i));
            }
            at = i.saturating_add(1);
        }
        from = end.max(start.saturating_add(1));
    }
    None
}

impl Templates {
    /// Renders subject and message (text) each on its own, as `check` does
    /// against a saved response: every failing template, not only the first.
    pub fn check_message(&self, vars: &MessageVars<'_>) -> Vec<RenderError> {
        let ctx = message_context(vars);
        ["subject", "message"]
            .into_iter()
            .filter_map(|name| self.render(name, &ctx).err())
            .collect()
    }
}

/// What subject and message templates see.
fn message_context(vars: &MessageVars<'_>) -> TValue {
    // The response is wrapped, not copied: templates read only what they use.
    let response = json_value(vars.response);
    context! {
        hits => response.get_attr("hits").unwrap_or_default(),
        aggregations => response.get_attr("aggregations").unwrap_or_default(),
        response,
        alert => TValue::from_serialize(vars.alert),
        now => fmt_time(&vars.now),
        window => TValue::from_serialize(vars.window),
        group => match vars.group {
            Some(g) => context! {
                key => g.key.as_str(),
                item => json_value(&g.item),
                count => g.count,
            },
            None => context! { key => "", item => TValue::from(()), count => 0 },
        },
        resolved => vars.resolved,
    }
}

/// Collects a render's output, refusing to grow past [`OUTPUT_CAP`] or to
/// go on once the render's memory budget is spent.
#[derive(Default)]
struct CappedWriter {
    buf: Vec<u8>,
    over: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > OUTPUT_CAP {
            self.over = true;
            return Err(std::io::Error::other("output over the cap"));
        }
        if crate::alloc_budget::exceeded() {
            return Err(std::io::Error::other("memory budget spent"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A subject is one line: newlines from data could otherwise inject headers.
pub fn one_line(s: &str) -> String {
    s.split(['\r', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rendered notification in the forms each medium needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Rendered {
    /// One-line subject, plain text.
    pub subject: String,
    /// The message as plain text (logs, email text part, `esalert test`).
    pub text: String,
    /// The message as Slack mrkdwn, with response values escaped.
    pub slack: String,
    /// The message as HTML, with response values escaped.
    pub html: String,
}

impl Rendered {
    /// A message that is data throughout (e.g. a script's), escaped for each medium.
    pub fn from_data(subject: String, text: String) -> Rendered {
        Rendered {
            subject: one_line(&subject),
            slack: slack_escape(&text),
            html: html_escape(&text),
            text,
        }
    }
}

/// A part of a JSON document, seen by templates without copying it.
///
/// Holds the document's `Arc` and a pointer to one value inside it. The
/// document is never mutated while shared, and the `Arc` keeps it alive as
/// long as any node exists, so the pointer stays valid.
#[derive(Debug)]
struct JsonNode {
    root: Arc<Value>,
    node: std::ptr::NonNull<Value>,
}

// SAFETY: a JsonNode only reads an immutable `Value` (which is Send + Sync)
// that its own `Arc` keeps alive.
unsafe impl Send for JsonNode {}
// SAFETY: as above; no interior mutability is reachable through the pointer.
unsafe impl Sync for JsonNode {}

impl JsonNode {
    fn get(&self) -> &Value {
        // SAFETY: `node` points into `*self.root`, which is alive (we hold
        // the Arc) and never mutated while shared.
        unsafe { self.node.as_ref() }
    }

    fn child(&self, v: &Value) -> TValue {
        to_template_value(&self.root, v)
    }
}

/// The template value for the JSON document `root`.
fn json_value(root: &Arc<Value>) -> TValue {
    to_template_value(root, root)
}

/// The template value for `v`, which must live inside `root`.
fn to_template_value(root: &Arc<Value>, v: &Value) -> TValue {
    match v {
        Value::Null => TValue::from(()),
        Value::Bool(b) => TValue::from(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => TValue::from(i),
            (None, Some(u)) => TValue::from(u),
            _ => TValue::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => TValue::from(s.as_str()),
        Value::Array(_) | Value::Object(_) => TValue::from_object(JsonNode {
            root: root.clone(),
            node: std::ptr::NonNull::from(v),
        }),
    }
}

impl minijinja::value::Object for JsonNode {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        match self.get() {
            Value::Array(_) => minijinja::value::ObjectRepr::Seq,
            _ => minijinja::value::ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &TValue) -> Option<TValue> {
        match self.get() {
            Value::Object(m) => m.get(key.as_str()?).map(|v| self.child(v)),
            Value::Array(a) => a.get(key.as_usize()?).map(|v| self.child(v)),
            _ => None,
        }
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        match self.get() {
            Value::Array(a) => minijinja::value::Enumerator::Seq(a.len()),
            Value::Object(m) => minijinja::value::Enumerator::Values(
                m.keys().map(|k| TValue::from(k.as_str())).collect(),
            ),
            _ => minijinja::value::Enumerator::Empty,
        }
    }
}

/// What the subject and message templates see.
pub struct MessageVars<'a> {
    /// The search response.
    pub response: &'a Arc<Value>,
    /// `alert.*`.
    pub alert: &'a AlertInfo,
    /// The run's time.
    pub now: DateTime<Utc>,
    /// The searched window.
    pub window: Window,
    /// Whether to render the Slack flavour.
    pub slack: bool,
    /// Whether to render the HTML flavour.
    pub html: bool,
    /// The entity this notification is about, for rules with `group_by`.
    pub group: Option<&'a GroupVars>,
    /// Whether this is the notice that a match is over (`notify_resolved`).
    pub resolved: bool,
}

/// `group.*` in templates: the entity a grouped match is about.
#[derive(Debug, Clone)]
pub struct GroupVars {
    /// The group key (composite keys joined with `|`).
    pub key: String,
    /// The first element of the key that met the condition.
    pub item: Arc<Value>,
    /// How many documents the key stands for (a bucket's `doc_count`, or
    /// the number of matching elements).
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(subject: &str, message: &str, body: Value) -> Vec<(Option<usize>, String)> {
        match Templates::compile("a", subject, message, &body) {
            Ok(_) => Vec::new(),
            Err(es) => es
                .into_iter()
                .map(|e| (e.offset, e.error.to_string()))
                .collect(),
        }
    }

    #[test]
    fn names_that_never_exist_are_errors_at_their_place() {
        let msg = "x {{ alert.name }} {% if hits.total %}{{ window.begin }}{% endif %} {{ alert.nmae | upper }}";
        let es = errors("s", msg, serde_json::json!({}));
        assert_eq!(es.len(), 2, "{es:?}");
        let at = |n: &str| msg.find(n);
        assert!(
            es.contains(&(
                at("window.begin"),
                "template message uses `window.begin`, which never exists: `window` has start, end"
                    .into()
            )),
            "{es:?}"
        );
        assert!(
            es.iter().any(|(o, m)| *o == at("alert.nmae")
                && m.contains("`alert` has name, description, index")),
            "{es:?}"
        );
        // Free-form names and loop variables are not checked.
        let ok = "{{ group.item.x.y }}{{ hits.hits[0]._source.z }}{% for h in hits.hits %}{{ h.a }}{{ loop.index }}{% endfor %}{{ group.key }}";
        assert!(errors("s", ok, serde_json::json!({})).is_empty());
        // Bodies see alert, now and window only; `now` has no attributes.
        let es = errors(
            "s",
            "m",
            serde_json::json!({"q": "{{ now.x }} {{ group.key }}"}),
        );
        assert_eq!(es.len(), 2, "{es:?}");
        assert!(
            es.iter()
                .any(|(o, m)| *o == Some(3) && m.contains("`now` has no attributes")),
            "{es:?}"
        );
        assert!(
            es.iter()
                .any(|(o, m)| *o == Some(15) && m.contains("undefined variable `group`")),
            "{es:?}"
        );
    }

    #[test]
    fn undefined_values_are_named_by_expression() {
        let response =
            Arc::new(serde_json::json!({"hits": {"total": 1, "hits": [{"_source": {}}]}}));
        let info = AlertInfo {
            name: "a".into(),
            description: String::new(),
            index: "i".into(),
        };
        let now = Utc::now();
        for (msg, expr) in [
            (
                "n={{ hits.total }} {{ hits.hits[0]._source.host.name }}",
                "hits.hits[0]._source.host.name",
            ),
            ("{{ hits.nope.deeper }}", "hits.nope.deeper"),
            (
                "{% for h in hits.hits %}{{ h._source.user }}{% endfor %}",
                "h._source.user",
            ),
        ] {
            let t = Templates::compile("a", "s", msg, &serde_json::json!({})).unwrap();
            let vars = MessageVars {
                response: &response,
                alert: &info,
                now,
                window: Window {
                    start: now,
                    end: now,
                },
                slack: true,
                html: true,
                group: None,
                resolved: false,
            };
            match t.render_message(&vars) {
                Err(RenderError::Undefined {
                    expr: e,
                    offset,
                    template,
                    ..
                }) => {
                    assert_eq!(e, expr);
                    assert_eq!(template, "message");
                    assert_eq!(
                        offset
                            .and_then(|o| msg.get(o..))
                            .map(|r| r.starts_with(expr)),
                        Some(true),
                        "{msg}: {offset:?}"
                    );
                }
                other => panic!("{msg}: {other:?}"),
            }
        }
    }
}
