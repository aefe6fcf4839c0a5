//! Each hand-written backward of the trainer checked against central finite differences of its forward,
//! on small random inputs. The probe is `L = sum(R * f(x))` for a fixed random `R`, so `dL/df = R`.

use bonsai_ml::lora::linear::{lora_bwd, lora_fwd, LoraDims, LoraGrads};
use bonsai_ml::train::kernels::attention::{attention_bwd, attention_fwd, AttnShape};
use bonsai_ml::train::kernels::linalg::{MatMut, MatRef};
use bonsai_ml::train::kernels::loss::softmax_xent;
use bonsai_ml::train::kernels::norm::{rmsnorm_bwd, rmsnorm_fwd};
use bonsai_ml::train::kernels::rope::RopeTable;
use bonsai_ml::train::kernels::swiglu::{swiglu_bwd, swiglu_fwd};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Compares `analytic` with central differences of `loss` around `x`, on every `stride`-th coordinate.
fn check(name: &str, x: &[f32], analytic: &[f32], stride: usize, loss: &mut dyn FnMut(&[f32]) -> f64) {
    let eps = 1e-2f32;
    let mut worst = 0.0f64;
    let mut xp = x.to_vec();
    for i in (0..x.len()).step_by(stride) {
        xp[i] = x[i] + eps;
        let up = loss(&xp);
        xp[i] = x[i] - eps;
        let down = loss(&xp);
        xp[i] = x[i];
        let numeric = (up - down) / (2.0 * eps as f64);
        let err = (numeric - analytic[i] as f64).abs() / (1.0 + numeric.abs());
        worst = worst.max(err);
    }
    assert!(worst < 5e-3, "{name}: worst relative gradient error {worst}");
    assert!(analytic.iter().any(|v| v.abs() > 1e-3), "{name}: gradient is trivially zero");
}

#[test]
fn rmsnorm_backward_matches_finite_differences() {
    let mut rng = Rng(1);
    let (rows, n) = (3, 16);
    let x = rng.vec(rows * n, 1.0);
    let w = rng.vec(n, 1.0);
    let r = rng.vec(rows * n, 1.0);
    let fwd = |x: &[f32]| {
        let (mut y, mut inv) = (vec![0.0; rows * n], vec![0.0; rows]);
        rmsnorm_fwd(&mut y, &mut inv, x, &w, 1e-5);
        (dot(&y, &r), inv)
    };
    let (_, inv) = fwd(&x);
    let mut dx = vec![1.0; rows * n];
    rmsnorm_bwd(&mut dx, &r, &x, &w, &inv, false);
    check("rmsnorm", &x, &dx, 1, &mut |x| fwd(x).0);
    let mut acc = vec![1.0; rows * n];
    rmsnorm_bwd(&mut acc, &r, &x, &w, &inv, true);
    assert!(acc.iter().zip(&dx).all(|(a, d)| (a - 1.0 - d).abs() < 1e-6), "accumulate adds");
}

#[test]
fn rope_backward_matches_finite_differences_and_inverts_the_forward() {
    let mut rng = Rng(2);
    let (seq, heads, d, stride) = (5, 2, 8, 24); // 2 rotated heads + 8 untouched values per row
    let table = RopeTable::new(d, 16, 10000.0);
    let x = rng.vec(2 * seq * stride, 1.0);
    let r = rng.vec(x.len(), 1.0);
    let fwd = |x: &[f32]| {
        let mut y = x.to_vec();
        table.apply(&mut y, stride, heads, seq, false);
        y
    };
    let mut dx = r.clone();
    table.apply(&mut dx, stride, heads, seq, true);
    check("rope", &x, &dx, 1, &mut |x| dot(&fwd(x), &r));
    let mut back = fwd(&x);
    table.apply(&mut back, stride, heads, seq, true);
    assert!(back.iter().zip(&x).all(|(a, b)| (a - b).abs() < 1e-5));
    assert!(fwd(&x)[stride..].iter().zip(&x[stride..]).any(|(a, b)| (a - b).abs() > 1e-3));
}

fn attention_case(seq: usize, stride: usize, window: Option<usize>) {
    let mut rng = Rng(3 + seq as u64);
    let s = AttnShape { batch: 2, seq, heads: 4, kv_heads: 2, head_dim: 4, window };
    let qkv = rng.vec(s.batch * seq * s.qkv_width(), 1.5);
    let r = rng.vec(s.batch * seq * s.out_width(), 1.0);
    let mut lse = vec![0.0; s.batch * s.heads * seq];
    let fwd = |x: &[f32], lse: &mut Vec<f32>| {
        let mut o = vec![0.0; r.len()];
        attention_fwd(&mut o, lse, x, &s);
        dot(&o, &r)
    };
    fwd(&qkv, &mut lse);
    let mut dqkv = vec![f32::NAN; qkv.len()];
    attention_bwd(&mut dqkv, &r, &qkv, &lse, &s);
    assert!(dqkv.iter().all(|v| v.is_finite()), "every gradient element is written");
    let mut scratch = lse.clone();
    check(&format!("attention seq {seq}"), &qkv, &dqkv, stride, &mut |x| fwd(x, &mut scratch));
}

