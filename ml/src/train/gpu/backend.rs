//! What the device trainer needs from a device: memory addressed by `u64` (a device pointer, or a host
//! address in the emulator), copies, kernel launches by name with one [`KArgs`] block, and f32 GEMMs in
//! cuBLAS's column-major convention ([`ColGemm`], made from the trainer's row-major [`RowGemm`]).

use super::super::error::TrainError;

/// The single argument every kernel of `kernels.cu` takes: pointers, integers and floats, each kernel
/// reading the slots its comment names. Layout matches the C struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KArgs {
    pub p: [u64; 8],
    pub i: [i64; 8],
    pub f: [f32; 4],
}

impl KArgs {
    /// Builds the block from slices (at most 8 pointers, 8 integers, 4 floats).
    pub fn new(p: &[u64], i: &[i64], f: &[f32]) -> Self {
        let mut k = KArgs::default();
        k.p[..p.len()].copy_from_slice(p);
        k.i[..i.len()].copy_from_slice(i);
        k.f[..f.len()].copy_from_slice(f);
        k
    }
}

/// The kernels `kernels.cu` defines (what the CUDA backend loads).
pub const KERNELS: [&str; 12] = [
    "rmsnorm_fwd",
    "rmsnorm_bwd",
    "add_bias",
    "rope",
    "attn_softmax",
    "attn_dsoftmax",
    "swiglu_fwd",
    "swiglu_bwd",
    "gather_rows",
    "scatter_rows",
    "xent",
    "dropout",
];

/// A row-major matrix operand: address of element (0, 0) and the distance between rows, in elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mat {
    pub addr: u64,
    pub ld: usize,
}

impl Mat {
    pub fn new(addr: u64, ld: usize) -> Self {
        Self { addr, ld }
    }
}

/// `C = alpha * op(A) op(B) + beta * C` on row-major matrices (`C` is `[m, n]`, `op(A)` `[m, k]`,
/// `op(B)` `[k, n]`; `ta`/`tb` mean the operand is stored transposed), repeated `batch` times with the
/// operands `stride_*` elements further each time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowGemm {
    pub ta: bool,
    pub tb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: Mat,
    pub b: Mat,
    pub beta: f32,
    pub c: Mat,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

/// The same product as cuBLAS takes it (column-major, `C` is `[m, n]` with leading dimension `ldc`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColGemm {
    pub transa: bool,
    pub transb: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: u64,
    pub lda: usize,
    pub stride_a: usize,
    pub b: u64,
    pub ldb: usize,
    pub stride_b: usize,
    pub beta: f32,
    pub c: u64,
    pub ldc: usize,
    pub stride_c: usize,
    pub batch: usize,
}

impl From<&RowGemm> for ColGemm {
    /// A row-major matrix read as column-major is its transpose, so `C = A B` becomes `C^T = B^T A^T`:
    /// the operands swap places and keep their transpose flags and leading dimensions.
    fn from(g: &RowGemm) -> Self {
        ColGemm {
            transa: g.tb,
            transb: g.ta,
            m: g.n,
            n: g.m,
            k: g.k,
            alpha: g.alpha,
            a: g.b.addr,
            lda: g.b.ld,
            stride_a: g.stride_b,
            b: g.a.addr,
            ldb: g.a.ld,
            stride_b: g.stride_a,
            beta: g.beta,
            c: g.c.addr,
            ldc: g.c.ld,
            stride_c: g.stride_c,
            batch: g.batch,
        }
    }
}

/// A device the trainer can run on. Addresses are byte addresses; buffers hold f32 (token ids are
/// stored as the bits of u32 values).
pub trait Backend: Send {
    /// Threads per block for the row kernels (a power of two, at most 1024).
    fn block_threads(&self) -> u32;
    /// A zeroed buffer of `n` f32, alive as long as the backend.
    fn alloc(&mut self, n: usize) -> Result<u64, TrainError>;
    fn upload(&mut self, dst: u64, src: &[f32]) -> Result<(), TrainError>;
    fn download(&mut self, src: u64, dst: &mut [f32]) -> Result<(), TrainError>;
    fn zero(&mut self, dst: u64, n: usize) -> Result<(), TrainError>;
    fn copy(&mut self, dst: u64, src: u64, n: usize) -> Result<(), TrainError>;
    /// Runs kernel `name` on a one-dimensional grid of `grid` blocks.
    fn launch(&mut self, name: &'static str, grid: u32, args: &KArgs) -> Result<(), TrainError>;
    fn gemm(&mut self, g: &ColGemm) -> Result<(), TrainError>;
    /// Bytes allocated.
    fn bytes(&self) -> usize;
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_major_product_swaps_operands_for_cublas() {
        let g = RowGemm {
            ta: true,
            tb: false,
            m: 3,
            n: 5,
            k: 7,
            alpha: 2.0,
            a: Mat::new(100, 3),
            b: Mat::new(200, 5),
            beta: 1.0,
            c: Mat::new(300, 9),
            batch: 2,
            stride_a: 21,
            stride_b: 35,
            stride_c: 45,
        };
        let c = ColGemm::from(&g);
        assert_eq!((c.transa, c.transb, c.m, c.n, c.k), (false, true, 5, 3, 7));
        assert_eq!((c.a, c.lda, c.stride_a, c.b, c.ldb, c.stride_b), (200, 5, 35, 100, 3, 21));
        assert_eq!((c.c, c.ldc, c.stride_c, c.batch), (300, 9, 45, 2));
    }

    #[test]
    fn kernel_arguments_have_the_c_layout() {
        assert_eq!(std::mem::size_of::<KArgs>(), 8 * 8 + 8 * 8 + 4 * 4);
        let k = KArgs::new(&[1, 2], &[3], &[0.5]);
        assert_eq!((k.p[1], k.i[0], k.f[0], k.p[2]), (2, 3, 0.5, 0));
    }
}
