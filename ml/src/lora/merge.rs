//! Folding LoRA adapters into the base weights: `W += scale * B A`, giving a plain model with the adapted
//! behaviour and no inference overhead (what `bonsai merge` and `bonsai train --merge` write).

use super::LoraParams;
use crate::model::LlamaModel;
use crate::train::error::TrainError;
use crate::train::kernels::linalg::{matmul, MatMut, MatRef, Par};

/// Adds every adapter of `params` into the matching projection of `model`.
pub fn merge_into(model: &mut LlamaModel, params: &LoraParams) -> Result<(), TrainError> {
    let r = params.config.rank;
    let scale = params.config.scale();
    for s in &params.slots {
        let layer = model
            .layers
            .get_mut(s.layer)
            .ok_or_else(|| TrainError::Adapter(format!("adapter for layer {} but the model has fewer", s.layer)))?;
        let lin = layer
            .projection_mut(s.target.peft_name())
            .ok_or_else(|| TrainError::Adapter(format!("model has no {}", s.target.peft_name())))?;
        if lin.weight.shape != [s.out_features, s.in_features] {
            return Err(TrainError::Adapter(format!(
                "{} of layer {} is {:?}, the adapter expects [{}, {}]",
                s.target.peft_name(),
                s.layer,
                lin.weight.shape,
                s.out_features,
                s.in_features
            )));
        }
        let (a, b) = params.split(&params.values, s);
        matmul(
            MatMut::new(&mut lin.weight.data, s.out_features, s.in_features),
            MatRef::new(b, s.out_features, r),
            MatRef::new(a, r, s.in_features),
            scale,
            true,
            Par::Threads,
        );
    }
    Ok(())
}
