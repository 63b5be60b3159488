//! A fast path for the expressions that conditions and stream lambdas are
//! mostly made of: reading fields of the input, number literals,
//! arithmetic, comparisons and Boolean logic.
//!
//! It works on [`Fv`], a copyable view of a value (a number, or JSON of the
//! input borrowed in place), so a lambda such as
//! `b -> b.errors.doc_count * 100.0 / b.doc_count > params.pct` runs without
//! reference counting, drops or the general evaluator's large results.
//! It only reads and never throws: whenever it meets anything else (a
//! method call, a value the script made, a null dereference, an arithmetic
//! error) it gives up, and the general evaluator runs the expression again
//! from the start, with its exact semantics and error messages. Giving up
//! is therefore always correct, and succeeding must give exactly what the
//! general evaluator would.

use serde_json::{Map, Value};

use super::ast::{BinOp, Expr, ExprKind, Lit, Stmt, Sym, UnOp};
use super::builtins;
use super::eval::{Interp, N};
use super::value::{LambdaCl, V};

/// A value the fast path can hold: copyable, nothing owned, and two words
/// (thin references only), so that it is returned in registers.
#[derive(Debug, Clone, Copy)]
pub enum Fv<'a> {
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// An int.
    Int(i32),
    /// A long.
    Long(i64),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// A string of the input.
    Str(&'a String),
    /// A list of the input.
    List(&'a Vec<Value>),
    /// A map of the input.
    Map(&'a Map<String, Value>),
}

impl<'a> Fv<'a> {
    /// The view of `v`, if it is a number or a map of the input (strings
    /// and lists of the input are held as slices, which do not fit).
    pub fn of(v: &V<'a>) -> Option<Fv<'a>> {
        Some(match v {
            V::Null => Fv::Null,
            V::Bool(b) => Fv::Bool(*b),
            V::Int(i) => Fv::Int(*i),
            V::Long(l) => Fv::Long(*l),
            V::Float(f) => Fv::Float(*f),
            V::Double(d) => Fv::Double(*d),
            V::JMap(m) => Fv::Map(m),
            _ => return None,
        })
    }

    /// The view of a JSON value of the input.
    #[inline(always)]
    pub fn json(v: &'a Value) -> Fv<'a> {
        match v {
            Value::Null => Fv::Null,
            Value::Bool(b) => Fv::Bool(*b),
            Value::String(s) => Fv::Str(s),
            Value::Array(a) => Fv::List(a),
            Value::Object(m) => Fv::Map(m),
            // Numbers as the general evaluator reads them (`value::number`).
            Value::Number(n) => match n.as_i64() {
                Some(i) => match i32::try_from(i) {
                    Ok(x) => Fv::Int(x),
                    Err(_) => Fv::Long(i),
                },
                None => Fv::Double(n.as_f64().unwrap_or(f64::NAN)),
            },
        }
    }

    /// Back to a value.
    pub fn v(self) -> V<'a> {
        match self {
            Fv::Null => V::Null,
            Fv::Bool(b) => V::Bool(b),
            Fv::Int(i) => V::Int(i),
            Fv::Long(l) => V::Long(l),
            Fv::Float(f) => V::Float(f),
            Fv::Double(d) => V::Double(d),
            Fv::Str(s) => V::JStr(s.as_str()),
            Fv::List(l) => V::JList(l.as_slice()),
            Fv::Map(m) => V::JMap(m),
        }
    }

    /// The number, if this is one.
    #[inline(always)]
    pub fn n(self) -> Option<N> {
        Some(match self {
            Fv::Int(i) => N::I(i),
            Fv::Long(l) => N::L(l),
            Fv::Float(f) => N::F(f),
            Fv::Double(d) => N::D(d),
            _ => return None,
        })
    }
}

/// Whether a lambda's body is a single expression of the kinds [`fast`]
/// knows, decided once when the script is parsed.
pub fn shape(body: &[Stmt]) -> bool {
    match body {
        [Stmt::Return(Some(e))] => expr_shape(e, 0),
        _ => false,
    }
}

fn expr_shape(e: &Expr, depth: usize) -> bool {
    if depth > 64 {
        return false;
    }
    let d = depth + 1;
    match &e.kind {
        ExprKind::Lit(l) => !matches!(l, Lit::Str(_)),
        ExprKind::Var(_) => true,
        ExprKind::Field { obj, .. } => expr_shape(obj, d),
        ExprKind::Index { obj, index } => expr_shape(obj, d) && index_shape(index),
        ExprKind::Binary(op, a, b) => {
            let str_eq = matches!(op, BinOp::Eq | BinOp::Ne)
                && matches!(&b.kind, ExprKind::Lit(Lit::Str(_)));
            expr_shape(a, d) && (str_eq || expr_shape(b, d))
        }
        ExprKind::And(a, b) | ExprKind::Or(a, b) | ExprKind::Elvis(a, b) => {
            expr_shape(a, d) && expr_shape(b, d)
        }
        ExprKind::Cond(c, a, b) => expr_shape(c, d) && expr_shape(a, d) && expr_shape(b, d),
        ExprKind::Unary(UnOp::Not | UnOp::Neg, x) => expr_shape(x, d),
        _ => false,
    }
}

fn index_shape(i: &Expr) -> bool {
    matches!(&i.kind, ExprKind::Lit(Lit::Str(_) | Lit::Int(_)))
}

/// Where the fast path finds variables.
#[derive(Clone, Copy)]
pub enum Scope<'s, 'a> {
    /// The interpreter's current frame.
    Frame,
    /// A lambda's parameters and captured locals, which the general
    /// evaluator would push as a new frame.
    Lambda {
        /// Parameter names.
        params: &'s [Sym],
        /// Their values.
        args: &'s [V<'a>],
        /// The captured locals.
        captured: &'s [(Sym, V<'a>)],
    },
    /// A lambda run in place by a fused stream pipeline
    /// ([`super::fused`]): its parameter, then the locals it would capture,
    /// which are the current frame's.
    Inline {
        /// The parameter's name.
        param: Sym,
        /// Its value.
        arg: Fv<'a>,
    },
}

