//! The graph's inputs and outputs: the KV-cache interface ONNX Runtime GenAI also uses (see [`super::llama`]).

use super::proto::{data_type, Dim, ValueInfoProto};
use crate::config::ModelConfig;

/// Declared graph inputs.
pub(crate) fn graph_inputs(spec: &ModelConfig) -> Vec<ValueInfoProto> {
    let mut inputs = vec![
        ValueInfoProto::tensor(
            "input_ids",
            data_type::INT64,
            &[Dim::Named("batch_size"), Dim::Named("sequence_length")],
        ),
        ValueInfoProto::tensor(
            "attention_mask",
            data_type::INT64,
            &[Dim::Named("batch_size"), Dim::Named("total_sequence_length")],
        ),
        ValueInfoProto::tensor(
            "position_ids",
            data_type::INT64,
            &[Dim::Named("batch_size"), Dim::Named("sequence_length")],
        ),
    ];
    for i in 0..spec.num_hidden_layers {
        for kind in ["key", "value"] {
            inputs.push(ValueInfoProto::tensor(
                &format!("past_key_values.{i}.{kind}"),
                data_type::FLOAT,
                &cache_dims(spec, "past_sequence_length"),
            ));
        }
    }
    inputs
}

/// Declared graph outputs.
pub(crate) fn graph_outputs(spec: &ModelConfig, last_token_logits: bool) -> Vec<ValueInfoProto> {
    let positions = if last_token_logits { Dim::Fixed(1) } else { Dim::Named("sequence_length") };
    let mut outputs = vec![ValueInfoProto::tensor(
        "logits",
        data_type::FLOAT,
        &[Dim::Named("batch_size"), positions, Dim::Fixed(spec.vocab_size as i64)],
    )];
    for i in 0..spec.num_hidden_layers {
        for kind in ["key", "value"] {
            outputs.push(ValueInfoProto::tensor(
                &format!("present.{i}.{kind}"),
                data_type::FLOAT,
                &cache_dims(spec, "total_sequence_length"),
            ));
        }
    }
    outputs
}

fn cache_dims(spec: &ModelConfig, seq: &'static str) -> Vec<Dim> {
    vec![
        Dim::Named("batch_size"),
        Dim::Fixed(spec.num_key_value_heads as i64),
        Dim::Named(seq),
        Dim::Fixed(spec.head_dim as i64),
    ]
}
