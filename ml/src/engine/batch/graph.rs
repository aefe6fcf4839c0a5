//! The graph runs of the decode batch: one ONNX Runtime session and, per layer and kind, one KV buffer
//! allocated once ([slots, kv_heads, slot_tokens, head_dim]: a row per slot, each row right-padded), which the
//! graph reads as `past_key_values.*` and writes as `present.*` in place.
//!
//! In place because both are bound (ONNX Runtime IO binding) to tensors over the same memory: the
//! `GroupQueryAttention` kernel then sees `past == present` and takes its shared-buffer path, writing only the
//! new token's keys and values at each row's own length (`seqlens_k`, from the attention mask) instead of
//! copying the whole cache into a new tensor every step, which is what [`super::super::OnnxModel::step`] does.
//! This is the layout ONNX Runtime GenAI's `past_present_share_buffer` uses.
//!
//! A decode step covers rows `0..n` of the buffer (`n` = the highest busy slot + 1; free slots below it run as
//! one-token dummy rows, cheaper than moving a cache). A prefill binds one row (`[1, kv_heads, slot_tokens,
//! head_dim]` at that slot's offset): GroupQueryAttention's prompt path takes batch 1 only once there is a past.
//!
//! The `ort` crate copies a borrowed tensor when it is bound as an input (it cannot prove the borrow outlives
//! the binding), which would break the sharing, so the views are made with the C API here: the one `unsafe`
//! block of the batch engine, whose invariant [`BatchGraph`] keeps by owning both the buffers and every
//! binding that points into them.

use std::ptr::NonNull;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynTensor, Tensor, Value, ValueType};
use ort::AsPointer;

use super::super::model::{ort_error, GraphShape};
use super::super::{Device, EngineError};

/// Memory of one KV buffer: host memory for the CPU, memory of the session's CUDA allocator on a GPU.
enum Buffer {
    Host(Box<[f32]>),
    Device(DynTensor),
}

impl Buffer {
    fn base(&mut self) -> *mut f32 {
        match self {
            Buffer::Host(data) => data.as_mut_ptr(),
            Buffer::Device(tensor) => tensor.data_ptr_mut().cast(),
        }
    }
}

/// The decode binding and the number of rows it covers.
struct DecodeBinding {
    binding: IoBinding,
    rows: usize,
}

/// The session, the KV buffers and the bindings into them.
pub(crate) struct BatchGraph {
    // Fields drop in declaration order: the binding holds views into the buffers below, so it goes first.
    decode: Option<DecodeBinding>,
    session: Session,
    keys: Vec<Buffer>,
    values: Vec<Buffer>,
    /// [slots, vocab]: the decode step's logits.
    logits: Box<[f32]>,
    /// The prefill's logits: [vocab], or [prompt, vocab] when the graph gives every position's.
    prefill_logits: Vec<f32>,
    kv_memory: MemoryInfo<'static>,
    host_memory: MemoryInfo<'static>,
    shape: GraphShape,
    slots: usize,
    slot_tokens: usize,
    all_logits: bool,
}

impl BatchGraph {
    /// Allocates the buffers for `slots` rows of `slot_tokens` tokens on the session's device.
    pub(crate) fn new(
        session: Session,
        device: Device,
        shape: GraphShape,
        slots: usize,
        slot_tokens: usize,
    ) -> Result<Self, EngineError> {
        let all_logits = match session.outputs().iter().find(|o| o.name() == "logits").map(|o| o.dtype()) {
            Some(ValueType::Tensor { shape, .. }) => shape.get(1).copied() != Some(1),
            _ => return Err(EngineError::Session("the graph has no `logits` tensor output".into())),
        };
        let per_buffer = slots * shape.num_kv_heads * slot_tokens * shape.head_dim;
        let host_memory =
            MemoryInfo::new(AllocationDevice::CPU, 0, AllocatorType::Device, MemoryType::Default).map_err(ort_error)?;
        let (kv_memory, device_allocator) = if device == Device::Cuda {
            let info = MemoryInfo::new(AllocationDevice::CUDA, 0, AllocatorType::Device, MemoryType::Default)
                .map_err(ort_error)?;
            let allocator = Allocator::new(&session, info.clone()).map_err(ort_error)?;
            (info, Some(allocator))
        } else {
            (host_memory.clone(), None)
        };
        let buffer = || -> Result<Buffer, EngineError> {
            Ok(match &device_allocator {
                Some(allocator) => {
                    Buffer::Device(Tensor::<f32>::new(allocator, [per_buffer]).map_err(ort_error)?.upcast())
                }
                None => Buffer::Host(vec![0.0; per_buffer].into_boxed_slice()),
            })
        };
        let keys = (0..shape.num_layers).map(|_| buffer()).collect::<Result<Vec<_>, _>>()?;
        let values = (0..shape.num_layers).map(|_| buffer()).collect::<Result<Vec<_>, _>>()?;
        Ok(BatchGraph {
            decode: None,
            session,
            keys,
            values,
            logits: vec![0.0; slots * shape.vocab_size].into_boxed_slice(),
            prefill_logits: vec![0.0; shape.vocab_size],
            kv_memory,
            host_memory,
            shape,
            slots,
            slot_tokens,
            all_logits,
        })
    }

