//! A strict parser of Structured Field Dictionaries (RFC 8941 §4.2.2), as
//! much of it as the targeted cache-control fields need.

use std::borrow::Cow;

/// A Structured Field item (RFC 8941 §3.3), parameters dropped; the types
/// no directive uses are kept as [`Item::Other`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item<'a> {
    Integer(i64),
    String(Cow<'a, str>),
    Token(&'a str),
    Boolean(bool),
    InnerList(Vec<Item<'a>>),
    /// A Decimal or a Byte Sequence.
    Other,
}

/// Parses a Structured Field Dictionary (RFC 8941 §4.2.2), handing each
/// member to `member` in order; returns how many there were, or `None` on
/// any parse error (after which what `member` saw must be discarded).
pub(super) fn parse_dictionary<'a>(
    input: &'a [u8],
    mut member: impl FnMut(&'a str, Item<'a>),
) -> Option<usize> {
    // Structured fields are ASCII; anything else is a parse error.
    let input = std::str::from_utf8(input).ok().filter(|s| s.is_ascii())?;
    let mut parser = Parser {
        input: input.as_bytes(),
        text: input,
        pos: 0,
    };
    parser.skip_sp();
    let mut members = 0;
    while !parser.at_end() {
        let key = parser.key()?;
        let item = if parser.eat(b'=') {
            parser.item_or_inner_list()?
        } else {
            parser.parameters()?;
            Item::Boolean(true)
        };
        member(key, item);
        members += 1;
        parser.skip_ows();
        if parser.at_end() {
            break;
        }
        if !parser.eat(b',') {
            return None;
        }
        parser.skip_ows();
        if parser.at_end() {
            return None; // a trailing comma
        }
    }
    Some(members)
}

#[derive(Debug)]
struct Parser<'a> {
    input: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        // Trailing SP was part of the field value's OWS.
        self.input[self.pos..].iter().all(|&b| b == b' ')
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        &self.text[start..self.pos]
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Option<&'a str> {
        if !matches!(self.peek(), Some(b'a'..=b'z' | b'*')) {
            return None;
        }
        Some(
            self.take_while(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')),
        )
    }

    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    fn item_or_inner_list(&mut self) -> Option<Item<'a>> {
        if self.eat(b'(') {
            let mut members = Vec::new();
            loop {
                self.skip_sp();
                if self.eat(b')') {
                    self.parameters()?;
                    return Some(Item::InnerList(members));
                }
                let member = self.bare_item()?;
                self.parameters()?;
                members.push(member);
                if !matches!(self.peek(), Some(b' ' | b')')) {
                    return None;
                }
            }
        }
        let item = self.bare_item()?;
        self.parameters()?;
        Some(item)
    }

    fn bare_item(&mut self) -> Option<Item<'a>> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string(),
            b'*' | b'a'..=b'z' | b'A'..=b'Z' => Some(Item::Token(self.take_while(|b| {
                crate::rfc9111::directives::is_tchar(b) || b == b':' || b == b'/'
            }))),
            b':' => {
                self.pos += 1;
                self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                self.eat(b':').then_some(Item::Other)
            }
            b'?' => {
                self.pos += 1;
                let value = match self.peek()? {
                    b'0' => false,
                    b'1' => true,
                    _ => return None,
                };
                self.pos += 1;
                Some(Item::Boolean(value))
            }
            _ => None,
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits, or 12 and up to 3
    /// fractional digits for a Decimal.
    fn number(&mut self) -> Option<Item<'a>> {
        let negative = self.eat(b'-');
        let digits = self.take_while(|b| b.is_ascii_digit());
        if digits.is_empty() {
            return None;
        }
        if self.eat(b'.') {
            let fraction = self.take_while(|b| b.is_ascii_digit());
            return (digits.len() <= 12 && (1..=3).contains(&fraction.len()))
                .then_some(Item::Other);
        }
        if digits.len() > 15 {
            return None;
        }
        let value: i64 = digits.parse().ok()?;
        Some(Item::Integer(if negative { -value } else { value }))
    }

    fn string(&mut self) -> Option<Item<'a>> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'\\' => {
                    self.pos += 1;
                    if !matches!(self.peek()?, b'"' | b'\\') {
                        return None;
                    }
                    escaped = true;
                    self.pos += 1;
                }
                b'"' => break,
                0x20..=0x7e => self.pos += 1,
                _ => return None,
            }
        }
        let raw = &self.text[start..self.pos];
        self.pos += 1;
        Some(Item::String(if escaped {
            Cow::Owned(raw.replace("\\\\", "\\").replace("\\\"", "\""))
        } else {
            Cow::Borrowed(raw)
        }))
    }
}
