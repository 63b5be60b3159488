//! The Java library a script may use: methods on values, static methods
//! and fields, constructors, casts, equality and ordering as Painless has
//! them. What is not listed here is refused when the script is parsed.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::rc::Rc;

use indexmap::{IndexMap, IndexSet};
use serde_json::Value;

use super::ast::Ty;
use super::eval::{Ex, Interp, N, Tt, coerce, num};
use super::streams;
use super::time::{self, TimeV, Unit, Zone};
use super::value::{Collector, Func, Key, ListObj, MapObj, OptKind, Order, SetObj, StreamKind, V};

const TYPES: &[&str] = &[
    "String",
    "Object",
    "Integer",
    "Long",
    "Double",
    "Float",
    "Boolean",
    "Character",
    "Short",
    "Byte",
    "Number",
    "List",
    "ArrayList",
    "LinkedList",
    "Map",
    "HashMap",
    "LinkedHashMap",
    "TreeMap",
    "Set",
    "HashSet",
    "LinkedHashSet",
    "TreeSet",
    "Collection",
    "Iterable",
    "Entry",
    "Math",
    "Collections",
    "Arrays",
    "Collectors",
    "Comparator",
    "Objects",
    "Instant",
    "ZonedDateTime",
    "ZoneId",
    "ZoneOffset",
    "Duration",
    "ChronoUnit",
    "DayOfWeek",
    "Optional",
    "OptionalInt",
    "OptionalLong",
    "OptionalDouble",
    "Stream",
    "IntStream",
    "LongStream",
    "DoubleStream",
    "StringBuilder",
    "DecimalFormat",
    "Exception",
    "RuntimeException",
    "IllegalArgumentException",
    "IllegalStateException",
    "UnsupportedOperationException",
    "ArithmeticException",
    "NullPointerException",
    "ClassCastException",
    "IndexOutOfBoundsException",
    "NumberFormatException",
    "Function",
    "BiFunction",
    "Predicate",
    "Consumer",
    "BiConsumer",
    "Supplier",
    "Iterator",
];

/// Whether a name is a class a script may name.
pub fn is_type(name: &str) -> bool {
    TYPES.contains(&name)
}

const STATICS: &[(&str, &[&str])] = &[
    (
        "Math",
        &[
            "abs",
            "max",
            "min",
            "pow",
            "sqrt",
            "cbrt",
            "round",
            "floor",
            "ceil",
            "rint",
            "log",
            "log10",
            "log1p",
            "exp",
            "expm1",
            "signum",
            "hypot",
            "sin",
            "cos",
            "tan",
            "asin",
            "acos",
            "atan",
            "atan2",
            "sinh",
            "cosh",
            "tanh",
            "toRadians",
            "toDegrees",
            "random",
            "PI",
            "E",
        ],
    ),
    (
        "Integer",
        &[
            "parseInt",
            "valueOf",
            "toString",
            "compare",
            "signum",
            "sum",
            "max",
            "min",
            "toHexString",
            "toBinaryString",
            "MAX_VALUE",
            "MIN_VALUE",
        ],
    ),
    (
        "Long",
        &[
            "parseLong",
            "valueOf",
            "toString",
            "compare",
            "signum",
            "sum",
            "max",
            "min",
            "toHexString",
            "MAX_VALUE",
            "MIN_VALUE",
        ],
    ),
    (
        "Double",
        &[
            "parseDouble",
            "valueOf",
            "toString",
            "compare",
            "isNaN",
            "isInfinite",
            "isFinite",
            "sum",
            "max",
            "min",
            "MAX_VALUE",
            "MIN_VALUE",
            "POSITIVE_INFINITY",
            "NEGATIVE_INFINITY",
            "NaN",
        ],
    ),
    (
        "Float",
        &[
            "parseFloat",
            "valueOf",
            "toString",
            "compare",
            "isNaN",
            "MAX_VALUE",
            "MIN_VALUE",
        ],
    ),
    (
        "Boolean",
        &[
            "parseBoolean",
            "valueOf",
            "toString",
            "compare",
            "TRUE",
            "FALSE",
        ],
    ),
    ("String", &["valueOf", "join"]),
    (
        "Character",
        &[
            "isDigit",
            "isLetter",
            "isLetterOrDigit",
            "isWhitespace",
            "isUpperCase",
            "isLowerCase",
            "toUpperCase",
            "toLowerCase",
            "getNumericValue",
            "valueOf",
            "toString",
        ],
    ),
    (
        "Objects",
        &[
            "equals",
            "isNull",
            "nonNull",
            "requireNonNull",
            "toString",
            "requireNonNullElse",
            "hashCode",
        ],
    ),
    (
        "Collections",
        &[
            "sort",
            "reverse",
            "max",
            "min",
            "emptyList",
            "emptyMap",
            "emptySet",
            "singletonList",
            "singletonMap",
            "singleton",
            "unmodifiableList",
            "unmodifiableMap",
            "unmodifiableSet",
            "frequency",
            "swap",
            "nCopies",
            "reverseOrder",
        ],
    ),
    ("Arrays", &["asList", "sort", "toString", "stream"]),
    (
        "Collectors",
        &["toList", "toSet", "joining", "toMap", "counting"],
    ),
    (
        "Comparator",
        &[
            "comparing",
            "comparingInt",
            "comparingLong",
            "comparingDouble",
            "naturalOrder",
            "reverseOrder",
        ],
    ),
    ("IntStream", &["range", "rangeClosed"]),
    ("LongStream", &["range", "rangeClosed"]),
    (
        "Instant",
        &["now", "ofEpochMilli", "ofEpochSecond", "parse", "EPOCH"],
    ),
    ("ZonedDateTime", &["parse", "ofInstant", "now"]),
    ("ZoneId", &["of"]),
    ("ZoneOffset", &["UTC", "of"]),
    (
        "Duration",
        &[
            "ofMillis",
            "ofSeconds",
            "ofMinutes",
            "ofHours",
            "ofDays",
            "ofNanos",
            "between",
            "ZERO",
            "of",
        ],
    ),
    (
        "ChronoUnit",
        &[
            "NANOS",
            "MICROS",
            "MILLIS",
            "SECONDS",
            "MINUTES",
            "HOURS",
            "HALF_DAYS",
            "DAYS",
            "WEEKS",
            "MONTHS",
            "YEARS",
        ],
    ),
    ("Optional", &["of", "ofNullable", "empty"]),
];

/// Whether `class.name` exists (a field when `call` is false).
pub fn is_static(class: &str, name: &str, _call: bool) -> bool {
    if class == "DayOfWeek" {
        return name == "of" || time::DAYS.contains(&name);
    }
    STATICS
        .iter()
        .any(|(c, ms)| *c == class && ms.contains(&name))
}

const METHODS: &[&str] = &[
    // Object, numbers, strings
    "toString",
    "equals",
    "hashCode",
    "compareTo",
    "intValue",
    "longValue",
    "doubleValue",
    "floatValue",
    "shortValue",
    "byteValue",
    "booleanValue",
    "charValue",
    "isNaN",
    "isInfinite",
    "length",
    "isEmpty",
    "charAt",
    "substring",
    "indexOf",
    "lastIndexOf",
    "contains",
    "startsWith",
    "endsWith",
    "toLowerCase",
    "toUpperCase",
    "trim",
    "strip",
    "isBlank",
    "equalsIgnoreCase",
    "compareToIgnoreCase",
    "replace",
    "concat",
    "splitOnToken",
    "toCharArray",
    "repeat",
    // collections
    "size",
    "get",
    "add",
    "addAll",
    "set",
    "remove",
    "removeIf",
    "clear",
    "stream",
    "sort",
    "subList",
    "forEach",
    "toArray",
    "containsAll",
    "removeAll",
    "retainAll",
    "getOrDefault",
    "containsKey",
    "containsValue",
    "put",
    "putAll",
    "putIfAbsent",
    "keySet",
    "values",
    "entrySet",
    "computeIfAbsent",
    "computeIfPresent",
    "merge",
    "getKey",
    "getValue",
    "setValue",
    "any",
    "every",
    "findAll",
    "find",
    "collect",
    "each",
    "eachWithIndex",
    "join",
    "sum",
    "findResult",
    "groupBy",
    "count",
    "asList",
    "asCollection",
    "iterator",
    "hasNext",
    "next",
    // streams and optionals
    "map",
    "filter",
    "mapToInt",
    "mapToLong",
    "mapToDouble",
    "mapToObj",
    "boxed",
    "flatMap",
    "distinct",
    "sorted",
    "limit",
    "skip",
    "peek",
    "anyMatch",
    "allMatch",
    "noneMatch",
    "findFirst",
    "findAny",
    "max",
    "min",
    "average",
    "reduce",
    "asDoubleStream",
    "asLongStream",
    "isPresent",
    "getAsInt",
    "getAsLong",
    "getAsDouble",
    "orElse",
    "orElseGet",
    "orElseThrow",
    "ifPresent",
    // functions
    "apply",
    "test",
    "accept",
    "compare",
    "reversed",
    "thenComparing",
    "negate",
    // StringBuilder, DecimalFormat, exceptions
    "append",
    "insert",
    "reverse",
    "setLength",
    "deleteCharAt",
    "format",
    "getMessage",
    // java.time
    "toEpochMilli",
    "getEpochSecond",
    "getNano",
    "plus",
    "minus",
    "plusMillis",
    "plusSeconds",
    "plusNanos",
    "minusMillis",
    "minusSeconds",
    "minusNanos",
    "isBefore",
    "isAfter",
    "atZone",
    "toInstant",
    "toEpochSecond",
    "getYear",
    "getMonthValue",
    "getDayOfMonth",
    "getDayOfYear",
    "getHour",
    "getMinute",
    "getSecond",
    "getDayOfWeek",
    "getZone",
    "plusYears",
    "plusMonths",
    "plusWeeks",
    "plusDays",
    "plusHours",
    "plusMinutes",
    "minusYears",
    "minusMonths",
    "minusWeeks",
    "minusDays",
    "minusHours",
    "minusMinutes",
    "withZoneSameInstant",
    "truncatedTo",
    "getMillis",
    "toMillis",
    "toSeconds",
    "getSeconds",
    "toMinutes",
    "toHours",
    "toDays",
    "toNanos",
    "isNegative",
    "isZero",
    "abs",
    "negated",
    "multipliedBy",
    "dividedBy",
    "between",
    "getValue",
    "plusDuration",
];

/// Whether some value has a method of this name.
pub fn is_method(name: &str) -> bool {
    METHODS.contains(&name)
}

/// Methods that change their receiver: a script calling any of them gets
/// its input as its own copy.
pub fn is_mutating(name: &str) -> bool {
    matches!(
        name,
        "add"
            | "addAll"
            | "set"
            | "remove"
            | "removeIf"
            | "clear"
            | "sort"
            | "put"
            | "putAll"
            | "putIfAbsent"
            | "computeIfAbsent"
            | "computeIfPresent"
            | "merge"
            | "removeAll"
            | "retainAll"
            | "setValue"
    )
}

/// Whether `new class(…)` is supported.
pub fn can_new(class: &str) -> bool {
    matches!(
        class,
        "ArrayList"
            | "LinkedList"
            | "HashMap"
            | "LinkedHashMap"
            | "TreeMap"
            | "HashSet"
            | "LinkedHashSet"
            | "TreeSet"
            | "StringBuilder"
            | "DecimalFormat"
            | "Exception"
            | "RuntimeException"
            | "IllegalArgumentException"
            | "IllegalStateException"
            | "UnsupportedOperationException"
            | "ArithmeticException"
    )
}

/// The primitive or class name Painless puts in cast messages.
pub fn short_type(v: &V) -> &'static str {
    match v {
        V::Int(_) => "int",
        V::Long(_) => "long",
        V::Float(_) => "float",
        V::Double(_) => "double",
        V::Bool(_) => "boolean",
        V::Char(_) => "char",
        other => other.type_name(),
    }
}

/// Whether `catch (class e)` catches a thrown `thrown`.
pub fn catches(class: &str, thrown: &str) -> bool {
    match class {
        "Exception" | "Throwable" => true,
        "RuntimeException" => true,
        "IndexOutOfBoundsException" => thrown.ends_with("IndexOutOfBoundsException"),
        "IllegalArgumentException" => {
            thrown == "IllegalArgumentException" || thrown == "NumberFormatException"
        }
        "DateTimeException" => {
            thrown.starts_with("DateTime") || thrown.starts_with("UnsupportedTemporal")
        }
        other => other == thrown,
    }
}

fn cmp_num(a: N, b: N) -> Ordering {
    match (a, b) {
        (N::I(_) | N::L(_), N::I(_) | N::L(_)) => a.i64().cmp(&b.i64()),
        _ => a.f64().total_cmp(&b.f64()),
    }
}

