//! Run-time values, with Java's semantics: boxed numbers keep their type,
//! collections are shared references, `toString` is Java's.
//!
//! Scripts read the JSON they are given in place (`JMap`, `JList`, `JStr`):
//! a stream over a thousand buckets then allocates nothing per bucket. A
//! script that changes its input copies what it writes ([`super::cow`]).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use indexmap::{IndexMap, IndexSet};
use serde_json::{Map, Number, Value};

use super::ast::LambdaDef;
use super::time::TimeV;

/// `m[name]` on a map of the input: a linear scan for the small maps
/// search responses are made of (buckets, hits), faster than hashing.
#[inline]
pub fn jget<'a>(m: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if m.len() <= 12 {
        let name = name.as_bytes();
        m.iter()
            .find(|(k, _)| same_bytes(k.as_bytes(), name))
            .map(|(_, v)| v)
    } else {
        m.get(name)
    }
}

/// Where each field read of the script last found its key in a map of the
/// input: the buckets of an aggregation share their key order, so a stream
/// over them checks that position first instead of scanning (which touches
/// every entry before it). Slots are picked by the address of the read's
/// node in the syntax tree (`site`), so each field read of the script has
/// its own; a wrong guess costs one comparison.
#[derive(Debug, Default)]
pub struct Hints([std::cell::Cell<(usize, usize)>; 16]);

impl Hints {
    /// [`jget`], trying the remembered position first.
    #[inline]
    pub fn get<'v>(&self, m: &'v Map<String, Value>, name: &str, site: usize) -> Option<&'v Value> {
        if m.len() > 12 {
            return m.get(name);
        }
        let at = site;
        // Nodes are at least 8-byte aligned and a few words apart.
        let slot = self.0.get((at >> 4) % 16)?;
        let (p, i) = slot.get();
        if p == at
            && let Some((k, v)) = m.iter().nth(i)
            && same_bytes(k.as_bytes(), name.as_bytes())
        {
            return Some(v);
        }
        let (i, (_, v)) = m
            .iter()
            .enumerate()
            .find(|(_, (k, _))| same_bytes(k.as_bytes(), name.as_bytes()))?;
        slot.set((at, i));
        Some(v)
    }
}

/// `a == b` for the short keys of search responses, without a call to
/// `memcmp`: two overlapping word loads cover 4 to 16 bytes.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    fn word(s: &[u8], at: usize) -> u64 {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_ne_bytes)
    }
    fn half(s: &[u8], at: usize) -> u32 {
        s.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, u32::from_ne_bytes)
    }
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        _ => a == b,
    }
}

/// A map key: the values Java maps are keyed by in scripts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// `null`.
    Null,
    /// A Boolean.
    Bool(bool),
    /// An Integer.
    Int(i32),
    /// A Long.
    Long(i64),
    /// A Double, by its bits.
    Double(u64),
    /// A Character.
    Char(u16),
    /// A String.
    Str(Rc<str>),
}

impl Key {
    /// Java's `hashCode`, for Java's `HashMap` iteration order.
    pub fn java_hash(&self) -> i32 {
        match self {
            Key::Null => 0,
            Key::Bool(b) => {
                if *b {
                    1231
                } else {
                    1237
                }
            }
            Key::Int(i) => *i,
            Key::Long(l) => (*l ^ ((*l as u64) >> 32) as i64) as i32,
            Key::Double(bits) => (*bits ^ (*bits >> 32)) as i32,
            Key::Char(c) => i32::from(*c),
            Key::Str(s) => s
                .encode_utf16()
                .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u))),
        }
    }
}

/// Which Java class a map or set is: it decides the iteration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `HashMap`/`HashSet`: Java's bucket order.
    Hash,
    /// `LinkedHashMap`/`LinkedHashSet`: insertion order.
    Linked,
    /// `TreeMap`/`TreeSet`: sorted keys.
    Tree,
}

