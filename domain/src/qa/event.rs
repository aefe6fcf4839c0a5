//! Events of the QaSession aggregate (JSON documented in docs/events.md).

use super::{Answer, AnswerParams, Turn};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum QaEvent {
    /// `context`: the conversation's last answered turns, oldest first, which the answer takes into account.
    QuestionAsked {
        session_id: Uuid,
        question_id: Uuid,
        user_id: Uuid,
        model_id: Uuid,
        question: String,
        params: AnswerParams,
        /// The system message the caller gave, if any (sealed with the question's data key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system: Option<String>,
        context: Vec<Turn>,
    },
    QuestionAnswered {
        question_id: Uuid,
        answer: Answer,
    },
    /// `code`: `model_unavailable` (not deployed or not loadable any more), `generation_failed`.
    QuestionFailed {
        question_id: Uuid,
        code: String,
        message: String,
    },
    /// The owner deleted the question (and its answer) from the conversation's history; a pending one is
    /// no longer answered, and it leaves the context of later questions. The event store keeps the
    /// original `QuestionAsked` for the audit log.
    QuestionDeleted {
        question_id: Uuid,
    },
    /// The owner deleted every question asked so far in the conversation.
    HistoryCleared {},
}

impl DomainEvent for QaEvent {
    fn event_type(&self) -> String {
        match self {
            QaEvent::QuestionAsked { .. } => "QuestionAsked",
            QaEvent::QuestionAnswered { .. } => "QuestionAnswered",
            QaEvent::QuestionFailed { .. } => "QuestionFailed",
            QaEvent::QuestionDeleted { .. } => "QuestionDeleted",
            QaEvent::HistoryCleared { .. } => "HistoryCleared",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
