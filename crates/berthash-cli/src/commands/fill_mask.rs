//! `berthash fill-mask`: the most likely tokens at each `[MASK]` of a text.

use std::path::PathBuf;

use anyhow::bail;
use berthash_model::{load_trained, BertHashForMaskedLM, BertInput};
use berthash_train::resolve_model;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::softmax;

type B = Flex;

#[derive(Debug, clap::Args)]
pub struct FillMaskArgs {
    /// A model with an MLM head: a model directory, a pre-training run or a checkpoint.
    #[arg(long)]
    pub model: PathBuf,
    /// Text with one or more `[MASK]` tokens.
    pub text: String,
    /// How many candidates to show per mask.
    #[arg(long, default_value_t = 5)]
    pub top_k: usize,
    /// tokenizer.json to use instead of the model's (or the embedded bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: FillMaskArgs) -> anyhow::Result<()> {
    let dir = resolve_model(&args.model)?;
    let tokenizer = crate::tokenizer::load(args.tokenizer.as_deref(), Some(&dir))?;
    let device = Default::default();
    let loaded = load_trained::<B, BertHashForMaskedLM<B>>(&dir, &device)?;
    if tokenizer.vocab_size() != loaded.config.vocab_size {
        bail!(
            "the tokenizer ({}) has {} tokens but the model's vocabulary has {}: pass the model's tokenizer with --tokenizer",
            tokenizer.name(),
            tokenizer.vocab_size(),
            loaded.config.vocab_size
        );
    }
    let ids = tokenizer.encode(&args.text, true)?;
    let masks: Vec<usize> = ids
        .iter()
        .enumerate()
        .filter(|(_, &id)| id == tokenizer.mask_id())
        .map(|(i, _)| i)
        .collect();
    if masks.is_empty() {
        bail!("the text has no [MASK] token");
    }
    let max = loaded.config.max_position_embeddings;
    if ids.len() > max {
        bail!(
            "the text is {} tokens long; this model reads at most {max}",
            ids.len()
        );
    }
    let seq = ids.len();
    let input_ids = Tensor::<B, 2, Int>::from_data(
        TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [1, seq]),
        &device,
    );
    let positions = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            masks.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [masks.len()],
        ),
        &device,
    );
    let logits = loaded
        .model
        .forward_selected(BertInput::new(input_ids), positions);
    let probs = softmax(logits, 1)
        .into_data()
        .to_vec::<f32>()
        .expect("f32 probabilities");
    let vocab = loaded.config.vocab_size;
    for (n, position) in masks.iter().enumerate() {
        let row = &probs[n * vocab..(n + 1) * vocab];
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        println!("[MASK] at token {position}:");
        for (id, p) in ranked.into_iter().take(args.top_k) {
            let token = tokenizer
                .tokenizer()
                .id_to_token(id as u32)
                .unwrap_or_else(|| format!("<{id}>"));
            println!("  {token:<16} {p:.4}");
        }
    }
    Ok(())
}
