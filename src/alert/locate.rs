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
    };
    s.ws();
    let offset = s.find(path, None)?;
    Some(position_of(text, offset))
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
                        return self.find(&path[1..], Some(key_at));
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
    fn counts_columns_in_characters() {
        let text = "{\"é\": {\"k\": 1}}";
        let p = locate(text, &[Seg::key("é"), Seg::key("k")]).unwrap();
        assert_eq!(p.column, 8);
    }
}
