//! The SwiGLU gate of a Llama MLP: `a = silu(g) * u`, on a fused `[rows, 2 * inter]` gate|up buffer.

use rayon::prelude::*;

use super::fastmath::sigmoid;

/// `a[r, i] = silu(gu[r, i]) * gu[r, inter + i]`.
pub fn swiglu_fwd(a: &mut [f32], gu: &[f32], inter: usize) {
    assert_eq!(gu.len(), a.len() * 2);
    a.par_chunks_mut(inter).zip(gu.par_chunks(2 * inter)).with_min_len(8).for_each(|(ar, gur)| {
        let (g, u) = gur.split_at(inter);
        for ((av, gv), uv) in ar.iter_mut().zip(g).zip(u) {
            *av = gv * sigmoid(*gv) * uv;
        }
    });
}

/// Gradients of the gate and up halves (written into the fused `dgu`) from the output gradient `da`.
pub fn swiglu_bwd(dgu: &mut [f32], da: &[f32], gu: &[f32], inter: usize) {
    assert_eq!(gu.len(), da.len() * 2);
    assert_eq!(dgu.len(), gu.len());
    dgu.par_chunks_mut(2 * inter).zip(da.par_chunks(inter)).zip(gu.par_chunks(2 * inter)).with_min_len(8).for_each(
        |((dr, dar), gur)| {
            let (g, u) = gur.split_at(inter);
            let (dg, du) = dr.split_at_mut(inter);
            for i in 0..inter {
                let s = sigmoid(g[i]);
                let silu = g[i] * s;
                du[i] = dar[i] * silu;
                dg[i] = dar[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
            }
        },
    );
}
