//! The streaming validator: one pass, constant memory, a report ready to go into an event.

use std::fmt;
use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::error::{DatasetError, RecordError};
use crate::record::{Format, Role, Shape};
use crate::stats::{Stats, StatsBuilder};
use crate::stream::RecordStream;
use crate::{DUPLICATE_TRACKING_LIMIT, MAX_ERRORS_KEPT};

/// Knobs for [`validate`]; `ValidateOptions::default()` is what the data service uses.
#[derive(Clone, Copy)]
pub struct ValidateOptions<'t> {
    /// Counts tokens in a text; with one, the stats include token counts. Called once per message, from
    /// several threads at once (records are counted in parallel batches).
    pub tokenizer: Option<&'t (dyn Fn(&str) -> usize + Sync)>,
    /// Fewer valid records than this is a warning. Default 10.
    pub min_records: u64,
    /// A record with more characters (prompt + answer) than this is "very long". Default 32,768.
    pub long_example_chars: u64,
    /// With a tokenizer, a record with more tokens than this is "very long" too. Default 4,096.
    pub long_example_tokens: u64,
}

impl Default for ValidateOptions<'_> {
    fn default() -> Self {
        ValidateOptions { tokenizer: None, min_records: 10, long_example_chars: 32_768, long_example_tokens: 4_096 }
    }
}

impl fmt::Debug for ValidateOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateOptions")
            .field("tokenizer", &self.tokenizer.map(|_| "<fn>"))
            .field("min_records", &self.min_records)
            .field("long_example_chars", &self.long_example_chars)
            .field("long_example_tokens", &self.long_example_tokens)
            .finish()
    }
}

/// The outcome of validating a file that could be read as a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// Container format.
    pub format: Format,
    /// Shape of the first valid record; `None` if no record is valid.
    pub shape: Option<Shape>,
    /// No record errors and at least one valid record: the dataset can be trained on.
    pub valid: bool,
    /// Valid records (equal to `stats.records`).
    pub record_count: u64,
    /// Statistics over the valid records.
    pub stats: Stats,
    /// The first [`MAX_ERRORS_KEPT`] record errors, in file order.
    pub errors: Vec<RecordError>,
    /// All record errors (one per invalid record).
    pub error_count: u64,
    /// Things worth a look that do not make the dataset invalid.
    pub warnings: Vec<Warning>,
}

/// Not errors: the dataset is usable, but a person should look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// Too few examples to learn much from.
    FewRecords {
        /// Valid records.
        records: u64,
        /// The threshold ([`ValidateOptions::min_records`]).
        recommended_minimum: u64,
    },
    /// Records over the long-example thresholds; they may be truncated in training.
    LongExamples {
        /// How many.
        count: u64,
        /// Line of the first.
        first_line: u64,
        /// The character threshold used.
        threshold_chars: u64,
    },
    /// Records repeating an earlier record's normalised content.
    Duplicates {
        /// How many (the first occurrence is not counted).
        count: u64,
        /// Line of the first repeat.
        first_line: u64,
    },
    /// Records whose answer is empty.
    EmptyAnswers {
        /// How many.
        count: u64,
        /// Line of the first.
        first_line: u64,
    },
    /// Duplicate detection covered only the first records, to bound memory.
    DuplicateCheckTruncated {
        /// Records whose hashes were kept.
        tracked_records: u64,
    },
}

/// Counts a condition and remembers the first line where it held.
#[derive(Default)]
struct Tally {
    count: u64,
    first_line: u64,
}

impl Tally {
    fn hit(&mut self, line: u64) {
        if self.count == 0 {
            self.first_line = line;
        }
        self.count += 1;
    }
}

/// Valid records waiting for their token counts: at most this many, or this many bytes of text.
const TOKEN_BATCH_RECORDS: usize = 1024;
const TOKEN_BATCH_BYTES: usize = 8 << 20;

/// A valid record whose tokens are still to be counted.
struct Pending {
    line: u64,
    chars: u64,
    /// (is the assistant's, text) per message.
    texts: Vec<(bool, String)>,
}

