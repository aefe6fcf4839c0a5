//! The CUDA backend: the CUDA driver API for memory and launches, cuBLAS for the GEMMs (f32; TF32 tensor
//! cores when `BONSAI_CUDA_TF32=1`, as PyTorch's `allow_tf32`), and `kernels.cu` compiled by NVRTC for the
//! GPU in use when the trainer starts. All three libraries are loaded at run time (`cudarc`'s dynamic
//! loading), so a build with the `cuda` feature runs anywhere and says clearly when no GPU or library is
//! there. One stream; every host copy waits for it.

#![allow(unsafe_code)]

use super::backend::{Backend, ColGemm, KArgs, KERNELS};
use crate::train::error::TrainError;
use cudarc::cublas::{result as blas, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    result as drv, CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys, Ptx};
use std::collections::HashMap;
use std::sync::Arc;

/// Threads per block of the row kernels.
const THREADS: u32 = 256;

/// The kernel source, compiled by NVRTC (the emulator compiles the same file as C).
const SOURCE: &str = include_str!("kernels.cu");

// SAFETY: `KArgs` is `#[repr(C)]` plain data (u64, i64 and f32 arrays) with the layout of the C struct the
// kernels take by value.
unsafe impl DeviceRepr for KArgs {}

/// A CUDA GPU.
pub struct Cuda {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    funcs: HashMap<&'static str, CudaFunction>,
    bufs: Vec<CudaSlice<f32>>,
    bytes: usize,
    name: String,
}

fn dev_err(what: &str) -> impl Fn(&dyn std::fmt::Display) -> TrainError + '_ {
    move |e| TrainError::Device(format!("{what}: {e}"))
}

fn driver<T>(what: &str, r: Result<T, drv::DriverError>) -> Result<T, TrainError> {
    r.map_err(|e| dev_err(what)(&e))
}

/// Compiles `kernels.cu` with NVRTC into machine code (a CUBIN) for one GPU architecture (`sm_90`). Machine
/// code, not PTX: the driver need not JIT it, so an NVRTC newer than the driver still works. Needs only
/// libnvrtc, no GPU.
pub fn compile_kernels(arch: &str) -> Result<Vec<u8>, TrainError> {
    // SAFETY: only tries to dlopen libnvrtc.
    if !unsafe { nvrtc_sys::is_culib_present() } {
        return Err(TrainError::DeviceUnavailable("cuda: libnvrtc (CUDA 13) is not on LD_LIBRARY_PATH".into()));
    }
    let fail = |step: &str, e: &dyn std::fmt::Display| TrainError::Device(format!("NVRTC {step} kernels.cu: {e}"));
    let src = std::ffi::CString::new(SOURCE).expect("no NUL in the kernel source");
    let name = std::ffi::CString::new("kernels.cu").expect("no NUL");
    let prog = nvrtc::create_program(&src, Some(&name)).map_err(|e| fail("creating", &format!("{e:?}")))?;
    let opts = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string()];
    // SAFETY: `prog` was created above and is destroyed once, at the end; the buffers passed to the size and
    // copy calls are sized from NVRTC's own answers.
    let out = unsafe {
        let compiled = nvrtc::compile_program(prog, &opts);
        let result = match compiled {
            Err(e) => {
                let log = nvrtc::get_program_log(prog).unwrap_or_default();
                let log: String = log.iter().take_while(|c| **c != 0).map(|c| *c as u8 as char).collect();
                Err(fail("compiling", &format!("{e:?}: {log}")))
            }
            Ok(()) => {
                let mut size = 0usize;
                let mut r = nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size).result();
                let mut cubin = vec![0u8; size];
                if r.is_ok() {
                    r = nvrtc_sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()).result();
                }
                r.map(|_| cubin).map_err(|e| fail("reading the CUBIN of", &format!("{e:?}")))
            }
        };
        let _ = nvrtc::destroy_program(prog);
        result
    };
    out
}

