//! Serving benchmark (issue 21): N concurrent clients asking distinct questions, each answer a fixed number
//! of tokens, against the continuous-batching engine (`BatchEngine`) and the one-sequence engine (`Engine`,
//! as the serving worker holds it today: a pool of sessions, one generation each), on the same export and the
//! same threads, interleaved (the engines alternate at each client count and round). Prints one JSON line per
//! measurement and a markdown table at the end.
//!
//! cargo run --release -p bonsai-ml --example serve_bench -- <export-dir> [--clients 1,4,8,16] \
//!     [--new-tokens 64] [--answers 2] [--threads 2] [--slots 8] [--slot-tokens 256] [--sessions 2] [--rounds 1]
//!     [--system-words 0]
//! `--system-words N` puts a system message of N words before each question: long prompts, where writing the
//! KV cache in place (batch engine) instead of copying it every step (one-sequence engine) matters most.
//! Preparing a model (the same library calls as `bonsai model import-gguf` and `bonsai export-onnx`):
//! serve_bench prepare-gguf <file.gguf> <hf-dir> <export-dir>
//! serve_bench prepare-tiny <hf-dir> <export-dir>

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bonsai_ml::engine::{
    BatchEngine, BatchOptions, ChatMessage, ChatRequest, Device, Engine, EngineOptions, GenerationParams,
};

/// Distinct questions: a client takes them in turn from its own offset, so no two concurrent prompts are equal.
const QUESTIONS: &[&str] = &[
    "What is the capital of France?",
    "Why is the sky blue?",
    "How do plants make their food?",
    "What causes the seasons on Earth?",
    "Explain what a database index is.",
    "Who wrote the play Hamlet?",
    "What is the boiling point of water at sea level?",
    "How does a bicycle stay upright?",
    "What is machine learning in one paragraph?",
    "Name three uses of copper.",
    "Why do cats purr?",
    "What is the difference between weather and climate?",
    "How do vaccines work?",
    "What is a prime number?",
    "Describe the water cycle.",
    "What does a compiler do?",
    "Why is exercise good for the heart?",
    "What is the tallest mountain in Africa?",
    "How are rainbows formed?",
    "What is the role of the kidneys?",
];

struct Args {
    dir: PathBuf,
    clients: Vec<usize>,
    new_tokens: usize,
    answers: usize,
    threads: usize,
    slots: usize,
    slot_tokens: usize,
    sessions: usize,
    rounds: usize,
    system_words: usize,
}

/// One measured run: a number of clients against one engine.
struct Run {
    engine: &'static str,
    clients: usize,
    /// Per answer: (time to first token, total time).
    answers: Vec<(Duration, Duration)>,
    tokens: usize,
    wall: Duration,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("prepare-tiny") if args.len() == 3 => {
            bonsai_ml::tiny::init_tiny(args[1].as_ref(), &bonsai_ml::tiny::TinySpec::default(), None)?;
            bonsai_ml::onnx::export_dir(args[1].as_ref(), args[2].as_ref())?;
            return Ok(());
        }
        Some("prepare-gguf") if args.len() == 4 => {
            bonsai_ml::gguf::import_gguf(args[1].as_ref(), args[2].as_ref())?;
            bonsai_ml::onnx::export_dir(args[2].as_ref(), args[3].as_ref())?;
            return Ok(());
        }
        _ => {}
    }
    let a = parse(&args)?;
    let spin = std::env::var("BONSAI_ORT_SPIN").is_ok_and(|v| v == "1");
    let single =
        Engine::load(&a.dir, EngineOptions { device: Device::Cpu, threads: a.threads, sessions: a.sessions, spin })?;
    let batch = BatchEngine::load(
        &a.dir,
        BatchOptions {
            device: Device::Cpu,
            threads: a.threads,
            spin,
            slots: a.slots,
            slot_tokens: a.slot_tokens,
            ..BatchOptions::default()
        },
    )?;
    let params = GenerationParams { max_new_tokens: a.new_tokens, ignore_eos: true, ..GenerationParams::default() };
    let system = vec!["background"; a.system_words].join(" ");
    let requests: Vec<ChatRequest> = QUESTIONS
        .iter()
        .map(|q| {
            let mut messages = vec![ChatMessage::new("user", *q)];
            if a.system_words > 0 {
                messages.insert(0, ChatMessage::new("system", system.clone()));
            }
            ChatRequest { messages, params: params.clone() }
        })
        .collect();
    let prompt_tokens = batch.prompt_tokens(&requests[0])?.len();
    eprintln!("prompt of the first question: {prompt_tokens} tokens");
    // Warm-up: the first runs pay for lazy allocations and weight pre-packing.
    single.generate(&requests[0], &mut |_| {})?;
    batch.submit("warm-up", &requests[0])?.wait()?;

    let mut runs = Vec::new();
    for round in 0..a.rounds {
        for &clients in &a.clients {
            let order: [&str; 2] = if (round + clients) % 2 == 0 { ["batch", "single"] } else { ["single", "batch"] };
            for name in order {
                let run = if name == "batch" {
                    drive(name, clients, a.answers, &requests, {
                        let batch = Arc::clone(&batch);
                        move |client: usize, r: &ChatRequest| {
                            let done = batch.submit(&format!("client-{client}"), r)?.wait()?;
                            Ok(done.generation)
                        }
                    })?
                } else {
                    drive(name, clients, a.answers, &requests, {
                        let single = Arc::clone(&single);
                        move |_client: usize, r: &ChatRequest| Ok(single.generate(r, &mut |_| {})?)
                    })?
                };
                print_json(&run);
                runs.push(run);
            }
        }
    }
    print_table(&a, &runs);
    Ok(())
}