/// Painless `==`: numbers compare by value across types, everything else
/// by `equals`.
pub fn painless_eq<'a>(a: &V<'a>, b: &V<'a>) -> bool {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return match (x, y) {
            (N::I(_) | N::L(_), N::I(_) | N::L(_)) => x.i64() == y.i64(),
            _ => x.f64() == y.f64(),
        };
    }
    java_equals(a, b)
}

/// Java's `equals`: boxed numbers only equal the same type.
pub fn java_equals<'a>(a: &V<'a>, b: &V<'a>) -> bool {
    let mut budget = 1_000_000usize;
    equals_in(a, b, 0, &mut budget)
}

/// `equals`, bounded for lists that hold themselves.
fn equals_in<'a>(a: &V<'a>, b: &V<'a>, depth: usize, budget: &mut usize) -> bool {
    if ptr_same(a, b) {
        return true;
    }
    if depth > 100 || *budget == 0 {
        return false;
    }
    *budget -= 1;
    let java_equals = |x: &V<'a>, y: &V<'a>, budget: &mut usize| equals_in(x, y, depth + 1, budget);
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Null, _) | (_, V::Null) => false,
        (V::Bool(x), V::Bool(y)) => x == y,
        (V::Int(x), V::Int(y)) => x == y,
        (V::Long(x), V::Long(y)) => x == y,
        (V::Double(x), V::Double(y)) => x.to_bits() == y.to_bits() || x == y && *x != 0.0,
        (V::Float(x), V::Float(y)) => x.to_bits() == y.to_bits() || x == y && *x != 0.0,
        (V::Char(x), V::Char(y)) => x == y,
        _ if a.as_str().is_some() && b.as_str().is_some() => a.as_str() == b.as_str(),
        (V::Time(x), V::Time(y)) => x == y,
        (V::Entry(x), V::Entry(y)) => {
            java_equals(&x.0, &y.0, budget) && java_equals(&x.1, &y.1, budget)
        }
        (V::Opt(k1, x), V::Opt(k2, y)) => {
            k1 == k2
                && match (x, y) {
                    (Some(x), Some(y)) => java_equals(x, y, budget),
                    (None, None) => true,
                    _ => false,
                }
        }
        (V::Set(x), V::Set(y)) => {
            Rc::ptr_eq(x, y) || {
                let (x, y) = (x.borrow(), y.borrow());
                x.s.len() == y.s.len() && x.s.iter().all(|k| y.s.contains(k))
            }
        }
        _ => {
            if let (Some(x), Some(y)) = (list_items(a), list_items(b)) {
                return x.len() == y.len()
                    && x.iter().zip(&y).all(|(p, q)| java_equals(p, q, budget));
            }
            if let (Some(x), Some(y)) = (map_entries(a), map_entries(b)) {
                if x.len() != y.len() {
                    return false;
                }
                return x.iter().all(|(k, v)| {
                    y.iter()
                        .any(|(k2, v2)| k == k2 && java_equals(v, v2, budget))
                });
            }
            ptr_same(a, b)
        }
    }
}

fn ptr_same<'a>(a: &V<'a>, b: &V<'a>) -> bool {
    match (a, b) {
        (V::List(x), V::List(y)) => Rc::ptr_eq(x, y),
        (V::Map(x), V::Map(y)) => Rc::ptr_eq(x, y),
        (V::Set(x), V::Set(y)) => Rc::ptr_eq(x, y),
        (V::JList(x), V::JList(y)) => std::ptr::eq(*x, *y),
        (V::JMap(x), V::JMap(y)) => std::ptr::eq(*x, *y),
        (V::Builder(x), V::Builder(y)) => Rc::ptr_eq(x, y),
        (V::Func(x), V::Func(y)) => Rc::ptr_eq(x, y),
        (V::Stream(x), V::Stream(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

/// `===`: the same object (values: equal).
pub fn same<'a>(a: &V<'a>, b: &V<'a>) -> bool {
    match (a, b) {
        (
            V::List(_)
            | V::Map(_)
            | V::Set(_)
            | V::JList(_)
            | V::JMap(_)
            | V::Builder(_)
            | V::Func(_)
            | V::Stream(_),
            _,
        ) => ptr_same(a, b),
        _ => java_equals(a, b),
    }
}

/// The elements of a list, array or set.
pub fn list_items<'a>(v: &V<'a>) -> Option<Vec<V<'a>>> {
    match v {
        V::List(l) => Some(l.borrow().v.clone()),
        V::JList(a) => Some(a.iter().map(V::from_json).collect()),
        _ => None,
    }
}

fn map_entries<'a>(v: &V<'a>) -> Option<Vec<(Key, V<'a>)>> {
    match v {
        V::Map(m) => Some(m.borrow().entries()),
        V::JMap(m) => {
            let keys: Vec<Key> = m.keys().map(|k| Key::Str(Rc::from(k.as_str()))).collect();
            let all: Vec<&'a Value> = m.values().collect();
            let order = super::value::java_order(keys.iter(), Order::Hash);
            Some(
                order
                    .into_iter()
                    .filter_map(|i| all.get(i).map(|v| (keys[i].clone(), V::from_json(v))))
                    .collect(),
            )
        }
        _ => None,
    }
}

/// Java's `String.compareTo`: the first differing UTF-16 unit, else the lengths.
fn str_cmp(a: &str, b: &str) -> i32 {
    let mut x = a.encode_utf16();
    let mut y = b.encode_utf16();
    loop {
        match (x.next(), y.next()) {
            (Some(p), Some(q)) if p != q => return i32::from(p) - i32::from(q),
            (Some(_), Some(_)) => {}
            (None, None) => return 0,
            (None, Some(_)) => return -(1 + y.count() as i32),
            (Some(_), None) => return 1 + x.count() as i32,
        }
    }
}

/// Natural ordering (`Comparable`).
pub fn compare(a: &V, b: &V) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (num(a), num(b)) {
        return Some(cmp_num(x, y));
    }
    match (a, b) {
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        (V::Time(x), V::Time(y)) => Some(x.nanos()?.cmp(&y.nanos()?)),
        _ => Some(str_cmp(a.as_str()?, b.as_str()?).cmp(&0)),
    }
}

/// `a.compareTo(b)` as an int, Java's values.
pub fn compare_v<'a>(a: &V<'a>, b: &V<'a>) -> Result<V<'a>, Ex> {
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        return Ok(V::Int(str_cmp(x, y)));
    }
    if a.is_null() || b.is_null() {
        return Err(Ex::npe("cannot compare null"));
    }
    compare(a, b).map(|o| V::Int(o as i32)).ok_or_else(|| {
        Ex::cce(format!(
            "cannot compare {} with {}",
            a.type_name(),
            b.type_name()
        ))
    })
}

/// A stable merge sort whose comparison may fail (and may be inconsistent
/// without harm).
pub fn sort_by<'a>(
    v: Vec<V<'a>>,
    cmp: &mut dyn FnMut(&V<'a>, &V<'a>) -> Result<Ordering, Ex>,
) -> Result<Vec<V<'a>>, Ex> {
    if v.len() <= 1 {
        return Ok(v);
    }
    let mut v = v;
    let right = v.split_off(v.len() / 2);
    let left = sort_by(v, cmp)?;
    let right = sort_by(right, cmp)?;
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut l = left.into_iter().peekable();
    let mut r = right.into_iter().peekable();
    while let (Some(a), Some(b)) = (l.peek(), r.peek()) {
        if cmp(b, a)? == Ordering::Less {
            out.extend(r.next());
        } else {
            out.extend(l.next());
        }
    }
    out.extend(l);
    out.extend(r);
    Ok(out)
}

/// Sorts with a comparator (a function value) or natural order (null).
pub fn sort_with<'a>(
    it: &mut Interp<'_, 'a>,
    v: Vec<V<'a>>,
    cmp: Option<&V<'a>>,
) -> Result<Vec<V<'a>>, Ex> {
    match cmp {
        Some(f) if !f.is_null() => sort_by(v, &mut |a, b| {
            let r = it.call(f, &[a.clone(), b.clone()])?;
            match num(&r) {
                Some(n) => Ok(n.i64().cmp(&0)),
                None => Err(Ex::cce("a comparator must return an int")),
            }
        }),
        _ => sort_by(v, &mut |a, b| {
            compare(a, b).ok_or_else(|| {
                Ex::cce(format!(
                    "cannot compare {} with {}",
                    a.type_name(),
                    b.type_name()
                ))
            })
        }),
    }
}

/// The elements a for-each loop visits.
pub fn iterate<'a>(v: &V<'a>) -> Result<Option<Vec<V<'a>>>, Ex> {
    Ok(match v {
        V::List(l) => Some(l.borrow().v.clone()),
        V::JList(a) => Some(a.iter().map(V::from_json).collect()),
        V::Set(s) => Some(s.borrow().items()),
        V::Stream(s) => Some(s.1.clone()),
        V::Iter(s) => {
            let s = s.borrow();
            Some(s.0.get(s.1..).unwrap_or_default().to_vec())
        }
        _ => None,
    })
}

fn int_arg(v: &V) -> Result<i64, Ex> {
    match v {
        V::Int(i) => Ok(i64::from(*i)),
        V::Long(l) => Ok(*l),
        V::Char(c) => Ok(i64::from(*c)),
        V::Null => Err(Ex::npe("an index is null")),
        other => Err(Ex::cce(format!(
            "cannot use a {} as an int",
            other.type_name()
        ))),
    }
}

fn bounds(i: i64, len: usize, array: bool) -> Result<usize, Ex> {
    let n = i64::try_from(len).unwrap_or(i64::MAX);
    // Painless counts negative indexes from the end.
    let j = if i < 0 { i.saturating_add(n) } else { i };
    if j < 0 || j >= n {
        return Err(Ex::new(
            if array {
                "ArrayIndexOutOfBoundsException"
            } else {
                "IndexOutOfBoundsException"
            },
            format!("Index {i} out of bounds for length {len}"),
        ));
    }
    usize::try_from(j).map_err(|_| Ex::iae("index"))
}

/// `o[i]`.
pub fn index<'a>(o: &V<'a>, i: &V<'a>) -> Result<V<'a>, Ex> {
    match o {
        V::JMap(m) => Ok(match i.as_str() {
            Some(k) => super::value::jget(m, k)
                .map(V::from_json)
                .unwrap_or(V::Null),
            None => V::Null,
        }),
        V::Map(m) => {
            let k = i.key().ok_or_else(|| Ex::iae("not a valid map key"))?;
            Ok(m.borrow().m.get(&k).cloned().unwrap_or(V::Null))
        }
        V::JList(a) => {
            let j = bounds(int_arg(i)?, a.len(), false)?;
            Ok(a.get(j).map(V::from_json).unwrap_or(V::Null))
        }
        V::List(l) => {
            let l = l.borrow();
            let j = bounds(int_arg(i)?, l.v.len(), l.array)?;
            Ok(l.v.get(j).cloned().unwrap_or(V::Null))
        }
        other => Err(Ex::iae(format!(
            "a {} cannot be indexed with []",
            other.type_name()
        ))),
    }
}

fn read_only() -> Ex {
    Ex::new(
        "UnsupportedOperationException",
        "this value is read-only here",
    )
}

/// `o[k] = v`, `o.k = v`.
pub fn put<'a>(it: &mut Interp<'_, 'a>, o: &V<'a>, k: V<'a>, v: V<'a>) -> Result<(), Ex> {
    match o {
        V::Map(m) => {
            let key = k.key().ok_or_else(|| Ex::iae("not a valid map key"))?;
            let mut m = m.borrow_mut();
            m.m.insert(key, v);
            it.check_size(m.m.len())
        }
        V::List(l) => {
            let mut l = l.borrow_mut();
            let len = l.v.len();
            let j = bounds(int_arg(&k)?, len, l.array)?;
            if let Some(slot) = l.v.get_mut(j) {
                *slot = v;
            }
            Ok(())
        }
        V::JMap(_) | V::JList(_) => Err(Ex::input()),
        V::Null => Err(Ex::npe("cannot set a field of null")),
        other => Err(Ex::iae(format!(
            "cannot set a field of a {}",
            other.type_name()
        ))),
    }
}

/// `o.name` on anything but a map: array length, getters.
pub fn field<'a>(it: &mut Interp<'_, 'a>, o: &V<'a>, name: &str) -> Result<V<'a>, Ex> {
    if name == "length"
        && let V::List(l) = o
        && l.borrow().array
    {
        return Ok(V::Int(
            i32::try_from(l.borrow().v.len()).unwrap_or(i32::MAX),
        ));
    }
    // Java bean getters: `e.key` is `e.getKey()`.
    let mut cs = name.chars();
    if let Some(first) = cs.next() {
        let getter = format!("get{}{}", first.to_ascii_uppercase(), cs.as_str());
        if is_method(&getter) {
            return call_method(it, o.clone(), &getter, Vec::new());
        }
    }
    Err(Ex::iae(format!(
        "dynamic getter [{}, {name}] not found",
        o.type_name()
    )))
}

