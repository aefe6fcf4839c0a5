//! A small ONNX graph builder: nodes with generated output names, deduplicated constants, and weights streamed
//! to an external data file (`model.onnx.data`) so the protobuf itself stays small whatever the model size
//! (protobuf messages cannot exceed 2 GB).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::proto::{
    attribute_type, data_type, AttributeProto, NodeProto, StringStringEntryProto, TensorProto, DATA_LOCATION_EXTERNAL,
};
use super::OnnxError;

/// ONNX Runtime's contrib operator domain.
pub(crate) const CONTRIB_DOMAIN: &str = "com.microsoft";
/// Tensors at least this big go to the external data file; smaller ones (shapes, scalars) stay inline.
const EXTERNAL_THRESHOLD_BYTES: usize = 1024;
/// External tensors start on a page boundary so ONNX Runtime can memory-map them.
const EXTERNAL_ALIGN: u64 = 4096;

/// Weights written beside the model file.
struct ExternalData {
    path: PathBuf,
    location: String,
    file: BufWriter<File>,
    offset: u64,
}

/// Accumulates the nodes and initializers of one graph.
pub(crate) struct GraphBuilder {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    counter: usize,
    constants: HashMap<String, String>,
    external: ExternalData,
}

impl GraphBuilder {
    /// A builder whose large tensors go to `data_path` (the file name is what `model.onnx` refers to).
    pub(crate) fn new(data_path: &Path) -> Result<Self, OnnxError> {
        let file = File::create(data_path).map_err(|e| OnnxError::io(data_path, e))?;
        let location = data_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| OnnxError::Model(format!("bad data file name {}", data_path.display())))?
            .to_string();
        Ok(GraphBuilder {
            nodes: Vec::new(),
            initializers: Vec::new(),
            counter: 0,
            constants: HashMap::new(),
            external: ExternalData {
                path: data_path.to_path_buf(),
                location,
                file: BufWriter::with_capacity(1 << 20, file),
                offset: 0,
            },
        })
    }

    /// Flushes the external data file; returns its size in bytes.
    pub(crate) fn finish(mut self) -> Result<(Vec<NodeProto>, Vec<TensorProto>, u64), OnnxError> {
        let path = self.external.path.clone();
        self.external.file.flush().map_err(|e| OnnxError::io(&path, e))?;
        Ok((self.nodes, self.initializers, self.external.offset))
    }

    /// A new value name, unique in the graph.
    pub(crate) fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Adds a node with one output; returns the output's name.
    pub(crate) fn op(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op_type, inputs, attrs, 1).remove(0)
    }

    /// Adds a node with one output of a chosen name (graph outputs such as `logits`).
    pub(crate) fn op_named(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        output: &str,
    ) -> String {
        self.push(op_type, inputs, attrs, vec![output.to_string()]);
        output.to_string()
    }

    /// Adds a node of the `com.microsoft` domain (ONNX Runtime's contrib ops) with named outputs; an empty
    /// input name skips an optional input.
    pub(crate) fn op_contrib(
        &mut self,
        op_type: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
        outputs: Vec<String>,
    ) {
        self.push(op_type, inputs, attrs, outputs);
        if let Some(node) = self.nodes.last_mut() {
            node.domain = CONTRIB_DOMAIN.to_string();
        }
    }

    /// Adds a node with `n` outputs.
    pub(crate) fn op_n(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>, n: usize) -> Vec<String> {
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(op_type)).collect();
        self.push(op_type, inputs, attrs, outputs.clone());
        outputs
    }

    fn push(&mut self, op_type: &str, inputs: &[&str], attrs: Vec<AttributeProto>, outputs: Vec<String>) {
        let name = format!("{op_type}_node_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs,
            name,
            op_type: op_type.to_string(),
            attribute: attrs,
            doc_string: String::new(),
            domain: String::new(),
        });
    }

    /// A 1-D int64 constant (shapes, axes, indices), shared between uses.
    pub(crate) fn const_i64(&mut self, values: &[i64]) -> String {
        let key = format!("i64{values:?}");
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = self.fresh("const_i64");
        self.initializers.push(TensorProto {
            dims: vec![values.len() as i64],
            data_type: data_type::INT64,
            int64_data: values.to_vec(),
            name: name.clone(),
            ..Default::default()
        });
        self.constants.insert(key, name.clone());
        name
    }

    /// A scalar (rank 0) float constant, shared between uses.
    pub(crate) fn scalar_f32(&mut self, value: f32) -> String {
        let key = format!("f32:{}", value.to_bits());
        if let Some(name) = self.constants.get(&key) {
            return name.clone();
        }
        let name = self.fresh("const_f32");
        self.initializers.push(TensorProto {
            dims: vec![],
            data_type: data_type::FLOAT,
            float_data: vec![value],
            name: name.clone(),
            ..Default::default()
        });
        self.constants.insert(key, name.clone());
        name
    }

    /// A float initializer named `name` (an HF tensor name where there is one); large ones go to the external
    /// data file.
    pub(crate) fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Result<String, OnnxError> {
        let expected: usize = dims.iter().product();
        if expected != values.len() {
            return Err(OnnxError::Model(format!(
                "tensor {name}: shape {dims:?} needs {expected} values, got {}",
                values.len()
            )));
        }
        let mut tensor = TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: data_type::FLOAT,
            name: name.to_string(),
            ..Default::default()
        };
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        if bytes.len() < EXTERNAL_THRESHOLD_BYTES {
            tensor.raw_data = bytes;
        } else {
            let ext = &mut self.external;
            let pad = (EXTERNAL_ALIGN - ext.offset % EXTERNAL_ALIGN) % EXTERNAL_ALIGN;
            let io = |e| OnnxError::io(&ext.path, e);
            ext.file.write_all(&vec![0u8; pad as usize]).map_err(io)?;
            let start = ext.offset + pad;
            ext.file.write_all(&bytes).map_err(|e| OnnxError::io(&ext.path, e))?;
            ext.offset = start + bytes.len() as u64;
            tensor.data_location = DATA_LOCATION_EXTERNAL;
            tensor.external_data = vec![
                entry("location", &ext.location),
                entry("offset", &start.to_string()),
                entry("length", &bytes.len().to_string()),
            ];
        }
        self.initializers.push(tensor);
        Ok(name.to_string())
    }
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    StringStringEntryProto { key: key.to_string(), value: value.to_string() }
}

