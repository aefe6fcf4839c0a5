//! f32 kernels of the forward pass: GEMM through the `gemm` crate, RMSNorm, RoPE, SiLU, softmax.
//! Public so the trainer and tests can reuse the exact same arithmetic.

/// Below this many multiply-adds a GEMM runs on the calling thread: spreading tiny products over the pool
/// costs more than it saves.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;

/// General strided GEMM `dst[m,n] = a[m,k] * b[k,n]` (+ `dst` when `accumulate`), each operand described by
/// its row and column strides in elements.
#[allow(clippy::too_many_arguments)]
#[allow(unsafe_code)]
pub fn gemm_strided(
    m: usize,
    k: usize,
    n: usize,
    dst: &mut [f32],
    accumulate: bool,
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n, "dst too small");
    if k == 0 {
        if !accumulate {
            dst[..m * n].fill(0.0);
        }
        return;
    }
    // The furthest element each operand's strides reach must lie inside its slice: this is what makes
    // the raw-pointer call below sound.
    assert!((m - 1) * a_rs + (k - 1) * a_cs < a.len(), "lhs too small");
    assert!((k - 1) * b_rs + (n - 1) * b_cs < b.len(), "rhs too small");
    let par = if m * n * k >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1 {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above bound every index gemm computes from these strides within the slices;
    // dst is borrowed mutably and cannot alias a or b.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// `x[m,k] * w[n,k]^T` -> `[m,n]`: a linear layer with Hugging Face `[out, in]` weights.
pub fn matmul_t(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    gemm_strided(m, k, n, &mut out, false, x, (k, 1), w, (1, k));
    out
}

/// `a[m,k] * b[k,n]` -> `[m,n]`.
pub fn matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    gemm_strided(m, k, n, &mut out, false, a, (k, 1), b, (n, 1));
    out
}

/// RMSNorm of each row of `x` (width `weight.len()`), as transformers computes it: `w * x / sqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f64) -> Vec<f32> {
    let h = weight.len();
    let mut out = vec![0.0; x.len()];
    for (row, o) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / h as f32;
        let inv = 1.0 / (ms + eps as f32).sqrt();
        for ((o, v), w) in o.iter_mut().zip(row).zip(weight) {
            *o = w * (v * inv);
        }
    }
    out
}

/// `cos` and `sin` tables `[positions, head_dim / 2]` for positions `start..start + len`.
pub fn rope_tables(inv_freq: &[f64], start: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let mut cos = Vec::with_capacity(len * inv_freq.len());
    let mut sin = Vec::with_capacity(len * inv_freq.len());
    for p in start..start + len {
        for f in inv_freq {
            // transformers multiplies in f32; the angle is formed in f32 too so long positions round alike.
            let angle = (p as f32 * *f as f32) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// Applies RoPE in place to `x` laid out `[positions, heads, head_dim]`, in transformers' "rotate half"
/// convention (pairs are `(i, i + head_dim/2)`).
pub fn apply_rope(x: &mut [f32], heads: usize, head_dim: usize, cos: &[f32], sin: &[f32]) {
    let half = head_dim / 2;
    for (p, pos) in x.chunks_exact_mut(heads * head_dim).enumerate() {
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for head in pos.chunks_exact_mut(head_dim) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * c[i] - x2 * s[i];
                b[i] = x2 * c[i] + x1 * s[i];
            }
        }
    }
}

/// SiLU, `x * sigmoid(x)`.
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Softmax in place, numerically stable.
pub fn softmax_in_place(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    x.iter_mut().for_each(|v| *v /= sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_t_matches_a_naive_product() {
        let (m, k, n) = (3, 70, 5);
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 3) % 13) as f32 * 0.1).collect();
        let y = matmul_t(&x, &w, m, k, n);
        for i in 0..m {
            for j in 0..n {
                let naive: f32 = (0..k).map(|t| x[i * k + t] * w[j * k + t]).sum();
                assert!((y[i * n + j] - naive).abs() < 1e-3, "{i},{j}");
            }
        }
        let wt: Vec<f32> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
        let y2 = matmul(&x, &wt, m, k, n);
        assert!(y2.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-3));
    }

    #[test]
    fn rope_rotates_pairs_half_a_head_apart() {
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        let (cos, sin) = rope_tables(&[1.0, 0.5], 1, 1);
        apply_rope(&mut x, 1, 4, &cos, &sin);
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
    }
}