fn not_found(recv: &V, name: &str, n: usize) -> Ex {
    Ex::iae(format!(
        "dynamic method [{}, {name}/{n}] not found",
        recv.type_name()
    ))
}

fn str_arg<'x>(v: &'x V, what: &str) -> Result<&'x str, Ex> {
    match v {
        V::Null => Err(Ex::npe(format!("{what} is null"))),
        other => other.as_str().ok_or_else(|| {
            Ex::cce(format!(
                "{what} must be a String, not {}",
                other.type_name()
            ))
        }),
    }
}

fn to_i32<'a>(i: i64) -> V<'a> {
    V::Int(i32::try_from(i).unwrap_or(-1))
}

/// Converts to a list of UTF-16 units only when the string is not ASCII.
fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

fn sub16(s: &str, from: i64, to: Option<i64>) -> Result<String, Ex> {
    let u = utf16(s);
    let len = i64::try_from(u.len()).unwrap_or(i64::MAX);
    let to = to.unwrap_or(len);
    if from < 0 || to > len || from > to {
        return Err(Ex::new(
            "StringIndexOutOfBoundsException",
            format!("begin {from}, end {to}, length {len}"),
        ));
    }
    Ok(String::from_utf16_lossy(
        &u[usize::try_from(from).unwrap_or(0)..usize::try_from(to).unwrap_or(0)],
    ))
}

fn index16(hay: &str, needle: &str, from: i64, last: bool) -> i64 {
    let h = utf16(hay);
    let n = utf16(needle);
    let hl = h.len() as i64;
    let nl = n.len() as i64;
    if last {
        let start = from.min(hl - nl);
        let mut i = start;
        while i >= 0 {
            let iu = i as usize;
            if h[iu..iu + n.len()] == n[..] {
                return i;
            }
            i -= 1;
        }
        -1
    } else {
        let mut i = from.max(0);
        while i + nl <= hl {
            let iu = i as usize;
            if h[iu..iu + n.len()] == n[..] {
                return i;
            }
            i += 1;
        }
        -1
    }
}

fn needle(v: &V) -> Result<String, Ex> {
    match v {
        V::Char(c) => Ok(String::from_utf16_lossy(&[*c])),
        V::Int(i) => Ok(char::from_u32(*i as u32)
            .map(String::from)
            .unwrap_or_default()),
        other => str_arg(other, "the argument").map(str::to_owned),
    }
}

fn truthy(v: &V, what: &str) -> Result<bool, Ex> {
    match v {
        V::Bool(b) => Ok(*b),
        other => Err(Ex::cce(format!(
            "{what} must return a boolean, not {}",
            other.type_name()
        ))),
    }
}

fn new_list<'a>(it: &Interp<'_, 'a>, v: Vec<V<'a>>) -> Result<V<'a>, Ex> {
    it.check_size(v.len())?;
    Ok(V::list(v))
}

fn new_set<'a>(
    it: &Interp<'_, 'a>,
    items: impl IntoIterator<Item = V<'a>>,
    order: Order,
) -> Result<V<'a>, Ex> {
    let mut s = IndexSet::new();
    for x in items {
        s.insert(set_key(&x)?);
    }
    it.check_size(s.len())?;
    Ok(V::Set(Rc::new(RefCell::new(SetObj { s, order }))))
}

fn set_key(x: &V) -> Result<Key, Ex> {
    x.key().ok_or_else(|| {
        Ex::new(
            "UnsupportedOperationException",
            format!(
                "a set of {} is not supported; sets hold strings, numbers and booleans",
                x.type_name()
            ),
        )
    })
}

/// The elements of a collection argument (`addAll(c)`, `new ArrayList(c)`).
fn collection<'a>(v: &V<'a>) -> Result<Vec<V<'a>>, Ex> {
    iterate(v)?.ok_or_else(|| {
        if v.is_null() {
            Ex::npe("the collection is null")
        } else {
            Ex::cce(format!("a {} is not a collection", v.type_name()))
        }
    })
}

/// Calls a method on a value.
pub fn call_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: V<'a>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    // Object methods first.
    match (name, args.len()) {
        ("toString", 0) if !matches!(recv, V::Func(_)) => return Ok(V::str(recv.java_string())),
        ("equals", 1) => return Ok(V::Bool(java_equals(&recv, &args[0]))),
        ("hashCode", 0) => {
            return Ok(V::Int(
                recv.key()
                    .map(|k| {
                        let keys = [k];
                        // Reuse the Java hash through the order helper's hash.
                        keys[0].java_hash()
                    })
                    .unwrap_or(0),
            ));
        }
        _ => {}
    }
    match &recv {
        V::Str(_) | V::JStr(_) => string_method(it, &recv, name, &args),
        V::Int(_) | V::Long(_) | V::Float(_) | V::Double(_) | V::Char(_) | V::Bool(_) => {
            number_method(&recv, name, &args)
        }
        V::List(_) | V::JList(_) => list_method(it, &recv, name, args),
        V::Map(_) | V::JMap(_) => map_method(it, &recv, name, args),
        V::Set(_) => set_method(it, &recv, name, args),
        V::Entry(e) => match (name, args.len()) {
            ("getKey", 0) => Ok(e.0.clone()),
            ("getValue", 0) => Ok(e.1.clone()),
            _ => Err(not_found(&recv, name, args.len())),
        },
        V::Stream(s) => streams::method(it, s.0, &s.1, name, args),
        V::Opt(kind, o) => opt_method(it, *kind, o.as_deref(), name, args),
        V::Builder(b) => builder_method(it, &recv, b, name, &args),
        V::DecFmt(p) => match (name, args.len()) {
            ("format", 1) => {
                let n = num(&args[0])
                    .ok_or_else(|| Ex::iae("Cannot format given Object as a Number"))?;
                Ok(V::str(decimal_format(p, n.f64())))
            }
            _ => Err(not_found(&recv, name, args.len())),
        },
        V::Time(t) => time_method(t, name, &args),
        V::Func(_) => func_method(it, &recv, name, args),
        V::Exception(e) => match (name, args.len()) {
            ("getMessage", 0) => Ok(V::str(e.1.as_str())),
            _ => Err(not_found(&recv, name, args.len())),
        },
        V::Null => Err(Ex::npe(format!("cannot call {name}() on null"))),
        V::Collector(_) => Err(not_found(&recv, name, args.len())),
        V::Iter(state) => {
            let mut st = state.borrow_mut();
            match (name, args.len()) {
                ("hasNext", 0) => Ok(V::Bool(st.1 < st.0.len())),
                ("next", 0) => {
                    let i = st.1;
                    let v =
                        st.0.get(i)
                            .cloned()
                            .ok_or_else(|| Ex::new("NoSuchElementException", "no more elements"))?;
                    st.1 += 1;
                    Ok(v)
                }
                _ => Err(not_found(&recv, name, args.len())),
            }
        }
    }
}

/// An `Iterator` over a snapshot of the elements.
pub fn iter<'a>(items: Vec<V<'a>>) -> V<'a> {
    V::Iter(Rc::new(RefCell::new((items, 0))))
}

fn string_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    name: &str,
    args: &[V<'a>],
) -> Result<V<'a>, Ex> {
    let s = recv.as_str().unwrap_or("");
    let ascii = s.is_ascii();
    let len16 = || {
        if ascii {
            s.len()
        } else {
            s.encode_utf16().count()
        }
    };
    Ok(match (name, args) {
        ("length", []) => to_i32(len16() as i64),
        ("isEmpty", []) => V::Bool(s.is_empty()),
        ("isBlank", []) => V::Bool(s.trim().is_empty()),
        ("charAt", [i]) => {
            let i = int_arg(i)?;
            let u = utf16(s);
            let c = usize::try_from(i)
                .ok()
                .and_then(|j| u.get(j))
                .ok_or_else(|| {
                    Ex::new(
                        "StringIndexOutOfBoundsException",
                        format!("index {i}, length {}", u.len()),
                    )
                })?;
            V::Char(*c)
        }
        ("substring", [a]) => V::str(sub16(s, int_arg(a)?, None)?),
        ("substring", [a, b]) => V::str(sub16(s, int_arg(a)?, Some(int_arg(b)?))?),
        ("indexOf", [n]) => V::Int(index16(s, &needle(n)?, 0, false) as i32),
        ("indexOf", [n, f]) => V::Int(index16(s, &needle(n)?, int_arg(f)?, false) as i32),
        ("lastIndexOf", [n]) => V::Int(index16(s, &needle(n)?, i64::MAX / 2, true) as i32),
        ("lastIndexOf", [n, f]) => V::Int(index16(s, &needle(n)?, int_arg(f)?, true) as i32),
        ("contains", [n]) => V::Bool(s.contains(str_arg(n, "the argument")?)),
        ("startsWith", [n]) => V::Bool(s.starts_with(str_arg(n, "the prefix")?)),
        ("endsWith", [n]) => V::Bool(s.ends_with(str_arg(n, "the suffix")?)),
        ("toLowerCase", []) => V::str(s.to_lowercase()),
        ("toUpperCase", []) => V::str(s.to_uppercase()),
        ("trim", []) => V::str(s.trim_matches(|c: char| c <= ' ')),
        ("strip", []) => V::str(s.trim()),
        ("equalsIgnoreCase", [o]) => V::Bool(
            o.as_str()
                .is_some_and(|o| o.to_lowercase() == s.to_lowercase()),
        ),
        ("compareTo", [o]) => V::Int(str_cmp(s, str_arg(o, "the argument")?)),
        ("compareToIgnoreCase", [o]) => V::Int(str_cmp(
            &s.to_lowercase(),
            &str_arg(o, "the argument")?.to_lowercase(),
        )),
        ("replace", [a, b]) => {
            let (a, b) = (needle(a)?, needle(b)?);
            let out = if a.is_empty() {
                let mut o = String::from(b.as_str());
                for c in s.chars() {
                    o.push(c);
                    o.push_str(&b);
                }
                o
            } else {
                s.replace(&a, &b)
            };
            it.check_string(out.len())?;
            V::str(out)
        }
        ("concat", [o]) => {
            let out = format!("{s}{}", str_arg(o, "the argument")?);
            it.check_string(out.len())?;
            V::str(out)
        }
        ("repeat", [n]) => {
            let n = usize::try_from(int_arg(n)?).map_err(|_| Ex::iae("count is negative"))?;
            it.check_string(s.len().saturating_mul(n))?;
            V::str(s.repeat(n))
        }
        ("splitOnToken", [t]) => split_on(it, s, str_arg(t, "the token")?, -1)?,
        ("splitOnToken", [t, l]) => split_on(it, s, str_arg(t, "the token")?, int_arg(l)?)?,
        ("toCharArray", []) => V::List(Rc::new(RefCell::new(ListObj {
            v: utf16(s).into_iter().map(V::Char).collect(),
            array: true,
        }))),
        ("hashCode", []) => V::Int(Key::Str(Rc::from(s)).java_hash()),
        _ => return Err(not_found(recv, name, args.len())),
    })
}

/// Painless's `splitOnToken`: a literal token; trailing empty strings are kept.
fn split_on<'a>(it: &Interp<'_, 'a>, s: &str, tok: &str, limit: i64) -> Result<V<'a>, Ex> {
    if tok.is_empty() {
        return Err(Ex::iae("Cannot split on an empty token"));
    }
    let parts: Vec<V<'a>> = if limit > 0 {
        s.splitn(usize::try_from(limit).unwrap_or(usize::MAX), tok)
            .map(V::str)
            .collect()
    } else {
        s.split(tok).map(V::str).collect()
    };
    it.check_size(parts.len())?;
    Ok(V::List(Rc::new(RefCell::new(ListObj {
        v: parts,
        array: true,
    }))))
}

fn number_method<'a>(recv: &V<'a>, name: &str, args: &[V<'a>]) -> Result<V<'a>, Ex> {
    if let V::Bool(b) = recv {
        return match (name, args) {
            ("booleanValue", []) => Ok(V::Bool(*b)),
            ("compareTo", [V::Bool(o)]) => Ok(V::Int(*b as i32 - *o as i32)),
            _ => Err(not_found(recv, name, args.len())),
        };
    }
    let n = num(recv).ok_or_else(|| not_found(recv, name, args.len()))?;
    Ok(match (name, args) {
        ("intValue", []) => V::Int(n.i64() as i32),
        ("longValue", []) => V::Long(n.i64()),
        ("doubleValue", []) => V::Double(n.f64()),
        ("floatValue", []) => V::Float(n.f64() as f32),
        ("shortValue", []) => V::Int(i32::from(n.i64() as i16)),
        ("byteValue", []) => V::Int(i32::from(n.i64() as i8)),
        ("charValue", []) if matches!(recv, V::Char(_)) => recv.clone(),
        ("isNaN", []) => V::Bool(n.f64().is_nan()),
        ("isInfinite", []) => V::Bool(n.f64().is_infinite()),
        ("compareTo", [o]) => {
            let m = num(o).ok_or_else(|| Ex::cce("compareTo needs a number"))?;
            V::Int(cmp_num(n, m) as i32)
        }
        _ => return Err(not_found(recv, name, args.len())),
    })
}

/// A collection borrowed for a change; a change from inside a lambda
/// iterating it is Java's `ConcurrentModificationException`.
fn changing<T>(c: &RefCell<T>) -> Result<std::cell::RefMut<'_, T>, Ex> {
    c.try_borrow_mut().map_err(|_| {
        Ex::new(
            "ConcurrentModificationException",
            "the collection changed while it was in use",
        )
    })
}

