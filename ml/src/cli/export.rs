//! `bonsai export` (being written).

/// Arguments of `bonsai export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {}

pub(crate) fn run(_args: ExportArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bonsai export` is not available in this build yet")
}
