//! A safe, bounds-checked front to the `gemm` crate's f32 matrix product.
//!
//! Every matrix in the trainer is a row-major f32 slice, possibly viewed with strides (an attention head is a
//! column block of the `[tokens, heads * head_dim]` projection output) or transposed (a weight `[out, in]`
//! used as `W^T`). [`MatRef`] carries those strides; [`matmul`] checks that every element the product can
//! touch lies inside the slices and only then calls the unchecked kernel.

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols, cs: 1 }
    }

    /// A row-major matrix whose rows are `rs` elements apart (a column block of a wider matrix).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self { data, rows, cols, rs, cs: 1 }
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    fn max_index(&self) -> Option<usize> {
        if self.rows == 0 || self.cols == 0 {
            return None;
        }
        Some((self.rows - 1) * self.rs + (self.cols - 1) * self.cs)
    }
}

/// A mutable row-major destination whose rows are `rs >= cols` elements apart (so no two elements alias).
pub struct MatMut<'a> {
    pub data: &'a mut [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self { data, rows, cols, rs: cols }
    }

    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        Self { data, rows, cols, rs }
    }
}

/// How a product may use threads: `Threads` at top level, `Single` inside an already parallel loop.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Par {
    Single,
    Threads,
}

/// `dst = beta * a * b` when `accumulate` is false, `dst += beta * a * b` when it is true.
///
/// Panics when the shapes disagree or a view reaches outside its slice.
pub fn matmul(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, beta: f32, accumulate: bool, par: Par) {
    assert_eq!(a.cols, b.rows, "inner dimensions differ");
    assert_eq!(dst.rows, a.rows, "output rows differ");
    assert_eq!(dst.cols, b.cols, "output columns differ");
    assert!(dst.rs >= dst.cols || dst.rows <= 1, "destination rows overlap");
    if dst.rows == 0 || dst.cols == 0 {
        return;
    }
    let dst_max = (dst.rows - 1) * dst.rs + dst.cols - 1;
    assert!(dst_max < dst.data.len(), "destination view out of bounds");
    let k = a.cols;
    if k == 0 {
        if !accumulate {
            for i in 0..dst.rows {
                dst.data[i * dst.rs..i * dst.rs + dst.cols].fill(0.0);
            }
        }
        return;
    }
    if let Some(m) = a.max_index() {
        assert!(m < a.data.len(), "left view out of bounds");
    }
    if let Some(m) = b.max_index() {
        assert!(m < b.data.len(), "right view out of bounds");
    }
    let parallelism = match par {
        Par::Single => gemm::Parallelism::None,
        Par::Threads => gemm::Parallelism::Rayon(rayon::current_num_threads()),
    };
    let to_isize = |v: usize| isize::try_from(v).expect("stride fits isize");
    // SAFETY: the asserts above guarantee that every element the product reads, (i, j) of `a` and `b` for
    // i < rows, j < cols, and writes, (i, j) of `dst`, lies inside its slice; `dst` is borrowed mutably,
    // so it aliases neither input, and its rows do not overlap (rs >= cols), so each element is written once.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            dst.rows,
            dst.cols,
            k,
            dst.data.as_mut_ptr(),
            1,
            to_isize(dst.rs),
            accumulate,
            a.data.as_ptr(),
            to_isize(a.cs),
            to_isize(a.rs),
            b.data.as_ptr(),
            to_isize(b.cs),
            to_isize(b.rs),
            1.0,
            beta,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `y[m, n] (+)= x[m, k] * w[n, k]^T`: a linear layer with an `[out, in]` weight.
pub fn linear_fwd(y: &mut [f32], x: &[f32], w: &[f32], m: usize, k: usize, n: usize, acc: bool) {
    matmul(MatMut::new(y, m, n), MatRef::new(x, m, k), MatRef::new(w, n, k).t(), 1.0, acc, Par::Threads);
}

/// `dx[m, k] (+)= dy[m, n] * w[n, k]`: the input gradient of a linear layer.
pub fn linear_bwd_x(dx: &mut [f32], dy: &[f32], w: &[f32], m: usize, k: usize, n: usize, acc: bool) {
    matmul(MatMut::new(dx, m, k), MatRef::new(dy, m, n), MatRef::new(w, n, k), 1.0, acc, Par::Threads);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposed_and_strided_products_match_a_naive_loop() {
        let a: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect(); // [3, 4]
        let b: Vec<f32> = (0..8).map(|v| (v as f32).sin()).collect(); // [2, 4] used as b^T
        let mut out = vec![1.0f32; 6];
        matmul(MatMut::new(&mut out, 3, 2), MatRef::new(&a, 3, 4), MatRef::new(&b, 2, 4).t(), 2.0, true, Par::Single);
        for i in 0..3 {
            for j in 0..2 {
                let dot: f32 = (0..4).map(|k| a[i * 4 + k] * b[j * 4 + k]).sum();
                assert!((out[i * 2 + j] - (1.0 + 2.0 * dot)).abs() < 1e-5);
            }
        }
        // Columns 1..3 of `a` as a [3, 2] view times a [2, 2] block.
        let mut out2 = vec![0.0f32; 6];
        matmul(
            MatMut::new(&mut out2, 3, 2),
            MatRef::strided(&a[1..], 3, 2, 4),
            MatRef::new(&b[..4], 2, 2),
            1.0,
            false,
            Par::Threads,
        );
        for i in 0..3 {
            for j in 0..2 {
                let dot = a[i * 4 + 1] * b[j] + a[i * 4 + 2] * b[2 + j];
                assert!((out2[i * 2 + j] - dot).abs() < 1e-5);
            }
        }
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn a_view_past_the_slice_is_refused() {
        let a = vec![0.0f32; 5];
        let mut out = vec![0.0f32; 4];
        matmul(MatMut::new(&mut out, 2, 2), MatRef::new(&a, 2, 3), MatRef::new(&a, 3, 2), 1.0, false, Par::Single);
    }
}
