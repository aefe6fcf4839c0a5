//! Token generation: greedy or seeded sampling (temperature, top-k, top-p, repetition penalty) over the
//! cached forward pass. The [`Sampler`] is independent of the model so another engine can share it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{KvCache, LlamaModel};
use crate::error::{MlError, Result};

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1.0 keeps all.
    pub top_p: f32,
    /// CTRL-style penalty on tokens already in the prompt or output; 1.0 is none.
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Tokens that end generation (EOS and the chat template's end-of-turn tokens). Not emitted.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop_tokens: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token came up.
    StopToken,
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The token callback asked to stop.
    Cancelled,
}

/// Generated tokens and why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationOutput {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
}

/// Picks the next token from logits according to [`GenerateOptions`], with its own seeded RNG.
#[derive(Debug, Clone)]
pub struct Sampler {
    opts: GenerateOptions,
    rng: StdRng,
}

impl Sampler {
    /// A sampler seeded from `opts.seed`.
    pub fn new(opts: &GenerateOptions) -> Self {
        Sampler { opts: opts.clone(), rng: StdRng::seed_from_u64(opts.seed) }
    }

    /// The next token given the last position's logits and the tokens so far (prompt + output). The logits
    /// are modified in place.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        let o = &self.opts;
        if o.repetition_penalty != 1.0 {
            let mut seen = history.to_vec();
            seen.sort_unstable();
            seen.dedup();
            for t in seen {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 { *l / o.repetition_penalty } else { *l * o.repetition_penalty };
                }
            }
        }
        if o.temperature <= 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, l)| (i as u32, l / o.temperature)).collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if o.top_k > 0 {
            cand.truncate(o.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if o.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= o.top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rng.gen::<f32>() * total;
        for (p, (t, _)) in probs.iter().zip(&cand) {
            if r < *p {
                return *t;
            }
            r -= p;
        }
        cand[probs.len() - 1].0
    }
}

/// Index of the largest logit (the first one on ties, as torch.argmax).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, l) in logits.iter().enumerate() {
        if *l > logits[best] {
            best = i;
        }
    }
    best as u32
}

impl LlamaModel {
    /// Generates after `prompt`, calling `on_token` with each new token as it comes (return `false` to stop).
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<GenerationOutput> {
        if prompt.is_empty() {
            return Err(MlError::Input("the prompt has no tokens".into()));
        }
        let mut sampler = Sampler::new(opts);
        let mut cache = KvCache::new(&self.config);
        let mut history = prompt.to_vec();
        let mut tokens = Vec::new();
        let mut logits = self.forward_last(prompt, &mut cache)?;
        loop {
            if tokens.len() >= opts.max_new_tokens {
                return Ok(GenerationOutput { tokens, stop: StopReason::MaxTokens });
            }
            let next = sampler.sample(&mut logits, &history);
            if opts.stop_tokens.contains(&next) {
                return Ok(GenerationOutput { tokens, stop: StopReason::StopToken });
            }
            tokens.push(next);
            history.push(next);
            if !on_token(next) {
                return Ok(GenerationOutput { tokens, stop: StopReason::Cancelled });
            }
            if tokens.len() < opts.max_new_tokens {
                logits = self.forward_last(&[next], &mut cache)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_sampling_is_seeded() {
        let mut greedy = Sampler::new(&GenerateOptions::default());
        assert_eq!(greedy.sample(&mut [0.1, 3.0, 2.0], &[]), 1);
        let opts = GenerateOptions { temperature: 1.0, seed: 7, ..Default::default() };
        let logits = [0.5f32, 0.4, 0.3, 0.2, 0.1];
        let run = || {
            let mut s = Sampler::new(&opts);
            (0..20).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        assert!(a.iter().any(|t| *t != a[0]), "sampling at temperature 1 varies: {a:?}");
    }

    #[test]
    fn top_k_one_is_greedy_and_repetition_penalty_demotes_seen_tokens() {
        let opts = GenerateOptions { temperature: 1.0, top_k: 1, ..Default::default() };
        let mut s = Sampler::new(&opts);
        assert_eq!(s.sample(&mut [0.0, 1.0, 0.9], &[]), 1);
        let opts = GenerateOptions { repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(&opts);
        assert_eq!(s.sample(&mut [0.0, 1.0, 0.9], &[1]), 2);
    }
}
