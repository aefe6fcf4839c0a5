//! `bonsai model init-tiny`: a small random Llama model (fixed seed) with a byte-level BPE tokenizer trained
//! on a corpus, written as a Hugging Face folder. Tests and the demo use it; nothing is downloaded.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, TokenizerBuilder,
};

use crate::config::{Architecture, ModelConfig};
use crate::error::{read_file, write_json, MlError, Result};
use crate::model::{DecoderLayer, Linear, LlamaModel};
use crate::template::CHATML_TEMPLATE;
use crate::weights::Tensor;

/// Special tokens of tiny models, ids 0, 1, 2 (SmolLM2's layout): padding/unknown, BOS/turn start, EOS/turn end.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The text a tokenizer is trained on when no corpus is given.
const BUILTIN_CORPUS: &str = include_str!("tiny_corpus.txt");

/// Shape and seed of a tiny model. The default is the benchmark "tiny" configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TinySpec {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Model vocabulary; the trained tokenizer has at most this many tokens.
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub seed: u64,
}

impl Default for TinySpec {
    fn default() -> Self {
        TinySpec {
            hidden_size: 256,
            intermediate_size: 688,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 4,
            vocab_size: 2000,
            max_position_embeddings: 1024,
            seed: 0,
        }
    }
}

impl TinySpec {
    /// The model config this spec describes.
    pub fn config(&self) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.num_hidden_layers,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.hidden_size / self.num_attention_heads,
            max_position_embeddings: self.max_position_embeddings,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            mlp_bias: false,
            sliding_window: None,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            pad_token_id: Some(0),
        }
    }
}

/// Creates a tiny model folder in `out_dir`: config, random weights, tokenizer trained on `corpus` (a JSONL,
/// JSON, CSV or text file; every string in it is training text) or on a built-in text.
pub fn init_tiny(out_dir: &Path, spec: &TinySpec, corpus: Option<&Path>) -> Result<LlamaModel> {
    if spec.num_attention_heads == 0
        || !spec.hidden_size.is_multiple_of(spec.num_attention_heads)
        || spec.vocab_size < 256 + SPECIAL_TOKENS.len()
    {
        return Err(MlError::Config(
            "tiny model: hidden size must split into heads and the vocabulary hold all 256 bytes".into(),
        ));
    }
    let texts = match corpus {
        Some(path) => corpus_texts(path)?,
        None => BUILTIN_CORPUS.lines().map(str::to_owned).collect(),
    };
    let tokenizer = train_tokenizer(&texts, spec.vocab_size)?;
    let config = ModelConfig::from_json(spec.config().to_json())?;
    let model = random_model(config, spec.seed);
    model.save(out_dir)?;
    let tok_path = out_dir.join("tokenizer.json");
    tokenizer.save(&tok_path, false).map_err(|e| MlError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    write_json(
        &out_dir.join("tokenizer_config.json"),
        &json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": spec.max_position_embeddings,
            "add_bos_token": false,
            "bos_token": SPECIAL_TOKENS[1], "eos_token": SPECIAL_TOKENS[2],
            "unk_token": SPECIAL_TOKENS[0], "pad_token": SPECIAL_TOKENS[0],
            "additional_special_tokens": [SPECIAL_TOKENS[1], SPECIAL_TOKENS[2]],
            "chat_template": CHATML_TEMPLATE,
        }),
    )?;
    write_json(
        &out_dir.join("generation_config.json"),
        &json!({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": false}),
    )?;
    Ok(model)
}

/// A model with transformers' initialisation: N(0, 0.02) matrices, unit norms, zero biases.
pub fn random_model(config: ModelConfig, seed: u64) -> LlamaModel {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut matrix = |rows: usize, cols: usize| Tensor {
        shape: vec![rows, cols],
        data: (0..rows * cols).map(|_| 0.02 * standard_normal(&mut rng)).collect(),
    };
    let (h, i, q, kv, v) =
        (config.hidden_size, config.intermediate_size, config.q_dim(), config.kv_dim(), config.vocab_size);
    let embed_tokens = matrix(v, h);
    let layers = (0..config.num_hidden_layers)
        .map(|_| {
            let mut lin = |out: usize, inp: usize, bias: bool| Linear {
                weight: matrix(out, inp),
                bias: bias.then(|| vec![0.0; out]),
            };
            DecoderLayer {
                input_layernorm: vec![1.0; h],
                q_proj: lin(q, h, config.qkv_bias),
                k_proj: lin(kv, h, config.qkv_bias),
                v_proj: lin(kv, h, config.qkv_bias),
                o_proj: lin(h, q, config.o_bias),
                post_attention_layernorm: vec![1.0; h],
                gate_proj: lin(i, h, config.mlp_bias),
                up_proj: lin(i, h, config.mlp_bias),
                down_proj: lin(h, i, config.mlp_bias),
            }
        })
        .collect();
    let lm_head = (!config.tie_word_embeddings).then(|| matrix(v, h));
    LlamaModel { config, embed_tokens, layers, norm: vec![1.0; h], lm_head }
}

/// Box-Muller: rand 0.8 has no normal distribution without rand_distr.
fn standard_normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Trains a byte-level BPE tokenizer (GPT-2 style, every byte in the alphabet so any text encodes) with
/// the ChatML special tokens at ids 0, 1, 2.
pub fn train_tokenizer(texts: &[String], vocab_size: usize) -> Result<tokenizers::Tokenizer> {
    let err = |e: tokenizers::Error| MlError::Tokenizer(e.to_string());
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(1)
        .show_progress(false)
        .special_tokens(SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
            .with_post_processor(Some(ByteLevel::default().trim_offsets(false).into()))
            .with_decoder(Some(ByteLevel::default().into()))
            .build()
            .map_err(err)?;
    tok.train(&mut trainer, texts.iter()).map_err(err)?;
    let mut tok: tokenizers::Tokenizer = tok.into();
    // Registered as added tokens so they are matched whole in text and skipped when decoding.
    tok.add_special_tokens(&SPECIAL_TOKENS.map(|t| AddedToken::from(t, true)));
    Ok(tok)
}

/// Every string in a corpus file: JSON strings of a JSONL or JSON file, cells of a CSV file, or lines of
/// anything else.
pub fn corpus_texts(path: &Path) -> Result<Vec<String>> {
    let bytes = read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let mut out = Vec::new();
    match ext.as_str() {
        "jsonl" | "ndjson" => {
            for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line)
                    .map_err(|e| MlError::Input(format!("{} line {}: {e}", path.display(), n + 1)))?;
                collect_strings(&v, &mut out);
            }
        }
        "json" => {
            let v: Value = serde_json::from_str(&text).map_err(|e| MlError::json(path, e))?;
            collect_strings(&v, &mut out);
        }
        "csv" => out.extend(text.lines().flat_map(|l| l.split(',')).map(|c| c.trim_matches('"').to_string())),
        _ => out.extend(text.lines().map(str::to_owned)),
    }
    out.retain(|s| !s.trim().is_empty());
    if out.is_empty() {
        return Err(MlError::Input(format!("{} holds no text to train a tokenizer on", path.display())));
    }
    Ok(out)
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(o) => o.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}
