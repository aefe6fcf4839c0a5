//! The one normalised record type, and the file format and record shape it came from.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

/// Container format, detected from content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// One JSON array of objects (serialised as `"json"`).
    #[serde(rename = "json")]
    JsonArray,
    /// Comma- or tab-separated with a header row.
    Csv,
}

/// Record shape, detected from the first valid record (JSON) or the header (CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `question`/`answer`, `prompt`/`response` or `prompt`/`completion` (OpenAI's legacy fine-tuning format).
    QuestionAnswer,
    /// `instruction`, optional `input`, `output`.
    Alpaca,
    /// OpenAI fine-tuning `messages`.
    Chat,
}

/// Who says a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions that frame the conversation.
    System,
    /// The prompt side.
    User,
    /// The side the model learns to produce.
    Assistant,
}

impl Role {
    pub(crate) fn parse(s: &str) -> Option<Role> {
        match s {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }
}

/// One turn of a normalised record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// Who says it.
    pub role: Role,
    /// What is said.
    pub content: String,
}

/// A normalised training example: every shape becomes a list of messages.
///
/// Question/answer becomes `[user: question, assistant: answer]`; Alpaca becomes
/// `[user: instruction, or instruction + "\n\n" + input, assistant: output]`; chat is kept as is.
/// A valid record always holds at least one assistant message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// The turns, in order.
    pub messages: Vec<Message>,
}

impl Record {
    /// A question/answer pair as a record.
    pub fn question_answer(question: impl Into<String>, answer: impl Into<String>) -> Record {
        Record {
            messages: vec![
                Message { role: Role::User, content: question.into() },
                Message { role: Role::Assistant, content: answer.into() },
            ],
        }
    }
}

/// The borrowed form of [`Record`] that validation works on, so a record costs no string copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordRef<'a> {
    pub(crate) shape: Shape,
    pub(crate) messages: Vec<(Role, Cow<'a, str>)>,
}

impl RecordRef<'_> {
    pub(crate) fn into_owned(self) -> Record {
        Record {
            messages: self
                .messages
                .into_iter()
                .map(|(role, content)| Message { role, content: content.into_owned() })
                .collect(),
        }
    }

    /// A stable 64-bit hash of the normalised content (shape excluded), for duplicate detection.
    pub(crate) fn content_hash(&self) -> u64 {
        let mut h = ContentHasher(0);
        for (role, content) in &self.messages {
            role.hash(&mut h);
            content.as_ref().hash(&mut h);
        }
        h.finish()
    }
}

/// A wyhash-style hasher: 16 bytes per step through a 64x64->128-bit multiply, folded.
///
/// Why not `DefaultHasher`: SipHash was a tenth of validation time, and this input is not adversarial
/// in a way that matters (a forced collision only miscounts a duplicate warning). Fixed constants keep
/// the hash stable across runs and processes.
struct ContentHasher(u64);

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;

fn mum(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

fn le64(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

impl Hasher for ContentHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(16);
        for c in &mut chunks {
            self.0 = mum(le64(&c[..8]) ^ P0 ^ self.0, le64(&c[8..]) ^ P1);
        }
        let rest = chunks.remainder();
        let (a, b) = rest.split_at(rest.len().min(8));
        self.0 = mum(le64(a) ^ P0 ^ self.0, le64(b) ^ P1 ^ rest.len() as u64);
    }

    fn finish(&self) -> u64 {
        mum(self.0 ^ P2, self.0 ^ P1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_tells_records_apart_and_ignores_shape() {
        let rec = |shape, q: &str, a: &str| RecordRef {
            shape,
            messages: vec![(Role::User, Cow::Owned(q.to_owned())), (Role::Assistant, Cow::Owned(a.to_owned()))],
        };
        let base = rec(Shape::QuestionAnswer, "what is 2+2?", "4").content_hash();
        assert_eq!(base, rec(Shape::Alpaca, "what is 2+2?", "4").content_hash());
        assert_ne!(base, rec(Shape::QuestionAnswer, "what is 2+2", "?4").content_hash());
        assert_ne!(base, rec(Shape::QuestionAnswer, "what is 2+3?", "4").content_hash());
        let mut seen = std::collections::HashSet::new();
        for i in 0..100_000 {
            assert!(seen.insert(rec(Shape::Chat, &format!("q{i}"), "same answer").content_hash()));
        }
    }
}
