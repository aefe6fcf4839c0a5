//! `init-tiny`: a deterministic random model with a trained tokenizer and a chat template, loadable by the
//! same code that loads any Hugging Face folder.

use bonsai_ml::model::LlamaModel;
use bonsai_ml::template::{ChatMessage, ChatTemplate};
use bonsai_ml::tiny::{init_tiny, TinySpec};
use bonsai_ml::tokenizer::TextTokenizer;

fn small_spec(seed: u64) -> TinySpec {
    TinySpec {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 400,
        max_position_embeddings: 128,
        seed,
    }
}

#[test]
fn the_same_seed_and_corpus_give_the_same_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    init_tiny(a.path(), &small_spec(3), None).unwrap();
    init_tiny(b.path(), &small_spec(3), None).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        let (x, y) = (std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        assert!(x == y, "{f} differs between two runs with the same seed");
    }
    let c = tempfile::tempdir().unwrap();
    init_tiny(c.path(), &small_spec(4), None).unwrap();
    let (x, z) = (
        std::fs::read(a.path().join("model.safetensors")).unwrap(),
        std::fs::read(c.path().join("model.safetensors")).unwrap(),
    );
    assert!(x != z, "another seed gives other weights");
}

#[test]
fn the_tiny_model_loads_and_its_tokenizer_round_trips_a_chat() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus.jsonl");
    std::fs::write(
        &corpus,
        "{\"question\": \"What is the capital of France?\", \"answer\": \"Paris\"}\n\
         {\"question\": \"What colour is the sky?\", \"answer\": \"Blue\"}\n",
    )
    .unwrap();
    let out = dir.path().join("tiny");
    init_tiny(&out, &small_spec(0), Some(&corpus)).unwrap();

    let model = LlamaModel::load(&out).unwrap();
    assert_eq!(model.config.num_key_value_heads, 2);
    let tok = TextTokenizer::load(&out).unwrap();
    assert!(tok.vocab_size() <= model.config.vocab_size);
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(2));
    assert_eq!(tok.stop_token_ids.first(), Some(&2));

    let template = ChatTemplate::load(&out).unwrap();
    assert!(template.from_model);
    let text = template
        .render(
            &[ChatMessage::new("user", "What is the capital of France?"), ChatMessage::new("assistant", "Paris")],
            false,
        )
        .unwrap();
    let ids = tok.encode(&text, false).unwrap();
    assert_eq!(tok.count(&text), ids.len(), "counting agrees with encoding");
    assert_eq!(tok.count(""), 0);
    // Special tokens are single ids; the rest decodes back to the exact text, including unseen characters.
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|t| **t == 2).count(), 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    let unseen = "Zürich 北京 ✓";
    assert_eq!(tok.decode(&tok.encode(unseen, false).unwrap(), false).unwrap(), unseen);
    // The BPE learnt merges from the corpus: a frequent word is fewer tokens than its bytes.
    assert!(tok.encode("capital", false).unwrap().len() < "capital".len());

    let logits = model.logits(&ids).unwrap();
    assert!(logits.data.iter().all(|v| v.is_finite()));
}

#[test]
fn a_vocabulary_too_small_for_the_bytes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec { vocab_size: 100, ..small_spec(0) };
    assert!(init_tiny(dir.path(), &spec, None).is_err());
}
