//! An ElastAlert match as text: `alert_subject` and `alert_text` with their
//! Python `str.format` arguments, and ElastAlert's default body.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::check::python_str;
use super::query::lookup;

/// `alert_text_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextType {
    /// `alert_text`, the type's line and every field of the match.
    #[default]
    Default,
    /// `alert_text` alone.
    AlertTextOnly,
    /// `alert_text` and the type's line, without the match's fields.
    ExcludeFields,
    /// As the default, and a digest shows only its summary table.
    AggregationSummaryOnly,
    /// `alert_text` (and `alert_subject`) are Jinja templates over the rule
    /// and the match, rendered alone.
    Jinja,
}

impl TextType {
    /// The value as written, or `None` for an unknown one.
    pub fn parse(s: &str) -> Option<TextType> {
        Some(match s {
            "alert_text_only" => TextType::AlertTextOnly,
            "exclude_fields" => TextType::ExcludeFields,
            "aggregation_summary_only" => TextType::AggregationSummaryOnly,
            "alert_text_jinja" => TextType::Jinja,
            _ => return None,
        })
    }
}

/// The text settings of a rule.
#[derive(Debug, Clone, Default)]
pub struct Text {
    /// The rule's `name`.
    pub name: String,
    /// `alert_subject`.
    pub subject: Option<String>,
    /// `alert_subject_args`.
    pub subject_args: Vec<String>,
    /// `alert_subject_max_len`.
    pub subject_max_len: usize,
    /// `alert_text`.
    pub text: Option<String>,
    /// `alert_text_args`.
    pub text_args: Vec<String>,
    /// `alert_text_kw`: field → name in the template.
    pub text_kw: Vec<(String, String)>,
    /// `alert_text_type`.
    pub text_type: TextType,
    /// `alert_missing_value`.
    pub missing: String,
    /// `jinja_root_name`: the name under which Jinja templates also see
    /// the rule and match (for field names with dots).
    pub jinja_root: String,
}

/// The most template instructions one Jinja render may run.
const JINJA_FUEL: u64 = 100_000;

fn jinja_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_fuel(Some(JINJA_FUEL));
    env
}

