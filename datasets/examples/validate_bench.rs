//! Validation throughput and peak memory on generated JSONL (issue 3's benchmark).
//!
//! Run: `cargo run --release -p bonsai-datasets --example validate_bench [-- SIZE_MB... [--shape qa|chat]]`
//! (or `bench/datasets/run.sh`, which pins it to one core). Default sizes: 50 and 200 MB.
//! `--file PATH` validates an existing file instead, and `--generate PATH SIZE_MB` only writes one
//! (together: profile the validator alone).
//!
//! For each size it writes a file of unique records to a temp dir, resets the process's peak-RSS mark
//! (`/proc/self/clear_refs`), validates the file on this thread, and prints MB/s and VmHWM. The file is
//! read through the page cache, so this measures the validator, not the disk.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use bonsai_datasets::{validate, ValidateOptions};

const MB: u64 = 1_000_000;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chat = args.windows(2).any(|w| w[0] == "--shape" && w[1] == "chat");
    let mut sizes: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = vec![50, 200];
    }
    if let Some(w) = args.windows(3).find(|w| w[0] == "--generate") {
        let size: u64 = w[2].parse().expect("SIZE_MB is a number");
        generate(std::path::Path::new(&w[1]), size * MB, chat)?;
        return Ok(());
    }
    if let Some(w) = args.windows(2).find(|w| w[0] == "--file") {
        let start = Instant::now();
        let report = validate(File::open(&w[1])?, &ValidateOptions::default()).expect("validation ran");
        println!(
            "{} records in {:.3}s: {}",
            report.record_count,
            start.elapsed().as_secs_f64(),
            serde_json::to_string(&report.stats)?
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    println!("shape: {}, one thread, file read from page cache", if chat { "chat" } else { "question/answer" });
    println!(
        "{:>8} {:>9} {:>8} {:>8} {:>8} {:>12} {:>12} {:>13}",
        "size_MB", "records", "wall_s", "cpu_s", "MB/s", "MB/cpu_s", "peak_RSS_MB", "RSS_before_MB"
    );
    for size in sizes {
        let path = dir.path().join(format!("bench-{size}.jsonl"));
        let bytes = generate(&path, size * MB, chat)?;
        let rss_before = status_kb("VmRSS:");
        reset_peak_rss();
        let (start, cpu_start) = (Instant::now(), cpu_seconds());
        let report = validate(File::open(&path)?, &ValidateOptions::default()).expect("validation ran");
        let (secs, cpu) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu_start);
        let peak = status_kb("VmHWM:");
        assert!(report.valid && report.error_count == 0, "generated data must validate: {:?}", report.errors);
        assert_eq!(report.stats.duplicates, 0);
        let mb = bytes as f64 / MB as f64;
        println!(
            "{:>8.1} {:>9} {:>8.3} {:>8.3} {:>8.1} {:>12.1} {:>12.1} {:>13.1}",
            mb,
            report.record_count,
            secs,
            cpu,
            mb / secs,
            mb / cpu,
            peak as f64 / 1024.0,
            rss_before as f64 / 1024.0,
        );
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

/// Writes unique records of varied length (50 to 1,500 characters, some escapes and non-ASCII)
/// until the file reaches `target` bytes; returns its size.
fn generate(path: &std::path::Path, target: u64, chat: bool) -> std::io::Result<u64> {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "learns",
        "from",
        "examples",
        "naïve",
        "café",
        "données",
        "树",
        "\\\"quoted\\\"",
        "tab\\there",
        "line\\nbreak",
        "gradient",
        "adapter",
        "rank",
        "alpha",
        "batch",
        "token",
        "epoch",
        "loss",
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // xorshift: deterministic, dependency-free variety.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut sentence = |n: u64, out: &mut String| {
        for _ in 0..n {
            out.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
            out.push(' ');
        }
    };
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let (mut written, mut i) = (0u64, 0u64);
    let (mut q, mut a) = (String::new(), String::new());
    while written < target {
        q.clear();
        a.clear();
        q.push_str(&format!("Question {i}: "));
        sentence(8 + i % 40, &mut q);
        sentence(5 + (i * 7) % 200, &mut a);
        let line = if chat {
            format!(
                "{{\"messages\":[{{\"role\":\"system\",\"content\":\"You are helpful.\"}},{{\"role\":\"user\",\"content\":\"{q}\"}},{{\"role\":\"assistant\",\"content\":\"{a}\"}}]}}\n"
            )
        } else {
            format!("{{\"question\":\"{q}\",\"answer\":\"{a}\",\"id\":{i}}}\n")
        };
        w.write_all(line.as_bytes())?;
        written += line.len() as u64;
        i += 1;
    }
    w.flush()?;
    Ok(written)
}

/// Resets VmHWM to the current RSS, so each size's peak is its own (Linux 4.0+).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        eprintln!("could not reset peak RSS ({e}); peaks include earlier work");
    }
}

fn status_kb(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of this thread (the validator's only thread), from the scheduler's own accounting: on a
/// shared machine, wall time also counts waiting for a core.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    stat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).map_or(f64::NAN, |ns| ns as f64 / 1e9)
}
