//! The syntax tree a script parses to. Every node keeps its source span so
//! that run-time errors name the expression and its line and column.

use std::sync::Arc;

/// An interned local-variable name.
pub type Sym = u32;

/// A declared type. Painless has no generics; arrays nest.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// `def`, and every reference type that is not checked further.
    Def,
    /// `boolean`.
    Boolean,
    /// `byte`.
    Byte,
    /// `short`.
    Short,
    /// `char`.
    Char,
    /// `int`.
    Int,
    /// `long`.
    Long,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `void` (functions only).
    Void,
    /// A class by name: `String`, `List`, `Integer`, `Instant`, …
    Class(String),
    /// `T[]`.
    Array(Box<Ty>),
}

/// A literal.
#[derive(Debug, Clone)]
pub enum Lit {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// An int.
    Int(i32),
    /// A long.
    Long(i64),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// A string.
    Str(Arc<str>),
}

/// Binary operators (not `&&`, `||`, `?:`, which short-circuit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
    /// `<<`
    Shl,
    /// `>>`
    Shr,
    /// `>>>`
    Ushr,
    /// `&`
    BitAnd,
    /// `|`
    BitOr,
    /// `^`
    BitXor,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `===`
    RefEq,
    /// `!==`
    RefNe,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Ushr => ">>>",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::RefEq => "===",
            BinOp::RefNe => "!==",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// `-`
    Neg,
    /// `+`
    Plus,
    /// `!`
    Not,
    /// `~`
    BitNot,
}

/// A lambda: parameters and a body (an expression is a `return`).
#[derive(Debug)]
pub struct LambdaDef {
    /// Parameter names (types are not checked).
    pub params: Vec<Sym>,
    /// The body.
    pub body: Vec<Stmt>,
    /// Whether the body is one expression the fast path knows
    /// ([`super::fast::shape`]).
    pub fast: bool,
}

/// An expression with its span.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What it is.
    pub kind: ExprKind,
    /// Byte offset of its start.
    pub at: u32,
    /// Byte offset just past its end.
    pub end: u32,
}

