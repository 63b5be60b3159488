//! YAML as ElastAlert reads it (PyYAML's safe loader, YAML 1.1 scalars),
//! into a JSON value, with the position of every key and list item so that
//! errors found later still point at `line:column`.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::alert::locate::Position;

/// The most nested collections a rule may have; deeper input is refused
/// rather than risking the stack.
const MAX_DEPTH: usize = 64;

/// The most values aliases may expand to, so that a "billion laughs"
/// document can't exhaust memory.
const MAX_NODES: usize = 200_000;

/// A parsed rule file.
#[derive(Debug, Clone, Default)]
pub struct Doc {
    /// The document as JSON.
    pub value: Value,
    /// Positions by JSON pointer (`/filter/0/term`): a mapping member's key,
    /// a list item's first character.
    spans: HashMap<String, Position>,
}

/// Why a file is not YAML ElastAlert would read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where.
    pub position: Position,
    /// What.
    pub message: String,
}

impl Doc {
    /// The position of the value at `pointer`, or of its nearest ancestor
    /// that has one.
    pub fn position(&self, pointer: &str) -> Option<Position> {
        let mut p = pointer;
        loop {
            if let Some(at) = self.spans.get(p) {
                return Some(*at);
            }
            let cut = p.rfind('/')?;
            p = &p[..cut];
        }
    }
}

/// A JSON pointer segment for `key`.
pub fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn pos(m: &Marker) -> Position {
    Position {
        line: m.line().max(1),
        column: m.col().saturating_add(1),
    }
}

