//! Fused stream pipelines: `list.stream()`, then `filter`/`map`/`mapToInt`/
//! `mapToLong`/`mapToDouble` stages, then `count`, `sum`, `anyMatch`,
//! `allMatch`, `noneMatch` or `collect(Collectors.toList())`, over a list of
//! the input, run as one loop over its JSON elements: no `Vec` per stage, no
//! closure, no value per element, each lambda evaluated in place on the
//! [`fast`] path with its parameter bound to a view of the element.
//!
//! It applies when every stage's argument is a lambda written in place
//! whose body is of the fast path's [`shape`](super::fast::shape). Like the
//! fast path it never throws: on anything it does not know (a lambda giving
//! up, a predicate that is not a boolean, a bound about to be hit) it
//! returns `None` and the pipeline runs in the general evaluator from the
//! list it was given (lambdas only read, so nothing has changed). The
//! general evaluator's streams are eager: every stage sees every element
//! before the terminal operation starts, so this does the same (a
//! `filter` before `anyMatch` is evaluated on every element).

use serde_json::Value;

use super::ast::{Expr, ExprKind, LambdaDef, Stmt};
use super::eval::{Interp, N};
use super::fast::{Fv, Scope, fast};
use super::streams::Kahan;
use super::value::{StreamKind, V};

/// A stage: what it does and its lambda's parameter and body.
#[derive(Clone, Copy)]
struct Stage<'p> {
    op: Op,
    def: &'p LambdaDef,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Filter,
    Map(Option<StreamKind>),
}

#[derive(Clone, Copy)]
enum Term<'p> {
    Count,
    Sum,
    Match(Match, &'p LambdaDef),
    ToList,
}

#[derive(Clone, Copy, PartialEq)]
enum Match {
    Any,
    All,
    None,
}

/// The most stages fused.
const MAX_STAGES: usize = 4;

/// A pipeline `src.stream().stages….terminal(…)`, if `e` is one that can
/// be fused: the source, the call nodes from `stream()` outwards, the
/// stages and the terminal operation.
pub struct Pipeline<'p> {
    /// The list streamed.
    pub src: &'p Expr,
    /// The `Call` nodes, `stream()` first, the terminal last.
    pub calls: Vec<&'p Expr>,
    stages: Vec<Stage<'p>>,
    term: Term<'p>,
}

fn one_param_lambda(args: &[Expr]) -> Option<&LambdaDef> {
    match args {
        [
            Expr {
                kind: ExprKind::Lambda(def),
                ..
            },
        ] if def.fast && def.params.len() == 1 => Some(def),
        _ => None,
    }
}

/// Recognises a fusable pipeline ending at the call `e`.
pub fn pipeline(e: &Expr) -> Option<Pipeline<'_>> {
    let ExprKind::Call {
        obj,
        name,
        args,
        null_safe: false,
    } = &e.kind
    else {
        return None;
    };
    let term = match (&**name, args.as_slice()) {
        ("count", []) => Term::Count,
        ("sum", []) => Term::Sum,
        ("anyMatch", a) => Term::Match(Match::Any, one_param_lambda(a)?),
        ("allMatch", a) => Term::Match(Match::All, one_param_lambda(a)?),
        ("noneMatch", a) => Term::Match(Match::None, one_param_lambda(a)?),
        (
            "collect",
            [
                Expr {
                    kind: ExprKind::StaticCall { class, name, args },
                    ..
                },
            ],
        ) if &**class == "Collectors" && &**name == "toList" && args.is_empty() => Term::ToList,
        _ => return None,
    };
    let mut calls = vec![e];
    let mut stages = Vec::new();
    let mut at: &Expr = obj;
    loop {
        let ExprKind::Call {
            obj,
            name,
            args,
            null_safe: false,
        } = &at.kind
        else {
            return None;
        };
        calls.push(at);
        if &**name == "stream" && args.is_empty() {
            stages.reverse();
            calls.reverse();
            return Some(Pipeline {
                src: obj,
                calls,
                stages,
                term,
            });
        }
        let op = match &**name {
            "filter" => Op::Filter,
            "map" => Op::Map(None),
            "mapToInt" => Op::Map(Some(StreamKind::Int)),
            "mapToLong" => Op::Map(Some(StreamKind::Long)),
            "mapToDouble" => Op::Map(Some(StreamKind::Double)),
            _ => return None,
        };
        if stages.len() == MAX_STAGES {
            return None;
        }
        stages.push(Stage {
            op,
            def: one_param_lambda(args)?,
        });
        at = obj;
    }
}

