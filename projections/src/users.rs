//! The users view: who exists, their profile, role and whether they may sign in. E-mail addresses and
//! display names are stored sealed when encryption at rest is on (`bonsai_crypto::sealed`) and opened by
//! the queries here.

use crate::{Projection, ProjectionError, StoredEvent};
use bonsai_crypto::sealed;
use bonsai_domain::user::UserEvent;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

pub struct UsersProjection;

#[async_trait::async_trait]
impl Projection for UsersProjection {
    fn name(&self) -> &'static str {
        "users"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["users_view"]
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["User"]
    }

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        let (decoded, id): (UserEvent, Uuid) = event.decode()?;
        let at = event.recorded_at;
        let version = event.sequence;
        let update = |sql: &'static str| sqlx::query(sql).bind(id).bind(version).bind(at);
        let context = sealed::context("User", &event.aggregate_id);
        let seal = |plain: &str| bonsai_crypto::keyring::seal(plain, &context);
        match decoded {
            UserEvent::UserRegistered { username, email, display_name, role, .. } => {
                sqlx::query(
                    "INSERT INTO users_view (id, username, email, display_name, role, is_active, version, created_at, \
                     updated_at, email_digest) VALUES ($1, $2, $3, $4, $5, true, $6, $7, $7, $8)",
                )
                .bind(id)
                .bind(username.as_str())
                .bind(seal(email.as_str()))
                .bind(seal(&display_name))
                .bind(role.as_str())
                .bind(version)
                .bind(at)
                .bind(bonsai_crypto::keyring::digest(email.as_str()))
                .execute(conn)
                .await?;
            }
            UserEvent::ProfileUpdated { email, display_name } => {
                let digest = email.as_ref().and_then(|e| bonsai_crypto::keyring::digest(e.as_str()));
                update(
                    "UPDATE users_view SET version = $2, updated_at = $3, email = COALESCE($4, email), \
                     display_name = COALESCE($5, display_name), \
                     email_digest = CASE WHEN $4 IS NULL THEN email_digest ELSE $6 END WHERE id = $1",
                )
                .bind(email.map(|e| seal(e.as_str())))
                .bind(display_name.map(|d| seal(&d)))
                .bind(digest)
                .execute(conn)
                .await?;
            }
            UserEvent::RoleChanged { role } => {
                update("UPDATE users_view SET version = $2, updated_at = $3, role = $4 WHERE id = $1")
                    .bind(role.as_str())
                    .execute(conn)
                    .await?;
            }
            UserEvent::UserDeactivated | UserEvent::UserActivated => {
                let active = matches!(decoded, UserEvent::UserActivated);
                update("UPDATE users_view SET version = $2, updated_at = $3, is_active = $4 WHERE id = $1")
                    .bind(active)
                    .execute(conn)
                    .await?;
            }
            UserEvent::PasswordChanged { .. }
            | UserEvent::SessionStarted { .. }
            | UserEvent::SessionRefreshed { .. }
            | UserEvent::SessionEnded { .. }
            | UserEvent::ApiKeyCreated { .. }
            | UserEvent::ApiKeyRevoked { .. } => {
                update("UPDATE users_view SET version = $2, updated_at = GREATEST(updated_at, $3) WHERE id = $1")
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A row of the users view.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub username: String,
    pub email: String,
    pub display_name: String,
    pub role: String,
    pub is_active: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserRow {
    /// The row with its sealed cells (e-mail, display name) opened.
    fn opened(mut self) -> Result<Self, ProjectionError> {
        let context = sealed::context("User", &self.id.to_string());
        let open = |value: &str| ProjectionError::open_cell("users_view", &context, value);
        self.email = open(&self.email)?;
        self.display_name = open(&self.display_name)?;
        Ok(self)
    }
}

const COLUMNS: &str = "id, username, email, display_name, role, is_active, version, created_at, updated_at";

pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<UserRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM users_view WHERE id = $1");
    let row: Option<UserRow> = sqlx::query_as(&sql).bind(id).fetch_optional(db).await?;
    row.map(UserRow::opened).transpose()
}

/// Whether another user already uses `email` (as far as the view knows): stored plain, or sealed with
/// the same digest.
pub async fn email_taken<'e>(
    db: impl PgExecutor<'e>,
    email: &str,
    except: Option<Uuid>,
) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM users_view WHERE (email = $1 OR email_digest = $3) AND id IS DISTINCT FROM $2)",
    )
    .bind(email)
    .bind(except)
    .bind(bonsai_crypto::keyring::digest(email))
    .fetch_one(db)
    .await?)
}

/// A page of users in creation order, with the total count.
pub async fn list(db: &sqlx::PgPool, page: i64, page_size: i64) -> Result<(Vec<UserRow>, i64), ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM users_view ORDER BY created_at, id LIMIT $1 OFFSET $2"
    );
    let rows: Vec<crate::Counted<UserRow>> =
        sqlx::query_as(&sql).bind(page_size).bind((page - 1) * page_size).fetch_all(db).await?;
    let (rows, total) =
        crate::paged(rows, page, || sqlx::query_scalar("SELECT count(*) FROM users_view").fetch_one(db)).await?;
    Ok((rows.into_iter().map(UserRow::opened).collect::<Result<_, _>>()?, total))
}

/// Every row, in id order (rebuild comparisons, exports).
pub async fn all_rows(db: &sqlx::PgPool) -> Result<Vec<UserRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM users_view ORDER BY id");
    let rows: Vec<UserRow> = sqlx::query_as(&sql).fetch_all(db).await?;
    rows.into_iter().map(UserRow::opened).collect()
}