fn with_list<'a, R>(
    recv: &V<'a>,
    f: impl FnOnce(&mut ListObj<'a>) -> Result<R, Ex>,
) -> Result<R, Ex> {
    match recv {
        V::List(l) => f(&mut *changing(l)?),
        V::JList(_) => Err(Ex::input()),
        _ => Err(read_only()),
    }
}

fn fixed(l: &ListObj) -> Result<(), Ex> {
    if l.array {
        Err(Ex::new(
            "UnsupportedOperationException",
            "an array has a fixed length",
        ))
    } else {
        Ok(())
    }
}

fn list_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let items = || list_items(recv).unwrap_or_default();
    let len = match recv {
        V::List(l) => l.borrow().v.len(),
        V::JList(a) => a.len(),
        _ => 0,
    };
    Ok(match (name, args.as_slice()) {
        ("size", []) => to_i32(len as i64),
        ("isEmpty", []) => V::Bool(len == 0),
        ("get", [i]) => index(recv, i)?,
        ("contains", [x]) => V::Bool(items().iter().any(|y| java_equals(x, y))),
        ("indexOf", [x]) => to_i32(
            items()
                .iter()
                .position(|y| java_equals(x, y))
                .map_or(-1, |p| p as i64),
        ),
        ("lastIndexOf", [x]) => to_i32(
            items()
                .iter()
                .rposition(|y| java_equals(x, y))
                .map_or(-1, |p| p as i64),
        ),
        ("containsAll", [c]) => {
            let all = items();
            V::Bool(
                collection(c)?
                    .iter()
                    .all(|x| all.iter().any(|y| java_equals(x, y))),
            )
        }
        ("add", [x]) => {
            let x = x.clone();
            with_list(recv, |l| {
                fixed(l)?;
                l.v.push(x);
                it.check_size(l.v.len())
            })?;
            V::Bool(true)
        }
        ("add", [i, x]) => {
            let i = int_arg(i)?;
            let x = x.clone();
            with_list(recv, |l| {
                fixed(l)?;
                let j = usize::try_from(i)
                    .ok()
                    .filter(|j| *j <= l.v.len())
                    .ok_or_else(|| {
                        Ex::new(
                            "IndexOutOfBoundsException",
                            format!("Index: {i}, Size: {}", l.v.len()),
                        )
                    })?;
                l.v.insert(j, x);
                it.check_size(l.v.len())
            })?;
            V::Null
        }
        ("addAll", [c]) => {
            let more = collection(c)?;
            let changed = !more.is_empty();
            with_list(recv, |l| {
                fixed(l)?;
                l.v.extend(more);
                it.check_size(l.v.len())
            })?;
            V::Bool(changed)
        }
        ("set", [i, x]) => {
            let old = index(recv, i)?;
            put(it, recv, i.clone(), x.clone())?;
            old
        }
        ("remove", [V::Int(i)]) => {
            let i = i64::from(*i);
            with_list(recv, |l| {
                fixed(l)?;
                let j = usize::try_from(i)
                    .ok()
                    .filter(|j| *j < l.v.len())
                    .ok_or_else(|| {
                        Ex::new(
                            "IndexOutOfBoundsException",
                            format!("Index {i} out of bounds for length {}", l.v.len()),
                        )
                    })?;
                Ok(l.v.remove(j))
            })?
        }
        ("remove", [x]) => {
            let x = x.clone();
            V::Bool(with_list(recv, |l| {
                fixed(l)?;
                Ok(match l.v.iter().position(|y| java_equals(&x, y)) {
                    Some(p) => {
                        l.v.remove(p);
                        true
                    }
                    None => false,
                })
            })?)
        }
        ("removeIf", [f]) => {
            let mut keep = Vec::new();
            let mut removed = false;
            for x in items() {
                if truthy(
                    &it.call(f, std::slice::from_ref(&x))?,
                    "removeIf's predicate",
                )? {
                    removed = true;
                } else {
                    keep.push(x);
                }
            }
            with_list(recv, |l| {
                fixed(l)?;
                l.v = keep;
                Ok(())
            })?;
            V::Bool(removed)
        }
        ("removeAll", [c]) | ("retainAll", [c]) => {
            let other = collection(c)?;
            let retain = name == "retainAll";
            let before = len;
            let kept: Vec<V<'a>> = items()
                .into_iter()
                .filter(|x| other.iter().any(|y| java_equals(x, y)) == retain)
                .collect();
            let changed = kept.len() != before;
            with_list(recv, |l| {
                l.v = kept;
                Ok(())
            })?;
            V::Bool(changed)
        }
        ("clear", []) => {
            with_list(recv, |l| {
                fixed(l)?;
                l.v.clear();
                Ok(())
            })?;
            V::Null
        }
        ("sort", [c]) => {
            let sorted = sort_with(it, items(), Some(c))?;
            with_list(recv, |l| {
                l.v = sorted;
                Ok(())
            })?;
            V::Null
        }
        ("subList", [a, b]) => {
            let (a, b) = (int_arg(a)?, int_arg(b)?);
            let v = items();
            if a < 0 || b > v.len() as i64 || a > b {
                return Err(Ex::new(
                    "IndexOutOfBoundsException",
                    format!("fromIndex: {a}, toIndex: {b}, size: {}", v.len()),
                ));
            }
            V::list(v[a as usize..b as usize].to_vec())
        }
        ("stream", []) => V::Stream(Rc::new((StreamKind::Obj, items()))),
        ("toArray", _) => V::List(Rc::new(RefCell::new(ListObj {
            v: items(),
            array: true,
        }))),
        ("iterator", []) => iter(items()),
        ("asList", []) | ("asCollection", []) => recv.clone(),
        _ => return collection_method(it, recv, items(), name, args),
    })
}

/// Methods every collection has, and Painless's Groovy-style shortcuts.
fn collection_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    items: Vec<V<'a>>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    Ok(match (name, args.as_slice()) {
        ("forEach", [f]) | ("each", [f]) => {
            for x in items {
                it.call(f, &[x])?;
            }
            if name == "each" {
                recv.clone()
            } else {
                V::Null
            }
        }
        ("eachWithIndex", [f]) => {
            for (i, x) in items.into_iter().enumerate() {
                it.call(f, &[x, to_i32(i as i64)])?;
            }
            recv.clone()
        }
        ("any", [f]) => {
            for x in items {
                if truthy(&it.call(f, &[x])?, "any's predicate")? {
                    return Ok(V::Bool(true));
                }
            }
            V::Bool(false)
        }
        ("every", [f]) => {
            for x in items {
                if !truthy(&it.call(f, &[x])?, "every's predicate")? {
                    return Ok(V::Bool(false));
                }
            }
            V::Bool(true)
        }
        ("find", [f]) => {
            for x in items {
                if truthy(&it.call(f, std::slice::from_ref(&x))?, "find's predicate")? {
                    return Ok(x);
                }
            }
            V::Null
        }
        ("findResult", [f]) => {
            for x in items {
                let r = it.call(f, &[x])?;
                if !r.is_null() {
                    return Ok(r);
                }
            }
            V::Null
        }
        ("findAll", [f]) => {
            let mut out = Vec::new();
            for x in items {
                if truthy(
                    &it.call(f, std::slice::from_ref(&x))?,
                    "findAll's predicate",
                )? {
                    out.push(x);
                }
            }
            V::list(out)
        }
        ("collect", [f]) => {
            let mut out = Vec::with_capacity(items.len());
            for x in items {
                out.push(it.call(f, &[x])?);
            }
            V::list(out)
        }
        ("sum", []) => {
            let mut t = 0.0;
            for x in &items {
                t += num(x)
                    .ok_or_else(|| Ex::cce(format!("cannot sum a {}", x.type_name())))?
                    .f64();
            }
            V::Double(t)
        }
        ("sum", [f]) => {
            let mut t = 0.0;
            for x in items {
                let r = it.call(f, &[x])?;
                t += num(&r)
                    .ok_or_else(|| Ex::cce(format!("cannot sum a {}", r.type_name())))?
                    .f64();
            }
            V::Double(t)
        }
        ("join", [sep]) => {
            let sep = str_arg(sep, "the separator")?;
            let mut s = String::new();
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(sep);
                }
                x.write_java(&mut s, 0);
                it.check_string(s.len())?;
            }
            V::str(s)
        }
        ("groupBy", [f]) => {
            let mut m: IndexMap<Key, V<'a>> = IndexMap::new();
            for x in items {
                let k = it.call(f, std::slice::from_ref(&x))?;
                let k = k
                    .key()
                    .ok_or_else(|| Ex::iae("groupBy keys must be strings or numbers"))?;
                match m.get(&k) {
                    Some(V::List(l)) => l.borrow_mut().v.push(x),
                    _ => {
                        m.insert(k, V::list(vec![x]));
                    }
                }
            }
            V::map(MapObj {
                m,
                order: Order::Hash,
            })
        }
        _ => return Err(not_found(recv, name, args.len())),
    })
}

fn with_map<'a, R>(
    recv: &V<'a>,
    f: impl FnOnce(&mut MapObj<'a>) -> Result<R, Ex>,
) -> Result<R, Ex> {
    match recv {
        V::Map(m) => f(&mut *changing(m)?),
        V::JMap(_) => Err(Ex::input()),
        _ => Err(read_only()),
    }
}

fn map_key(k: &V) -> Result<Key, Ex> {
    k.key()
        .ok_or_else(|| Ex::iae(format!("a {} cannot be a map key here", k.type_name())))
}

fn map_get<'a>(recv: &V<'a>, k: &V<'a>) -> Option<V<'a>> {
    match recv {
        V::JMap(m) => k
            .as_str()
            .and_then(|s| super::value::jget(m, s))
            .map(V::from_json),
        V::Map(m) => k.key().and_then(|key| m.borrow().m.get(&key).cloned()),
        _ => None,
    }
}

