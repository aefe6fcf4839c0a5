//! `bonsai rekey`: after a key rotation, seals every stored value again with the new sealing key, so that
//! the old keys can be retired.
//!
//! Rotating a key: (1) put the new key first in `BONSAI__ENCRYPTION__KEYS` on every node (they seal with it
//! from then on and still open with the old ones); (2) run `bonsai rekey`; (3) once it reports nothing left
//! under the old key, remove that key. Messages already in the NATS stream keep the key they were sealed with
//! (JetStream messages cannot be rewritten): the platform never reads them back (views are rebuilt from
//! PostgreSQL), but an integration that reads the stream from the start still needs the old key.
//!
//! Event payloads, snapshots, the views' sealed cells and the data keys of erasable values (question text,
//! which is sealed with those keys and so needs no rewriting) are rewritten in place, batch by batch, each row
//! only if it still holds what was read (a row that a node changed meanwhile is counted as skipped and left
//! for the next run). Running it again is harmless; stopping it half-way loses nothing.

use anyhow::Context;
use bonsai_crypto::{sealed, KeyRing};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use sqlx::PgPool;
use std::collections::BTreeMap;

/// Rows read and rewritten per transaction.
pub(crate) const BATCH: i64 = 500;

/// What `rekey` found and did in one table (or one view column).
#[derive(Debug, Default)]
pub struct TableReport {
    pub table: String,
    /// Sealed values found, by the id of the key that sealed them.
    pub found: BTreeMap<String, u64>,
    /// Values sealed again with the sealing key (with `dry_run`: that would be).
    pub resealed: u64,
    /// Rows that changed between reading and rewriting them: left as they were.
    pub skipped: u64,
}

impl std::fmt::Display for TableReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found: Vec<String> = self.found.iter().map(|(key, n)| format!("{key}: {n}")).collect();
        let found = if found.is_empty() { "none".to_owned() } else { found.join(", ") };
        write!(f, "{}: sealed values by key {found}; re-sealed {}", self.table, self.resealed)?;
        if self.skipped > 0 {
            write!(f, "; {} rows changed meanwhile, left for the next run", self.skipped)?;
        }
        Ok(())
    }
}

impl TableReport {
    /// Counts the sealed values of a JSON payload (`text`, of record `aggregate_type`/`aggregate_id`) and seals
    /// again those of older keys: the payload to write and how many values it changes, or `None` when there
    /// is nothing to write (nothing to re-seal, or a dry run, which counts them as re-sealed).
    fn reseal_payload(
        &mut self,
        ring: &KeyRing,
        text: &str,
        aggregate_type: &str,
        aggregate_id: &str,
        dry_run: bool,
    ) -> anyhow::Result<Option<(Value, u64)>> {
        let mut payload: Value = serde_json::from_str(text)?;
        bonsai_crypto::keyring::count_keys(&payload, &mut self.found);
        let n = ring.reseal_all(&mut payload, &sealed::context(aggregate_type, aggregate_id))? as u64;
        if n == 0 || dry_run {
            self.resealed += n;
            return Ok(None);
        }
        Ok(Some((payload, n)))
    }

    /// Records a guarded rewrite of `n` values: done when it changed the row, else skipped (the row changed).
    fn rewritten(&mut self, done: sqlx::postgres::PgQueryResult, n: u64) {
        if done.rows_affected() == 1 {
            self.resealed += n;
        } else {
            self.skipped += 1;
        }
    }
}

/// A view column that holds sealed cells, and the record they are bound to.
struct SealedColumn {
    table: &'static str,
    /// The primary key (a uuid).
    id: &'static str,
    aggregate_type: &'static str,
    /// The column with the id of the aggregate the cell is bound to (a uuid).
    aggregate_id: &'static str,
    column: &'static str,
}

