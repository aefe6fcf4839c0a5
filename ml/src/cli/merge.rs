//! `bonsai merge` (being written).

/// Arguments of `bonsai merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {}

pub(crate) fn run(_args: MergeArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bonsai merge` is not available in this build yet")
}