/// A variable as the fast path finds it.
enum Found<'s, 'a> {
    V(&'s V<'a>),
    F(Fv<'a>),
}

fn resolve<'s, 'a>(it: &'s Interp<'_, 'a>, sc: &Scope<'s, 'a>, s: Sym) -> Option<Found<'s, 'a>> {
    match *sc {
        Scope::Frame => it.local(s).map(Found::V),
        Scope::Inline { param, arg } if param == s => Some(Found::F(arg)),
        Scope::Inline { .. } => it.local(s).map(Found::V),
        Scope::Lambda {
            params,
            args,
            captured,
        } => {
            // As the frame would be: captured locals, then the parameters,
            // searched from the end.
            if let Some(i) = params.iter().rposition(|p| *p == s) {
                return args.get(i).map(Found::V);
            }
            match captured.iter().rposition(|(c, _)| *c == s) {
                Some(i) => captured.get(i).map(|(_, v)| Found::V(v)),
                None => it.global(s).map(Found::V),
            }
        }
    }
}

/// Calls a lambda whose body has the fast path's [`shape`], without a
/// frame; `None` to leave it to the general evaluator.
pub fn lambda<'a>(it: &Interp<'_, 'a>, cl: &LambdaCl<'a>, args: &[V<'a>]) -> Option<Fv<'a>> {
    let [Stmt::Return(Some(e))] = cl.def.body.as_slice() else {
        return None;
    };
    let sc = Scope::Lambda {
        params: &cl.def.params,
        args,
        captured: &cl.captured,
    };
    fast(it, &sc, e)
}

/// Evaluates `e` on the fast path, or `None` to leave it to the general
/// evaluator.
pub fn fast<'a>(it: &Interp<'_, 'a>, sc: &Scope<'_, 'a>, e: &Expr) -> Option<Fv<'a>> {
    match &e.kind {
        ExprKind::Var(s) => match resolve(it, sc, *s)? {
            Found::V(v) => Fv::of(v),
            Found::F(f) => Some(f),
        },
        ExprKind::Lit(l) => Some(match l {
            Lit::Null => Fv::Null,
            Lit::Bool(b) => Fv::Bool(*b),
            Lit::Int(i) => Fv::Int(*i),
            Lit::Long(l) => Fv::Long(*l),
            Lit::Float(f) => Fv::Float(*f),
            Lit::Double(d) => Fv::Double(*d),
            Lit::Str(_) => return None,
        }),
        ExprKind::Field { .. } => fields(it, sc, e),
        ExprKind::Index { obj, index } => {
            let o = fast(it, sc, obj)?;
            match (o, &index.kind) {
                (Fv::Map(m), ExprKind::Lit(Lit::Str(k))) => {
                    Some(get(it, m, k, std::ptr::from_ref(e) as usize))
                }
                (Fv::List(l), ExprKind::Lit(Lit::Int(i))) => {
                    let i = usize::try_from(*i).ok()?;
                    l.get(i).map(Fv::json)
                }
                _ => None,
            }
        }
        ExprKind::Binary(op, a, b) => {
            let x = fast(it, sc, a)?;
            if let (BinOp::Eq | BinOp::Ne, ExprKind::Lit(Lit::Str(s))) = (op, &b.kind) {
                // `equals` of a string: only an equal string is.
                let eq = matches!(x, Fv::Str(t) if t.as_str() == &**s);
                return Some(Fv::Bool(eq == (*op == BinOp::Eq)));
            }
            let y = fast(it, sc, b)?;
            binary(*op, x, y)
        }
        ExprKind::And(a, b) | ExprKind::Or(a, b) => {
            // Short-circuits on false for `&&`, on true for `||`.
            let or = matches!(e.kind, ExprKind::Or(..));
            match fast(it, sc, a)? {
                Fv::Bool(x) if x == or => Some(Fv::Bool(x)),
                Fv::Bool(_) => match fast(it, sc, b)? {
                    r @ Fv::Bool(_) => Some(r),
                    _ => None,
                },
                _ => None,
            }
        }
        ExprKind::Elvis(a, b) => match fast(it, sc, a)? {
            Fv::Null => fast(it, sc, b),
            v => Some(v),
        },
        ExprKind::Cond(c, a, b) => match fast(it, sc, c)? {
            Fv::Bool(true) => fast(it, sc, a),
            Fv::Bool(false) => fast(it, sc, b),
            _ => None,
        },
        ExprKind::Unary(UnOp::Not, x) => match fast(it, sc, x)? {
            Fv::Bool(b) => Some(Fv::Bool(!b)),
            _ => None,
        },
        ExprKind::Unary(UnOp::Neg, x) => Some(match fast(it, sc, x)? {
            Fv::Int(i) => Fv::Int(i.wrapping_neg()),
            Fv::Long(l) => Fv::Long(l.wrapping_neg()),
            Fv::Float(f) => Fv::Float(-f),
            Fv::Double(d) => Fv::Double(-d),
            _ => return None,
        }),
        _ => None,
    }
}

/// A chain of field reads, `b.errors.doc_count`, in one loop.
fn fields<'a>(it: &Interp<'_, 'a>, sc: &Scope<'_, 'a>, e: &Expr) -> Option<Fv<'a>> {
    // Each read's name, `?.`, and its node's address (its key-position hint).
    let mut names: [(&str, bool, usize); 8] = [("", false, 0); 8];
    let mut n = 0;
    let mut base = e;
    while let ExprKind::Field {
        obj,
        name,
        null_safe,
    } = &base.kind
    {
        let Some(slot) = names.get_mut(n) else {
            break;
        };
        *slot = (name, *null_safe, std::ptr::from_ref(base) as usize);
        n += 1;
        base = obj;
    }
    let mut o = match &base.kind {
        ExprKind::Var(s) => match resolve(it, sc, *s)? {
            Found::F(f) => f,
            // `ctx` is the script's own map: its first field is read
            // without holding a borrow.
            Found::V(V::Map(m)) => {
                n = n.checked_sub(1)?;
                let (name, _, _) = *names.get(n)?;
                let m = m.try_borrow().ok()?;
                if name == "empty" {
                    Fv::Bool(m.m.is_empty())
                } else {
                    match m.m.get(&super::value::Key::Str(std::rc::Rc::from(name))) {
                        Some(v) => Fv::of(v)?,
                        None => Fv::Null,
                    }
                }
            }
            Found::V(v) => Fv::of(v)?,
        },
        _ => fast(it, sc, base)?,
    };
    for &(name, null_safe, site) in names.get(..n)?.iter().rev() {
        o = match o {
            Fv::Map(m) if name == "empty" => Fv::Bool(m.is_empty()),
            Fv::Map(m) => get(it, m, name, site),
            Fv::Null if null_safe => Fv::Null,
            _ => return None,
        };
    }
    Some(o)
}

/// `m.name` on a map of the input.
#[inline(always)]
fn get<'a>(it: &Interp<'_, 'a>, m: &'a Map<String, Value>, name: &str, site: usize) -> Fv<'a> {
    match it.hints.get(m, name, site) {
        Some(v) => Fv::json(v),
        None => Fv::Null,
    }
}