const VIEW_COLUMNS: [SealedColumn; 5] = [
    SealedColumn { table: "users_view", id: "id", aggregate_type: "User", aggregate_id: "id", column: "email" },
    SealedColumn { table: "users_view", id: "id", aggregate_type: "User", aggregate_id: "id", column: "display_name" },
    SealedColumn {
        table: "qa_history_view",
        id: "question_id",
        aggregate_type: "QaSession",
        aggregate_id: "session_id",
        column: "question",
    },
    SealedColumn {
        table: "qa_history_view",
        id: "question_id",
        aggregate_type: "QaSession",
        aggregate_id: "session_id",
        column: "answer",
    },
    // The data keys of erasable values (question text) are sealed with the ring; the values are not.
    SealedColumn { table: "data_keys", id: "id", aggregate_type: "DataKey", aggregate_id: "id", column: "key" },
];

pub(crate) fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} rows  {msg}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

/// Seals every value of the event store, the snapshots and the views that an older key sealed with the
/// installed ring's sealing key (with `dry_run`, only counts them).
pub async fn rekey(pool: &PgPool, dry_run: bool) -> anyhow::Result<Vec<TableReport>> {
    let ring =
        bonsai_crypto::keyring::ring().context("bonsai rekey needs the encryption keys (BONSAI__ENCRYPTION__KEYS)")?;
    let mut reports = vec![events(pool, &ring, dry_run).await?, snapshots(pool, &ring, dry_run).await?];
    for column in &VIEW_COLUMNS {
        reports.push(view_column(pool, &ring, column, dry_run).await?);
    }
    Ok(reports)
}

async fn events(pool: &PgPool, ring: &KeyRing, dry_run: bool) -> anyhow::Result<TableReport> {
    let mut report = TableReport { table: "events".into(), ..Default::default() };
    let written = rewrite_events(pool, "payload::text LIKE '%\"sealed:v1:%'", "events", async |e: &EventText| {
        report
            .reseal_payload(ring, &e.text, &e.aggregate_type, &e.aggregate_id, dry_run)
            .with_context(|| format!("event {} ({} {})", e.position, e.aggregate_type, e.aggregate_id))
    })
    .await?;
    report.resealed += written.values;
    report.skipped += written.skipped;
    Ok(report)
}

/// An event as [`rewrite_events`] hands it over: its payload as stored, as text.
pub(crate) struct EventText {
    pub position: i64,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub text: String,
}

/// What [`rewrite_events`] wrote.
#[derive(Debug, Default)]
pub(crate) struct Rewritten {
    /// Events rewritten.
    pub rows: u64,
    /// Values changed in them.
    pub values: u64,
    /// Events that changed meanwhile, left for the next run.
    pub skipped: u64,
}

/// Pages through the events that `filter` (an SQL condition) selects, [`BATCH`] at a time, each batch in one
/// transaction, with a progress bar: `rewrite` gives an event's new payload and how many values it changed
/// (`None`: leave it), and the event is rewritten only if it still holds what was read.
pub(crate) async fn rewrite_events(
    pool: &PgPool,
    filter: &str,
    what: &str,
    mut rewrite: impl AsyncFnMut(&EventText) -> anyhow::Result<Option<(Value, u64)>>,
) -> anyhow::Result<Rewritten> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM events WHERE {filter}")).fetch_one(pool).await?;
    let bar = bar(total as u64, what);
    let mut written = Rewritten::default();
    let mut after = 0_i64;
    loop {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(&format!(
            "SELECT global_position, aggregate_type, aggregate_id, event_type, payload::text FROM events \
             WHERE global_position > $1 AND {filter} ORDER BY global_position LIMIT $2"
        ))
        .bind(after)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let count = rows.len() as u64;
        let mut tx = pool.begin().await?;
        for (position, aggregate_type, aggregate_id, event_type, text) in rows {
            let event = EventText { position, aggregate_type, aggregate_id, event_type, text };
            let Some((payload, n)) = rewrite(&event).await? else { continue };
            let updated =
                sqlx::query("UPDATE events SET payload = $1 WHERE global_position = $2 AND payload::text = $3")
                    .bind(sqlx::types::Json(&payload))
                    .bind(event.position)
                    .bind(&event.text)
                    .execute(&mut *tx)
                    .await?;
            if updated.rows_affected() == 1 {
                written.rows += 1;
                written.values += n;
            } else {
                written.skipped += 1;
            }
        }
        tx.commit().await?;
        bar.inc(count);
    }
    bar.finish_and_clear();
    Ok(written)
}

