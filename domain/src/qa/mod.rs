//! The QaSession aggregate: a conversation of one user with deployed models. Each question is answered by
//! the serving worker; the question event carries the conversation so far (the last answered turns), so
//! the worker needs no read model and a follow-up question is answered in context.

mod command;
mod event;
#[cfg(test)]
mod tests;

pub use command::QaCommand;
pub use event::QaEvent;

use crate::Actor;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 4000;
/// Answered turns sent with a question as its context.
pub const CONTEXT_TURNS: usize = 4;
/// Most tokens an answer may ask for.
pub const MAX_NEW_TOKENS: u32 = 1024;

/// Most earlier turns an explicit conversation may carry.
pub const MAX_TURNS: usize = 64;

/// A conversation given whole by the caller (an OpenAI-style `messages` list), instead of the one the
/// session remembers: the system message and the earlier turns the answer takes into account.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub system: Option<String>,
    pub turns: Vec<Turn>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QaError {
    #[error("no such conversation")]
    NotFound,
    #[error("the question must be 1 to {MAX_QUESTION_CHARS} characters")]
    InvalidQuestion,
    /// The field that is out of range: `max_new_tokens` (1 to 1024), `temperature` (0 to 2), `top_p` (over 0,
    /// at most 1), `stop` (at most 4 texts of 1 to 100 characters).
    #[error(
        "{0} is out of range: max_new_tokens must be 1 to {MAX_NEW_TOKENS}, temperature 0 to 2, top_p over 0 and \
         at most 1, stop at most 4 texts of 1 to 100 characters"
    )]
    InvalidParams(&'static str),
    /// An explicit conversation that is too long or has an empty turn.
    #[error("the conversation must have at most {MAX_TURNS} turns of 1 to {MAX_QUESTION_CHARS} characters each, and a system message of at most {MAX_QUESTION_CHARS}")]
    InvalidConversation,
    #[error("a question with this id was already asked")]
    DuplicateQuestion,
}

/// One earlier question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// The question this turn answered (absent in events recorded before history could be deleted); for the
    /// turns a caller sends with a question (an explicit conversation, `/v1`), that question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<Uuid>,
    pub question: String,
    pub answer: String,
}

/// How to answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerParams {
    pub max_new_tokens: u32,
    /// 0 is greedy (deterministic) decoding.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass (0 < top_p <= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// The sampler's seed (sampling only); without it, one derived from the question id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Up to 4 texts that end the answer where they appear (not included in it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

impl Default for AnswerParams {
    fn default() -> Self {
        Self { max_new_tokens: 128, temperature: 0.0, top_p: None, seed: None, stop: Vec::new() }
    }
}

/// What the serving worker reports for an answered question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub answer: String,
    pub response_ms: u64,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `stop` (an end token) or `length` (max_new_tokens reached).
    pub finish_reason: String,
    /// Served from the answer cache (same model, question and settings, no earlier turns).
    pub cached: bool,
}

/// A question waiting for its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingQuestion {
    pub question_id: Uuid,
    pub question: String,
}

/// The state the QaSession aggregate decides on. Bounded whatever the conversation's length: the pending
/// questions and the last answered turns (the context of the next question); the rest is in the history view.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct QaSession {
    pub id: Option<Uuid>,
    pub owner_id: Option<Uuid>,
    pub pending: Vec<PendingQuestion>,
    /// The last [`CONTEXT_TURNS`] answered turns, oldest first.
    pub recent: Vec<Turn>,
}

impl QaSession {
    fn pending(&self, question_id: Uuid) -> bool {
        self.pending.iter().any(|q| q.question_id == question_id)
    }

    /// Only the owner may change an existing conversation; to anyone else it does not exist.
    fn owned_by(&self, by: Actor) -> Result<(), QaError> {
        match self.owner_id {
            Some(owner) if owner == by.id => Ok(()),
            _ => Err(QaError::NotFound),
        }
    }
}

impl Aggregate for QaSession {
    const TYPE: &'static str = "QaSession";
    type Command = QaCommand;
    type Event = QaEvent;
    type Error = QaError;
    type Services = ();

    async fn handle(&mut self, command: Self::Command, _: &(), sink: &EventSink<Self>) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            QaEvent::QuestionAsked { session_id, question_id, user_id, question, .. } => {
                self.id = Some(session_id);
                self.owner_id = Some(user_id);
                self.pending.push(PendingQuestion { question_id, question });
            }
            QaEvent::QuestionAnswered { question_id, answer } => {
                if let Some(at) = self.pending.iter().position(|q| q.question_id == question_id) {
                    let asked = self.pending.remove(at);
                    self.recent.push(Turn {
                        question_id: Some(question_id),
                        question: asked.question,
                        answer: answer.answer,
                    });
                    if self.recent.len() > CONTEXT_TURNS {
                        self.recent.remove(0);
                    }
                }
            }
            QaEvent::QuestionFailed { question_id, .. } => self.pending.retain(|q| q.question_id != question_id),
            QaEvent::QuestionDeleted { question_id } => {
                self.pending.retain(|q| q.question_id != question_id);
                self.recent.retain(|t| t.question_id != Some(question_id));
            }
            QaEvent::HistoryCleared {} => {
                self.pending.clear();
                self.recent.clear();
            }
        }
    }
}
