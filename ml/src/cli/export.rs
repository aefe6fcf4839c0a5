//! `bonsai export-onnx <model-dir> <out-dir>`: writes a self-contained ONNX export folder (graph, external
//! weights, tokenizer, chat template, generation settings) of a Hugging Face style model folder.

use std::path::PathBuf;

use anyhow::Context;

use crate::onnx;

/// Arguments of `bonsai export-onnx`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Model folder: config.json, *.safetensors, tokenizer.json, tokenizer_config.json.
    pub model_dir: PathBuf,
    /// Output folder (created if missing; files in it are overwritten).
    pub out_dir: PathBuf,
    /// Output logits for every position (for scoring texts) instead of the last one only.
    #[arg(long)]
    pub all_logits: bool,
    /// Standard ONNX ops only (portable to any ONNX runtime) instead of ONNX Runtime's fused
    /// GroupQueryAttention contrib op.
    #[arg(long)]
    pub standard_ops: bool,
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<()> {
    let options = onnx::ExportOptions { last_token_logits: !args.all_logits, fused_attention: !args.standard_ops };
    let report = onnx::export_dir_with(&args.model_dir, &args.out_dir, &options)
        .with_context(|| format!("exporting {} to {}", args.model_dir.display(), args.out_dir.display()))?;
    let mb = |b: u64| b as f64 / 1e6;
    eprintln!(
        "exported {} in {:.2}s: model.onnx {:.2} MB, model.onnx.data {:.2} MB",
        args.out_dir.display(),
        report.seconds,
        mb(report.model_bytes),
        mb(report.data_bytes)
    );
    for file in &report.files {
        eprintln!("  {}", file.display());
    }
    Ok(())
}
