//! Sentence-embedding training, top to bottom like [`crate::finetune()`]: config, the pairs (the
//! training file; the dev file or a seeded held-out fraction of the training pairs), the run (the
//! pre-trained encoder, or the newest checkpoint), the loop with sentence-transformers' losses,
//! evaluation every epoch (Spearman correlation of the pairs' cosine similarity with their gold
//! scores, as sentence-transformers' `EmbeddingSimilarityEvaluator` reports it) keeping the best
//! model, then the final model. Every model directory the run writes (`best/`, `model/`) is a
//! sentence-transformers model, so `embed` and `export` use its pooling.

use std::collections::BTreeMap;
use std::path::Path;

use berthash_data::glue::EncodedSplit;
use berthash_data::pairs::{read_pairs, PairColumns, Pairs};
use berthash_data::tokenize::copy_tokenizer_files;
use berthash_data::TokenizerHandle;
use berthash_kernels::{Kernels, TrainBackend};
use berthash_model::pretrained::{self};
use berthash_model::weights::WeightLayout;
use berthash_model::{BertHashConfig, BertHashModel, BertInput};
use burn::module::AutodiffModule;
use burn::prelude::*;

use crate::best::{Criterion, Goal};
use crate::config::{steps_for, EmbeddingsConfig};
use crate::embed::{cosine, encode_texts, pool, EmbedOptions, Embedder, Embeddings};
use crate::epoch_order::EpochOrder;
use crate::error::{Result, TrainError};
use crate::log::{read_metrics, Record, Summary};
use crate::metrics::{pearson, spearman};
use crate::precision::check_precision;
use crate::run::{Run, RunSpec};
use crate::run_dir::{write_json, RunDir, RunMode};
use crate::sentence_transformers::{self, SentenceConfig};
use crate::tensors::classification_tensors;
use crate::trainer::to_f32;

type Encoder<B> = BertHashModel<B>;

/// The metric that picks the best model.
pub const SPEARMAN: &str = "eval_spearman_cosine";

fn criterion() -> Criterion {
    Criterion::new(SPEARMAN, Goal::Maximize)
}

/// Trains the encoder of `config.model` on `config.data` into `run_dir`.
pub fn train_embeddings<B: TrainBackend>(
    config: EmbeddingsConfig,
    run_dir: &Path,
    device: &B::Device,
    mode: RunMode,
) -> Result<Summary> {
    let mut config = config.resolve()?;
    check_precision::<B>(config.train.precision, device)?;
    let model_config = berthash_model::read_config(&config.model)?;
    let tokenizer = TokenizerHandle::from_file(&config.tokenizer)?;
    config.check_model(&model_config, &tokenizer)?;
    let (train, dev) = read_data(&config)?;
    let train_a = encode_texts(&tokenizer, &train.a, config.max_seq_length)?;
    let train_b = encode_texts(&tokenizer, &train.b, config.max_seq_length)?;
    let mut order = EpochOrder::new(&config.train, train.len());
    config.train.max_steps = Some(steps_for(
        &config.train,
        config.epochs,
        order.micro_per_epoch(),
    ));
    let sentence = SentenceConfig {
        pooling: config.pooling,
        normalize: config.normalize,
        max_seq_length: config.max_seq_length,
    };
    let spec = RunSpec {
        dir: run_dir,
        mode,
        config: &config,
        model: model_config.clone(),
        criterion: criterion(),
        micro_per_epoch: Some(order.micro_per_epoch()),
        checkpoint_at_eval: true,
        patience: None,
    };
    let mut run = Run::<B, Encoder<B>>::start(spec, device, || init(&config, device))?;
    let mut eval = Evaluation::new(&config, &run, dev, &tokenizer, sentence)?;
    if run.step() == 0 {
        // The pre-trained encoder's score: the baseline the training must beat.
        eval.run(&mut run)?;
    }
    while !run.done() {
        let (mut micro, mut tokens) = (Vec::with_capacity(config.train.grad_accum), 0);
        for index in 0..config.train.grad_accum {
            let rows = order.rows(run.trainer.state.micro_batches + index as u64);
            let batch = PairTensors::new(&train_a, &train_b, &train, rows, device)?;
            tokens += batch.tokens;
            micro.push(batch);
        }
        run.train_step(micro, tokens, |m, b| pair_loss(m, b, &config))?;
        if run.due(config.train.eval_every) || run.epoch_ended() {
            eval.run(&mut run)?;
        }
        run.checkpoint_if_due()?;
    }
    let final_eval = eval.run(&mut run)?;
    let results = criterion().results_json(&eval.best, run.trainer.state.best_eval.as_ref());
    let dir = run.dir.clone();
    let pooler = run.trainer.model().pooler.is_some();
    let summary = run.finish(final_eval, BTreeMap::new())?;
    sentence_transformers::write(
        &summary.model_dir,
        model_config.hidden_size,
        pooler,
        &sentence,
    )?;
    write_json(&dir.eval_results(), &results)?;
    Ok(summary)
}