/// Counts the tokens of `pending` in parallel, then adds them to `stats` and the long-example tally in
/// file order.
fn count_tokens(
    pending: &mut Vec<Pending>,
    tokenizer: &(dyn Fn(&str) -> usize + Sync),
    stats: &mut StatsBuilder,
    long: &mut Tally,
    options: &ValidateOptions<'_>,
) {
    use rayon::prelude::*;
    let counts: Vec<(u64, u64)> = pending
        .par_iter()
        .map(|p| {
            p.texts.iter().fold((0, 0), |(prompt, answer), (is_answer, text)| {
                let n = tokenizer(text) as u64;
                if *is_answer {
                    (prompt, answer + n)
                } else {
                    (prompt + n, answer)
                }
            })
        })
        .collect();
    for (p, (prompt, answer)) in pending.drain(..).zip(counts) {
        stats.add_tokens(prompt, answer);
        if p.chars > options.long_example_chars || prompt + answer > options.long_example_tokens {
            long.hit(p.line);
        }
    }
}

/// Reads a whole dataset once, in constant memory, and reports what is in it and what is wrong.
///
/// Fails only when the file as a whole is unusable (not text, not UTF-8, unknown format, empty or
/// without a single record) or on I/O errors; bad records are reported in the returned report.
pub fn validate<R: Read>(reader: R, options: &ValidateOptions<'_>) -> Result<ValidationReport, DatasetError> {
    let mut stream = RecordStream::open(reader)?;
    let mut stats = StatsBuilder::new(options.tokenizer.is_some());
    let (mut errors, mut error_count, mut seen) = (Vec::new(), 0u64, 0u64);
    let (mut long, mut dups, mut empty) = (Tally::default(), Tally::default(), Tally::default());
    let (mut pending, mut pending_bytes) = (Vec::new(), 0usize);
    while let Some((loc, result)) = stream.next()? {
        seen += 1;
        match result {
            Ok(record) => {
                let m = stats.add(&record);
                match options.tokenizer {
                    // Tokenising is far slower than parsing: records wait in a bounded batch and are counted
                    // on every core; the long-example check then needs their counts, so it waits too.
                    Some(tokenizer) => {
                        let texts: Vec<(bool, String)> = record
                            .messages
                            .iter()
                            .map(|(role, text)| (*role == Role::Assistant, text.to_string()))
                            .collect();
                        pending_bytes += texts.iter().map(|(_, t)| t.len()).sum::<usize>();
                        pending.push(Pending { line: loc.line, chars: m.chars, texts });
                        if pending.len() >= TOKEN_BATCH_RECORDS || pending_bytes >= TOKEN_BATCH_BYTES {
                            count_tokens(&mut pending, tokenizer, &mut stats, &mut long, options);
                            pending_bytes = 0;
                        }
                    }
                    None if m.chars > options.long_example_chars => long.hit(loc.line),
                    None => {}
                }
                if m.duplicate {
                    dups.hit(loc.line);
                }
                if m.empty_answer {
                    empty.hit(loc.line);
                }
            }
            Err(fault) => {
                error_count += 1;
                if errors.len() < MAX_ERRORS_KEPT {
                    errors.push(fault.at(loc));
                }
            }
        }
    }
    if let Some(tokenizer) = options.tokenizer {
        count_tokens(&mut pending, tokenizer, &mut stats, &mut long, options);
    }
    if seen == 0 {
        return Err(DatasetError::Empty);
    }
    let (format, shape) = (stream.format(), stream.shape());
    let truncated = stats.tracking_truncated;
    let stats = stats.finish();
    let mut warnings = Vec::new();
    if stats.records < options.min_records {
        warnings.push(Warning::FewRecords { records: stats.records, recommended_minimum: options.min_records });
    }
    if long.count > 0 {
        warnings.push(Warning::LongExamples {
            count: long.count,
            first_line: long.first_line,
            threshold_chars: options.long_example_chars,
        });
    }
    if dups.count > 0 {
        warnings.push(Warning::Duplicates { count: dups.count, first_line: dups.first_line });
    }
    if empty.count > 0 {
        warnings.push(Warning::EmptyAnswers { count: empty.count, first_line: empty.first_line });
    }
    if truncated {
        warnings.push(Warning::DuplicateCheckTruncated { tracked_records: DUPLICATE_TRACKING_LIMIT as u64 });
    }
    Ok(ValidationReport {
        format,
        shape,
        valid: error_count == 0 && stats.records > 0,
        record_count: stats.records,
        stats,
        errors,
        error_count,
        warnings,
    })
}
