//! The device code path on the CPU: buffers in host memory, the kernels of `kernels.cu` compiled as C by
//! `build.rs` and run one thread per block, and each GEMM done as cuBLAS would do the column-major call
//! it is given. Every access is checked against the buffer it lands in, and cuBLAS's leading-dimension
//! rules are enforced, and canaries around every buffer catch kernel writes past its ends, so a wrong offset
//! or stride in the trainer fails here instead of corrupting GPU memory. Slow; meant for tests.

#![allow(unsafe_code)]

use super::backend::{Backend, ColGemm, KArgs};
use crate::train::error::TrainError;
use std::ffi::{c_char, c_int, CString};

extern "C" {
    fn bonsai_emu_launch(name: *const c_char, grid: u32, args: *const KArgs) -> c_int;
}

/// One host allocation: `len` f32 from `addr`, inside a block that has [`GUARD`] canary values on each side.
struct Alloc {
    addr: usize,
    len: usize,
}

/// Canary values around every buffer; a kernel that writes past either end of its buffer changes one and
/// fails its launch (reads out of bounds go unnoticed).
const GUARD: usize = 64;
const CANARY: u32 = 0x0bad_c0de; // a tiny normal float: any add, scale or store changes it (a NaN would absorb adds)

impl Alloc {
    fn block(&self) -> (*mut f32, usize) {
        ((self.addr - 4 * GUARD) as *mut f32, self.len + 2 * GUARD)
    }
}

/// The emulated device.
#[derive(Default)]
pub struct Emulated {
    allocs: Vec<Alloc>,
}

impl Emulated {
    pub fn new() -> Self {
        Self::default()
    }

    /// Panics unless `n` f32 from `addr` lie inside one allocation.
    fn check(&self, addr: u64, n: usize, what: &str) {
        if n == 0 {
            return;
        }
        let a = addr as usize;
        let ok = self
            .allocs
            .iter()
            .any(|al| a >= al.addr && a + 4 * n <= al.addr + 4 * al.len && (a - al.addr).is_multiple_of(4));
        assert!(ok, "emulated device: {what} of {n} f32 at {addr:#x} is outside every buffer");
    }

    /// Panics naming `after` when a canary around any buffer has changed.
    fn check_guards(&self, after: &str) {
        for al in &self.allocs {
            let (base, total) = al.block();
            // SAFETY: `block` is the live allocation made in `alloc`; it is only read here.
            let block = unsafe { std::slice::from_raw_parts(base, total) };
            let intact = |g: &[f32]| g.iter().all(|v| v.to_bits() == CANARY);
            assert!(
                intact(&block[..GUARD]) && intact(&block[GUARD + al.len..]),
                "emulated device: {after} wrote outside the buffer of {} f32 at {:#x}",
                al.len,
                al.addr
            );
        }
    }

    /// Checks one column-major operand `[rows, cols]` (stored transposed when `t`) with leading dimension `ld`.
    fn check_operand(&self, addr: u64, t: bool, rows: usize, cols: usize, ld: usize, what: &str) {
        let (sr, sc) = if t { (cols, rows) } else { (rows, cols) };
        assert!(ld >= sr.max(1), "emulated device: {what}: leading dimension {ld} < {sr} rows (cuBLAS refuses it)");
        if sr > 0 && sc > 0 {
            self.check(addr, (sc - 1) * ld + sr, what);
        }
    }
}

impl Drop for Emulated {
    fn drop(&mut self) {
        for al in self.allocs.drain(..) {
            let (base, total) = al.block();
            // SAFETY: every block was made by `Box::into_raw` of a boxed slice of exactly `total` f32 in
            // `alloc`, and is freed once, here.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(base, total)) });
        }
    }
}

impl Backend for Emulated {
    fn block_threads(&self) -> u32 {
        1
    }

    fn alloc(&mut self, n: usize) -> Result<u64, TrainError> {
        let len = n.max(1);
        let mut b: Box<[f32]> = vec![0.0f32; len + 2 * GUARD].into_boxed_slice();
        b[..GUARD].fill(f32::from_bits(CANARY));
        b[GUARD + len..].fill(f32::from_bits(CANARY));
        let base = Box::into_raw(b) as *mut f32 as usize;
        let addr = base + 4 * GUARD;
        self.allocs.push(Alloc { addr, len });
        Ok(addr as u64)
    }

    fn upload(&mut self, dst: u64, src: &[f32]) -> Result<(), TrainError> {
        self.check(dst, src.len(), "upload");
        // SAFETY: checked to lie inside one live allocation; `src` is host memory the device does not own.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as usize as *mut f32, src.len()) };
        Ok(())
    }

