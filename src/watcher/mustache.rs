//! Mustache, as Elasticsearch Watcher renders it: variables with dotted
//! names (array elements by index: `ctx.payload.hits.hits.0._id`), sections
//! over arrays and maps, inverted sections, comments, `{{.}}`, and the
//! `{{#toJson}}path{{/toJson}}` and `{{#join}}path{{/join}}` helpers.
//! Missing values render as nothing. No HTML escaping: Watcher doesn't
//! escape text templates, and each medium escapes values itself.

use serde_json::Value;

/// A template that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mustache error at template offset {offset}: {message}")]
pub struct MustacheError {
    /// Byte offset in the template.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Var(Vec<String>),
    Section {
        path: Vec<String>,
        inverted: bool,
        children: Vec<Node>,
    },
    ToJson(Vec<String>),
    Join(Vec<String>),
}

/// A compiled template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

fn split_path(s: &str) -> Vec<String> {
    let s = s.trim();
    if s == "." {
        return Vec::new();
    }
    s.split('.').map(str::to_owned).collect()
}

impl Template {
    /// Parses a template.
    pub fn parse(src: &str) -> Result<Template, MustacheError> {
        // Open sections: (path, name as written, inverted, outer nodes, offset).
        type Open = (Vec<String>, String, bool, Vec<Node>, usize);
        let mut stack: Vec<Open> = Vec::new();
        let mut cur: Vec<Node> = Vec::new();
        let mut rest = src;
        let mut offset = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                cur.push(Node::Text(rest[..open].to_owned()));
            }
            let tag_start = offset + open;
            let after = &rest[open + 2..];
            let (inner, consumed) = if let Some(stripped) = after.strip_prefix('{') {
                let end = stripped.find("}}}").ok_or_else(|| MustacheError {
                    offset: tag_start,
                    message: "unclosed {{{ tag".into(),
                })?;
                (format!("&{}", &stripped[..end]), open + 3 + end + 3)
            } else {
                let end = after.find("}}").ok_or_else(|| MustacheError {
                    offset: tag_start,
                    message: "unclosed {{ tag".into(),
                })?;
                (after[..end].to_owned(), open + 2 + end + 2)
            };
            let inner = inner.trim();
            match inner.chars().next() {
                Some('!') => {}
                Some('#') | Some('^') => {
                    let name = inner[1..].trim().to_owned();
                    if name.is_empty() {
                        return Err(MustacheError {
                            offset: tag_start,
                            message: "section without a name".into(),
                        });
                    }
                    stack.push((
                        split_path(&name),
                        name,
                        inner.starts_with('^'),
                        std::mem::take(&mut cur),
                        tag_start,
                    ));
                }
                Some('/') => {
                    let name = inner[1..].trim();
                    let Some((path, open_name, inverted, parent, _)) = stack.pop() else {
                        return Err(MustacheError {
                            offset: tag_start,
                            message: format!("closing {{{{/{name}}}}} without an opening tag"),
                        });
                    };
                    if open_name != name {
                        return Err(MustacheError {
                            offset: tag_start,
                            message: format!(
                                "{{{{/{name}}}}} closes {{{{#{open_name}}}}}; sections must nest"
                            ),
                        });
                    }
                    let children = std::mem::replace(&mut cur, parent);
                    let helper_arg = || -> Vec<String> {
                        let text: String = children
                            .iter()
                            .map(|n| match n {
                                Node::Text(t) => t.clone(),
                                _ => String::new(),
                            })
                            .collect();
                        split_path(&text)
                    };
                    cur.push(match (open_name.as_str(), inverted) {
                        ("toJson", false) => Node::ToJson(helper_arg()),
                        ("join", false) => Node::Join(helper_arg()),
                        _ => Node::Section {
                            path,
                            inverted,
                            children,
                        },
                    });
                }
                Some('=') => {
                    return Err(MustacheError {
                        offset: tag_start,
                        message: "changing delimiters is not supported".into(),
                    });
                }
                Some('>') => {
                    return Err(MustacheError {
                        offset: tag_start,
                        message: "partials are not supported".into(),
                    });
                }
                Some('&') => cur.push(Node::Var(split_path(&inner[1..]))),
                Some(_) => cur.push(Node::Var(split_path(inner))),
                None => {
                    return Err(MustacheError {
                        offset: tag_start,
                        message: "empty tag {{}}".into(),
                    });
                }
            }
            offset += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            cur.push(Node::Text(rest.to_owned()));
        }
        if let Some((_, name, _, _, at)) = stack.pop() {
            return Err(MustacheError {
                offset: at,
                message: format!("section {{{{#{name}}}}} is never closed"),
            });
        }
        Ok(Template { nodes: cur })
    }

    /// Renders with `model` as the root context. Output over the limits of
    /// [`try_render`](Self::try_render) is cut there, ending with a note
    /// saying so.
    pub fn render(&self, model: &Value) -> String {
        match self.try_render(model) {
            Ok(s) => s,
            Err(RenderLimit { partial, reason }) => format!("{partial}\n[esalert: {reason}]"),
        }
    }

    /// Renders with `model` as the root context, at most [`OUTPUT_CAP`]
    /// bytes and [`MAX_STEPS`] steps: nested sections over arrays multiply
    /// (`{{#a}}{{#a}}{{#a}}…` over 1,000 items is 10⁹ renders; a real template visits thousands of nodes per hit at most), and neither
    /// time nor memory may follow.
    pub fn try_render(&self, model: &Value) -> Result<String, RenderLimit> {
        self.try_render_escaped(model, |s| s.to_owned())
    }

    /// [`try_render`](Self::try_render) with every value passed through
    /// `esc` (the template's own text is kept), so a response value can't
    /// become markup in Slack mrkdwn or HTML email.
    pub fn try_render_escaped(
        &self,
        model: &Value,
        esc: fn(&str) -> String,
    ) -> Result<String, RenderLimit> {
        let mut out = Out {
            text: String::new(),
            steps: 0,
            esc,
        };
        let mut stack = vec![model];
        match render_nodes(&self.nodes, &mut stack, &mut out) {
            Ok(()) => Ok(out.text),
            Err(reason) => Err(RenderLimit {
                partial: out.text,
                reason,
            }),
        }
    }
}

