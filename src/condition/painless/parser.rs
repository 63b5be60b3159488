//! Tokens to a [`Program`]. Anything outside the supported language is
//! refused here, by name and position, so that `check` reports it before a
//! watch ever runs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::PainlessError;
use super::ast::*;
use super::builtins;
use super::lexer::{Tok, Token, lex};

/// Deepest nesting of expressions and blocks: bounds the parser's stack.
const MAX_DEPTH: usize = 64;

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    syms: HashMap<String, Sym>,
    names: Vec<String>,
    funcs: HashMap<String, usize>,
    declared: HashSet<String>,
    mutates: bool,
    depth: usize,
}

/// Parses a script.
pub fn parse(src: &str) -> Result<Program, PainlessError> {
    let toks = lex(src)?;
    let mut p = Parser {
        src,
        toks,
        i: 0,
        syms: HashMap::new(),
        names: Vec::new(),
        funcs: HashMap::new(),
        declared: HashSet::new(),
        mutates: false,
        depth: 0,
    };
    p.intern("ctx");
    p.intern("params");
    p.prescan();
    let mut funcs: Vec<Option<Func>> = Vec::new();
    funcs.resize_with(p.funcs.len(), || None);
    let mut body = Vec::new();
    while p.peek() != &Tok::Eof {
        if p.at_function() {
            let (idx, f) = p.function()?;
            if let Some(slot) = funcs.get_mut(idx) {
                *slot = Some(f);
            }
        } else {
            body.push(p.statement()?);
        }
    }
    let funcs = funcs.into_iter().flatten().collect();
    let mut prog = Program {
        src: Arc::from(src),
        funcs,
        body,
        names: p.names,
        mutates: p.mutates,
        cow: false,
    };
    prog.cow = super::cow::eligible(&prog);
    Ok(prog)
}

/// A primitive type (or `def`) by name.
fn primitive(s: &str) -> Option<Ty> {
    Some(match s {
        "def" => Ty::Def,
        "boolean" => Ty::Boolean,
        "byte" => Ty::Byte,
        "short" => Ty::Short,
        "char" => Ty::Char,
        "int" => Ty::Int,
        "long" => Ty::Long,
        "float" => Ty::Float,
        "double" => Ty::Double,
        "void" => Ty::Void,
        _ => return None,
    })
}

fn is_primitive(s: &str) -> bool {
    primitive(s).is_some()
}

const KEYWORDS: &[&str] = &[
    "if",
    "else",
    "while",
    "do",
    "for",
    "in",
    "continue",
    "break",
    "return",
    "new",
    "try",
    "catch",
    "throw",
    "this",
    "instanceof",
    "true",
    "false",
    "null",
];