/// The training pairs and the evaluation pairs (the dev file, or held out from training).
fn read_data(config: &EmbeddingsConfig) -> Result<(Pairs, Pairs)> {
    let data = &config.data;
    let columns = PairColumns {
        text_a: &data.text_a,
        text_b: &data.text_b,
        score: data.score.as_deref(),
        score_range: data.score_range,
    };
    let train = read_pairs(&config.data_dir.join(&data.train), columns)?;
    let (train, dev) = match &data.dev {
        Some(dev) => (train, read_pairs(&config.data_dir.join(dev), columns)?),
        None => train.hold_out(data.held_out_fraction, data.held_out_seed),
    };
    if train.is_empty() {
        return Err(TrainError::config(
            "data.train",
            format!(
                "{}: one pair, none left to train on once one is held out",
                data.train
            ),
        ));
    }
    Ok((train, dev))
}

/// The pre-trained encoder (any head dropped).
fn init<B: TrainBackend>(
    config: &EmbeddingsConfig,
    device: &B::Device,
) -> Result<(Encoder<B>, WeightLayout)> {
    let loaded = pretrained::load::<B, Encoder<B>>(&config.model, None, config.train.seed, device)?;
    Ok((loaded.model, loaded.layout))
}

/// One micro-batch of pairs on the device.
struct PairTensors<B: Backend> {
    a: BertInput<B>,
    b: BertInput<B>,
    scores: Option<Tensor<B, 1>>,
    tokens: u64,
}

impl<B: Backend> PairTensors<B> {
    fn new(
        a: &EncodedSplit,
        b: &EncodedSplit,
        pairs: &Pairs,
        rows: &[usize],
        device: &B::Device,
    ) -> Result<Self> {
        let (a, b) = (
            classification_tensors::<B>(&a.batch(rows)?, device),
            classification_tensors::<B>(&b.batch(rows)?, device),
        );
        let scores = pairs.scores.as_ref().map(|s| {
            let values: Vec<f32> = rows.iter().map(|&i| s[i]).collect();
            Tensor::from_data(TensorData::new(values, [rows.len()]), device)
        });
        Ok(Self {
            tokens: (a.tokens + b.tokens) as u64,
            a: a.input,
            b: b.input,
            scores,
        })
    }
}

/// The configured loss of a batch, on pooled f32 embeddings.
fn pair_loss<B: Kernels>(
    model: &Encoder<B>,
    batch: PairTensors<B>,
    config: &EmbeddingsConfig,
) -> Tensor<B, 1> {
    let embed = |input: BertInput<B>| {
        let mask = input
            .attention_mask
            .clone()
            .expect("a padded batch has a mask");
        pool(to_f32(model.encode(input)), mask, config.pooling)
    };
    let (a, b) = (embed(batch.a), embed(batch.b));
    config.loss.loss(a, b, batch.scores)
}

