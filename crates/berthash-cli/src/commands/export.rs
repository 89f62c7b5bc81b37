//! `berthash export`: a Hugging Face model directory that transformers loads with
//! `trust_remote_code=True`: config.json (auto_map), model.safetensors, our remote code, the
//! tokenizer files and a model card.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_data::tokenize::{copy_tokenizer_files, TOKENIZER_FILES};
use berthash_model::fs::write_atomic;
use berthash_model::pretrained::WEIGHTS_FILE;
use berthash_model::pretrained::{HfModel, Pretrained};
use berthash_model::weights::TensorFile;
use berthash_model::{
    load_trained, save, Architecture, BertHashConfig, BertHashForMaskedLM,
    BertHashForSequenceClassification, BertHashModel,
};
use berthash_onnx::SentenceOutput;
use berthash_train::embed::Pooling;
use berthash_train::sentence_transformers::{self, SentenceConfig};
use berthash_train::{resolve_model, RunRecords};
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

impl Head {
    fn architecture(self) -> Architecture {
        match self {
            Head::Base => Architecture::Base,
            Head::Mlm => Architecture::MaskedLm,
            Head::Classification => Architecture::SequenceClassification,
        }
    }
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
    /// Also write what sentence-transformers loads (modules.json, the pooling config,
    /// sentence_bert_config.json): a sentence-embedding model, with the encoder alone unless
    /// --head is given. Implied when the source has these files (an embedding run).
    #[arg(long)]
    pub sentence_transformers: bool,
    /// Sentence-embedding pooling: mean, cls or max [default: the source's, else mean].
    #[arg(long, requires = "sentence_transformers")]
    pub pooling: Option<Pooling>,
    /// Normalise sentence embeddings to unit length [default: the source's, else off].
    #[arg(long, requires = "sentence_transformers")]
    pub normalize: bool,
    /// Sentence-embedding truncation length [default: the source's, else 128 or the model's
    /// positions when fewer].
    #[arg(long, requires = "sentence_transformers")]
    pub max_seq_length: Option<usize>,
    /// Also write onnx/model.onnx: the same model as an ONNX graph (opset 17, f32) with the
    /// inputs input_ids, attention_mask, token_type_ids and the outputs last_hidden_state,
    /// pooler_output (with a pooler), logits (with a head) and, with --sentence-transformers,
    /// sentence_embedding (pooled and normalised as configured). A graph with a head computes
    /// its logits on every run: for features or embeddings, export `--head base`.
    #[arg(long)]
    pub onnx: bool,
}

type B = Flex;

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let source = resolve_model(&args.from)?;
    if args.out.exists()
        && !args.force
        && std::fs::read_dir(&args.out)
            .with_context(|| format!("reading {}", args.out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: choose another --out or pass --force",
            args.out.display()
        );
    }
    let config = berthash_model::read_config(&source)?;
    let sentence = (args.sentence_transformers || sentence_transformers::read(&source)?.is_some())
        .then(|| {
            SentenceConfig::resolve(&source, args.pooling, args.normalize, args.max_seq_length)
        })
        .transpose()?;
    let head = args.head.unwrap_or(match config.architecture() {
        _ if sentence.is_some() => Head::Base,
        Some(Architecture::MaskedLm) => Head::Mlm,
        Some(Architecture::SequenceClassification) => Head::Classification,
        _ => Head::Base,
    });
    let onnx = Onnx {
        write: args.onnx,
        sentence: sentence.as_ref().map(|s| SentenceOutput {
            pooling: s.pooling,
            normalize: s.normalize,
        }),
    };
    let (written, onnx) = match head {
        Head::Base => export::<BertHashModel<B>>(&source, &args.out, onnx)?,
        Head::Mlm => export::<BertHashForMaskedLM<B>>(&source, &args.out, onnx)?,
        Head::Classification => {
            export::<BertHashForSequenceClassification<B>>(&source, &args.out, onnx)?
        }
    };
    if let Some(sentence) = &sentence {
        let weights = TensorFile::read(&args.out.join(WEIGHTS_FILE))?;
        let pooler = weights.tensors.keys().any(|k| k.starts_with("pooler."));
        sentence_transformers::write(&args.out, written.hidden_size, pooler, sentence)?;
    }
    write_companions(
        &args.out,
        &written,
        head,
        sentence.as_ref(),
        onnx.is_some(),
        &source,
        &args.from,
    )?;
    match sentence {
        Some(s) => println!(
            "exported {:?} model for sentence-transformers ({} pooling{}, {} tokens) to {}",
            head,
            s.pooling,
            if s.normalize { ", normalised" } else { "" },
            s.max_seq_length,
            args.out.display()
        ),
        None => println!("exported {:?} model to {}", head, args.out.display()),
    }
    if let Some(onnx) = onnx {
        println!(
            "wrote the ONNX graph (opset {}) to {}",
            berthash_onnx::OPSET,
            onnx.display()
        );
    }
    Ok(())
}

