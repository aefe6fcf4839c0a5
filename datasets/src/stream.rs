//! One record stream over the three formats: sniff, split, parse, and enforce one shape per file.
//!
//! Records are handed out borrowed from the read buffer (a lending `next`, not an `Iterator`), so the
//! validator never copies a string; `records()` turns them into owned [`crate::Record`]s.

use std::io::{self, Read};

use crate::csv_rows::CsvRows;
use crate::error::{DatasetError, RecordError, RecordErrorKind};
use crate::json_array::{ArraySplitter, Element};
use crate::normalise::{parse_json_record, too_deep, Fault};
use crate::record::{Format, RecordRef, Shape};
use crate::sniff::sniff;
use crate::source::{Line, Source};

/// Where a record is: 1-based line of its start and 1-based record index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) line: u64,
    pub(crate) record: u64,
}

impl Fault {
    pub(crate) fn at(self, loc: Location) -> RecordError {
        RecordError { line: loc.line, record: loc.record, field: self.field, kind: self.kind, message: self.message }
    }
}

enum Inner<R> {
    Lines { src: Source<R>, line: u64 },
    Array { src: Source<R>, splitter: ArraySplitter },
    // Boxed: the CSV reader carries its parser state inline, the others only a pointer to their buffer.
    Csv(Box<CsvRows<R>>),
}

pub(crate) struct RecordStream<R> {
    format: Format,
    shape: Option<Shape>,
    records: u64,
    inner: Inner<R>,
}

pub(crate) type Item<'a> = (Location, Result<RecordRef<'a>, Fault>);

impl<R: Read> RecordStream<R> {
    /// Sniffs the content; fails on anything that is not a text file in a known format.
    pub(crate) fn open(reader: R) -> Result<Self, DatasetError> {
        let mut src = Source::new(reader);
        let sniffed = sniff(&mut src)?;
        let inner = match sniffed.format {
            Format::Jsonl => Inner::Lines { src, line: 0 },
            Format::JsonArray => Inner::Array { src, splitter: ArraySplitter::new() },
            Format::Csv => Inner::Csv(Box::new(CsvRows::open(src, sniffed.delimiter)?)),
        };
        Ok(RecordStream { format: sniffed.format, shape: None, records: 0, inner })
    }

    pub(crate) fn format(&self) -> Format {
        self.format
    }

    /// The shape of the first valid record, once there is one.
    pub(crate) fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// The next record, valid or not; `None` at the end. An `Err` is an I/O failure, not bad data.
    pub(crate) fn next(&mut self) -> io::Result<Option<Item<'_>>> {
        let (line, result) = match &mut self.inner {
            Inner::Lines { src, line } => match next_line(src, line)? {
                Some(item) => item,
                None => return Ok(None),
            },
            Inner::Array { src, splitter } => match splitter.next(src)? {
                Element::End => return Ok(None),
                Element::Value { line, too_deep: true, .. } => (line, Err(too_deep())),
                Element::Value { line, bytes, too_deep: false } => (line, parse_bytes(bytes)),
                Element::TooLong { line } => (line, Err(too_long())),
                Element::Malformed { line, message } => {
                    (line, Err(Fault::new(RecordErrorKind::MalformedJson, None, message)))
                }
            },
            Inner::Csv(rows) => match rows.next()? {
                Some(row) => (row.line, row.result),
                None => return Ok(None),
            },
        };
        self.records += 1;
        let loc = Location { line, record: self.records };
        let result = match (result, self.shape) {
            (Ok(rec), None) => {
                self.shape = Some(rec.shape);
                Ok(rec)
            }
            (Ok(rec), Some(shape)) if rec.shape != shape => Err(Fault::new(
                RecordErrorKind::ShapeMismatch,
                None,
                format!("this record is {} but the file's first valid record is {}", name(rec.shape), name(shape)),
            )),
            (result, _) => result,
        };
        Ok(Some((loc, result)))
    }
}

/// The next non-blank JSONL line, parsed; `line` counts physical lines read so far.
fn next_line<'s, R: Read>(
    src: &'s mut Source<R>,
    line: &mut u64,
) -> io::Result<Option<(u64, Result<RecordRef<'s>, Fault>)>> {
    loop {
        let Some(next) = src.next_line()? else {
            return Ok(None);
        };
        *line += 1;
        match next {
            Line::TooLong => return Ok(Some((*line, Err(too_long())))),
            Line::Text(range) => {
                if src.buf()[range.clone()].iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some((*line, parse_bytes(&src.buf()[range]))));
            }
        }
    }
}

pub(crate) fn parse_bytes(bytes: &[u8]) -> Result<RecordRef<'_>, Fault> {
    let text = utf8(bytes).map_err(|e| {
        Fault::new(
            RecordErrorKind::InvalidUtf8,
            None,
            format!("not valid UTF-8 (byte {} of the record)", e.valid_up_to() + 1),
        )
    })?;
    parse_json_record(text)
}

fn too_long() -> Fault {
    Fault::new(RecordErrorKind::RecordTooLong, None, "record over 1 MiB")
}

fn name(shape: Shape) -> &'static str {
    match shape {
        Shape::QuestionAnswer => "question/answer",
        Shape::Alpaca => "Alpaca (instruction/output)",
        Shape::Chat => "chat (messages)",
    }
}

/// UTF-8 validation is the validator's largest single cost on non-ASCII text; the SIMD check is several
/// times faster than `std`'s, and `std` runs only on failure, to say where.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes),
    }
}
