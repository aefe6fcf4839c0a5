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
