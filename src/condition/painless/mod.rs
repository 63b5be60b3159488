//! A sandboxed Painless interpreter, for the scripts in Watcher watches
//! (conditions, transforms, action conditions) and for native alerts'
//! `{"painless": "…"}` conditions.
//!
//! Lexer ([`lexer`]), parser to a syntax tree ([`parser`], [`ast`]), and a
//! tree-walking evaluator ([`eval`]) over Java-like values ([`value`]) with
//! the part of the Java library watches use ([`builtins`], [`streams`],
//! [`time`]). Semantics follow Painless: `int`/`long`/`double` arithmetic
//! with truncating division and wrapping overflow, `def` typing, Java's
//! number formatting in string concatenation, `==` as `equals`, null-safe
//! access. The sandbox has no I/O, reflection or class loading (nothing
//! outside the listed library parses), and bounds loop iterations, calls,
//! call depth, string, collection and memory sizes: exceeding any is an
//! error of that run, never a hang.

pub mod ast;
pub mod builtins;
pub mod cow;
pub mod eval;
pub mod fast;
pub mod fused;
pub mod lexer;
pub mod parser;
pub mod stored;
pub mod streams;
pub mod time;
pub mod value;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

pub use eval::Limits;
use value::{Key, MapObj, Order, V};

/// Errors of compiling or running a Painless script.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PainlessError {
    /// The script does not parse.
    #[error("Painless syntax error at line {line}, column {column}: {reason}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// The script uses something esalert's Painless does not have.
    #[error("`{construct}` is not supported (line {line}, column {column})")]
    Unsupported {
        /// The construct, as written.
        construct: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A Java exception while the script ran.
    #[error("Painless {exception} at line {line}, column {column}: {message}")]
    Runtime {
        /// The Java class, e.g. `NullPointerException`.
        exception: String,
        /// Its message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A sandbox limit was hit.
    #[error("Painless script stopped at line {line}, column {column}: {message}")]
    Limit {
        /// Which limit.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// The result is not what the caller needs (a condition's boolean).
    #[error("{0}")]
    BadResult(String),
}

fn line_col(src: &str, at: u32) -> (usize, usize) {
    let at = (at as usize).min(src.len());
    let mut at = at;
    while !src.is_char_boundary(at) {
        at -= 1;
    }
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before, |i| &before[i + 1..])
        .chars()
        .count()
        + 1;
    (line, column)
}

impl PainlessError {
    /// A syntax error at byte offset `at`.
    pub fn syntax(src: &str, at: u32, reason: impl Into<String>) -> Self {
        let (line, column) = line_col(src, at);
        PainlessError::Syntax {
            line,
            column,
            reason: reason.into(),
        }
    }

    /// An unsupported construct at byte offset `at`.
    pub fn unsupported(src: &str, at: u32, construct: String) -> Self {
        let (line, column) = line_col(src, at);
        PainlessError::Unsupported {
            construct,
            line,
            column,
        }
    }

    /// The error's class as Elasticsearch reports it: `null_pointer_exception`,
    /// …; `compile` for syntax and unsupported constructs, `limit` for the
    /// sandbox's bounds.
    pub fn class(&self) -> String {
        match self {
            PainlessError::Syntax { .. } | PainlessError::Unsupported { .. } => "compile".into(),
            PainlessError::Limit { .. } => "limit".into(),
            PainlessError::BadResult(_) => "bad_result".into(),
            PainlessError::Runtime { exception, .. } => snake(exception),
        }
    }
}

/// `NullPointerException` → `null_pointer_exception`.
pub fn snake(class: &str) -> String {
    let mut out = String::new();
    for (i, c) in class.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A compiled script; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Script {
    prog: Arc<ast::Program>,
}

/// Compiles a script, reporting syntax errors and unsupported constructs
/// with their line and column.
pub fn compile(src: &str) -> Result<Script, PainlessError> {
    Ok(Script {
        prog: Arc::new(parser::parse(src)?),
    })
}

/// The times of a watch run, visible as `ZonedDateTime`s in `ctx`.
#[derive(Debug, Clone, Copy)]
pub struct Times {
    /// `ctx.execution_time`.
    pub execution: DateTime<Utc>,
    /// `ctx.trigger.triggered_time`.
    pub triggered: DateTime<Utc>,
    /// `ctx.trigger.scheduled_time`.
    pub scheduled: DateTime<Utc>,
}

/// What a script runs with.
#[derive(Debug, Clone, Copy)]
pub struct Env<'v> {
    /// `ctx.payload`.
    pub payload: &'v Value,
    /// The rest of `ctx`: an object (`metadata`, `vars`, `watch_id`, …).
    pub ctx: &'v Value,
    /// `params` (an object, or null for none).
    pub params: &'v Value,
    /// The run's times, replacing `ctx.execution_time` and `ctx.trigger`.
    pub times: Option<Times>,
}

/// What a run gives back.
#[derive(Debug, Clone)]
pub struct Output {
    /// The result as JSON.
    pub result: Value,
    /// The result's Java `toString`.
    pub java: String,
    /// Whether the result is a map (a transform's new payload).
    pub is_map: bool,
    /// The result when it is a boolean.
    pub boolean: Option<bool>,
    /// `ctx` after the run, when the script can change it; a map or list
    /// it left as the input had it may be left out (it is unchanged).
    pub ctx: Option<Value>,
}

impl Script {
    /// Whether the script can change `ctx` (assigns fields, calls mutating methods).
    pub fn mutates(&self) -> bool {
        self.prog.mutates
    }

    /// Runs the script within `limits`.
    pub fn run(&self, env: Env<'_>, limits: Limits) -> Result<Output, PainlessError> {
        let budget = crate::alloc_budget::Budget::open(limits.max_memory);
        let r = self.run_inner(env, limits);
        drop(budget);
        r
    }

    fn run_inner(&self, env: Env<'_>, limits: Limits) -> Result<Output, PainlessError> {
        let r = if self.prog.mutates && !self.prog.cow {
            self.run_mode(env, limits, true)
        } else {
            match self.run_mode(env, limits, false) {
                // It wrote into input read in place: again, on a copy.
                Err(e) if e.input => self.run_mode(env, limits, true),
                r => r,
            }
        };
        r.map_err(|e| self.error(e))
    }

    /// One run: on the script's own deep copy of the input (`owned`), or
    /// reading it in place and copying what is written ([`cow`]).
    fn run_mode(&self, env: Env<'_>, limits: Limits, owned: bool) -> Result<Output, eval::Ex> {
        fn conv(v: &Value, owned: bool) -> V<'_> {
            if owned {
                V::from_json_owned(v)
            } else {
                V::from_json(v)
            }
        }
        let mut ctx = MapObj::new(Order::Hash);
        if let Value::Object(m) = env.ctx {
            for (k, v) in m {
                ctx.m.insert(Key::Str(k.as_str().into()), conv(v, owned));
            }
        }
        ctx.m
            .insert(Key::Str("payload".into()), conv(env.payload, owned));
        if let Some(t) = env.times {
            let z = |d| V::Time(std::rc::Rc::new(time::TimeV::zoned_utc(d)));
            ctx.m
                .insert(Key::Str("execution_time".into()), z(t.execution));
            let mut trig = MapObj::new(Order::Hash);
            trig.m
                .insert(Key::Str("triggered_time".into()), z(t.triggered));
            trig.m
                .insert(Key::Str("scheduled_time".into()), z(t.scheduled));
            ctx.m.insert(Key::Str("trigger".into()), V::map(trig));
        }
        let params = match env.params {
            Value::Null => V::map(MapObj::new(Order::Hash)),
            p => conv(p, owned),
        };
        let mut it = eval::Interp::new(&self.prog, V::map(ctx), params, limits);
        let inputs = eval::Inputs {
            ctx: env.ctx.as_object(),
            payload: env.payload,
        };
        if !owned {
            it.copy_on_write(inputs);
        }
        let out = it.run()?;
        let java = out.java_string();
        Ok(Output {
            result: out.to_json(),
            java,
            is_map: matches!(out, V::Map(_) | V::JMap(_)),
            boolean: match out {
                V::Bool(b) => Some(b),
                _ => None,
            },
            ctx: self.prog.mutates.then(|| ctx_json(it.ctx(), inputs)),
        })
    }

    fn error(&self, e: eval::Ex) -> PainlessError {
        let (line, column) = line_col(&self.prog.src, e.at.map_or(0, |(a, _)| a));
        let snippet =
            e.at.and_then(|(a, b)| self.prog.src.get(a as usize..b as usize))
                .map(|s| {
                    let s: String = s.chars().take(80).collect();
                    format!(" (in `{s}`)")
                })
                .unwrap_or_default();
        if e.limit {
            PainlessError::Limit {
                message: e.msg,
                line,
                column,
            }
        } else {
            PainlessError::Runtime {
                exception: e.class.into_owned(),
                message: format!("{}{snippet}", e.msg),
                line,
                column,
            }
        }
    }
}

