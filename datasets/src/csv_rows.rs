//! CSV (or TSV) rows as records: the header names the columns, each row fills the same fields a JSON
//! record would, and the shared rules in `normalise` decide the rest.
//!
//! A `messages` column holds a JSON array of messages, so chat data survives a spreadsheet round trip.

use std::borrow::Cow;
use std::io::{self, Read};

use crate::error::{DatasetError, RecordErrorKind};
use crate::normalise::{check_depth, normalise, Fault};
use crate::raw::{Field, MessagesField, RawRecord};
use crate::record::RecordRef;
use crate::source::Source;
use crate::MAX_RECORD_BYTES;

/// Column index of each known field.
#[derive(Debug, Default, Clone, Copy)]
struct Columns {
    question: Option<usize>,
    answer: Option<usize>,
    prompt: Option<usize>,
    response: Option<usize>,
    completion: Option<usize>,
    instruction: Option<usize>,
    input: Option<usize>,
    output: Option<usize>,
    messages: Option<usize>,
}

impl Columns {
    /// Header names are matched trimmed and case-insensitively: spreadsheets capitalise them.
    fn from_header(header: &csv::ByteRecord) -> Option<Columns> {
        let mut c = Columns::default();
        let mut any = false;
        for (i, name) in header.iter().enumerate() {
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            let slot = match name.as_str() {
                "question" => &mut c.question,
                "answer" => &mut c.answer,
                "prompt" => &mut c.prompt,
                "response" => &mut c.response,
                "completion" => &mut c.completion,
                "instruction" => &mut c.instruction,
                "input" => &mut c.input,
                "output" => &mut c.output,
                "messages" => &mut c.messages,
                _ => continue,
            };
            slot.get_or_insert(i);
            any = true;
        }
        any.then_some(c)
    }
}

pub(crate) struct CsvRows<R> {
    reader: csv::Reader<Source<R>>,
    columns: Columns,
    row: csv::ByteRecord,
    done: bool,
}

/// One row: its 1-based starting line and what it holds.
pub(crate) struct Row<'a> {
    pub(crate) line: u64,
    pub(crate) result: Result<RecordRef<'a>, Fault>,
}

impl<R: Read> CsvRows<R> {
    pub(crate) fn open(src: Source<R>, delimiter: u8) -> Result<Self, DatasetError> {
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(src);
        let header = reader.byte_headers().map_err(|e| DatasetError::Io(into_io(e)))?;
        let columns = Columns::from_header(header).ok_or_else(|| {
            DatasetError::UnknownFormat(
                "not JSON, and the first line is not a CSV header with question/answer, prompt/response (or completion), \
                 instruction/output or messages columns"
                    .to_owned(),
            )
        })?;
        Ok(CsvRows { reader, columns, row: csv::ByteRecord::new(), done: false })
    }

    pub(crate) fn next(&mut self) -> io::Result<Option<Row<'_>>> {
        if self.done {
            return Ok(None);
        }
        self.reader.get_mut().reset_guard();
        let line = self.reader.position().line();
        match self.reader.read_byte_record(&mut self.row) {
            Ok(false) => {
                self.done = true;
                return Ok(None);
            }
            Ok(true) => {}
            Err(_) if self.reader.get_ref().guard_tripped => {
                // The parser's state is lost mid-field; there is no reliable place to resume.
                self.done = true;
                let fault = too_long("a CSV row over 1 MiB (or an unclosed quote); validation stopped here");
                return Ok(Some(Row { line, result: Err(fault) }));
            }
            Err(e) => return Err(into_io(e)),
        }
        let line = self.row.position().map_or(line, |p| p.line());
        if self.row.as_slice().len() > MAX_RECORD_BYTES {
            return Ok(Some(Row { line, result: Err(too_long("a CSV row over 1 MiB")) }));
        }
        Ok(Some(Row { line, result: build(&self.row, &self.columns) }))
    }
}

fn build<'a>(row: &'a csv::ByteRecord, c: &Columns) -> Result<RecordRef<'a>, Fault> {
    let text = |idx: Option<usize>, name: &str| -> Result<Option<&'a str>, Fault> {
        let Some(bytes) = idx.and_then(|i| row.get(i)) else {
            return Ok(None);
        };
        crate::stream::utf8(bytes).map(Some).map_err(|e| {
            Fault::new(
                RecordErrorKind::InvalidUtf8,
                Some(name),
                format!("`{name}` is not valid UTF-8 (byte {} of the cell)", e.valid_up_to()),
            )
        })
    };
    let cell = |idx: Option<usize>, name: &str| -> Result<Option<Field<'a>>, Fault> {
        Ok(text(idx, name)?.map(|t| Field::Text(Cow::Borrowed(t))))
    };
    let messages = match text(c.messages, "messages")? {
        Some(json) if !json.trim().is_empty() => Some(parse_messages(json)?),
        Some(_) => Some(MessagesField::Null),
        None => None,
    };
    let raw = RawRecord {
        question: cell(c.question, "question")?,
        answer: cell(c.answer, "answer")?,
        prompt: cell(c.prompt, "prompt")?,
        response: cell(c.response, "response")?,
        completion: cell(c.completion, "completion")?,
        instruction: cell(c.instruction, "instruction")?,
        input: cell(c.input, "input")?,
        output: cell(c.output, "output")?,
        messages,
        duplicate: None,
    };
    normalise(raw)
}

fn parse_messages(json: &str) -> Result<MessagesField<'_>, Fault> {
    check_depth(json.as_bytes()).map_err(|mut f| {
        f.field = Some("messages".to_owned());
        f
    })?;
    serde_json::from_str(json).map_err(|e| {
        Fault::new(RecordErrorKind::MalformedJson, Some("messages"), format!("`messages` is not valid JSON: {e}"))
    })
}

fn too_long(message: &str) -> Fault {
    Fault::new(RecordErrorKind::RecordTooLong, None, message)
}

fn into_io(e: csv::Error) -> io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}