#[test]
fn causal_gqa_attention_backward_matches_finite_differences() {
    attention_case(5, 1, None);
    attention_case(37, 7, None); // crosses the 32-row block boundary of the causal products
    attention_case(37, 5, Some(6)); // Mistral's sliding window
}

#[test]
fn attention_is_causal() {
    let mut rng = Rng(9);
    let s = AttnShape { batch: 1, seq: 6, heads: 2, kv_heads: 1, head_dim: 4, window: None };
    let mut qkv = rng.vec(s.seq * s.qkv_width(), 1.0);
    let mut lse = vec![0.0; s.heads * s.seq];
    let (mut o1, mut o2) = (vec![0.0; s.seq * s.out_width()], vec![0.0; s.seq * s.out_width()]);
    attention_fwd(&mut o1, &mut lse, &qkv, &s);
    let last = (s.seq - 1) * s.qkv_width();
    qkv[last..].iter_mut().for_each(|v| *v += 3.0); // change only the last token
    attention_fwd(&mut o2, &mut lse, &qkv, &s);
    let row = s.out_width();
    assert_eq!(o1[..(s.seq - 1) * row], o2[..(s.seq - 1) * row]);
    assert_ne!(o1[(s.seq - 1) * row..], o2[(s.seq - 1) * row..]);
}

#[test]
fn swiglu_backward_matches_finite_differences() {
    let mut rng = Rng(4);
    let (rows, inter) = (3, 7);
    let gu = rng.vec(rows * 2 * inter, 2.0);
    let r = rng.vec(rows * inter, 1.0);
    let fwd = |x: &[f32]| {
        let mut a = vec![0.0; rows * inter];
        swiglu_fwd(&mut a, x, inter);
        dot(&a, &r)
    };
    let mut dgu = vec![0.0; gu.len()];
    swiglu_bwd(&mut dgu, &r, &gu, inter);
    check("swiglu", &gu, &dgu, 1, &mut |x| fwd(x));
}

#[test]
fn masked_cross_entropy_backward_matches_finite_differences() {
    let mut rng = Rng(5);
    let (rows, vocab) = (4, 11);
    let logits = rng.vec(rows * vocab, 3.0);
    let targets = [3u32, 0, 10, 5];
    let weights = [0.5f32, 0.0, 0.5, 1.0];
    let loss = |x: &[f32]| softmax_xent(&mut x.to_vec(), vocab, &targets, &weights);
    let mut grad = logits.clone();
    let value = softmax_xent(&mut grad, vocab, &targets, &weights);
    assert!((value - loss(&logits)).abs() < 1e-9);
    check("cross-entropy", &logits, &grad, 1, &mut |x| loss(x));
    assert!(grad[vocab..2 * vocab].iter().all(|v| *v == 0.0), "a masked row has no gradient");
    // A uniform row costs ln(vocab).
    let uniform = softmax_xent(&mut vec![0.25; vocab], vocab, &[2], &[1.0]);
    assert!((uniform - (vocab as f64).ln()).abs() < 1e-6);
}

#[test]
fn lora_linear_backward_matches_finite_differences() {
    let mut rng = Rng(6);
    // The branch writes into a column block (columns 2..7) of a 9-wide output, as in the fused q|k|v.
    let d = LoraDims { rows: 5, in_features: 6, out_features: 5, rank: 3, scale: 1.7 };
    let (width, col) = (9, 2);
    let x = rng.vec(d.rows * d.in_features, 1.0);
    let a = rng.vec(d.rank * d.in_features, 1.0);
    let b = rng.vec(d.out_features * d.rank, 1.0);
    let r = rng.vec(d.rows * width, 1.0);
    let fwd = |x: &[f32], a: &[f32], b: &[f32]| {
        let mut y = vec![0.0; d.rows * width];
        let mut h = vec![0.0; d.rows * d.rank];
        lora_fwd(MatMut::strided(&mut y[col..], d.rows, d.out_features, width), &mut h, x, a, b, &d);
        (dot(&y, &r), h)
    };
    let (_, h) = fwd(&x, &a, &b);
    let (mut da, mut db, mut dx) = (vec![0.0; a.len()], vec![0.0; b.len()], vec![0.0; x.len()]);
    let mut dh = vec![0.0; h.len()];
    let dy = MatRef::strided(&r[col..], d.rows, d.out_features, width);
    let grads = LoraGrads { da: &mut da, db: &mut db, dx: &mut dx, dx_accumulate: false };
    lora_bwd(grads, &mut dh, dy, &x, &h, &a, &b, &d);
    check("lora dA", &a, &da, 1, &mut |a2| fwd(&x, a2, &b).0);
    check("lora dB", &b, &db, 1, &mut |b2| fwd(&x, &a, b2).0);
    check("lora dX", &x, &dx, 1, &mut |x2| fwd(x2, &a, &b).0);
}
