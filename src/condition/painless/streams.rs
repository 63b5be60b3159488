//! `java.util.stream`, evaluated eagerly: scripts use finite pipelines
//! over lists, so laziness would change nothing they can observe but
//! `peek` ordering.

use std::rc::Rc;

use indexmap::IndexSet;

use super::builtins::{java_equals, sort_with};
use super::eval::{Ex, Interp, N, Tt, coerce, num};
use super::value::{Collector, Key, ListObj, MapObj, OptKind, Order, SetObj, StreamKind, V};

fn stream<'a>(kind: StreamKind, v: Vec<V<'a>>) -> V<'a> {
    V::Stream(Rc::new((kind, v)))
}

fn pred(v: &V, what: &str) -> Result<bool, Ex> {
    match v {
        V::Bool(b) => Ok(*b),
        other => Err(Ex::cce(format!(
            "{what} must return a boolean, not {}",
            other.type_name()
        ))),
    }
}

fn to_kind<'a>(v: V<'a>, kind: StreamKind) -> Result<V<'a>, Ex> {
    match kind {
        StreamKind::Obj => Ok(v),
        StreamKind::Int => coerce(v, Tt::Int),
        StreamKind::Long => coerce(v, Tt::Long),
        StreamKind::Double => coerce(v, Tt::Double),
    }
}

fn opt_kind(kind: StreamKind) -> OptKind {
    match kind {
        StreamKind::Obj => OptKind::Obj,
        StreamKind::Int => OptKind::Int,
        StreamKind::Long => OptKind::Long,
        StreamKind::Double => OptKind::Double,
    }
}

fn n_of(v: &V) -> Result<N, Ex> {
    num(v).ok_or_else(|| Ex::cce(format!("expected a number, not {}", v.type_name())))
}

/// Java's compensated (Kahan) sum of doubles, as `DoubleStream.sum`.
#[derive(Default)]
pub struct Kahan {
    sum: f64,
    comp: f64,
    simple: f64,
}

impl Kahan {
    /// Adds one term.
    pub fn add(&mut self, d: f64) {
        let tmp = d - self.comp;
        let velvel = self.sum + tmp;
        self.comp = (velvel - self.sum) - tmp;
        self.sum = velvel;
        self.simple += d;
    }

    /// The sum so far.
    pub fn total(&self) -> f64 {
        let tmp = self.sum + self.comp;
        if tmp.is_nan() && self.simple.is_infinite() {
            self.simple
        } else {
            tmp
        }
    }
}

fn kahan(items: &[V]) -> Result<f64, Ex> {
    let mut k = Kahan::default();
    for x in items {
        k.add(n_of(x)?.f64());
    }
    Ok(k.total())
}

