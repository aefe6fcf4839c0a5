//! The device (GPU) trainer against the CPU trainer. Everywhere, the device code path runs on the
//! emulated backend (the same kernel source compiled as C, GEMMs called as cuBLAS is called), so its
//! buffer layout, operands, strides and kernels are checked on every machine; with the `cuda` feature
//! and a GPU the same comparisons run on the GPU (skipped, with the reason printed, otherwise).

mod train_common;

use bonsai_ml::lora::{LoraConfig, LoraParams};
use bonsai_ml::model::LlamaModel;
use bonsai_ml::train::acts::Arena;
use bonsai_ml::train::backward::backward;
use bonsai_ml::train::base::FrozenBase;
use bonsai_ml::train::checkpoint;
use bonsai_ml::train::data::{Batch, Example};
use bonsai_ml::train::forward::{forward_blocks, head_loss, logits};
use bonsai_ml::train::gpu::{self, Accelerator};
use bonsai_ml::train::optim::AdamWConfig;
use bonsai_ml::train::{Hyper, Session, StopReason, TrainError};
use std::sync::atomic::{AtomicBool, Ordering};
use train_common::{random_lora, small_model, synthetic_examples};

/// `max |a - b| / max |b|` (b the CPU reference), asserting it is below `tol`.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (worst, at) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| ((g - w).abs(), i))
        .fold((0.0f32, 0), |acc, x| if x.0 > acc.0 { x } else { acc });
    assert!(
        worst / scale < tol,
        "{what}: max diff {worst} at {at} (got {}, want {}), scale {scale}",
        got[at],
        want[at]
    );
}

/// A model variant and its adapters for the comparisons.
struct Case {
    name: &'static str,
    model: fn() -> LlamaModel,
    targets: &'static str,
}

fn mistral() -> LlamaModel {
    let mut m = small_model(false);
    m.config.sliding_window = Some(5);
    m
}

const CASES: [Case; 3] = [
    Case { name: "llama, every target", model: || small_model(false), targets: "all" },
    Case { name: "qwen2 (q/k/v bias, untied head), q,v", model: || small_model(true), targets: "q,v,o" },
    Case { name: "mistral sliding window, gate,up,down", model: mistral, targets: "k,gate,up,down" },
];

fn batch(examples: &[Example]) -> Batch {
    Batch::new(&examples.iter().collect::<Vec<_>>(), 0)
}

/// Loss, LoRA gradients and logits of one micro-batch on the device equal the CPU trainer's, with every
/// head's attention scores in one pass and with one head per pass (a scratch budget of one byte).
fn compare_with_cpu(acc: Accelerator) -> Result<(), TrainError> {
    for scratch in [gpu::trainer::SCRATCH_BYTES, 1] {
        compare_with_cpu_in(acc, scratch)?;
    }
    Ok(())
}

fn compare_with_cpu_in(acc: Accelerator, scratch: usize) -> Result<(), TrainError> {
    for case in &CASES {
        let model = (case.model)();
        let lora = random_lora(&model.config, case.targets, 4, 0.0);
        let base = FrozenBase::from_model(model, 32);
        let ex = synthetic_examples(3, 300, 9);
        let b = batch(&ex);
        let weights = b.weights(b.counted);

        let mut arena = Arena::new(&base, &lora, b.batch, b.seq);
        forward_blocks(&base, &lora, &mut arena, &b.tokens, b.batch, b.seq, None);
        let cpu_loss = head_loss(&base, &mut arena, &b.targets, &weights);
        let mut cpu_grads = vec![0.0; lora.values.len()];
        backward(&base, &lora, &mut arena, &mut cpu_grads, b.batch, b.seq);
        let cpu_logits = logits(&base, &lora, &mut arena, &b.tokens, b.batch, b.seq);

        let mut dev = gpu::open_with(acc, &base, &lora, b.batch, b.seq, scratch)?;
        dev.set_lora(&lora)?;
        dev.zero_grads()?;
        let dev_loss = dev.micro_batch(&b, &weights, None, true)?;
        // A second micro-batch accumulates, as gradient accumulation needs.
        dev.micro_batch(&b, &weights, None, true)?;
        let mut dev_grads = vec![0.0; lora.values.len()];
        dev.read_grads(&mut dev_grads)?;
        let dev_logits = dev.logits(&b.tokens, b.batch, b.seq)?;

        let name = &format!("{} (scratch {scratch} B)", case.name);
        assert!((dev_loss - cpu_loss).abs() < 1e-5 * cpu_loss.abs(), "{name}: loss {dev_loss} vs {cpu_loss}");
        let twice: Vec<f32> = cpu_grads.iter().map(|g| 2.0 * g).collect();
        assert_close(&format!("{name}: gradients"), &dev_grads, &twice, 1e-4);
        assert_close(&format!("{name}: logits"), &dev_logits, &cpu_logits, 1e-5);
        assert!(twice.iter().any(|g| g.abs() > 1e-6), "{name}: gradients are not all zero");
    }
    Ok(())
}