    fn download(&mut self, src: u64, dst: &mut [f32]) -> Result<(), TrainError> {
        self.check(src, dst.len(), "download");
        // SAFETY: as in `upload`, the other way.
        unsafe { std::ptr::copy_nonoverlapping(src as usize as *const f32, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    fn zero(&mut self, dst: u64, n: usize) -> Result<(), TrainError> {
        self.check(dst, n, "zero");
        // SAFETY: checked range inside one allocation.
        unsafe { std::ptr::write_bytes(dst as usize as *mut f32, 0, n) };
        Ok(())
    }

    fn copy(&mut self, dst: u64, src: u64, n: usize) -> Result<(), TrainError> {
        self.check(dst, n, "copy destination");
        self.check(src, n, "copy source");
        // SAFETY: both ranges checked; `copy` allows overlap.
        unsafe { std::ptr::copy(src as usize as *const f32, dst as usize as *mut f32, n) };
        Ok(())
    }

    fn launch(&mut self, name: &'static str, grid: u32, args: &KArgs) -> Result<(), TrainError> {
        let c = CString::new(name).expect("kernel names have no NUL");
        // SAFETY: the kernels read and write through the addresses in `args`, which the trainer takes from
        // this backend's allocations with offsets inside them (the GPU test suite compares every result
        // with the CPU trainer); the call is synchronous and single-threaded.
        let rc = unsafe { bonsai_emu_launch(c.as_ptr(), grid, args) };
        if rc != 0 {
            return Err(TrainError::Device(format!("emulated device: no kernel named {name}")));
        }
        self.check_guards(name);
        Ok(())
    }

    fn gemm(&mut self, g: &ColGemm) -> Result<(), TrainError> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        assert!(g.ldc >= g.m, "emulated device: ldc {} < m {} (cuBLAS refuses it)", g.ldc, g.m);
        for bi in 0..g.batch {
            let a = g.a + 4 * (bi * g.stride_a) as u64;
            let b = g.b + 4 * (bi * g.stride_b) as u64;
            let c = g.c + 4 * (bi * g.stride_c) as u64;
            self.check_operand(a, g.transa, g.m, g.k, g.lda, "gemm A");
            self.check_operand(b, g.transb, g.k, g.n, g.ldb, "gemm B");
            self.check_operand(c, false, g.m, g.n, g.ldc, "gemm C");
            // Column-major strides: element (i, j) of op(X) is at i*rs + j*cs.
            let (a_rs, a_cs) = if g.transa { (g.lda, 1) } else { (1, g.lda) };
            let (b_rs, b_cs) = if g.transb { (g.ldb, 1) } else { (1, g.ldb) };
            let s = |v: usize| v as isize;
            // SAFETY: every element of A, B and C the product touches was checked above to lie inside a live
            // allocation; C does not overlap A or B in the trainer's calls (distinct buffers or disjoint
            // column blocks), and C's columns are `ldc >= m` apart, so each element is written once.
            unsafe {
                gemm::gemm(
                    g.m,
                    g.n,
                    g.k,
                    c as usize as *mut f32,
                    s(g.ldc),
                    1,
                    g.beta != 0.0,
                    a as usize as *const f32,
                    s(a_cs),
                    s(a_rs),
                    b as usize as *const f32,
                    s(b_cs),
                    s(b_rs),
                    g.beta,
                    g.alpha,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
        }
        Ok(())
    }

    fn bytes(&self) -> usize {
        4 * self.allocs.iter().map(|a| a.len).sum::<usize>()
    }

    fn describe(&self) -> String {
        "emulated device (CPU)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::super::backend::{Mat, RowGemm};
    use super::*;

    #[test]
    fn a_row_major_product_through_the_column_major_call_matches_a_loop() {
        let mut e = Emulated::new();
        // C[2,3] = A^T B with A stored [4, 2] and B [4, 3]; C rows 5 apart.
        let a: Vec<f32> = (0..8).map(|v| v as f32 - 3.0).collect();
        let b: Vec<f32> = (0..12).map(|v| (v as f32).cos()).collect();
        let (pa, pb, pc) = (e.alloc(8).unwrap(), e.alloc(12).unwrap(), e.alloc(10).unwrap());
        e.upload(pa, &a).unwrap();
        e.upload(pb, &b).unwrap();
        e.upload(pc, &[1.0; 10]).unwrap();
        let g = RowGemm {
            ta: true,
            tb: false,
            m: 2,
            n: 3,
            k: 4,
            alpha: 0.5,
            a: Mat::new(pa, 2),
            b: Mat::new(pb, 3),
            beta: 1.0,
            c: Mat::new(pc, 5),
            batch: 1,
            stride_a: 0,
            stride_b: 0,
            stride_c: 0,
        };
        e.gemm(&ColGemm::from(&g)).unwrap();
        let mut c = vec![0.0; 10];
        e.download(pc, &mut c).unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let dot: f32 = (0..4).map(|l| a[l * 2 + i] * b[l * 3 + j]).sum();
                assert!((c[i * 5 + j] - (1.0 + 0.5 * dot)).abs() < 1e-5, "({i},{j})");
            }
            assert_eq!(c[i * 5 + 3], 1.0, "columns past n untouched");
        }
    }

    #[test]
    #[should_panic(expected = "outside every buffer")]
    fn an_operand_past_its_buffer_is_caught() {
        let mut e = Emulated::new();
        let p = e.alloc(4).unwrap();
        e.upload(p + 8, &[0.0; 3]).unwrap();
    }

    #[test]
    fn kernels_run_by_name_and_unknown_names_fail() {
        let mut e = Emulated::new();
        let (y, x, b) = (e.alloc(6).unwrap(), e.alloc(6).unwrap(), e.alloc(3).unwrap());
        e.upload(y, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        e.upload(b, &[10.0, 20.0, 30.0]).unwrap();
        e.launch("add_bias", 2, &KArgs::new(&[y, b], &[3], &[])).unwrap();
        let mut out = vec![0.0; 6];
        e.download(y, &mut out).unwrap();
        assert_eq!(out, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        assert!(e.launch("no_such_kernel", 1, &KArgs::new(&[x], &[], &[])).is_err());
    }

    #[test]
    #[should_panic(expected = "add_bias wrote outside the buffer")]
    fn a_kernel_writing_past_its_buffer_is_caught() {
        let mut e = Emulated::new();
        let (y, b) = (e.alloc(6).unwrap(), e.alloc(3).unwrap());
        e.upload(b, &[1.0, 2.0, 3.0]).unwrap();
        // Three rows of three into a buffer of six.
        e.launch("add_bias", 3, &KArgs::new(&[y, b], &[3], &[])).unwrap();
    }
}