/// `$NAME` and `${NAME}` replaced by environment variables, as ElastAlert
/// 2 reads every rule and config file (Python's `os.path.expandvars`:
/// names of ASCII letters, digits and `_`; an unset variable stays as
/// written).
pub fn expand_vars<'t>(
    text: &'t str,
    env: &dyn Fn(&str) -> Option<String>,
) -> std::borrow::Cow<'t, str> {
    if !text.contains('$') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            match inner.find('}') {
                Some(end) => (&inner[..end], end + 2),
                None => ("", 0),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        match (len > 0 && !name.is_empty()).then(|| env(name)).flatten() {
            Some(value) => {
                out.push_str(&value);
                rest = &after[len..];
            }
            None => {
                out.push('$');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Doc, YamlError> {
    let mut b = Builder {
        text,
        parser: Parser::new_from_str(text),
        anchors: HashMap::new(),
        spans: HashMap::new(),
        nodes: 0,
    };
    let mut value = None;
    loop {
        let (ev, mark) = b.next()?;
        match ev {
            Event::StreamStart | Event::DocumentStart | Event::DocumentEnd => {}
            Event::StreamEnd => break,
            first => {
                if value.is_some() {
                    return Err(YamlError {
                        position: pos(&mark),
                        message: "a rule file holds one YAML document; remove the second one"
                            .into(),
                    });
                }
                value = Some(b.node(first, mark, String::new(), 0)?);
            }
        }
    }
    Ok(Doc {
        value: value.unwrap_or(Value::Null),
        spans: b.spans,
    })
}

struct Builder<'a> {
    text: &'a str,
    parser: Parser<std::str::Chars<'a>>,
    anchors: HashMap<usize, Value>,
    spans: HashMap<String, Position>,
    nodes: usize,
}

impl Builder<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|e| YamlError {
            position: pos(e.marker()),
            message: format!("not valid YAML: {}", e.info()),
        })
    }

    /// Where key `key` starts: the scanner marks the first key of a
    /// mapping that opens a list item (`- term:`) at its colon, so look
    /// back along the line for the key itself.
    fn key_position(&self, m: &Marker, key: &str) -> Position {
        let p = pos(m);
        let Some(line) = self.text.lines().nth(p.line.saturating_sub(1)) else {
            return p;
        };
        let upto: String = line.chars().take(p.column.saturating_sub(1)).collect();
        if line
            .chars()
            .skip(p.column.saturating_sub(1))
            .collect::<String>()
            .starts_with(key)
        {
            return p;
        }
        match upto
            .trim_end()
            .strip_suffix(['"', '\''])
            .unwrap_or(upto.trim_end())
            .rfind(key)
        {
            Some(byte) if !key.is_empty() => {
                let mut col = upto[..byte].chars().count() + 1;
                // A quoted key starts at its quote.
                if upto[..byte].ends_with(['"', '\'']) {
                    col -= 1;
                }
                Position {
                    line: p.line,
                    column: col,
                }
            }
            _ => p,
        }
    }

    fn count(&mut self, v: &Value, mark: &Marker) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(size(v));
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                position: pos(mark),
                message: format!("the document expands to more than {MAX_NODES} values"),
            });
        }
        Ok(())
    }

    /// The value that starts with `ev`; `at` is its JSON pointer.
    fn node(
        &mut self,
        ev: Event,
        mark: Marker,
        at: String,
        depth: usize,
    ) -> Result<Value, YamlError> {
        if depth > MAX_DEPTH {
            return Err(YamlError {
                position: pos(&mark),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        let (v, anchor) = match ev {
            Event::Alias(id) => {
                let v = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    position: pos(&mark),
                    message: "an alias names an anchor that is not defined before it".into(),
                })?;
                self.count(&v, &mark)?;
                (v, 0)
            }
            Event::Scalar(s, style, anchor, tag) => {
                let as_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let v = if style == TScalarStyle::Plain && !as_str {
                    resolve(&s)
                } else {
                    Value::String(s)
                };
                self.nodes = self.nodes.saturating_add(1);
                (v, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                let mut items = Vec::new();
                loop {
                    let (ev, m) = self.next()?;
                    if ev == Event::SequenceEnd {
                        break;
                    }
                    let child = format!("{at}/{}", items.len());
                    let mut here = pos(&m);
                    let item = self.node(ev, m, child.clone(), depth + 1)?;
                    // A mapping item is marked at its first key's colon:
                    // its first key is where it starts.
                    if let Some(k) = item.as_object().and_then(|o| o.keys().next())
                        && let Some(kp) = self.spans.get(&format!("{child}/{}", escape(k)))
                        && (kp.line, kp.column) < (here.line, here.column)
                    {
                        here = *kp;
                    }
                    self.spans.insert(child, here);
                    items.push(item);
                }
                self.nodes = self.nodes.saturating_add(1);
                (Value::Array(items), anchor)
            }
            Event::MappingStart(anchor, _) => {
                let mut map = Map::new();
                let mut merged = Map::new();
                loop {
                    let (kev, km) = self.next()?;
                    if kev == Event::MappingEnd {
                        break;
                    }
                    let key = match self.node(kev, km, format!("{at}/?"), depth + 1)? {
                        Value::String(s) => s,
                        Value::Null => "null".to_owned(),
                        other => other.to_string(),
                    };
                    let child = format!("{at}/{}", escape(&key));
                    let (vev, vm) = self.next()?;
                    let v = self.node(vev, vm, child.clone(), depth + 1)?;
                    if key == "<<" {
                        // PyYAML's merge key: a mapping or a list of them,
                        // whose keys the mapping's own override.
                        let sources = match v {
                            Value::Array(a) => a,
                            one => vec![one],
                        };
                        for s in sources {
                            let Value::Object(m) = s else {
                                return Err(YamlError {
                                    position: pos(&km),
                                    message: "`<<` must merge a mapping or a list of mappings"
                                        .into(),
                                });
                            };
                            for (k, v) in m {
                                merged.entry(k).or_insert(v);
                            }
                        }
                        continue;
                    }
                    if map.contains_key(&key) {
                        return Err(YamlError {
                            position: pos(&km),
                            message: format!(
                                "`{key}` is given twice; ElastAlert would silently use the last one: keep one"
                            ),
                        });
                    }
                    let at = self.key_position(&km, &key);
                    self.spans.insert(child, at);
                    map.insert(key, v);
                }
                for (k, v) in merged {
                    map.entry(k).or_insert(v);
                }
                self.nodes = self.nodes.saturating_add(1);
                (Value::Object(map), anchor)
            }
            other => {
                return Err(YamlError {
                    position: pos(&mark),
                    message: format!("unexpected YAML event {other:?}"),
                });
            }
        };
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                position: pos(&mark),
                message: format!("the document expands to more than {MAX_NODES} values"),
            });
        }
        if anchor > 0 {
            self.anchors.insert(anchor, v.clone());
        }
        Ok(v)
    }
}

fn size(v: &Value) -> usize {
    match v {
        Value::Array(a) => a.iter().map(size).fold(1, usize::saturating_add),
        Value::Object(m) => m.values().map(size).fold(1, usize::saturating_add),
        _ => 1,
    }
}

