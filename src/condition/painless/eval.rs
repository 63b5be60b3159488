//! The tree-walking evaluator: statements, expressions, operators, locals,
//! lambdas and the script's functions, within the sandbox's bounds.

use std::borrow::Cow;
use std::rc::Rc;
use std::sync::Arc;

use super::ast::*;
use super::builtins;
use super::value::{Key, LambdaCl, ListObj, MapObj, Order, V};

/// A Java exception thrown while a script runs (or a sandbox limit hit).
#[derive(Debug, Clone)]
pub struct Ex {
    /// The Java class's simple name: `NullPointerException`, ….
    pub class: Cow<'static, str>,
    /// The message.
    pub msg: String,
    /// The span of the expression that threw, once known.
    pub at: Option<(u32, u32)>,
    /// A sandbox limit: not catchable by the script.
    pub limit: bool,
    /// A write into input read in place: not catchable either; the script
    /// runs again on its own copy of the input ([`super::cow`]).
    pub input: bool,
}

impl Ex {
    /// An exception of a Java class.
    pub fn new(class: &'static str, msg: impl Into<String>) -> Ex {
        Ex {
            class: Cow::Borrowed(class),
            msg: msg.into(),
            at: None,
            limit: false,
            input: false,
        }
    }

    /// A write into input read in place.
    pub fn input() -> Ex {
        Ex {
            input: true,
            ..Ex::new(
                "UnsupportedOperationException",
                "this value is read-only here",
            )
        }
    }

    /// `NullPointerException`.
    pub fn npe(msg: impl Into<String>) -> Ex {
        Ex::new("NullPointerException", msg)
    }

    /// `ClassCastException`.
    pub fn cce(msg: impl Into<String>) -> Ex {
        Ex::new("ClassCastException", msg)
    }

    /// `IllegalArgumentException`.
    pub fn iae(msg: impl Into<String>) -> Ex {
        Ex::new("IllegalArgumentException", msg)
    }

    /// A sandbox limit.
    pub fn limit(msg: impl Into<String>) -> Ex {
        Ex {
            limit: true,
            ..Ex::new("LimitExceeded", msg)
        }
    }

    fn at_pos(mut self, at: u32) -> Ex {
        if self.at.is_none() {
            self.at = Some((at, at));
        }
        self
    }

    fn at(mut self, e: &Expr) -> Ex {
        if self.at.is_none() {
            self.at = Some((e.at, e.end));
        }
        self
    }
}

/// The sandbox's bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Loop iterations per run (Painless's own default: 1,000,000).
    pub max_loop: u64,
    /// Loop iterations, lambda and function calls per run: bounds nested
    /// stream pipelines, which Painless's loop counter does not see.
    pub max_steps: u64,
    /// Deepest nesting of function and lambda calls.
    pub max_depth: usize,
    /// Longest string, in bytes.
    pub max_string: usize,
    /// Most elements of a list, map or set.
    pub max_collection: usize,
    /// Most memory one run may allocate, in bytes.
    pub max_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_loop: 1_000_000,
            max_steps: 10_000_000,
            max_depth: 32,
            max_string: 1 << 20,
            max_collection: 100_000,
            max_memory: 64 << 20,
        }
    }
}

/// Local variable types that assignments convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tt {
    /// Anything.
    Def,
    /// boolean
    Bool,
    /// byte, short, int
    Int,
    /// char
    Char,
    /// long
    Long,
    /// float
    Float,
    /// double
    Double,
    /// String
    Str,
}

fn tt(t: &Ty) -> Tt {
    match t {
        Ty::Boolean => Tt::Bool,
        Ty::Byte | Ty::Short | Ty::Int => Tt::Int,
        Ty::Char => Tt::Char,
        Ty::Long => Tt::Long,
        Ty::Float => Tt::Float,
        Ty::Double => Tt::Double,
        Ty::Class(c) if c == "String" => Tt::Str,
        _ => Tt::Def,
    }
}

fn default_of<'a>(t: Tt) -> V<'a> {
    match t {
        Tt::Bool => V::Bool(false),
        Tt::Int => V::Int(0),
        Tt::Char => V::Char(0),
        Tt::Long => V::Long(0),
        Tt::Float => V::Float(0.0),
        Tt::Double => V::Double(0.0),
        Tt::Def | Tt::Str => V::Null,
    }
}

/// Java's implicit conversion on assignment to a typed local.
pub fn coerce<'a>(v: V<'a>, t: Tt) -> Result<V<'a>, Ex> {
    let fail = |v: &V| {
        let name = match t {
            Tt::Bool => "boolean",
            Tt::Int => "int",
            Tt::Char => "char",
            Tt::Long => "long",
            Tt::Float => "float",
            Tt::Double => "double",
            Tt::Str => "java.lang.String",
            Tt::Def => "def",
        };
        if v.is_null() {
            Ex::npe(format!("cannot assign null to {name}"))
        } else {
            Ex::cce(format!(
                "cannot implicitly cast def [{}] to {name}",
                builtins::short_type(v)
            ))
        }
    };
    Ok(match (t, v) {
        (Tt::Def, v) => v,
        (Tt::Bool, v @ V::Bool(_)) => v,
        (Tt::Int, v @ V::Int(_)) => v,
        (Tt::Int, V::Char(c)) => V::Int(i32::from(c)),
        (Tt::Char, v @ V::Char(_)) => v,
        (Tt::Long, v @ V::Long(_)) => v,
        (Tt::Long, V::Int(i)) => V::Long(i64::from(i)),
        (Tt::Long, V::Char(c)) => V::Long(i64::from(c)),
        (Tt::Float, v @ V::Float(_)) => v,
        (Tt::Float, V::Int(i)) => V::Float(i as f32),
        (Tt::Float, V::Long(i)) => V::Float(i as f32),
        (Tt::Double, v @ V::Double(_)) => v,
        (Tt::Double, V::Int(i)) => V::Double(f64::from(i)),
        (Tt::Double, V::Long(i)) => V::Double(i as f64),
        (Tt::Double, V::Float(f)) => V::Double(f64::from(f)),
        (Tt::Double, V::Char(c)) => V::Double(f64::from(c)),
        (Tt::Str, v @ (V::Str(_) | V::JStr(_) | V::Null)) => v,
        (_, v) => return Err(fail(&v)),
    })
}

/// Control flow out of a statement.
pub enum Flow<'a> {
    /// Carry on.
    Normal,
    /// `break`.
    Break,
    /// `continue`.
    Continue,
    /// `return`.
    Return(V<'a>),
}

