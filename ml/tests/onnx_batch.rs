//! The continuous-batching engine on an `init-tiny` model exported to ONNX: the same tokens as one-at-a-time
//! generation while rows join and leave the shared decode step, cancellation freeing a slot within a step,
//! fair admission beyond the slots, stop texts, and the limits it refuses. Needs the ONNX Runtime library:
//! `scripts/install-onnxruntime.sh`.

mod onnx_support;

use bonsai_ml::engine::{
    BatchEngine, BatchOptions, ChatMessage, ChatRequest, Device, Engine, EngineError, EngineOptions, FinishReason,
    GenerationHandle, GenerationParams,
};
use onnx_support::{random_weights, tiny_config, tiny_export};

fn batch(slots: usize) -> BatchOptions {
    BatchOptions { device: Device::Cpu, threads: 1, slots, ..BatchOptions::default() }
}

fn request(text: &str, max_new_tokens: usize) -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new("system", "You are a test."), ChatMessage::new("user", text)],
        params: GenerationParams { max_new_tokens, ..GenerationParams::default() },
    }
}

/// A request that holds its slot until cancelled: it cannot end on its own within the test.
fn blocker() -> ChatRequest {
    let mut r = request("Hold the slot.", 200);
    r.params.ignore_eos = true;
    r
}

/// Reads the handle's stream to its end; returns (pieces with a token, streamed text).
fn drain(handle: &mut GenerationHandle) -> (usize, String) {
    let (mut tokens, mut text) = (0, String::new());
    while let Some(piece) = handle.blocking_next_piece() {
        tokens += usize::from(piece.token.is_some());
        text.push_str(&piece.text);
    }
    (tokens, text)
}

#[test]
fn eight_requests_joining_and_leaving_the_batch_equal_one_at_a_time_generation() {
    let (_root, _model, export_dir) = tiny_export();
    let single =
        Engine::load(&export_dir, EngineOptions { device: Device::Cpu, threads: 1, sessions: 1, spin: false }).unwrap();
    let engine = BatchEngine::load(&export_dir, batch(3)).unwrap();
    // Prompts of different lengths and answers of different lengths: rows leave at different steps, and with
    // three slots the last five join as others leave. Two are sampled (seeded): their sampler state is per row.
    let requests: Vec<ChatRequest> = (0..8)
        .map(|i| {
            let words = ["tree"; 12][..1 + i].join(" ");
            let mut r = request(&format!("Question {i}: {words}?"), 4 + 5 * i);
            r.params.ignore_eos = i % 3 == 0;
            if i == 5 || i == 6 {
                r.params.temperature = 0.9;
                r.params.seed = i as u64;
            }
            r
        })
        .collect();
    let want: Vec<_> = requests.iter().map(|r| single.generate(r, &mut |_| {}).unwrap()).collect();

    let mut handles: Vec<GenerationHandle> =
        requests.iter().enumerate().map(|(i, r)| engine.submit(&format!("user-{i}"), r).unwrap()).collect();
    let mut got = Vec::new();
    for handle in &mut handles {
        let streamed = drain(handle);
        got.push(streamed);
    }
    let done: Vec<_> = handles.into_iter().map(|h| h.wait().unwrap()).collect();

    for (i, ((done, want), (pieces, streamed))) in done.iter().zip(&want).zip(&got).enumerate() {
        let g = &done.generation;
        assert_eq!(g.tokens, want.tokens, "request {i}: tokens differ");
        assert_eq!(g.text, want.text, "request {i}");
        assert_eq!(g.finish_reason, want.finish_reason, "request {i}");
        assert_eq!(streamed, &g.text, "request {i}: the stream adds up to the text");
        assert_eq!(*pieces, g.tokens.len(), "request {i}: one piece per token");
        assert_eq!(g.stats.prompt_tokens, want.stats.prompt_tokens);
        assert!(g.stats.time_to_first_token <= g.stats.total_time);
    }
    assert!(done.iter().any(|d| d.peak_batch == 3), "rows shared decode steps: {:?}", peak(&done));
    let mut admissions: Vec<u64> = done.iter().map(|d| d.admission).collect();
    admissions.sort_unstable();
    assert_eq!(admissions, (0..8).collect::<Vec<_>>());
    assert!(done[7].queued > done[0].queued, "the last request waited for a slot");
    let load = engine.load_now();
    assert_eq!((load.active, load.waiting), (0, 0));
    assert!(load.rows > load.steps, "mean batch above one: {load:?}");
}

