//! Parsing a cluster's answer into a `Value` whose objects and arrays are
//! allocated once, at their final size.
//!
//! serde_json's own `Value` grows every object's map and every array while
//! it reads (4, 8, 16 … entries, rehashing the map each time). A 1 MB
//! answer with 5,000 hits became about 16 MB of maps, much of it spare room
//! in one-key objects (`{"code": …}`), and through the binary, where each
//! fresh page costs a fault, the growth was most of the parse. Here the
//! entries of each object and array are gathered on a stack shared by all
//! levels and then moved into a map or vector of exactly their number.
//!
//! The result equals `serde_json::from_slice`'s: same numbers, same key
//! order, and a duplicate key keeps its first place with the last value.

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses JSON text (`serde_json::from_slice::<Value>`, in less memory).
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut stack = Stack::default();
    let v = Seed(&mut stack).deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Entries of the objects and items of the arrays being read, innermost
/// last.
#[derive(Default)]
struct Stack {
    entries: Vec<(String, Value)>,
    items: Vec<Value>,
}

struct Seed<'s>(&'s mut Stack);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let base = self.0.items.len();
        while let Some(v) = seq.next_element_seed(Seed(self.0))? {
            self.0.items.push(v);
        }
        // A drain collects into a vector of exactly its length.
        Ok(Value::Array(self.0.items.drain(base..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let base = self.0.entries.len();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(Seed(self.0))?;
            self.0.entries.push((k, v));
        }
        let mut m = Map::with_capacity(self.0.entries.len().saturating_sub(base));
        for (k, v) in self.0.entries.drain(base..) {
            m.insert(k, v);
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_serde_json() {
        let cases: &[&str] = &[
            r#"{"took":3,"hits":{"total":{"value":5000,"relation":"eq"},"hits":[{"_id":"a","_score":1.5,"_source":{"n":-7,"big":18446744073709551615,"f":1e300,"e":2.5E-3,"s":"x\"y\\u00e9\ud83d\ude00","z":null,"t":true,"u":false,"a":[],"o":{}}}]}}"#,
            r#"{"b":1,"a":2,"b":3}"#,
            r#"[1,[2,[3,[]]],{"k":[{"k":{}}]},"s"]"#,
            r#"  "just a string"  "#,
            "-0",
            "12345678901234567890123",
            "[]",
        ];
        for c in cases {
            let ours = from_slice(c.as_bytes()).unwrap();
            let theirs: Value = serde_json::from_slice(c.as_bytes()).unwrap();
            assert_eq!(ours, theirs, "{c}");
            // Same order (Value's == ignores the order of keys).
            assert_eq!(ours.to_string(), theirs.to_string(), "{c}");
        }
    }

    #[test]
    fn errors_as_serde_json() {
        for c in ["{\"a\":1", "{\"a\":1} x", "[1,]", "", "{\"a\" 1}", "nul"] {
            let ours = from_slice(c.as_bytes()).unwrap_err();
            let theirs = serde_json::from_slice::<Value>(c.as_bytes()).unwrap_err();
            assert_eq!(
                (ours.line(), ours.column(), ours.classify()),
                (theirs.line(), theirs.column(), theirs.classify()),
                "{c:?}"
            );
        }
        // Nesting deeper than serde_json's limit is refused, not a stack overflow.
        let deep = "[".repeat(100_000);
        assert!(from_slice(deep.as_bytes()).is_err());
    }

    #[test]
    fn objects_and_arrays_have_no_spare_room() {
        let v = from_slice(
            br#"{"hits":[{"event":{"code":"4624"}},{"event":{"code":"4625"}},{"a":1}]}"#,
        )
        .unwrap();
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.capacity(), 3);
    }
}
