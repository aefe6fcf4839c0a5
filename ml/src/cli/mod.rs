//! The ML commands of the `bonsai` binary. The binary crate mounts [`MlCommand`] as subcommands and calls
//! [`run`]; each command lives in its own module with its clap `Args` and a `run` function.

mod export;
mod generate;
mod merge;
mod model;
mod train;

use clap::Subcommand;

/// Commands that use the ML core directly, without the services.
#[derive(Debug, Subcommand)]
pub enum MlCommand {
    /// Fine-tune a base model with LoRA on a dataset file.
    Train(train::TrainArgs),
    /// Merge a PEFT LoRA adapter into its base model.
    Merge(merge::MergeArgs),
    /// Model utilities: import a GGUF checkpoint, create a tiny random model.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Export a model folder to ONNX with a KV-cache interface.
    ExportOnnx(export::ExportArgs),
    /// Generate a completion through ONNX Runtime.
    Generate(generate::GenerateArgs),
}

/// Runs one ML command to completion.
pub fn run(cmd: MlCommand) -> anyhow::Result<()> {
    match cmd {
        MlCommand::Train(args) => train::run(args),
        MlCommand::Merge(args) => merge::run(args),
        MlCommand::Model(cmd) => model::run(cmd),
        MlCommand::ExportOnnx(args) => export::run(args),
        MlCommand::Generate(args) => generate::run(args),
    }
}
