//! Painless source to tokens. Positions are byte offsets into the source,
//! turned into line and column only when an error is reported.

use super::PainlessError;

/// A token's kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or keyword.
    Ident(String),
    /// An integer literal that fits an `int`.
    Int(i32),
    /// A `long` literal (`L` suffix, or too large for an int with the suffix).
    Long(i64),
    /// A `float` literal (`f` suffix).
    Float(f32),
    /// A `double` literal.
    Double(f64),
    /// A string literal, either quote.
    Str(String),
    /// Punctuation or an operator.
    P(&'static str),
    /// The end of the source.
    Eof,
}

/// A token and where it starts.
#[derive(Debug, Clone)]
pub struct Token {
    /// What it is.
    pub tok: Tok,
    /// Byte offset of its first character.
    pub at: u32,
    /// Byte offset just past it.
    pub end: u32,
}

/// Longest first, so that `>>>=` wins over `>>` and `>`.
const PUNCT: &[&str] = &[
    ">>>=", "===", "!==", ">>>", "<<=", ">>=", "==", "!=", "<=", ">=", "&&", "||", "++", "--",
    "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<", ">>", "->", "::", "?.", "?:", "+", "-",
    "*", "/", "%", "<", ">", "=", "!", "~", "&", "|", "^", "?", ":", ".", ",", ";", "(", ")", "[",
    "]", "{", "}",
];

/// Most tokens one script may have: bounds parse time and memory.
pub const MAX_TOKENS: usize = 200_000;

fn off(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Splits a source into tokens, ending with [`Tok::Eof`].
pub fn lex(src: &str) -> Result<Vec<Token>, PainlessError> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < b.len() {
        if out.len() >= MAX_TOKENS {
            return Err(PainlessError::syntax(
                src,
                off(i),
                "the script is too long (more than 200,000 tokens)",
            ));
        }
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            i += 2;
            loop {
                if i + 1 >= b.len() {
                    return Err(PainlessError::syntax(
                        src,
                        off(start),
                        "unterminated comment",
                    ));
                }
                if b[i] == b'*' && b[i + 1] == b'/' {
                    i += 2;
                    break;
                }
                i += 1;
            }
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push(Token {
                tok: Tok::Ident(src[start..i].to_owned()),
                at: off(start),
                end: off(i),
            });
            continue;
        }
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let (tok, next) = number(src, i)?;
            out.push(Token {
                tok,
                at: off(start),
                end: off(next),
            });
            i = next;
            continue;
        }
        if c == b'"' || c == b'\'' {
            let (s, next) = string(src, i)?;
            out.push(Token {
                tok: Tok::Str(s),
                at: off(start),
                end: off(next),
            });
            i = next;
            continue;
        }
        let Some(p) = PUNCT.iter().find(|p| b[i..].starts_with(p.as_bytes())) else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(PainlessError::syntax(
                src,
                off(i),
                format!("unexpected character {ch:?}"),
            ));
        };
        i += p.len();
        out.push(Token {
            tok: Tok::P(p),
            at: off(start),
            end: off(i),
        });
    }
    out.push(Token {
        tok: Tok::Eof,
        at: off(b.len()),
        end: off(b.len()),
    });
    Ok(out)
}

fn number(src: &str, start: usize) -> Result<(Tok, usize), PainlessError> {
    let b = src.as_bytes();
    let mut i = start;
    let bad = |msg: &str| PainlessError::syntax(src, off(start), msg.to_owned());
    // Hexadecimal.
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
        i += 2;
        let ds = i;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        let digits = &src[ds..i];
        let long = matches!(b.get(i), Some(b'l' | b'L'));
        if long {
            i += 1;
        }
        let v = u64::from_str_radix(digits, 16).map_err(|_| bad("invalid hexadecimal number"))?;
        return Ok(if long {
            (Tok::Long(v as i64), i)
        } else {
            let v = u32::try_from(v).map_err(|_| bad("hexadecimal int out of range"))?;
            (Tok::Int(v as i32), i)
        });
    }
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut float = false;
    // A `.` followed by a digit is a fraction; `1.toString()` is not one.
    if i < b.len() && b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        float = true;
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i < b.len() && matches!(b[i], b'e' | b'E') {
        let mut j = i + 1;
        if j < b.len() && matches!(b[j], b'+' | b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            float = true;
            i = j;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    let text = &src[start..i];
    match b.get(i) {
        Some(b'f' | b'F') => {
            let v: f32 = text.parse().map_err(|_| bad("invalid float"))?;
            return Ok((Tok::Float(v), i + 1));
        }
        Some(b'd' | b'D') => {
            let v: f64 = text.parse().map_err(|_| bad("invalid double"))?;
            return Ok((Tok::Double(v), i + 1));
        }
        _ => {}
    }
    if float {
        let v: f64 = text.parse().map_err(|_| bad("invalid double"))?;
        return Ok((Tok::Double(v), i));
    }
    let long = matches!(b.get(i), Some(b'l' | b'L'));
    // Java reads a leading 0 as octal; Painless refuses it.
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad("octal literals are not supported"));
    }
    let (digits, radix) = (text, 10);
    if long {
        let v = i64::from_str_radix(digits, radix).map_err(|_| bad("long literal out of range"))?;
        return Ok((Tok::Long(v), i + 1));
    }
    // 2147483648 is only valid after a unary minus; the parser handles it.
    let v = i64::from_str_radix(digits, radix).map_err(|_| bad("int literal out of range"))?;
    if v == 2_147_483_648 {
        return Ok((Tok::Long(v), i));
    }
    let v = i32::try_from(v).map_err(|_| bad("int literal out of range"))?;
    Ok((Tok::Int(v), i))
}

fn string(src: &str, start: usize) -> Result<(String, usize), PainlessError> {
    let quote = src.as_bytes()[start];
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        let at = start + 1 + k;
        if ch as u32 == u32::from(quote) {
            return Ok((out, at + 1));
        }
        if ch == '\\' {
            let Some((_, e)) = chars.next() else { break };
            out.push(match e {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                '0' => '\0',
                '\\' => '\\',
                '\'' => '\'',
                '"' => '"',
                other => {
                    return Err(PainlessError::syntax(
                        src,
                        off(at),
                        format!("invalid escape \\{other} in a string"),
                    ));
                }
            });
            continue;
        }
        out.push(ch);
    }
    Err(PainlessError::syntax(
        src,
        off(start),
        "unterminated string",
    ))
}
