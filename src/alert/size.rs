//! Byte sizes written as in Elasticsearch: `"10MB"`, `"512kb"`, or a number
//! of bytes. Units are binary (1 KB = 1024 bytes), as Elasticsearch reads them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KB: u64 = 1024;
const MB: u64 = KB * 1024;
const GB: u64 = MB * 1024;

/// The smallest accepted size: a search answer is a few hundred bytes.
const MIN: u64 = KB;
/// The largest accepted size.
const MAX: u64 = GB;

/// A size in bytes, bounded to 1 KB ..= 1 GB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(u64);

impl ByteSize {
    /// 10 MB, Watcher's default response cap.
    pub const DEFAULT_RESPONSE: ByteSize = ByteSize(10 * MB);

    /// The number of bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }

    /// A size from a byte count, if it is within the bounds.
    pub fn new(bytes: u64) -> Result<ByteSize, String> {
        if (MIN..=MAX).contains(&bytes) {
            Ok(ByteSize(bytes))
        } else {
            Err(format!(
                "size {bytes} bytes is out of range; write one between \"1KB\" and \"1GB\""
            ))
        }
    }

    /// Parses `"10MB"`, `"10 mb"`, `"512KB"`, `"1GB"`, `"2048"` or `"2048b"`.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || {
            format!("invalid size {text:?}; write it like \"10MB\", \"512KB\" or a number of bytes")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let mult = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => KB,
            "m" | "mb" | "mib" => MB,
            "g" | "gb" | "gib" => GB,
            _ => return Err(bad()),
        };
        let bytes = n.checked_mul(mult).ok_or_else(bad)?;
        ByteSize::new(bytes)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % GB == 0 => write!(f, "{}GB", b / GB),
            b if b % MB == 0 => write!(f, "{}MB", b / MB),
            b if b % KB == 0 => write!(f, "{}KB", b / KB),
            b => write!(f, "{b} bytes"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        let r = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a size must be a number of bytes or a string such as \"10MB\"",
            )
        })?;
        match r {
            Raw::Bytes(n) => ByteSize::new(n),
            Raw::Text(s) => ByteSize::parse(&s),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(ByteSize::parse("10MB").unwrap().bytes(), 10 * 1024 * 1024);
        assert_eq!(ByteSize::parse("512 kb").unwrap().bytes(), 512 * 1024);
        assert_eq!(ByteSize::parse("4096").unwrap().bytes(), 4096);
        assert_eq!(ByteSize::parse("1GB").unwrap().to_string(), "1GB");
        assert!(ByteSize::parse("2GB").is_err());
        assert!(ByteSize::parse("10").is_err());
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("99999999999999999999MB").is_err());
        let v: ByteSize = serde_json::from_value(serde_json::json!(2048)).unwrap();
        assert_eq!(v.to_string(), "2KB");
    }
}