fn map_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let entries = || map_entries(recv).unwrap_or_default();
    let len = match recv {
        V::Map(m) => m.borrow().m.len(),
        V::JMap(m) => m.len(),
        _ => 0,
    };
    Ok(match (name, args.as_slice()) {
        ("get", [k]) => map_get(recv, k).unwrap_or(V::Null),
        ("getOrDefault", [k, d]) => map_get(recv, k).unwrap_or_else(|| d.clone()),
        ("containsKey", [k]) => V::Bool(map_get(recv, k).is_some()),
        ("containsValue", [x]) => V::Bool(entries().iter().any(|(_, v)| java_equals(x, v))),
        ("size", []) => to_i32(len as i64),
        ("isEmpty", []) => V::Bool(len == 0),
        ("put", [k, v]) => {
            let key = map_key(k)?;
            let v = v.clone();
            with_map(recv, |m| {
                let old = m.m.insert(key, v);
                it.check_size(m.m.len())?;
                Ok(old.unwrap_or(V::Null))
            })?
        }
        ("putIfAbsent", [k, v]) => {
            let key = map_key(k)?;
            let v = v.clone();
            with_map(recv, |m| match m.m.get(&key) {
                Some(old) if !old.is_null() => Ok(old.clone()),
                _ => {
                    m.m.insert(key, v);
                    it.check_size(m.m.len())?;
                    Ok(V::Null)
                }
            })?
        }
        ("putAll", [o]) => {
            let more = map_entries(o).ok_or_else(|| Ex::cce("putAll needs a map"))?;
            with_map(recv, |m| {
                m.m.extend(more);
                it.check_size(m.m.len())
            })?;
            V::Null
        }
        ("remove", [k]) => {
            let key = map_key(k)?;
            with_map(recv, |m| Ok(m.m.shift_remove(&key).unwrap_or(V::Null)))?
        }
        ("clear", []) => {
            with_map(recv, |m| {
                m.m.clear();
                Ok(())
            })?;
            V::Null
        }
        ("computeIfAbsent", [k, f]) => match map_get(recv, k) {
            Some(v) if !v.is_null() => v,
            _ => {
                let v = it.call(f, std::slice::from_ref(k))?;
                if !v.is_null() {
                    let key = map_key(k)?;
                    let v2 = v.clone();
                    with_map(recv, |m| {
                        m.m.insert(key, v2);
                        it.check_size(m.m.len())
                    })?;
                }
                v
            }
        },
        ("computeIfPresent", [k, f]) => match map_get(recv, k) {
            Some(old) if !old.is_null() => {
                let v = it.call(f, &[k.clone(), old])?;
                let key = map_key(k)?;
                let v2 = v.clone();
                with_map(recv, |m| {
                    if v2.is_null() {
                        m.m.shift_remove(&key);
                    } else {
                        m.m.insert(key, v2);
                    }
                    Ok(())
                })?;
                v
            }
            _ => V::Null,
        },
        ("merge", [k, v, f]) => {
            let new = match map_get(recv, k) {
                Some(old) if !old.is_null() => it.call(f, &[old, v.clone()])?,
                _ => v.clone(),
            };
            let key = map_key(k)?;
            let n2 = new.clone();
            with_map(recv, |m| {
                if n2.is_null() {
                    m.m.shift_remove(&key);
                } else {
                    m.m.insert(key, n2);
                }
                it.check_size(m.m.len())
            })?;
            new
        }
        ("keySet", []) => {
            let keys: Vec<V<'a>> = entries().into_iter().map(|(k, _)| k.to_value()).collect();
            let order = match recv {
                V::Map(m) => m.borrow().order,
                _ => Order::Hash,
            };
            // Already in the map's order: keep it.
            let _ = order;
            new_set(it, keys, Order::Linked)?
        }
        ("values", []) => V::list(entries().into_iter().map(|(_, v)| v).collect()),
        ("entrySet", []) => V::list(
            entries()
                .into_iter()
                .map(|(k, v)| V::Entry(Rc::new((k.to_value(), v))))
                .collect(),
        ),
        ("forEach", [f]) | ("each", [f]) => {
            for (k, v) in entries() {
                it.call(f, &[k.to_value(), v])?;
            }
            if name == "each" {
                recv.clone()
            } else {
                V::Null
            }
        }
        ("collect", [f]) => {
            let mut out = Vec::new();
            for (k, v) in entries() {
                out.push(it.call(f, &[k.to_value(), v])?);
            }
            V::list(out)
        }
        ("count", [f]) => {
            let mut n = 0;
            for (k, v) in entries() {
                if truthy(&it.call(f, &[k.to_value(), v])?, "count's predicate")? {
                    n += 1;
                }
            }
            V::Int(n)
        }
        ("every", [f]) | ("any", [f]) => {
            let every = name == "every";
            for (k, v) in entries() {
                if truthy(&it.call(f, &[k.to_value(), v])?, "the predicate")? != every {
                    return Ok(V::Bool(!every));
                }
            }
            V::Bool(every)
        }
        ("find", [f]) => {
            for (k, v) in entries() {
                if truthy(&it.call(f, &[k.to_value(), v.clone()])?, "find's predicate")? {
                    return Ok(V::Entry(Rc::new((k.to_value(), v))));
                }
            }
            V::Null
        }
        ("findAll", [f]) => {
            let mut m = MapObj::new(Order::Hash);
            for (k, v) in entries() {
                if truthy(
                    &it.call(f, &[k.to_value(), v.clone()])?,
                    "findAll's predicate",
                )? {
                    m.m.insert(k, v);
                }
            }
            V::map(m)
        }
        _ => return Err(not_found(recv, name, args.len())),
    })
}

fn set_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let V::Set(s) = recv else {
        return Err(not_found(recv, name, args.len()));
    };
    let items = || s.borrow().items();
    Ok(match (name, args.as_slice()) {
        ("size", []) => to_i32(s.borrow().s.len() as i64),
        ("isEmpty", []) => V::Bool(s.borrow().s.is_empty()),
        ("contains", [x]) => V::Bool(x.key().is_some_and(|k| s.borrow().s.contains(&k))),
        ("add", [x]) => {
            let k = set_key(x)?;
            let mut b = s.borrow_mut();
            let added = b.s.insert(k);
            it.check_size(b.s.len())?;
            V::Bool(added)
        }
        ("addAll", [c]) => {
            let more = collection(c)?;
            let mut b = s.borrow_mut();
            let before = b.s.len();
            for x in more {
                b.s.insert(set_key(&x)?);
            }
            it.check_size(b.s.len())?;
            V::Bool(b.s.len() != before)
        }
        ("remove", [x]) => V::Bool(x.key().is_some_and(|k| s.borrow_mut().s.shift_remove(&k))),
        ("removeAll", [c]) | ("retainAll", [c]) => {
            let other: Vec<Key> = collection(c)?.iter().filter_map(V::key).collect();
            let retain = name == "retainAll";
            let mut b = s.borrow_mut();
            let before = b.s.len();
            b.s.retain(|k| other.contains(k) == retain);
            V::Bool(b.s.len() != before)
        }
        ("containsAll", [c]) => {
            let b = s.borrow();
            V::Bool(
                collection(c)?
                    .iter()
                    .all(|x| x.key().is_some_and(|k| b.s.contains(&k))),
            )
        }
        ("clear", []) => {
            s.borrow_mut().s.clear();
            V::Null
        }
        ("stream", []) => V::Stream(Rc::new((StreamKind::Obj, items()))),
        ("iterator", []) => iter(items()),
        ("toArray", _) => V::List(Rc::new(RefCell::new(ListObj {
            v: items(),
            array: true,
        }))),
        ("removeIf", [f]) => {
            let mut removed = false;
            for x in items() {
                if truthy(
                    &it.call(f, std::slice::from_ref(&x))?,
                    "removeIf's predicate",
                )? {
                    if let Some(k) = x.key() {
                        s.borrow_mut().s.shift_remove(&k);
                    }
                    removed = true;
                }
            }
            V::Bool(removed)
        }
        _ => return collection_method(it, recv, items(), name, args),
    })
}

fn opt_method<'a>(
    it: &mut Interp<'_, 'a>,
    kind: OptKind,
    o: Option<&V<'a>>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let empty = || Ex::new("NoSuchElementException", "No value present");
    Ok(match (name, args.as_slice()) {
        ("isPresent", []) => V::Bool(o.is_some()),
        ("isEmpty", []) => V::Bool(o.is_none()),
        ("get", [])
        | ("getAsInt", [])
        | ("getAsLong", [])
        | ("getAsDouble", [])
        | ("orElseThrow", []) => o.cloned().ok_or_else(empty)?,
        ("orElse", [d]) => match o {
            Some(v) => v.clone(),
            None => match kind {
                OptKind::Double => coerce(d.clone(), Tt::Double)?,
                OptKind::Long => coerce(d.clone(), Tt::Long)?,
                OptKind::Int => coerce(d.clone(), Tt::Int)?,
                OptKind::Obj => d.clone(),
            },
        },
        ("orElseGet", [f]) => match o {
            Some(v) => v.clone(),
            None => it.call(f, &[])?,
        },
        ("ifPresent", [f]) => {
            if let Some(v) = o {
                it.call(f, std::slice::from_ref(v))?;
            }
            V::Null
        }
        ("map", [f]) => match o {
            Some(v) => {
                let r = it.call(f, std::slice::from_ref(v))?;
                V::Opt(OptKind::Obj, (!r.is_null()).then(|| Rc::new(r)))
            }
            None => V::Opt(OptKind::Obj, None),
        },
        ("filter", [f]) => match o {
            Some(v) if truthy(&it.call(f, std::slice::from_ref(v))?, "filter's predicate")? => {
                V::Opt(kind, Some(Rc::new(v.clone())))
            }
            _ => V::Opt(kind, None),
        },
        _ => {
            return Err(Ex::iae(format!(
                "dynamic method [java.util.Optional, {name}/{}] not found",
                args.len()
            )));
        }
    })
}

fn builder_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    b: &Rc<RefCell<String>>,
    name: &str,
    args: &[V<'a>],
) -> Result<V<'a>, Ex> {
    Ok(match (name, args) {
        ("append", [x]) => {
            let mut s = b.borrow_mut();
            x.write_java(&mut s, 0);
            it.check_string(s.len())?;
            recv.clone()
        }
        ("length", []) => to_i32(b.borrow().encode_utf16().count() as i64),
        ("insert", [i, x]) => {
            let cur = b.borrow().clone();
            let i = int_arg(i)?;
            let head = sub16(&cur, 0, Some(i))?;
            let tail = sub16(&cur, i, None)?;
            let out = format!("{head}{}{tail}", x.java_string());
            it.check_string(out.len())?;
            *b.borrow_mut() = out;
            recv.clone()
        }
        ("reverse", []) => {
            let r: String = b.borrow().chars().rev().collect();
            *b.borrow_mut() = r;
            recv.clone()
        }
        ("setLength", [n]) => {
            let n = int_arg(n)?;
            let cur = b.borrow().clone();
            let len = cur.encode_utf16().count() as i64;
            let out = if n <= len {
                sub16(&cur, 0, Some(n))?
            } else {
                let pad = usize::try_from(n - len).unwrap_or(0);
                it.check_string(cur.len().saturating_add(pad))?;
                format!("{cur}{}", "\0".repeat(pad))
            };
            *b.borrow_mut() = out;
            V::Null
        }
        ("charAt", [_]) | ("indexOf", [_]) | ("substring", _) | ("isEmpty", []) => {
            let s = V::str(b.borrow().as_str());
            string_method(it, &s, name, args)?
        }
        ("deleteCharAt", [i]) => {
            let cur = b.borrow().clone();
            let i = int_arg(i)?;
            let out = format!("{}{}", sub16(&cur, 0, Some(i))?, sub16(&cur, i + 1, None)?);
            *b.borrow_mut() = out;
            recv.clone()
        }
        _ => return Err(not_found(recv, name, args.len())),
    })
}

fn func_method<'a>(
    it: &mut Interp<'_, 'a>,
    recv: &V<'a>,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    Ok(match (name, args.len()) {
        ("compare", 2) | ("apply", _) | ("test", _) | ("accept", _) => it.call(recv, &args)?,
        ("reversed", 0) => V::Func(Rc::new(Func::Reversed(recv.clone()))),
        ("thenComparing", 1) => {
            let second = match &args[0] {
                f @ V::Func(inner) if matches!(**inner, Func::Lambda(ref l) if l.def.params.len() == 1) => {
                    V::Func(Rc::new(Func::Comparing(f.clone())))
                }
                other => other.clone(),
            };
            V::Func(Rc::new(Func::Then(recv.clone(), second)))
        }
        _ => return Err(not_found(recv, name, args.len())),
    })
}

fn time_arg(v: &V) -> Result<Rc<TimeV>, Ex> {
    match v {
        V::Time(t) => Ok(t.clone()),
        V::Null => Err(Ex::npe("a time argument is null")),
        other => Err(Ex::cce(format!(
            "expected a java.time value, not {}",
            other.type_name()
        ))),
    }
}

fn unit_arg(v: &V) -> Result<Unit, Ex> {
    match &*time_arg(v)? {
        TimeV::Unit(u) => Ok(*u),
        _ => Err(Ex::cce("expected a ChronoUnit")),
    }
}

fn zone_arg(v: &V) -> Result<Zone, Ex> {
    match v {
        V::Time(t) => match &**t {
            TimeV::Zone(z) => Ok(*z),
            _ => Err(Ex::cce("expected a ZoneId")),
        },
        other => Zone::of(str_arg(other, "the zone")?),
    }
}

fn tv<'a>(t: TimeV) -> V<'a> {
    V::Time(Rc::new(t))
}

const MILLI: i128 = 1_000_000;
const SEC: i128 = 1_000_000_000;