/// A plain scalar as PyYAML's safe loader types it (YAML 1.1): `yes`/`on`
/// are booleans, `~` is null, a float needs a dot.
fn resolve(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(n) = int(s) {
        return Value::Number(n);
    }
    if let Some(f) = float(s).and_then(Number::from_f64) {
        return Value::Number(f);
    }
    Value::String(s.to_owned())
}

fn int(s: &str) -> Option<Number> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || body.starts_with('_') {
        return None;
    }
    let (radix, d) = if let Some(h) = digits.strip_prefix("0x") {
        (16, h)
    } else if let Some(b) = digits.strip_prefix("0b") {
        (2, b)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits.as_str())
    };
    if d.is_empty() || !d.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i128::from_str_radix(d, radix).ok()?;
    let v = if neg { -v } else { v };
    if let Ok(i) = i64::try_from(v) {
        Some(Number::from(i))
    } else {
        u64::try_from(v).ok().map(Number::from)
    }
}

fn float(s: &str) -> Option<f64> {
    let body = s.trim_start_matches(['-', '+']);
    if matches!(body, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN") {
        // Not representable in JSON; kept as text.
        return None;
    }
    // PyYAML: [-+]?([0-9][0-9_]*)?\.[0-9.]*([eE][-+][0-9]+)?
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let dot = mantissa.find('.')?;
    let (whole, frac) = (&mantissa[..dot], &mantissa[dot + 1..]);
    let whole_ok = whole.is_empty()
        || (whole.starts_with(|c: char| c.is_ascii_digit())
            && whole.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let frac_ok = frac.chars().all(|c| c.is_ascii_digit() || c == '.');
    let exp_ok = exp.is_none_or(|e| {
        e.len() > 1 && e.starts_with(['-', '+']) && e[1..].chars().all(|c| c.is_ascii_digit())
    });
    if !(whole_ok && frac_ok && exp_ok) || frac.contains('.') {
        return None;
    }
    s.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_variables_as_pythons_expandvars() {
        let env = |n: &str| match n {
            "HOOK" => Some("https://h/x".to_owned()),
            "A_1" => Some("v".to_owned()),
            _ => None,
        };
        assert_eq!(expand_vars("url: ${HOOK}", &env), "url: https://h/x");
        assert_eq!(expand_vars("a: $A_1-b $A_1", &env), "a: v-b v");
        assert_eq!(
            expand_vars("x: $NOPE ${NOPE} ${} $ ${open", &env),
            "x: $NOPE ${NOPE} ${} $ ${open"
        );
        assert_eq!(expand_vars("no vars", &env), "no vars");
    }
    use serde_json::json;

    #[test]
    fn scalars_are_typed_as_pyyaml_types_them() {
        let d = parse(
            "a: yes\nb: off\nc: ~\nd: 0x1f\ne: 1_000\nf: 1.5\ng: 1e3\nh: '10'\ni: 010\nj: -7\nk: 2026-01-01\n",
        )
        .unwrap();
        assert_eq!(
            d.value,
            json!({"a": true, "b": false, "c": null, "d": 31, "e": 1000, "f": 1.5,
                   "g": "1e3", "h": "10", "i": 8, "j": -7, "k": "2026-01-01"})
        );
    }

    #[test]
    fn keys_and_items_have_positions() {
        let text = "name: x\nfilter:\n- term:\n    host: \"é\"\n- query_string:\n    query: a\n";
        let d = parse(text).unwrap();
        assert_eq!(d.position("/filter"), Some(Position { line: 2, column: 1 }));
        assert_eq!(
            d.position("/filter/1"),
            Some(Position { line: 5, column: 3 })
        );
        assert_eq!(
            d.position("/filter/0/term/host"),
            Some(Position { line: 4, column: 5 })
        );
        // Unknown tails fall back to the nearest known ancestor.
        assert_eq!(
            d.position("/filter/1/query_string/nope"),
            Some(Position { line: 5, column: 3 })
        );
    }

    #[test]
    fn anchors_merges_and_errors() {
        let d = parse("base: &b {x: 1, y: 2}\nthis:\n  <<: *b\n  y: 3\n").unwrap();
        assert_eq!(d.value["this"], json!({"x": 1, "y": 3}));
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.message.starts_with("not valid YAML"), "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.position, Position { line: 2, column: 1 });
        assert!(e.message.contains("`a` is given twice"));
        let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("one YAML document"));
        // A billion laughs is refused, not expanded.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            bomb.push_str(&format!(
                "l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        assert!(parse(&bomb).unwrap_err().message.contains("expands"));
    }
}
