//! The trainer's compute kernels: each forward saves what its backward needs, each backward is written by
//! hand (checked against finite differences in `tests/train_gradcheck.rs`). All buffers are row-major f32;
//! row loops run on rayon, matrix products go through [`linalg::matmul`] (the `gemm` crate).

pub mod attention;
pub mod fastmath;
pub mod linalg;
pub mod loss;
pub mod norm;
pub mod rope;
pub mod swiglu;
