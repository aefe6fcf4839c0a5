//! Commands of the QaSession aggregate and the decisions they lead to.

use super::*;

#[derive(Debug, Clone)]
pub enum QaCommand {
    /// The caller has checked that `model_id` is deployed.
    AskQuestion {
        session_id: Uuid,
        by: Actor,
        question_id: Uuid,
        model_id: Uuid,
        question: String,
        params: AnswerParams,
        /// The conversation as the caller gives it (`/v1/chat/completions`); none: the session's own.
        conversation: Option<Conversation>,
    },
    /// Ignored unless the question waits for its answer.
    RecordAnswer {
        question_id: Uuid,
        answer: Answer,
    },
    RecordFailure {
        question_id: Uuid,
        code: String,
        message: String,
    },
    /// Deletes one question of the conversation from its history and from the context of later questions.
    /// The caller has checked, in the history view, that the question belongs to this conversation.
    DeleteQuestion {
        by: Actor,
        question_id: Uuid,
    },
    /// Deletes every question asked so far in the conversation; it can go on afterwards, with no context.
    ClearHistory {
        by: Actor,
    },
    /// As `ClearHistory`, by an admin for the owner (a request to erase a person's data).
    ClearHistoryForOwner {
        by: Actor,
    },
}

impl QaSession {
    pub(super) fn decide(&self, command: QaCommand) -> Result<Vec<QaEvent>, QaError> {
        match command {
            QaCommand::AskQuestion { session_id, by, question_id, model_id, question, params, conversation } => {
                if self.owner_id.is_some_and(|owner| owner != by.id) {
                    return Err(QaError::NotFound);
                }
                let question = question.trim().to_owned();
                if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
                    return Err(QaError::InvalidQuestion);
                }
                if !(1..=MAX_NEW_TOKENS).contains(&params.max_new_tokens) {
                    return Err(QaError::InvalidParams("max_new_tokens"));
                }
                if !(0.0..=2.0).contains(&params.temperature) {
                    return Err(QaError::InvalidParams("temperature"));
                }
                if params.top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
                    return Err(QaError::InvalidParams("top_p"));
                }
                if params.stop.len() > 4 || params.stop.iter().any(|s| s.is_empty() || s.chars().count() > 100) {
                    return Err(QaError::InvalidParams("stop"));
                }
                let long = |text: &str| text.chars().count() > MAX_QUESTION_CHARS;
                if let Some(c) = &conversation {
                    let bad_turn = |t: &Turn| t.question.trim().is_empty() || long(&t.question) || long(&t.answer);
                    if c.turns.len() > MAX_TURNS
                        || c.turns.iter().any(bad_turn)
                        || c.system.as_deref().is_some_and(long)
                    {
                        return Err(QaError::InvalidConversation);
                    }
                }
                // Question ids are chosen by the server (UUID v7): only a pending one can come twice (a retry).
                if self.pending(question_id) {
                    return Err(QaError::DuplicateQuestion);
                }
                Ok(vec![QaEvent::QuestionAsked {
                    session_id: self.id.unwrap_or(session_id),
                    question_id,
                    user_id: by.id,
                    model_id,
                    question,
                    params,
                    system: conversation.as_ref().and_then(|c| c.system.clone()),
                    context: match conversation {
                        // The turns the caller sent are this question's: sealed with its data key, erased with it.
                        Some(c) => c.turns.into_iter().map(|t| Turn { question_id: Some(question_id), ..t }).collect(),
                        None => self.recent.clone(),
                    },
                }])
            }
            QaCommand::RecordAnswer { question_id, answer } if self.pending(question_id) => {
                Ok(vec![QaEvent::QuestionAnswered { question_id, answer }])
            }
            QaCommand::RecordFailure { question_id, code, message } if self.pending(question_id) => {
                Ok(vec![QaEvent::QuestionFailed { question_id, code, message }])
            }
            QaCommand::RecordAnswer { .. } | QaCommand::RecordFailure { .. } => Ok(vec![]),
            QaCommand::DeleteQuestion { by, question_id } => {
                self.owned_by(by)?;
                Ok(vec![QaEvent::QuestionDeleted { question_id }])
            }
            QaCommand::ClearHistory { by } => {
                self.owned_by(by)?;
                Ok(vec![QaEvent::HistoryCleared {}])
            }
            QaCommand::ClearHistoryForOwner { by } => match self.owner_id {
                Some(_) if by.role.can(crate::Permission::ManageUsers) => Ok(vec![QaEvent::HistoryCleared {}]),
                _ => Err(QaError::NotFound),
            },
        }
    }
}