/// Evaluation on the scored dev pairs, and the best model in `best/`.
struct Evaluation<'a> {
    config: &'a EmbeddingsConfig,
    dev: Pairs,
    split: &'static str,
    tokenizer: TokenizerHandle,
    sentence: SentenceConfig,
    model_config: BertHashConfig,
    layout: WeightLayout,
    dir: RunDir,
    /// The metrics of the last evaluation and of the best one.
    last: BTreeMap<String, f64>,
    best: BTreeMap<String, f64>,
}

impl<'a> Evaluation<'a> {
    fn new<B: TrainBackend>(
        config: &'a EmbeddingsConfig,
        run: &Run<B, Encoder<B>>,
        dev: Pairs,
        tokenizer: &TokenizerHandle,
        sentence: SentenceConfig,
    ) -> Result<Self> {
        // A resumed run's best evaluation so far, from its log.
        let mut best = BTreeMap::new();
        if let Some(b) = &run.trainer.state.best_eval {
            for record in read_metrics(&run.dir.metrics())? {
                if let Record::Eval(e) = record {
                    if e.step == b.step {
                        best = e.metrics;
                    }
                }
            }
        }
        Ok(Self {
            config,
            dev,
            split: if config.data.dev.is_some() {
                "dev"
            } else {
                "held_out"
            },
            tokenizer: tokenizer.clone(),
            sentence,
            model_config: run.model_config.clone(),
            layout: run.layout.clone(),
            dir: run.dir.clone(),
            last: BTreeMap::new(),
            best,
        })
    }

    /// Evaluates the current model (once per step), logs it and keeps it in `best/` when it is
    /// the best so far.
    fn run<B: TrainBackend>(
        &mut self,
        run: &mut Run<B, Encoder<B>>,
    ) -> Result<BTreeMap<String, f64>> {
        if run.evaluated_now() {
            return Ok(self.last.clone());
        }
        let model = run.trainer.model().valid();
        let options = EmbedOptions {
            pooling: self.sentence.pooling,
            normalize: false,
            max_seq_length: Some(self.sentence.max_seq_length),
            batch_size: self.config.eval_batch_size,
        };
        let embedder = Embedder::new(
            &self.config.model,
            self.model_config.clone(),
            model.clone(),
            self.tokenizer.clone(),
            options,
            &run.trainer.device,
        )?;
        let metrics = similarity_metrics(
            &embedder.embed(&self.dev.a)?,
            &embedder.embed(&self.dev.b)?,
            self.dev.scores.as_deref().unwrap_or_default(),
        );
        run.record_eval(self.split, metrics.clone())?;
        if run.offer_best(metrics[SPEARMAN]) {
            let best = self.dir.best_dir();
            pretrained::save::<B::InnerBackend, Encoder<B::InnerBackend>>(
                &best,
                &self.model_config,
                &model,
                &self.layout,
            )?;
            copy_tokenizer_files(run.tokenizer(), &best);
            sentence_transformers::write(
                &best,
                self.model_config.hidden_size,
                model.pooler.is_some(),
                &self.sentence,
            )?;
            self.best = metrics.clone();
        }
        self.last = metrics.clone();
        Ok(metrics)
    }
}

/// Pearson and Spearman correlation of the pairs' cosine similarity with the gold scores.
pub fn similarity_metrics(a: &Embeddings, b: &Embeddings, gold: &[f32]) -> BTreeMap<String, f64> {
    let cosines: Vec<f64> = (0..a.len())
        .map(|i| f64::from(cosine(a.row(i), b.row(i))))
        .collect();
    let gold: Vec<f64> = gold.iter().map(|&g| f64::from(g)).collect();
    BTreeMap::from([
        (SPEARMAN.to_string(), spearman(&cosines, &gold)),
        ("eval_pearson_cosine".to_string(), pearson(&cosines, &gold)),
    ])
}