#[inline]
fn binary<'a>(op: BinOp, x: Fv<'a>, y: Fv<'a>) -> Option<Fv<'a>> {
    if let (Some(p), Some(q)) = (x.n(), y.n()) {
        return numbers(op, p, q);
    }
    match op {
        // No strings are made here, and `==` of the input's values
        // allocates nothing.
        BinOp::Eq | BinOp::Ne => {
            let eq = builtins::painless_eq(&x.v(), &y.v());
            Some(Fv::Bool(eq == (op == BinOp::Eq)))
        }
        BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor => match (x, y) {
            (Fv::Bool(a), Fv::Bool(b)) => Some(Fv::Bool(match op {
                BinOp::BitAnd => a & b,
                BinOp::BitOr => a | b,
                _ => a ^ b,
            })),
            _ => None,
        },
        _ => None,
    }
}

/// [`super::eval::binary`] on two numbers, without its error results:
/// Java's promotion, wrapping integer arithmetic, `float` rounding; `None`
/// where Java would throw (division by zero) or for shifts.
#[inline]
fn numbers<'a>(op: BinOp, a: N, b: N) -> Option<Fv<'a>> {
    let cmp = |o: std::cmp::Ordering| {
        use std::cmp::Ordering::*;
        Some(Fv::Bool(match op {
            BinOp::Eq => o == Equal,
            BinOp::Ne => o != Equal,
            BinOp::Lt => o == Less,
            BinOp::Le => o != Greater,
            BinOp::Gt => o == Greater,
            _ => o != Less,
        }))
    };
    let fcmp = |x: f64, y: f64| {
        Some(Fv::Bool(match op {
            BinOp::Eq => x == y,
            BinOp::Ne => x != y,
            BinOp::Lt => x < y,
            BinOp::Le => x <= y,
            BinOp::Gt => x > y,
            _ => x >= y,
        }))
    };
    let integral = matches!((a, b), (N::I(_) | N::L(_), N::I(_) | N::L(_)));
    match op {
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            return if integral {
                cmp(a.i64().cmp(&b.i64()))
            } else {
                fcmp(a.f64(), b.f64())
            };
        }
        BinOp::Add
        | BinOp::Sub
        | BinOp::Mul
        | BinOp::Div
        | BinOp::Rem
        | BinOp::BitAnd
        | BinOp::BitOr
        | BinOp::BitXor => {}
        _ => return None,
    }
    Some(match (a, b) {
        _ if integral => {
            // In 64 bits, then cut to 32 for two ints: the same as Java's
            // wrapping `int` arithmetic (no i32 sum, product or quotient
            // overflows an i64).
            let (x, y) = (a.i64(), b.i64());
            let r = match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div if y != 0 => x.wrapping_div(y),
                BinOp::Rem if y != 0 => x.wrapping_rem(y),
                BinOp::BitAnd => x & y,
                BinOp::BitOr => x | y,
                BinOp::BitXor => x ^ y,
                _ => return None,
            };
            match (a, b) {
                (N::I(_), N::I(_)) => Fv::Int(r as i32),
                _ => Fv::Long(r),
            }
        }
        (N::D(_), _) | (_, N::D(_)) => {
            let (x, y) = (a.f64(), b.f64());
            Fv::Double(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Rem => x % y,
                _ => return None,
            })
        }
        _ => {
            // float: rounded per operation, as Java does.
            let (x, y) = (a.f64() as f32, b.f64() as f32);
            Fv::Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Rem => x % y,
                _ => return None,
            })
        }
    })
}