/// Whether to write the ONNX graph, and the sentence pooling to end it with.
#[derive(Clone, Copy)]
struct Onnx {
    write: bool,
    sentence: Option<SentenceOutput>,
}

/// Loads `source` as `M` and saves it to `out`, with its ONNX graph if asked (whose path is
/// returned). `M`'s head must come from the source: exporting a freshly initialised head would
/// ship noise.
fn export<M: HfModel<B>>(
    source: &Path,
    out: &Path,
    onnx: Onnx,
) -> anyhow::Result<(BertHashConfig, Option<PathBuf>)> {
    let Pretrained {
        config,
        model,
        layout,
        report,
    } = load_trained::<B, M>(source, &Default::default())?;
    for key in &report.unexpected {
        tracing::info!(
            "not exported (the {} class has no place for it): {key}",
            M::ARCHITECTURE.class_name()
        );
    }
    save::<B, M>(out, &config, &model, &layout)?;
    let onnx = onnx
        .write
        .then(|| berthash_onnx::write(out, &config, &model, source, onnx.sentence))
        .transpose()?;
    Ok((config, onnx))
}

/// Our remote code, the tokenizer (the model's own when its directory has one, else the
/// built-in bert-base-uncased) and the model card.
fn write_companions(
    out: &Path,
    config: &BertHashConfig,
    head: Head,
    sentence: Option<&SentenceConfig>,
    onnx: bool,
    source: &Path,
    from: &Path,
) -> anyhow::Result<()> {
    for (name, text) in assets::REMOTE_CODE {
        write_atomic(&out.join(name), text.as_bytes())?;
    }
    let own = source.join(TOKENIZER_FILES[0]);
    if own.is_file() {
        copy_tokenizer_files(&own, out);
    } else {
        for (name, text) in assets::TOKENIZER {
            write_atomic(&out.join(name), text.as_bytes())?;
        }
    }
    let card = model_card(config, head, sentence, onnx, &RunRecords::find(from));
    write_atomic(&out.join("README.md"), card.as_bytes())?;
    Ok(())
}