/// `coerce` of the general evaluator's streams, on a view.
fn to_kind(v: Fv<'_>, kind: StreamKind) -> Option<Fv<'_>> {
    Some(match (kind, v) {
        (StreamKind::Obj, v) => v,
        (StreamKind::Int, v @ Fv::Int(_)) => v,
        (StreamKind::Long, v @ Fv::Long(_)) => v,
        (StreamKind::Long, Fv::Int(i)) => Fv::Long(i64::from(i)),
        (StreamKind::Double, v @ Fv::Double(_)) => v,
        (StreamKind::Double, Fv::Int(i)) => Fv::Double(f64::from(i)),
        (StreamKind::Double, Fv::Long(l)) => Fv::Double(l as f64),
        (StreamKind::Double, Fv::Float(f)) => Fv::Double(f64::from(f)),
        _ => return None,
    })
}

/// A lambda's body on the fast path, its parameter bound to `arg`.
#[inline(always)]
fn apply<'a>(it: &Interp<'_, 'a>, def: &LambdaDef, arg: Fv<'a>) -> Option<Fv<'a>> {
    let ([param], [Stmt::Return(Some(body))]) = (def.params.as_slice(), def.body.as_slice()) else {
        return None;
    };
    fast(it, &Scope::Inline { param: *param, arg }, body)
}

/// Runs `p` over `items`, or `None` to leave it to the general evaluator.
/// Counts one step per lambda call, as the general evaluator does.
pub fn run<'a>(
    it: &mut Interp<'_, 'a>,
    p: &Pipeline<'_>,
    items: &'a [Value],
) -> Option<Result<V<'a>, super::eval::Ex>> {
    let n = u64::try_from(items.len()).ok()?;
    let stages = u64::try_from(p.stages.len()).ok()?;
    let most = n.checked_mul(stages + 1)?;
    if !it.has_room(most) {
        return None;
    }
    let mut kind = StreamKind::Obj;
    let mut kinds = [StreamKind::Obj; MAX_STAGES];
    for (s, k) in p.stages.iter().zip(kinds.iter_mut()) {
        if let Op::Map(Some(to)) = s.op {
            kind = to;
        }
        *k = kind;
    }
    let mut steps: u64 = 0;
    let mut count: i64 = 0;
    let (mut int, mut long, mut dbl) = (0i32, 0i64, Kahan::default());
    let mut kept: Vec<Fv<'a>> = Vec::new();
    let keep = matches!(p.term, Term::Match(..) | Term::ToList);
    let it_ref: &Interp<'_, 'a> = it;
    'items: for x in items {
        let mut cur = Fv::json(x);
        for (s, k) in p.stages.iter().zip(kinds) {
            steps += 1;
            let r = apply(it_ref, s.def, cur)?;
            match s.op {
                Op::Filter => match r {
                    Fv::Bool(true) => {}
                    Fv::Bool(false) => continue 'items,
                    _ => return None,
                },
                Op::Map(_) => cur = to_kind(r, k)?,
            }
        }
        count += 1;
        match p.term {
            Term::Sum => match (kind, cur.n()?) {
                (StreamKind::Int, N::I(i)) => int = int.wrapping_add(i),
                (StreamKind::Long, N::L(l)) => long = long.wrapping_add(l),
                (StreamKind::Double, N::D(d)) => dbl.add(d),
                _ => return None,
            },
            _ if keep => kept.push(cur),
            _ => {}
        }
    }
    let out = match p.term {
        Term::Count => V::Long(count),
        Term::Sum => match kind {
            StreamKind::Int => V::Int(int),
            StreamKind::Long => V::Long(long),
            StreamKind::Double => V::Double(dbl.total()),
            StreamKind::Obj => return None,
        },
        Term::ToList => V::list(kept.iter().map(|f| f.v()).collect()),
        Term::Match(m, def) => {
            // The general evaluator stops at the first decisive element.
            let mut decided = None;
            for x in &kept {
                steps += 1;
                let r = match apply(it_ref, def, *x)? {
                    Fv::Bool(b) => b,
                    _ => return None,
                };
                if (m == Match::Any && r) || (m != Match::Any && r == (m == Match::None)) {
                    decided = Some(m == Match::Any);
                    break;
                }
            }
            V::Bool(decided.unwrap_or(m != Match::Any))
        }
    };
    #[cfg(test)]
    FUSED.with(|f| f.set(f.get() + 1));
    Some(it.take_steps(steps).map(|()| out))
}

