//! Reading IMAP commands off the wire and splitting them into tokens: a line ending in a literal
//! (`{n}` synchronizing, `{n+}` LITERAL+) takes the literal and the rest of the command with it;
//! tokens are atoms (with `[...]` sections kept whole, as in `BODY.PEEK[HEADER.FIELDS (FROM)]`),
//! quoted strings, literals and parenthesized lists.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The longest line (without literals) the server reads.
pub const MAX_LINE: usize = 64 * 1024;
/// The largest command (literals included) the server reads.
pub const MAX_COMMAND: usize = 1024 * 1024;

/// Why a command could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection (or it broke).
    Closed,
    /// The command is too long to be served.
    TooLong,
}

/// Reads one line (up to CRLF or LF, which is dropped) of at most [`MAX_LINE`] bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut line = Vec::new();
    let mut limited = (&mut *r).take(MAX_LINE as u64 + 2);
    let n = limited
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| ReadError::Closed)?;
    if n == 0 {
        return Err(ReadError::Closed);
    }
    if line.last() != Some(&b'\n') {
        return Err(if line.len() > MAX_LINE {
            ReadError::TooLong
        } else {
            ReadError::Closed
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// The literal announced at the end of a line: (its length, whether it is non-synchronizing).
fn trailing_literal(line: &[u8]) -> Option<(usize, bool)> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|b| *b == b'{')?;
    let inner = body.get(open + 1..)?;
    let (digits, plus) = match inner.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (inner, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, plus))
}

/// Reads a whole command: its first line and, for every literal it announces, the literal's bytes
/// (after a `+` continuation for a synchronizing one) and the line that follows. The literals stay
/// in the returned bytes in their wire form (`{n}\r\n` + bytes) for [`tokenize`].
pub async fn read_command<S>(io: &mut S) -> Result<Vec<u8>, ReadError>
where
    S: AsyncBufRead + AsyncWrite + Unpin,
{
    let mut command = read_line(io).await?;
    while let Some((n, plus)) = trailing_literal(&command) {
        if command.len() + n > MAX_COMMAND {
            return Err(ReadError::TooLong);
        }
        if !plus {
            io.write_all(b"+ Ready for additional command text.\r\n")
                .await
                .map_err(|_| ReadError::Closed)?;
            io.flush().await.map_err(|_| ReadError::Closed)?;
        }
        command.extend_from_slice(b"\r\n");
        let start = command.len();
        command.resize(start + n, 0);
        if let Some(buf) = command.get_mut(start..) {
            io.read_exact(buf).await.map_err(|_| ReadError::Closed)?;
        }
        let rest = read_line(io).await?;
        command.extend_from_slice(&rest);
    }
    Ok(command)
}

/// One token of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// An atom, `[...]` sections included; `NIL` stays an atom.
    Atom(String),
    /// A quoted string or a literal.
    Str(String),
    /// A parenthesized list.
    List(Vec<Tok>),
}

impl Tok {
    /// The token as a string (atom, quoted string or literal), for arguments that take either.
    pub fn as_astring(&self) -> Option<&str> {
        match self {
            Tok::Atom(a) | Tok::Str(a) => Some(a),
            Tok::List(_) => None,
        }
    }
}

/// Splits a command into tokens; `Err` says what is malformed.
pub fn tokenize(input: &[u8]) -> Result<Vec<Tok>, &'static str> {
    let mut pos = 0;
    let toks = parse_list(input, &mut pos, false)?;
    Ok(toks)
}

fn parse_list(input: &[u8], pos: &mut usize, nested: bool) -> Result<Vec<Tok>, &'static str> {
    let mut out = Vec::new();
    loop {
        while input.get(*pos) == Some(&b' ') {
            *pos += 1;
        }
        let Some(&c) = input.get(*pos) else {
            return if nested {
                Err("unbalanced parentheses")
            } else {
                Ok(out)
            };
        };
        match c {
            b')' => {
                *pos += 1;
                return if nested {
                    Ok(out)
                } else {
                    Err("unbalanced parentheses")
                };
            }
            b'(' => {
                *pos += 1;
                out.push(Tok::List(parse_list(input, pos, true)?));
            }
            b'"' => out.push(Tok::Str(parse_quoted(input, pos)?)),
            b'{' => out.push(Tok::Str(parse_literal(input, pos)?)),
            _ => out.push(Tok::Atom(parse_atom(input, pos)?)),
        }
    }
}

