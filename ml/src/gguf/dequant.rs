//! ggml tensor types and their dequantisation to f32, following ggml's reference `dequantize_row_*`
//! functions block for block (checked against gguf-py's numpy dequantisers by `tests/model_gguf.rs`).

use half::{bf16, f16};

use crate::error::{MlError, Result};

/// The ggml storage types the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

/// Values per K-quant super-block.
const QK_K: usize = 256;

impl GgmlType {
    /// The type of a ggml type id.
    pub fn from_id(id: u32) -> Result<Self> {
        Ok(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            other => {
                return Err(MlError::Gguf(format!(
                    "ggml type {other} is not supported (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, \
                     Q4_K, Q5_K, Q6_K are)"
                )))
            }
        })
    }

    /// (values per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q5_0 => (32, 22),
            GgmlType::Q5_1 => (32, 24),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4K => (QK_K, 144),
            GgmlType::Q5K => (QK_K, 176),
            GgmlType::Q6K => (QK_K, 210),
        }
    }

    /// Bytes that `numel` values take; an error when they do not fill whole blocks.
    pub fn byte_len(self, numel: usize) -> Result<usize> {
        let (per, bytes) = self.block();
        if !numel.is_multiple_of(per) {
            return Err(MlError::Gguf(format!("{numel} values do not fill {self:?} blocks of {per}")));
        }
        (numel / per).checked_mul(bytes).ok_or_else(|| MlError::Gguf(format!("{numel} values of {self:?} overflow")))
    }
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantises `numel` values stored as `ty` in `data`.
pub fn dequantize(ty: GgmlType, data: &[u8], numel: usize) -> Result<Vec<f32>> {
    let need = ty.byte_len(numel)?;
    if data.len() != need {
        return Err(MlError::Gguf(format!("{ty:?}: {numel} values take {need} bytes, got {}", data.len())));
    }
    let mut out = Vec::with_capacity(numel);
    let (_, block_bytes) = ty.block();
    match ty {
        GgmlType::F32 => out.extend(data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        GgmlType::F16 => out.extend(data.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
        GgmlType::BF16 => out.extend(data.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
        _ => data.chunks_exact(block_bytes).for_each(|b| block(ty, b, &mut out)),
    }
    Ok(out)
}

fn block(ty: GgmlType, b: &[u8], out: &mut Vec<f32>) {
    match ty {
        GgmlType::Q4_0 => {
            let d = half_at(b, 0);
            let qs = &b[2..18];
            out.extend(qs.iter().map(|q| ((q & 0xF) as i32 - 8) as f32 * d));
            out.extend(qs.iter().map(|q| ((q >> 4) as i32 - 8) as f32 * d));
        }
        GgmlType::Q4_1 => {
            let (d, m) = (half_at(b, 0), half_at(b, 2));
            let qs = &b[4..20];
            out.extend(qs.iter().map(|q| (q & 0xF) as f32 * d + m));
            out.extend(qs.iter().map(|q| (q >> 4) as f32 * d + m));
        }
        GgmlType::Q5_0 | GgmlType::Q5_1 => {
            let d = half_at(b, 0);
            let (m, rest) = if ty == GgmlType::Q5_1 { (half_at(b, 2), &b[4..]) } else { (0.0, &b[2..]) };
            let qh = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let qs = &rest[4..20];
            let offset = if ty == GgmlType::Q5_0 { 16 } else { 0 };
            let lo = (0..16).map(|j| {
                let h = ((qh >> j) << 4) & 0x10;
                (((qs[j] & 0xF) as u32 | h) as i32 - offset) as f32 * d + m
            });
            out.extend(lo.collect::<Vec<_>>());
            let hi = (0..16).map(|j| {
                let h = (qh >> (j + 12)) & 0x10;
                (((qs[j] >> 4) as u32 | h) as i32 - offset) as f32 * d + m
            });
            out.extend(hi.collect::<Vec<_>>());
        }
        GgmlType::Q8_0 => {
            let d = half_at(b, 0);
            out.extend(b[2..34].iter().map(|q| *q as i8 as f32 * d));
        }
        GgmlType::Q4K | GgmlType::Q5K => {
            let (d, dmin) = (half_at(b, 0), half_at(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = if ty == GgmlType::Q5K { (&b[16..48], &b[48..176]) } else { (&b[0..0], &b[16..144]) };
            for j in 0..4 {
                let q = &qs[j * 32..(j + 1) * 32];
                for half in 0..2 {
                    let (sc, m) = scale_min_k4(2 * j + half, scales);
                    let (d1, m1) = (d * sc as f32, dmin * m as f32);
                    let bit = 1u8 << (2 * j + half);
                    for l in 0..32 {
                        let nib = if half == 0 { q[l] & 0xF } else { q[l] >> 4 };
                        let high = if ty == GgmlType::Q5K && qh[l] & bit != 0 { 16 } else { 0 };
                        out.push(d1 * (nib + high) as f32 - m1);
                    }
                }
            }
        }
        GgmlType::Q6K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = half_at(b, 208);
            for n in 0..2 {
                let (ql, qh, sc) = (&ql[n * 64..], &qh[n * 32..], &sc[n * 8..]);
                let mut y = [0f32; 128];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * (sc[is] as i8 as f32) * q1 as f32;
                    y[l + 32] = d * (sc[is + 2] as i8 as f32) * q2 as f32;
                    y[l + 64] = d * (sc[is + 4] as i8 as f32) * q3 as f32;
                    y[l + 96] = d * (sc[is + 6] as i8 as f32) * q4 as f32;
                }
                out.extend_from_slice(&y);
            }
        }
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
            unreachable!("plain types are not blocked")
        }
    }
}

/// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K super-block (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_is_scale_times_signed_bytes() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 4;
        b[3] = (-6i8) as u8;
        let v = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(&v[..3], &[2.0, -3.0, 0.0]);
    }

    #[test]
    fn q4_1_splits_nibbles_into_the_two_halves() {
        let mut b = vec![0u8; 20];
        b[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(-1.0).to_le_bytes());
        b[4] = 0x31;
        let v = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!((v[0], v[16], v[1]), (1.0, 5.0, -1.0));
    }

    #[test]
    fn a_length_that_does_not_fill_blocks_is_an_error() {
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], 16).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err());
    }
}
