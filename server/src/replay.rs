//! `bonsai replay`: rebuilds views from the event store.

use bonsai_projections::{rebuild, Projection};
use sqlx::PgPool;
use std::sync::Arc;

/// Rebuilds the named projections (all of them with `None`); returns (name, events replayed).
pub async fn replay(pool: &PgPool, only: Option<&str>) -> anyhow::Result<Vec<(String, u64)>> {
    let all = bonsai_projections::all();
    let chosen: Vec<Arc<dyn Projection>> = match only {
        None => all,
        Some(name) => {
            let found: Vec<_> = all.into_iter().filter(|p| p.name() == name).collect();
            if found.is_empty() {
                let names: Vec<_> = bonsai_projections::all().iter().map(|p| p.name()).collect();
                anyhow::bail!("unknown projection '{name}' (known: {})", names.join(", "));
            }
            found
        }
    };
    let mut done = Vec::new();
    for projection in chosen {
        let n = rebuild(pool, projection.as_ref()).await?;
        done.push((projection.name().to_owned(), n));
    }
    Ok(done)
}
