//! `bonsai model ...`: import a GGUF checkpoint, create a tiny random model.

use std::path::PathBuf;

use anyhow::Context;

use crate::gguf::import_gguf;
use crate::tiny::{init_tiny, TinySpec};

/// Model utilities.
#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Dequantise a GGUF Llama-family checkpoint into a Hugging Face folder (f32 safetensors, tokenizer.json
    /// rebuilt from the GGUF vocabulary, chat template kept).
    ImportGguf {
        /// The `.gguf` file.
        file: PathBuf,
        /// Folder to write (created if needed).
        out_dir: PathBuf,
    },
    /// Create a small random Llama model with a BPE tokenizer trained on a corpus (fixed seed).
    InitTiny(InitTinyArgs),
}

/// Arguments of `bonsai model init-tiny`; defaults are the benchmark's tiny configuration.
#[derive(Debug, clap::Args)]
pub struct InitTinyArgs {
    /// Folder to write (created if needed).
    pub out_dir: PathBuf,
    /// Text to train the tokenizer on: JSONL, JSON, CSV or plain text. A built-in text when absent.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = 688)]
    pub intermediate_size: usize,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than --heads); defaults to --heads.
    #[arg(long)]
    pub kv_heads: Option<usize>,
    #[arg(long, default_value_t = 2000)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 1024)]
    pub max_position_embeddings: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub(crate) fn run(cmd: ModelCommand) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::ImportGguf { file, out_dir } => {
            let r = import_gguf(&file, &out_dir)
                .with_context(|| format!("importing {} into {}", file.display(), out_dir.display()))?;
            let types: Vec<String> = r.types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
            eprintln!(
                "imported {} ({} tensors: {}; {:.1}M parameters, vocabulary {}) into {}",
                r.architecture,
                r.tensors,
                types.join(", "),
                r.parameters as f64 / 1e6,
                r.vocab_size,
                out_dir.display()
            );
        }
        ModelCommand::InitTiny(a) => {
            let spec = TinySpec {
                hidden_size: a.hidden_size,
                intermediate_size: a.intermediate_size,
                num_hidden_layers: a.layers,
                num_attention_heads: a.heads,
                num_key_value_heads: a.kv_heads.unwrap_or(a.heads),
                vocab_size: a.vocab_size,
                max_position_embeddings: a.max_position_embeddings,
                seed: a.seed,
            };
            let model = init_tiny(&a.out_dir, &spec, a.corpus.as_deref())
                .with_context(|| format!("creating a tiny model in {}", a.out_dir.display()))?;
            let params: usize = model.to_weights().iter().map(|(_, t)| t.len()).sum();
            eprintln!(
                "tiny model ({:.2}M parameters, seed {}) written to {}",
                params as f64 / 1e6,
                a.seed,
                a.out_dir.display()
            );
        }
    }
    Ok(())
}
