//! `bonsai train` (being written).

/// Arguments of `bonsai train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {}

pub(crate) fn run(_args: TrainArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bonsai train` is not available in this build yet")
}
