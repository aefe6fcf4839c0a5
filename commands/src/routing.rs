//! Which model answers: the default model and aliases are decided by events on the Model aggregate
//! (`ModelMadeDefault`, `ModelAliasSet`), and read here straight from the event store, so a question sees a
//! move as soon as it is committed (no view lag) and a move is a single event (atomic). Rollback finds the
//! version of a name deployed before the current one the same way.

use crate::{CommandBus, CommandError};
use bonsai_domain::model::ModelStatus;
use uuid::Uuid;

fn store(e: sqlx::Error) -> CommandError {
    CommandError::Store(e.to_string())
}

/// Every alias event: `alias`, `aggregate_id`, `event_type`, `global_position`. The latest for an alias says
/// where it points (set) or that it points nowhere (removed).
const ALIAS_EVENTS: &str =
    "SELECT COALESCE(payload->'ModelAliasSet'->>'alias', payload->'ModelAliasRemoved'->>'alias') \
     AS alias, aggregate_id, event_type, global_position FROM events WHERE aggregate_type = 'Model' \
     AND event_type IN ('ModelAliasSet', 'ModelAliasRemoved')";

fn ids(rows: Vec<String>) -> Vec<Uuid> {
    rows.iter().filter_map(|id| id.parse().ok()).collect()
}

impl CommandBus {
    /// The default model: the one most recently made default among those deployed and ready now.
    pub async fn default_model(&self) -> Result<Option<Uuid>, CommandError> {
        let candidates: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'Model' AND event_type = 'ModelMadeDefault' \
             GROUP BY aggregate_id ORDER BY max(global_position) DESC LIMIT 50",
        )
        .fetch_all(self.pool())
        .await
        .map_err(store)?;
        for id in ids(candidates) {
            let model = self.load::<bonsai_domain::model::Model>(id).await?;
            if model.deployed && model.status == ModelStatus::Ready {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The model `alias` names (set on it last, and not removed since), if any.
    pub async fn alias_target(&self, alias: &str) -> Result<Option<Uuid>, CommandError> {
        let last: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT aggregate_id, event_type FROM ({ALIAS_EVENTS}) a WHERE alias = $1 \
             ORDER BY global_position DESC LIMIT 1"
        ))
        .bind(alias)
        .fetch_optional(self.pool())
        .await
        .map_err(store)?;
        Ok(last.filter(|(_, kind)| kind == "ModelAliasSet").and_then(|(id, _)| id.parse().ok()))
    }

    /// Every alias with the model it names, by alias.
    pub async fn aliases(&self) -> Result<Vec<(String, Uuid)>, CommandError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(&format!(
            "SELECT DISTINCT ON (alias) alias, aggregate_id, event_type FROM ({ALIAS_EVENTS}) a \
             ORDER BY alias, global_position DESC"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(store)?;
        Ok(rows
            .into_iter()
            .filter(|(_, _, kind)| kind == "ModelAliasSet")
            .filter_map(|(alias, id, _)| Some((alias, id.parse().ok()?)))
            .collect())
    }

    /// Of `siblings` (the other versions of a model's name), the one deployed last, if any was.
    pub async fn last_deployed_of(&self, siblings: &[Uuid]) -> Result<Option<Uuid>, CommandError> {
        let siblings: Vec<String> = siblings.iter().map(Uuid::to_string).collect();
        let id: Option<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'Model' AND event_type = 'ModelDeployed' \
             AND aggregate_id = ANY($1) ORDER BY global_position DESC LIMIT 1",
        )
        .bind(&siblings)
        .fetch_optional(self.pool())
        .await
        .map_err(store)?;
        Ok(id.and_then(|id| id.parse().ok()))
    }
}