impl<'s> Parser<'s> {
    fn intern(&mut self, s: &str) -> Sym {
        if let Some(&x) = self.syms.get(s) {
            return x;
        }
        let x = Sym::try_from(self.names.len()).unwrap_or(Sym::MAX);
        self.names.push(s.to_owned());
        self.syms.insert(s.to_owned(), x);
        x
    }

    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, k: usize) -> &Tok {
        self.toks
            .get(self.i + k)
            .or(self.toks.last())
            .map(|t| &t.tok)
            .unwrap_or(&Tok::Eof)
    }

    fn pos(&self) -> u32 {
        self.toks.get(self.i).map(|t| t.at).unwrap_or(0)
    }

    fn prev_end(&self) -> u32 {
        self.i
            .checked_sub(1)
            .and_then(|k| self.toks.get(k))
            .map(|t| t.end)
            .unwrap_or(0)
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn is_p(&self, p: &str) -> bool {
        matches!(self.peek(), Tok::P(x) if *x == p)
    }

    fn is_p_at(&self, k: usize, p: &str) -> bool {
        matches!(self.peek_at(k), Tok::P(x) if *x == p)
    }

    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == k)
    }

    fn eat(&mut self, p: &str) -> bool {
        if self.is_p(p) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn err(&self, msg: impl Into<String>) -> PainlessError {
        PainlessError::syntax(self.src, self.pos(), msg)
    }

    fn expect(&mut self, p: &str) -> Result<(), PainlessError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{p}`, found {}", self.describe())))
        }
    }

    fn describe(&self) -> String {
        match self.peek() {
            Tok::Eof => "the end of the script".into(),
            Tok::Ident(s) => format!("`{s}`"),
            Tok::P(p) => format!("`{p}`"),
            Tok::Str(_) => "a string".into(),
            _ => "a number".into(),
        }
    }

    fn ident(&mut self) -> Result<String, PainlessError> {
        match self.peek() {
            Tok::Ident(s) if !KEYWORDS.contains(&s.as_str()) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => Err(self.err(format!("expected a name, found {}", self.describe()))),
        }
    }

    fn enter(&mut self) -> Result<(), PainlessError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err("the script nests too deeply"));
        }
        Ok(())
    }

    /// Finds the functions first, so that calls before a definition resolve.
    fn prescan(&mut self) {
        let mut depth = 0i32;
        let mut k = 0;
        while k < self.toks.len() {
            match &self.toks[k].tok {
                Tok::P("{") => depth += 1,
                Tok::P("}") => depth -= 1,
                _ => {}
            }
            if depth == 0 && self.type_len(k).is_some_and(|n| self.fn_head(k, n)) {
                let n = self.type_len(k).unwrap_or(0);
                if let Some(Tok::Ident(name)) = self.toks.get(k + n).map(|t| &t.tok) {
                    let idx = self.funcs.len();
                    self.funcs.entry(name.clone()).or_insert(idx);
                }
            }
            k += 1;
        }
    }

    fn fn_head(&self, k: usize, n: usize) -> bool {
        let prev_ok = k == 0
            || matches!(
                self.toks.get(k - 1).map(|t| &t.tok),
                Some(Tok::P(";" | "}"))
            );
        prev_ok
            && matches!(self.toks.get(k + n).map(|t| &t.tok), Some(Tok::Ident(s)) if !KEYWORDS.contains(&s.as_str()))
            && matches!(self.toks.get(k + n + 1).map(|t| &t.tok), Some(Tok::P("(")))
    }

    /// How many tokens a type starting at token `k` spans (`int`, `String[]`).
    fn type_len(&self, k: usize) -> Option<usize> {
        let Tok::Ident(s) = &self.toks.get(k)?.tok else {
            return None;
        };
        if !(is_primitive(s) || builtins::is_type(s)) {
            return None;
        }
        let mut n = 1;
        while matches!(self.toks.get(k + n).map(|t| &t.tok), Some(Tok::P("[")))
            && matches!(self.toks.get(k + n + 1).map(|t| &t.tok), Some(Tok::P("]")))
        {
            n += 2;
        }
        Some(n)
    }

    fn at_function(&self) -> bool {
        self.type_len(self.i).is_some_and(|n| {
            self.fn_head(self.i, n)
                && matches!(self.peek_at(n), Tok::Ident(s) if self.funcs.contains_key(s))
        })
    }

    fn ty(&mut self) -> Result<Ty, PainlessError> {
        let name = match self.bump() {
            Tok::Ident(s) => s,
            _ => return Err(self.err("expected a type")),
        };
        let mut t = primitive(&name).unwrap_or(Ty::Class(name));
        while self.is_p("[") && self.is_p_at(1, "]") {
            self.i += 2;
            t = Ty::Array(Box::new(t));
        }
        Ok(t)
    }

    fn function(&mut self) -> Result<(usize, Func), PainlessError> {
        let ret = self.ty()?;
        let name = self.ident()?;
        let idx = self.funcs.get(&name).copied().unwrap_or(0);
        self.expect("(")?;
        let mut params = Vec::new();
        while !self.is_p(")") {
            if self.type_len(self.i).is_none() {
                return Err(self.err(format!(
                    "expected a parameter type in function `{name}`, found {}",
                    self.describe()
                )));
            }
            let t = self.ty()?;
            let n = self.ident()?;
            self.declared.insert(n.clone());
            params.push((t, self.intern(&n)));
            if !self.eat(",") {
                break;
            }
        }
        self.expect(")")?;
        let body = self.block()?;
        Ok((
            idx,
            Func {
                name,
                params,
                ret,
                body,
            },
        ))
    }

    fn block(&mut self) -> Result<Vec<Stmt>, PainlessError> {
        self.expect("{")?;
        self.enter()?;
        let mut out = Vec::new();
        while !self.is_p("}") {
            if self.peek() == &Tok::Eof {
                return Err(self.err("expected `}` before the end of the script"));
            }
            out.push(self.statement()?);
        }
        self.i += 1;
        self.depth -= 1;
        Ok(out)
    }

    /// A statement's terminating `;`, optional before `}` and at the end.
    fn end_stmt(&mut self) -> Result<(), PainlessError> {
        if self.eat(";") || self.is_p("}") || self.peek() == &Tok::Eof {
            Ok(())
        } else {
            Err(self.err(format!("expected `;`, found {}", self.describe())))
        }
    }

    fn body_stmt(&mut self) -> Result<Box<Stmt>, PainlessError> {
        if self.eat(";") {
            return Ok(Box::new(Stmt::Block(Vec::new())));
        }
        Ok(Box::new(self.statement()?))
    }

    fn at_decl(&self) -> bool {
        self.type_len(self.i).is_some_and(
            |n| matches!(self.peek_at(n), Tok::Ident(s) if !KEYWORDS.contains(&s.as_str())),
        )
    }

    fn decl(&mut self) -> Result<Stmt, PainlessError> {
        let t = self.ty()?;
        let mut vars = Vec::new();
        loop {
            let at = self.pos();
            let name = self.ident()?;
            self.declared.insert(name.clone());
            let s = self.intern(&name);
            let init = if self.eat("=") {
                Some(self.expr()?)
            } else {
                None
            };
            vars.push((s, init, at));
            if !self.eat(",") {
                break;
            }
        }
        Ok(Stmt::Decl(t, vars))
    }

    fn statement(&mut self) -> Result<Stmt, PainlessError> {
        self.enter()?;
        let s = self.statement_inner();
        self.depth -= 1;
        s
    }

    fn statement_inner(&mut self) -> Result<Stmt, PainlessError> {
        if self.is_p("{") {
            return Ok(Stmt::Block(self.block()?));
        }
        let at = self.pos();
        if let Tok::Ident(k) = self.peek().clone() {
            match k.as_str() {
                "if" => {
                    self.i += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    let then = self.body_stmt()?;
                    let els = if self.is_kw("else") {
                        self.i += 1;
                        Some(self.body_stmt()?)
                    } else {
                        None
                    };
                    return Ok(Stmt::If(c, then, els));
                }
                "while" => {
                    self.i += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    let b = self.body_stmt()?;
                    return Ok(Stmt::While(c, b, at));
                }
                "do" => {
                    self.i += 1;
                    let b = self.body_stmt()?;
                    if !self.is_kw("while") {
                        return Err(self.err("expected `while` after a `do` block"));
                    }
                    self.i += 1;
                    self.expect("(")?;
                    let c = self.expr()?;
                    self.expect(")")?;
                    self.end_stmt()?;
                    return Ok(Stmt::DoWhile(b, c, at));
                }
                "for" => return self.for_stmt(at),
                "return" => {
                    self.i += 1;
                    let e = if self.is_p(";") || self.is_p("}") || self.peek() == &Tok::Eof {
                        None
                    } else {
                        Some(self.expr()?)
                    };
                    self.end_stmt()?;
                    return Ok(Stmt::Return(e));
                }
                "break" => {
                    self.i += 1;
                    self.end_stmt()?;
                    return Ok(Stmt::Break);
                }
                "continue" => {
                    self.i += 1;
                    self.end_stmt()?;
                    return Ok(Stmt::Continue);
                }
                "throw" => {
                    self.i += 1;
                    let e = self.expr()?;
                    self.end_stmt()?;
                    return Ok(Stmt::Throw(e));
                }
                "try" => {
                    self.i += 1;
                    let body = self.block()?;
                    let mut catches = Vec::new();
                    while self.is_kw("catch") {
                        self.i += 1;
                        self.expect("(")?;
                        let class = self.ident()?;
                        let name = self.ident()?;
                        self.declared.insert(name.clone());
                        let s = self.intern(&name);
                        self.expect(")")?;
                        catches.push((class, s, self.block()?));
                    }
                    if catches.is_empty() {
                        return Err(self.err("expected `catch` after a `try` block"));
                    }
                    return Ok(Stmt::Try(body, catches));
                }
                _ => {}
            }
        }
        if self.at_decl() {
            let d = self.decl()?;
            self.end_stmt()?;
            return Ok(d);
        }
        let e = self.expr()?;
        self.end_stmt()?;
        Ok(Stmt::Expr(e))
    }

    fn for_stmt(&mut self, at: u32) -> Result<Stmt, PainlessError> {
        self.i += 1;
        self.expect("(")?;
        // for (x in e)
        if matches!(self.peek(), Tok::Ident(_))
            && matches!(self.peek_at(1), Tok::Ident(s) if s == "in")
        {
            let name = self.ident()?;
            self.declared.insert(name.clone());
            let var = self.intern(&name);
            self.i += 1;
            let iter = self.expr()?;
            self.expect(")")?;
            let body = self.body_stmt()?;
            return Ok(Stmt::ForEach {
                var,
                ty: Ty::Def,
                iter,
                body,
                at,
            });
        }
        // for (T x : e)
        if let Some(n) = self.type_len(self.i)
            && matches!(self.peek_at(n), Tok::Ident(_))
            && self.is_p_at(n + 1, ":")
        {
            let ty = self.ty()?;
            let name = self.ident()?;
            self.declared.insert(name.clone());
            let var = self.intern(&name);
            self.expect(":")?;
            let iter = self.expr()?;
            self.expect(")")?;
            let body = self.body_stmt()?;
            return Ok(Stmt::ForEach {
                var,
                ty,
                iter,
                body,
                at,
            });
        }
        let init = if self.is_p(";") {
            None
        } else if self.at_decl() {
            Some(Box::new(self.decl()?))
        } else {
            Some(Box::new(Stmt::Expr(self.expr()?)))
        };
        self.expect(";")?;
        let cond = if self.is_p(";") {
            None
        } else {
            Some(self.expr()?)
        };
        self.expect(";")?;
        let mut update = Vec::new();
        if !self.is_p(")") {
            update.push(self.expr()?);
        }
        self.expect(")")?;
        let body = self.body_stmt()?;
        Ok(Stmt::For {
            init,
            cond,
            update,
            body,
            at,
        })
    }

    fn mk(&self, kind: ExprKind, at: u32) -> Expr {
        Expr {
            kind,
            at,
            end: self.prev_end(),
        }
    }

    /// An expression (assignment is the loosest binding).
    pub fn expr(&mut self) -> Result<Expr, PainlessError> {
        self.enter()?;
        let e = self.assignment();
        self.depth -= 1;
        e
    }

    fn assignment(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        let lhs = self.conditional()?;
        let op = match self.peek() {
            Tok::P("=") => None,
            Tok::P("+=") => Some(BinOp::Add),
            Tok::P("-=") => Some(BinOp::Sub),
            Tok::P("*=") => Some(BinOp::Mul),
            Tok::P("/=") => Some(BinOp::Div),
            Tok::P("%=") => Some(BinOp::Rem),
            Tok::P("&=") => Some(BinOp::BitAnd),
            Tok::P("|=") => Some(BinOp::BitOr),
            Tok::P("^=") => Some(BinOp::BitXor),
            Tok::P("<<=") => Some(BinOp::Shl),
            Tok::P(">>=") => Some(BinOp::Shr),
            Tok::P(">>>=") => Some(BinOp::Ushr),
            _ => return Ok(lhs),
        };
        self.check_target(&lhs)?;
        self.i += 1;
        let value = self.expr()?;
        Ok(self.mk(
            ExprKind::Assign {
                target: Box::new(lhs),
                op,
                value: Box::new(value),
            },
            at,
        ))
    }

    fn check_target(&mut self, e: &Expr) -> Result<(), PainlessError> {
        match e.kind {
            ExprKind::Var(_) => Ok(()),
            ExprKind::Field { .. } | ExprKind::Index { .. } => {
                self.mutates = true;
                Ok(())
            }
            _ => Err(PainlessError::syntax(
                self.src,
                e.at,
                "only a variable, a field or an element can be assigned to",
            )),
        }
    }

    fn conditional(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        let c = self.elvis()?;
        if self.eat("?") {
            let a = self.conditional()?;
            self.expect(":")?;
            let b = self.conditional()?;
            return Ok(self.mk(ExprKind::Cond(Box::new(c), Box::new(a), Box::new(b)), at));
        }
        Ok(c)
    }

    fn elvis(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        let a = self.binary(0)?;
        if self.eat("?:") {
            self.enter()?;
            let b = self.elvis();
            self.depth -= 1;
            return Ok(self.mk(ExprKind::Elvis(Box::new(a), Box::new(b?)), at));
        }
        Ok(a)
    }

    /// Binary operators by precedence level, loosest first.
    fn binary(&mut self, level: usize) -> Result<Expr, PainlessError> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["|"],
            &["^"],
            &["&"],
            &["==", "!=", "===", "!=="],
            &["<", "<=", ">", ">=", "instanceof"],
            &["<<", ">>", ">>>"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        let Some(ops) = LEVELS.get(level) else {
            return self.unary();
        };
        let at = self.pos();
        let mut lhs = self.binary(level + 1)?;
        loop {
            let op = match self.peek() {
                Tok::P(p) if ops.contains(p) => *p,
                Tok::Ident(s) if s == "instanceof" && ops.contains(&"instanceof") => "instanceof",
                _ => return Ok(lhs),
            };
            self.i += 1;
            if op == "instanceof" {
                let t = self.ty()?;
                lhs = self.mk(ExprKind::InstanceOf(Box::new(lhs), t), at);
                continue;
            }
            self.enter()?;
            let rhs = self.binary(level + 1);
            self.depth -= 1;
            let rhs = Box::new(rhs?);
            let l = Box::new(lhs);
            let kind = match op {
                "||" => ExprKind::Or(l, rhs),
                "&&" => ExprKind::And(l, rhs),
                _ => ExprKind::Binary(
                    match op {
                        "|" => BinOp::BitOr,
                        "^" => BinOp::BitXor,
                        "&" => BinOp::BitAnd,
                        "==" => BinOp::Eq,
                        "!=" => BinOp::Ne,
                        "===" => BinOp::RefEq,
                        "!==" => BinOp::RefNe,
                        "<" => BinOp::Lt,
                        "<=" => BinOp::Le,
                        ">" => BinOp::Gt,
                        ">=" => BinOp::Ge,
                        "<<" => BinOp::Shl,
                        ">>" => BinOp::Shr,
                        ">>>" => BinOp::Ushr,
                        "+" => BinOp::Add,
                        "-" => BinOp::Sub,
                        "*" => BinOp::Mul,
                        "/" => BinOp::Div,
                        _ => BinOp::Rem,
                    },
                    l,
                    rhs,
                ),
            };
            lhs = self.mk(kind, at);
        }
    }

    fn unary(&mut self) -> Result<Expr, PainlessError> {
        self.enter()?;
        let r = self.unary_inner();
        self.depth -= 1;
        r
    }

    fn unary_inner(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        let op = match self.peek() {
            Tok::P("-") => Some(UnOp::Neg),
            Tok::P("+") => Some(UnOp::Plus),
            Tok::P("!") => Some(UnOp::Not),
            Tok::P("~") => Some(UnOp::BitNot),
            Tok::P("++") | Tok::P("--") => {
                let inc = self.is_p("++");
                self.i += 1;
                let t = self.unary()?;
                self.check_target(&t)?;
                return Ok(self.mk(
                    ExprKind::IncDec {
                        target: Box::new(t),
                        prefix: true,
                        inc,
                    },
                    at,
                ));
            }
            _ => None,
        };
        if let Some(op) = op {
            self.i += 1;
            // -2147483648 and -9223372036854775808L.
            if op == UnOp::Neg {
                match self.peek().clone() {
                    Tok::Long(2_147_483_648) if !self.long_suffix() => {
                        self.i += 1;
                        return self.postfix_from(self.mk(ExprKind::Lit(Lit::Int(i32::MIN)), at));
                    }
                    _ => {}
                }
            }
            let e = self.unary()?;
            return Ok(self.mk(ExprKind::Unary(op, Box::new(e)), at));
        }
        if let Some(t) = self.cast_type() {
            let e = self.unary()?;
            return Ok(self.mk(ExprKind::Cast(t, Box::new(e)), at));
        }
        self.postfix()
    }

    fn long_suffix(&self) -> bool {
        self.toks
            .get(self.i)
            .map(|t| self.src.get(t.at as usize..t.end as usize).unwrap_or(""))
            .is_some_and(|s| s.ends_with(['l', 'L']))
    }

    /// `(Type)` followed by an operand: consumes it and returns the type.
    fn cast_type(&mut self) -> Option<Ty> {
        if !self.is_p("(") {
            return None;
        }
        let n = self.type_len(self.i + 1)?;
        if !self.is_p_at(n + 1, ")") {
            return None;
        }
        if let Tok::Ident(s) = self.peek_at(1)
            && self.declared.contains(s)
        {
            return None;
        }
        let operand = match self.peek_at(n + 2) {
            Tok::Ident(s) => s != "instanceof",
            Tok::P(p) => matches!(*p, "(" | "!" | "~" | "[" | "-" | "+"),
            Tok::Eof => false,
            _ => true,
        };
        if !operand {
            return None;
        }
        self.i += 1;
        let t = self.ty().ok()?;
        self.i += 1;
        Some(t)
    }

    fn postfix(&mut self) -> Result<Expr, PainlessError> {
        let p = self.primary()?;
        self.postfix_from(p)
    }

    fn postfix_from(&mut self, mut e: Expr) -> Result<Expr, PainlessError> {
        let at = e.at;
        loop {
            if self.is_p(".") || self.is_p("?.") {
                let null_safe = self.is_p("?.");
                self.i += 1;
                let name_at = self.pos();
                let name: Arc<str> = match self.bump() {
                    Tok::Ident(s) => Arc::from(s.as_str()),
                    Tok::Int(n) => Arc::from(n.to_string().as_str()),
                    _ => {
                        return Err(PainlessError::syntax(
                            self.src,
                            name_at,
                            "expected a name after `.`",
                        ));
                    }
                };
                if self.is_p("(") {
                    let args = self.args()?;
                    if !builtins::is_method(&name) {
                        return Err(PainlessError::unsupported(
                            self.src,
                            name_at,
                            format!("{name}()"),
                        ));
                    }
                    if builtins::is_mutating(&name) {
                        self.mutates = true;
                    }
                    e = self.mk(
                        ExprKind::Call {
                            obj: Box::new(e),
                            name,
                            args,
                            null_safe,
                        },
                        at,
                    );
                } else {
                    e = self.mk(
                        ExprKind::Field {
                            obj: Box::new(e),
                            name,
                            null_safe,
                        },
                        at,
                    );
                }
            } else if self.is_p("[") {
                self.i += 1;
                let index = self.expr()?;
                self.expect("]")?;
                e = self.mk(
                    ExprKind::Index {
                        obj: Box::new(e),
                        index: Box::new(index),
                    },
                    at,
                );
            } else if self.is_p("++") || self.is_p("--") {
                let inc = self.is_p("++");
                self.check_target(&e)?;
                self.i += 1;
                e = self.mk(
                    ExprKind::IncDec {
                        target: Box::new(e),
                        prefix: false,
                        inc,
                    },
                    at,
                );
            } else {
                return Ok(e);
            }
        }
    }

    fn args(&mut self) -> Result<Vec<Expr>, PainlessError> {
        self.expect("(")?;
        let mut out = Vec::new();
        while !self.is_p(")") {
            out.push(self.expr()?);
            if !self.eat(",") {
                break;
            }
        }
        self.expect(")")?;
        Ok(out)
    }

    /// Whether a lambda starts here: `x ->`, `() ->`, `(a, b) ->`, `(def a) ->`.
    fn at_lambda(&self) -> bool {
        if matches!(self.peek(), Tok::Ident(_)) && self.is_p_at(1, "->") {
            return true;
        }
        if !self.is_p("(") {
            return false;
        }
        let mut k = 1;
        loop {
            match self.peek_at(k) {
                Tok::Ident(_) | Tok::P(",") => k += 1,
                Tok::P("[") | Tok::P("]") => k += 1,
                Tok::P(")") => return self.is_p_at(k + 1, "->"),
                _ => return false,
            }
        }
    }

    fn lambda(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        let mut params = Vec::new();
        if self.eat("(") {
            while !self.is_p(")") {
                // An optional type before the name.
                if let Some(n) = self.type_len(self.i)
                    && matches!(self.peek_at(n), Tok::Ident(_))
                {
                    self.ty()?;
                }
                let name = self.ident()?;
                self.declared.insert(name.clone());
                params.push(self.intern(&name));
                if !self.eat(",") {
                    break;
                }
            }
            self.expect(")")?;
        } else {
            let name = self.ident()?;
            self.declared.insert(name.clone());
            params.push(self.intern(&name));
        }
        self.expect("->")?;
        let body = if self.is_p("{") {
            self.block()?
        } else {
            let e = self.expr()?;
            vec![Stmt::Return(Some(e))]
        };
        let fast = super::fast::shape(&body);
        Ok(self.mk(
            ExprKind::Lambda(Arc::new(LambdaDef { params, body, fast })),
            at,
        ))
    }

    fn is_class_ref(&self, name: &str) -> bool {
        !self.declared.contains(name)
            && name.starts_with(|c: char| c.is_ascii_uppercase())
            && (self.is_p_at(1, ".") || self.is_p_at(1, "::"))
    }

    fn primary(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        if self.at_lambda() {
            return self.lambda();
        }
        let lit = |l| ExprKind::Lit(l);
        match self.peek().clone() {
            Tok::Int(n) => {
                self.i += 1;
                Ok(self.mk(lit(Lit::Int(n)), at))
            }
            Tok::Long(n) => {
                if n == 2_147_483_648 && !self.long_suffix() {
                    return Err(self.err("int literal out of range"));
                }
                self.i += 1;
                Ok(self.mk(lit(Lit::Long(n)), at))
            }
            Tok::Float(f) => {
                self.i += 1;
                Ok(self.mk(lit(Lit::Float(f)), at))
            }
            Tok::Double(f) => {
                self.i += 1;
                Ok(self.mk(lit(Lit::Double(f)), at))
            }
            Tok::Str(s) => {
                self.i += 1;
                Ok(self.mk(lit(Lit::Str(Arc::from(s.as_str()))), at))
            }
            Tok::P("(") => {
                self.i += 1;
                let e = self.expr()?;
                self.expect(")")?;
                Ok(Expr {
                    end: self.prev_end(),
                    ..e
                })
            }
            Tok::P("[") => self.collection_literal(),
            Tok::Ident(name) => self.ident_primary(name, at),
            Tok::Eof => Err(self.err("the script ends in the middle of an expression")),
            _ => Err(self.err(format!("unexpected {}", self.describe()))),
        }
    }

    fn ident_primary(&mut self, name: String, at: u32) -> Result<Expr, PainlessError> {
        match name.as_str() {
            "true" | "false" => {
                self.i += 1;
                return Ok(self.mk(ExprKind::Lit(Lit::Bool(name == "true")), at));
            }
            "null" => {
                self.i += 1;
                return Ok(self.mk(ExprKind::Lit(Lit::Null), at));
            }
            "new" => return self.new_expr(at),
            "this" => {
                self.i += 1;
                self.expect("::")?;
                let m = self.ident()?;
                if !self.funcs.contains_key(&m) {
                    return Err(PainlessError::unsupported(
                        self.src,
                        at,
                        format!("this::{m}"),
                    ));
                }
                return Ok(self.mk(
                    ExprKind::MethodRef {
                        class: Arc::from("this"),
                        name: Arc::from(m.as_str()),
                    },
                    at,
                ));
            }
            _ => {}
        }
        if KEYWORDS.contains(&name.as_str()) {
            return Err(self.err(format!("unexpected `{name}`")));
        }
        if self.is_class_ref(&name) {
            return self.static_ref(name, at);
        }
        self.i += 1;
        if self.is_p("(") {
            let Some(&func) = self.funcs.get(&name) else {
                return Err(PainlessError::unsupported(
                    self.src,
                    at,
                    format!("{name}() (no such function in the script)"),
                ));
            };
            let args = self.args()?;
            return Ok(self.mk(ExprKind::FnCall { func, args }, at));
        }
        let s = self.intern(&name);
        Ok(self.mk(ExprKind::Var(s), at))
    }

    fn static_ref(&mut self, class: String, at: u32) -> Result<Expr, PainlessError> {
        self.i += 1;
        if self.eat("::") {
            let m = match self.bump() {
                Tok::Ident(s) => s,
                _ => return Err(self.err("expected a method name after `::`")),
            };
            if !builtins::is_static(&class, &m, true) && !builtins::is_method(&m) {
                return Err(PainlessError::unsupported(
                    self.src,
                    at,
                    format!("{class}::{m}"),
                ));
            }
            return Ok(self.mk(
                ExprKind::MethodRef {
                    class: Arc::from(class.as_str()),
                    name: Arc::from(m.as_str()),
                },
                at,
            ));
        }
        self.expect(".")?;
        let name_at = self.pos();
        let name = self.ident()?;
        let call = self.is_p("(");
        if !builtins::is_type(&class) {
            return Err(PainlessError::unsupported(self.src, at, class));
        }
        if !builtins::is_static(&class, &name, call) {
            return Err(PainlessError::unsupported(
                self.src,
                name_at.min(at),
                format!("{class}.{name}"),
            ));
        }
        let class: Arc<str> = Arc::from(class.as_str());
        let name: Arc<str> = Arc::from(name.as_str());
        if call {
            if &*class == "Collections" && matches!(&*name, "sort" | "reverse" | "shuffle" | "swap")
            {
                self.mutates = true;
            }
            let args = self.args()?;
            Ok(self.mk(ExprKind::StaticCall { class, name, args }, at))
        } else {
            Ok(self.mk(ExprKind::Static { class, name }, at))
        }
    }

    fn new_expr(&mut self, at: u32) -> Result<Expr, PainlessError> {
        self.i += 1;
        let class_at = self.pos();
        let class = self.ident()?;
        if self.is_p("[") {
            let elem = match primitive(&class) {
                Some(Ty::Void) => {
                    return Err(PainlessError::unsupported(
                        self.src,
                        class_at,
                        "new void[]".to_owned(),
                    ));
                }
                Some(t) => t,
                None if builtins::is_type(&class) => Ty::Class(class.clone()),
                _ => {
                    return Err(PainlessError::unsupported(
                        self.src,
                        class_at,
                        format!("new {class}[]"),
                    ));
                }
            };
            self.i += 1;
            if self.eat("]") {
                while self.is_p("[") && self.is_p_at(1, "]") {
                    self.i += 2;
                }
                self.expect("{")?;
                let mut items = Vec::new();
                while !self.is_p("}") {
                    items.push(self.expr()?);
                    if !self.eat(",") {
                        break;
                    }
                }
                self.expect("}")?;
                return Ok(self.mk(
                    ExprKind::NewArray {
                        elem,
                        len: None,
                        items,
                    },
                    at,
                ));
            }
            let len = self.expr()?;
            self.expect("]")?;
            if self.is_p("[") {
                return Err(PainlessError::unsupported(
                    self.src,
                    at,
                    "multi-dimensional arrays".to_owned(),
                ));
            }
            return Ok(self.mk(
                ExprKind::NewArray {
                    elem,
                    len: Some(Box::new(len)),
                    items: Vec::new(),
                },
                at,
            ));
        }
        if !builtins::can_new(&class) {
            return Err(PainlessError::unsupported(
                self.src,
                class_at,
                format!("new {class}"),
            ));
        }
        let args = self.args()?;
        let e = self.mk(
            ExprKind::New {
                class: Arc::from(class.as_str()),
                args,
            },
            at,
        );
        Ok(e)
    }

    fn collection_literal(&mut self) -> Result<Expr, PainlessError> {
        let at = self.pos();
        self.i += 1;
        if self.eat(":") {
            self.expect("]")?;
            return Ok(self.mk(ExprKind::Map(Vec::new()), at));
        }
        if self.eat("]") {
            return Ok(self.mk(ExprKind::List(Vec::new()), at));
        }
        let first = self.expr()?;
        if self.eat(":") {
            let v = self.expr()?;
            let mut pairs = vec![(first, v)];
            while self.eat(",") {
                if self.is_p("]") {
                    break;
                }
                let k = self.expr()?;
                self.expect(":")?;
                let v = self.expr()?;
                pairs.push((k, v));
            }
            self.expect("]")?;
            return Ok(self.mk(ExprKind::Map(pairs), at));
        }
        let mut items = vec![first];
        while self.eat(",") {
            if self.is_p("]") {
                break;
            }
            items.push(self.expr()?);
        }
        self.expect("]")?;
        Ok(self.mk(ExprKind::List(items), at))
    }
}