fn time_method<'a>(t: &Rc<TimeV>, name: &str, args: &[V<'a>]) -> Result<V<'a>, Ex> {
    let long = |n: i128| -> Result<V<'a>, Ex> {
        i64::try_from(n)
            .map(V::Long)
            .map_err(|_| Ex::new("ArithmeticException", "long overflow"))
    };
    if let Some(v) = time::field(t, name)
        && args.is_empty()
    {
        if name == "getDayOfWeek" {
            return Ok(tv(TimeV::Day(u32::try_from(v).unwrap_or(1))));
        }
        return Ok(V::Int(i32::try_from(v).unwrap_or(0)));
    }
    let plus_unit = |unit: Unit, amount: &V, sign: i64| -> Result<V<'a>, Ex> {
        let n = int_arg(amount)?
            .checked_mul(sign)
            .ok_or_else(|| Ex::new("ArithmeticException", "long overflow"))?;
        Ok(tv(time::plus(t, n, unit)?))
    };
    match (&**t, name, args) {
        (TimeV::Instant(n), "toEpochMilli", []) => long(n.div_euclid(MILLI)),
        (TimeV::Zoned(n, _), "getMillis", []) => long(n.div_euclid(MILLI)),
        (TimeV::Instant(n), "getEpochSecond", []) | (TimeV::Zoned(n, _), "toEpochSecond", []) => {
            long(n.div_euclid(SEC))
        }
        (TimeV::Instant(n), "getNano", []) => Ok(V::Int(n.rem_euclid(SEC) as i32)),
        (TimeV::Zoned(n, _), "toInstant", []) => Ok(tv(time::instant(*n)?)),
        (TimeV::Zoned(_, z), "getZone", []) => Ok(tv(TimeV::Zone(*z))),
        (TimeV::Instant(n), "atZone", [z]) => Ok(tv(TimeV::Zoned(*n, zone_arg(z)?))),
        (TimeV::Zoned(n, _), "withZoneSameInstant", [z]) => Ok(tv(TimeV::Zoned(*n, zone_arg(z)?))),
        (TimeV::Instant(_) | TimeV::Zoned(..), "isBefore" | "isAfter", [o]) => {
            let o = time_arg(o)?;
            let (a, b) = (
                t.nanos().unwrap_or(0),
                o.nanos().ok_or_else(|| Ex::cce("not a temporal"))?,
            );
            Ok(V::Bool(if name == "isBefore" { a < b } else { a > b }))
        }
        (_, "compareTo", [o]) => {
            let o = time_arg(o)?;
            match (t.nanos(), o.nanos()) {
                (Some(a), Some(b)) => Ok(V::Int(a.cmp(&b) as i32)),
                _ => Err(Ex::cce("cannot compare")),
            }
        }
        (TimeV::Instant(_) | TimeV::Zoned(..) | TimeV::Duration(_), "plus" | "minus", [d]) => {
            let sign = if name == "plus" { 1 } else { -1 };
            match &*time_arg(d)? {
                TimeV::Duration(dn) => {
                    let delta = dn * i128::from(sign);
                    Ok(tv(match &**t {
                        TimeV::Instant(n) => time::instant(n + delta)?,
                        TimeV::Zoned(n, z) => match time::instant(n + delta)? {
                            TimeV::Instant(x) => TimeV::Zoned(x, *z),
                            other => other,
                        },
                        TimeV::Duration(n) => TimeV::Duration(
                            n.checked_add(delta)
                                .ok_or_else(|| Ex::new("ArithmeticException", "long overflow"))?,
                        ),
                        _ => return Err(Ex::cce("not a temporal")),
                    }))
                }
                _ => Err(Ex::cce("plus needs a Duration")),
            }
        }
        (_, "plus" | "minus", [a, u]) => {
            plus_unit(unit_arg(u)?, a, if name == "plus" { 1 } else { -1 })
        }
        (_, "plusMillis", [a]) => plus_unit(Unit::Millis, a, 1),
        (_, "minusMillis", [a]) => plus_unit(Unit::Millis, a, -1),
        (_, "plusSeconds", [a]) => plus_unit(Unit::Seconds, a, 1),
        (_, "minusSeconds", [a]) => plus_unit(Unit::Seconds, a, -1),
        (_, "plusNanos", [a]) => plus_unit(Unit::Nanos, a, 1),
        (_, "minusNanos", [a]) => plus_unit(Unit::Nanos, a, -1),
        (_, "plusMinutes", [a]) => plus_unit(Unit::Minutes, a, 1),
        (_, "minusMinutes", [a]) => plus_unit(Unit::Minutes, a, -1),
        (_, "plusHours", [a]) => plus_unit(Unit::Hours, a, 1),
        (_, "minusHours", [a]) => plus_unit(Unit::Hours, a, -1),
        (_, "plusDays", [a]) => plus_unit(Unit::Days, a, 1),
        (_, "minusDays", [a]) => plus_unit(Unit::Days, a, -1),
        (TimeV::Zoned(..), "plusWeeks", [a]) => plus_unit(Unit::Weeks, a, 1),
        (TimeV::Zoned(..), "minusWeeks", [a]) => plus_unit(Unit::Weeks, a, -1),
        (TimeV::Zoned(..), "plusMonths", [a]) => plus_unit(Unit::Months, a, 1),
        (TimeV::Zoned(..), "minusMonths", [a]) => plus_unit(Unit::Months, a, -1),
        (TimeV::Zoned(..), "plusYears", [a]) => plus_unit(Unit::Years, a, 1),
        (TimeV::Zoned(..), "minusYears", [a]) => plus_unit(Unit::Years, a, -1),
        (TimeV::Instant(_) | TimeV::Zoned(..), "truncatedTo", [u]) => {
            Ok(tv(time::truncate(t, unit_arg(u)?)?))
        }
        (TimeV::Duration(n), "toMillis", []) => long(n.div_euclid(MILLI)),
        (TimeV::Duration(n), "toNanos", []) => long(*n),
        (TimeV::Duration(n), "getSeconds" | "toSeconds", []) => long(n.div_euclid(SEC)),
        (TimeV::Duration(n), "getNano", []) => Ok(V::Int(n.rem_euclid(SEC) as i32)),
        (TimeV::Duration(n), "toMinutes", []) => long(n.div_euclid(SEC) / 60),
        (TimeV::Duration(n), "toHours", []) => long(n.div_euclid(SEC) / 3600),
        (TimeV::Duration(n), "toDays", []) => long(n.div_euclid(SEC) / 86400),
        (TimeV::Duration(n), "isNegative", []) => Ok(V::Bool(*n < 0)),
        (TimeV::Duration(n), "isZero", []) => Ok(V::Bool(*n == 0)),
        (TimeV::Duration(n), "abs", []) => Ok(tv(TimeV::Duration(n.saturating_abs()))),
        (TimeV::Duration(n), "negated", []) => Ok(tv(TimeV::Duration(n.saturating_neg()))),
        (TimeV::Duration(n), "multipliedBy", [m]) => Ok(tv(TimeV::Duration(
            n.checked_mul(i128::from(int_arg(m)?))
                .ok_or_else(|| Ex::new("ArithmeticException", "overflow"))?,
        ))),
        (TimeV::Duration(n), "dividedBy", [m]) => {
            let m = i128::from(int_arg(m)?);
            if m == 0 {
                return Err(Ex::new("ArithmeticException", "Cannot divide by zero"));
            }
            Ok(tv(TimeV::Duration(n.checked_div(m).unwrap_or(0))))
        }
        (TimeV::Unit(u), "between", [a, b]) => {
            Ok(V::Long(time::between(*u, &*time_arg(a)?, &*time_arg(b)?)?))
        }
        (TimeV::Day(d), "getValue", []) => Ok(V::Int(i32::try_from(*d).unwrap_or(1))),
        _ => Err(Ex::iae(format!(
            "dynamic method [{}, {name}/{}] not found",
            t.type_name(),
            args.len()
        ))),
    }
}

/// `DecimalFormat.format` for the common patterns: `0.00`, `#.##`,
/// `#,##0.0`, `0`, `0.0%` (half-even rounding, as Java's default).
pub fn decimal_format(pattern: &str, x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "∞" } else { "-∞" }.into();
    }
    let pattern = pattern.split(';').next().unwrap_or("");
    let percent = pattern.ends_with('%');
    let core: String = pattern
        .chars()
        .filter(|c| matches!(c, '#' | '0' | ',' | '.'))
        .collect();
    let (int_part, frac_part) = core.split_once('.').unwrap_or((&core, ""));
    let grouping = int_part.rfind(',').map(|i| int_part.len() - i - 1);
    let min_int = int_part.chars().filter(|c| *c == '0').count();
    let min_frac = frac_part.chars().filter(|c| *c == '0').count();
    let max_frac = frac_part.chars().filter(|c| *c == '0' || *c == '#').count();
    let v = if percent { x * 100.0 } else { x };
    let neg = v < 0.0;
    // Round half-even at max_frac digits, on the exact decimal value.
    let scaled = v.abs() * 10f64.powi(max_frac as i32);
    let floor = scaled.floor();
    let diff = scaled - floor;
    let round_up = diff > 0.5 || (diff == 0.5 && floor % 2.0 != 0.0);
    let mut r = if round_up { floor + 1.0 } else { floor };
    if !r.is_finite() {
        r = 0.0;
    }
    let digits = format!("{r:.0}");
    let pad = max_frac + 1;
    let digits = if digits.len() < pad {
        format!("{}{digits}", "0".repeat(pad - digits.len()))
    } else {
        digits
    };
    let (ip, fp) = digits.split_at(digits.len() - max_frac);
    let mut ip = ip.trim_start_matches('0').to_owned();
    if ip.len() < min_int {
        ip = format!("{}{ip}", "0".repeat(min_int - ip.len()));
    }
    let mut fp = fp.to_owned();
    while fp.len() > min_frac && fp.ends_with('0') {
        fp.pop();
    }
    if let Some(g) = grouping.filter(|g| *g > 0) {
        let chars: Vec<char> = ip.chars().collect();
        let mut out = String::new();
        for (i, c) in chars.iter().enumerate() {
            if i > 0 && (chars.len() - i).is_multiple_of(g) {
                out.push(',');
            }
            out.push(*c);
        }
        ip = out;
    }
    let mut out = String::new();
    if neg && (ip.chars().any(|c| c != '0' && c != ',') || fp.chars().any(|c| c != '0')) {
        out.push('-');
    }
    out.push_str(&ip);
    if !fp.is_empty() {
        out.push('.');
        out.push_str(&fp);
    }
    if percent {
        out.push('%');
    }
    out
}

/// `Class.NAME`.
pub fn static_field<'a>(class: &str, name: &str) -> Result<V<'a>, Ex> {
    Ok(match (class, name) {
        ("Math", "PI") => V::Double(std::f64::consts::PI),
        ("Math", "E") => V::Double(std::f64::consts::E),
        ("Integer", "MAX_VALUE") => V::Int(i32::MAX),
        ("Integer", "MIN_VALUE") => V::Int(i32::MIN),
        ("Long", "MAX_VALUE") => V::Long(i64::MAX),
        ("Long", "MIN_VALUE") => V::Long(i64::MIN),
        ("Double", "MAX_VALUE") => V::Double(f64::MAX),
        ("Double", "MIN_VALUE") => V::Double(f64::from_bits(1)),
        ("Double", "POSITIVE_INFINITY") => V::Double(f64::INFINITY),
        ("Double", "NEGATIVE_INFINITY") => V::Double(f64::NEG_INFINITY),
        ("Double", "NaN") => V::Double(f64::NAN),
        ("Float", "MAX_VALUE") => V::Float(f32::MAX),
        ("Float", "MIN_VALUE") => V::Float(f32::from_bits(1)),
        ("Boolean", "TRUE") => V::Bool(true),
        ("Boolean", "FALSE") => V::Bool(false),
        ("Instant", "EPOCH") => tv(TimeV::Instant(0)),
        ("ZoneOffset", "UTC") => tv(TimeV::Zone(Zone::Offset(0))),
        ("Duration", "ZERO") => tv(TimeV::Duration(0)),
        ("ChronoUnit", u) => tv(TimeV::Unit(
            Unit::of(u).ok_or_else(|| Ex::iae(format!("no ChronoUnit.{u}")))?,
        )),
        ("DayOfWeek", d) => {
            let i = time::DAYS
                .iter()
                .position(|x| *x == d)
                .ok_or_else(|| Ex::iae(format!("no DayOfWeek.{d}")))?;
            tv(TimeV::Day(i as u32 + 1))
        }
        _ => return Err(Ex::iae(format!("static field [{class}.{name}] not found"))),
    })
}

fn parse_int(s: &str, radix: u32) -> Result<i64, Ex> {
    let t = s.strip_prefix('+').unwrap_or(s);
    if t.is_empty() || t.starts_with('+') {
        return Err(Ex::new(
            "NumberFormatException",
            format!("For input string: \"{s}\""),
        ));
    }
    i64::from_str_radix(t, radix).map_err(|_| {
        Ex::new(
            "NumberFormatException",
            format!("For input string: \"{s}\""),
        )
    })
}