/// A method on a stream of `kind` holding `items`.
pub fn method<'a>(
    it: &mut Interp<'_, 'a>,
    kind: StreamKind,
    items: &[V<'a>],
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let map_to = |it: &mut Interp<'_, 'a>, f: &V<'a>, k: StreamKind| -> Result<V<'a>, Ex> {
        let mut out = Vec::with_capacity(items.len());
        for x in items {
            out.push(to_kind(it.call(f, std::slice::from_ref(x))?, k)?);
        }
        Ok(stream(k, out))
    };
    Ok(match (name, args.as_slice()) {
        ("filter", [f]) => {
            let mut out = Vec::new();
            for x in items {
                if pred(&it.call(f, std::slice::from_ref(x))?, "filter's predicate")? {
                    out.push(x.clone());
                }
            }
            stream(kind, out)
        }
        ("map", [f]) => map_to(it, f, kind)?,
        ("mapToInt", [f]) => map_to(it, f, StreamKind::Int)?,
        ("mapToLong", [f]) => map_to(it, f, StreamKind::Long)?,
        ("mapToDouble", [f]) => map_to(it, f, StreamKind::Double)?,
        ("mapToObj", [f]) => map_to(it, f, StreamKind::Obj)?,
        ("boxed", []) => stream(StreamKind::Obj, items.to_vec()),
        ("asDoubleStream", []) => stream(
            StreamKind::Double,
            items
                .iter()
                .map(|x| coerce(x.clone(), Tt::Double))
                .collect::<Result<_, _>>()?,
        ),
        ("asLongStream", []) => stream(
            StreamKind::Long,
            items
                .iter()
                .map(|x| coerce(x.clone(), Tt::Long))
                .collect::<Result<_, _>>()?,
        ),
        ("flatMap", [f]) => {
            let mut out = Vec::new();
            for x in items {
                match it.call(f, std::slice::from_ref(x))? {
                    V::Stream(s) => out.extend(s.1.iter().cloned()),
                    V::Null => {}
                    other => {
                        return Err(Ex::cce(format!(
                            "flatMap's function must return a stream, not {}",
                            other.type_name()
                        )));
                    }
                }
                it.check_size(out.len())?;
            }
            stream(kind, out)
        }
        ("distinct", []) => {
            let mut out: Vec<V<'a>> = Vec::new();
            let mut seen: IndexSet<Key> = IndexSet::new();
            for x in items {
                match x.key() {
                    Some(k) => {
                        if seen.insert(k) {
                            out.push(x.clone());
                        }
                    }
                    None => {
                        if !out.iter().any(|y| java_equals(x, y)) {
                            out.push(x.clone());
                        }
                    }
                }
            }
            stream(kind, out)
        }
        ("sorted", []) => stream(kind, sort_with(it, items.to_vec(), None)?),
        ("sorted", [c]) => stream(kind, sort_with(it, items.to_vec(), Some(c))?),
        ("limit", [n]) => {
            let n = usize::try_from(n_of(n)?.i64())
                .map_err(|_| Ex::iae("limit must not be negative"))?;
            stream(kind, items.iter().take(n).cloned().collect())
        }
        ("skip", [n]) => {
            let n = usize::try_from(n_of(n)?.i64())
                .map_err(|_| Ex::iae("skip must not be negative"))?;
            stream(kind, items.iter().skip(n).cloned().collect())
        }
        ("peek", [f]) => {
            for x in items {
                it.call(f, std::slice::from_ref(x))?;
            }
            stream(kind, items.to_vec())
        }
        ("forEach", [f]) => {
            for x in items {
                it.call(f, std::slice::from_ref(x))?;
            }
            V::Null
        }
        ("count", []) => V::Long(i64::try_from(items.len()).unwrap_or(i64::MAX)),
        ("anyMatch", [f]) => {
            for x in items {
                if pred(
                    &it.call(f, std::slice::from_ref(x))?,
                    "anyMatch's predicate",
                )? {
                    return Ok(V::Bool(true));
                }
            }
            V::Bool(false)
        }
        ("allMatch", [f]) | ("noneMatch", [f]) => {
            let all = name == "allMatch";
            for x in items {
                let r = pred(&it.call(f, std::slice::from_ref(x))?, "the predicate")?;
                if (all && !r) || (!all && r) {
                    return Ok(V::Bool(false));
                }
            }
            V::Bool(true)
        }
        ("findFirst", []) | ("findAny", []) => {
            V::Opt(opt_kind(kind), items.first().cloned().map(Rc::new))
        }
        ("sum", []) => match kind {
            StreamKind::Int => {
                let mut t = 0i32;
                for x in items {
                    t = t.wrapping_add(n_of(x)?.i64() as i32);
                }
                V::Int(t)
            }
            StreamKind::Long => {
                let mut t = 0i64;
                for x in items {
                    t = t.wrapping_add(n_of(x)?.i64());
                }
                V::Long(t)
            }
            StreamKind::Double => V::Double(kahan(items)?),
            StreamKind::Obj => {
                return Err(Ex::iae(
                    "dynamic method [java.util.stream.ReferencePipeline, sum/0] not found; use mapToInt or mapToDouble first",
                ));
            }
        },
        ("average", []) if kind != StreamKind::Obj => {
            if items.is_empty() {
                V::Opt(OptKind::Double, None)
            } else {
                let total = match kind {
                    StreamKind::Double => kahan(items)?,
                    _ => {
                        let mut t = 0i64;
                        for x in items {
                            t = t.wrapping_add(n_of(x)?.i64());
                        }
                        t as f64
                    }
                };
                V::Opt(
                    OptKind::Double,
                    Some(Rc::new(V::Double(total / items.len() as f64))),
                )
            }
        }
        ("max", rest) | ("min", rest) => {
            if kind == StreamKind::Obj && rest.is_empty() {
                return Err(Ex::iae("max() and min() of a Stream need a comparator"));
            }
            let sorted = sort_with(it, items.to_vec(), rest.first())?;
            let pick = if name == "max" {
                // Java's max keeps the last of equal maxima for Stream, the first
                // for primitives; equal primitives are indistinguishable.
                sorted.last()
            } else {
                sorted.first()
            };
            V::Opt(opt_kind(kind), pick.cloned().map(Rc::new))
        }
        ("reduce", [id, f]) => {
            let mut acc = id.clone();
            for x in items {
                acc = to_kind(it.call(f, &[acc, x.clone()])?, kind)?;
            }
            acc
        }
        ("reduce", [f]) => {
            let mut iter = items.iter();
            match iter.next() {
                None => V::Opt(opt_kind(kind), None),
                Some(first) => {
                    let mut acc = first.clone();
                    for x in iter {
                        acc = to_kind(it.call(f, &[acc, x.clone()])?, kind)?;
                    }
                    V::Opt(opt_kind(kind), Some(Rc::new(acc)))
                }
            }
        }
        ("toArray", _) => V::List(Rc::new(std::cell::RefCell::new(ListObj {
            v: items.to_vec(),
            array: true,
        }))),
        ("collect", [V::Collector(c)]) => collect(it, items, c)?,
        ("iterator", []) => super::builtins::iter(items.to_vec()),
        _ => {
            return Err(Ex::iae(format!(
                "dynamic method [java.util.stream.Stream, {name}/{}] not found",
                args.len()
            )));
        }
    })
}

