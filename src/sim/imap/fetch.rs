//! What IMAP says about messages: folder names as Exchange shows them (`INBOX`, `Sent Items`, …,
//! with special-use attributes), sequence sets, `SEARCH` keys, `FETCH` items (`UID`, `FLAGS`,
//! `RFC822.SIZE`, `INTERNALDATE`, `ENVELOPE`, `BODY[]`/`BODY.PEEK[]` with `HEADER`, `TEXT`,
//! `HEADER.FIELDS` and partial ranges, `RFC822*`, the `ALL`/`FAST`/`FULL` macros) and their rendering.

use chrono::{DateTime, Utc};

use super::command::{Tok, nstring, string};
use super::mime;
use crate::sim::state::{Address, Message};

/// Exchange's folders: (key, IMAP name, special-use attribute).
const FOLDERS: &[(&str, &str, &str)] = &[
    ("inbox", "INBOX", ""),
    ("archive", "Archive", "\\Archive"),
    ("drafts", "Drafts", "\\Drafts"),
    ("sentitems", "Sent Items", "\\Sent"),
    ("deleteditems", "Deleted Items", "\\Trash"),
    ("junkemail", "Junk Email", "\\Junk"),
    ("outbox", "Outbox", ""),
    ("conversationhistory", "Conversation History", ""),
];

/// The IMAP folders of a mailbox whose messages lie in `keys` (custom folders): (key, name, attribute).
pub fn folders(keys: &[String]) -> Vec<(String, String, &'static str)> {
    let mut out: Vec<(String, String, &'static str)> = FOLDERS
        .iter()
        .map(|(k, n, a)| ((*k).to_owned(), (*n).to_owned(), *a))
        .collect();
    for k in keys {
        if !out.iter().any(|(key, _, _)| key == k) {
            out.push((k.clone(), k.clone(), ""));
        }
    }
    out
}

/// The folder key of an IMAP name (`INBOX` in any case, Exchange's display names, or a custom
/// folder's name), if the mailbox has that folder.
pub fn folder_key(name: &str, keys: &[String]) -> Option<String> {
    folders(keys)
        .into_iter()
        .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
        .map(|(k, _, _)| k)
}

/// Whether `name` matches a LIST pattern (`*` anything, `%` anything but the `/` delimiter).
pub fn list_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len()).any(|i| go(rest, n.get(i..).unwrap_or_default())),
            Some(('%', rest)) => (0..=n.len())
                .take_while(|i| *i == 0 || n.get(i - 1) != Some(&'/'))
                .any(|i| go(rest, n.get(i..).unwrap_or_default())),
            Some((c, rest)) => n
                .split_first()
                .is_some_and(|(d, nrest)| c.eq_ignore_ascii_case(d) && go(rest, nrest)),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

/// A sequence set (`1`, `2:4`, `5:*`, `1,3:*`), resolved against the largest number in use.
#[derive(Debug, Clone)]
pub struct SeqSet(Vec<(u32, u32)>);

impl SeqSet {
    /// Parses `text`; `*` stands for `largest` (the largest UID or message number).
    pub fn parse(text: &str, largest: u32) -> Option<SeqSet> {
        let num = |s: &str| -> Option<u32> {
            if s == "*" {
                Some(largest)
            } else {
                s.parse::<u32>().ok().filter(|n| *n > 0)
            }
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            ranges.push((a.min(b), a.max(b)));
        }
        Some(SeqSet(ranges))
    }

    pub fn contains(&self, n: u32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&n))
    }
}

/// The flags a message has: `\Seen` (isRead) and `\Flagged` (a flagged follow-up flag).
pub fn flags(m: &Message) -> String {
    let mut f = Vec::new();
    if m.is_read {
        f.push("\\Seen");
    }
    if is_flagged(m) {
        f.push("\\Flagged");
    }
    format!("({})", f.join(" "))
}

/// Whether the message's follow-up flag is set.
pub fn is_flagged(m: &Message) -> bool {
    m.flag
        .as_ref()
        .and_then(|f| f.get("flagStatus"))
        .and_then(|s| s.as_str())
        == Some("flagged")
}

/// `INTERNALDATE`'s form: `01-Dec-2026 06:54:18 +0000`.
pub fn internal_date(t: DateTime<Utc>) -> String {
    t.format("%d-%b-%Y %H:%M:%S +0000").to_string()
}

