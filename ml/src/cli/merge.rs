//! `bonsai merge`: fold a PEFT LoRA adapter into its base model, writing a plain Hugging Face folder.

use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `bonsai merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Base model folder.
    #[arg(long)]
    pub base: PathBuf,
    /// Adapter folder (adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Output folder for the merged model.
    #[arg(long)]
    pub out: PathBuf,
}

pub(crate) fn run(args: MergeArgs) -> anyhow::Result<()> {
    crate::train::merge_folders(&args.base, &args.adapter, &args.out)
        .with_context(|| format!("merging {} into {}", args.adapter.display(), args.base.display()))?;
    println!("merged model written to {}", args.out.display());
    Ok(())
}