async fn snapshots(pool: &PgPool, ring: &KeyRing, dry_run: bool) -> anyhow::Result<TableReport> {
    let mut report = TableReport { table: "snapshots".into(), ..Default::default() };
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE payload::text LIKE '%\"sealed:v1:%'")
        .fetch_one(pool)
        .await?;
    let bar = bar(total as u64, "snapshots");
    let mut after = (String::new(), String::new());
    loop {
        let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
            "SELECT aggregate_type, aggregate_id, last_sequence, payload::text FROM snapshots \
             WHERE (aggregate_type, aggregate_id) > ($1, $2) AND payload::text LIKE '%\"sealed:v1:%' \
             ORDER BY aggregate_type, aggregate_id LIMIT $3",
        )
        .bind(&after.0)
        .bind(&after.1)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = (last.0.clone(), last.1.clone());
        let mut tx = pool.begin().await?;
        for (aggregate_type, aggregate_id, last_sequence, text) in &rows {
            let resealed = report
                .reseal_payload(ring, text, aggregate_type, aggregate_id, dry_run)
                .with_context(|| format!("snapshot of {aggregate_type} {aggregate_id}"))?;
            let Some((payload, n)) = resealed else { continue };
            // Only the snapshot that was read: a newer one (a command ran meanwhile) is not overwritten.
            let updated = sqlx::query(
                "UPDATE snapshots SET payload = $1 WHERE aggregate_type = $2 AND aggregate_id = $3 \
                 AND last_sequence = $4 AND payload::text = $5",
            )
            .bind(sqlx::types::Json(&payload))
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(last_sequence)
            .bind(text)
            .execute(&mut *tx)
            .await?;
            report.rewritten(updated, n);
        }
        tx.commit().await?;
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    Ok(report)
}

async fn view_column(pool: &PgPool, ring: &KeyRing, c: &SealedColumn, dry_run: bool) -> anyhow::Result<TableReport> {
    let SealedColumn { table, id, aggregate_type, aggregate_id, column } = c;
    let mut report = TableReport { table: format!("{table}.{column}"), ..Default::default() };
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} LIKE 'sealed:v1:%'"))
        .fetch_one(pool)
        .await?;
    let bar = bar(total as u64, &report.table);
    let mut after = uuid::Uuid::nil();
    loop {
        let rows: Vec<(uuid::Uuid, uuid::Uuid, String)> = sqlx::query_as(&format!(
            "SELECT {id}, {aggregate_id}, {column} FROM {table} \
             WHERE {id} > $1 AND {column} LIKE 'sealed:v1:%' ORDER BY {id} LIMIT $2"
        ))
        .bind(after)
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let mut tx = pool.begin().await?;
        for (row_id, owner, value) in &rows {
            bonsai_crypto::keyring::count_keys(&Value::String(value.clone()), &mut report.found);
            let context = sealed::context(aggregate_type, &owner.to_string());
            let resealed = ring.reseal(value, &context).with_context(|| format!("{table}.{column} of {row_id}"))?;
            let Some(resealed) = resealed else { continue };
            if dry_run {
                report.resealed += 1;
                continue;
            }
            let updated = sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3"))
                .bind(&resealed)
                .bind(row_id)
                .bind(value)
                .execute(&mut *tx)
                .await?;
            report.rewritten(updated, 1);
        }
        tx.commit().await?;
        bar.inc(rows.len() as u64);
    }
    bar.finish_and_clear();
    Ok(report)
}