/// The card's YAML front matter, as the Hub reads it: licence, library, pipeline, tags, and for
/// a fine-tuned model its dataset, metrics and a `model-index` entry with the dev results
/// (`eval_results.json`, as the fractions it holds).
fn front_matter(head: Head, sentence: bool, onnx: bool, records: &RunRecords) -> String {
    let (library, pipeline) = match head {
        _ if sentence => ("sentence-transformers", "sentence-similarity"),
        Head::Base => ("transformers", "feature-extraction"),
        Head::Mlm => ("transformers", "fill-mask"),
        Head::Classification => ("transformers", "text-classification"),
    };
    let mut yaml = format!(
        "---\nlicense: apache-2.0\nlibrary_name: {library}\npipeline_tag: {pipeline}\n\
language: en\ntags:\n- bert\n- bert-hash\n- berthash\n- custom_code\n"
    );
    if sentence {
        yaml.push_str("- sentence-transformers\n- feature-extraction\n");
    }
    if onnx {
        yaml.push_str("- onnx\n");
    }
    let task = records
        .config
        .as_ref()
        .and_then(|c| c["task"]["name"].as_str());
    let results = records.eval_results.as_ref().and_then(Value::as_object);
    let (Some(task), Some(results), Head::Classification) = (task, results, head) else {
        yaml.push_str("---\n");
        return yaml;
    };
    // (metric, value, split): run_glue's keys; MNLI's mismatched set carries `_mm`.
    let mut scores = Vec::new();
    for (key, value) in results {
        let (Some(name), Some(value)) = (key.strip_prefix("eval_"), value.as_f64()) else {
            continue;
        };
        let (name, split) = match name.strip_suffix("_mm") {
            Some(name) => (name, "validation_mismatched"),
            None if task == "mnli" => (name, "validation_matched"),
            None => (name, "validation"),
        };
        if [
            "accuracy",
            "f1",
            "matthews_correlation",
            "pearson",
            "spearmanr",
        ]
        .contains(&name)
        {
            scores.push((name, value, split));
        }
    }
    let mut metrics: Vec<&str> = scores.iter().map(|s| s.0).collect();
    metrics.dedup();
    yaml.push_str(&format!(
        "datasets:\n- glue\nmetrics:\n- {}\n",
        metrics.join("\n- ")
    ));
    yaml.push_str(&format!(
        "model-index:\n- name: bert-hash-{task}\n  results:\n"
    ));
    let mut splits: Vec<&str> = scores.iter().map(|s| s.2).collect();
    splits.sort_unstable();
    splits.dedup();
    for split in splits {
        yaml.push_str(&format!(
            "  - task:\n      type: text-classification\n      name: Text Classification\n    \
dataset:\n      name: GLUE {upper}\n      type: glue\n      config: {task}\n      split: {split}\n    \
metrics:\n",
            upper = task.to_uppercase()
        ));
        for (name, value, _) in scores.iter().filter(|s| s.2 == split) {
            yaml.push_str(&format!("    - type: {name}\n      value: {value}\n"));
        }
    }
    yaml.push_str("---\n");
    yaml
}

fn model_card(
    config: &BertHashConfig,
    head: Head,
    sentence: Option<&SentenceConfig>,
    onnx: bool,
    records: &RunRecords,
) -> String {
    let counts = config.parameter_counts();
    let class = head.architecture().class_name();
    let mut card = front_matter(head, sentence.is_some(), onnx, records);
    card.push_str(&format!(
        "\n# BERT Hash model ({class})\n\n\
A BERT encoder whose word embedding is a `[vocab, {p}]` table projected to the hidden size\n\
(hashed token embeddings), exported by berthash. Load it with `trust_remote_code=True`:\n\n\
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
    ));
    if let Some(s) = sentence {
        card.push_str(&format!(
            "\n## Sentence embeddings\n\n\
{pooling} pooling over the attended tokens{normalized}, texts truncated to {len} tokens; \
{dim} dimensions, compared by cosine similarity.\n\n\
```python\nfrom sentence_transformers import SentenceTransformer\n\
model = SentenceTransformer(\"PATH\", trust_remote_code=True)\n\
embeddings = model.encode([\"a first sentence\", \"a second one\"])\n```\n\n\
The same with berthash: `berthash embed --model PATH \"a first sentence\" \"a second one\"`.\n",
            pooling = match s.pooling {
                Pooling::Mean => "Mean",
                Pooling::Cls => "CLS",
                Pooling::Max => "Max",
            },
            normalized = if s.normalize {
                ", normalised to unit length"
            } else {
                ""
            },
            len = s.max_seq_length,
            dim = config.hidden_size,
        ));
    }
    if onnx {
        card.push_str(&format!(
            "\n## ONNX\n\n\
`{file}` is the same model as an ONNX graph (opset {opset}, f32), for ONNX Runtime without \
PyTorch:\n\n\
```python\nimport onnxruntime as ort\nfrom transformers import AutoTokenizer\n\
tokenizer = AutoTokenizer.from_pretrained(\"PATH\")\n\
session = ort.InferenceSession(\"PATH/{file}\")\n\
inputs = tokenizer([\"a first sentence\", \"a second one\"], padding=True, return_tensors=\"np\")\n\
outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, dict(inputs))))\n```\n",
            file = berthash_onnx::ONNX_FILE,
            opset = berthash_onnx::OPSET,
        ));
    }
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
