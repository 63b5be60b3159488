//! Finds where a value sits in a JSON text, so that errors found after parsing
//! (a bad duration, a template syntax error) still point at a line and column.
//!
//! serde_json keeps no spans, so this is a small scanner over text that is
//! already known to be valid JSON.

/// One step of a path into a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A key of an object.
    Key(String),
    /// An index into an array.
    Index(usize),
}

impl Seg {
    /// Shorthand for a key segment.
    pub fn key(k: impl Into<String>) -> Self {
        Seg::Key(k.into())
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Returns the position of the key (for an object member) or of the value
/// (for an array element) that `path` names. When only a prefix of the path
/// exists, the position of the deepest part found is returned.
pub fn locate(text: &str, path: &[Seg]) -> Option<Position> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        values: false,
    };
    s.ws();
    let offset = s.find(path, None)?;
    Some(position_of(text, offset))
}

/// The position of character `offset` (a byte offset into the decoded
/// string) inside the JSON string value that `path` names: where a template
/// expression sits in the file. Falls back to [`locate`] when `path` does
/// not name a string.
pub fn locate_in_string(text: &str, path: &[Seg], offset: usize) -> Option<Position> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        values: true,
    };
    s.ws();
    let Some(start) = s.find(path, None).filter(|&i| s.b.get(i) == Some(&b'"')) else {
        return locate(text, path);
    };
    let raw = raw_offset(&text[start..], offset)?;
    Some(position_of(text, start.saturating_add(raw)))
}

/// Maps a byte offset into the decoded value of the JSON string literal
/// at the start of `lit` to a byte offset into `lit`.
fn raw_offset(lit: &str, decoded: usize) -> Option<usize> {
    let b = lit.as_bytes();
    let mut i = 1; // past the opening quote
    let mut n = 0;
    while n < decoded {
        match *b.get(i)? {
            b'"' => return Some(i),
            b'\\' => {
                if b.get(i + 1)? == &b'u' {
                    let code = lit.get(i + 2..i + 6)?;
                    let c = u32::from_str_radix(code, 16).ok()?;
                    // A surrogate pair is one 4-byte character.
                    if (0xD800..0xDC00).contains(&c) && lit.get(i + 6..i + 8) == Some("\\u") {
                        n += 4;
                        i += 12;
                    } else {
                        n += char::from_u32(c).map_or(3, char::len_utf8);
                        i += 6;
                    }
                } else {
                    n += 1;
                    i += 2;
                }
            }
            _ => {
                let c = lit.get(i..)?.chars().next()?;
                n += c.len_utf8();
                i += c.len_utf8();
            }
        }
    }
    Some(i)
}

/// The value that `path` names inside `v`, to change it.
pub fn pointer_mut<'v>(
    mut v: &'v mut serde_json::Value,
    path: &[Seg],
) -> Option<&'v mut serde_json::Value> {
    use serde_json::Value;
    for seg in path {
        v = match (v, seg) {
            (Value::Object(m), Seg::Key(k)) => m.get_mut(k)?,
            (Value::Array(a), Seg::Index(i)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Converts a byte offset into a 1-based line and column.
pub fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|p| p + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// Find the value of an object member rather than its key.
    values: bool,
}

impl Scanner<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    /// Scans the value at the cursor looking for `path`; `here` is the offset
    /// that stands for the current value (its key, or its own start).
    fn find(&mut self, path: &[Seg], here: Option<usize>) -> Option<usize> {
        let here = here.unwrap_or(self.i);
        let Some(first) = path.first() else {
            return Some(here);
        };
        match (self.b.get(self.i)?, first) {
            (b'{', Seg::Key(want)) => {
                self.i += 1;
                loop {
                    self.ws();
                    if self.b.get(self.i)? == &b'}' {
                        return Some(here);
                    }
                    let key_at = self.i;
                    let key = self.string()?;
                    self.ws();
                    self.i += 1; // ':'
                    self.ws();
                    if &key == want {
                        let here = (!self.values).then_some(key_at);
                        return self.find(&path[1..], here);
                    }
                    self.skip()?;
                    self.ws();
                    if self.b.get(self.i)? == &b',' {
                        self.i += 1;
                    }
                }
            }
            (b'[', Seg::Index(want)) => {
                self.i += 1;
                let mut n = 0;
                loop {
                    self.ws();
                    if self.b.get(self.i)? == &b']' {
                        return Some(here);
                    }
                    if n == *want {
                        return self.find(&path[1..], None);
                    }
                    self.skip()?;
                    self.ws();
                    if self.b.get(self.i)? == &b',' {
                        self.i += 1;
                    }
                    n += 1;
                }
            }
            _ => Some(here),
        }
    }

    fn string(&mut self) -> Option<String> {
        let start = self.i;
        self.i += 1;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    let raw = std::str::from_utf8(&self.b[start..self.i]).ok()?;
                    return serde_json::from_str(raw).ok();
                }
                _ => self.i += 1,
            }
        }
        None
    }

    fn skip(&mut self) -> Option<()> {
        match *self.b.get(self.i)? {
            b'"' => {
                self.string()?;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                loop {
                    self.ws();
                    let c = *self.b.get(self.i)?;
                    if c == close {
                        self.i += 1;
                        return Some(());
                    }
                    if c == b',' || c == b':' {
                        self.i += 1;
                        continue;
                    }
                    self.skip()?;
                }
            }
            _ => {
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t'
                    )
                {
                    self.i += 1;
                }
            }
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_indexes() {
        let text = "{\n  \"a\": 1,\n  \"b\": {\"c\": [10, {\"d\": \"x\"}]}\n}";
        let p = locate(text, &[Seg::key("a")]).unwrap();
        assert_eq!((p.line, p.column), (2, 3));
        let p = locate(
            text,
            &[Seg::key("b"), Seg::key("c"), Seg::Index(1), Seg::key("d")],
        )
        .unwrap();
        assert_eq!((p.line, p.column), (3, 20));
        // A missing tail falls back to the deepest part found.
        let p = locate(text, &[Seg::key("b"), Seg::key("zz")]).unwrap();
        assert_eq!((p.line, p.column), (3, 3));
    }

    #[test]
    fn finds_offsets_inside_strings() {
        let text = "{\"m\": \"a\\n\\u00e9{{ x }}\"}";
        // Decoded "a\né{{ x }}": `x` is at byte 7.
        let p = locate_in_string(text, &[Seg::key("m")], 7).unwrap();
        assert_eq!(&text[p.column - 1..p.column], "x");
        // Not a string: the key.
        let p = locate_in_string("{\"m\": 1}", &[Seg::key("m")], 3).unwrap();
        assert_eq!(p.column, 2);
    }

    #[test]
    fn counts_columns_in_characters() {
        let text = "{\"é\": {\"k\": 1}}";
        let p = locate(text, &[Seg::key("é"), Seg::key("k")]).unwrap();
        assert_eq!(p.column, 8);
    }
}