impl Cuda {
    /// Opens GPU `ordinal`: loads the libraries, compiles the kernels and creates the cuBLAS handle.
    pub fn new(ordinal: usize) -> Result<Self, TrainError> {
        // cudarc panics when a library is missing; say so as an error instead.
        std::panic::catch_unwind(|| Self::open(ordinal)).unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown failure".into());
            Err(TrainError::DeviceUnavailable(format!("cuda: {msg}")))
        })
    }

    fn open(ordinal: usize) -> Result<Self, TrainError> {
        let unavailable = |why: String| TrainError::DeviceUnavailable(format!("cuda: {why}"));
        // SAFETY: these only try to dlopen the libraries.
        let (has_driver, has_blas, has_nvrtc) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::cublas::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
            )
        };
        if !has_driver {
            return Err(unavailable("the NVIDIA driver library (libcuda.so) is not installed".into()));
        }
        if !has_blas || !has_nvrtc {
            return Err(unavailable(
                "libcublas and libnvrtc (CUDA 13) must be on LD_LIBRARY_PATH, e.g. from the nvidia-cublas and \
                 nvidia-cuda-nvrtc Python wheels or a CUDA toolkit"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| unavailable(format!("no usable GPU ({e})")))?;
        if ordinal >= count.max(0) as usize {
            return Err(unavailable(format!("GPU {ordinal} asked for, {count} visible")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable(format!("GPU {ordinal}: {e}")))?;
        // One stream and raw addresses: cudarc's per-buffer event tracking has nothing to order.
        // SAFETY: no other stream uses this context's buffers.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = driver("compute capability", ctx.compute_capability())?;
        let name = driver("device name", ctx.name())?;
        let cubin = compile_kernels(&format!("sm_{major}{minor}"))?;
        let module = driver("loading the kernels", ctx.load_module(Ptx::from_binary(cubin)))?;
        let mut funcs = HashMap::new();
        for k in KERNELS {
            funcs.insert(k, driver(k, module.load_function(k))?);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| dev_err("cuBLAS")(&e))?;
        if std::env::var("BONSAI_CUDA_TF32").is_ok_and(|v| v == "1") {
            // SAFETY: a valid handle; the mode only changes how f32 GEMMs use tensor cores.
            unsafe { blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH) }
                .result()
                .map_err(|e| dev_err("cuBLAS math mode")(&e))?;
        }
        Ok(Self {
            ctx,
            stream,
            blas,
            funcs,
            bufs: Vec::new(),
            bytes: 0,
            name: format!("cuda:{ordinal} ({name}, sm_{major}{minor})"),
        })
    }

    fn bind(&self) -> Result<(), TrainError> {
        driver("binding the context", self.ctx.bind_to_thread())
    }

    fn sync(&self) -> Result<(), TrainError> {
        driver("synchronising", self.stream.synchronize())
    }
}

impl Backend for Cuda {
    fn block_threads(&self) -> u32 {
        THREADS
    }

    fn alloc(&mut self, n: usize) -> Result<u64, TrainError> {
        self.bind()?;
        let buf = driver("allocating device memory", self.stream.alloc_zeros::<f32>(n.max(1)))?;
        let addr = buf.device_ptr(&self.stream).0;
        self.bytes += 4 * n.max(1);
        self.bufs.push(buf);
        Ok(addr)
    }

    fn upload(&mut self, dst: u64, src: &[f32]) -> Result<(), TrainError> {
        self.bind()?;
        // SAFETY: `dst` is inside a buffer of this backend (the trainer's offsets stay inside the sizes it
        // allocated); `src` stays borrowed until the stream is synchronised below.
        driver("copying to the GPU", unsafe { drv::memcpy_htod_async(dst, src, self.stream.cu_stream()) })?;
        self.sync()
    }

    fn download(&mut self, src: u64, dst: &mut [f32]) -> Result<(), TrainError> {
        self.bind()?;
        // SAFETY: as in `upload`; `dst` is written before this returns (the stream is synchronised).
        driver("copying from the GPU", unsafe { drv::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) })?;
        self.sync()
    }

    fn zero(&mut self, dst: u64, n: usize) -> Result<(), TrainError> {
        self.bind()?;
        // SAFETY: `n` f32 from `dst` lie in one of this backend's buffers.
        driver("clearing device memory", unsafe { drv::memset_d8_async(dst, 0, 4 * n, self.stream.cu_stream()) })
    }

    fn copy(&mut self, dst: u64, src: u64, n: usize) -> Result<(), TrainError> {
        self.bind()?;
        // SAFETY: both ranges lie in this backend's buffers and do not overlap (distinct buffers).
        driver("copying on the GPU", unsafe { drv::memcpy_dtod_async(dst, src, 4 * n, self.stream.cu_stream()) })
    }

    fn launch(&mut self, name: &'static str, grid: u32, args: &KArgs) -> Result<(), TrainError> {
        self.bind()?;
        let f = self.funcs.get(name).ok_or_else(|| TrainError::Device(format!("no kernel named {name}")))?;
        let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 };
        let mut b = self.stream.launch_builder(f);
        b.arg(args);
        // SAFETY: every kernel takes exactly one `KArgs` by value, and reads and writes only through the
        // addresses in it, which the trainer takes from this backend's buffers with offsets inside them (the
        // emulated backend checks the same calls against its buffers in the test suite).
        unsafe { b.launch(cfg) }.map(|_| ()).map_err(|e| dev_err(name)(&e))
    }

    fn gemm(&mut self, g: &ColGemm) -> Result<(), TrainError> {
        self.bind()?;
        let op = |t: bool| {
            if t {
                blas_sys::cublasOperation_t::CUBLAS_OP_T
            } else {
                blas_sys::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let i = |v: usize| v as std::ffi::c_int;
        let l = |v: usize| v as std::ffi::c_longlong;
        // SAFETY: the operands are addresses inside this backend's buffers, shaped and strided as cuBLAS
        // expects (checked call by call by the emulated backend in the test suite); alpha and beta are host
        // values (cuBLAS's default pointer mode).
        unsafe {
            blas::sgemm_strided_batched(
                *self.blas.handle(),
                op(g.transa),
                op(g.transb),
                i(g.m),
                i(g.n),
                i(g.k),
                &g.alpha,
                g.a as *const f32,
                i(g.lda),
                l(g.stride_a),
                g.b as *const f32,
                i(g.ldb),
                l(g.stride_b),
                &g.beta,
                g.c as *mut f32,
                i(g.ldc),
                l(g.stride_c),
                i(g.batch),
            )
        }
        .map_err(|e| dev_err("cuBLAS sgemm")(&e))
    }

    fn bytes(&self) -> usize {
        self.bytes
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
