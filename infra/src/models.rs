//! Where base models live until a model registry exists: one Hugging Face style folder per model under
//! a configured root (`BONSAI_MODELS_DIR`, default `<data_dir>/models`), named by its model id. The API
//! checks an id before it is recorded; the workers resolve it again when they run (a folder may have gone).

use std::path::{Path, PathBuf};

/// Why a model id does not lead to a usable tokenizer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelLookupError {
    /// Not a plain folder name: empty, too long, a path, `..`, control characters.
    #[error("`{0}` is not a model id: use 1 to 128 letters, digits, `.`, `_` or `-`, not starting with `.`")]
    InvalidId(String),
    #[error("no model `{0}` is installed in the models folder")]
    NotFound(String),
}

/// The local folder of models.
#[derive(Debug, Clone)]
pub struct LocalModels {
    root: PathBuf,
}

impl LocalModels {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `id` is a plain folder name (never a path), so that it can name nothing outside the root.
    pub fn is_valid_id(id: &str) -> bool {
        (1..=128).contains(&id.len())
            && !id.starts_with('.')
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    }

    /// The folder of model `id`, if it holds a whole model (`config.json` and `tokenizer.json`): what
    /// training starts from.
    pub fn model_dir(&self, id: &str) -> Result<PathBuf, ModelLookupError> {
        let dir = self.tokenizer_dir(id)?;
        if dir.join("config.json").is_file() {
            Ok(dir)
        } else {
            Err(ModelLookupError::NotFound(id.to_owned()))
        }
    }

    /// The folder of model `id`, if it holds a `tokenizer.json`.
    pub fn tokenizer_dir(&self, id: &str) -> Result<PathBuf, ModelLookupError> {
        if !Self::is_valid_id(id) {
            return Err(ModelLookupError::InvalidId(id.chars().filter(|c| !c.is_control()).take(160).collect()));
        }
        let dir = self.root.join(id);
        if dir.join("tokenizer.json").is_file() {
            Ok(dir)
        } else {
            Err(ModelLookupError::NotFound(id.to_owned()))
        }
    }
}

/// What an installed base model is, read from its folder (`GET /api/models/base`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BaseModelInfo {
    /// The folder name: what `base_model_id` names.
    pub id: String,
    /// `architectures[0]` of config.json (or its `model_type`).
    pub architecture: Option<String>,
    /// Counted from the safetensors headers.
    pub parameters: u64,
    pub layers: Option<u64>,
    pub hidden_size: Option<u64>,
    pub context_length: Option<u64>,
    pub vocab_size: Option<u64>,
    /// Whether tokenizer_config.json (or chat_template.jinja) has a chat template (else a plain fallback).
    pub chat_template: bool,
    /// Bytes of every file in the folder.
    pub size_bytes: u64,
    /// Where it came from (`bonsai-source.json` in the folder, written by the installer), if known.
    pub source: Option<serde_json::Value>,
}

/// The number of parameters in a safetensors file, from its header (the tensors are not read).
fn safetensors_parameters(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len).min(100 << 20);
    let mut header = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut header)?;
    let header: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header).unwrap_or_default();
    let count = |shape: &serde_json::Value| -> u64 {
        shape.as_array().map_or(0, |dims| dims.iter().map(|d| d.as_u64().unwrap_or(0)).product())
    };
    Ok(header.iter().filter(|(k, _)| *k != "__metadata__").map(|(_, t)| count(&t["shape"])).sum())
}

fn read_json(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

impl LocalModels {
    /// Every installed base model (a folder with config.json and tokenizer.json), by id.
    pub fn list(&self) -> std::io::Result<Vec<BaseModelInfo>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else { continue };
            let Ok(dir) = self.model_dir(&id) else { continue };
            out.push(Self::describe(id, &dir)?);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// What installed model `id` is.
    pub fn info(&self, id: &str) -> Result<BaseModelInfo, ModelLookupError> {
        let dir = self.model_dir(id)?;
        Self::describe(id.to_owned(), &dir).map_err(|_| ModelLookupError::NotFound(id.to_owned()))
    }

    fn describe(id: String, dir: &Path) -> std::io::Result<BaseModelInfo> {
        let config = read_json(&dir.join("config.json")).unwrap_or_default();
        let number = |keys: &[&str]| keys.iter().find_map(|k| config[*k].as_u64());
        let (mut parameters, mut size_bytes) = (0, 0);
        for file in std::fs::read_dir(dir)? {
            let file = file?;
            let meta = file.metadata()?;
            if !meta.is_file() {
                continue;
            }
            size_bytes += meta.len();
            if file.file_name().to_string_lossy().ends_with(".safetensors") {
                parameters += safetensors_parameters(&file.path()).unwrap_or(0);
            }
        }
        let template = read_json(&dir.join("tokenizer_config.json"))
            .is_some_and(|c| c["chat_template"].as_str().is_some_and(|t| !t.is_empty()));
        Ok(BaseModelInfo {
            id,
            architecture: config["architectures"][0]
                .as_str()
                .or_else(|| config["model_type"].as_str())
                .map(str::to_owned),
            parameters,
            layers: number(&["num_hidden_layers", "n_layer"]),
            hidden_size: number(&["hidden_size", "n_embd"]),
            context_length: number(&["max_position_embeddings", "n_positions"]),
            vocab_size: number(&["vocab_size"]),
            chat_template: template || dir.join("chat_template.jinja").is_file(),
            size_bytes,
            source: read_json(&dir.join("bonsai-source.json")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_plain_folder_names() {
        for good in ["smollm2-135m", "demo_tiny", "Qwen2.5-0.5B", "a"] {
            assert!(LocalModels::is_valid_id(good), "{good}");
        }
        let long = "x".repeat(129);
        for bad in ["", "..", "../etc", "/etc/passwd", "a/b", "a\\b", ".hidden", "a\0b", "naïve", long.as_str()] {
            assert!(!LocalModels::is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_folder_counts_only_with_a_tokenizer() {
        let root = std::env::temp_dir().join(format!("bonsai-models-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::create_dir_all(root.join("tok")).unwrap();
        std::fs::write(root.join("tok/tokenizer.json"), "{}").unwrap();
        let models = LocalModels::new(&root);
        assert_eq!(models.tokenizer_dir("tok").unwrap(), root.join("tok"));
        assert_eq!(models.tokenizer_dir("empty"), Err(ModelLookupError::NotFound("empty".into())));
        assert_eq!(models.tokenizer_dir("missing"), Err(ModelLookupError::NotFound("missing".into())));
        assert!(matches!(models.tokenizer_dir("../tok"), Err(ModelLookupError::InvalidId(_))));
        std::fs::remove_dir_all(root).unwrap();
    }
}
