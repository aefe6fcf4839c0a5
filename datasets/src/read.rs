//! Reading normalised records: the trainer's iterator, the preview page, and format detection.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, RecordError, RecordErrorKind};
use crate::record::{Format, Record, Shape};
use crate::stream::RecordStream;
use crate::MAX_PREVIEW_LIMIT;

/// Normalised records of a dataset, in file order, read as a stream.
///
/// Yields `Err` for each invalid record and goes on; an I/O failure yields one `Err` of kind
/// [`RecordErrorKind::Io`] and ends the iteration.
pub struct Records<R> {
    stream: RecordStream<R>,
    done: bool,
}

impl<R: Read> Records<R> {
    /// The detected container format.
    pub fn format(&self) -> Format {
        self.stream.format()
    }

    /// The shape of the first valid record read so far.
    pub fn shape(&self) -> Option<Shape> {
        self.stream.shape()
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.stream.next() {
            Ok(Some((_, Ok(record)))) => Some(Ok(record.into_owned())),
            Ok(Some((loc, Err(fault)))) => Some(Err(fault.at(loc))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(RecordError {
                    line: 0,
                    record: 0,
                    field: None,
                    kind: RecordErrorKind::Io,
                    message: format!("reading the dataset failed: {e}"),
                }))
            }
        }
    }
}

/// Opens a dataset for reading records; fails up front if the content is not a dataset at all.
pub fn records<R: Read>(reader: R) -> Result<Records<R>, DatasetError> {
    Ok(Records { stream: RecordStream::open(reader)?, done: false })
}

/// A page of valid, normalised records: skips `offset` valid records, returns up to `limit`
/// (clamped to [`MAX_PREVIEW_LIMIT`]) and stops reading as soon as the page is full.
///
/// Invalid records are skipped and not counted, so a page is what training would see.
pub fn preview<R: Read>(reader: R, offset: usize, limit: usize) -> Result<Vec<Record>, DatasetError> {
    let limit = limit.min(MAX_PREVIEW_LIMIT);
    let mut stream = RecordStream::open(reader)?;
    let mut page = Vec::with_capacity(limit);
    let mut skipped = 0;
    while page.len() < limit {
        let Some((_, result)) = stream.next()? else {
            break;
        };
        let Ok(record) = result else { continue };
        if skipped < offset {
            skipped += 1;
        } else {
            page.push(record.into_owned());
        }
    }
    Ok(page)
}

/// Format and shape of a dataset, as reported on upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detected {
    /// Container format.
    pub format: Format,
    /// Shape of the first valid record among the first [`DETECT_RECORDS`]; `None` if there is none.
    pub shape: Option<Shape>,
}

/// How many records [`detect`] looks at for a valid one.
pub const DETECT_RECORDS: usize = 100;

/// Detects format and shape from the start of the content (the file name plays no part).
///
/// Reads at most [`DETECT_RECORDS`] records. Fails like [`validate`](crate::validate) on content that
/// is not a dataset.
pub fn detect<R: Read>(reader: R) -> Result<Detected, DatasetError> {
    let mut stream = RecordStream::open(reader)?;
    for _ in 0..DETECT_RECORDS {
        match stream.next()? {
            Some((_, Ok(_))) => break,
            Some((_, Err(_))) => continue,
            None => break,
        }
    }
    Ok(Detected { format: stream.format(), shape: stream.shape() })
}