fn collect<'a>(it: &mut Interp<'_, 'a>, items: &[V<'a>], c: &Collector<'a>) -> Result<V<'a>, Ex> {
    Ok(match c {
        Collector::ToList => V::list(items.to_vec()),
        Collector::ToSet => {
            let mut s = IndexSet::new();
            for x in items {
                s.insert(x.key().ok_or_else(|| {
                    Ex::new(
                        "UnsupportedOperationException",
                        "a set of lists or maps is not supported",
                    )
                })?);
            }
            V::Set(Rc::new(std::cell::RefCell::new(SetObj {
                s,
                order: Order::Hash,
            })))
        }
        Collector::Counting => V::Long(i64::try_from(items.len()).unwrap_or(i64::MAX)),
        Collector::Joining(sep, pre, suf) => {
            let mut s = pre.clone();
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                match x.as_str() {
                    Some(t) => s.push_str(t),
                    None => {
                        return Err(Ex::cce(format!(
                            "class {} cannot be cast to class java.lang.CharSequence",
                            x.type_name()
                        )));
                    }
                }
                it.check_string(s.len())?;
            }
            s.push_str(suf);
            V::str(s)
        }
        Collector::ToMap(kf, vf, merge) => {
            let mut m = MapObj::new(Order::Hash);
            for x in items {
                let k = it.call(kf, std::slice::from_ref(x))?;
                let v = it.call(vf, std::slice::from_ref(x))?;
                if v.is_null() {
                    return Err(Ex::npe("toMap: a value is null"));
                }
                let key = k
                    .key()
                    .ok_or_else(|| Ex::iae("toMap keys must be strings, numbers or booleans"))?;
                let v = match (m.m.get(&key), merge) {
                    (Some(old), Some(f)) => it.call(f, &[old.clone(), v])?,
                    (Some(old), None) => {
                        return Err(Ex::new(
                            "IllegalStateException",
                            format!(
                                "Duplicate key {} (attempted merging values {} and {})",
                                k.java_string(),
                                old.java_string(),
                                v.java_string()
                            ),
                        ));
                    }
                    (None, _) => v,
                };
                m.m.insert(key, v);
                it.check_size(m.m.len())?;
            }
            V::map(m)
        }
    })
}
