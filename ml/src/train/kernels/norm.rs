//! RMSNorm forward and backward over the rows of a `[rows, n]` matrix.
//!
//! `y = x * r * w` with `r = 1 / sqrt(mean(x^2) + eps)`. The forward saves `r` per row; the backward is
//! `dx = r * g - x * r^3 * mean(g * x)` with `g = dy * w` (the weight is frozen, so it gets no gradient).

use rayon::prelude::*;

/// Rows handed to one rayon task: enough work to amortise the task, small enough to balance two cores.
pub(crate) const ROWS_PER_TASK: usize = 16;

/// Normalises each row of `x` into `y`, writing `1 / rms` of each row into `inv_rms`.
pub fn rmsnorm_fwd(y: &mut [f32], inv_rms: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let n = w.len();
    assert_eq!(y.len(), x.len());
    assert_eq!(x.len(), inv_rms.len() * n);
    y.par_chunks_mut(n).zip(inv_rms.par_iter_mut()).zip(x.par_chunks(n)).with_min_len(ROWS_PER_TASK).for_each(
        |((yr, r), xr)| {
            let ss: f32 = xr.iter().map(|v| v * v).sum();
            let inv = 1.0 / (ss / n as f32 + eps).sqrt();
            *r = inv;
            for ((yv, xv), wv) in yr.iter_mut().zip(xr).zip(w) {
                *yv = xv * inv * wv;
            }
        },
    );
}

/// Writes (or with `accumulate`, adds) the input gradient of [`rmsnorm_fwd`] into `dx`.
pub fn rmsnorm_bwd(dx: &mut [f32], dy: &[f32], x: &[f32], w: &[f32], inv_rms: &[f32], accumulate: bool) {
    let n = w.len();
    assert_eq!(dx.len(), x.len());
    assert_eq!(dy.len(), x.len());
    assert_eq!(x.len(), inv_rms.len() * n);
    dx.par_chunks_mut(n)
        .zip(dy.par_chunks(n))
        .zip(x.par_chunks(n))
        .zip(inv_rms.par_iter())
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(((dxr, dyr), xr), &r)| {
            let dot: f32 = dyr.iter().zip(w).zip(xr).map(|((g, wv), xv)| g * wv * xv).sum();
            let c = r * r * r * dot / n as f32;
            if accumulate {
                for (((d, g), wv), xv) in dxr.iter_mut().zip(dyr).zip(w).zip(xr) {
                    *d += r * g * wv - xv * c;
                }
            } else {
                for (((d, g), wv), xv) in dxr.iter_mut().zip(dyr).zip(w).zip(xr) {
                    *d = r * g * wv - xv * c;
                }
            }
        });
}