/// One run of a script.
pub struct Interp<'p, 'a> {
    /// The script.
    pub prog: &'p Program,
    env: Vec<(Sym, V<'a>, Tt)>,
    frame: usize,
    ctx: V<'a>,
    params: V<'a>,
    loops: u64,
    steps: u64,
    depth: usize,
    /// The bounds.
    pub limits: Limits,
    /// The input, when `ctx` reads it in place and copies what is written.
    input: Option<Inputs<'a>>,
    /// Key positions for the fast path's field reads.
    pub(super) hints: super::value::Hints,
}

/// The JSON a run reads in place: where copy-on-write finds what a `ctx`
/// chain held before the script changed anything.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// `ctx` but its payload.
    pub ctx: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// `ctx.payload`.
    pub payload: &'a serde_json::Value,
}

/// What a value on a `ctx` chain was in the input.
#[derive(Clone, Copy)]
enum Orig<'a> {
    /// `ctx` itself.
    Ctx,
    /// This node of the input.
    Node(&'a serde_json::Value),
    /// Nothing of the input (the script made it or put it there).
    None,
}

/// A numeric operand after Java's binary numeric promotion.
#[derive(Debug, Clone, Copy)]
pub enum N {
    /// int
    I(i32),
    /// long
    L(i64),
    /// float
    F(f32),
    /// double
    D(f64),
}

/// The number in a value (a char is an int).
pub fn num(v: &V) -> Option<N> {
    Some(match v {
        V::Int(i) => N::I(*i),
        V::Long(l) => N::L(*l),
        V::Float(f) => N::F(*f),
        V::Double(d) => N::D(*d),
        V::Char(c) => N::I(i32::from(*c)),
        _ => return None,
    })
}

impl N {
    /// As a double.
    pub fn f64(self) -> f64 {
        match self {
            N::I(i) => f64::from(i),
            N::L(l) => l as f64,
            N::F(f) => f64::from(f),
            N::D(d) => d,
        }
    }
    /// As a long (Java's narrowing for floats).
    pub fn i64(self) -> i64 {
        match self {
            N::I(i) => i64::from(i),
            N::L(l) => l,
            N::F(f) => f as i64,
            N::D(d) => d as i64,
        }
    }
    fn rank(self) -> u8 {
        match self {
            N::I(_) => 0,
            N::L(_) => 1,
            N::F(_) => 2,
            N::D(_) => 3,
        }
    }
    /// Back to a value.
    pub fn v<'a>(self) -> V<'a> {
        match self {
            N::I(i) => V::Int(i),
            N::L(l) => V::Long(l),
            N::F(f) => V::Float(f),
            N::D(d) => V::Double(d),
        }
    }
}

fn div0() -> Ex {
    Ex::new("ArithmeticException", "/ by zero")
}

/// Java's `int` or `long` arithmetic on `x` and `y`: wrapping, and an
/// `ArithmeticException` on division by zero.
macro_rules! integral {
    ($op:expr, $x:expr, $y:expr, $what:literal) => {{
        let (x, y) = ($x, $y);
        match $op {
            BinOp::Add => x.wrapping_add(y),
            BinOp::Sub => x.wrapping_sub(y),
            BinOp::Mul => x.wrapping_mul(y),
            BinOp::Div | BinOp::Rem if y == 0 => return Err(div0()),
            BinOp::Div => x.wrapping_div(y),
            BinOp::Rem => x.wrapping_rem(y),
            BinOp::BitAnd => x & y,
            BinOp::BitOr => x | y,
            BinOp::BitXor => x ^ y,
            _ => return Err(Ex::cce($what)),
        }
    }};
}

/// Arithmetic on two numbers, with Java's promotion, wrapping and errors.
pub fn arith<'a>(op: BinOp, a: N, b: N) -> Result<V<'a>, Ex> {
    let rank = a.rank().max(b.rank());
    Ok(match rank {
        0 => {
            let (N::I(x), N::I(y)) = (a, b) else {
                return Err(Ex::cce("bad int operands"));
            };
            V::Int(integral!(op, x, y, "bad int operator"))
        }
        1 => V::Long(integral!(op, a.i64(), b.i64(), "bad long operator")),
        _ => {
            let (x, y) = (a.f64(), b.f64());
            let r = match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Rem => x % y,
                _ => {
                    return Err(Ex::cce(format!(
                        "Cannot apply [{}] operation to a floating-point number.",
                        op.symbol()
                    )));
                }
            };
            if rank == 2 {
                // float arithmetic, rounded per operation as Java does.
                let (fx, fy) = (x as f32, y as f32);
                V::Float(match op {
                    BinOp::Add => fx + fy,
                    BinOp::Sub => fx - fy,
                    BinOp::Mul => fx * fy,
                    BinOp::Div => fx / fy,
                    _ => fx % fy,
                })
            } else {
                V::Double(r)
            }
        }
    })
}

fn shift<'a>(op: BinOp, a: N, b: N) -> Result<V<'a>, Ex> {
    let n = match b {
        N::I(i) => i64::from(i),
        N::L(l) => l,
        _ => return Err(Ex::cce("Cannot shift by a floating-point number.")),
    };
    Ok(match a {
        N::I(x) => {
            let s = (n & 31) as u32;
            V::Int(match op {
                BinOp::Shl => x.wrapping_shl(s),
                BinOp::Shr => x.wrapping_shr(s),
                _ => ((x as u32) >> s) as i32,
            })
        }
        N::L(x) => {
            let s = (n & 63) as u32;
            V::Long(match op {
                BinOp::Shl => x.wrapping_shl(s),
                BinOp::Shr => x.wrapping_shr(s),
                _ => ((x as u64) >> s) as i64,
            })
        }
        _ => return Err(Ex::cce("Cannot shift a floating-point number.")),
    })
}

fn bad_op(op: &str, a: &V, b: &V) -> Ex {
    Ex::cce(format!(
        "Cannot apply [{op}] operation to types [{}] and [{}].",
        a.type_name(),
        b.type_name()
    ))
}