/// `ctx` as JSON, without the maps and lists still read in place from the
/// input (copying an unchanged payload back would cost what copy-on-write saves).
fn ctx_json(ctx: &V<'_>, inputs: eval::Inputs<'_>) -> Value {
    let V::Map(m) = ctx else {
        return ctx.to_json();
    };
    let unchanged = |k: &Key, v: &V<'_>| {
        let Key::Str(k) = k else {
            return false;
        };
        let orig = if &**k == "payload" {
            Some(inputs.payload)
        } else {
            inputs.ctx.and_then(|c| c.get(&**k))
        };
        match (v, orig) {
            (V::JMap(a), Some(Value::Object(b))) => std::ptr::eq(*a, b),
            (V::JList(a), Some(Value::Array(b))) => {
                std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
            }
            _ => false,
        }
    };
    let m = m.borrow();
    Value::Object(
        m.m.iter()
            .filter(|(k, v)| !unchanged(k, v))
            .map(|(k, v)| (k.to_value().java_string(), v.to_json()))
            .collect(),
    )
}

/// A watch's `ctx` but its payload, as JSON, for [`Env::ctx`].
pub fn watch_ctx(watch_id: &str, metadata: &Value, vars: &Value) -> Value {
    let mut m = Map::new();
    m.insert("watch_id".into(), Value::String(watch_id.to_owned()));
    m.insert("metadata".into(), metadata.clone());
    m.insert("vars".into(), vars.clone());
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str) -> Result<String, PainlessError> {
        let payload = json!({"hits": {"total": 3}});
        let ctx = json!({"vars": {}});
        compile(src)?
            .run(
                Env {
                    payload: &payload,
                    ctx: &ctx,
                    params: &Value::Null,
                    times: None,
                },
                Limits::default(),
            )
            .map(|o| o.java)
    }

    fn limit(src: &str) -> String {
        match run(src) {
            Err(PainlessError::Limit { message, .. }) => message,
            other => panic!("{src}: expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn bounds_stop_runaway_scripts_with_an_error() {
        assert!(limit("int i = 0; while (true) { i++ } return i;").contains("loop"));
        assert!(limit("int f(int n) { return f(n + 1); } f(0)").contains("deep"));
        assert!(limit("def s = 'x'; while (true) { s = s + s; } s").contains("string"));
        assert!(
            limit("def l = []; for (int i = 0; i < 999999; i++) { l.add(i); } l.size()")
                .contains("elements")
        );
        // Nested streams are bounded although no loop is written.
        assert!(
            limit("def l = new ArrayList(); for (int i = 0; i < 5000; i++) { l.add(i); } l.stream().mapToLong(a -> l.stream().filter(b -> b > a).count()).sum()")
                .contains("calls")
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(matches!(run(&deep), Err(PainlessError::Syntax { .. })));
        let ok = format!("{}1{}", "(".repeat(20), ")".repeat(20));
        assert_eq!(run(&ok).unwrap(), "1");
        let lists = format!("{}1{}", "[".repeat(3000), "]".repeat(3000));
        assert!(run(&lists).is_err());
    }

    #[test]
    fn lists_that_hold_themselves_stay_bounded() {
        let out =
            run("def l = []; l.add(l); l.add(l); l.toString().length() > 0 && l == l").unwrap();
        assert_eq!(out, "true");
    }

    #[test]
    fn unsupported_constructs_are_named_with_their_position() {
        let e =
            compile("def x = 1;\nreturn x.stream()\n  .collect(Collectors.groupingBy(h -> h));")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "`Collectors.groupingBy` is not supported (line 3, column 12)"
        );
        let e = compile("new java.io.File('x')").unwrap_err();
        assert!(e.to_string().contains("is not supported"), "{e}");
        let e = compile("Runtime.getRuntime().exec('ls')").unwrap_err();
        assert!(
            e.to_string().starts_with("`Runtime` is not supported"),
            "{e}"
        );
        let e = compile("def x = 1; x.getClass()").unwrap_err();
        assert!(
            e.to_string()
                .contains("`getClass()` is not supported (line 1, column 14)"),
            "{e}"
        );
    }

    /// Runs `src` copying on write and on a deep copy: same result, same
    /// error, same `ctx` (but for what copy-on-write leaves out as unchanged).
    fn cow_vs_copy(src: &str) -> (bool, String) {
        let payload = json!({"hits": {"total": 3, "hits": [{"_id": "a", "_source": {"n": 1}}, {"_id": "b", "_source": {"n": 2}}]},
            "aggregations": {"h": {"buckets": [{"key": "x", "v": 5}, {"key": "y", "v": 50}]}}});
        let ctx = json!({"vars": {"old": 1}, "metadata": {"m": [1]}});
        let env = Env {
            payload: &payload,
            ctx: &ctx,
            params: &Value::Null,
            times: None,
        };
        let script = compile(src).unwrap();
        let shared = script.run_mode(env, Limits::default(), false);
        let copy = script.run_mode(env, Limits::default(), true);
        let show = |r: &Result<Output, eval::Ex>| match r {
            Ok(o) => o.java.clone(),
            Err(e) => format!("error {} {}", e.class, e.msg),
        };
        // What the script ends up with, through the path it would take.
        let (java, restarted) = match &shared {
            Err(e) if e.input => (show(&copy), true),
            r => (show(r), false),
        };
        assert_eq!(java, show(&copy), "{src}");
        if let (Ok(a), Ok(b), false) = (&shared, &copy, restarted) {
            let (Some(Value::Object(a)), Some(Value::Object(b))) = (&a.ctx, &b.ctx) else {
                panic!("{src}: no ctx");
            };
            for (k, v) in b {
                let given = if k == "payload" {
                    Some(&payload)
                } else {
                    ctx.get(k)
                };
                assert_eq!(a.get(k).or(given), Some(v), "{src}: ctx.{k}");
            }
        }
        (restarted, java)
    }

    #[test]
    fn copy_on_write_gives_what_a_deep_copy_gives() {
        for (src, restarts, want) in [
            (
                "def hot = ctx.payload.aggregations.h.buckets.stream().filter(b -> b.v > 10).map(b -> b.key).collect(Collectors.toList()); ctx.vars.hot = hot; return hot.size() > 0",
                false,
                "true",
            ),
            (
                "ctx.payload.hits.hits[1]._source.n = 7; return ctx.payload",
                false,
                "",
            ),
            (
                "ctx.vars.l = []; for (def h : ctx.payload.hits.hits) { ctx.vars.l.add(h._id) } return ctx.vars",
                false,
                "{old=1, l=[a, b]}",
            ),
            ("ctx.metadata.m.add(2); ctx.metadata.m", false, "[1, 2]"),
            (
                "ctx.vars.old++; ctx.vars.old += 2; ctx.vars.old",
                false,
                "4",
            ),
            (
                "ctx.payload.hits.remove('hits'); ctx.payload.hits",
                false,
                "{total=3}",
            ),
            (
                "def p = ctx.payload; p.x = 1; return ctx.payload.x",
                true,
                "1",
            ),
            (
                "def h = ctx.payload.hits.hits[0]; h._source.n = 9; ctx.payload.hits.hits[0]._source.n",
                true,
                "9",
            ),
            (
                "ctx.payload.hits.hits.stream().forEach(h -> h.seen = true); ctx.payload.hits.hits[1].seen",
                true,
                "true",
            ),
            (
                "ctx.vars.b = ctx.payload.aggregations.h.buckets[0]; ctx.vars.b.v = 0; ctx.payload.aggregations.h.buckets[0].v",
                true,
                "0",
            ),
            (
                "try { ctx.payload.hits.hits.add(3); } catch (Exception e) { return 'caught' } ctx.payload.hits.hits.size()",
                false,
                "3",
            ),
            (
                "def l = ctx.payload.hits.hits; try { l.add(3); } catch (Exception e) { return 'caught' } ctx.payload.hits.hits.size()",
                true,
                "3",
            ),
            (
                "ctx.payload.hits.nope.x = 1",
                false,
                "error NullPointerException cannot set `x`: `ctx.payload.hits.nope` is null",
            ),
        ] {
            let (restarted, java) = cow_vs_copy(src);
            assert_eq!(restarted, restarts, "{src}");
            if !want.is_empty() {
                assert_eq!(java, want, "{src}");
            }
        }
        // Keeping what a write copies would miss the write through the
        // copy, so such a script gets a deep copy from the start.
        let src = "def v = ctx.vars; ctx.vars.x = 5; return v.x";
        let s = compile(src).unwrap();
        assert!(s.prog.mutates && !s.prog.cow);
        assert_eq!(run(src).unwrap(), "5");
    }

    #[test]
    fn comparing_null_is_a_null_pointer_exception_at_its_position() {
        for src in [
            "def x = null; return x > 1",
            "return 1 <= ctx.payload.missing",
            "if (ctx.payload.missing > 1) { return true } return false",
            "return ctx.payload.hits.missing >= 0.5",
        ] {
            let e = run(src).unwrap_err();
            assert_eq!(e.class(), "null_pointer_exception", "{src}: {e}");
            assert!(e.to_string().contains("line 1, column"), "{e}");
        }
        let e = run("return 'a' > 1").unwrap_err();
        assert_eq!(e.class(), "class_cast_exception");
    }

    #[test]
    fn null_dereference_names_the_expression() {
        let e = run("def m = ctx.payload.hits;\nreturn m.missing.size();").unwrap_err();
        assert_eq!(e.class(), "null_pointer_exception");
        let s = e.to_string();
        assert!(
            s.contains("line 2, column 8") && s.contains("`m.missing` is null"),
            "{s}"
        );
    }
}