/// An integer attribute.
pub(crate) fn attr_i(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.to_string(), i: value, r#type: attribute_type::INT, ..Default::default() }
}

/// A float attribute.
pub(crate) fn attr_f(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.to_string(), f: value, r#type: attribute_type::FLOAT, ..Default::default() }
}

/// An integer-list attribute.
pub(crate) fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto { name: name.to_string(), ints: values.to_vec(), r#type: attribute_type::INTS, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_tensors_go_page_aligned_to_the_data_file_and_constants_are_shared() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("m.onnx.data");
        let mut g = GraphBuilder::new(&data).unwrap();
        let a = g.const_i64(&[0, 1]);
        assert_eq!(g.const_i64(&[0, 1]), a);
        assert_ne!(g.const_i64(&[1, 0]), a);
        g.weight("small", &[2], &[1.0, 2.0]).unwrap();
        g.weight("big1", &[300], &[0.5; 300]).unwrap();
        g.weight("big2", &[400], &[0.25; 400]).unwrap();
        assert!(g.weight("bad", &[3], &[1.0]).is_err());
        let (_, inits, bytes) = g.finish().unwrap();

        let small = inits.iter().find(|t| t.name == "small").unwrap();
        assert_eq!(small.raw_data.len(), 8);
        assert_eq!(small.data_location, 0);
        let big2 = inits.iter().find(|t| t.name == "big2").unwrap();
        assert_eq!(big2.data_location, DATA_LOCATION_EXTERNAL);
        let field = |k: &str| big2.external_data.iter().find(|e| e.key == k).unwrap().value.clone();
        assert_eq!(field("location"), "m.onnx.data");
        assert_eq!(field("offset"), "4096");
        assert_eq!(field("length"), "1600");
        assert_eq!(bytes, 4096 + 1600);
        let file = std::fs::read(&data).unwrap();
        assert_eq!(file.len() as u64, bytes);
        assert_eq!(&file[4096..4100], &0.25f32.to_le_bytes());
    }
}
