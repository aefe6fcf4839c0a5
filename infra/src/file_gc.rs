//! Garbage collection of the file store: removes stored files that no event names.
//!
//! A file is stored before the command that records it runs, so a refused command (a version added
//! while another request archives the dataset, a crash between the two) leaves a file nothing refers to.
//! Deciding that at upload time would race with a concurrent upload of the same content; instead a
//! sweep removes files that no `DatasetUploaded` / `DatasetVersionAdded` event names and that are older
//! than a grace period (every commit refreshes a file's time, so an upload in flight is never taken).

use crate::files::{FileStore, FileStoreError};
use sqlx::PgPool;
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// What a sweep found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Stored files some event names.
    pub referenced: u64,
    /// Unreferenced files younger than the grace period, left for a later sweep.
    pub young: u64,
    /// Removed (or, in a dry run, to be removed) files, by sha256.
    pub removed: Vec<String>,
    /// Their bytes.
    pub removed_bytes: u64,
    /// Unfinished uploads removed from the staging area.
    pub partials_removed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("reading the event store: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Files(#[from] FileStoreError),
}

/// Every file key the event store names.
async fn referenced_keys(pool: &PgPool) -> Result<HashSet<String>, sqlx::Error> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT payload -> event_type -> 'file' ->> 'sha256' FROM events \
         WHERE aggregate_type = 'Dataset' AND event_type IN ('DatasetUploaded', 'DatasetVersionAdded') \
         AND payload -> event_type -> 'file' ->> 'sha256' IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    Ok(keys.into_iter().collect())
}

/// Removes files no event names that are older than `grace`, and unfinished uploads older than it.
/// With `dry_run`, reports what it would remove and removes nothing.
pub async fn sweep_unreferenced_files(
    pool: &PgPool,
    store: &dyn FileStore,
    grace: Duration,
    dry_run: bool,
) -> Result<SweepReport, SweepError> {
    let cutoff = SystemTime::now().checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
    // Listed before the references are read: a file stored after the listing is not judged at all, and
    // one stored before it and recorded since is in the references.
    let stored = store.list().await?;
    let referenced = referenced_keys(pool).await?;
    let mut report = SweepReport::default();
    for blob in stored {
        if referenced.contains(&blob.sha256) {
            report.referenced += 1;
        } else if blob.modified >= cutoff {
            report.young += 1;
        } else {
            if !dry_run {
                store.remove(&blob.sha256).await?;
            }
            tracing::info!(sha256 = %blob.sha256, bytes = blob.size, dry_run, "removed an unreferenced file");
            report.removed_bytes += blob.size;
            report.removed.push(blob.sha256);
        }
    }
    if !dry_run {
        report.partials_removed = store.remove_stale_partials(cutoff).await?;
    }
    Ok(report)
}