/// A binary operation on two values.
pub fn binary<'a>(op: BinOp, a: &V<'a>, b: &V<'a>, max_string: usize) -> Result<V<'a>, Ex> {
    match op {
        BinOp::Eq => return Ok(V::Bool(builtins::painless_eq(a, b))),
        BinOp::Ne => return Ok(V::Bool(!builtins::painless_eq(a, b))),
        BinOp::RefEq => return Ok(V::Bool(builtins::same(a, b))),
        BinOp::RefNe => return Ok(V::Bool(!builtins::same(a, b))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            let (Some(x), Some(y)) = (num(a), num(b)) else {
                // Painless's `DefMath` names both operands' classes in its
                // message, and a null's class is a NullPointerException.
                if a.is_null() || b.is_null() {
                    return Err(Ex::npe(format!(
                        "Cannot apply [{}] operation to null",
                        op.symbol()
                    )));
                }
                return Err(bad_op(op.symbol(), a, b));
            };
            let r = match (x, y) {
                (N::I(_) | N::L(_), N::I(_) | N::L(_)) => {
                    let (x, y) = (x.i64(), y.i64());
                    match op {
                        BinOp::Lt => x < y,
                        BinOp::Le => x <= y,
                        BinOp::Gt => x > y,
                        _ => x >= y,
                    }
                }
                _ => {
                    let (x, y) = (x.f64(), y.f64());
                    match op {
                        BinOp::Lt => x < y,
                        BinOp::Le => x <= y,
                        BinOp::Gt => x > y,
                        _ => x >= y,
                    }
                }
            };
            return Ok(V::Bool(r));
        }
        BinOp::Add if a.as_str().is_some() || b.as_str().is_some() => {
            let mut s = String::new();
            a.write_java(&mut s, 0);
            b.write_java(&mut s, 0);
            if s.len() > max_string {
                return Err(Ex::limit(format!(
                    "a string grew past {max_string} bytes (the limit)"
                )));
            }
            return Ok(V::str(s));
        }
        _ => {}
    }
    if let (V::Bool(x), V::Bool(y)) = (a, b) {
        return match op {
            BinOp::BitAnd => Ok(V::Bool(*x & *y)),
            BinOp::BitOr => Ok(V::Bool(*x | *y)),
            BinOp::BitXor => Ok(V::Bool(*x ^ *y)),
            _ => Err(bad_op(op.symbol(), a, b)),
        };
    }
    let (Some(x), Some(y)) = (num(a), num(b)) else {
        if a.is_null() || b.is_null() {
            return Err(Ex::npe(format!(
                "Cannot apply [{}] operation to null",
                op.symbol()
            )));
        }
        return Err(bad_op(op.symbol(), a, b));
    };
    match op {
        BinOp::Shl | BinOp::Shr | BinOp::Ushr => shift(op, x, y),
        _ => arith(op, x, y),
    }
}

enum Place<'a> {
    Var(Sym),
    Field(V<'a>, Arc<str>),
    Index(V<'a>, V<'a>),
}

impl<'p, 'a> Interp<'p, 'a> {
    /// A run of `prog` with `ctx` and `params` in scope.
    pub fn new(prog: &'p Program, ctx: V<'a>, params: V<'a>, limits: Limits) -> Self {
        Interp {
            prog,
            env: Vec::new(),
            frame: 0,
            ctx,
            params,
            loops: 0,
            steps: 0,
            depth: 0,
            limits,
            input: None,
            hints: Default::default(),
        }
    }

    /// Reads `inputs` in place through `ctx`, copying what is written.
    pub fn copy_on_write(&mut self, inputs: Inputs<'a>) {
        self.input = Some(inputs);
    }