/// Whether `source` compiles as a Jinja template; the error when not.
pub fn check_jinja(source: &str) -> Result<(), String> {
    jinja_env()
        .template_from_str(source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Python's `str.format` over positional and named values. `{}` / `{0}` /
/// `{name}` and `{{`/`}}`; a format spec after `:` is honoured for
/// widths and precision of numbers in the common cases and otherwise
/// ignored.
pub fn format(
    template: &str,
    args: &[String],
    kw: &HashMap<String, String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut auto = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err("a single `}` must be written `}}`".into()),
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => field.push(c),
                        None => return Err("a `{` is not closed; write `{{` for a brace".into()),
                    }
                }
                let name = field
                    .split([':', '!'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let value = if name.is_empty() {
                    let v = args.get(auto).ok_or_else(|| {
                        format!("`{{}}` number {} has no value: give more args", auto + 1)
                    })?;
                    auto += 1;
                    v
                } else if let Ok(i) = name.parse::<usize>() {
                    args.get(i)
                        .ok_or_else(|| format!("`{{{i}}}` has no value: give more args"))?
                } else {
                    kw.get(&name)
                        .ok_or_else(|| format!("`{{{name}}}` is not one of the names given"))?
                };
                out.push_str(value);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Looks up `arg` in the match, then among the rule's own keys (as
/// ElastAlert does), else `missing`.
fn value_of(arg: &str, m: &Map<String, Value>, rule: &Map<String, Value>, missing: &str) -> String {
    let doc = Value::Object(m.clone());
    match lookup(&doc, arg) {
        Some(v) if !v.is_null() => python_str(v),
        _ => match rule.get(arg) {
            Some(v) if !v.is_null() && v != &Value::Bool(false) && v != &Value::from("") => {
                python_str(v)
            }
            _ => missing.to_owned(),
        },
    }
}

impl Text {
    /// ElastAlert's Jinja rendering: the rule's keys and the match's
    /// fields (the match wins), also under `jinja_root_name`.
    fn jinja(&self, source: &str, m: &Map<String, Value>, rule: &Map<String, Value>) -> String {
        let mut values = rule.clone();
        values.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut ctx = values.clone();
        ctx.insert(self.jinja_root.clone(), Value::Object(values));
        jinja_env()
            .render_str(source, Value::Object(ctx))
            .unwrap_or_else(|e| format!("{source}\n(template error: {e})"))
    }

    /// The subject of a match (`create_title`).
    pub fn subject(&self, m: &Map<String, Value>, rule: &Map<String, Value>) -> String {
        let Some(t) = &self.subject else {
            return self.name.clone();
        };
        if self.subject_args.is_empty() && self.text_type == TextType::Jinja {
            return crate::render::one_line(&self.jinja(t, m, rule))
                .chars()
                .take(self.subject_max_len)
                .collect();
        }
        let args: Vec<String> = self
            .subject_args
            .iter()
            .map(|a| value_of(a, m, rule, &self.missing))
            .collect();
        let s = if self.subject_args.is_empty() {
            t.clone()
        } else {
            format(t, &args, &HashMap::new()).unwrap_or_else(|_| t.clone())
        };
        s.chars().take(self.subject_max_len).collect()
    }

    /// The body of a match (`BasicMatchString`); `type_line` is the rule
    /// type's `get_match_str`.
    pub fn body(
        &self,
        m: &Map<String, Value>,
        rule: &Map<String, Value>,
        type_line: &str,
    ) -> String {
        let mut text = String::new();
        if self.text.is_none() {
            text.push_str(&self.name);
            text.push_str("\n\n");
        }
        let custom = self.text.clone().unwrap_or_default();
        if self.text_type == TextType::Jinja {
            text.push_str(&self.jinja(&custom, m, rule));
        } else if !self.text_args.is_empty() {
            let args: Vec<String> = self
                .text_args
                .iter()
                .map(|a| value_of(a, m, rule, &self.missing))
                .collect();
            text.push_str(&format(&custom, &args, &HashMap::new()).unwrap_or(custom));
        } else if !self.text_kw.is_empty() {
            let kw: HashMap<String, String> = self
                .text_kw
                .iter()
                .map(|(field, name)| (name.clone(), value_of(field, m, rule, &self.missing)))
                .collect();
            text.push_str(&format(&custom, &[], &kw).unwrap_or(custom));
        } else {
            text.push_str(&custom);
        }
        ensure_blank_line(&mut text);
        if !matches!(self.text_type, TextType::AlertTextOnly | TextType::Jinja) {
            text.push_str(type_line);
            ensure_blank_line(&mut text);
            // `_add_top_counts`.
            for (k, v) in m {
                let Some(field) = k.strip_prefix("top_events_") else {
                    continue;
                };
                text.push_str(&format!("{field}:\n"));
                match v.as_object().filter(|o| !o.is_empty()) {
                    None => text.push_str("No events found.\n"),
                    Some(o) => {
                        let mut counts: Vec<(&String, &Value)> = o.iter().collect();
                        counts.sort_by_key(|c| std::cmp::Reverse(c.1.as_u64()));
                        for (term, n) in counts {
                            text.push_str(&format!("{term}: {}\n", python_str(n)));
                        }
                    }
                }
                text.push('\n');
            }
            if self.text_type != TextType::ExcludeFields {
                let mut items: Vec<(&String, &Value)> = m.iter().collect();
                items.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in items {
                    if k.starts_with("top_events_") {
                        continue;
                    }
                    let shown = match v {
                        Value::Array(_) | Value::Object(_) => pretty(v),
                        other => python_str(other),
                    };
                    text.push_str(&format!("{k}: {shown}\n"));
                }
            }
        }
        text
    }
}

fn ensure_blank_line(t: &mut String) {
    while !t.ends_with("\n\n") {
        t.push('\n');
    }
}

/// `json.dumps(v, sort_keys=True, indent=4, ensure_ascii=False)`.
fn pretty(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(&sorted(v), &mut ser).is_err() {
        return v.to_string();
    }
    String::from_utf8(buf).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_format() {
        let kw = HashMap::from([("u".to_owned(), "bob".to_owned())]);
        assert_eq!(
            format("{} on {1} {{x}} {0:>5}", &["a".into(), "b".into()], &kw).unwrap(),
            "a on b {x} a"
        );
        assert_eq!(format("hi {u}", &[], &kw).unwrap(), "hi bob");
        assert!(format("{}", &[], &kw).is_err());
        assert!(format("{nope}", &[], &kw).is_err());
        assert!(format("{", &[], &kw).is_err());
    }

    #[test]
    fn default_body_is_elastalerts() {
        let t = Text {
            name: "Bad logins".into(),
            missing: "<MISSING VALUE>".into(),
            subject_max_len: 2048,
            ..Text::default()
        };
        let m = json!({"user": "bob", "@timestamp": "2026-01-01T00:00:00Z", "n": 2, "tags": ["a"]});
        let m = m.as_object().unwrap();
        let body = t.body(m, &Map::new(), "");
        assert_eq!(
            body,
            "Bad logins\n\n@timestamp: 2026-01-01T00:00:00Z\nn: 2\ntags: [\n    \"a\"\n]\nuser: bob\n"
        );
        let t = Text {
            subject: Some("Login by {0} from {1}".into()),
            subject_args: vec!["user".into(), "ip".into()],
            text: Some("User {u}".into()),
            text_kw: vec![("user".into(), "u".into())],
            text_type: TextType::AlertTextOnly,
            ..t
        };
        assert_eq!(
            t.subject(m, &Map::new()),
            "Login by bob from <MISSING VALUE>"
        );
        assert_eq!(t.body(m, &Map::new(), "ignored"), "User bob\n\n");
        let rule = json!({"owner": "soc"});
        let t = Text {
            subject: Some("{{ user }} ({{ owner }})".into()),
            subject_args: vec![],
            text: Some("{{ _data['@timestamp'] }}: {{ user | upper }} x{{ n }}".into()),
            text_type: TextType::Jinja,
            jinja_root: "_data".into(),
            ..t
        };
        let rule = rule.as_object().unwrap();
        assert_eq!(t.subject(m, rule), "bob (soc)");
        assert_eq!(
            t.body(m, rule, "ignored"),
            "2026-01-01T00:00:00Z: BOB x2\n\n"
        );
        assert!(check_jinja("{% if %}").is_err());
    }
}
