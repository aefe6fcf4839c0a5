//! Finding and loading the ONNX Runtime shared library (crate `ort` with `load-dynamic`), once per process,
//! and building sessions on the requested device.
//!
//! The library is looked up in this order: `ORT_DYLIB_PATH`; `.local/onnxruntime/lib/libonnxruntime.so` in the
//! folder of the running binary or any folder above it (a checkout's `target/<profile>/bonsai`), then in the
//! current directory or above; then the checkout this crate was built from. `scripts/install-onnxruntime.sh`
//! puts it there.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use super::{Device, EngineError, EngineOptions};

/// Where the install script puts the library, relative to a checkout's root.
const LOCAL_LIB: &str = ".local/onnxruntime/lib/libonnxruntime.so";
/// The fix named in every library error.
pub(crate) const INSTALL_HINT: &str =
    "run scripts/install-onnxruntime.sh (or point ORT_DYLIB_PATH at libonnxruntime.so 1.31 or newer)";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();

/// The library path the process will load.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    // The checkout this crate was compiled in (ml/..): tests and `cargo run` find the library from anywhere.
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    roots
        .iter()
        .map(|root| root.join(LOCAL_LIB))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| PathBuf::from(LOCAL_LIB))
}

/// The process-wide ONNX Runtime environment, loading the library on first use. A missing or too old library
/// is an error naming the install script, never a panic; the outcome is remembered for the process.
pub(crate) fn environment() -> Result<&'static Environment, EngineError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let path = library_path();
        if !path.exists() {
            return Err(format!("ONNX Runtime library not found at {}", path.display()));
        }
        let builder = ort::init_from(&path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        builder
            .with_name("bonsai")
            .with_telemetry(false)
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))
    });
    result.as_ref().map_err(|message| EngineError::Runtime(format!("{message}; {INSTALL_HINT}")))
}

/// Whether the loaded library carries the CUDA execution provider (the `onnxruntime-gpu` build).
pub fn cuda_available() -> Result<bool, EngineError> {
    environment()?;
    ort::ep::CUDA::is_available().map_err(|e| EngineError::Runtime(e.to_string()))
}

/// The device a request resolves to on this machine: `auto` takes CUDA where the library has it, with a log
/// line when it falls back; `cuda` without the provider is an error.
pub(crate) fn resolve_device(requested: Device) -> Result<Device, EngineError> {
    match requested {
        Device::Cpu => Ok(Device::Cpu),
        Device::Cuda if cuda_available()? => Ok(Device::Cuda),
        Device::Cuda => Err(EngineError::CudaUnavailable(format!(
            "the ONNX Runtime library at {} has no CUDA execution provider; install the GPU build with \
             `scripts/install-onnxruntime.sh --gpu` (needs CUDA 12 and cuDNN 9), or use --device cpu",
            library_path().display()
        ))),
        Device::Auto if cuda_available()? => Ok(Device::Cuda),
        Device::Auto => {
            tracing::info!("no CUDA execution provider in the loaded ONNX Runtime library; running on the CPU");
            Ok(Device::Cpu)
        }
    }
}

/// Builds one inference session for `model` on an already resolved device.
pub(crate) fn session(model: &Path, device: Device, options: &EngineOptions) -> Result<Session, EngineError> {
    let env = environment()?;
    let fail = |e: ort::Error<ort::session::builder::SessionBuilder>| EngineError::Session(e.to_string());
    let mut builder = Session::builder(env)
        .map_err(|e| EngineError::Session(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(fail)?
        .with_inter_threads(1)
        .map_err(fail)?;
    if options.threads > 0 {
        builder = builder.with_intra_threads(options.threads).map_err(fail)?;
    }
    if !options.spin {
        builder = builder.with_intra_op_spinning(false).map_err(fail)?;
    }
    if device == Device::Cuda {
        let cuda = ort::ep::CUDA::default().build().error_on_failure();
        builder = builder
            .with_execution_providers([cuda])
            .map_err(|e| EngineError::CudaUnavailable(format!("cannot register the CUDA execution provider: {e}")))?;
    }
    builder.commit_from_file(model).map_err(|e| EngineError::Session(format!("{}: {e}", model.display())))
}