/// A header value as ENVELOPE carries it: ASCII as is, anything else as an RFC 2047 encoded word.
fn header_text(s: &str) -> String {
    if s.is_ascii() {
        s.to_owned()
    } else {
        use base64::Engine;
        format!(
            "=?utf-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }
}

fn envelope_addresses(list: &[Address]) -> Vec<u8> {
    if list.is_empty() {
        return b"NIL".to_vec();
    }
    let mut out = b"(".to_vec();
    for a in list {
        let (local, host) = a.address.split_once('@').unwrap_or((&a.address, ""));
        out.push(b'(');
        out.extend(nstring(&header_text(&a.name)));
        out.extend_from_slice(b" NIL ");
        out.extend(string(local));
        out.push(b' ');
        out.extend(string(host));
        out.push(b')');
    }
    out.push(b')');
    out
}

/// The ENVELOPE structure (RFC 3501 §7.4.2).
pub fn envelope(m: &Message) -> Vec<u8> {
    let from = std::slice::from_ref(&m.from);
    let mut out = b"(".to_vec();
    out.extend(string(&m.received.to_rfc2822()));
    out.push(b' ');
    out.extend(nstring(&header_text(&m.subject)));
    for list in [from, from, from, &m.to[..], &m.cc[..], &[][..]] {
        out.push(b' ');
        out.extend(envelope_addresses(list));
    }
    out.extend_from_slice(b" NIL ");
    out.extend(nstring(&m.internet_message_id));
    out.push(b')');
    out
}

/// Which part of the message a `BODY[...]` item asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    All,
    Header,
    Text,
    Fields { names: Vec<String>, not: bool },
}

/// One item of a FETCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Uid,
    Flags,
    Size,
    InternalDate,
    Envelope,
    /// `BODY[section]<partial>`; `peek` leaves `\Seen` alone; `name` is how the answer names it.
    Body {
        section: Section,
        peek: bool,
        partial: Option<(usize, usize)>,
        name: String,
    },
}

fn parse_section(spec: &str) -> Option<Section> {
    let upper = spec.to_ascii_uppercase();
    match upper.as_str() {
        "" => Some(Section::All),
        "HEADER" => Some(Section::Header),
        "TEXT" => Some(Section::Text),
        _ => {
            let (not, rest) = if let Some(r) = upper.strip_prefix("HEADER.FIELDS.NOT") {
                (true, r)
            } else {
                (false, upper.strip_prefix("HEADER.FIELDS")?)
            };
            let list = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
            let names = list.split_whitespace().map(str::to_owned).collect();
            Some(Section::Fields { names, not })
        }
    }
}

