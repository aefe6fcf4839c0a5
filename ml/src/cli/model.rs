//! `bonsai model ...` (being written).

/// Model utilities.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {}

pub(crate) fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {}
}