/// The positions of `keys` in Java's iteration order for `order`.
pub fn java_order<'k>(keys: impl ExactSizeIterator<Item = &'k Key>, order: Order) -> Vec<usize> {
    let n = keys.len();
    match order {
        Order::Linked => (0..n).collect(),
        Order::Tree => {
            let ks: Vec<&Key> = keys.collect();
            let mut idx: Vec<usize> = (0..n).collect();
            idx.sort_by(|a, b| key_cmp(ks[*a], ks[*b]));
            idx
        }
        Order::Hash => {
            // The table grows from 16 while size > 0.75 * capacity; within a
            // bucket, insertion order.
            let mut cap: usize = 16;
            while n * 4 > cap * 3 {
                cap = cap.saturating_mul(2);
            }
            let mut idx: Vec<(usize, usize)> = keys
                .enumerate()
                .map(|(i, k)| {
                    let h = k.java_hash();
                    let spread = (h ^ ((h as u32) >> 16) as i32) as u32 as usize;
                    (spread & (cap - 1), i)
                })
                .collect();
            idx.sort_unstable();
            idx.into_iter().map(|(_, i)| i).collect()
        }
    }
}

fn key_cmp(a: &Key, b: &Key) -> std::cmp::Ordering {
    let (va, vb) = (a.to_value(), b.to_value());
    super::builtins::compare(&va, &vb).unwrap_or(std::cmp::Ordering::Equal)
}

impl Key {
    /// The key as a value.
    pub fn to_value<'a>(&self) -> V<'a> {
        match self {
            Key::Null => V::Null,
            Key::Bool(b) => V::Bool(*b),
            Key::Int(i) => V::Int(*i),
            Key::Long(l) => V::Long(*l),
            Key::Double(d) => V::Double(f64::from_bits(*d)),
            Key::Char(c) => V::Char(*c),
            Key::Str(s) => V::Str(s.clone()),
        }
    }
}

/// A map: Java's `HashMap`, `LinkedHashMap` or `TreeMap`.
#[derive(Debug, Clone)]
pub struct MapObj<'a> {
    /// Entries in insertion order.
    pub m: IndexMap<Key, V<'a>>,
    /// The Java class.
    pub order: Order,
}

impl<'a> MapObj<'a> {
    /// An empty `HashMap`.
    pub fn new(order: Order) -> Self {
        MapObj {
            m: IndexMap::new(),
            order,
        }
    }