/// The most text one Mustache template may render to.
pub const OUTPUT_CAP: usize = 1 << 20;

/// The most nodes one render may visit.
pub const MAX_STEPS: u64 = 1_000_000;

/// A render stopped at a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mustache template {reason}")]
pub struct RenderLimit {
    /// What was rendered until then.
    pub partial: String,
    /// Which limit.
    pub reason: String,
}

struct Out {
    text: String,
    steps: u64,
    esc: fn(&str) -> String,
}

impl Out {
    fn push(&mut self, s: &str) -> Result<(), String> {
        if self.text.len().saturating_add(s.len()) > OUTPUT_CAP {
            // Cut on a character boundary, up to the cap.
            let room = OUTPUT_CAP.saturating_sub(self.text.len());
            let cut = (0..=room.min(s.len()))
                .rev()
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            self.text.push_str(&s[..cut]);
            return Err(format!(
                "output cut at {OUTPUT_CAP} bytes (the limit); render less"
            ));
        }
        self.text.push_str(s);
        Ok(())
    }

    fn step(&mut self) -> Result<(), String> {
        self.steps = self.steps.saturating_add(1);
        if self.steps > MAX_STEPS {
            return Err(format!(
                "stopped after {MAX_STEPS} steps (the limit); check nested sections over large arrays"
            ));
        }
        Ok(())
    }
}

fn step<'v>(v: &'v Value, seg: &str) -> Option<&'v Value> {
    match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    }
}

fn lookup<'v>(stack: &[&'v Value], path: &[String]) -> Option<&'v Value> {
    let Some(first) = path.first() else {
        return stack.last().copied();
    };
    // The first segment is looked up from the innermost context outwards.
    let base = stack.iter().rev().find_map(|ctx| step(ctx, first))?;
    let mut cur = base;
    for (i, seg) in path.iter().enumerate().skip(1) {
        cur = match step(cur, seg) {
            Some(v) => v,
            // `hits.total.value` on a numeric total (rest_total_hits_as_int).
            None if seg == "value" && path[i - 1] == "total" && cur.is_number() => cur,
            None => return None,
        };
    }
    Some(cur)
}

