//! LoRA fine-tuning of Llama-family models with a hand-written backward pass, on the CPU or (through
//! [`gpu`]) a CUDA GPU.
//!
//! Entry point: [`train`] (see [`api`]). Under it, [`session::Session`] runs the steps; [`forward`] and
//! [`backward`] are the model with LoRA branches over the kernels of [`kernels`], with activations kept in
//! an [`acts::Arena`] allocated once per run.

pub mod acts;
pub mod api;
pub mod backward;
pub mod base;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod forward;
pub mod gpu;
pub mod kernels;
pub mod optim;
pub mod session;
pub mod warnings;

pub use api::{merge_folders, train, Device, TrainConfig, TrainOutcome, EVAL_RECORDS_FILE};
pub use error::TrainError;
pub use session::{Hyper, Progress, RunState, Session, StepRecord, StopReason};
pub use warnings::{warnings, RunWarning};
