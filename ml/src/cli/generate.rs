//! `bonsai generate` (being written).

/// Arguments of `bonsai generate`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {}

pub(crate) fn run(_args: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("`bonsai generate` is not available in this build yet")
}