/// Expressions.
#[derive(Debug, Clone)]
pub enum ExprKind {
    /// A literal.
    Lit(Lit),
    /// A local variable, `ctx` or `params`.
    Var(Sym),
    /// `obj.name` (a map key, an array's length or a getter).
    Field {
        /// The receiver.
        obj: Box<Expr>,
        /// The field.
        name: Arc<str>,
        /// `?.`
        null_safe: bool,
    },
    /// `obj[index]`.
    Index {
        /// The receiver.
        obj: Box<Expr>,
        /// The index or key.
        index: Box<Expr>,
    },
    /// `obj.name(args)`.
    Call {
        /// The receiver.
        obj: Box<Expr>,
        /// The method.
        name: Arc<str>,
        /// The arguments.
        args: Vec<Expr>,
        /// `?.`
        null_safe: bool,
    },
    /// `name(args)`: a function of the script.
    FnCall {
        /// Its index in the program's functions.
        func: usize,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `Class.NAME`.
    Static {
        /// The class.
        class: Arc<str>,
        /// The field.
        name: Arc<str>,
    },
    /// `Class.name(args)`.
    StaticCall {
        /// The class.
        class: Arc<str>,
        /// The method.
        name: Arc<str>,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `new Class(args)`.
    New {
        /// The class.
        class: Arc<str>,
        /// The arguments.
        args: Vec<Expr>,
    },
    /// `new T[n]` or `new T[] {a, b}`.
    NewArray {
        /// Element type.
        elem: Ty,
        /// The length, or
        len: Option<Box<Expr>>,
        /// the elements.
        items: Vec<Expr>,
    },
    /// `[a, b]`.
    List(Vec<Expr>),
    /// `[k: v]`, `[:]`.
    Map(Vec<(Expr, Expr)>),
    /// `x -> …`, `(a, b) -> {…}`.
    Lambda(Arc<LambdaDef>),
    /// `Class::method`, `this::fn`.
    MethodRef {
        /// The class, or `this`.
        class: Arc<str>,
        /// The method.
        name: Arc<str>,
    },
    /// A unary operation.
    Unary(UnOp, Box<Expr>),
    /// A binary operation.
    Binary(BinOp, Box<Expr>, Box<Expr>),
    /// `&&`.
    And(Box<Expr>, Box<Expr>),
    /// `||`.
    Or(Box<Expr>, Box<Expr>),
    /// `a ?: b`.
    Elvis(Box<Expr>, Box<Expr>),
    /// `c ? a : b`.
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
    /// `target = value`, `target op= value`.
    Assign {
        /// A variable, field or index.
        target: Box<Expr>,
        /// For compound assignment.
        op: Option<BinOp>,
        /// The value.
        value: Box<Expr>,
    },
    /// `++x`, `x--`, …
    IncDec {
        /// A variable, field or index.
        target: Box<Expr>,
        /// Prefix form (the new value is the result).
        prefix: bool,
        /// `++` rather than `--`.
        inc: bool,
    },
    /// `(T) e`.
    Cast(Ty, Box<Expr>),
    /// `e instanceof T`.
    InstanceOf(Box<Expr>, Ty),
}

/// Statements.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `T a = 1, b;`
    Decl(Ty, Vec<(Sym, Option<Expr>, u32)>),
    /// An expression statement.
    Expr(Expr),
    /// `if`.
    If(Expr, Box<Stmt>, Option<Box<Stmt>>),
    /// `while`.
    While(Expr, Box<Stmt>, u32),
    /// `do … while`.
    DoWhile(Box<Stmt>, Expr, u32),
    /// Classic `for`.
    For {
        /// Initialiser.
        init: Option<Box<Stmt>>,
        /// Condition.
        cond: Option<Expr>,
        /// Update expressions.
        update: Vec<Expr>,
        /// Body.
        body: Box<Stmt>,
        /// Position of `for`.
        at: u32,
    },
    /// `for (T x : e)`, `for (x in e)`.
    ForEach {
        /// The variable.
        var: Sym,
        /// Its declared type.
        ty: Ty,
        /// What is iterated.
        iter: Expr,
        /// Body.
        body: Box<Stmt>,
        /// Position of `for`.
        at: u32,
    },
    /// `{ … }`.
    Block(Vec<Stmt>),
    /// `return [e];`
    Return(Option<Expr>),
    /// `break;`
    Break,
    /// `continue;`
    Continue,
    /// `throw e;`
    Throw(Expr),
    /// `try { } catch (T e) { } …`
    Try(Vec<Stmt>, Vec<(String, Sym, Vec<Stmt>)>),
}

/// A function of the script.
#[derive(Debug)]
pub struct Func {
    /// Its name.
    pub name: String,
    /// Parameters, with their types.
    pub params: Vec<(Ty, Sym)>,
    /// Return type.
    pub ret: Ty,
    /// Body.
    pub body: Vec<Stmt>,
}

/// A parsed script.
#[derive(Debug)]
pub struct Program {
    /// The source, for error messages.
    pub src: Arc<str>,
    /// The functions, in order.
    pub funcs: Vec<Func>,
    /// The top-level statements.
    pub body: Vec<Stmt>,
    /// Interned variable names, by [`Sym`].
    pub names: Vec<String>,
    /// Whether the script can change a value it is given (assignments to
    /// fields or indices, mutating methods): `ctx` is then given back after
    /// the run.
    pub mutates: bool,
    /// Whether such a script may still read its input in place and copy
    /// only what it writes ([`super::cow`]).
    pub cow: bool,
}

/// The [`Sym`] of `ctx`.
pub const CTX: Sym = 0;
/// The [`Sym`] of `params`.
pub const PARAMS: Sym = 1;
