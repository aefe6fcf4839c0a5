//! The trainer on an accelerator: the same model, LoRA branches and hand-written backward as the CPU
//! trainer ([`super::forward`], [`super::backward`]), but over device memory, with matrix products as
//! (batched) cuBLAS GEMMs and everything else as the kernels of `gpu/kernels.cu`.
//!
//! The step code ([`trainer::DeviceTrainer`]) is written once against [`backend::Backend`], which has two
//! implementations:
//! - [`cuda::Cuda`] (cargo feature `cuda`): CUDA driver + cuBLAS + NVRTC through `cudarc`, the libraries
//!   loaded at run time, so building needs no CUDA toolkit;
//! - [`emu::Emulated`]: host memory, the same kernel source compiled as C by `build.rs` and run one thread
//!   per block, and column-major GEMMs done the way cuBLAS is called. It is slow and exists so that the
//!   whole device path (buffer layout, GEMM operands and strides, kernel arguments) is tested on machines
//!   without a GPU, against the CPU trainer (`tests/train_device.rs`).
//!
//! LoRA parameters, AdamW, clipping and checkpoints stay on the host (they are small): each optimiser
//! step uploads the adapter values and downloads their gradients, so a device run resumes, checkpoints
//! and saves exactly like a CPU run.

pub mod backend;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod emu;
pub mod trainer;

pub use backend::Backend;
pub use trainer::DeviceTrainer;

use super::base::FrozenBase;
use super::data::Batch;
use super::error::TrainError;
use crate::lora::LoraParams;
use rand::rngs::StdRng;

/// What a [`super::Session`] needs from a device trainer (object-safe, so the backend is chosen at run time).
pub trait DeviceSteps: Send {
    /// Uploads the adapter values the next micro-batches compute with.
    fn set_lora(&mut self, lora: &LoraParams) -> Result<(), TrainError>;
    /// Zeroes the device's gradient accumulator (start of an optimiser step).
    fn zero_grads(&mut self) -> Result<(), TrainError>;
    /// Forward (with dropout drawn from `rng` when given), loss and, with `backward`, gradients added to
    /// the accumulator. Returns `sum(weight * nll)` as the CPU's [`super::forward::head_loss`] does.
    fn micro_batch(
        &mut self,
        batch: &Batch,
        weights: &[f32],
        rng: Option<&mut StdRng>,
        backward: bool,
    ) -> Result<f64, TrainError>;
    /// Copies the accumulated gradients (laid out like [`LoraParams::values`]) into `grads`.
    fn read_grads(&mut self, grads: &mut [f32]) -> Result<(), TrainError>;
    /// Logits `[batch * seq, vocab]` of every position, without dropout (tests).
    fn logits(&mut self, tokens: &[u32], batch: usize, seq: usize) -> Result<Vec<f32>, TrainError>;
    /// Bytes of device memory held.
    fn device_bytes(&self) -> usize;
    /// The device, in words (for logs and errors).
    fn describe(&self) -> String;
}

/// Which device backend to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accelerator {
    /// CUDA GPU `ordinal` (needs the `cuda` feature).
    Cuda(usize),
    /// The device code path emulated on the CPU (slow; for tests).
    Emulated,
}

/// Fails at once when this build cannot use `acc` (CUDA without the `cuda` feature), before any data or
/// model is loaded.
pub fn check_built(acc: Accelerator) -> Result<(), TrainError> {
    match acc {
        Accelerator::Cuda(_) if !cfg!(feature = "cuda") => Err(TrainError::DeviceUnavailable(
            "cuda: this build has no CUDA support (rebuild with `--features cuda`)".into(),
        )),
        _ => Ok(()),
    }
}

/// Opens a device trainer for `base` and `lora` with room for `max_batch` sequences of `max_seq` tokens.
pub fn open(
    acc: Accelerator,
    base: &FrozenBase,
    lora: &LoraParams,
    max_batch: usize,
    max_seq: usize,
) -> Result<Box<dyn DeviceSteps>, TrainError> {
    open_with(acc, base, lora, max_batch, max_seq, trainer::SCRATCH_BYTES)
}

/// [`open`] with at most `scratch_bytes` of device memory for attention scores (fewer heads per pass).
pub fn open_with(
    acc: Accelerator,
    base: &FrozenBase,
    lora: &LoraParams,
    max_batch: usize,
    max_seq: usize,
    scratch_bytes: usize,
) -> Result<Box<dyn DeviceSteps>, TrainError> {
    check_built(acc)?;
    let (b, s, x) = (max_batch, max_seq, scratch_bytes);
    match acc {
        Accelerator::Emulated => Ok(Box::new(DeviceTrainer::new(emu::Emulated::new(), base, lora, b, s, x)?)),
        #[cfg(feature = "cuda")]
        Accelerator::Cuda(ordinal) => Ok(Box::new(DeviceTrainer::new(cuda::Cuda::new(ordinal)?, base, lora, b, s, x)?)),
        #[cfg(not(feature = "cuda"))]
        Accelerator::Cuda(_) => unreachable!("check_built refuses CUDA in a build without it"),
    }
}
