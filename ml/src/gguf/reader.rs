//! The GGUF container: header, typed metadata, tensor directory; tensor bytes read on demand so a large
//! file never sits in memory whole.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::dequant::{dequantize, GgmlType};
use crate::error::{MlError, Result};

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MetaValue::UInt(v) => Some(*v),
            MetaValue::Int(v) => u64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetaValue::Float(v) => Some(*v),
            MetaValue::UInt(v) => Some(*v as f64),
            MetaValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            MetaValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where a tensor lies and how it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of values.
    /// Number of values (saturating: a directory claiming more than fits is refused by [`GgufFile::read_f32`]
    /// against the file's length rather than overflowing).
    pub fn numel(&self) -> usize {
        let n = self.dims.iter().try_fold(1u64, |n, d| n.checked_mul(*d)).unwrap_or(u64::MAX);
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// Row-major shape, outermost first (the Hugging Face order).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|d| *d as usize).collect()
    }
}

/// An open GGUF file: its metadata and tensor directory.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    data_start: u64,
}

impl GgufFile {
    /// Reads the header and the tensor directory.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| MlError::io(path, e))?;
        let mut r = BufReader::new(file);
        let gguf = |e: std::io::Error| MlError::Gguf(format!("{}: {e}", path.display()));
        let mut magic = [0u8; 4];
        r.read_exact(&mut magic).map_err(gguf)?;
        if &magic != b"GGUF" {
            return Err(MlError::Gguf(format!("{} is not a GGUF file", path.display())));
        }
        let version = read_u32(&mut r).map_err(gguf)?;
        if !(2..=3).contains(&version) {
            return Err(MlError::Gguf(format!("GGUF version {version} (2 and 3 are read)")));
        }
        let n_tensors = read_u64(&mut r).map_err(gguf)?;
        let n_kv = read_u64(&mut r).map_err(gguf)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = read_string(&mut r)?;
            let ty = read_u32(&mut r).map_err(gguf)?;
            metadata.insert(key, read_value(&mut r, ty, 0)?);
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16) as usize);
        for _ in 0..n_tensors {
            let name = read_string(&mut r)?;
            let n_dims = read_u32(&mut r).map_err(gguf)?;
            if n_dims > 4 {
                return Err(MlError::Gguf(format!("{name} has {n_dims} dimensions")));
            }
            let dims = (0..n_dims).map(|_| read_u64(&mut r)).collect::<std::io::Result<Vec<_>>>().map_err(gguf)?;
            let ggml_type = GgmlType::from_id(read_u32(&mut r).map_err(gguf)?)?;
            let offset = read_u64(&mut r).map_err(gguf)?;
            tensors.push(TensorInfo { name, dims, ggml_type, offset });
        }
        let alignment = metadata.get("general.alignment").and_then(MetaValue::as_u64).unwrap_or(32);
        let pos = r.stream_position().map_err(gguf)?;
        let data_start = pos.div_ceil(alignment) * alignment;
        Ok(GgufFile { path: path.to_path_buf(), version, metadata, tensors, data_start })
    }

    /// A metadata value by key.
    pub fn meta(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The tensor directory entry of that name.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Reads and dequantises one tensor to f32, values in GGUF (row-major, `dims[0]` innermost) order.
    pub fn read_f32(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        let numel = info.numel();
        let bytes = info.ggml_type.byte_len(numel)?;
        let mut file = File::open(&self.path).map_err(|e| MlError::io(&self.path, e))?;
        // Checked against the file before anything is allocated: a directory may claim any size.
        let len = file.metadata().map_err(|e| MlError::io(&self.path, e))?.len();
        let end = self.data_start.checked_add(info.offset).and_then(|start| start.checked_add(bytes as u64));
        if end.is_none_or(|end| end > len) {
            return Err(MlError::Gguf(format!("{}: {} lies past the end of the file", self.path.display(), info.name)));
        }
        let mut buf = vec![0u8; bytes];
        file.seek(SeekFrom::Start(self.data_start + info.offset))
            .and_then(|_| file.read_exact(&mut buf))
            .map_err(|e| MlError::Gguf(format!("{}: reading {}: {e}", self.path.display(), info.name)))?;
        dequantize(info.ggml_type, &buf, numel)
    }
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_string(r: &mut impl Read) -> Result<String> {
    let err = |e: std::io::Error| MlError::Gguf(format!("reading a string: {e}"));
    let len = read_u64(r).map_err(err)?;
    if len > 1 << 30 {
        return Err(MlError::Gguf(format!("string of {len} bytes")));
    }
    // Read as far as the file goes, not allocated ahead: the length is the file's word.
    let mut b = Vec::new();
    r.take(len).read_to_end(&mut b).map_err(err)?;
    if b.len() as u64 != len {
        return Err(MlError::Gguf(format!("a string of {len} bytes ends early")));
    }
    // Token strings of some vocabularies are not valid UTF-8 on their own; keep them lossily.
    Ok(String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn bytes<const N: usize>(r: &mut impl Read) -> Result<[u8; N]> {
    let mut b = [0u8; N];
    r.read_exact(&mut b).map_err(|e| MlError::Gguf(format!("reading metadata: {e}")))?;
    Ok(b)
}

fn read_value(r: &mut impl Read, ty: u32, depth: u32) -> Result<MetaValue> {
    Ok(match ty {
        0 => MetaValue::UInt(bytes::<1>(r)?[0] as u64),
        1 => MetaValue::Int(bytes::<1>(r)?[0] as i8 as i64),
        2 => MetaValue::UInt(u16::from_le_bytes(bytes(r)?) as u64),
        3 => MetaValue::Int(i16::from_le_bytes(bytes(r)?) as i64),
        4 => MetaValue::UInt(u32::from_le_bytes(bytes(r)?) as u64),
        5 => MetaValue::Int(i32::from_le_bytes(bytes(r)?) as i64),
        6 => MetaValue::Float(f32::from_le_bytes(bytes(r)?) as f64),
        7 => MetaValue::Bool(bytes::<1>(r)?[0] != 0),
        8 => MetaValue::Str(read_string(r)?),
        9 => {
            if depth > 2 {
                return Err(MlError::Gguf("metadata arrays nested too deep".into()));
            }
            let item_ty = u32::from_le_bytes(bytes(r)?);
            let len = u64::from_le_bytes(bytes(r)?);
            if len > 1 << 26 {
                return Err(MlError::Gguf(format!("metadata array of {len} items")));
            }
            let items = (0..len).map(|_| read_value(r, item_ty, depth + 1)).collect::<Result<Vec<_>>>()?;
            MetaValue::Array(items)
        }
        10 => MetaValue::UInt(u64::from_le_bytes(bytes(r)?)),
        11 => MetaValue::Int(i64::from_le_bytes(bytes(r)?)),
        12 => MetaValue::Float(f64::from_le_bytes(bytes(r)?)),
        other => return Err(MlError::Gguf(format!("unknown metadata type {other}"))),
    })
}
