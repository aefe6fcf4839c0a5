//! The question/answer history: every question with its answer (or failure), per user and conversation.

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_crypto::sealed;
use bonsai_domain::qa::QaEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

pub struct QaProjection;

#[async_trait::async_trait]
impl Projection for QaProjection {
    fn name(&self) -> &'static str {
        "qa"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["qa_history_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["QaSession"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, session): (QaEvent, uuid::Uuid) = event.decode()?;
        let at = event.recorded_at;
        let context = sealed::context("QaSession", &event.aggregate_id);
        let query = match decoded {
            QaEvent::QuestionAsked { session_id, question_id, user_id, model_id, question, .. } => sqlx::query(
                "INSERT INTO qa_history_view (question_id, session_id, user_id, model_id, question, status, asked_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6)",
            )
            .bind(question_id)
            .bind(session_id)
            .bind(user_id)
            .bind(model_id)
            .bind(bonsai_crypto::keyring::seal(&question, &context))
            .bind(at),
            QaEvent::QuestionAnswered { question_id, answer: a } => sqlx::query(
                "UPDATE qa_history_view SET status = 'answered', answer = $2, response_ms = $3, prompt_tokens = $4, \
                 completion_tokens = $5, finish_reason = $6, cached = $7, answered_at = $8 WHERE question_id = $1",
            )
            .bind(question_id)
            .bind(bonsai_crypto::keyring::seal(&a.answer, &context))
            .bind(a.response_ms as i64)
            .bind(a.prompt_tokens as i32)
            .bind(a.completion_tokens as i32)
            .bind(a.finish_reason)
            .bind(a.cached)
            .bind(at),
            QaEvent::QuestionFailed { question_id, code, message } => sqlx::query(
                "UPDATE qa_history_view SET status = 'failed', error_code = $2, error_message = $3, answered_at = $4 \
                 WHERE question_id = $1",
            )
            .bind(question_id)
            .bind(code)
            .bind(message)
            .bind(at),
            // Deleting drops the questions from the history. Their data keys were erased with the event's
            // append (`bonsai_commands::data_keys::Erasure`), which made their text unreadable wherever it was
            // copied (events, snapshots, the NATS stream) before this view heard of it.
            QaEvent::QuestionDeleted { question_id } => {
                sqlx::query("DELETE FROM qa_history_view WHERE question_id = $1").bind(question_id)
            }
            QaEvent::HistoryCleared {} => {
                // The view holds exactly the questions asked before the clearing: events apply in order.
                sqlx::query("DELETE FROM qa_history_view WHERE session_id = $1").bind(session)
            }
        };
        query.execute(conn).await?;
        Ok(())
    }
}

/// A row of the history.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct QuestionRow {
    pub question_id: Uuid,
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub model_id: Uuid,
    pub question: String,
    pub answer: Option<String>,
    pub status: String,
    pub response_ms: Option<i64>,
    pub prompt_tokens: Option<i32>,
    pub completion_tokens: Option<i32>,
    pub finish_reason: Option<String>,
    pub cached: Option<bool>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub asked_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
}

impl QuestionRow {
    /// The row with its sealed cells (question, answer) opened.
    fn opened(mut self) -> Result<Self, ProjectionError> {
        let context = sealed::context("QaSession", &self.session_id.to_string());
        let open = |value: &str| ProjectionError::open_cell("qa_history_view", &context, value);
        self.question = open(&self.question)?;
        self.answer = self.answer.as_deref().map(open).transpose()?;
        Ok(self)
    }
}

const COLUMNS: &str = "question_id, session_id, user_id, model_id, question, answer, status, response_ms, \
     prompt_tokens, completion_tokens, finish_reason, cached, error_code, error_message, asked_at, answered_at";

/// The conversations of `user` that hold questions.
pub async fn sessions_of(db: &PgPool, user: Uuid) -> Result<Vec<Uuid>, ProjectionError> {
    Ok(sqlx::query_scalar("SELECT DISTINCT session_id FROM qa_history_view WHERE user_id = $1 ORDER BY session_id")
        .bind(user)
        .fetch_all(db)
        .await?)
}

pub async fn find<'e>(db: impl PgExecutor<'e>, question_id: Uuid) -> Result<Option<QuestionRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM qa_history_view WHERE question_id = $1");
    let row: Option<QuestionRow> = sqlx::query_as(&sql).bind(question_id).fetch_optional(db).await?;
    row.map(QuestionRow::opened).transpose()
}

/// A page of `user`'s questions (of one conversation when `session` is given), newest first, with the total.
pub async fn history(
    db: &PgPool,
    user: Uuid,
    session: Option<Uuid>,
    page: i64,
    page_size: i64,
) -> Result<(Vec<QuestionRow>, i64), ProjectionError> {
    page_of(db, user, session, "DESC", page, page_size).await
}

/// A page of one of `user`'s conversations, oldest first (a transcript), with the total.
pub async fn conversation(
    db: &PgPool,
    user: Uuid,
    session: Uuid,
    page: i64,
    page_size: i64,
) -> Result<(Vec<QuestionRow>, i64), ProjectionError> {
    page_of(db, user, Some(session), "ASC", page, page_size).await
}

async fn page_of(
    db: &PgPool,
    user: Uuid,
    session: Option<Uuid>,
    order: &str,
    page: i64,
    page_size: i64,
) -> Result<(Vec<QuestionRow>, i64), ProjectionError> {
    const FILTER: &str = "user_id = $1 AND ($2::uuid IS NULL OR session_id = $2)";
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM qa_history_view WHERE {FILTER} \
         ORDER BY asked_at {order}, question_id {order} LIMIT $3 OFFSET $4"
    );
    let rows: Vec<crate::Counted<QuestionRow>> = sqlx::query_as(&sql)
        .bind(user)
        .bind(session)
        .bind(page_size)
        .bind((page - 1) * page_size)
        .fetch_all(db)
        .await?;
    let count = format!("SELECT count(*) FROM qa_history_view WHERE {FILTER}");
    let (rows, total) =
        crate::paged(rows, page, || sqlx::query_scalar(&count).bind(user).bind(session).fetch_one(db)).await?;
    Ok((rows.into_iter().map(QuestionRow::opened).collect::<Result<_, _>>()?, total))
}

/// Every row, in key order (rebuild comparisons).
pub async fn all_rows(db: &PgPool) -> Result<Vec<QuestionRow>, ProjectionError> {
    let rows: Vec<QuestionRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM qa_history_view ORDER BY question_id")).fetch_all(db).await?;
    rows.into_iter().map(QuestionRow::opened).collect()
}