fn parse_quoted(input: &[u8], pos: &mut usize) -> Result<String, &'static str> {
    *pos += 1;
    let mut out = Vec::new();
    loop {
        match input.get(*pos) {
            None => return Err("unterminated quoted string"),
            Some(b'"') => {
                *pos += 1;
                return String::from_utf8(out).map_err(|_| "quoted string is not UTF-8");
            }
            Some(b'\\') => {
                let Some(&next) = input.get(*pos + 1) else {
                    return Err("unterminated quoted string");
                };
                out.push(next);
                *pos += 2;
            }
            Some(&b) => {
                out.push(b);
                *pos += 1;
            }
        }
    }
}

fn parse_literal(input: &[u8], pos: &mut usize) -> Result<String, &'static str> {
    let rest = input.get(*pos..).ok_or("bad literal")?;
    let close = rest.iter().position(|b| *b == b'}').ok_or("bad literal")?;
    let spec = rest.get(1..close).ok_or("bad literal")?;
    let spec = spec.strip_suffix(b"+").unwrap_or(spec);
    let n: usize = std::str::from_utf8(spec)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or("bad literal length")?;
    let start = *pos + close + 1;
    if input.get(start..start + 2) != Some(b"\r\n") {
        return Err("bad literal");
    }
    let body = input.get(start + 2..start + 2 + n).ok_or("short literal")?;
    *pos = start + 2 + n;
    String::from_utf8(body.to_vec()).map_err(|_| "literal is not UTF-8")
}

fn parse_atom(input: &[u8], pos: &mut usize) -> Result<String, &'static str> {
    let start = *pos;
    let mut depth = 0usize;
    while let Some(&c) = input.get(*pos) {
        match c {
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b' ' | b'(' | b')' if depth == 0 => break,
            b'"' | b'{' if depth == 0 => break,
            b'\r' | b'\n' => return Err("stray line break"),
            _ => {}
        }
        *pos += 1;
    }
    if depth != 0 {
        return Err("unbalanced brackets");
    }
    let atom = input.get(start..*pos).ok_or("bad atom")?;
    if atom.is_empty() {
        return Err("empty atom");
    }
    String::from_utf8(atom.to_vec()).map_err(|_| "atom is not UTF-8")
}

/// Formats `s` as an IMAP string: quoted when it is short printable ASCII, else a literal.
pub fn string(s: &str) -> Vec<u8> {
    let quotable = s.len() < 1024
        && s.bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if quotable {
        format!("\"{s}\"").into_bytes()
    } else {
        let mut out = format!("{{{}}}\r\n", s.len()).into_bytes();
        out.extend_from_slice(s.as_bytes());
        out
    }
}

/// `NIL` for an empty value, else [`string`].
pub fn nstring(s: &str) -> Vec<u8> {
    if s.is_empty() {
        b"NIL".to_vec()
    } else {
        string(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn fetch_items_keep_their_sections_whole() {
        let t = tokenize(
            b"a1 UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)] BODY.PEEK[]<0.100>)",
        )
        .unwrap();
        assert_eq!(t[0], Tok::Atom("a1".into()));
        assert_eq!(t[3], Tok::Atom("1:*".into()));
        let Tok::List(items) = &t[4] else {
            panic!("{t:?}")
        };
        assert_eq!(
            items[2],
            Tok::Atom("BODY.PEEK[HEADER.FIELDS (FROM TO)]".into())
        );
        assert_eq!(items[3], Tok::Atom("BODY.PEEK[]<0.100>".into()));
    }

    #[test]
    fn quoted_strings_and_literals_become_strings() {
        let t = tokenize(b"a SELECT \"Sent \\\"Items\\\"\" {5}\r\nhello").unwrap();
        assert_eq!(t[2], Tok::Str("Sent \"Items\"".into()));
        assert_eq!(t[3], Tok::Str("hello".into()));
        assert_eq!(trailing_literal(b"a LOGIN {12}"), Some((12, false)));
        assert_eq!(trailing_literal(b"a LOGIN {12+}"), Some((12, true)));
        assert_eq!(trailing_literal(b"a LOGIN {x}"), None);
        assert!(tokenize(b"a (b").is_err());
        assert!(tokenize(b"a b)").is_err());
    }

    #[test]
    fn strings_are_quoted_or_literal() {
        assert_eq!(string("Inbox"), b"\"Inbox\"");
        assert_eq!(string("a\"b"), b"{3}\r\na\"b");
        assert_eq!(nstring(""), b"NIL");
    }
}