#[cfg(test)]
thread_local! {
    /// How many pipelines ran fused (for tests).
    static FUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    /// The result (or error class) and whether a pipeline ran fused.
    fn run(src: &str) -> (String, bool) {
        let payload = json!({"b": [
            {"key": "a", "doc_count": 10, "errors": {"doc_count": 3}, "big": 3_000_000_000i64, "x": null, "v": 0.1},
            {"key": "b", "doc_count": 4, "errors": {"doc_count": 0}, "big": 1, "x": 2.5, "v": 0.2},
            {"key": "c", "doc_count": 7, "errors": {"doc_count": 7}, "big": 2, "x": 1, "v": 1e300},
            {"key": "d", "doc_count": 2147483647, "errors": {"doc_count": 1}, "big": -5, "x": 4, "v": 0.3},
        ], "none": [], "n": [1, 2, 3]});
        let before = super::FUSED.with(|f| f.get());
        let out =
            super::super::fast::tests::run_on(&payload, &json!({"pct": 20, "name": "b"}), src);
        (out, super::FUSED.with(|f| f.get()) > before)
    }

    #[test]
    fn fused_pipelines_give_what_the_general_streams_give() {
        for (pipe, fused) in [
            (
                ".filter(b -> b.errors.doc_count * 100.0 / b.doc_count > params.pct).count()",
                true,
            ),
            (
                ".filter(b -> b.errors.doc_count > 0).filter(b -> b.key != 'c').count()",
                true,
            ),
            (
                ".filter(b -> b.doc_count > 5).anyMatch(b -> b.key == 'c')",
                true,
            ),
            (".anyMatch(b -> b.key == 'z')", true),
            (".allMatch(b -> b.doc_count > 1)", true),
            (".noneMatch(b -> b.big < 0)", true),
            (".mapToInt(b -> b.doc_count).sum()", true),
            (".mapToLong(b -> b.big).sum()", true),
            (".mapToLong(b -> b.doc_count).sum()", true),
            (".mapToDouble(b -> b.v).sum()", true),
            (
                ".mapToDouble(b -> b.doc_count).filter(d -> d > 5).sum()",
                true,
            ),
            (
                ".filter(b -> b.x != null).map(b -> b.key).collect(Collectors.toList())",
                true,
            ),
            (".map(b -> b.x ?: -1).collect(Collectors.toList())", true),
            (".map(b -> b.errors).collect(Collectors.toList())", true),
            (".map(b -> b.doc_count).count()", true),
            // A captured local, shadowed by nothing.
            ("XX", true),
            // Errors and what the fast path does not know: the general path.
            (".filter(b -> b.doc_count).count()", false),
            (".mapToInt(b -> b.big).sum()", false),
            (".mapToInt(b -> b.v).sum()", false),
            (".map(b -> b.doc_count).sum()", false),
            (".filter(b -> b.missing.y > 1).count()", false),
            (".filter(b -> b.x > 1).count()", false),
            (
                ".mapToInt(b -> b.doc_count / b.errors.doc_count).sum()",
                false,
            ),
            // Eager, as the general streams: the filter's error comes first.
            (".filter(b -> b.missing.y == 1).anyMatch(b -> true)", false),
            (".map(b -> b.key.length()).count()", false),
        ] {
            for list in ["ctx.payload.b", "ctx.payload.none"] {
                let src = if pipe == "XX" {
                    format!("int k = 3; {list}.stream().filter(b -> b.doc_count > k).count()")
                } else {
                    format!("{list}.stream(){pipe}")
                };
                // The same pipeline over a list the script made runs unfused.
                let general = src.replace(list, &format!("new ArrayList({list})"));
                let (got, was_fused) = run(&src);
                let (want, general_fused) = run(&general);
                assert!(!general_fused, "{general}");
                assert_eq!(got, want, "{src}");
                if list == "ctx.payload.b" {
                    assert_eq!(was_fused, fused, "{src} gave {got}");
                }
            }
        }
        assert_eq!(run("ctx.payload.b.stream().filter(b -> b.errors.doc_count * 100.0 / b.doc_count > params.pct).count() > 0").0, "true");
        assert_eq!(
            run("ctx.payload.n.stream().mapToInt(x -> x * x).sum()"),
            ("14".into(), true)
        );
    }

    #[test]
    fn fused_pipelines_count_their_steps() {
        let s = super::super::compile(
            "def l = ctx.payload.b; l.stream().filter(b -> b.doc_count > 1).count() + l.stream().filter(b -> b.doc_count > 1).count()",
        )
        .unwrap();
        let payload = json!({"b": (0..10).map(|i| json!({"doc_count": i})).collect::<Vec<_>>()});
        let ctx = json!({});
        let run = |max_steps| {
            s.run(
                super::super::Env {
                    payload: &payload,
                    ctx: &ctx,
                    params: &serde_json::Value::Null,
                    times: None,
                },
                super::super::Limits {
                    max_steps,
                    ..Default::default()
                },
            )
            .map(|o| o.java)
        };
        assert_eq!(run(20).unwrap(), "16");
        let e = run(15).unwrap_err();
        assert!(e.to_string().contains("loop iterations and calls"), "{e}");
    }
}
