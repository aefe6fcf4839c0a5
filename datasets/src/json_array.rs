//! Splits a top-level JSON array into its elements without parsing the whole array, so a large
//! `[...]` file streams through the same fixed buffer as JSONL.
//!
//! The splitter tracks only string/escape state and bracket depth. Each element's bytes then go to
//! the record parser, which reports what is wrong inside it. Broken array structure (a missing comma,
//! an unclosed array) cannot be resynchronised reliably, so it ends the stream with one error.

use std::io::{self, Read};

use crate::source::Source;
use crate::{MAX_DEPTH, MAX_RECORD_BYTES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    First,
    Next,
    Done,
}

pub(crate) struct ArraySplitter {
    state: State,
    /// 1-based line of the source position.
    line: u64,
}

pub(crate) enum Element<'a> {
    Value {
        line: u64,
        bytes: &'a [u8],
        too_deep: bool,
    },
    TooLong {
        line: u64,
    },
    /// Broken array structure; the stream ends after this.
    Malformed {
        line: u64,
        message: String,
    },
    End,
}

impl ArraySplitter {
    pub(crate) fn new() -> Self {
        ArraySplitter { state: State::Start, line: 1 }
    }

    pub(crate) fn next<'s, R: Read>(&mut self, src: &'s mut Source<R>) -> io::Result<Element<'s>> {
        loop {
            let next = self.skip_whitespace(src)?;
            match (self.state, next) {
                (State::Done, _) => return Ok(Element::End),
                (State::Start, Some(b'[')) => {
                    src.consume(1);
                    self.state = State::First;
                }
                (State::First, Some(b']')) | (State::Next, Some(b']')) => {
                    src.consume(1);
                    return self.after_close(src);
                }
                (State::Next, Some(b',')) => {
                    src.consume(1);
                    self.state = State::First;
                    if self.skip_whitespace(src)? == Some(b']') {
                        return Ok(self.malformed("trailing comma before `]`"));
                    }
                }
                (State::First, Some(_)) => {
                    self.state = State::Next;
                    return self.element(src);
                }
                (State::Next, Some(_)) => return Ok(self.malformed("expected `,` or `]` after an element")),
                (State::Start, _) => return Ok(self.malformed("expected `[`")),
                (_, None) => return Ok(self.malformed("unexpected end of file: the array is not closed")),
            }
        }
    }

    fn malformed<'s>(&mut self, message: &str) -> Element<'s> {
        self.state = State::Done;
        Element::Malformed { line: self.line, message: format!("malformed JSON array: {message}") }
    }

    fn after_close<'s, R: Read>(&mut self, src: &mut Source<R>) -> io::Result<Element<'s>> {
        if self.skip_whitespace(src)?.is_some() {
            return Ok(self.malformed("data after the closing `]`"));
        }
        self.state = State::Done;
        Ok(Element::End)
    }

    /// Consumes whitespace, counting lines, and peeks at the next byte (`None` at end of input).
    fn skip_whitespace<R: Read>(&mut self, src: &mut Source<R>) -> io::Result<Option<u8>> {
        loop {
            let avail = src.available();
            let ws = avail.iter().take_while(|b| b.is_ascii_whitespace()).count();
            self.line += memchr::memchr_iter(b'\n', &avail[..ws]).count() as u64;
            let next = avail.get(ws).copied();
            src.consume(ws);
            if next.is_some() || src.is_eof() {
                return Ok(next);
            }
            src.read_more()?;
        }
    }

    /// Scans one element starting at the source position.
    fn element<'s, R: Read>(&mut self, src: &'s mut Source<R>) -> io::Result<Element<'s>> {
        let line = self.line;
        let mut start = src.pos;
        let mut i = start;
        let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
        let (mut too_deep, mut too_long) = (false, false);
        let mut newlines = 0u64;
        let end = 'scan: loop {
            let buf = src.buf();
            while i < src.end {
                let b = buf[i];
                if b == b'\n' {
                    newlines += 1;
                }
                if in_str {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_str = false;
                        if depth == 0 {
                            break 'scan i + 1;
                        }
                    }
                } else {
                    match b {
                        b'"' => in_str = true,
                        b'{' | b'[' => {
                            depth += 1;
                            too_deep |= depth > MAX_DEPTH;
                        }
                        b'}' | b']' if depth > 0 => {
                            depth -= 1;
                            if depth == 0 {
                                break 'scan i + 1;
                            }
                        }
                        // A bare scalar ends at the array's delimiters.
                        b'}' | b']' | b',' if depth == 0 => break 'scan i,
                        _ if depth == 0 && b.is_ascii_whitespace() => break 'scan i,
                        _ => {}
                    }
                }
                i += 1;
            }
            if src.is_eof() {
                if depth == 0 && !in_str {
                    break 'scan i;
                }
                self.line += newlines;
                return Ok(self.malformed("unexpected end of file inside an element"));
            }
            if too_long || i - start > MAX_RECORD_BYTES {
                // Keep scanning to find where the element ends, but stop keeping its bytes.
                too_long = true;
                src.discard_all();
                start = 0;
                i = 0;
                src.read_more()?;
            } else {
                let shift = src.read_more()?;
                start -= shift;
                i -= shift;
            }
        };
        // The byte that ended a bare scalar is not part of it, and must not be counted twice.
        if end == i && i < src.end && src.buf()[i] == b'\n' {
            newlines -= 1;
        }
        self.line += newlines;
        src.consume(end - src.pos);
        if too_long || end - start > MAX_RECORD_BYTES {
            return Ok(Element::TooLong { line });
        }
        Ok(Element::Value { line, bytes: &src.buf()[start..end], too_deep })
    }
}
