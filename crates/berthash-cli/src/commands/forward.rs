//! `berthash forward`: run a model dir on inputs in the golden `inputs.json` format and write
//! its outputs as safetensors, so anyone can check parity with PyTorch from the shell.

use std::path::PathBuf;

use anyhow::Context;
use berthash_kernels::TrainBackend;
use berthash_model::inputs::InputBatch;
use berthash_model::weights::{RawTensor, TensorFile};
use berthash_model::{load_any, AnyModel};
use burn::prelude::*;

use crate::backend::{BackendKind, BackendTask};

#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// A Hugging Face model directory (config.json + model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// JSON with `input_ids` and optional `attention_mask`, `token_type_ids` ([batch][seq]).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Where to write `last_hidden_state`, `pooler_output` (with a pooler) and `logits` (with a head).
    #[arg(long)]
    pub output: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    pub backend: BackendKind,
}

struct Forward(ForwardArgs);

impl BackendTask for Forward {
    type Output = Vec<(String, Vec<usize>)>;

    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Self::Output> {
        let args = self.0;
        // Inference needs no autodiff: run on the inner backend (dropout off, no graph).
        let loaded = load_any::<B::InnerBackend>(&args.model, &device)
            .with_context(|| format!("loading the model in {}", args.model.display()))?;
        let inputs = InputBatch::from_file(&args.inputs)?;
        inputs.validate(&loaded.config, &args.inputs)?;
        let input = inputs.to_input::<B::InnerBackend>(&device);

        let mut outputs = Vec::new();
        match loaded.model {
            AnyModel::Base(model) => {
                let out = model.forward(input);
                outputs.push(named("last_hidden_state", out.last_hidden_state));
                outputs.extend(out.pooler_output.map(|p| named("pooler_output", p)));
            }
            AnyModel::MaskedLm(model) => {
                let (out, logits) = model.forward(input);
                outputs.push(named("last_hidden_state", out.last_hidden_state));
                outputs.extend(out.pooler_output.map(|p| named("pooler_output", p)));
                outputs.push(named("logits", logits));
            }
            AnyModel::Classifier(model) => {
                let (out, logits) = model.forward(input);
                outputs.push(named("last_hidden_state", out.last_hidden_state));
                outputs.extend(out.pooler_output.map(|p| named("pooler_output", p)));
                outputs.push(named("logits", logits));
            }
        }
        let mut file = TensorFile {
            path: args.output.clone(),
            ..Default::default()
        };
        let mut written = Vec::new();
        for (name, shape, data) in outputs {
            let values = data
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("reading `{name}`: {e:?}"))?;
            written.push((name.to_string(), shape.clone()));
            file.tensors
                .insert(name.to_string(), RawTensor::from_f32(shape, &values));
        }
        file.write(&args.output)?;
        Ok(written)
    }
}

fn named<B: Backend, const D: usize>(
    name: &'static str,
    tensor: Tensor<B, D>,
) -> (&'static str, Vec<usize>, TensorData) {
    (name, tensor.dims().to_vec(), tensor.into_data())
}

pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let output = args.output.clone();
    let written = crate::backend::run(args.backend, Forward(args))?;
    for (name, shape) in written {
        println!("{name} {shape:?}");
    }
    println!("wrote {}", output.display());
    Ok(())
}
