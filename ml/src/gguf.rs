//! GGUF checkpoints (llama.cpp's format): reading the header, metadata and tensors, dequantising them to
//! f32, and importing a Llama-family GGUF into a Hugging Face model folder (`bonsai model import-gguf`).

mod dequant;
mod import;
mod reader;
mod vocab;

pub use dequant::{dequantize, GgmlType};
pub use import::{import_gguf, ImportReport};
pub use reader::{GgufFile, MetaValue, TensorInfo};
pub use vocab::tokenizer_json;
