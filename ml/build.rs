//! Builds the device trainer's kernel source as plain C into the emulated backend
//! (`train::gpu::emu`), so the GPU code path runs, and is tested, on any machine.

fn main() {
    let src = "src/train/gpu/kernels.cu";
    println!("cargo:rerun-if-changed={src}");
    cc::Build::new()
        .file(src)
        .define("BONSAI_EMU", None)
        .flag("-xc")
        .flag("-std=c11")
        .flag_if_supported("-ffp-contract=off")
        .opt_level(2)
        .warnings(true)
        .compile("bonsai_gpu_emu");
}