#[test]
fn the_emulated_device_computes_the_cpu_trainers_loss_gradients_and_logits() {
    compare_with_cpu(Accelerator::Emulated).expect("emulated device");
}

#[test]
fn a_batch_longer_than_the_device_buffers_is_refused() {
    let model = small_model(false);
    let lora = random_lora(&model.config, "q,v", 2, 0.0);
    let base = FrozenBase::from_model(model, 32);
    let ex = synthetic_examples(3, 300, 9);
    let b = batch(&ex);
    let mut dev = gpu::open(Accelerator::Emulated, &base, &lora, 2, b.seq).unwrap();
    let weights = b.weights(b.counted);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dev.micro_batch(&b, &weights, None, false)));
    assert!(r.is_err(), "3 sequences do not fit buffers made for 2");
}

fn hyper(dropout_steps: usize) -> Hyper {
    Hyper {
        lr: 5e-3,
        epochs: 2,
        max_steps: Some(dropout_steps),
        batch_size: 3,
        grad_accum: 2,
        warmup_steps: 1,
        schedule: bonsai_ml::train::optim::LrSchedule::Cosine,
        max_grad_norm: 0.5,
        seed: 7,
        adamw: AdamWConfig { weight_decay: 0.01, ..AdamWConfig::default() },
        eval_every: 2,
        patience: None,
        checkpoint_every: 2,
        pad_id: 0,
    }
}

fn session(device: Option<Accelerator>, dropout: f32, steps: usize) -> Result<Session, TrainError> {
    let model = small_model(true);
    let config = LoraConfig {
        rank: 4,
        alpha: 8.0,
        dropout,
        targets: bonsai_ml::lora::Target::parse_list("q,v,down").unwrap(),
        use_rslora: false,
    };
    let lora = LoraParams::init(config, &model.config, 3);
    let base = FrozenBase::from_model(model, 32);
    let data = synthetic_examples(14, 300, 1);
    Session::on(device, base, lora, hyper(steps), data[..11].to_vec(), data[11..].to_vec())
}

#[test]
fn a_run_on_the_emulated_device_follows_the_cpu_loss_curve() {
    let never = AtomicBool::new(false);
    let mut cpu = session(None, 0.0, 4).unwrap();
    cpu.run(&mut |_| {}, &never, &mut |_| Ok(())).unwrap();
    let mut dev = session(Some(Accelerator::Emulated), 0.0, 4).unwrap();
    assert!(dev.device().contains("emulated"), "{}", dev.device());
    dev.run(&mut |_| {}, &never, &mut |_| Ok(())).unwrap();
    assert_eq!(dev.state.history.len(), 4);
    for (d, c) in dev.state.history.iter().zip(&cpu.state.history) {
        assert!((d.loss - c.loss).abs() < 1e-4 * c.loss, "step {}: {} vs {}", c.step, d.loss, c.loss);
        let (de, ce) = (d.eval_loss.unwrap_or(0.0), c.eval_loss.unwrap_or(0.0));
        assert!((de - ce).abs() < 1e-4 * ce.max(1e-9), "eval at step {}: {de} vs {ce}", c.step);
    }
    assert_close("adapter after 4 steps", &dev.lora.values, &cpu.lora.values, 1e-3);
}

