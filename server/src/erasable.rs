//! `bonsai make-erasable`: brings question text stored before it was erasable (plain, or sealed with the key
//! ring) under the data keys of its questions, and erases the text of every question deleted before, so that
//! deleting history erases it for old conversations as for new ones (see `bonsai_crypto::data_keys`).
//!
//! In order: (1) the data keys of questions already deleted (`QuestionDeleted`, or asked before a
//! `HistoryCleared` of their conversation) are recorded as erased; (2) every `QuestionAsked` /
//! `QuestionAnswered` event with text not yet erasable is rewritten with that text sealed with its question's
//! key (created as needed), which for an erased question writes `[erased]`; (3) the `QaSession` snapshots are
//! dropped when (1) or (2) changed anything (written before, they may hold text of deleted questions under
//! the key ring alone; the store rebuilds a conversation's from its events and writes it again at its next
//! question).
//!
//! Rows are rewritten batch by batch, each only if it still holds what was read; running it again is harmless.

use crate::rekey::{rewrite_events, EventText};
use anyhow::Context;
use bonsai_crypto::sealed;
use serde_json::Value;
use sqlx::PgPool;

/// What `make-erasable` did (with `dry_run`: would do).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Questions deleted before whose keys it erased.
    pub erased: u64,
    /// Events whose text it sealed with data keys.
    pub events: u64,
    /// Text fields in them.
    pub fields: u64,
    /// Rows that changed meanwhile, left for the next run.
    pub skipped: u64,
    /// QaSession snapshots dropped.
    pub snapshots: u64,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "deleted questions erased: {}; events made erasable: {} ({} text fields); snapshots dropped: {}",
            self.erased, self.events, self.fields, self.snapshots
        )?;
        if self.skipped > 0 {
            write!(f, "; {} rows changed meanwhile: run it again", self.skipped)?;
        }
        Ok(())
    }
}

/// The questions deleted so far (one by one, or by clearing their conversation), with their conversations.
const DELETED: &str = "SELECT (payload->'QuestionDeleted'->>'question_id')::uuid AS id, aggregate_id FROM events \
       WHERE aggregate_type = 'QaSession' AND event_type = 'QuestionDeleted' \
     UNION SELECT (a.payload->'QuestionAsked'->>'question_id')::uuid, a.aggregate_id FROM events a \
       JOIN events c ON c.aggregate_type = 'QaSession' AND c.aggregate_id = a.aggregate_id \
        AND c.event_type = 'HistoryCleared' AND c.sequence > a.sequence \
       WHERE a.aggregate_type = 'QaSession' AND a.event_type = 'QuestionAsked'";

/// The events that hold question text.
const CANDIDATES: &str = "aggregate_type = 'QaSession' AND event_type IN ('QuestionAsked', 'QuestionAnswered')";

pub async fn make_erasable(pool: &PgPool, dry_run: bool) -> anyhow::Result<Report> {
    let erased = if dry_run {
        let sql = format!("SELECT count(*) FROM ({DELETED}) d LEFT JOIN data_keys k ON k.id = d.id WHERE k.key IS NOT NULL OR k.id IS NULL");
        sqlx::query_scalar::<_, i64>(&sql).fetch_one(pool).await? as u64
    } else {
        let sql = format!(
            "INSERT INTO data_keys (id, owner, key, erased_at) SELECT id, 'QaSession/' || aggregate_id, NULL, now() \
             FROM ({DELETED}) d ON CONFLICT (id) DO UPDATE SET key = NULL, erased_at = now() \
             WHERE data_keys.key IS NOT NULL"
        );
        sqlx::query(&sql).execute(pool).await?.rows_affected()
    };
    let mut report = Report { erased, ..Default::default() };

    let written = rewrite_events(pool, CANDIDATES, "question text", async |e: &EventText| {
        let mut payload: Value = serde_json::from_str(&e.text)?;
        let pending = sealed::not_erasable("QaSession", &e.event_type, &payload);
        if pending == 0 {
            return Ok(None);
        }
        if dry_run {
            report.events += 1;
            report.fields += pending as u64;
            return Ok(None);
        }
        let owner = sealed::context("QaSession", &e.aggregate_id);
        let ids = sealed::event_data_keys("QaSession", &e.event_type, &payload);
        bonsai_commands::data_keys::prepare(pool, &owner, ids).await?;
        let n = sealed::make_erasable("QaSession", &e.aggregate_id, &e.event_type, &mut payload)
            .with_context(|| format!("event {} (QaSession {})", e.position, e.aggregate_id))?;
        Ok((n > 0).then_some((payload, n as u64)))
    })
    .await?;
    report.events += written.rows;
    report.fields += written.values;
    report.skipped = written.skipped;

    // Snapshots written before may hold what was just erased or made erasable (a run with nothing to do keeps them).
    if report.erased + report.events > 0 {
        report.snapshots = if dry_run {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM snapshots WHERE aggregate_type = 'QaSession'")
                .fetch_one(pool)
                .await? as u64
        } else {
            sqlx::query("DELETE FROM snapshots WHERE aggregate_type = 'QaSession'").execute(pool).await?.rows_affected()
        };
    }
    Ok(report)
}