fn parse_item(atom: &str) -> Option<Vec<Item>> {
    let upper = atom.to_ascii_uppercase();
    let simple = match upper.as_str() {
        "UID" => Some(vec![Item::Uid]),
        "FLAGS" => Some(vec![Item::Flags]),
        "RFC822.SIZE" => Some(vec![Item::Size]),
        "INTERNALDATE" => Some(vec![Item::InternalDate]),
        "ENVELOPE" => Some(vec![Item::Envelope]),
        "FAST" => Some(vec![Item::Flags, Item::InternalDate, Item::Size]),
        "ALL" => Some(vec![
            Item::Flags,
            Item::InternalDate,
            Item::Size,
            Item::Envelope,
        ]),
        "FULL" => Some(vec![
            Item::Flags,
            Item::InternalDate,
            Item::Size,
            Item::Envelope,
        ]),
        "RFC822" => Some(vec![body(Section::All, false, "RFC822")]),
        "RFC822.HEADER" => Some(vec![body(Section::Header, true, "RFC822.HEADER")]),
        "RFC822.TEXT" => Some(vec![body(Section::Text, false, "RFC822.TEXT")]),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    let (peek, rest) = if let Some(r) = upper.strip_prefix("BODY.PEEK[") {
        (true, r)
    } else {
        (false, upper.strip_prefix("BODY[")?)
    };
    let close = rest.find(']')?;
    let section = parse_section(rest.get(..close)?)?;
    let after = rest.get(close + 1..)?;
    let partial = if after.is_empty() {
        None
    } else {
        let inner = after.strip_prefix('<')?.strip_suffix('>')?;
        let (a, b) = inner.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    // The answer names the section as asked (without PEEK and without the partial's length).
    let spec = atom
        .get(atom.find('[')? + 1..atom.find(']')?)
        .unwrap_or_default();
    let name = match partial {
        Some((start, _)) => format!("BODY[{spec}]<{start}>"),
        None => format!("BODY[{spec}]"),
    };
    Some(vec![Item::Body {
        section,
        peek,
        partial,
        name,
    }])
}

fn body(section: Section, peek: bool, name: &str) -> Item {
    Item::Body {
        section,
        peek,
        partial: None,
        name: name.to_owned(),
    }
}

/// Parses a FETCH's item argument: one item, a macro, or a parenthesized list.
pub fn parse_items(arg: &Tok) -> Option<Vec<Item>> {
    let mut items = Vec::new();
    match arg {
        Tok::Atom(a) => items.extend(parse_item(a)?),
        Tok::List(list) => {
            for t in list {
                let Tok::Atom(a) = t else { return None };
                items.extend(parse_item(a)?);
            }
        }
        Tok::Str(_) => return None,
    }
    if items.is_empty() { None } else { Some(items) }
}

/// Whether fetching `items` sets `\Seen` (a `BODY[…]` without PEEK, `RFC822`, `RFC822.TEXT`).
pub fn sets_seen(items: &[Item]) -> bool {
    items
        .iter()
        .any(|i| matches!(i, Item::Body { peek: false, .. }))
}

/// One message's FETCH answer: `* msn FETCH (…)` with `UID` first when `with_uid`.
pub fn render(msn: usize, m: &Message, raw: &[u8], items: &[Item], with_uid: bool) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut seen_uid = false;
    let mut seen_flags = false;
    if with_uid {
        parts.push(format!("UID {}", m.uid).into_bytes());
        seen_uid = true;
    }
    for item in items {
        match item {
            Item::Uid => {
                if !seen_uid {
                    parts.push(format!("UID {}", m.uid).into_bytes());
                    seen_uid = true;
                }
            }
            Item::Flags => {
                if !seen_flags {
                    parts.push(format!("FLAGS {}", flags(m)).into_bytes());
                    seen_flags = true;
                }
            }
            Item::Size => parts.push(format!("RFC822.SIZE {}", raw.len()).into_bytes()),
            Item::InternalDate => {
                parts.push(format!("INTERNALDATE \"{}\"", internal_date(m.received)).into_bytes())
            }
            Item::Envelope => {
                let mut e = b"ENVELOPE ".to_vec();
                e.extend(envelope(m));
                parts.push(e);
            }
            Item::Body {
                section,
                partial,
                name,
                ..
            } => {
                let (header, text) = mime::split(raw);
                let whole: Vec<u8> = match section {
                    Section::All => raw.to_vec(),
                    Section::Header => header.to_vec(),
                    Section::Text => text.to_vec(),
                    Section::Fields { names, not } => mime::header_fields(header, names, *not),
                };
                let bytes = match partial {
                    Some((start, len)) => whole
                        .get(
                            (*start).min(whole.len())
                                ..(start.saturating_add(*len)).min(whole.len()),
                        )
                        .unwrap_or_default()
                        .to_vec(),
                    None => whole,
                };
                let mut p = format!("{name} {{{}}}\r\n", bytes.len()).into_bytes();
                p.extend(bytes);
                parts.push(p);
            }
        }
    }
    // A fetch that set \Seen reports the new flags even when they were not asked for.
    if sets_seen(items) && !seen_flags {
        parts.push(format!("FLAGS {}", flags(m)).into_bytes());
    }
    let mut out = format!("* {msn} FETCH (").into_bytes();
    for (i, p) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(p);
    }
    out.extend_from_slice(b")\r\n");
    out
}

/// One SEARCH key the simulator understands.
#[derive(Debug, Clone)]
pub enum Key {
    All,
    Seen(bool),
    Flagged(bool),
    Uid(String),
    Seq(String),
    Since(chrono::NaiveDate),
    Before(chrono::NaiveDate),
    Not(Box<Key>),
    And(Vec<Key>),
}

fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s, "%d-%b-%Y").ok()
}

/// Parses SEARCH keys (all must match). `CHARSET x` is accepted and ignored (UTF-8 only).
pub fn parse_search(args: &[Tok]) -> Option<Vec<Key>> {
    let mut keys = Vec::new();
    let mut it = args.iter().peekable();
    while let Some(t) = it.next() {
        keys.push(parse_key(t, &mut it)?);
    }
    if keys.is_empty() { None } else { Some(keys) }
}