#[test]
fn device_dropout_is_seeded_and_a_resumed_device_run_repeats_its_loss_curve() {
    let never = AtomicBool::new(false);
    let out = tempfile::tempdir().unwrap();
    let save = |s: &Session| checkpoint::save(s, &checkpoint::dir_for(out.path(), s.state.step), "tiny");
    let mut full = session(Some(Accelerator::Emulated), 0.2, 6).unwrap();
    full.run(&mut |_| {}, &never, &mut |s| save(s)).unwrap();
    let curve = full.state.history.clone();
    let mut plain = session(Some(Accelerator::Emulated), 0.0, 6).unwrap();
    plain.run(&mut |_| {}, &never, &mut |_| Ok(())).unwrap();
    assert!(curve.iter().all(|r| r.loss.is_finite()));
    // B starts at zero, so dropout on the adapters' inputs changes nothing until the first update.
    assert_eq!(curve[0].loss, plain.state.history[0].loss);
    assert_ne!(curve[2].loss, plain.state.history[2].loss, "dropout changes later steps");

    let out2 = tempfile::tempdir().unwrap();
    let save2 = |s: &Session| checkpoint::save(s, &checkpoint::dir_for(out2.path(), s.state.step), "tiny");
    let mut first = session(Some(Accelerator::Emulated), 0.2, 6).unwrap();
    let cancel = AtomicBool::new(false);
    let stop = first.run(&mut |p| cancel.store(p.step == 2, Ordering::Relaxed), &cancel, &mut |s| save2(s)).unwrap();
    assert_eq!(stop, StopReason::Cancelled);
    let mut resumed = session(Some(Accelerator::Emulated), 0.2, 6).unwrap();
    checkpoint::load(&mut resumed, &checkpoint::dir_for(out2.path(), 2)).unwrap();
    resumed.run(&mut |_| {}, &never, &mut |s| save2(s)).unwrap();
    assert_eq!(resumed.state.history, curve, "same losses, evaluations included");
    assert_eq!(resumed.lora.values, full.lora.values);
}

/// On a machine with the `cuda` feature and a GPU: the same comparison on the real device.
#[test]
fn the_cuda_device_computes_the_cpu_trainers_loss_gradients_and_logits() {
    if !cfg!(feature = "cuda") {
        eprintln!("skipped: built without the `cuda` feature");
        return;
    }
    match compare_with_cpu(Accelerator::Cuda(0)) {
        Ok(()) => {}
        Err(TrainError::DeviceUnavailable(why)) => eprintln!("skipped: {why}"),
        Err(e) => panic!("CUDA trainer: {e}"),
    }
}

/// With the `cuda` feature and libnvrtc present (no GPU needed): the kernel source compiles for the GPU and
/// defines every kernel the backend loads.
#[cfg(feature = "cuda")]
#[test]
fn the_kernel_source_compiles_with_nvrtc() {
    match bonsai_ml::train::gpu::cuda::compile_kernels("sm_90") {
        Ok(cubin) => {
            assert_eq!(&cubin[..4], b"\x7fELF", "a CUBIN is an ELF file");
            for k in bonsai_ml::train::gpu::backend::KERNELS {
                let sym = format!("\0{k}\0");
                assert!(cubin.windows(sym.len()).any(|w| w == sym.as_bytes()), "kernel {k} missing from the CUBIN");
            }
        }
        Err(TrainError::DeviceUnavailable(why)) => eprintln!("skipped: {why}"),
        Err(e) => panic!("{e}"),
    }
}
