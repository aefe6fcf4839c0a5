//! Fuzzing of the model-file parsers, which read files users upload or point at: GGUF headers and tensor
//! directories (and the import that reads their tensors), and safetensors headers. Whatever the bytes, they
//! answer with an error or a result, never a panic, and never allocate what the file only claims. Bounded in CI by
//! the case count (`PROPTEST_CASES`, default 256 per property); longer by hand with a larger count, e.g.
//! `PROPTEST_CASES=100000 cargo test -p bonsai-ml --test fuzz_parsers --release`.

use bonsai_ml::gguf::{import_gguf, GgufFile};
use bonsai_ml::weights::Weights;
use proptest::prelude::*;

/// Opens `bytes` as a GGUF file, reads every tensor it lists, and imports it.
fn gguf_all(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    if let Ok(file) = GgufFile::open(&path) {
        for info in file.tensors.iter().take(64) {
            let _ = file.read_f32(info);
        }
    }
    let _ = import_gguf(&path, &dir.path().join("out"));
}

fn u32le(v: u32) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}
fn u64le(v: u64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}
fn gguf_string(s: &str) -> Vec<u8> {
    [u64le(s.len() as u64), s.as_bytes().to_vec()].concat()
}

/// A GGUF header with an architecture and one tensor whose directory entry is random.
fn gguf_with_tensor(dims: &[u64], ggml_type: u32, offset: u64, tail: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(u32le(3));
    b.extend(u64le(1)); // tensors
    b.extend(u64le(1)); // metadata
    b.extend(gguf_string("general.architecture"));
    b.extend(u32le(8));
    b.extend(gguf_string("llama"));
    b.extend(gguf_string("token_embd.weight"));
    b.extend(u32le(dims.len() as u32));
    for d in dims {
        b.extend(u64le(*d));
    }
    b.extend(u32le(ggml_type));
    b.extend(u64le(offset));
    b.extend_from_slice(tail);
    b
}

proptest! {
    #[test]
    fn any_bytes_as_gguf_get_an_answer_not_a_panic(tail in prop::collection::vec(any::<u8>(), 0..1024), magic in any::<bool>()) {
        let bytes = if magic { [b"GGUF".to_vec(), u32le(3), tail].concat() } else { tail };
        gguf_all(&bytes);
    }

    #[test]
    fn gguf_tensor_directories_claiming_anything_get_an_answer_not_a_panic(
        dims in prop::collection::vec(prop_oneof![0u64..64, any::<u64>()], 0..5),
        ggml_type in prop_oneof![0u32..16, any::<u32>()],
        offset in prop_oneof![0u64..256, any::<u64>()],
        tail in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        gguf_all(&gguf_with_tensor(&dims, ggml_type, offset, &tail));
    }

    #[test]
    fn gguf_strings_and_arrays_claiming_huge_lengths_get_an_answer_not_a_panic(len in any::<u64>(), ty in 0u32..14) {
        let mut b = b"GGUF".to_vec();
        b.extend(u32le(3));
        b.extend(u64le(0));
        b.extend(u64le(1));
        b.extend(gguf_string("k"));
        b.extend(u32le(ty));
        b.extend(u32le(8)); // array item type, or the start of a value
        b.extend(u64le(len));
        gguf_all(&b);
    }

    #[test]
    fn any_bytes_as_safetensors_get_an_answer_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let _ = Weights::from_bytes(&bytes);
    }

    #[test]
    fn safetensors_headers_claiming_anything_get_an_answer_not_a_panic(
        dtype in prop_oneof![
            Just("F32".to_owned()), Just("F16".to_owned()), Just("BF16".to_owned()), Just("I8".to_owned()),
            "[A-Z0-9]{1,4}"
        ],
        shape in prop::collection::vec(prop_oneof![0u64..16, any::<u64>()], 0..4),
        start in prop_oneof![0u64..64, any::<u64>()],
        end in prop_oneof![0u64..64, any::<u64>()],
        data in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let header = format!(
            "{{\"w\": {{\"dtype\": \"{dtype}\", \"shape\": {shape:?}, \"data_offsets\": [{start}, {end}]}}}}"
        );
        let bytes = [u64le(header.len() as u64), header.into_bytes(), data].concat();
        let _ = Weights::from_bytes(&bytes);
    }
}
