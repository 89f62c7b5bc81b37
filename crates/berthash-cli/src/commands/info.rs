//! `berthash info`: a model's config and parameter counts by module.

use std::path::PathBuf;

use anyhow::Context;
use berthash_model::{read_config, BertHashConfig};

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// A Hugging Face model directory (config.json + model.safetensors).
    #[arg(long, conflicts_with = "preset", required_unless_present = "preset")]
    pub model: Option<PathBuf>,
    /// A built-in size: femto, pico or nano.
    #[arg(long)]
    pub preset: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let (source, config) = match (&args.model, &args.preset) {
        (Some(dir), _) => (
            dir.display().to_string(),
            read_config(dir).with_context(|| format!("reading the model in {}", dir.display()))?,
        ),
        (None, Some(name)) => (format!("preset {name}"), BertHashConfig::preset(name)?),
        (None, None) => unreachable!("clap requires --model or --preset"),
    };
    let counts = config.parameter_counts();
    if args.json {
        let report = serde_json::json!({
            "source": source,
            "config": config,
            "parameters": counts,
            "parameters_base_with_pooler": counts.base_with_pooler(),
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!("{source}");
    println!(
        "  hidden {} | layers {} | heads {} | intermediate {} | projections {} | vocab {} | positions {}",
        config.hidden_size,
        config.num_hidden_layers,
        config.num_attention_heads,
        config.intermediate_size,
        config.projections,
        config.vocab_size,
        config.max_position_embeddings
    );
    if let Some(arch) = config.architectures.as_ref().and_then(|a| a.first()) {
        println!("  architecture {arch}");
    }
    println!();
    println!("  {:<34} {:>12}", "module", "parameters");
    let rows = [
        (
            "embeddings.word_embeddings (hashed)",
            counts.word_embeddings,
        ),
        ("embeddings.position_embeddings", counts.position_embeddings),
        (
            "embeddings.token_type_embeddings",
            counts.token_type_embeddings,
        ),
        ("embeddings.LayerNorm", counts.embeddings_layer_norm),
        ("encoder", counts.encoder),
        ("pooler", counts.pooler),
    ];
    for (name, n) in rows {
        println!("  {name:<34} {n:>12}");
    }
    println!(
        "  {:<34} {:>12}",
        "total (encoder + pooler)",
        counts.base_with_pooler()
    );
    println!(
        "  {:<34} {:>12}",
        "MLM head (pre-training only)", counts.mlm_head
    );
    println!(
        "  {:<34} {:>12}",
        format!("classifier ({} labels)", config.num_labels()),
        counts.classifier
    );
    Ok(())
}
