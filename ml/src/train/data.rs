//! Training examples: conversations rendered through the model's chat template and tokenised, with a mask
//! that marks the assistant's tokens (the only ones the loss counts); and the batches cut from them.
//!
//! Datasets are read by `bonsai-datasets` (question/answer, Alpaca and chat records, in JSONL, JSON or CSV),
//! which normalises every record into a list of messages.

use super::error::TrainError;
use crate::template::{ChatMessage, ChatTemplate};
use crate::tokenizer::TextTokenizer;
use bonsai_datasets::{Record, Role};
use std::path::Path;

/// One tokenised conversation; `train[p]` says whether token `p` is an assistant token to learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub tokens: Vec<u32>,
    pub train: Vec<bool>,
    /// The record it came from: its position in the data file, counting from 0.
    pub source: usize,
}

impl Example {
    /// Number of tokens the loss counts (a token counts when it is predicted, i.e. not the first).
    pub fn counted(&self) -> usize {
        self.train.iter().skip(1).filter(|t| **t).count()
    }
}

/// Reads every valid record of a dataset file; invalid records are an error naming the first one.
pub fn read_records(path: &Path) -> Result<Vec<Record>, TrainError> {
    let file = std::fs::File::open(path).map_err(|e| TrainError::io(path, e))?;
    let reader = bonsai_datasets::records(std::io::BufReader::new(file))
        .map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for r in reader {
        out.push(r.map_err(|e| TrainError::Data(format!("{}: {e}", path.display())))?);
    }
    if out.is_empty() {
        return Err(TrainError::Data(format!("{}: no records", path.display())));
    }
    Ok(out)
}

fn role(r: Role) -> &'static str {
    match r {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// Renders and tokenises one record. Each assistant message's span is found by rendering the conversation
/// up to the turn (with the generation prompt) and through it; tokens overlapping that byte span, the
/// template's end-of-turn marker included, are trained on. Truncates to `max_len` tokens.
pub fn encode(
    record: &Record,
    template: &ChatTemplate,
    tokenizer: &TextTokenizer,
    max_len: usize,
) -> Result<Example, TrainError> {
    let msgs: Vec<ChatMessage> = record.messages.iter().map(|m| ChatMessage::new(role(m.role), &m.content)).collect();
    let text = template.render(&msgs, false)?;
    let mut spans = Vec::new();
    for (k, m) in record.messages.iter().enumerate() {
        if m.role != Role::Assistant {
            continue;
        }
        let start = template.render(&msgs[..k], true)?.len();
        let end = template.render(&msgs[..=k], false)?.len();
        if !text.starts_with(&template.render(&msgs[..=k], false)?) {
            return Err(TrainError::Data("the chat template does not render conversations incrementally".into()));
        }
        spans.push((start, end));
    }
    let enc =
        tokenizer.inner().encode(text.as_str(), false).map_err(|e| TrainError::Data(format!("tokenizing: {e}")))?;
    let mut tokens = enc.get_ids().to_vec();
    let mut train: Vec<bool> =
        enc.get_offsets().iter().map(|&(s, e)| spans.iter().any(|&(a, b)| s < b && e > a && e > s)).collect();
    tokens.truncate(max_len);
    train.truncate(max_len);
    Ok(Example { tokens, train, source: 0 })
}

/// One padded batch: `tokens`, next-token `targets` and per-position loss weights, all `[batch * seq]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub batch: usize,
    pub seq: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    /// Number of positions whose target counts.
    pub counted: usize,
    /// The examples' own tokens (padding not counted).
    pub real: usize,
    mask: Vec<bool>,
}

impl Batch {
    /// Packs examples right-padded with `pad` to the longest one.
    pub fn new(examples: &[&Example], pad: u32) -> Batch {
        let seq = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(1).max(1);
        let n = examples.len() * seq;
        let (mut tokens, mut targets, mut mask) = (vec![pad; n], vec![pad; n], vec![false; n]);
        for (b, e) in examples.iter().enumerate() {
            let row = b * seq;
            tokens[row..row + e.tokens.len()].copy_from_slice(&e.tokens);
            for p in 1..e.tokens.len() {
                targets[row + p - 1] = e.tokens[p];
                mask[row + p - 1] = e.train[p];
            }
        }
        let counted = mask.iter().filter(|m| **m).count();
        let real = examples.iter().map(|e| e.tokens.len()).sum();
        Batch { batch: examples.len(), seq, tokens, targets, counted, real, mask }
    }

    /// Loss weights giving each counted position `1 / denominator` (the tokens of the whole optimiser step,
    /// so accumulated micro-batches average like one large batch).
    pub fn weights(&self, denominator: usize) -> Vec<f32> {
        let w = 1.0 / denominator.max(1) as f32;
        self.mask.iter().map(|&m| if m { w } else { 0.0 }).collect()
    }
}
