//! The decode loop of a [`super::BatchEngine`], on its own thread: takes submissions into the fair line,
//! frees the slots of cancelled rows, prefills waiting requests into free slots, runs one decode step over the
//! busy rows, and samples, streams and ends each row on its own.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use super::graph::BatchGraph;
use super::queue::FairQueue;
use super::stop::{Released, StopText};
use super::{Completion, Counters, Piece, Submission};
use crate::engine::stream::TextStream;
use crate::engine::{EngineError, FinishReason, Generation, GenerationStats};
use crate::model::{GenerateOptions, Sampler};
use crate::tokenizer::TextTokenizer;

/// Fixed settings of the loop.
pub(crate) struct LoopConfig {
    pub(crate) slots: usize,
    pub(crate) slot_tokens: usize,
    pub(crate) prefills_per_step: usize,
    pub(crate) stop_tokens: Vec<u32>,
}

/// A request holding a slot.
struct Row {
    request: Submission,
    sampler: Sampler,
    stream: TextStream,
    stop: StopText,
    /// Prompt and completion so far (the repetition penalty's history).
    history: Vec<u32>,
    /// Completion tokens.
    tokens: Vec<u32>,
    /// Tokens in the slot's KV row.
    fed: usize,
    /// The token the next decode step feeds.
    next: u32,
    admitted: Instant,
    admission: u64,
    first_token_at: Option<Instant>,
    peak_batch: usize,
}

/// How a row ended.
enum End {
    Finished(FinishReason),
    Failed(EngineError),
}

pub(crate) struct Loop {
    graph: BatchGraph,
    config: LoopConfig,
    tokenizer: Arc<TextTokenizer>,
    inbox: Receiver<Submission>,
    counters: Arc<Counters>,
    queue: FairQueue<Submission>,
    slots: Vec<Option<Row>>,
    admissions: u64,
}

impl Loop {
    pub(crate) fn new(
        graph: BatchGraph,
        config: LoopConfig,
        tokenizer: Arc<TextTokenizer>,
        inbox: Receiver<Submission>,
        counters: Arc<Counters>,
    ) -> Self {
        let slots = (0..config.slots).map(|_| None).collect();
        Loop { graph, config, tokenizer, inbox, counters, queue: FairQueue::default(), slots, admissions: 0 }
    }

    /// Runs until the engine is dropped (or, its channel closed, until the work left is done).
    pub(crate) fn run(mut self) {
        loop {
            if self.counters.closing.load(Ordering::Acquire) {
                self.close();
                return;
            }
            let idle = self.queue.is_empty() && self.slots.iter().all(Option::is_none);
            if idle {
                // Nothing to do: sleep until a request comes (or the engine goes).
                match self.inbox.recv() {
                    Ok(submission) => self.queue.push(&submission.user.clone(), submission),
                    Err(_) => return,
                }
            }
            self.drop_abandoned();
            // After the cancel checks: a request submitted before another was cancelled is in line before
            // that cancel frees a slot.
            while let Ok(submission) = self.inbox.try_recv() {
                self.queue.push(&submission.user.clone(), submission);
            }
            self.admit();
            self.step();
        }
    }

    /// Ends every request in flight: the engine is going away.
    fn close(&mut self) {
        while let Some(request) = self.queue.pop() {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = request.result.send(Err(EngineError::Closed));
        }
        for slot in 0..self.slots.len() {
            self.end(slot, End::Failed(EngineError::Closed));
        }
        while let Ok(request) = self.inbox.try_recv() {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = request.result.send(Err(EngineError::Closed));
        }
    }

    /// Cancelled or abandoned requests leave the line and their slots.
    fn drop_abandoned(&mut self) {
        for request in self.queue.drain_where(Submission::abandoned) {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let _ = request.result.send(Err(EngineError::Cancelled));
        }
        for slot in 0..self.slots.len() {
            let Some(row) = self.slots[slot].as_ref() else { continue };
            if row.request.result.is_closed() {
                // Nobody waits for it any more.
                self.end(slot, End::Failed(EngineError::Cancelled));
            } else if row.request.cancel.is_cancelled() {
                // Cancelled by its caller, who gets what was generated so far.
                self.end(slot, End::Finished(FinishReason::Cancelled));
            }
        }
    }

