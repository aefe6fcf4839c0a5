//! Rebuilds a Hugging Face `tokenizer.json` from GGUF tokenizer metadata (`tokenizer.ggml.*`), as
//! transformers' GGUF loader does:
//! - byte-level BPE (`tokenizer.ggml.model = gpt2`: GPT-2, SmolLM, Qwen2, Llama 3, ...), the pre-tokenizer
//!   chosen from `tokenizer.ggml.pre` the way llama.cpp chooses its split regex;
//! - SentencePiece BPE (`llama`: Llama 2, Mistral, TinyLlama, ...), with byte fallback, the merges recovered
//!   from the token scores (transformers' `generate_merges`).

use serde_json::{json, Map, Value};

use super::reader::{GgufFile, MetaValue};
use crate::error::{MlError, Result};

/// ggml token types that are special (control) or added by the user.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split regex (llama.cpp's `llama-bpe`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The rebuilt tokenizer files.
pub(super) struct RebuiltTokenizer {
    pub(super) tokenizer_json: Value,
    pub(super) tokens: Vec<String>,
    pub(super) special_ids: Vec<u32>,
}

fn strings(v: Option<&MetaValue>, key: &str) -> Result<Vec<String>> {
    v.and_then(MetaValue::as_array)
        .ok_or_else(|| MlError::Gguf(format!("{key} is missing")))?
        .iter()
        .map(|s| s.as_str().map(str::to_owned).ok_or_else(|| MlError::Gguf(format!("{key} holds a non-string"))))
        .collect()
}

/// The `tokenizer.json` value the importer writes for a GGUF file.
pub fn tokenizer_json(g: &GgufFile) -> Result<Value> {
    rebuild(g).map(|t| t.tokenizer_json)
}

/// Builds `tokenizer.json` for a GGUF with a byte-level or SentencePiece BPE vocabulary.
pub(super) fn rebuild(g: &GgufFile) -> Result<RebuiltTokenizer> {
    let model = g.meta("tokenizer.ggml.model").and_then(MetaValue::as_str).unwrap_or("");
    let sentencepiece = match model {
        "gpt2" => false,
        "llama" => true,
        other => {
            return Err(MlError::Gguf(format!(
                "tokenizer.ggml.model {other:?}: only byte-level (gpt2) and SentencePiece BPE (llama) \
                 vocabularies are rebuilt"
            )))
        }
    };
    let tokens = strings(g.meta("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens")?;
    let merges = match g.meta("tokenizer.ggml.merges") {
        Some(m) => strings(Some(m), "tokenizer.ggml.merges")?,
        None if sentencepiece => merges_from_scores(&tokens, g.meta("tokenizer.ggml.scores"))?,
        None => return Err(MlError::Gguf("tokenizer.ggml.merges is missing".into())),
    };
    let types: Vec<i64> = match g.meta("tokenizer.ggml.token_type").and_then(MetaValue::as_array) {
        Some(a) => a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect(),
        None => vec![1; tokens.len()],
    };
    let mut vocab = Map::new();
    let mut added = Vec::new();
    let mut special_ids = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        vocab.insert(tok.clone(), json!(id));
        let ty = types.get(id).copied().unwrap_or(1);
        if ty == TOKEN_TYPE_CONTROL || ty == TOKEN_TYPE_USER_DEFINED {
            let special = ty == TOKEN_TYPE_CONTROL;
            if special {
                special_ids.push(id as u32);
            }
            added.push(json!({
                "id": id, "content": tok, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": !special, "special": special,
            }));
        }
    }
    let (pre_tokenizer, decoder, unk, spm) = if sentencepiece {
        // transformers' LlamaTokenizer (legacy = false): a "▁" before the first word only, byte fallback.
        let prefix = g.meta("tokenizer.ggml.add_space_prefix").and_then(MetaValue::as_bool).unwrap_or(true);
        let unk = g
            .meta("tokenizer.ggml.unknown_token_id")
            .and_then(MetaValue::as_u64)
            .and_then(|id| tokens.get(id as usize).cloned());
        let mut steps = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if prefix {
            steps.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        let pre = json!({"type": "Metaspace", "replacement": "\u{2581}",
                         "prepend_scheme": if prefix { "first" } else { "never" }, "split": false});
        (pre, json!({"type": "Sequence", "decoders": steps}), unk, true)
    } else {
        let decoder = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
        (byte_level_pre_tokenizer(g), decoder, None, false)
    };
    // llama.cpp adds BOS to a SentencePiece vocabulary that does not say otherwise.
    let add_bos = g.meta("tokenizer.ggml.add_bos_token").and_then(MetaValue::as_bool).unwrap_or(spm);
    let bos = g.meta("tokenizer.ggml.bos_token_id").and_then(MetaValue::as_u64);
    let post_processor = match (add_bos, bos) {
        (true, Some(id)) => {
            let name = tokens.get(id as usize).cloned().unwrap_or_default();
            json!({
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": name, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {name.clone(): {"id": name, "ids": [id], "tokens": [name]}},
            })
        }
        _ => {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        }
    };
    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": spm, "byte_fallback": spm, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    Ok(RebuiltTokenizer { tokenizer_json, tokens, special_ids })
}

/// The pre-tokenizer of a byte-level vocabulary, from `tokenizer.ggml.pre`.
fn byte_level_pre_tokenizer(g: &GgufFile) -> Value {
    let pre = g.meta("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split =
        |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
    match pre {
        "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => json!({
            "type": "Sequence",
            "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)],
        }),
        "llama-bpe" | "llama3" | "falcon3" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(false)]})
        }
        "qwen2" | "deepseek-r1-qwen" => {
            json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false)]})
        }
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        other => {
            tracing::warn!(pre = other, "unknown GGUF pre-tokenizer; using GPT-2's byte-level split");
            byte_level(true)
        }
    }
}

/// SentencePiece files carry scores, not merges. As transformers' `generate_merges`: every split of a token
/// into two tokens is a merge ranked by the whole token's score (best first), ties by the halves' lengths,
/// then by the halves' ids.
fn merges_from_scores(tokens: &[String], scores: Option<&MetaValue>) -> Result<Vec<String>> {
    let scores: Vec<f64> = scores
        .and_then(MetaValue::as_array)
        .ok_or_else(|| MlError::Gguf("a SentencePiece vocabulary needs tokenizer.ggml.scores".into()))?
        .iter()
        .map(|v| v.as_f64().unwrap_or(0.0))
        .collect();
    let ids: std::collections::HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    let mut merges: Vec<(f64, usize, usize, usize, usize)> = Vec::new();
    for (id, tok) in tokens.iter().enumerate() {
        let mut local = Vec::new();
        for (cut, _) in tok.char_indices().skip(1) {
            let (l, r) = tok.split_at(cut);
            if let (Some(&li), Some(&ri)) = (ids.get(l), ids.get(r)) {
                local.push((li, ri));
            }
        }
        local.sort_unstable();
        let score = scores.get(id).copied().unwrap_or(0.0);
        merges.extend(
            local.into_iter().map(|(li, ri)| (score, tokens[li].chars().count(), tokens[ri].chars().count(), li, ri)),
        );
    }
    // Python's sorted(reverse=True) is stable: equal keys keep their first-seen order.
    merges.sort_by(|a, b| (b.0, b.1, b.2).partial_cmp(&(a.0, a.1, a.2)).unwrap_or(std::cmp::Ordering::Equal));
    Ok(merges.into_iter().map(|(_, _, _, l, r)| format!("{} {}", tokens[l], tokens[r])).collect())
}
