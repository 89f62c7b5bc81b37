//! `berthash export`: a Hugging Face model directory that transformers loads with
//! `trust_remote_code=True`: config.json (auto_map), model.safetensors, our remote code, the
//! tokenizer files and a model card.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_model::pretrained::{HfModel, Pretrained};
use berthash_model::{
    load, save, BertHashConfig, BertHashForMaskedLM, BertHashForSequenceClassification,
    BertHashModel,
};
use burn::backend::Flex;
use serde_json::Value;

use crate::assets;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Head {
    /// The encoder alone (`BertHashModel`), as the published checkpoints.
    Base,
    /// Encoder + MLM head (`BertHashForMaskedLM`).
    Mlm,
    /// Encoder + pooler + classifier (`BertHashForSequenceClassification`).
    Classification,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// A model directory, a run directory or one of its checkpoints.
    #[arg(long)]
    pub from: PathBuf,
    /// The directory to write (created; must be empty or absent).
    #[arg(long)]
    pub out: PathBuf,
    /// Which model class to export; default: the one the source holds.
    #[arg(long, value_enum)]
    pub head: Option<Head>,
    /// Overwrite files in a non-empty `--out`.
    #[arg(long)]
    pub force: bool,
}

type B = Flex;

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let source = crate::runs::resolve_model_dir(&args.from)?;
    if args.out.exists() && !args.force && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{} is not empty: choose another --out or pass --force",
            args.out.display()
        );
    }
    let config = berthash_model::read_config(&source)?;
    let head = args.head.unwrap_or(match config.architecture() {
        Some(berthash_model::Architecture::MaskedLm) => Head::Mlm,
        Some(berthash_model::Architecture::SequenceClassification) => Head::Classification,
        _ => Head::Base,
    });
    let written = match head {
        Head::Base => export::<BertHashModel<B>>(&source, &args.out, &[])?,
        Head::Mlm => export::<BertHashForMaskedLM<B>>(&source, &args.out, &["cls."])?,
        Head::Classification => {
            export::<BertHashForSequenceClassification<B>>(&source, &args.out, &["classifier."])?
        }
    };
    write_companions(&args.out, &written, head, &args.from)?;
    println!("exported {:?} model to {}", head, args.out.display());
    Ok(())
}

/// Loads `source` as `M` and saves it to `out`. A head listed in `required` must come from the
/// source: exporting a freshly initialised head would ship noise.
fn export<M: HfModel<B>>(
    source: &Path,
    out: &Path,
    required: &[&str],
) -> anyhow::Result<BertHashConfig> {
    let Pretrained {
        config,
        model,
        layout,
        report,
    } = load::<B, M>(source, None, 0, &Default::default())
        .with_context(|| format!("loading {}", source.display()))?;
    if let Some(key) = report
        .initialized
        .iter()
        .find(|k| required.iter().any(|r| k.starts_with(r)))
    {
        bail!(
            "{} has no `{key}`: it holds no such head to export (use --head base, or export the model it was trained as)",
            source.display()
        );
    }
    for key in &report.unexpected {
        tracing::info!(
            "not exported (the {} class has no place for it): {key}",
            M::ARCHITECTURE.class_name()
        );
    }
    save::<B, M>(out, &config, &model, &layout)?;
    Ok(config)
}

fn write_companions(
    out: &Path,
    config: &BertHashConfig,
    head: Head,
    from: &Path,
) -> anyhow::Result<()> {
    let files: [(&str, &str); 6] = [
        ("configuration_bert_hash.py", assets::CONFIGURATION_PY),
        ("modeling_bert_hash.py", assets::MODELING_PY),
        ("tokenizer.json", assets::TOKENIZER_JSON),
        ("vocab.txt", assets::VOCAB_TXT),
        ("tokenizer_config.json", assets::TOKENIZER_CONFIG_JSON),
        ("special_tokens_map.json", assets::SPECIAL_TOKENS_MAP_JSON),
    ];
    for (name, text) in files {
        berthash_model::io::write_atomic(&out.join(name), text.as_bytes())?;
    }
    let card = model_card(config, head, &crate::runs::RunRecords::find(from));
    berthash_model::io::write_atomic(&out.join("README.md"), card.as_bytes())?;
    Ok(())
}

fn model_card(config: &BertHashConfig, head: Head, records: &crate::runs::RunRecords) -> String {
    let counts = config.parameter_counts();
    let class = match head {
        Head::Base => "BertHashModel",
        Head::Mlm => "BertHashForMaskedLM",
        Head::Classification => "BertHashForSequenceClassification",
    };
    let mut card = format!(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\nlanguage: en\ntags:\n- bert\n- bert-hash\n- berthash\n---\n\n\
# BERT Hash model ({class})\n\n\
A BERT encoder whose word embedding is a `[vocab, {p}]` table projected to the hidden size\n\
(hashed token embeddings), exported by [berthash](https://github.com/). Load it with\n\
`trust_remote_code=True`:\n\n\
```python\nfrom transformers import AutoModel, AutoTokenizer\n\
tokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n\
model = AutoModel.from_pretrained(\"PATH\", trust_remote_code=True)\n```\n\n\
## Configuration\n\n\
| hidden | layers | heads | intermediate | projections | vocab | positions | parameters (encoder + pooler) |\n\
|---|---|---|---|---|---|---|---|\n\
| {h} | {l} | {a} | {i} | {p} | {v} | {pos} | {n} |\n",
        h = config.hidden_size,
        l = config.num_hidden_layers,
        a = config.num_attention_heads,
        i = config.intermediate_size,
        p = config.projections,
        v = config.vocab_size,
        pos = config.max_position_embeddings,
        n = counts.base_with_pooler(),
    );
    if let Some(run) = &records.config {
        card.push_str("\n## Training\n\n```json\n");
        card.push_str(&serde_json::to_string_pretty(run).unwrap_or_default());
        card.push_str("\n```\n");
    }
    for (title, value) in [
        ("Training summary", &records.summary),
        ("Evaluation results", &records.eval_results),
    ] {
        if let Some(Value::Object(map)) = value {
            card.push_str(&format!("\n## {title}\n\n| metric | value |\n|---|---|\n"));
            for (k, v) in map {
                card.push_str(&format!("| {k} | {v} |\n"));
            }
        }
    }
    if records.config.is_none() && records.summary.is_none() {
        card.push_str("\nNo training record was found beside the exported model.\n");
    }
    card
}
