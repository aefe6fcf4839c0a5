//! Bonsai's ML core: Llama-family models (config, weights, tokenizer, chat template), a LoRA trainer with a
//! hand-written backward pass, PEFT adapters, merging, ONNX export and generation through ONNX Runtime.
//!
//! This crate depends on no platform crate (see ARCHITECTURE.md): the CLI and the workers both call it.

pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod lora;
pub mod model;
pub mod onnx;
pub mod template;
pub mod tiny;
pub mod tokenizer;
pub mod train;
pub mod weights;