    /// Entries in Java's iteration order.
    pub fn entries(&self) -> Vec<(Key, V<'a>)> {
        java_order(self.m.keys(), self.order)
            .into_iter()
            .filter_map(|i| self.m.get_index(i))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A set: Java's `HashSet`, `LinkedHashSet` or `TreeSet`.
#[derive(Debug, Clone)]
pub struct SetObj {
    /// Elements in insertion order.
    pub s: IndexSet<Key>,
    /// The Java class.
    pub order: Order,
}

impl SetObj {
    /// Elements in Java's iteration order.
    pub fn items<'a>(&self) -> Vec<V<'a>> {
        java_order(self.s.iter(), self.order)
            .into_iter()
            .filter_map(|i| self.s.get_index(i))
            .map(Key::to_value)
            .collect()
    }
}

/// A list, or an array (fixed length, `.length`).
#[derive(Debug, Clone)]
pub struct ListObj<'a> {
    /// The elements.
    pub v: Vec<V<'a>>,
    /// Whether this is a Java array.
    pub array: bool,
}

/// Something callable: a lambda, a method reference, a comparator.
#[derive(Debug)]
pub enum Func<'a> {
    /// A lambda with the locals it captured.
    Lambda(Rc<LambdaCl<'a>>),
    /// `this::name`: a function of the script.
    User(usize),
    /// `Class::method` (static, or an instance method on the first argument).
    Ref(Rc<str>, Rc<str>),
    /// `Comparator.comparing(key)`.
    Comparing(V<'a>),
    /// `Comparator.naturalOrder()`.
    Natural,
    /// `cmp.reversed()`, `Comparator.reverseOrder()` (of natural order).
    Reversed(V<'a>),
    /// `a.thenComparing(b)`.
    Then(V<'a>, V<'a>),
}

/// A lambda and its captured locals.
#[derive(Debug)]
pub struct LambdaCl<'a> {
    /// The code.
    pub def: std::sync::Arc<LambdaDef>,
    /// Locals visible where it was created.
    pub captured: Vec<(u32, V<'a>)>,
}

/// A `Collectors.*` collector.
#[derive(Debug)]
pub enum Collector<'a> {
    /// `toList()`.
    ToList,
    /// `toSet()`.
    ToSet,
    /// `joining(sep, prefix, suffix)`.
    Joining(String, String, String),
    /// `toMap(key, value[, merge])`.
    ToMap(V<'a>, V<'a>, Option<V<'a>>),
    /// `counting()`.
    Counting,
}

/// Which `Optional` class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptKind {
    /// `Optional`.
    Obj,
    /// `OptionalInt`.
    Int,
    /// `OptionalLong`.
    Long,
    /// `OptionalDouble`.
    Double,
}

/// Which stream class: it decides what `sum`, `max`, `average` return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `Stream`.
    Obj,
    /// `IntStream`.
    Int,
    /// `LongStream`.
    Long,
    /// `DoubleStream`.
    Double,
}

/// A value.
#[derive(Debug, Clone)]
pub enum V<'a> {
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
    /// A char (a UTF-16 unit, as Java's).
    Char(u16),
    /// A string the script made.
    Str(Rc<str>),
    /// A string of the input, read in place.
    JStr(&'a str),
    /// A list or array.
    List(Rc<RefCell<ListObj<'a>>>),
    /// A list of the input, read in place.
    JList(&'a [Value]),
    /// A map.
    Map(Rc<RefCell<MapObj<'a>>>),
    /// A map of the input, read in place.
    JMap(&'a Map<String, Value>),
    /// A set.
    Set(Rc<RefCell<SetObj>>),
    /// A map entry.
    Entry(Rc<(V<'a>, V<'a>)>),
    /// A lambda, method reference or comparator.
    Func(Rc<Func<'a>>),
    /// A stream (evaluated eagerly).
    Stream(Rc<(StreamKind, Vec<V<'a>>)>),
    /// A collector.
    Collector(Rc<Collector<'a>>),
    /// An `Optional*`: kind and value.
    Opt(OptKind, Option<Rc<V<'a>>>),
    /// A `StringBuilder`.
    Builder(Rc<RefCell<String>>),
    /// A `DecimalFormat` and its pattern.
    DecFmt(Rc<str>),
    /// `java.time` values.
    Time(Rc<TimeV>),
    /// An exception: Java class name and message.
    Exception(Rc<(String, String)>),
    /// An `Iterator`: the elements and the next position.
    Iter(Rc<RefCell<(Vec<V<'a>>, usize)>>),
}

impl<'a> V<'a> {
    /// A string value.
    pub fn str(s: impl Into<Rc<str>>) -> Self {
        V::Str(s.into())
    }

    /// A new list.
    pub fn list(v: Vec<V<'a>>) -> Self {
        V::List(Rc::new(RefCell::new(ListObj { v, array: false })))
    }

    /// A new map.
    pub fn map(m: MapObj<'a>) -> Self {
        V::Map(Rc::new(RefCell::new(m)))
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            V::Str(s) => Some(s),
            V::JStr(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this is null.
    pub fn is_null(&self) -> bool {
        matches!(self, V::Null)
    }

    /// The Java class name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            V::Null => "null",
            V::Bool(_) => "java.lang.Boolean",
            V::Int(_) => "java.lang.Integer",
            V::Long(_) => "java.lang.Long",
            V::Float(_) => "java.lang.Float",
            V::Double(_) => "java.lang.Double",
            V::Char(_) => "java.lang.Character",
            V::Str(_) | V::JStr(_) => "java.lang.String",
            V::List(l) => {
                if l.borrow().array {
                    "array"
                } else {
                    "java.util.ArrayList"
                }
            }
            V::JList(_) => "java.util.ArrayList",
            V::Map(_) | V::JMap(_) => "java.util.HashMap",
            V::Set(_) => "java.util.HashSet",
            V::Entry(_) => "java.util.Map$Entry",
            V::Func(_) => "lambda",
            V::Stream(_) => "java.util.stream.Stream",
            V::Collector(_) => "java.util.stream.Collector",
            V::Opt(..) => "java.util.Optional",
            V::Builder(_) => "java.lang.StringBuilder",
            V::DecFmt(_) => "java.text.DecimalFormat",
            V::Time(t) => t.type_name(),
            V::Exception(_) => "java.lang.Exception",
            V::Iter(_) => "java.util.Iterator",
        }
    }

    /// The map key for this value, if it can be one.
    pub fn key(&self) -> Option<Key> {
        Some(match self {
            V::Null => Key::Null,
            V::Bool(b) => Key::Bool(*b),
            V::Int(i) => Key::Int(*i),
            V::Long(l) => Key::Long(*l),
            V::Double(d) => Key::Double(d.to_bits()),
            V::Float(f) => Key::Double(f64::from(*f).to_bits()),
            V::Char(c) => Key::Char(*c),
            V::Str(s) => Key::Str(s.clone()),
            V::JStr(s) => Key::Str(Rc::from(*s)),
            _ => return None,
        })
    }

    /// A JSON value the script was given, as a value: read in place.
    pub fn from_json(v: &'a Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            Value::Number(n) => number(n),
            Value::String(s) => V::JStr(s),
            Value::Array(a) => V::JList(a),
            Value::Object(m) => V::JMap(m),
        }
    }

    /// A JSON value as the script's own copy (scripts that change their input).
    pub fn from_json_owned(v: &Value) -> V<'a> {
        match v {
            Value::Null => V::Null,
            Value::Bool(b) => V::Bool(*b),
            Value::Number(n) => number(n),
            Value::String(s) => V::str(s.as_str()),
            Value::Array(a) => V::list(a.iter().map(V::from_json_owned).collect()),
            Value::Object(m) => {
                let mut o = MapObj::new(Order::Hash);
                for (k, x) in m {
                    o.m.insert(Key::Str(Rc::from(k.as_str())), V::from_json_owned(x));
                }
                V::map(o)
            }
        }
    }

    /// Makes a value read in place the script's own (one level deep).
    pub fn own(self) -> V<'a> {
        match self {
            V::JStr(s) => V::str(s),
            V::JList(a) => V::list(a.iter().map(V::from_json).collect()),
            V::JMap(m) => {
                let mut o = MapObj::new(Order::Hash);
                for (k, x) in m {
                    o.m.insert(Key::Str(Rc::from(k.as_str())), V::from_json(x));
                }
                V::map(o)
            }
            other => other,
        }
    }

    /// The value as JSON (a script's result, a transform's payload).
    pub fn to_json(&self) -> Value {
        let mut budget = JSON_NODES;
        self.to_json_depth(0, &mut budget)
    }

    fn to_json_depth(&self, depth: usize, budget: &mut usize) -> Value {
        // A list that holds itself must not recurse without end.
        if depth > 200 || *budget == 0 {
            return Value::String("[nested too deeply]".into());
        }
        *budget -= 1;
        match self {
            V::Null => Value::Null,
            V::Bool(b) => Value::Bool(*b),
            V::Int(i) => Value::from(*i),
            V::Long(l) => Value::from(*l),
            V::Float(f) => Number::from_f64(f64::from(*f))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            V::Double(d) => Number::from_f64(*d)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            V::Str(_) | V::JStr(_) | V::Char(_) => Value::String(self.java_string()),
            V::JList(a) => Value::Array(a.to_vec()),
            V::JMap(m) => Value::Object((*m).clone()),
            V::List(l) => Value::Array(
                l.borrow()
                    .v
                    .iter()
                    .map(|x| x.to_json_depth(depth + 1, budget))
                    .collect(),
            ),
            V::Map(m) => Value::Object(
                m.borrow()
                    .m
                    .iter()
                    .map(|(k, x)| {
                        (
                            k.to_value().java_string(),
                            x.to_json_depth(depth + 1, budget),
                        )
                    })
                    .collect(),
            ),
            V::Set(s) => Value::Array(
                s.borrow()
                    .items()
                    .iter()
                    .map(|x| x.to_json_depth(depth + 1, budget))
                    .collect(),
            ),
            V::Stream(s) => Value::Array(
                s.1.iter()
                    .map(|x| x.to_json_depth(depth + 1, budget))
                    .collect(),
            ),
            V::Opt(_, o) => o
                .as_ref()
                .map(|x| x.to_json_depth(depth + 1, budget))
                .unwrap_or(Value::Null),
            V::Entry(e) => {
                let mut m = Map::new();
                m.insert(e.0.java_string(), e.1.to_json_depth(depth + 1, budget));
                Value::Object(m)
            }
            other => Value::String(other.java_string()),
        }
    }

    /// Java's `String.valueOf`.
    pub fn java_string(&self) -> String {
        let mut s = String::new();
        self.write_java(&mut s, 0);
        s
    }

    /// Appends Java's `toString` of this value.
    pub fn write_java(&self, out: &mut String, depth: usize) {
        if out.len() > MAX_TO_STRING {
            return;
        }
        if depth > 100 {
            out.push_str("(this Collection)");
            return;
        }
        match self {
            V::Null => out.push_str("null"),
            V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::Long(l) => {
                let _ = write!(out, "{l}");
            }
            V::Float(f) => out.push_str(&java_float(f64::from(*f), true)),
            V::Double(d) => out.push_str(&java_float(*d, false)),
            V::Char(c) => out.push(char::from_u32(u32::from(*c)).unwrap_or('\u{fffd}')),
            V::Str(s) => out.push_str(s),
            V::JStr(s) => out.push_str(s),
            V::List(l) => seq(out, l.borrow().v.iter().cloned(), depth),
            V::JList(a) => seq(out, a.iter().map(V::from_json), depth),
            V::Set(s) => seq(out, s.borrow().items().into_iter(), depth),
            V::Stream(_) => out.push_str("java.util.stream.ReferencePipeline"),
            V::Map(m) => {
                let entries = m.borrow().entries();
                map_str(
                    out,
                    entries.into_iter().map(|(k, v)| (k.to_value(), v)),
                    depth,
                )
            }
            V::JMap(m) => {
                let keys: Vec<Key> = m.keys().map(|k| Key::Str(Rc::from(k.as_str()))).collect();
                let all: Vec<(&'a String, &'a Value)> = m.iter().collect();
                let order = java_order(keys.iter(), Order::Hash);
                let items: Vec<(V<'a>, V<'a>)> = order
                    .into_iter()
                    .filter_map(|i| all.get(i))
                    .map(|(k, v)| (V::JStr(k.as_str()), V::from_json(v)))
                    .collect();
                map_str(out, items.into_iter(), depth)
            }
            V::Entry(e) => {
                e.0.write_java(out, depth + 1);
                out.push('=');
                e.1.write_java(out, depth + 1);
            }
            V::Opt(kind, o) => {
                let name = match kind {
                    OptKind::Obj => "Optional",
                    OptKind::Int => "OptionalInt",
                    OptKind::Long => "OptionalLong",
                    OptKind::Double => "OptionalDouble",
                };
                out.push_str(name);
                match o {
                    Some(x) => {
                        out.push('[');
                        x.write_java(out, depth + 1);
                        out.push(']');
                    }
                    None => out.push_str(".empty"),
                }
            }
            V::Builder(b) => out.push_str(&b.borrow()),
            V::DecFmt(_) => out.push_str("java.text.DecimalFormat"),
            V::Time(t) => out.push_str(&t.to_string()),
            V::Exception(e) => {
                out.push_str(&e.0);
                if !e.1.is_empty() {
                    out.push_str(": ");
                    out.push_str(&e.1);
                }
            }
            V::Func(_) => out.push_str("lambda"),
            V::Iter(_) => out.push_str("java.util.Iterator"),
            V::Collector(_) => out.push_str("java.util.stream.Collectors$CollectorImpl"),
        }
    }
}

/// Most nodes a result converts to JSON (cycles, sharing).
const JSON_NODES: usize = 1_000_000;
/// Longest `toString` made (cycles, sharing): a little over the string limit.
const MAX_TO_STRING: usize = 2 << 20;

fn seq<'a>(out: &mut String, items: impl Iterator<Item = V<'a>>, depth: usize) {
    out.push('[');
    for (i, x) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        x.write_java(out, depth + 1);
    }
    out.push(']');
}

fn map_str<'a>(out: &mut String, items: impl Iterator<Item = (V<'a>, V<'a>)>, depth: usize) {
    out.push('{');
    for (i, (k, v)) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        k.write_java(out, depth + 1);
        out.push('=');
        v.write_java(out, depth + 1);
    }
    out.push('}');
}

/// A JSON number as Java's XContent parser gives it: Integer when it fits,
/// else Long, else Double.
fn number<'a>(n: &Number) -> V<'a> {
    if let Some(i) = n.as_i64() {
        return match i32::try_from(i) {
            Ok(x) => V::Int(x),
            Err(_) => V::Long(i),
        };
    }
    V::Double(n.as_f64().unwrap_or(f64::NAN))
}

/// Java's `Double.toString` (and `Float.toString` with `float`): the
/// shortest digits that round-trip, plain between 10^-3 and 10^7, else
/// computerized scientific notation (`1.0E7`).
pub fn java_float(d: f64, float: bool) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if d == 0.0 {
        return if d.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Shortest round-trip digits and exponent, from Rust's formatter.
    let sci = if float {
        format!("{:e}", d as f32)
    } else {
        format!("{d:e}")
    };
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let neg = mant.starts_with('-');
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let abs = d.abs();
    if (1e-3..1e7).contains(&abs) {
        if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', int_len - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n(
                '0',
                usize::try_from(-exp - 1).unwrap_or(0),
            ));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        out.push('.');
        if digits.len() > 1 {
            out.push_str(&digits[1..]);
        } else {
            out.push('0');
        }
        let _ = write!(out, "E{exp}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java_does() {
        for (d, s) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (2.5, "2.5"),
            (1e7, "1.0E7"),
            (1.5e-4, "1.5E-4"),
            (0.001, "0.001"),
            (123456.789, "123456.789"),
            (-3.0, "-3.0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (9999999.0, "9999999.0"),
            (1e21, "1.0E21"),
        ] {
            assert_eq!(java_float(d, false), s, "{d}");
        }
        assert_eq!(java_float(f64::from(0.1f32), true), "0.1");
    }

    #[test]
    fn hints_find_keys_whatever_the_order() {
        let hints = Hints::default();
        let name: &str = "doc_count";
        let maps: Vec<Value> = vec![
            serde_json::json!({"key": "a", "doc_count": 1}),
            serde_json::json!({"key": "b", "doc_count": 2}),
            serde_json::json!({"doc_count": 3, "key": "c"}),
            serde_json::json!({"key": "d"}),
            serde_json::json!({"doc": 5, "doc_count": 4}),
        ];
        let got: Vec<Option<&Value>> = maps
            .iter()
            .map(|m| hints.get(m.as_object().unwrap(), name, 64))
            .collect();
        let want: Vec<Option<&Value>> = maps.iter().map(|m| m.get(name)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn hash_map_order_is_java_order() {
        // Java: new HashMap(), put zeta, alpha, b -> {zeta=1, b=3, alpha=2}
        let keys: Vec<Key> = ["zeta", "alpha", "b"]
            .iter()
            .map(|s| Key::Str(Rc::from(*s)))
            .collect();
        let order = java_order(keys.iter(), Order::Hash);
        let names: Vec<&str> = order
            .iter()
            .map(|i| match &keys[*i] {
                Key::Str(s) => &**s,
                _ => "",
            })
            .collect();
        assert_eq!(names, ["zeta", "b", "alpha"]);
    }
}
