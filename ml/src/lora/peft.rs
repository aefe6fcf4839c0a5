//! PEFT-format adapter folders: `adapter_config.json` and `adapter_model.safetensors`, with the key names,
//! shapes and config fields `peft` itself writes, so an adapter trained here loads with
//! `PeftModel.from_pretrained` and one trained with PEFT loads here.

use super::{LoraConfig, LoraParams, Target};
use crate::config::ModelConfig;
use crate::train::error::TrainError;
use crate::weights::{Tensor, Weights};
use serde_json::{json, Value};
use std::path::Path;

pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// The safetensors key of a slot's A (`lora_A`) or B (`lora_B`) matrix.
pub fn key(layer: usize, target: Target, which: &str) -> String {
    format!("base_model.model.model.layers.{layer}.{}.{which}.weight", target.module_path())
}

/// The `adapter_config.json` PEFT writes for these hyper-parameters.
pub fn config_json(config: &LoraConfig, base_model: &str) -> Value {
    let targets: Vec<&str> = config.targets.iter().map(|t| t.peft_name()).collect();
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": targets,
        "bias": "none",
        "base_model_name_or_path": base_model,
        "use_rslora": config.use_rslora,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "modules_to_save": null,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "use_dora": false,
        "revision": null,
    })
}

/// Writes the adapter folder (created if missing).
pub fn save(dir: &Path, params: &LoraParams, base_model: &str) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let text = serde_json::to_string_pretty(&config_json(&params.config, base_model))
        .map_err(|e| TrainError::Adapter(e.to_string()))?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, text).map_err(|e| TrainError::io(path, e))?;
    let r = params.config.rank;
    let mut w = Weights::new();
    for s in &params.slots {
        let (a, b) = params.split(&params.values, s);
        w.insert(key(s.layer, s.target, "lora_A"), Tensor::new(vec![r, s.in_features], a.to_vec())?);
        w.insert(key(s.layer, s.target, "lora_B"), Tensor::new(vec![s.out_features, r], b.to_vec())?);
    }
    let meta = [("format".to_string(), "pt".to_string())].into_iter().collect();
    w.save_file(&dir.join(WEIGHTS_FILE), Some(&meta))?;
    Ok(())
}

/// Reads `adapter_config.json` into hyper-parameters plus the base model it names.
pub fn read_config(dir: &Path) -> Result<(LoraConfig, String), TrainError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| TrainError::Adapter(format!("{CONFIG_FILE}: {e}")))?;
    let bad = |m: &str| TrainError::Adapter(format!("{CONFIG_FILE}: {m}"));
    if v["peft_type"].as_str() != Some("LORA") {
        return Err(bad("peft_type is not LORA"));
    }
    if v["use_dora"].as_bool() == Some(true) {
        return Err(bad("DoRA adapters are not supported"));
    }
    let rank = v["r"].as_u64().filter(|r| *r > 0).ok_or_else(|| bad("r must be a positive integer"))? as usize;
    let alpha = v["lora_alpha"].as_f64().unwrap_or(8.0) as f32;
    let targets = match &v["target_modules"] {
        Value::String(s) => Target::parse_list(s).map_err(|e| bad(&e))?,
        Value::Array(items) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            Target::parse_list(&names.join(",")).map_err(|e| bad(&e))?
        }
        _ => return Err(bad("target_modules missing")),
    };
    let config = LoraConfig {
        rank,
        alpha,
        dropout: v["lora_dropout"].as_f64().unwrap_or(0.0) as f32,
        targets,
        use_rslora: v["use_rslora"].as_bool().unwrap_or(false),
    };
    Ok((config, v["base_model_name_or_path"].as_str().unwrap_or("").to_string()))
}

/// Loads an adapter folder for a base model of configuration `model`, checking every key and shape.
pub fn load(dir: &Path, model: &ModelConfig) -> Result<LoraParams, TrainError> {
    let (config, _) = read_config(dir)?;
    let mut params = LoraParams::zeros(config, model);
    let mut w = Weights::load_file(&dir.join(WEIGHTS_FILE))?;
    let r = params.config.rank;
    for s in params.slots.clone() {
        for (which, shape, off) in [("lora_A", [r, s.in_features], s.a), ("lora_B", [s.out_features, r], s.b)] {
            let name = key(s.layer, s.target, which);
            let t = w.take(&name).map_err(|_| TrainError::Adapter(format!("{WEIGHTS_FILE} has no {name}")))?;
            if t.shape != shape {
                return Err(TrainError::Adapter(format!("{name} has shape {:?}, expected {shape:?}", t.shape)));
            }
            params.values[off..off + t.data.len()].copy_from_slice(&t.data);
        }
    }
    let rest: Vec<&str> = w.names().collect();
    if !rest.is_empty() {
        return Err(TrainError::Adapter(format!("tensors this adapter config does not explain: {}", rest.join(", "))));
    }
    Ok(params)
}