    /// Bytes of KV cache allocated (all slots, all layers).
    pub(crate) fn kv_bytes(&self) -> usize {
        2 * self.shape.num_layers * self.slots * self.row_len() * std::mem::size_of::<f32>()
    }

    /// Logits per row.
    pub(crate) fn vocab(&self) -> usize {
        self.shape.vocab_size
    }

    /// Floats of one slot's row in one layer's buffer.
    fn row_len(&self) -> usize {
        self.shape.num_kv_heads * self.slot_tokens * self.shape.head_dim
    }

    /// Binds `past_key_values.*` and `present.*` of every layer to rows `first..first + rows` of the buffers.
    fn bind_cache(&mut self, binding: &mut IoBinding, first: usize, rows: usize) -> Result<(), EngineError> {
        let s = &self.shape;
        let dims = [rows as i64, s.num_kv_heads as i64, self.slot_tokens as i64, s.head_dim as i64];
        let (offset, len) = (first * self.row_len(), rows * self.row_len());
        let total = self.slots * self.row_len();
        for layer in 0..s.num_layers {
            for (kind, buffer) in [("key", &mut self.keys[layer]), ("value", &mut self.values[layer])] {
                let past = view(&self.kv_memory, buffer.base(), total, offset, len, &dims)?;
                let present = view(&self.kv_memory, buffer.base(), total, offset, len, &dims)?;
                binding.bind_input(format!("past_key_values.{layer}.{kind}"), &past).map_err(ort_error)?;
                binding.bind_output(format!("present.{layer}.{kind}"), present).map_err(ort_error)?;
            }
        }
        Ok(())
    }

    /// Runs the prompt of the request in `slot` (batch 1), writing its cache into that slot's row; returns
    /// the logits of the last prompt token.
    pub(crate) fn prefill(&mut self, slot: usize, prompt: &[u32]) -> Result<&mut [f32], EngineError> {
        let (n, vocab) = (prompt.len(), self.shape.vocab_size);
        if slot >= self.slots || n == 0 || n > self.slot_tokens {
            return Err(EngineError::Input(format!("a prompt of {n} tokens does not fit slot {slot}")));
        }
        let mut binding = self.session.create_binding().map_err(ort_error)?;
        self.bind_cache(&mut binding, slot, 1)?;
        let ids: Vec<i64> = prompt.iter().map(|&t| i64::from(t)).collect();
        bind_i64(&mut binding, "input_ids", [1, n], ids)?;
        bind_i64(&mut binding, "attention_mask", [1, n], vec![1; n])?;
        bind_i64(&mut binding, "position_ids", [1, n], (0..n as i64).collect())?;
        let positions = if self.all_logits { n } else { 1 };
        self.prefill_logits.resize(positions * vocab, 0.0);
        let total = self.prefill_logits.len();
        let logits = view(
            &self.host_memory,
            self.prefill_logits.as_mut_ptr(),
            total,
            0,
            total,
            &[1, positions as i64, vocab as i64],
        )?;
        binding.bind_output("logits", logits).map_err(ort_error)?;
        self.session.run_binding(&binding).map_err(ort_error)?;
        drop(binding);
        Ok(&mut self.prefill_logits[(positions - 1) * vocab..])
    }