fn peak(done: &[bonsai_ml::engine::Completion]) -> Vec<usize> {
    done.iter().map(|d| d.peak_batch).collect()
}

#[test]
fn a_cancelled_row_frees_its_slot_within_one_step() {
    let (_root, _model, export_dir) = tiny_export();
    let engine = BatchEngine::load(&export_dir, batch(1)).unwrap();
    let mut long = engine.submit("a", &blocker()).unwrap();
    assert!(long.blocking_next_piece().is_some(), "the long request is decoding");
    let short = engine.submit("b", &request("Next please.", 3)).unwrap();
    assert_eq!(engine.load_now().waiting, 1, "one slot: the second request waits");

    long.cancel();
    let steps_at_cancel = engine.load_now().steps as usize;
    let (pieces, _) = drain(&mut long);
    // One token from the prefill, one per step counted so far, and at most one from the step that was
    // starting as the cancel came: none after.
    let tokens = 1 + pieces;
    assert!(tokens <= steps_at_cancel + 2, "{tokens} tokens after {steps_at_cancel} steps");
    // The caller that cancelled gets what was generated, marked cancelled.
    let cut = long.wait().unwrap();
    assert_eq!(cut.generation.finish_reason, FinishReason::Cancelled);
    assert_eq!(cut.generation.tokens.len(), tokens, "every generated token is kept");
    let next = short.wait().unwrap();
    assert_eq!(next.admission, 1);
    assert!(next.generation.tokens.len() <= 3);

    // Dropping a handle cancels too: the slot serves the next request.
    let mut dropped = engine.submit("c", &blocker()).unwrap();
    assert!(dropped.blocking_next_piece().is_some(), "admitted before it is dropped");
    drop(dropped);
    let after = engine.submit("d", &request("After the drop.", 2)).unwrap().wait().unwrap();
    assert_eq!(after.admission, 3);
    assert_eq!(engine.load_now().active, 0);

    // A request cancelled while it waits for a slot never ran: it ends with the error.
    let mut busy = engine.submit("e", &blocker()).unwrap();
    assert!(busy.blocking_next_piece().is_some());
    let waiting = engine.submit("f", &request("Never run.", 2)).unwrap();
    waiting.cancel();
    assert!(matches!(waiting.wait(), Err(EngineError::Cancelled)));
    busy.cancel();
    assert_eq!(busy.wait().unwrap().generation.finish_reason, FinishReason::Cancelled);
}

