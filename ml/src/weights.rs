//! Model weights as named f32 tensors: loading Hugging Face safetensors (one file, or shards listed in
//! `model.safetensors.index.json`; f32, f16, bf16 or f64 stored, always computed in f32) and saving them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView, View};
use safetensors::SafeTensors;
use serde::Deserialize;

use crate::error::{read_file, read_json, MlError, Result};

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; the lengths must agree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(MlError::Weights(format!("shape {shape:?} holds {n} values, data has {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no value.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Checks the shape, naming the tensor in the error.
    pub fn expect_shape(&self, name: &str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(MlError::Weights(format!("{name} has shape {:?}, expected {shape:?}", self.shape)));
        }
        Ok(())
    }
}

/// Named tensors of a model (or adapter), in name order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

#[derive(Deserialize)]
struct ShardIndex {
    weight_map: BTreeMap<String, String>,
}

impl Weights {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads a model folder: `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let single = dir.join("model.safetensors");
        if single.exists() {
            return Self::load_file(&single);
        }
        let index_path = dir.join("model.safetensors.index.json");
        if !index_path.exists() {
            return Err(MlError::Weights(format!(
                "{} has neither model.safetensors nor model.safetensors.index.json",
                dir.display()
            )));
        }
        let index: ShardIndex = read_json(&index_path)?;
        let mut shards: Vec<&String> = index.weight_map.values().collect();
        shards.sort();
        shards.dedup();
        let mut out = Weights::new();
        for shard in shards {
            let part = Self::load_file(&dir.join(shard))?;
            out.tensors.extend(part.tensors);
        }
        if let Some(missing) = index.weight_map.keys().find(|k| !out.tensors.contains_key(*k)) {
            return Err(MlError::Weights(format!("{missing} is listed in the shard index but in no shard")));
        }
        Ok(out)
    }

    /// Loads one safetensors file, converting every tensor to f32.
    pub fn load_file(path: &Path) -> Result<Self> {
        let bytes = read_file(path)?;
        Self::from_bytes(&bytes).map_err(|e| MlError::Weights(format!("{}: {e}", path.display())))
    }

    /// Parses a safetensors buffer, converting every tensor to f32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| MlError::Weights(e.to_string()))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = to_f32(&name, &view)?;
            tensors.insert(name, Tensor { shape: view.shape().to_vec(), data });
        }
        Ok(Weights { tensors })
    }

    /// Writes all tensors as f32 to one safetensors file, with optional string metadata
    /// (transformers writes `{"format": "pt"}`). Tensors are converted to bytes one at a time as they are
    /// written, so saving needs no second copy of the model in memory.
    pub fn save_file(&self, path: &Path, metadata: Option<&BTreeMap<String, String>>) -> Result<()> {
        let meta = metadata.map(|m| m.clone().into_iter().collect());
        safetensors::serialize_to_file(self.tensors.iter(), &meta, path)
            .map_err(|e| MlError::Weights(format!("{}: {e}", path.display())))
    }

    /// Serialises all tensors as f32 safetensors.
    pub fn to_bytes(&self, metadata: Option<&BTreeMap<String, String>>) -> Result<Vec<u8>> {
        let meta = metadata.map(|m| m.clone().into_iter().collect());
        safetensors::serialize(self.tensors.iter(), &meta).map_err(|e| MlError::Weights(e.to_string()))
    }

    /// The tensor of that name.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| MlError::Weights(format!("missing tensor {name}")))
    }

    /// Removes and returns the tensor of that name.
    pub fn take(&mut self, name: &str) -> Result<Tensor> {
        self.tensors.remove(name).ok_or_else(|| MlError::Weights(format!("missing tensor {name}")))
    }

    /// Whether a tensor of that name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Adds or replaces a tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// (name, tensor) pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

/// A tensor is stored as little-endian f32.
impl View for &Tensor {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.data.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.data.len() * 4
    }
}

fn to_f32(name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    let b = view.data();
    let out = match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => b.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32).collect(),
        other => {
            return Err(MlError::Weights(format!(
                "{name} is stored as {other:?}; only f32, f16, bf16 and f64 are read"
            )))
        }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_typed(path: &Path, name: &str, dtype: Dtype, bytes: &[u8], shape: Vec<usize>) {
        let view = TensorView::new(dtype, shape, bytes).unwrap();
        let out = safetensors::serialize(vec![(name, view)], &None).unwrap();
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn reads_f16_and_bf16_as_f32() {
        let dir = tempfile::tempdir().unwrap();
        let values = [1.5f32, -2.25, 0.0, 65504.0];
        let f16: Vec<u8> = values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect();
        let bf16: Vec<u8> = values.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect();
        write_typed(&dir.path().join("a.safetensors"), "a", Dtype::F16, &f16, vec![2, 2]);
        write_typed(&dir.path().join("b.safetensors"), "b", Dtype::BF16, &bf16, vec![4]);
        let a = Weights::load_file(&dir.path().join("a.safetensors")).unwrap();
        assert_eq!(a.get("a").unwrap().data, values);
        assert_eq!(a.get("a").unwrap().shape, vec![2, 2]);
        let b = Weights::load_file(&dir.path().join("b.safetensors")).unwrap();
        // 65504 is not exactly representable in bf16: it rounds to 65536.
        assert_eq!(b.get("b").unwrap().data, [1.5, -2.25, 0.0, 65536.0]);
    }

    #[test]
    fn loads_shards_through_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Weights::new();
        one.insert("x", Tensor::new(vec![2], vec![1.0, 2.0]).unwrap());
        let mut two = Weights::new();
        two.insert("y", Tensor::new(vec![1, 1], vec![3.0]).unwrap());
        one.save_file(&dir.path().join("model-00001-of-00002.safetensors"), None).unwrap();
        two.save_file(&dir.path().join("model-00002-of-00002.safetensors"), None).unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors",
                "y": "model-00002-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let all = Weights::load_dir(dir.path()).unwrap();
        assert_eq!(all.names().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(all.get("y").unwrap().data, [3.0]);
    }

    #[test]
    fn a_shard_missing_a_listed_tensor_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut one = Weights::new();
        one.insert("x", Tensor::zeros(vec![1]));
        one.save_file(&dir.path().join("s.safetensors"), None).unwrap();
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"x": "s.safetensors", "z": "s.safetensors"}}"#,
        )
        .unwrap();
        let err = Weights::load_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("z is listed"), "{err}");
    }
}
