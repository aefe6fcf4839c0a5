//! The text tokenizer of a model folder: `tokenizer.json` through the `tokenizers` crate, plus the special
//! tokens that `tokenizer_config.json`, `generation_config.json` and `config.json` name.

use std::path::Path;

use serde_json::Value;

use crate::error::{read_json, MlError, Result};

/// End-of-turn tokens of common chat templates: generation stops on them even when no config lists them.
const END_OF_TURN_TOKENS: [&str; 5] = ["<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"];

/// A loaded tokenizer and the special tokens that matter for training and generation.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    /// `bos_token` of `tokenizer_config.json`, when it names one.
    pub bos_token: Option<String>,
    /// `eos_token` of `tokenizer_config.json`, when it names one.
    pub eos_token: Option<String>,
    /// Tokens that end a generation: EOS ids from every config file plus known end-of-turn tokens.
    pub stop_token_ids: Vec<u32>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("stop_token_ids", &self.stop_token_ids)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` of a model folder, with `tokenizer_config.json`, `generation_config.json` and
    /// `config.json` when present.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| MlError::Tokenizer(format!("{}: {e}", path.display())))?;
        let tok_config = optional_json(&dir.join("tokenizer_config.json"))?;
        let mut tok = Self::from_tokenizer(inner, tok_config.as_ref());
        for file in ["generation_config.json", "config.json"] {
            if let Some(v) = optional_json(&dir.join(file))? {
                tok.add_stop_ids(v.get("eos_token_id"));
            }
        }
        Ok(tok)
    }

    /// Wraps a `tokenizers` tokenizer; `tokenizer_config` is the parsed `tokenizer_config.json`, if any.
    pub fn from_tokenizer(inner: tokenizers::Tokenizer, tokenizer_config: Option<&Value>) -> Self {
        let special = |key: &str| tokenizer_config.and_then(|c| token_content(c.get(key)?));
        let mut tok = TextTokenizer {
            bos_token: special("bos_token"),
            eos_token: special("eos_token"),
            inner,
            stop_token_ids: Vec::new(),
        };
        let named = tok.eos_token.iter().map(String::as_str).chain(END_OF_TURN_TOKENS);
        let ids: Vec<u32> = named.filter_map(|t| tok.inner.token_to_id(t)).collect();
        ids.into_iter().for_each(|id| tok.push_stop(id));
        tok
    }

    fn add_stop_ids(&mut self, v: Option<&Value>) {
        match v {
            Some(Value::Number(n)) => n.as_u64().into_iter().for_each(|id| self.push_stop(id as u32)),
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).for_each(|id| self.push_stop(id as u32)),
            _ => {}
        }
    }

    fn push_stop(&mut self, id: u32) {
        if !self.stop_token_ids.contains(&id) {
            self.stop_token_ids.push(id);
        }
    }

    /// Token ids of `text`. `add_special_tokens` applies the tokenizer's post-processor (e.g. a BOS); text
    /// rendered by a chat template already holds its special tokens, so pass `false` for it.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| MlError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// How many tokens `text` is (no special tokens added). Faster than [`TextTokenizer::encode`]: no
    /// offsets are tracked. A text the tokenizer cannot handle counts 0.
    pub fn count(&self, text: &str) -> usize {
        self.inner.encode_fast(text, false).map_or(0, |enc| enc.len())
    }

    /// Text of token ids, optionally leaving special tokens out.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| MlError::Tokenizer(e.to_string()))
    }

    /// Id of a token string, special tokens included.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Reads a JSON file that may be absent.
pub(crate) fn optional_json(path: &Path) -> Result<Option<Value>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A special token in `tokenizer_config.json` is a string or an AddedToken object `{"content": ...}`.
pub(crate) fn token_content(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}