fn parse_double(s: &str) -> Result<f64, Ex> {
    let t = s.trim();
    let t = t.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(t);
    match t {
        "NaN" => return Ok(f64::NAN),
        "Infinity" | "+Infinity" => return Ok(f64::INFINITY),
        "-Infinity" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    if t.is_empty() || t.chars().any(|c| c.is_alphabetic() && c != 'e' && c != 'E') {
        return Err(Ex::new(
            "NumberFormatException",
            format!("For input string: \"{s}\""),
        ));
    }
    t.parse::<f64>().map_err(|_| {
        Ex::new(
            "NumberFormatException",
            format!("For input string: \"{s}\""),
        )
    })
}

fn n_arg(v: &V) -> Result<N, Ex> {
    num(v).ok_or_else(|| {
        if v.is_null() {
            Ex::npe("a number argument is null")
        } else {
            Ex::cce(format!("expected a number, not {}", v.type_name()))
        }
    })
}

fn math<'a>(name: &str, args: &[V<'a>]) -> Result<V<'a>, Ex> {
    // Painless has Math's double overloads only: abs(-3) is 3.0.
    let d = |i: usize| -> Result<f64, Ex> { Ok(n_arg(args.get(i).unwrap_or(&V::Null))?.f64()) };
    let f1 = |f: fn(f64) -> f64| -> Result<V<'a>, Ex> { Ok(V::Double(f(d(0)?))) };
    Ok(match (name, args) {
        ("abs", [_]) => f1(f64::abs)?,
        ("max" | "min", [_, _]) => {
            let (p, q) = (d(0)?, d(1)?);
            V::Double(if p.is_nan() || q.is_nan() {
                f64::NAN
            } else if name == "max" {
                p.max(q)
            } else {
                p.min(q)
            })
        }
        ("pow", [_, _]) => V::Double(d(0)?.powf(d(1)?)),
        ("sqrt", [_]) => f1(f64::sqrt)?,
        ("cbrt", [_]) => f1(f64::cbrt)?,
        ("floor", [_]) => f1(f64::floor)?,
        ("ceil", [_]) => f1(f64::ceil)?,
        ("rint", [_]) => f1(f64::round_ties_even)?,
        ("log", [_]) => f1(f64::ln)?,
        ("log10", [_]) => f1(f64::log10)?,
        ("log1p", [_]) => f1(f64::ln_1p)?,
        ("exp", [_]) => f1(f64::exp)?,
        ("expm1", [_]) => f1(f64::exp_m1)?,
        ("sin", [_]) => f1(f64::sin)?,
        ("cos", [_]) => f1(f64::cos)?,
        ("tan", [_]) => f1(f64::tan)?,
        ("asin", [_]) => f1(f64::asin)?,
        ("acos", [_]) => f1(f64::acos)?,
        ("atan", [_]) => f1(f64::atan)?,
        ("sinh", [_]) => f1(f64::sinh)?,
        ("cosh", [_]) => f1(f64::cosh)?,
        ("tanh", [_]) => f1(f64::tanh)?,
        ("toRadians", [_]) => f1(f64::to_radians)?,
        ("toDegrees", [_]) => f1(f64::to_degrees)?,
        ("atan2", [_, _]) => V::Double(d(0)?.atan2(d(1)?)),
        ("hypot", [_, _]) => V::Double(d(0)?.hypot(d(1)?)),
        ("signum", [_]) => {
            let f = d(0)?;
            V::Double(if f == 0.0 || f.is_nan() {
                f
            } else {
                f.signum()
            })
        }
        // Java: floor(x + 0.5), saturating; NaN is 0.
        ("round", [_]) => V::Long((d(0)? + 0.5).floor() as i64),
        ("random", []) => V::Double(random()),
        _ => {
            return Err(Ex::iae(format!(
                "static method [Math.{name}/{}] not found",
                args.len()
            )));
        }
    })
}

/// A pseudo-random double in [0, 1): no determinism is promised.
fn random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn varargs<'a>(args: &[V<'a>]) -> Vec<V<'a>> {
    match args {
        [V::List(l)] if l.borrow().array => l.borrow().v.clone(),
        _ => args.to_vec(),
    }
}

fn opt_of<'a>(kind: OptKind, v: Option<V<'a>>) -> V<'a> {
    V::Opt(kind, v.map(Rc::new))
}

/// `Class.name(args)`.
pub fn call_static<'a>(
    it: &mut Interp<'_, 'a>,
    class: &str,
    name: &str,
    args: Vec<V<'a>>,
) -> Result<V<'a>, Ex> {
    let a = args.as_slice();
    let s0 = || str_arg(a.first().unwrap_or(&V::Null), "the argument");
    Ok(match (class, name, a) {
        ("Math", _, _) => math(name, a)?,
        ("Integer", "parseInt", [_]) => {
            V::Int(i32::try_from(parse_int(s0()?, 10)?).map_err(|_| {
                Ex::new(
                    "NumberFormatException",
                    format!("For input string: \"{}\"", s0().unwrap_or("")),
                )
            })?)
        }
        ("Integer", "parseInt", [_, r]) => {
            let r = u32::try_from(int_arg(r)?)
                .ok()
                .filter(|r| (2..=36).contains(r))
                .ok_or_else(|| Ex::new("NumberFormatException", "bad radix"))?;
            V::Int(
                i32::try_from(parse_int(s0()?, r)?)
                    .map_err(|_| Ex::new("NumberFormatException", "out of range"))?,
            )
        }
        ("Integer", "valueOf", [x]) => coerce(x.clone(), Tt::Int)?,
        ("Long", "parseLong", [_]) => V::Long(parse_int(s0()?, 10)?),
        ("Long", "valueOf", [x]) => match x {
            V::Long(_) => x.clone(),
            V::Int(i) => V::Long(i64::from(*i)),
            _ => V::Long(parse_int(s0()?, 10)?),
        },
        ("Double", "parseDouble" | "valueOf", [x]) => match num(x) {
            Some(n) => V::Double(n.f64()),
            None => V::Double(parse_double(s0()?)?),
        },
        ("Float", "parseFloat" | "valueOf", [x]) => match num(x) {
            Some(n) => V::Float(n.f64() as f32),
            None => V::Float(parse_double(s0()?)? as f32),
        },
        ("Boolean", "parseBoolean", [x]) => {
            V::Bool(x.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true")))
        }
        ("Boolean", "valueOf", [x]) => match x {
            V::Bool(_) => x.clone(),
            _ => V::Bool(x.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))),
        },
        (
            "Integer" | "Long" | "Double" | "Float" | "Boolean" | "String" | "Character",
            "toString" | "valueOf",
            [x],
        ) => {
            let x = match (class, x) {
                ("Double", v) => num(v).map_or(v.clone(), |n| V::Double(n.f64())),
                ("Long", V::Int(i)) => V::Long(i64::from(*i)),
                _ => x.clone(),
            };
            V::str(x.java_string())
        }
        ("Integer", "toHexString", [x]) => V::str(format!("{:x}", int_arg(x)? as i32)),
        ("Long", "toHexString", [x]) => V::str(format!("{:x}", int_arg(x)?)),
        ("Integer", "toBinaryString", [x]) => V::str(format!("{:b}", int_arg(x)? as i32)),
        ("Integer" | "Long" | "Double" | "Float" | "Boolean", "compare", [x, y]) => match (x, y) {
            (V::Bool(p), V::Bool(q)) => V::Int(*p as i32 - *q as i32),
            _ => V::Int(cmp_num(n_arg(x)?, n_arg(y)?) as i32),
        },
        ("Integer" | "Long", "signum", [x]) => V::Int(int_arg(x)?.signum() as i32),
        ("Integer" | "Long" | "Double", "sum" | "max" | "min", [x, y]) => {
            let (p, q) = (n_arg(x)?, n_arg(y)?);
            let (p, q) = match class {
                "Integer" => (V::Int(p.i64() as i32), V::Int(q.i64() as i32)),
                "Long" => (V::Long(p.i64()), V::Long(q.i64())),
                _ => (V::Double(p.f64()), V::Double(q.f64())),
            };
            if name == "sum" {
                super::eval::binary(super::ast::BinOp::Add, &p, &q, usize::MAX)?
            } else {
                math(name, &[p, q])?
            }
        }
        ("Double" | "Float", "isNaN", [x]) => V::Bool(n_arg(x)?.f64().is_nan()),
        ("Double", "isInfinite", [x]) => V::Bool(n_arg(x)?.f64().is_infinite()),
        ("Double", "isFinite", [x]) => V::Bool(n_arg(x)?.f64().is_finite()),
        ("String", "join", [sep, rest @ ..]) => {
            let sep = str_arg(sep, "the separator")?;
            let items = match rest {
                [one] if iterate(one)?.is_some() => collection(one)?,
                _ => rest.to_vec(),
            };
            let parts: Vec<String> = items.iter().map(V::java_string).collect();
            let s = parts.join(sep);
            it.check_string(s.len())?;
            V::str(s)
        }
        ("Character", _, [c]) => {
            let u = match c {
                V::Char(u) => *u,
                V::Int(i) => u16::try_from(*i).unwrap_or(0),
                other => {
                    return Err(Ex::cce(format!(
                        "expected a char, not {}",
                        other.type_name()
                    )));
                }
            };
            let ch = char::from_u32(u32::from(u)).unwrap_or('\u{fffd}');
            match name {
                "isDigit" => V::Bool(ch.is_numeric()),
                "isLetter" => V::Bool(ch.is_alphabetic()),
                "isLetterOrDigit" => V::Bool(ch.is_alphanumeric()),
                "isWhitespace" => V::Bool(ch.is_whitespace()),
                "isUpperCase" => V::Bool(ch.is_uppercase()),
                "isLowerCase" => V::Bool(ch.is_lowercase()),
                "toUpperCase" => V::Char(
                    ch.to_uppercase()
                        .next()
                        .and_then(|c| u16::try_from(u32::from(c)).ok())
                        .unwrap_or(u),
                ),
                "toLowerCase" => V::Char(
                    ch.to_lowercase()
                        .next()
                        .and_then(|c| u16::try_from(u32::from(c)).ok())
                        .unwrap_or(u),
                ),
                "getNumericValue" => V::Int(ch.to_digit(36).map_or(-1, |d| d as i32)),
                _ => {
                    return Err(Ex::iae(format!(
                        "static method [Character.{name}] not found"
                    )));
                }
            }
        }
        ("Objects", "equals", [x, y]) => V::Bool(java_equals(x, y)),
        ("Objects", "isNull", [x]) => V::Bool(x.is_null()),
        ("Objects", "nonNull", [x]) => V::Bool(!x.is_null()),
        ("Objects", "requireNonNull", [x, ..]) => {
            if x.is_null() {
                let msg = a.get(1).map(V::java_string).unwrap_or_default();
                return Err(Ex::npe(msg));
            }
            x.clone()
        }
        ("Objects", "requireNonNullElse", [x, d]) => {
            if x.is_null() {
                d.clone()
            } else {
                x.clone()
            }
        }
        ("Objects", "toString", [x]) => V::str(x.java_string()),
        ("Objects", "toString", [x, d]) => {
            if x.is_null() {
                d.clone()
            } else {
                V::str(x.java_string())
            }
        }
        ("Objects", "hashCode", [x]) => V::Int(x.key().map(|k| k.java_hash()).unwrap_or(0)),
        ("Collections", "sort", [l, rest @ ..]) => {
            let sorted = sort_with(it, collection(l)?, rest.first())?;
            with_list(l, |x| {
                x.v = sorted;
                Ok(())
            })?;
            V::Null
        }
        ("Collections", "reverse", [l]) => {
            with_list(l, |x| {
                x.v.reverse();
                Ok(())
            })?;
            V::Null
        }
        ("Collections", "swap", [l, i, j]) => {
            let (i, j) = (int_arg(i)?, int_arg(j)?);
            with_list(l, |x| {
                let n = x.v.len();
                let (p, q) = (bounds(i, n, false)?, bounds(j, n, false)?);
                x.v.swap(p, q);
                Ok(())
            })?;
            V::Null
        }
        ("Collections", "max" | "min", [c, rest @ ..]) => {
            let items = collection(c)?;
            if items.is_empty() {
                return Err(Ex::new("NoSuchElementException", "the collection is empty"));
            }
            let sorted = sort_with(it, items, rest.first())?;
            let pick = if name == "max" {
                sorted.last()
            } else {
                sorted.first()
            };
            pick.cloned().unwrap_or(V::Null)
        }
        ("Collections", "emptyList", []) => V::list(Vec::new()),
        ("Collections", "emptyMap", []) => V::map(MapObj::new(Order::Hash)),
        ("Collections", "emptySet", []) => new_set(it, Vec::new(), Order::Hash)?,
        ("Collections", "singletonList", [x]) => V::list(vec![x.clone()]),
        ("Collections", "singleton", [x]) => new_set(it, vec![x.clone()], Order::Hash)?,
        ("Collections", "singletonMap", [k, v]) => {
            let mut m = MapObj::new(Order::Hash);
            m.m.insert(map_key(k)?, v.clone());
            V::map(m)
        }
        ("Collections", "unmodifiableList" | "unmodifiableMap" | "unmodifiableSet", [x]) => {
            x.clone()
        }
        ("Collections", "frequency", [c, x]) => {
            to_i32(collection(c)?.iter().filter(|y| java_equals(x, y)).count() as i64)
        }
        ("Collections", "nCopies", [n, x]) => {
            let n = usize::try_from(int_arg(n)?).map_err(|_| Ex::iae("negative count"))?;
            it.check_size(n)?;
            V::list(vec![x.clone(); n])
        }
        ("Collections", "reverseOrder", []) | ("Comparator", "reverseOrder", []) => {
            V::Func(Rc::new(Func::Reversed(V::Func(Rc::new(Func::Natural)))))
        }
        ("Comparator", "naturalOrder", []) => V::Func(Rc::new(Func::Natural)),
        ("Comparator", "comparing" | "comparingInt" | "comparingLong" | "comparingDouble", [f]) => {
            V::Func(Rc::new(Func::Comparing(f.clone())))
        }
        ("Arrays", "asList", _) => V::list(varargs(a)),
        ("Arrays", "toString", [x]) => V::str(match x {
            V::List(l) => V::list(l.borrow().v.clone()).java_string(),
            other => other.java_string(),
        }),
        ("Arrays", "sort", [l]) => {
            let sorted = sort_with(it, collection(l)?, None)?;
            with_list(l, |x| {
                x.v = sorted;
                Ok(())
            })?;
            V::Null
        }
        ("Arrays", "stream", [l]) => V::Stream(Rc::new((StreamKind::Obj, collection(l)?))),
        ("Collectors", "toList", []) => V::Collector(Rc::new(Collector::ToList)),
        ("Collectors", "toSet", []) => V::Collector(Rc::new(Collector::ToSet)),
        ("Collectors", "counting", []) => V::Collector(Rc::new(Collector::Counting)),
        ("Collectors", "joining", []) => V::Collector(Rc::new(Collector::Joining(
            String::new(),
            String::new(),
            String::new(),
        ))),
        ("Collectors", "joining", [s]) => V::Collector(Rc::new(Collector::Joining(
            str_arg(s, "the separator")?.to_owned(),
            String::new(),
            String::new(),
        ))),
        ("Collectors", "joining", [s, p, q]) => V::Collector(Rc::new(Collector::Joining(
            str_arg(s, "the separator")?.to_owned(),
            str_arg(p, "the prefix")?.to_owned(),
            str_arg(q, "the suffix")?.to_owned(),
        ))),
        ("Collectors", "toMap", [k, v]) => {
            V::Collector(Rc::new(Collector::ToMap(k.clone(), v.clone(), None)))
        }
        ("Collectors", "toMap", [k, v, m]) => V::Collector(Rc::new(Collector::ToMap(
            k.clone(),
            v.clone(),
            Some(m.clone()),
        ))),
        ("IntStream" | "LongStream", "range" | "rangeClosed", [x, y]) => {
            let (lo, hi) = (int_arg(x)?, int_arg(y)?);
            let hi = if name == "rangeClosed" {
                hi.saturating_add(1)
            } else {
                hi
            };
            let n = usize::try_from(hi.saturating_sub(lo)).unwrap_or(0);
            it.check_size(n)?;
            let long = class == "LongStream";
            let v = (lo..hi)
                .map(|i| if long { V::Long(i) } else { V::Int(i as i32) })
                .collect();
            V::Stream(Rc::new((
                if long {
                    StreamKind::Long
                } else {
                    StreamKind::Int
                },
                v,
            )))
        }
        ("Instant", "now", []) => tv(TimeV::zoned_utc(chrono::Utc::now())
            .nanos()
            .map(TimeV::Instant)
            .unwrap_or(TimeV::Instant(0))),
        ("Instant", "ofEpochMilli", [x]) => tv(time::instant(i128::from(int_arg(x)?) * MILLI)?),
        ("Instant", "ofEpochSecond", [x]) => tv(time::instant(i128::from(int_arg(x)?) * SEC)?),
        ("Instant", "ofEpochSecond", [x, n]) => tv(time::instant(
            i128::from(int_arg(x)?) * SEC + i128::from(int_arg(n)?),
        )?),
        ("Instant", "parse", [_]) => tv(time::parse(s0()?, false)?),
        ("ZonedDateTime", "parse", [_]) => tv(time::parse(s0()?, true)?),
        ("ZonedDateTime", "ofInstant", [i, z]) => {
            let n = time_arg(i)?
                .nanos()
                .ok_or_else(|| Ex::cce("ofInstant needs an Instant"))?;
            tv(TimeV::Zoned(n, zone_arg(z)?))
        }
        ("ZonedDateTime", "now", rest) => {
            let z = match rest.first() {
                Some(z) => zone_arg(z)?,
                None => Zone::Offset(0),
            };
            match TimeV::zoned_utc(chrono::Utc::now()) {
                TimeV::Zoned(n, _) => tv(TimeV::Zoned(n, z)),
                other => tv(other),
            }
        }
        ("ZoneId", "of", [_]) => tv(TimeV::Zone(Zone::of(s0()?)?)),
        ("ZoneOffset", "of", [_]) => tv(TimeV::Zone(Zone::of(s0()?)?)),
        ("Duration", "ofNanos", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?))),
        ("Duration", "ofMillis", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?) * MILLI)),
        ("Duration", "ofSeconds", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?) * SEC)),
        ("Duration", "ofSeconds", [x, n]) => tv(TimeV::Duration(
            i128::from(int_arg(x)?) * SEC + i128::from(int_arg(n)?),
        )),
        ("Duration", "ofMinutes", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?) * 60 * SEC)),
        ("Duration", "ofHours", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?) * 3600 * SEC)),
        ("Duration", "ofDays", [x]) => tv(TimeV::Duration(i128::from(int_arg(x)?) * 86400 * SEC)),
        ("Duration", "of", [x, u]) => {
            tv(time::plus(&TimeV::Duration(0), int_arg(x)?, unit_arg(u)?)?)
        }
        ("Duration", "between", [x, y]) => {
            let (p, q) = (time_arg(x)?, time_arg(y)?);
            match (p.nanos(), q.nanos()) {
                (Some(p), Some(q)) => tv(TimeV::Duration(q - p)),
                _ => return Err(Ex::cce("Duration.between needs two temporals")),
            }
        }
        ("DayOfWeek", "of", [x]) => {
            let d = int_arg(x)?;
            if !(1..=7).contains(&d) {
                return Err(Ex::new(
                    "DateTimeException",
                    format!("Invalid value for DayOfWeek: {d}"),
                ));
            }
            tv(TimeV::Day(d as u32))
        }
        ("Optional", "of", [x]) => {
            if x.is_null() {
                return Err(Ex::npe("Optional.of(null)"));
            }
            opt_of(OptKind::Obj, Some(x.clone()))
        }
        ("Optional", "ofNullable", [x]) => opt_of(OptKind::Obj, (!x.is_null()).then(|| x.clone())),
        ("Optional", "empty", []) => opt_of(OptKind::Obj, None),
        _ => {
            return Err(Ex::iae(format!(
                "static method [{class}, {name}/{}] not found",
                a.len()
            )));
        }
    })
}