    /// One decode step over rows `0..tokens.len()`: row `r` feeds `tokens[r]` after the `lengths[r]` tokens
    /// its slot's row already holds. Returns the logits, `vocab` per row.
    pub(crate) fn decode(&mut self, tokens: &[u32], lengths: &[usize]) -> Result<&mut [f32], EngineError> {
        let rows = tokens.len();
        if rows == 0 || rows > self.slots || lengths.len() != rows {
            return Err(EngineError::Input(format!("a decode step of {rows} rows over {} slots", self.slots)));
        }
        if let Some(&full) = lengths.iter().find(|&&l| l >= self.slot_tokens) {
            return Err(EngineError::Input(format!("a row of {full} tokens has no room left")));
        }
        if self.decode.as_ref().is_none_or(|d| d.rows != rows) {
            // The old binding's views go before new ones are made (they point into the same buffers).
            self.decode = None;
            let mut binding = self.session.create_binding().map_err(ort_error)?;
            self.bind_cache(&mut binding, 0, rows)?;
            let len = self.logits.len();
            let dims = [rows as i64, 1, self.shape.vocab_size as i64];
            let logits = view(&self.host_memory, self.logits.as_mut_ptr(), len, 0, rows * dims[2] as usize, &dims)?;
            binding.bind_output("logits", logits).map_err(ort_error)?;
            self.decode = Some(DecodeBinding { binding, rows });
        }
        let width = lengths.iter().max().map_or(1, |l| l + 1);
        let mut mask = vec![0i64; rows * width];
        for (row, &len) in lengths.iter().enumerate() {
            mask[row * width..row * width + len + 1].fill(1);
        }
        let ids = tokens.iter().map(|&t| i64::from(t)).collect();
        let positions = lengths.iter().map(|&l| l as i64).collect();
        let Some(decode) = self.decode.as_mut() else {
            return Err(EngineError::Session("no decode binding".into()));
        };
        bind_i64(&mut decode.binding, "input_ids", [rows, 1], ids)?;
        bind_i64(&mut decode.binding, "attention_mask", [rows, width], mask)?;
        bind_i64(&mut decode.binding, "position_ids", [rows, 1], positions)?;
        self.session.run_binding(&decode.binding).map_err(ort_error)?;
        Ok(&mut self.logits[..rows * self.shape.vocab_size])
    }
}

fn bind_i64(binding: &mut IoBinding, name: &str, shape: [usize; 2], data: Vec<i64>) -> Result<(), EngineError> {
    let tensor = Tensor::<i64>::from_array((shape, data)).map_err(ort_error)?;
    binding.bind_input(name, &tensor).map_err(ort_error)
}

/// A float tensor of shape `dims` over `len` elements at `offset` of the `total` elements at `base`, not owning
/// them (released without freeing the memory).
#[allow(unsafe_code)]
fn view(
    memory: &MemoryInfo<'static>,
    base: *mut f32,
    total: usize,
    offset: usize,
    len: usize,
    dims: &[i64],
) -> Result<DynTensor, EngineError> {
    let elements: i64 = dims.iter().product();
    if offset + len > total || elements < 0 || elements as usize != len {
        return Err(EngineError::Session(format!("a view of {dims:?} at {offset} outside a buffer of {total}")));
    }
    let mut value: *mut ort::sys::OrtValue = std::ptr::null_mut();
    // SAFETY: `base` points to `total` floats on `memory`'s device, owned by the `BatchGraph` that asked for this
    // view (boxed slices or device tensors, never resized or moved while it lives); `offset + len <= total` was
    // checked. The tensor does not own the memory: ReleaseValue frees only the OrtValue. Every view is held by an
    // IoBinding or by a local of a `BatchGraph` method, both dropped before the buffers (field order).
    unsafe {
        let status = (ort::api().CreateTensorWithDataAsOrtValue)(
            memory.ptr(),
            base.add(offset).cast(),
            len * std::mem::size_of::<f32>(),
            dims.as_ptr(),
            dims.len(),
            ort::sys::ONNXTensorElementDataType::ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT,
            &mut value,
        );
        ort::Error::result_from_status(status).map_err(ort_error)?;
        let value =
            NonNull::new(value).ok_or_else(|| EngineError::Session("ONNX Runtime returned no tensor".into()))?;
        Ok(Value::from_ptr(value, Some(&Allocator::default())))
    }
}