/// Whether `num` of a value and of its view agree (used by tests).
#[cfg(test)]
fn same_number(v: &V) -> bool {
    match (super::eval::num(v), Fv::of(v).and_then(Fv::n)) {
        (Some(a), Some(b)) => a.f64().to_bits() == b.f64().to_bits(),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str) -> String {
        let payload = json!({"b": [
            {"key": "a", "doc_count": 10, "errors": {"doc_count": 3}, "big": 3_000_000_000i64, "x": null},
            {"key": "b", "doc_count": 4, "errors": {"doc_count": 0}, "big": 1, "x": 2.5},
        ], "m": {}});
        run_on(&payload, &json!({"pct": 5, "name": "b"}), src)
    }

    /// `src`'s result (Java's `toString`) or `error <class>`, with
    /// `payload` as `ctx.payload`.
    pub(in super::super) fn run_on(payload: &Value, params: &Value, src: &str) -> String {
        let ctx = json!({"vars": {}});
        match super::super::compile(src).and_then(|s| {
            s.run(
                super::super::Env {
                    payload,
                    ctx: &ctx,
                    params,
                    times: None,
                },
                super::super::Limits::default(),
            )
        }) {
            Ok(o) => o.java,
            Err(e) => format!("error {}", e.class()),
        }
    }

    #[test]
    fn views_keep_numbers_as_the_evaluator_reads_them() {
        for v in [V::Int(3), V::Long(1 << 40), V::Double(0.5), V::Float(1.5)] {
            assert!(same_number(&v), "{v:?}");
        }
        assert!(Fv::of(&V::str("made by the script")).is_none());
        assert_eq!(std::mem::size_of::<Option<Fv>>(), 16);
    }

    #[test]
    fn fast_lambdas_and_roots_keep_java_semantics() {
        let l = "ctx.payload.b.stream()";
        for (src, want) in [
            (
                format!(
                    "{l}.filter(b -> b.errors.doc_count * 100.0 / b.doc_count > params.pct).count()"
                ),
                "1",
            ),
            (
                format!("{l}.filter(b -> b.key == params.name).count()"),
                "1",
            ),
            (format!("{l}.filter(b -> b.key != 'a').count()"), "1"),
            (
                format!("{l}.map(b -> b.doc_count / 3).collect(Collectors.toList())"),
                "[3, 1]",
            ),
            (
                format!("{l}.map(b -> b.big + 1).collect(Collectors.toList())"),
                "[3000000001, 2]",
            ),
            (
                format!("{l}.map(b -> b.x ?: -1).collect(Collectors.toList())"),
                "[-1, 2.5]",
            ),
            (
                format!("{l}.map(b -> b.missing?.y).collect(Collectors.toList())"),
                "[null, null]",
            ),
            (
                format!(
                    "{l}.map(b -> b.errors.empty || b['key'] == 'b').collect(Collectors.toList())"
                ),
                "[false, true]",
            ),
            // A parameter shadows a captured local of the same name.
            (
                format!("def b = 100; def k = 2; {l}.mapToInt(b -> b.doc_count * k).sum()"),
                "28",
            ),
            // Errors come from the general evaluator, with its classes.
            (
                format!("{l}.map(b -> b.doc_count / b.errors.doc_count).count()"),
                "error arithmetic_exception",
            ),
            (
                format!("{l}.map(b -> b.missing.y).count()"),
                "error null_pointer_exception",
            ),
            ("return 7 / 2 + 7 % -3 * 1.5f".into(), "4.5"),
            ("return 2147483647 + 1".into(), "-2147483648"),
            (
                "return -2147483648 / -1 + 65536 * 65536 + (-7 % 3)".into(),
                "2147483647",
            ),
            (
                "return 9223372036854775807L + 1".into(),
                "-9223372036854775808",
            ),
            (
                "return ctx.payload.m.empty && !ctx.payload.empty".into(),
                "true",
            ),
            (
                "if (ctx.payload.b[1].doc_count >= 4) { return 'yes' } return 'no'".into(),
                "yes",
            ),
        ] {
            assert_eq!(run(&src), want, "{src}");
        }
    }
}