/// `Class::method` called with `args`: a static method, else an instance
/// method on the first argument.
pub fn call_ref<'a>(
    it: &mut Interp<'_, 'a>,
    class: &str,
    name: &str,
    args: &[V<'a>],
) -> Result<V<'a>, Ex> {
    if is_static(class, name, true) {
        return call_static(it, class, name, args.to_vec());
    }
    match args.split_first() {
        Some((recv, rest)) => {
            if recv.is_null() {
                return Err(Ex::npe(format!("{class}::{name} on null")));
            }
            call_method(it, recv.clone(), name, rest.to_vec())
        }
        None => Err(Ex::iae(format!("{class}::{name} needs an argument"))),
    }
}

/// `new Class(args)`.
pub fn construct<'a>(it: &mut Interp<'_, 'a>, class: &str, args: Vec<V<'a>>) -> Result<V<'a>, Ex> {
    let a = args.as_slice();
    Ok(match (class, a) {
        ("ArrayList" | "LinkedList", []) | ("ArrayList", [V::Int(_)]) => V::list(Vec::new()),
        ("ArrayList" | "LinkedList", [c]) => new_list(it, collection(c)?)?,
        ("HashMap" | "LinkedHashMap" | "TreeMap", rest) => {
            let order = match class {
                "HashMap" => Order::Hash,
                "LinkedHashMap" => Order::Linked,
                _ => Order::Tree,
            };
            let mut m = MapObj::new(order);
            match rest {
                [] | [V::Int(_)] => {}
                [src] => {
                    for (k, v) in map_entries(src).ok_or_else(|| Ex::cce("expected a map"))? {
                        m.m.insert(k, v);
                    }
                }
                _ => {
                    return Err(Ex::iae(format!(
                        "constructor [{class}/{}] not found",
                        rest.len()
                    )));
                }
            }
            V::map(m)
        }
        ("HashSet" | "LinkedHashSet" | "TreeSet", rest) => {
            let order = match class {
                "HashSet" => Order::Hash,
                "LinkedHashSet" => Order::Linked,
                _ => Order::Tree,
            };
            let items = match rest {
                [] | [V::Int(_)] => Vec::new(),
                [c] => collection(c)?,
                _ => {
                    return Err(Ex::iae(format!(
                        "constructor [{class}/{}] not found",
                        rest.len()
                    )));
                }
            };
            new_set(it, items, order)?
        }
        ("StringBuilder", []) | ("StringBuilder", [V::Int(_)]) => {
            V::Builder(Rc::new(RefCell::new(String::new())))
        }
        ("StringBuilder", [s]) => V::Builder(Rc::new(RefCell::new(s.java_string()))),
        ("DecimalFormat", [p]) => V::DecFmt(Rc::from(str_arg(p, "the pattern")?)),
        (
            "Exception"
            | "RuntimeException"
            | "IllegalArgumentException"
            | "IllegalStateException"
            | "UnsupportedOperationException"
            | "ArithmeticException",
            rest,
        ) => V::Exception(Rc::new((
            class.to_owned(),
            rest.first().map(V::java_string).unwrap_or_default(),
        ))),
        _ => {
            return Err(Ex::iae(format!(
                "constructor [{class}/{}] not found",
                a.len()
            )));
        }
    })
}

/// `(T) v`.
pub fn cast<'a>(v: V<'a>, t: &Ty) -> Result<V<'a>, Ex> {
    let bad = |v: &V| Ex::cce(format!("Cannot cast {} to {t:?}", v.type_name()));
    let n = || num(&v);
    Ok(match t {
        Ty::Def | Ty::Void => v,
        Ty::Int | Ty::Byte | Ty::Short | Ty::Char | Ty::Long | Ty::Float | Ty::Double => {
            if v.is_null() {
                return Err(Ex::npe("cannot cast null to a primitive"));
            }
            let n = n().ok_or_else(|| bad(&v))?;
            match t {
                Ty::Int => V::Int(match n {
                    N::I(i) => i,
                    N::L(l) => l as i32,
                    N::F(f) => f as i32,
                    N::D(d) => d as i32,
                }),
                Ty::Byte => V::Int(i32::from(n.i64() as i8)),
                Ty::Short => V::Int(i32::from(n.i64() as i16)),
                Ty::Char => V::Char(n.i64() as u16),
                Ty::Long => V::Long(n.i64()),
                Ty::Float => V::Float(n.f64() as f32),
                _ => V::Double(n.f64()),
            }
        }
        Ty::Boolean => match v {
            V::Bool(_) => v,
            _ => return Err(bad(&v)),
        },
        Ty::Class(c) => {
            if v.is_null() || instance_of(&v, t) {
                v
            } else {
                return Err(Ex::cce(format!(
                    "class {} cannot be cast to class {c}",
                    v.type_name()
                )));
            }
        }
        Ty::Array(_) => match &v {
            V::List(l) if l.borrow().array => v,
            _ => return Err(bad(&v)),
        },
    })
}

/// `v instanceof T`.
pub fn instance_of(v: &V, t: &Ty) -> bool {
    let Ty::Class(c) = t else {
        return matches!(t, Ty::Def) && !v.is_null();
    };
    match c.as_str() {
        "Object" => !v.is_null(),
        "String" => v.as_str().is_some(),
        "Integer" => matches!(v, V::Int(_)),
        "Long" => matches!(v, V::Long(_)),
        "Double" => matches!(v, V::Double(_)),
        "Float" => matches!(v, V::Float(_)),
        "Boolean" => matches!(v, V::Bool(_)),
        "Character" => matches!(v, V::Char(_)),
        "Number" => matches!(v, V::Int(_) | V::Long(_) | V::Double(_) | V::Float(_)),
        "List" | "ArrayList" | "LinkedList" => {
            matches!(v, V::JList(_)) || matches!(v, V::List(l) if !l.borrow().array)
        }
        "Collection" | "Iterable" => {
            matches!(v, V::JList(_) | V::Set(_)) || matches!(v, V::List(l) if !l.borrow().array)
        }
        "Map" | "HashMap" | "LinkedHashMap" | "TreeMap" => matches!(v, V::Map(_) | V::JMap(_)),
        "Set" | "HashSet" | "LinkedHashSet" | "TreeSet" => matches!(v, V::Set(_)),
        "Entry" => matches!(v, V::Entry(_)),
        "StringBuilder" => matches!(v, V::Builder(_)),
        "Instant" => matches!(v, V::Time(t) if matches!(**t, TimeV::Instant(_))),
        "ZonedDateTime" => matches!(v, V::Time(t) if matches!(**t, TimeV::Zoned(..))),
        "Duration" => matches!(v, V::Time(t) if matches!(**t, TimeV::Duration(_))),
        "Optional" | "OptionalInt" | "OptionalLong" | "OptionalDouble" => matches!(v, V::Opt(..)),
        "Function" | "BiFunction" | "Predicate" | "Consumer" | "BiConsumer" | "Supplier"
        | "Comparator" => matches!(v, V::Func(_)),
        "Exception" | "RuntimeException" => matches!(v, V::Exception(_)),
        other => v.type_name().ends_with(other),
    }
}