#[test]
fn requests_beyond_the_slots_are_admitted_first_come_and_users_take_turns() {
    let (_root, _model, export_dir) = tiny_export();
    let engine = BatchEngine::load(&export_dir, batch(1)).unwrap();
    let mut hold = engine.submit("x", &blocker()).unwrap();
    assert!(hold.blocking_next_piece().is_some());
    // User a sends a burst of three, then b, c and b again.
    let order = [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1"), ("b", "b2")];
    let handles: Vec<_> =
        order.iter().map(|(user, name)| (*name, engine.submit(user, &request(name, 2)).unwrap())).collect();
    assert_eq!(engine.load_now().waiting, 6);
    hold.cancel();

    let mut admitted: Vec<(u64, &str)> =
        handles.into_iter().map(|(name, h)| (h.wait().unwrap().admission, name)).collect();
    admitted.sort_unstable();
    let names: Vec<&str> = admitted.iter().map(|(_, name)| *name).collect();
    assert_eq!(names, ["a1", "b1", "c1", "a2", "b2", "a3"]);
    assert_eq!(admitted[0].0, 1, "the first admitted after the cancelled one");
}

#[test]
fn a_stop_text_ends_the_answer_before_it_and_is_never_streamed() {
    let (_root, _model, export_dir) = tiny_export();
    let engine = BatchEngine::load(&export_dir, batch(2)).unwrap();
    let mut plain = request("Say something long.", 24);
    plain.params.ignore_eos = true;
    let full = engine.submit("u", &plain).unwrap().wait().unwrap().generation;
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() > 12, "the tiny model's answer is long enough: {:?}", full.text);
    let stop: String = chars[8..11].iter().collect();
    let cut = &full.text[..full.text.find(&stop).unwrap()];

    let mut stopped = plain.clone();
    stopped.params.stop = vec![stop.clone()];
    let mut handle = engine.submit("u", &stopped).unwrap();
    let (_, streamed) = drain(&mut handle);
    let done = handle.wait().unwrap().generation;
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.text, cut);
    assert_eq!(streamed, cut, "nothing of the stop text was streamed");
    assert!(done.tokens.len() < full.tokens.len());

    // The one-sequence engine honours stop texts the same way.
    let single =
        Engine::load(&export_dir, EngineOptions { device: Device::Cpu, threads: 1, sessions: 1, spin: false }).unwrap();
    let mut streamed = String::new();
    let alone = single.generate(&stopped, &mut |piece| streamed.push_str(piece)).unwrap();
    assert_eq!((alone.text.as_str(), streamed.as_str()), (cut, cut));
    assert_eq!(alone.finish_reason, FinishReason::Stop);
    assert_eq!(alone.tokens, done.tokens);
}

#[test]
fn the_engine_refuses_what_it_cannot_hold() {
    let (_root, _model, export_dir) = tiny_export();
    let options = BatchOptions { max_waiting: 1, slot_tokens: 64, ..batch(1) };
    let engine = BatchEngine::load(&export_dir, options).unwrap();
    assert_eq!(engine.slot_tokens(), 64);
    let too_long = vec![5u32; 65];
    assert!(matches!(engine.submit_tokens("u", too_long, GenerationParams::default()), Err(EngineError::Input(_))));
    assert!(matches!(engine.submit_tokens("u", vec![], GenerationParams::default()), Err(EngineError::Input(_))));

    // A row ends when its slot is full, as a sequence ends at the context.
    let params = GenerationParams { max_new_tokens: 500, ignore_eos: true, ..GenerationParams::default() };
    let full = engine.submit_tokens("u", vec![5; 60], params).unwrap().wait().unwrap();
    assert_eq!(full.generation.finish_reason, FinishReason::Length);
    assert_eq!(full.generation.tokens.len(), 64 - 60 + 1);

    // One request may wait, a second is refused (the blocker fits its slot: default slot length here).
    let engine = BatchEngine::load(&export_dir, BatchOptions { max_waiting: 1, ..batch(1) }).unwrap();
    let mut hold = engine.submit("u", &blocker()).unwrap();
    assert!(hold.blocking_next_piece().is_some());
    let _waiting = engine.submit("u", &request("one", 2)).unwrap();
    assert!(matches!(engine.submit("u", &request("two", 2)), Err(EngineError::Busy(_))));
}

#[test]
fn an_export_without_the_fused_attention_op_is_refused_with_the_reason() {
    let config = tiny_config("llama", true);
    let dir = tempfile::tempdir().unwrap();
    let options = bonsai_ml::onnx::ExportOptions { last_token_logits: true, fused_attention: false };
    bonsai_ml::onnx::export_model(&config, &random_weights(&config, 3), dir.path(), &options).unwrap();
    match BatchEngine::load(dir.path(), batch(2)) {
        Err(EngineError::NotBatchable(message)) => assert!(message.contains("GroupQueryAttention"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn an_answer_in_progress_keeps_its_engine_loaded_until_it_ends() {
    let (_root, _model, export_dir) = tiny_export();
    let engine = BatchEngine::load(&export_dir, batch(2)).unwrap();
    let mut req = request("Still there?", 8);
    req.params.ignore_eos = true;
    let handle = engine.submit("u", &req).unwrap();
    drop(engine);
    let done = handle.wait().unwrap();
    assert_eq!(done.generation.tokens.len(), 8);
}
