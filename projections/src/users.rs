//! The users view: who exists, their profile, role and whether they may sign in.

use crate::{Projection, ProjectionError, StoredEvent};
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

    async fn apply(&self, conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
        if event.aggregate_type != "User" {
            return Ok(());
        }
        let (decoded, id): (UserEvent, Uuid) = event.decode()?;
        let at = event.recorded_at;
        let version = event.sequence;
        let update = |sql: &'static str| sqlx::query(sql).bind(id).bind(version).bind(at);
        match decoded {
            UserEvent::UserRegistered { username, email, display_name, role, .. } => {
                sqlx::query(
                    "INSERT INTO users_view (id, username, email, display_name, role, is_active, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, true, $6, $7, $7)",
                )
                .bind(id)
                .bind(username.as_str())
                .bind(email.as_str())
                .bind(display_name)
                .bind(role.as_str())
                .bind(version)
                .bind(at)
                .execute(conn)
                .await?;
            }
            UserEvent::ProfileUpdated { email, display_name } => {
                update(
                    "UPDATE users_view SET version = $2, updated_at = $3, \
                     email = COALESCE($4, email), display_name = COALESCE($5, display_name) WHERE id = $1",
                )
                .bind(email.map(String::from))
                .bind(display_name)
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
            | UserEvent::SessionEnded { .. } => {
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

const COLUMNS: &str = "id, username, email, display_name, role, is_active, version, created_at, updated_at";

pub async fn find<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<UserRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM users_view WHERE id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(db).await?)
}

/// Whether another user already uses `email` (as far as the view knows).
pub async fn email_taken<'e>(
    db: impl PgExecutor<'e>,
    email: &str,
    except: Option<Uuid>,
) -> Result<bool, ProjectionError> {
    Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users_view WHERE email = $1 AND id IS DISTINCT FROM $2)")
        .bind(email)
        .bind(except)
        .fetch_one(db)
        .await?)
}

/// A page of users in creation order, with the total count.
pub async fn list(db: &sqlx::PgPool, page: i64, page_size: i64) -> Result<(Vec<UserRow>, i64), ProjectionError> {
    let sql = format!(
        "SELECT {COLUMNS}, count(*) OVER () AS total FROM users_view ORDER BY created_at, id LIMIT $1 OFFSET $2"
    );
    let rows: Vec<crate::Counted<_>> =
        sqlx::query_as(&sql).bind(page_size).bind((page - 1) * page_size).fetch_all(db).await?;
    crate::paged(rows, page, || sqlx::query_scalar("SELECT count(*) FROM users_view").fetch_one(db)).await
}

/// Every row, in id order (rebuild comparisons, exports).
pub async fn all_rows(db: &sqlx::PgPool) -> Result<Vec<UserRow>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM users_view ORDER BY id");
    Ok(sqlx::query_as(&sql).fetch_all(db).await?)
}