    /// Prefills waiting requests into free slots (the lowest first, so the decode batch stays short): all
    /// that fit while nothing decodes, else `prefills_per_step`.
    fn admit(&mut self) {
        let busy = self.slots.iter().any(Option::is_some);
        let budget = if busy { self.config.prefills_per_step } else { self.config.slots };
        for _ in 0..budget {
            let Some(slot) = self.slots.iter().position(Option::is_none) else { return };
            let Some(request) = self.queue.pop() else { return };
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            let params = &request.params;
            let sampler = Sampler::new(&GenerateOptions {
                max_new_tokens: params.max_new_tokens,
                temperature: params.temperature,
                top_k: params.top_k,
                top_p: params.top_p,
                repetition_penalty: params.repetition_penalty,
                seed: params.seed,
                stop_tokens: self.config.stop_tokens.clone(),
            });
            let row = Row {
                stop: StopText::new(&params.stop),
                sampler,
                stream: TextStream::default(),
                history: request.prompt.clone(),
                tokens: Vec::new(),
                fed: 0,
                next: 0,
                admitted: Instant::now(),
                admission: self.admissions,
                first_token_at: None,
                peak_batch: 1,
                request,
            };
            tracing::debug!(id = row.request.id, slot, admission = self.admissions, "admitted");
            self.admissions += 1;
            self.counters.active.fetch_add(1, Ordering::AcqRel);
            self.slots[slot] = Some(row);
            let prompt = self.slots[slot].as_ref().map_or(&[][..], |r| &r.request.prompt[..]);
            let result = self.graph.prefill(slot, prompt);
            let end = match result {
                Ok(logits) => {
                    let Some(row) = self.slots[slot].as_mut() else { continue };
                    row.fed = row.request.prompt.len();
                    advance(row, logits, &self.config, &self.tokenizer)
                }
                Err(e) => Some(End::Failed(e)),
            };
            if let Some(end) = end {
                self.end(slot, end);
            }
        }
    }