fn parse_key<'a>(
    t: &Tok,
    it: &mut std::iter::Peekable<impl Iterator<Item = &'a Tok>>,
) -> Option<Key> {
    let atom = match t {
        Tok::Atom(a) => a.to_ascii_uppercase(),
        Tok::List(inner) => {
            // A parenthesized group: all of its keys.
            return Some(Key::And(parse_search(inner)?));
        }
        Tok::Str(_) => return None,
    };
    let mut arg = || it.next().and_then(Tok::as_astring).map(str::to_owned);
    Some(match atom.as_str() {
        "ALL" => Key::All,
        "SEEN" => Key::Seen(true),
        "UNSEEN" => Key::Seen(false),
        "FLAGGED" => Key::Flagged(true),
        "UNFLAGGED" => Key::Flagged(false),
        "UID" => Key::Uid(arg()?),
        "SINCE" => Key::Since(parse_date(&arg()?)?),
        "BEFORE" => Key::Before(parse_date(&arg()?)?),
        "NOT" => {
            let next = it.next()?;
            Key::Not(Box::new(parse_key(next, it)?))
        }
        "CHARSET" => {
            let cs = arg()?;
            if !cs.eq_ignore_ascii_case("UTF-8") && !cs.eq_ignore_ascii_case("US-ASCII") {
                return None;
            }
            let next = it.next()?;
            return parse_key(next, it);
        }
        _ if atom
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b',' || b == b'*') =>
        {
            Key::Seq(atom)
        }
        _ => return None,
    })
}

/// Whether message `m` (number `msn`) matches `key`; `max_uid`/`max_msn` resolve `*`.
pub fn matches(key: &Key, m: &Message, msn: u32, max_uid: u32, max_msn: u32) -> bool {
    match key {
        Key::All => true,
        Key::Seen(s) => m.is_read == *s,
        Key::Flagged(f) => is_flagged(m) == *f,
        Key::Uid(set) => SeqSet::parse(set, max_uid).is_some_and(|s| s.contains(m.uid)),
        Key::Seq(set) => SeqSet::parse(set, max_msn).is_some_and(|s| s.contains(msn)),
        Key::Since(d) => m.received.date_naive() >= *d,
        Key::Before(d) => m.received.date_naive() < *d,
        Key::Not(k) => !matches(k, m, msn, max_uid, max_msn),
        Key::And(keys) => keys.iter().all(|k| matches(k, m, msn, max_uid, max_msn)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn sequence_sets_resolve_star_and_reversed_ranges() {
        let s = SeqSet::parse("5:*", 3).unwrap();
        assert!(s.contains(3) && s.contains(5) && !s.contains(2));
        let s = SeqSet::parse("1,4:2", 9).unwrap();
        assert!(s.contains(1) && s.contains(3) && !s.contains(5));
        assert!(SeqSet::parse("0", 3).is_none());
        assert!(SeqSet::parse("a", 3).is_none());
    }

    #[test]
    fn list_patterns() {
        assert!(list_matches("*", "Sent Items"));
        assert!(list_matches("%", "INBOX"));
        assert!(list_matches("inbox", "INBOX"));
        assert!(!list_matches("%", "a/b"));
        assert!(list_matches("*", "a/b"));
        assert!(list_matches("S*", "Sent Items") && !list_matches("S*", "INBOX"));
    }

    #[test]
    fn items_and_macros() {
        let items = parse_items(&Tok::List(vec![
            Tok::Atom("UID".into()),
            Tok::Atom("BODY.PEEK[]".into()),
            Tok::Atom("body[header.fields (From)]<0.10>".into()),
        ]))
        .unwrap();
        assert_eq!(items[0], Item::Uid);
        assert!(
            matches!(&items[1], Item::Body { peek: true, section: Section::All, name, .. } if name == "BODY[]")
        );
        assert!(
            matches!(&items[2], Item::Body { peek: false, partial: Some((0, 10)), name, .. } if name == "BODY[header.fields (From)]<0>")
        );
        assert!(sets_seen(&items));
        assert_eq!(parse_items(&Tok::Atom("FAST".into())).unwrap().len(), 3);
        assert!(parse_items(&Tok::Atom("BODYSTRUCTURE".into())).is_none());
    }
}