/// How a value prints inside text.
pub fn display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => other.to_string(),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn render_nodes(nodes: &[Node], stack: &mut Vec<&Value>, out: &mut Out) -> Result<(), String> {
    for n in nodes {
        out.step()?;
        match n {
            Node::Text(t) => out.push(t)?,
            Node::Var(path) => {
                if let Some(v) = lookup(stack, path) {
                    out.push(&(out.esc)(&display(v)))?;
                }
            }
            Node::ToJson(path) => {
                if let Some(v) = lookup(stack, path) {
                    out.push(&(out.esc)(&v.to_string()))?;
                }
            }
            Node::Join(path) => {
                if let Some(Value::Array(a)) = lookup(stack, path) {
                    out.push(&(out.esc)(
                        &a.iter().map(display).collect::<Vec<_>>().join(","),
                    ))?;
                }
            }
            Node::Section {
                path,
                inverted,
                children,
            } => {
                let v = lookup(stack, path);
                if *inverted {
                    if !truthy(v) {
                        render_nodes(children, stack, out)?;
                    }
                    continue;
                }
                if !truthy(v) {
                    continue;
                }
                match v {
                    Some(Value::Array(items)) => {
                        for item in items {
                            // Each pass counts, even over an empty section.
                            out.step()?;
                            stack.push(item);
                            let r = render_nodes(children, stack, out);
                            stack.pop();
                            r?;
                        }
                    }
                    Some(v) => {
                        stack.push(v);
                        let r = render_nodes(children, stack, out);
                        stack.pop();
                        r?;
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(t: &str, m: Value) -> String {
        Template::parse(t).unwrap().render(&m)
    }

    #[test]
    fn nested_sections_over_big_arrays_stop_at_the_limits() {
        let items: Vec<Value> = (0..1000).map(|i| json!(i)).collect();
        let m = json!({"a": items});
        // 10^12 renders of a line if nothing stopped it.
        let line = "x".repeat(99) + "\n";
        let t = Template::parse(&format!(
            "{{{{#a}}}}{{{{#a}}}}{{{{#a}}}}{{{{#a}}}}{line}{{{{/a}}}}{{{{/a}}}}{{{{/a}}}}{{{{/a}}}}"
        ))
        .unwrap();
        let start = std::time::Instant::now();
        let e = t.try_render(&m).unwrap_err();
        assert!(e.reason.contains("output cut at 1048576 bytes"), "{e}");
        assert_eq!(e.partial.len(), OUTPUT_CAP);
        // Nothing rendered, but 10^12 steps: stopped by the step limit.
        let t = Template::parse("{{#a}}{{#a}}{{#a}}{{#a}}{{/a}}{{/a}}{{/a}}{{/a}}").unwrap();
        let e = t.try_render(&m).unwrap_err();
        assert!(e.reason.contains("steps (the limit)"), "{e}");
        assert!(start.elapsed() < std::time::Duration::from_secs(30));
        // `render` keeps what fits and says it was cut.
        let t =
            Template::parse(&format!("{{{{#a}}}}{{{{#a}}}}{line}{{{{/a}}}}{{{{/a}}}}")).unwrap();
        let out = t.render(&m);
        assert!(
            out.ends_with("(the limit); render less]"),
            "{}",
            &out[out.len() - 80..]
        );
    }

    #[test]
    fn watcher_cases() {
        let m = json!({"ctx": {"watch_id": "w", "payload": {"hits": {"total": 3, "hits": [
            {"_id": "4", "_source": {"m": "a"}}, {"_id": "1"}, {"_id": "3"}]},
            "empty": [], "flag": false, "map": {"k": "v"}, "n": 2.5, "i": 7}}});
        assert_eq!(
            r(
                "{{ctx.payload.hits.total}} Errors:{{#ctx.payload.hits.hits}}{{_id}}:{{/ctx.payload.hits.hits}}",
                m.clone()
            ),
            "3 Errors:4:1:3:"
        );
        assert_eq!(
            r(
                "{{ctx.payload.hits.hits.0._id}}/{{ctx.payload.hits.hits.2._id}}",
                m.clone()
            ),
            "4/3"
        );
        assert_eq!(r("{{ctx.payload.hits.total.value}}", m.clone()), "3");
        assert_eq!(
            r(
                "[{{ctx.payload.missing}}][{{ctx.payload.hits.hits.9._id}}]",
                m.clone()
            ),
            "[][]"
        );
        assert_eq!(
            r(
                "{{^ctx.payload.empty}}none{{/ctx.payload.empty}}",
                m.clone()
            ),
            "none"
        );
        assert_eq!(
            r(
                "{{^ctx.payload.flag}}off{{/ctx.payload.flag}}{{#ctx.payload.flag}}on{{/ctx.payload.flag}}",
                m.clone()
            ),
            "off"
        );
        assert_eq!(
            r("{{#ctx.payload.map}}{{k}}{{/ctx.payload.map}}", m.clone()),
            "v"
        );
        // Outer names stay visible inside a section.
        assert_eq!(
            r(
                "{{#ctx.payload.hits.hits}}{{ctx.watch_id}}{{/ctx.payload.hits.hits}}",
                m.clone()
            ),
            "www"
        );
        assert_eq!(
            r("{{#toJson}}ctx.payload.map{{/toJson}}", m.clone()),
            r#"{"k":"v"}"#
        );
        assert_eq!(
            r(
                "{{#join}}ctx.payload.list{{/join}}",
                json!({"ctx": {"payload": {"list": [1, "b"]}}})
            ),
            "1,b"
        );
        assert_eq!(
            r(
                "{{ctx.payload.n}} {{ctx.payload.i}} {{{ctx.watch_id}}} {{&ctx.watch_id}}",
                m.clone()
            ),
            "2.5 7 w w"
        );
        assert_eq!(r("a{{! a comment }}b", m.clone()), "ab");
        assert_eq!(
            r(
                "{{#ctx.payload.hits.hits}}{{.}}{{/ctx.payload.hits.hits}}",
                json!({"ctx": {"payload": {"hits": {"hits": [1, 2]}}}})
            ),
            "12"
        );
    }

    #[test]
    fn syntax_errors() {
        assert!(
            Template::parse("{{#a}}x")
                .unwrap_err()
                .message
                .contains("never closed")
        );
        assert!(
            Template::parse("{{#a}}x{{/b}}")
                .unwrap_err()
                .message
                .contains("must nest")
        );
        assert!(Template::parse("{{/a}}").is_err());
        assert!(Template::parse("{{a").is_err());
        assert!(Template::parse("{{> partial}}").is_err());
    }
}