    /// `ctx` as the script left it.
    pub fn ctx(&self) -> &V<'a> {
        &self.ctx
    }

    /// Runs the script: its `return` value, else the value of a final
    /// expression statement, else null.
    pub fn run(&mut self) -> Result<V<'a>, Ex> {
        let body = &self.prog.body;
        let (last, init) = match body.split_last() {
            Some((Stmt::Expr(e), init)) => (Some(e), init),
            _ => (None, body.as_slice()),
        };
        for s in init {
            match self.exec(s)? {
                Flow::Return(v) => return Ok(v),
                Flow::Normal => {}
                Flow::Break | Flow::Continue => {}
            }
        }
        match last {
            Some(e) => self.eval(e),
            None => Ok(V::Null),
        }
    }

    /// Counts one step (a loop iteration or a call) against the bounds.
    pub fn step(&mut self) -> Result<(), Ex> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(Ex::limit(format!(
                "the script ran more than {} loop iterations and calls (the limit)",
                self.limits.max_steps
            )));
        }
        if self.steps.is_multiple_of(64) && crate::alloc_budget::exceeded() {
            return Err(Ex::limit(format!(
                "the script used more than {} of memory (the limit)",
                crate::alloc_budget::fmt_bytes(self.limits.max_memory)
            )));
        }
        Ok(())
    }

    fn loop_step(&mut self) -> Result<(), Ex> {
        self.loops += 1;
        if self.loops > self.limits.max_loop {
            return Err(Ex::limit(format!(
                "the maximum number of statements that can be executed in a loop has been reached ({}); check the script for an endless loop",
                self.limits.max_loop
            )));
        }
        self.step()
    }

    /// Checks a collection's size against the bound.
    pub fn check_size(&self, n: usize) -> Result<(), Ex> {
        if n > self.limits.max_collection {
            return Err(Ex::limit(format!(
                "a list, map or set grew past {} elements (the limit)",
                self.limits.max_collection
            )));
        }
        Ok(())
    }

    /// Checks a string's length against the bound.
    pub fn check_string(&self, n: usize) -> Result<(), Ex> {
        if n > self.limits.max_string {
            return Err(Ex::limit(format!(
                "a string grew past {} bytes (the limit)",
                self.limits.max_string
            )));
        }
        Ok(())
    }

    fn exec_block(&mut self, stmts: &[Stmt]) -> Result<Flow<'a>, Ex> {
        let mark = self.env.len();
        let mut out = Flow::Normal;
        for s in stmts {
            match self.exec(s) {
                Ok(Flow::Normal) => {}
                Ok(f) => {
                    out = f;
                    break;
                }
                Err(e) => {
                    self.env.truncate(mark);
                    return Err(e);
                }
            }
        }
        self.env.truncate(mark);
        Ok(out)
    }

    fn truthy(&mut self, e: &Expr) -> Result<bool, Ex> {
        match self.eval(e)? {
            V::Bool(b) => Ok(b),
            V::Null => Err(Ex::npe(format!("`{}` is null, not a boolean", self.text(e))).at(e)),
            other => Err(Ex::cce(format!(
                "Cannot cast {} to boolean: `{}`",
                other.type_name(),
                self.text(e)
            ))
            .at(e)),
        }
    }

    /// The source of an expression, for messages.
    pub fn text(&self, e: &Expr) -> &str {
        self.prog
            .src
            .get(e.at as usize..e.end as usize)
            .unwrap_or("?")
    }

    fn exec(&mut self, s: &Stmt) -> Result<Flow<'a>, Ex> {
        match s {
            Stmt::Expr(e) => {
                self.eval(e)?;
            }
            Stmt::Decl(t, vars) => {
                let t = tt(t);
                for (sym, init, _) in vars {
                    let v = match init {
                        Some(e) => coerce(self.eval(e)?, t).map_err(|x| x.at(e))?,
                        None => default_of(t),
                    };
                    self.env.push((*sym, v, t));
                }
            }
            Stmt::Block(b) => return self.exec_block(b),
            Stmt::If(c, a, b) => {
                let yes = match super::fast::fast(self, &super::fast::Scope::Frame, c) {
                    Some(super::fast::Fv::Bool(b)) => b,
                    _ => self.truthy(c)?,
                };
                if yes {
                    return self.exec_scoped(a);
                } else if let Some(b) = b {
                    return self.exec_scoped(b);
                }
            }
            Stmt::While(c, body, at) => {
                while self.truthy(c)? {
                    self.loop_step().map_err(|x| x.at_pos(*at))?;
                    match self.exec_scoped(body)? {
                        Flow::Break => break,
                        Flow::Return(v) => return Ok(Flow::Return(v)),
                        _ => {}
                    }
                }
            }
            Stmt::DoWhile(body, c, at) => loop {
                self.loop_step().map_err(|x| x.at_pos(*at))?;
                match self.exec_scoped(body)? {
                    Flow::Break => break,
                    Flow::Return(v) => return Ok(Flow::Return(v)),
                    _ => {}
                }
                if !self.truthy(c)? {
                    break;
                }
            },
            Stmt::For {
                init,
                cond,
                update,
                body,
                at,
            } => {
                let mark = self.env.len();
                let r = self
                    .exec_for(init.as_deref(), cond.as_ref(), update, body)
                    .map_err(|x| x.at_pos(*at));
                self.env.truncate(mark);
                return r;
            }
            Stmt::ForEach {
                var,
                ty,
                iter,
                body,
                at,
            } => {
                let coll = self.eval(iter)?;
                let items = builtins::iterate(&coll)
                    .map_err(|e| e.at(iter))?
                    .ok_or_else(|| {
                        if coll.is_null() {
                            Ex::npe(format!(
                                "cannot iterate over `{}`: it is null",
                                self.text(iter)
                            ))
                        } else {
                            Ex::iae(format!(
                                "cannot iterate over `{}`: a {} is not iterable",
                                self.text(iter),
                                coll.type_name()
                            ))
                        }
                        .at(iter)
                    })?;
                let t = tt(ty);
                for item in items {
                    self.loop_step().map_err(|x| x.at_pos(*at))?;
                    let mark = self.env.len();
                    self.env
                        .push((*var, coerce(item, t).map_err(|x| x.at(iter))?, t));
                    let f = self.exec_scoped(body);
                    self.env.truncate(mark);
                    match f? {
                        Flow::Break => break,
                        Flow::Return(v) => return Ok(Flow::Return(v)),
                        _ => {}
                    }
                }
            }
            Stmt::Return(e) => {
                let v = match e {
                    Some(e) => self.eval_root(e)?,
                    None => V::Null,
                };
                return Ok(Flow::Return(v));
            }
            Stmt::Break => return Ok(Flow::Break),
            Stmt::Continue => return Ok(Flow::Continue),
            Stmt::Throw(e) => {
                let v = self.eval(e)?;
                let ex = match v {
                    V::Exception(x) => Ex {
                        class: Cow::Owned(x.0.clone()),
                        msg: x.1.clone(),
                        at: None,
                        limit: false,
                        input: false,
                    },
                    other => Ex::cce(format!("cannot throw a {}", other.type_name())),
                };
                return Err(ex.at(e));
            }
            Stmt::Try(body, catches) => {
                let depth = self.depth;
                let frame = self.frame;
                let mark = self.env.len();
                match self.exec_block(body) {
                    Ok(f) => return Ok(f),
                    Err(ex) if !ex.limit && !ex.input => {
                        self.depth = depth;
                        self.frame = frame;
                        self.env.truncate(mark);
                        for (class, sym, handler) in catches {
                            if builtins::catches(class, &ex.class) {
                                self.env.push((
                                    *sym,
                                    V::Exception(Rc::new((ex.class.to_string(), ex.msg.clone()))),
                                    Tt::Def,
                                ));
                                let r = self.exec_block(handler);
                                self.env.truncate(mark);
                                return r;
                            }
                        }
                        return Err(ex);
                    }
                    Err(ex) => return Err(ex),
                }
            }
        }
        Ok(Flow::Normal)
    }

    fn exec_scoped(&mut self, s: &Stmt) -> Result<Flow<'a>, Ex> {
        let mark = self.env.len();
        let r = self.exec(s);
        self.env.truncate(mark);
        r
    }

    fn exec_for(
        &mut self,
        init: Option<&Stmt>,
        cond: Option<&Expr>,
        update: &[Expr],
        body: &Stmt,
    ) -> Result<Flow<'a>, Ex> {
        if let Some(i) = init {
            self.exec(i)?;
        }
        loop {
            if let Some(c) = cond
                && !self.truthy(c)?
            {
                break;
            }
            self.loop_step()?;
            match self.exec_scoped(body)? {
                Flow::Break => break,
                Flow::Return(v) => return Ok(Flow::Return(v)),
                _ => {}
            }
            for u in update {
                self.eval(u)?;
            }
        }
        Ok(Flow::Normal)
    }

    fn lookup(&self, s: Sym) -> Option<usize> {
        self.env[self.frame..]
            .iter()
            .rposition(|(x, _, _)| *x == s)
            .map(|i| i + self.frame)
    }

    /// A local's value, or `ctx`/`params`, for the fast path.
    pub(super) fn local(&self, s: Sym) -> Option<&V<'a>> {
        match self.lookup(s) {
            Some(i) => self.env.get(i).map(|x| &x.1),
            None => self.global(s),
        }
    }

    /// `ctx` or `params`.
    pub(super) fn global(&self, s: Sym) -> Option<&V<'a>> {
        match s {
            CTX => Some(&self.ctx),
            PARAMS => Some(&self.params),
            _ => None,
        }
    }

    /// Evaluates an expression that starts a statement: on the fast path
    /// when it can ([`super::fast`]), else in full.
    fn eval_root(&mut self, e: &Expr) -> Result<V<'a>, Ex> {
        match super::fast::fast(self, &super::fast::Scope::Frame, e) {
            Some(v) => Ok(v.v()),
            None => self.eval(e),
        }
    }

    fn var(&self, s: Sym, e: &Expr) -> Result<V<'a>, Ex> {
        if let Some(i) = self.lookup(s) {
            return Ok(self.env[i].1.clone());
        }
        match s {
            CTX => Ok(self.ctx.clone()),
            PARAMS => Ok(self.params.clone()),
            _ => Err(Ex::iae(format!(
                "cannot resolve symbol [{}]",
                self.prog.names.get(s as usize).map_or("?", String::as_str)
            ))
            .at(e)),
        }
    }

    fn set_var(&mut self, s: Sym, v: V<'a>, e: &Expr) -> Result<(), Ex> {
        let Some(i) = self.lookup(s) else {
            return Err(Ex::iae(format!(
                "cannot assign to [{}]: declare it first",
                self.prog.names.get(s as usize).map_or("?", String::as_str)
            ))
            .at(e));
        };
        let t = self.env[i].2;
        self.env[i].1 = coerce(v, t).map_err(|x| x.at(e))?;
        Ok(())
    }

    fn place(&mut self, target: &Expr) -> Result<Place<'a>, Ex> {
        Ok(match &target.kind {
            ExprKind::Var(s) => Place::Var(*s),
            ExprKind::Field { obj, name, .. } => {
                let o = self.eval_target(obj)?;
                if o.is_null() {
                    return Err(Ex::npe(format!(
                        "cannot set `{name}`: `{}` is null",
                        self.text(obj)
                    ))
                    .at(target));
                }
                Place::Field(o, name.clone())
            }
            ExprKind::Index { obj, index } => {
                let o = self.eval_target(obj)?;
                if o.is_null() {
                    return Err(Ex::npe(format!(
                        "cannot set an element: `{}` is null",
                        self.text(obj)
                    ))
                    .at(target));
                }
                let i = self.eval(index)?;
                Place::Index(o, i)
            }
            _ => return Err(Ex::iae("not assignable").at(target)),
        })
    }

    /// The receiver of a write: with copy-on-write, a `ctx` chain's maps
    /// and lists of the input become the script's own, one level each.
    fn eval_target(&mut self, e: &Expr) -> Result<V<'a>, Ex> {
        match self.input {
            Some(_) => self.eval_mut(e).map(|(v, _)| v),
            None => self.eval(e),
        }
    }

    fn eval_mut(&mut self, e: &Expr) -> Result<(V<'a>, Orig<'a>), Ex> {
        match &e.kind {
            ExprKind::Var(CTX) if self.lookup(CTX).is_none() => Ok((self.ctx.clone(), Orig::Ctx)),
            ExprKind::Field {
                obj,
                name,
                null_safe,
            } => {
                let (p, po) = self.eval_mut(obj)?;
                if p.is_null() {
                    if *null_safe {
                        return Ok((V::Null, Orig::None));
                    }
                    return Err(self.null_field(obj, name, e));
                }
                let child = self.get_field(&p, name, e)?;
                let orig = self.orig_child(po, name, None);
                self.promote(&p, V::str(&**name), child, orig, e)
            }
            ExprKind::Index { obj, index } => {
                let (p, po) = self.eval_mut(obj)?;
                if p.is_null() {
                    return Err(
                        Ex::npe(format!("cannot index `{}`: it is null", self.text(obj))).at(e),
                    );
                }
                let i = self.eval(index)?;
                let child = builtins::index(&p, &i).map_err(|x| x.at(e))?;
                let orig = match i.as_str() {
                    Some(k) => self.orig_child(po, k, None),
                    None => self.orig_child(po, "", num(&i).map(N::i64)),
                };
                self.promote(&p, i, child, orig, e)
            }
            _ => Ok((self.eval(e)?, Orig::None)),
        }
    }

    /// The input's node under `parent` at key `name` (or list index `at`).
    fn orig_child(&self, parent: Orig<'a>, name: &str, at: Option<i64>) -> Orig<'a> {
        let Some(input) = self.input else {
            return Orig::None;
        };
        let node = match (parent, at) {
            (Orig::Ctx, None) if name == "payload" => Some(input.payload),
            (Orig::Ctx, None) => input.ctx.and_then(|m| super::value::jget(m, name)),
            (Orig::Node(serde_json::Value::Object(m)), None) => super::value::jget(m, name),
            (Orig::Node(serde_json::Value::Array(a)), Some(i)) => {
                usize::try_from(i).ok().and_then(|i| a.get(i))
            }
            _ => None,
        };
        node.map_or(Orig::None, Orig::Node)
    }

    /// Makes `child`, read from `parent` at `key`, the script's own if it
    /// is a map or list of the input, and puts the copy in its place.
    fn promote(
        &mut self,
        parent: &V<'a>,
        key: V<'a>,
        child: V<'a>,
        orig: Orig<'a>,
        e: &Expr,
    ) -> Result<(V<'a>, Orig<'a>), Ex> {
        let at_home = match (&child, orig) {
            (V::JMap(m), Orig::Node(serde_json::Value::Object(o))) => std::ptr::eq(*m, o),
            (V::JList(l), Orig::Node(serde_json::Value::Array(a))) => {
                std::ptr::eq(l.as_ptr(), a.as_ptr()) && l.len() == a.len()
            }
            (V::JMap(_) | V::JList(_), _) => false,
            _ => return Ok((child, orig)),
        };
        // Input reached another way may have other handles: run on a copy.
        if !at_home || !matches!(parent, V::Map(_) | V::List(_)) {
            return Err(Ex::input().at(e));
        }
        let own = child.own();
        builtins::put(self, parent, key, own.clone()).map_err(|x| x.at(e))?;
        Ok((own, orig))
    }

    fn read_place(&mut self, p: &Place<'a>, e: &Expr) -> Result<V<'a>, Ex> {
        match p {
            Place::Var(s) => self.var(*s, e),
            Place::Field(o, name) => self.get_field(o, name, e),
            Place::Index(o, i) => builtins::index(o, i).map_err(|x| x.at(e)),
        }
    }

    fn write_place(&mut self, p: Place<'a>, v: V<'a>, e: &Expr) -> Result<(), Ex> {
        match p {
            Place::Var(s) => self.set_var(s, v, e),
            Place::Field(o, name) => {
                builtins::put(self, &o, V::str(&*name), v).map_err(|x| x.at(e))
            }
            Place::Index(o, i) => builtins::put(self, &o, i, v).map_err(|x| x.at(e)),
        }
    }

    fn get_field(&mut self, o: &V<'a>, name: &str, e: &Expr) -> Result<V<'a>, Ex> {
        // Getters come first, as in Painless: `m.empty` is `m.isEmpty()`.
        if name == "empty" {
            match o {
                V::JMap(m) => return Ok(V::Bool(m.is_empty())),
                V::Map(m) => return Ok(V::Bool(m.borrow().m.is_empty())),
                V::JList(l) => return Ok(V::Bool(l.is_empty())),
                V::List(l) if !l.borrow().array => return Ok(V::Bool(l.borrow().v.is_empty())),
                _ => {}
            }
        }
        match o {
            V::JMap(m) => Ok(super::value::jget(m, name)
                .map(V::from_json)
                .unwrap_or(V::Null)),
            V::Map(m) => {
                let m = m.borrow();
                Ok(m.m
                    .get(&Key::Str(Rc::from(name)))
                    .cloned()
                    .unwrap_or(V::Null))
            }
            _ => builtins::field(self, o, name).map_err(|x| x.at(e)),
        }
    }

    /// Calls a lambda, method reference, comparator or script function.
    pub fn call(&mut self, f: &V<'a>, args: &[V<'a>]) -> Result<V<'a>, Ex> {
        let V::Func(func) = f else {
            return Err(Ex::cce(format!("a {} is not a function", f.type_name())));
        };
        self.step()?;
        use super::value::Func as F;
        match &**func {
            F::Lambda(cl) => self.call_lambda(cl, args),
            F::User(i) => self.call_user(*i, args.to_vec()),
            F::Ref(class, name) => builtins::call_ref(self, class, name, args),
            F::Comparing(key) => {
                let (a, b) = two(args)?;
                let ka = self.call(key, std::slice::from_ref(a))?;
                let kb = self.call(key, std::slice::from_ref(b))?;
                builtins::compare_v(&ka, &kb)
            }
            F::Natural => {
                let (a, b) = two(args)?;
                builtins::compare_v(a, b)
            }
            F::Reversed(inner) => {
                let (a, b) = two(args)?;
                self.call(inner, &[b.clone(), a.clone()])
            }
            F::Then(first, second) => {
                let r = self.call(first, args)?;
                if matches!(r, V::Int(0)) {
                    self.call(second, args)
                } else {
                    Ok(r)
                }
            }
        }
    }

    fn enter(&mut self) -> Result<(), Ex> {
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return Err(Ex::limit(format!(
                "calls nested more than {} deep (the limit); check for endless recursion",
                self.limits.max_depth
            )));
        }
        Ok(())
    }

    fn call_lambda(&mut self, cl: &LambdaCl<'a>, args: &[V<'a>]) -> Result<V<'a>, Ex> {
        if cl.def.params.len() != args.len() {
            return Err(Ex::iae(format!(
                "a lambda of {} parameters was called with {} arguments",
                cl.def.params.len(),
                args.len()
            )));
        }
        self.enter()?;
        if cl.def.fast
            && let Some(v) = super::fast::lambda(self, cl, args)
        {
            self.depth -= 1;
            return Ok(v.v());
        }
        let saved = self.frame;
        let base = self.env.len();
        self.frame = base;
        for (s, v) in &cl.captured {
            self.env.push((*s, v.clone(), Tt::Def));
        }
        for (s, v) in cl.def.params.iter().zip(args) {
            self.env.push((*s, v.clone(), Tt::Def));
        }
        let r = match cl.def.body.as_slice() {
            [Stmt::Return(Some(e))] => self.eval(e),
            body => self.exec_block(body).map(|f| match f {
                Flow::Return(v) => v,
                _ => V::Null,
            }),
        };
        self.env.truncate(base);
        self.frame = saved;
        self.depth -= 1;
        r
    }

    /// Calls the script's function number `i`.
    pub fn call_user(&mut self, i: usize, args: Vec<V<'a>>) -> Result<V<'a>, Ex> {
        let prog = self.prog;
        let Some(f) = prog.funcs.get(i) else {
            return Err(Ex::iae("no such function"));
        };
        if f.params.len() != args.len() {
            return Err(Ex::iae(format!(
                "function [{}] takes {} arguments, not {}",
                f.name,
                f.params.len(),
                args.len()
            )));
        }
        self.enter()?;
        let saved = self.frame;
        let base = self.env.len();
        self.frame = base;
        let mut r = Ok(V::Null);
        for ((t, s), v) in f.params.iter().zip(args) {
            let t = tt(t);
            match coerce(v, t) {
                Ok(v) => self.env.push((*s, v, t)),
                Err(e) => {
                    r = Err(e);
                    break;
                }
            }
        }
        if r.is_ok() {
            r = self.exec_block(&f.body).and_then(|fl| match fl {
                Flow::Return(v) => {
                    if f.ret == Ty::Void {
                        Ok(V::Null)
                    } else {
                        coerce(v, tt(&f.ret))
                    }
                }
                _ => Ok(V::Null),
            });
        }
        self.env.truncate(base);
        self.frame = saved;
        self.depth -= 1;
        r
    }

    /// Evaluates an expression. The frequent kinds are here; the rest, with
    /// their larger stack frames, in [`Self::eval_other`], so that the
    /// recursion through field access and operators stays cheap.
    pub fn eval(&mut self, e: &Expr) -> Result<V<'a>, Ex> {
        match &e.kind {
            ExprKind::Var(s) => self.var(*s, e),
            ExprKind::Lit(Lit::Int(i)) => Ok(V::Int(*i)),
            ExprKind::Lit(Lit::Double(d)) => Ok(V::Double(*d)),
            ExprKind::Field {
                obj,
                name,
                null_safe,
            } => {
                let o = self.eval(obj)?;
                match &o {
                    V::JMap(m) if &**name != "empty" => {
                        Ok(super::value::jget(m, name).map_or(V::Null, V::from_json))
                    }
                    V::Null if *null_safe => Ok(V::Null),
                    V::Null => Err(self.null_field(obj, name, e)),
                    _ => self.get_field(&o, name, e),
                }
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                if let (Some(p), Some(q)) = (num(&x), num(&y))
                    && let Some(r) = fast_num(*op, p, q)
                {
                    return Ok(r);
                }
                binary(*op, &x, &y, self.limits.max_string).map_err(|q| q.at(e))
            }
            ExprKind::And(a, b) => Ok(V::Bool(self.truthy(a)? && self.truthy(b)?)),
            ExprKind::Or(a, b) => Ok(V::Bool(self.truthy(a)? || self.truthy(b)?)),
            _ => self.eval_other(e),
        }
    }

    #[cold]
    #[inline(never)]
    fn null_field(&self, obj: &Expr, name: &str, e: &Expr) -> Ex {
        Ex::npe(format!(
            "cannot access `{name}`: `{}` is null",
            self.text(obj)
        ))
        .at(e)
    }

    #[inline(never)]
    fn eval_other(&mut self, e: &Expr) -> Result<V<'a>, Ex> {
        match &e.kind {
            ExprKind::Lit(l) => Ok(match l {
                Lit::Null => V::Null,
                Lit::Bool(b) => V::Bool(*b),
                Lit::Int(i) => V::Int(*i),
                Lit::Long(i) => V::Long(*i),
                Lit::Float(f) => V::Float(*f),
                Lit::Double(d) => V::Double(*d),
                Lit::Str(s) => V::Str(Rc::from(&**s)),
            }),
            ExprKind::Var(s) => self.var(*s, e),
            ExprKind::Field {
                obj,
                name,
                null_safe,
            } => {
                let o = self.eval(obj)?;
                if o.is_null() {
                    if *null_safe {
                        return Ok(V::Null);
                    }
                    return Err(Ex::npe(format!(
                        "cannot access `{name}`: `{}` is null",
                        self.text(obj)
                    ))
                    .at(e));
                }
                self.get_field(&o, name, e)
            }
            ExprKind::Index { obj, index } => {
                let o = self.eval(obj)?;
                if o.is_null() {
                    return Err(
                        Ex::npe(format!("cannot index `{}`: it is null", self.text(obj))).at(e),
                    );
                }
                let i = self.eval(index)?;
                builtins::index(&o, &i).map_err(|x| x.at(e))
            }
            ExprKind::Call { obj, name, .. } => {
                if matches!(
                    &**name,
                    "count" | "sum" | "anyMatch" | "allMatch" | "noneMatch" | "collect"
                ) && let Some(p) = super::fused::pipeline(e)
                {
                    return self.eval_pipeline(&p, e);
                }
                let o = if self.input.is_some() && builtins::is_mutating(name) {
                    self.eval_target(obj)?
                } else {
                    self.eval(obj)?
                };
                self.call_on(e, o)
            }
            ExprKind::FnCall { func, args } => {
                let args = self.eval_args(args)?;
                self.step()?;
                self.call_user(*func, args).map_err(|x| x.at(e))
            }
            ExprKind::Static { class, name } => {
                builtins::static_field(class, name).map_err(|x| x.at(e))
            }
            ExprKind::StaticCall { class, name, args } => {
                let args = self.eval_args(args)?;
                builtins::call_static(self, class, name, args).map_err(|x| x.at(e))
            }
            ExprKind::New { class, args } => {
                let args = self.eval_args(args)?;
                builtins::construct(self, class, args).map_err(|x| x.at(e))
            }
            ExprKind::NewArray { elem, len, items } => {
                let v = match len {
                    Some(n) => {
                        let n = match self.eval(n)? {
                            V::Int(n) => n,
                            other => {
                                return Err(Ex::cce(format!(
                                    "an array length must be an int, not {}",
                                    other.type_name()
                                ))
                                .at(e));
                            }
                        };
                        let n = usize::try_from(n).map_err(|_| {
                            Ex::new("NegativeArraySizeException", n.to_string()).at(e)
                        })?;
                        self.check_size(n).map_err(|x| x.at(e))?;
                        vec![default_of(tt(elem)); n]
                    }
                    None => {
                        let t = tt(elem);
                        let mut v = Vec::with_capacity(items.len());
                        for x in items {
                            v.push(coerce(self.eval(x)?, t).map_err(|q| q.at(x))?);
                        }
                        v
                    }
                };
                Ok(V::List(Rc::new(std::cell::RefCell::new(ListObj {
                    v,
                    array: true,
                }))))
            }
            ExprKind::List(items) => {
                let mut v = Vec::with_capacity(items.len());
                for x in items {
                    v.push(self.eval(x)?);
                }
                Ok(V::list(v))
            }
            ExprKind::Map(pairs) => {
                let mut m = MapObj::new(Order::Hash);
                for (k, x) in pairs {
                    let kv = self.eval(k)?;
                    let key = kv.key().ok_or_else(|| {
                        Ex::iae("map keys must be strings, numbers or booleans").at(k)
                    })?;
                    let v = self.eval(x)?;
                    m.m.insert(key, v);
                }
                Ok(V::map(m))
            }
            ExprKind::Lambda(def) => {
                let captured = self.env[self.frame..]
                    .iter()
                    .map(|(s, v, _)| (*s, v.clone()))
                    .collect();
                Ok(V::Func(Rc::new(super::value::Func::Lambda(Rc::new(
                    LambdaCl {
                        def: def.clone(),
                        captured,
                    },
                )))))
            }
            ExprKind::MethodRef { class, name } => {
                if &**class == "this" {
                    let idx = self
                        .prog
                        .funcs
                        .iter()
                        .position(|f| *f.name == **name)
                        .ok_or_else(|| Ex::iae(format!("no function [{name}]")).at(e))?;
                    return Ok(V::Func(Rc::new(super::value::Func::User(idx))));
                }
                Ok(V::Func(Rc::new(super::value::Func::Ref(
                    Rc::from(&**class),
                    Rc::from(&**name),
                ))))
            }
            ExprKind::Unary(op, x) => {
                let v = self.eval(x)?;
                self.unary(*op, v).map_err(|q| q.at(e))
            }
            ExprKind::Binary(op, a, b) => {
                let x = self.eval(a)?;
                let y = self.eval(b)?;
                binary(*op, &x, &y, self.limits.max_string).map_err(|q| q.at(e))
            }
            ExprKind::And(a, b) => Ok(V::Bool(self.truthy(a)? && self.truthy(b)?)),
            ExprKind::Or(a, b) => Ok(V::Bool(self.truthy(a)? || self.truthy(b)?)),
            ExprKind::Elvis(a, b) => {
                let v = self.eval(a)?;
                if v.is_null() { self.eval(b) } else { Ok(v) }
            }
            ExprKind::Cond(c, a, b) => {
                if self.truthy(c)? {
                    self.eval(a)
                } else {
                    self.eval(b)
                }
            }
            ExprKind::Assign { target, op, value } => {
                let p = self.place(target)?;
                let v = match op {
                    None => self.eval(value)?,
                    Some(op) => {
                        let cur = self.read_place(&p, target)?;
                        let rhs = self.eval(value)?;
                        let r =
                            binary(*op, &cur, &rhs, self.limits.max_string).map_err(|q| q.at(e))?;
                        // Compound assignment casts back to the target's type.
                        match (&cur, num(&r)) {
                            (V::Int(_), Some(n)) => V::Int(n.i64() as i32),
                            (V::Long(_), Some(n)) => V::Long(n.i64()),
                            (V::Float(_), Some(n)) => V::Float(n.f64() as f32),
                            _ => r,
                        }
                    }
                };
                self.write_place(p, v.clone(), target)?;
                Ok(v)
            }
            ExprKind::IncDec {
                target,
                prefix,
                inc,
            } => {
                let p = self.place(target)?;
                let cur = self.read_place(&p, target)?;
                let one = V::Int(1);
                let op = if *inc { BinOp::Add } else { BinOp::Sub };
                let new = match &cur {
                    V::Char(c) => V::Char(if *inc {
                        c.wrapping_add(1)
                    } else {
                        c.wrapping_sub(1)
                    }),
                    V::Int(_) | V::Long(_) | V::Float(_) | V::Double(_) => {
                        binary(op, &cur, &one, self.limits.max_string).map_err(|q| q.at(e))?
                    }
                    V::Null => {
                        return Err(Ex::npe(format!("`{}` is null", self.text(target))).at(e));
                    }
                    other => {
                        return Err(
                            Ex::cce(format!("cannot increment a {}", other.type_name())).at(e)
                        );
                    }
                };
                self.write_place(p, new.clone(), target)?;
                Ok(if *prefix { new } else { cur })
            }
            ExprKind::Cast(t, x) => {
                let v = self.eval(x)?;
                builtins::cast(v, t).map_err(|q| q.at(e))
            }
            ExprKind::InstanceOf(x, t) => {
                let v = self.eval(x)?;
                Ok(V::Bool(builtins::instance_of(&v, t)))
            }
        }
    }

    /// The method call `e` on its receiver's value `o`.
    fn call_on(&mut self, e: &Expr, o: V<'a>) -> Result<V<'a>, Ex> {
        let ExprKind::Call {
            obj,
            name,
            args,
            null_safe,
        } = &e.kind
        else {
            return Err(Ex::iae("not a method call").at(e));
        };
        if o.is_null() {
            if *null_safe {
                return Ok(V::Null);
            }
            return Err(Ex::npe(format!(
                "cannot call `{name}()`: `{}` is null",
                self.text(obj)
            ))
            .at(e));
        }
        let args = self.eval_args(args)?;
        builtins::call_method(self, o, name, args).map_err(|x| x.at(e))
    }

    /// A stream pipeline over a list of the input, fused into one loop when
    /// it can be ([`super::fused`]), else call by call.
    fn eval_pipeline(&mut self, p: &super::fused::Pipeline<'_>, e: &Expr) -> Result<V<'a>, Ex> {
        let src = self.eval(p.src)?;
        if let V::JList(items) = src
            && let Some(r) = super::fused::run(self, p, items)
        {
            return r.map_err(|x| x.at(e));
        }
        let mut v = src;
        for c in &p.calls {
            v = self.call_on(c, v)?;
        }
        Ok(v)
    }

    /// Whether `n` more steps and one more call level fit in the bounds.
    pub(super) fn has_room(&self, n: u64) -> bool {
        self.depth < self.limits.max_depth
            && self
                .steps
                .checked_add(n)
                .is_some_and(|s| s <= self.limits.max_steps)
    }

    /// Counts `n` steps taken in one go (see [`Self::step`]).
    pub(super) fn take_steps(&mut self, n: u64) -> Result<(), Ex> {
        self.steps = self.steps.saturating_add(n);
        if n > 0 && crate::alloc_budget::exceeded() {
            return Err(Ex::limit(format!(
                "the script used more than {} of memory (the limit)",
                crate::alloc_budget::fmt_bytes(self.limits.max_memory)
            )));
        }
        Ok(())
    }

    fn eval_args(&mut self, args: &[Expr]) -> Result<Vec<V<'a>>, Ex> {
        let mut out = Vec::with_capacity(args.len());
        for a in args {
            out.push(self.eval(a)?);
        }
        Ok(out)
    }

    fn unary(&mut self, op: UnOp, v: V<'a>) -> Result<V<'a>, Ex> {
        match op {
            UnOp::Not => match v {
                V::Bool(b) => Ok(V::Bool(!b)),
                other => Err(Ex::cce(format!(
                    "Cannot apply [!] operation to type [{}].",
                    other.type_name()
                ))),
            },
            UnOp::Neg | UnOp::Plus | UnOp::BitNot => {
                let Some(n) = num(&v) else {
                    if v.is_null() {
                        return Err(Ex::npe("Cannot apply a unary operation to null"));
                    }
                    return Err(Ex::cce(format!(
                        "Cannot apply a unary operation to type [{}].",
                        v.type_name()
                    )));
                };
                Ok(match (op, n) {
                    (UnOp::Plus, n) => n.v(),
                    (UnOp::Neg, N::I(i)) => V::Int(i.wrapping_neg()),
                    (UnOp::Neg, N::L(i)) => V::Long(i.wrapping_neg()),
                    (UnOp::Neg, N::F(f)) => V::Float(-f),
                    (UnOp::Neg, N::D(d)) => V::Double(-d),
                    (_, N::I(i)) => V::Int(!i),
                    (_, N::L(i)) => V::Long(!i),
                    _ => return Err(Ex::cce("Cannot apply [~] to a floating-point number.")),
                })
            }
        }
    }
}

/// Comparisons and arithmetic that cannot fail, on numbers, without the
/// general path's checks.
#[inline]
fn fast_num<'a>(op: BinOp, a: N, b: N) -> Option<V<'a>> {
    match (op, a, b) {
        (BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le, N::I(x), N::I(y)) => {
            Some(V::Bool(match op {
                BinOp::Gt => x > y,
                BinOp::Ge => x >= y,
                BinOp::Lt => x < y,
                _ => x <= y,
            }))
        }
        (BinOp::Add, N::I(x), N::I(y)) => Some(V::Int(x.wrapping_add(y))),
        (BinOp::Sub, N::I(x), N::I(y)) => Some(V::Int(x.wrapping_sub(y))),
        (BinOp::Mul, N::I(x), N::I(y)) => Some(V::Int(x.wrapping_mul(y))),
        (BinOp::Eq, N::I(x), N::I(y)) => Some(V::Bool(x == y)),
        (BinOp::Ne, N::I(x), N::I(y)) => Some(V::Bool(x != y)),
        (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div, N::D(_), _)
        | (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div, _, N::D(_)) => {
            let (x, y) = (a.f64(), b.f64());
            Some(V::Double(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                _ => x / y,
            }))
        }
        (BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le, N::D(_), _)
        | (BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le, _, N::D(_)) => {
            let (x, y) = (a.f64(), b.f64());
            Some(V::Bool(match op {
                BinOp::Gt => x > y,
                BinOp::Ge => x >= y,
                BinOp::Lt => x < y,
                _ => x <= y,
            }))
        }
        _ => None,
    }
}

fn two<'x, 'a>(args: &'x [V<'a>]) -> Result<(&'x V<'a>, &'x V<'a>), Ex> {
    match args {
        [a, b] => Ok((a, b)),
        _ => Err(Ex::iae("a comparator takes two arguments")),
    }
}
