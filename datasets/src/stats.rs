//! Dataset statistics, accumulated one borrowed record at a time.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::record::{RecordRef, Role};
use crate::DUPLICATE_TRACKING_LIMIT;

/// Min, mean and max of a per-record quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Smallest value.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Largest value.
    pub max: u64,
    /// Sum over all records (for weighting, or tokens per epoch).
    pub total: u64,
}

/// What the valid records of a dataset hold.
///
/// "Prompt" is every system and user message of a record, "answer" every assistant message; lengths
/// are Unicode scalar values (`char`s), not bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Valid records.
    pub records: u64,
    /// Valid records whose normalised content equals an earlier record's.
    pub duplicates: u64,
    /// Valid records whose answer is empty or whitespace.
    pub empty_answers: u64,
    /// Prompt length in characters; `None` with no valid records.
    pub prompt_chars: Option<Summary>,
    /// Answer length in characters.
    pub answer_chars: Option<Summary>,
    /// Prompt length in tokens; `None` unless a tokenizer was given.
    pub prompt_tokens: Option<Summary>,
    /// Answer length in tokens; `None` unless a tokenizer was given.
    pub answer_tokens: Option<Summary>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Acc {
    n: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Acc {
    fn add(&mut self, v: u64) {
        self.min = if self.n == 0 { v } else { self.min.min(v) };
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }

    fn finish(&self) -> Option<Summary> {
        (self.n > 0).then(|| Summary {
            min: self.min,
            mean: self.sum as f64 / self.n as f64,
            max: self.max,
            total: self.sum,
        })
    }
}

/// The content hashes are already uniform, so the set uses them as they are instead of hashing again.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// What one record measured, for the caller's warnings (tokens are counted apart, see [`StatsBuilder::add_tokens`]).
pub(crate) struct Measured {
    pub(crate) chars: u64,
    pub(crate) duplicate: bool,
    pub(crate) empty_answer: bool,
}

pub(crate) struct StatsBuilder {
    counts_tokens: bool,
    records: u64,
    duplicates: u64,
    empty_answers: u64,
    prompt_chars: Acc,
    answer_chars: Acc,
    prompt_tokens: Acc,
    answer_tokens: Acc,
    /// Hashes of records seen, up to [`DUPLICATE_TRACKING_LIMIT`]: 8 bytes and change per record.
    seen: HashSet<u64, BuildHasherDefault<PassThrough>>,
    pub(crate) tracking_truncated: bool,
}

impl StatsBuilder {
    /// With `counts_tokens`, every record's token counts must be given to [`StatsBuilder::add_tokens`].
    pub(crate) fn new(counts_tokens: bool) -> Self {
        StatsBuilder {
            counts_tokens,
            records: 0,
            duplicates: 0,
            empty_answers: 0,
            prompt_chars: Acc::default(),
            answer_chars: Acc::default(),
            prompt_tokens: Acc::default(),
            answer_tokens: Acc::default(),
            seen: HashSet::default(),
            tracking_truncated: false,
        }
    }

    pub(crate) fn add(&mut self, record: &RecordRef<'_>) -> Measured {
        let (mut prompt, mut answer) = (0u64, 0u64);
        let mut answer_blank = true;
        for (role, content) in &record.messages {
            let chars = content.chars().count() as u64;
            if *role == Role::Assistant {
                answer += chars;
                answer_blank &= content.trim().is_empty();
            } else {
                prompt += chars;
            }
        }
        self.records += 1;
        self.prompt_chars.add(prompt);
        self.answer_chars.add(answer);
        if answer_blank {
            self.empty_answers += 1;
        }
        let hash = record.content_hash();
        let duplicate = if self.seen.contains(&hash) {
            true
        } else {
            if self.seen.len() < DUPLICATE_TRACKING_LIMIT {
                self.seen.insert(hash);
            } else {
                self.tracking_truncated = true;
            }
            false
        };
        if duplicate {
            self.duplicates += 1;
        }
        Measured { chars: prompt + answer, duplicate, empty_answer: answer_blank }
    }

    /// One record's prompt and answer token counts.
    pub(crate) fn add_tokens(&mut self, prompt: u64, answer: u64) {
        self.prompt_tokens.add(prompt);
        self.answer_tokens.add(answer);
    }

    pub(crate) fn finish(self) -> Stats {
        Stats {
            records: self.records,
            duplicates: self.duplicates,
            empty_answers: self.empty_answers,
            prompt_chars: self.prompt_chars.finish(),
            answer_chars: self.answer_chars.finish(),
            prompt_tokens: if self.counts_tokens { self.prompt_tokens.finish() } else { None },
            answer_tokens: if self.counts_tokens { self.answer_tokens.finish() } else { None },
        }
    }
}