    /// One decode step over the busy rows (and the free slots below the highest busy one, as dummy rows).
    fn step(&mut self) {
        // Checked again right before the step: a row cancelled during the prefills above leaves now.
        self.drop_abandoned();
        let Some(last) = self.slots.iter().rposition(Option::is_some) else { return };
        let rows = last + 1;
        let busy = self.slots[..rows].iter().filter(|s| s.is_some()).count();
        let (mut tokens, mut lengths) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
        for slot in &mut self.slots[..rows] {
            match slot {
                Some(row) => {
                    row.peak_batch = row.peak_batch.max(busy);
                    tokens.push(row.next);
                    lengths.push(row.fed);
                }
                // A free slot: one token at position 0 of its own row, which its next request overwrites.
                None => {
                    tokens.push(0);
                    lengths.push(0);
                }
            }
        }
        self.counters.steps.fetch_add(1, Ordering::Relaxed);
        self.counters.rows.fetch_add(busy as u64, Ordering::Relaxed);
        let vocab = self.graph.vocab();
        let mut ends = Vec::new();
        match self.graph.decode(&tokens, &lengths) {
            Ok(logits) => {
                for (slot, (entry, logits)) in
                    self.slots[..rows].iter_mut().zip(logits.chunks_exact_mut(vocab)).enumerate()
                {
                    if let Some(row) = entry.as_mut() {
                        row.fed += 1;
                        if let Some(end) = advance(row, logits, &self.config, &self.tokenizer) {
                            ends.push((slot, end));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rows, "decode step failed; ending its rows");
                let message = e.to_string();
                for slot in 0..rows {
                    ends.push((slot, End::Failed(EngineError::Session(message.clone()))));
                }
            }
        }
        for (slot, end) in ends {
            self.end(slot, end);
        }
    }

    /// Frees `slot` and sends its request's outcome.
    fn end(&mut self, slot: usize, end: End) {
        let Some(mut row) = self.slots[slot].take() else { return };
        self.counters.active.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!(id = row.request.id, slot, tokens = row.tokens.len(), "left the batch");
        let outcome = match end {
            End::Failed(e) => Err(e),
            End::Finished(reason) => finish(&mut row, reason, &self.tokenizer),
        };
        let _ = row.request.result.send(outcome);
    }
}

/// Picks a row's next token from its logits, streams it, and says whether the row ends (the same decisions, in
/// the same order, as [`crate::engine::Engine::generate`]).
fn advance(row: &mut Row, logits: &mut [f32], config: &LoopConfig, tokenizer: &TextTokenizer) -> Option<End> {
    let params = &row.request.params;
    if row.tokens.len() >= params.max_new_tokens {
        return Some(End::Finished(FinishReason::Length));
    }
    let next = row.sampler.sample(logits, &row.history);
    row.first_token_at.get_or_insert_with(Instant::now);
    if !params.ignore_eos && config.stop_tokens.contains(&next) {
        return Some(End::Finished(FinishReason::Stop));
    }
    row.tokens.push(next);
    row.history.push(next);
    let piece = match row.stream.push(next, |ids| tokenizer.decode(ids, true)) {
        Ok(piece) => piece,
        Err(e) => return Some(End::Failed(e.into())),
    };
    let (text, stopped) = if row.stop.active() {
        match row.stop.push(&piece) {
            Released::More(text) => (text, false),
            Released::Stopped(text) => (text, true),
        }
    } else {
        (piece, false)
    };
    // A closed receiver only means nobody reads the stream; the result may still be awaited.
    let _ = row.request.pieces.send(Piece { token: Some(next), text });
    if stopped {
        return Some(End::Finished(FinishReason::Stop));
    }
    if row.tokens.len() == params.max_new_tokens || row.fed >= config.slot_tokens {
        return Some(End::Finished(FinishReason::Length));
    }
    row.next = next;
    None
}

/// The finished row's [`Completion`], after streaming what was held back.
fn finish(row: &mut Row, reason: FinishReason, tokenizer: &TextTokenizer) -> Result<Completion, EngineError> {
    let mut reason = reason;
    let mut rest = row.stream.flush(|ids| tokenizer.decode(ids, true))?;
    if row.stop.active() && reason != FinishReason::Stop {
        rest = match row.stop.push(&rest) {
            Released::More(text) => text + &row.stop.flush(),
            Released::Stopped(text) => {
                reason = FinishReason::Stop;
                text
            }
        };
    }
    if !rest.is_empty() {
        let _ = row.request.pieces.send(Piece { token: None, text: rest });
    }
    // With stop texts, the answer is exactly what was streamed (cut before the stop text).
    let text = if row.stop.active() { row.stop.text().to_string() } else { tokenizer.decode(&row.tokens, true)? };
    let end = Instant::now();
    let submitted = row.request.submitted;
    let first = row.first_token_at.unwrap_or(end);
    let decode_secs = (end - first).as_secs_f64();
    let n = row.tokens.len();
    let tokens_per_second = if n > 1 && decode_secs > 0.0 { (n - 1) as f64 / decode_secs } else { 0.0 };
    Ok(Completion {
        generation: Generation {
            text,
            tokens: std::mem::take(&mut row.tokens),
            finish_reason: reason,
            stats: GenerationStats {
                prompt_tokens: row.request.prompt.len(),
                completion_tokens: n,
                time_to_first_token: first - submitted,
                total_time: end - submitted,
                tokens_per_second,
            },
        },
        queued: row.admitted - submitted,
        admission: row.admission,
        peak_batch: row.peak_batch,
    })
}
