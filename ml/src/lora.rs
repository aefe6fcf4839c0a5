//! LoRA adapters: which linear layers get one ([`Target`]), how they are scaled ([`LoraConfig`]), where their
//! parameters live ([`LoraParams`], one flat vector so the optimiser, clipping and checkpoints see a single
//! buffer), the branch kernels ([`linear`]), PEFT-format files ([`peft`]) and merging into the base ([`merge`]).

pub mod linear;
pub mod merge;
pub mod peft;

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// A linear layer of a Llama block that can carry a LoRA adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    /// Every target, in the order adapters are laid out and saved.
    pub const ALL: [Target; 7] = [Target::Q, Target::K, Target::V, Target::O, Target::Gate, Target::Up, Target::Down];

    /// The module name PEFT uses in `target_modules` (`q_proj`, ...).
    pub fn peft_name(self) -> &'static str {
        match self {
            Target::Q => "q_proj",
            Target::K => "k_proj",
            Target::V => "v_proj",
            Target::O => "o_proj",
            Target::Gate => "gate_proj",
            Target::Up => "up_proj",
            Target::Down => "down_proj",
        }
    }

    /// The module path inside a decoder layer (`self_attn.q_proj`, `mlp.up_proj`).
    pub fn module_path(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    /// Parses a short (`q`), PEFT (`q_proj`) or dotted (`self_attn.q_proj`) name.
    pub fn parse(name: &str) -> Option<Target> {
        let last = name.trim().rsplit('.').next().unwrap_or(name);
        let bare = last.strip_suffix("_proj").unwrap_or(last);
        Some(match bare {
            "q" => Target::Q,
            "k" => Target::K,
            "v" => Target::V,
            "o" => Target::O,
            "gate" => Target::Gate,
            "up" => Target::Up,
            "down" => Target::Down,
            _ => return None,
        })
    }

    /// Parses a comma list (`q,v`, `q_proj,v_proj`, `all`) into a sorted, de-duplicated target set.
    pub fn parse_list(list: &str) -> Result<Vec<Target>, String> {
        let mut out = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" || part == "all-linear" {
                out.extend(Target::ALL);
                continue;
            }
            out.push(Target::parse(part).ok_or_else(|| {
                format!(
                    "unknown LoRA target {part:?} (expected q, k, v, o, gate, up, down, their *_proj names, or all)"
                )
            })?);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err("no LoRA target given".into());
        }
        Ok(out)
    }

    /// `(in_features, out_features)` of this layer in a model.
    pub fn dims(self, c: &crate::config::ModelConfig) -> (usize, usize) {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        match self {
            Target::Q => (h, c.q_dim()),
            Target::K | Target::V => (h, c.kv_dim()),
            Target::O => (c.q_dim(), h),
            Target::Gate | Target::Up => (h, i),
            Target::Down => (i, h),
        }
    }
}

/// The adapter hyper-parameters (what `adapter_config.json` records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f32,
    pub dropout: f32,
    pub targets: Vec<Target>,
    /// rsLoRA: scale by `alpha / sqrt(rank)` instead of `alpha / rank`.
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The factor the branch output is multiplied by.
    pub fn scale(&self) -> f32 {
        if self.use_rslora {
            self.alpha / (self.rank as f32).sqrt()
        } else {
            self.alpha / self.rank as f32
        }
    }
}

/// Where one adapter's A (`[r, in]`) and B (`[out, r]`) sit in the flat parameter vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub layer: usize,
    pub target: Target,
    pub in_features: usize,
    pub out_features: usize,
    pub a: usize,
    pub b: usize,
}

/// All adapters of a model in one flat f32 vector.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraParams {
    pub config: LoraConfig,
    pub slots: Vec<Slot>,
    pub values: Vec<f32>,
    /// `index[layer * 7 + target as usize]`: position in `slots`.
    index: Vec<Option<usize>>,
}

impl LoraParams {
    /// Zero-filled adapters for every layer and target of `model`.
    pub fn zeros(config: LoraConfig, model: &crate::config::ModelConfig) -> Self {
        let r = config.rank;
        let mut slots = Vec::new();
        let mut index = vec![None; model.num_hidden_layers * 7];
        let mut off = 0;
        for layer in 0..model.num_hidden_layers {
            for &target in &config.targets {
                let (inf, outf) = target.dims(model);
                index[layer * 7 + target as usize] = Some(slots.len());
                slots.push(Slot { layer, target, in_features: inf, out_features: outf, a: off, b: off + r * inf });
                off += r * (inf + outf);
            }
        }
        Self { config, slots, values: vec![0.0; off], index }
    }

    /// PEFT's initialisation: A ~ kaiming-uniform(a = sqrt 5) = U(-1/sqrt(in), 1/sqrt(in)), B = 0, so the
    /// adapted model starts equal to the base.
    pub fn init(config: LoraConfig, model: &crate::config::ModelConfig, seed: u64) -> Self {
        let mut p = Self::zeros(config, model);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        for s in p.slots.clone() {
            let bound = 1.0 / (s.in_features as f32).sqrt();
            for v in &mut p.values[s.a..s.a + p.config.rank * s.in_features] {
                *v = rng.gen_range(-bound..bound);
            }
        }
        p
    }

    /// The slot of `target` in `layer`, if that layer has an adapter there.
    pub fn slot(&self, layer: usize, target: Target) -> Option<&Slot> {
        self.index.get(layer * 7 + target as usize).copied().flatten().map(|i| &self.slots[i])
    }

    /// Slices of A and B for a slot, out of `buf` (the values or a same-shaped gradient vector).
    pub fn split<'a>(&self, buf: &'a [f32], s: &Slot) -> (&'a [f32], &'a [f32]) {
        let r = self.config.rank;
        (&buf[s.a..s.a + r * s.in_features], &buf[s.b..s.b + r * s.out_features])
    }

    /// Mutable slices of A and B for a slot in `buf`, a gradient vector laid out like the values (the
    /// slot's A and B are adjacent, A first).
    pub fn split_mut<'a>(&self, buf: &'a mut [f32], s: &Slot) -> (&'a mut [f32], &'a mut [f32]) {
        let r = self.config.rank;
        let (a, b) = buf[s.a..s.b + r * s.out_features].split_at_mut(r * s.in_features);
        (a, b)
    }

    /// Mutable A and B of a slot's own values.
    pub fn values_mut(&mut self, s: &Slot) -> (&mut [f32], &mut [f32]) {
        let r = self.config.rank;
        self.values[s.a..s.b + r * s.out_features].split_at_mut(r * s.in_features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_short_full_and_all_names() {
        assert_eq!(Target::parse_list("q,v").unwrap(), vec![Target::Q, Target::V]);
        assert_eq!(Target::parse_list("v_proj, q_proj,q").unwrap(), vec![Target::Q, Target::V]);
        assert_eq!(Target::parse_list("self_attn.o_proj,mlp.down_proj").unwrap(), vec![Target::O, Target::Down]);
        assert_eq!(Target::parse_list("all").unwrap(), Target::ALL.to_vec());
        assert!(Target::parse_list("q,lm_head").unwrap_err().contains("lm_head"));
        assert!(Target::parse_list(" ").is_err());
    }

    #[test]
    fn rslora_scales_by_the_square_root_of_the_rank() {
        let mut c = LoraConfig { rank: 16, alpha: 32.0, dropout: 0.0, targets: vec![Target::Q], use_rslora: false };
        assert_eq!(c.scale(), 2.0);
        c.use_rslora = true;
        assert_eq!(c.scale(), 8.0);
    }
}