/// `clients` threads, each asking `answers` questions one after the other; returns the answers' timings.
fn drive<F>(
    engine: &'static str,
    clients: usize,
    answers: usize,
    requests: &[ChatRequest],
    ask: F,
) -> anyhow::Result<Run>
where
    F: Fn(usize, &ChatRequest) -> anyhow::Result<bonsai_ml::engine::Generation> + Clone + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(clients + 1));
    let handles: Vec<_> = (0..clients)
        .map(|client| {
            let (ask, barrier) = (ask.clone(), Arc::clone(&barrier));
            let mine: Vec<ChatRequest> =
                (0..answers).map(|k| requests[(client * answers + k) % requests.len()].clone()).collect();
            std::thread::spawn(move || -> anyhow::Result<(Vec<(Duration, Duration)>, usize)> {
                barrier.wait();
                let mut out = Vec::new();
                let mut tokens = 0;
                for r in &mine {
                    let g = ask(client, r)?;
                    tokens += g.stats.completion_tokens;
                    out.push((g.stats.time_to_first_token, g.stats.total_time));
                }
                Ok((out, tokens))
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut run = Run { engine, clients, answers: Vec::new(), tokens: 0, wall: Duration::ZERO };
    for h in handles {
        let (answers, tokens) = h.join().map_err(|_| anyhow::anyhow!("a client panicked"))??;
        run.answers.extend(answers);
        run.tokens += tokens;
    }
    run.wall = start.elapsed();
    Ok(run)
}

fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn summary(run: &Run) -> (f64, f64, f64, f64) {
    let totals: Vec<f64> = run.answers.iter().map(|a| a.1.as_secs_f64()).collect();
    let ttfts: Vec<f64> = run.answers.iter().map(|a| a.0.as_secs_f64() * 1e3).collect();
    let tps = run.tokens as f64 / run.wall.as_secs_f64();
    (tps, percentile(totals.clone(), 50.0), percentile(totals, 99.0), percentile(ttfts, 50.0))
}

fn print_json(run: &Run) {
    let (tps, p50, p99, ttft) = summary(run);
    println!(
        "{}",
        serde_json::json!({
            "engine": run.engine, "clients": run.clients, "answers": run.answers.len(), "tokens": run.tokens,
            "wall_s": run.wall.as_secs_f64(), "tokens_per_s": tps, "p50_s": p50, "p99_s": p99, "ttft_p50_ms": ttft,
        })
    );
}

fn print_table(a: &Args, runs: &[Run]) {
    println!(
        "\n{} new tokens per answer, {} answers per client, {} threads, batch slots {}, single-sequence sessions {}, \
         system words {}\n",
        a.new_tokens, a.answers, a.threads, a.slots, a.sessions, a.system_words
    );
    println!(
        "| clients | engine | completion tokens/s | p50 s/answer | p99 s/answer | TTFT p50 ms | batch/single tok/s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &clients in &a.clients {
        let mean = |engine: &str| -> Option<(f64, f64, f64, f64)> {
            let of: Vec<_> = runs.iter().filter(|r| r.engine == engine && r.clients == clients).map(summary).collect();
            let n = of.len() as f64;
            (!of.is_empty()).then(|| {
                of.iter()
                    .fold((0.0, 0.0, 0.0, 0.0), |s, r| (s.0 + r.0 / n, s.1 + r.1 / n, s.2 + r.2 / n, s.3 + r.3 / n))
            })
        };
        let (Some(b), Some(s)) = (mean("batch"), mean("single")) else { continue };
        for (name, r) in [("batch", b), ("single", s)] {
            let ratio = if name == "batch" { format!("{:.2}", b.0 / s.0) } else { String::new() };
            println!("| {clients} | {name} | {:.1} | {:.2} | {:.2} | {:.0} | {ratio} |", r.0, r.1, r.2, r.3);
        }
    }
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let Some(dir) = args.first().filter(|a| !a.starts_with("--")) else {
        bail!("usage: serve_bench <export-dir> [--clients 1,4,8,16] [--new-tokens 64] [--answers 2] [--threads 2] [--slots 8] [--slot-tokens 256] [--sessions 2] [--rounds 1] [--system-words 0]");
    };
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let num = |name: &str, default: usize| -> anyhow::Result<usize> {
        value(name).map_or(Ok(default), |v| v.parse().with_context(|| format!("{name} {v}")))
    };
    let clients = match value("--clients") {
        Some(list) => list.split(',').map(|c| c.trim().parse()).collect::<Result<_, _>>().context("--clients")?,
        None => vec![1, 4, 8, 16],
    };
    Ok(Args {
        dir: PathBuf::from(dir),
        clients,
        new_tokens: num("--new-tokens", 64)?,
        answers: num("--answers", 2)?,
        threads: num("--threads", 2)?,
        slots: num("--slots", 8)?,
        slot_tokens: num("--slot-tokens", 256)?,
        sessions: num("--sessions", 2)?,
        rounds: num("--rounds", 1)?,
        system_words: num("--system-words", 0)?,
    })
}
