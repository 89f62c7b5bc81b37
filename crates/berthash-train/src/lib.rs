//! Training for berthash: masked-LM pre-training and GLUE fine-tuning of BERT Hash models.
//!
//! Entry points: [`pretrain()`] and [`finetune()`], generic over the Burn autodiff backend (the CLI
//! picks it), each driven by a serde config ([`PretrainConfig`], [`FinetuneConfig`]) and writing
//! a run directory ([`run_dir`]) through a [`Run`] (start or resume, step, evaluate, checkpoint,
//! finish). The pieces they are built from are public too: the step ([`trainer`]), AdamW
//! ([`optim`]), clipping ([`clip`]), schedules ([`schedule`]), checkpoints ([`checkpoint`]),
//! evaluation ([`eval`]), GLUE metrics ([`metrics`]), logs ([`log`]) and the throughput
//! benchmark ([`mod@bench`]).

pub mod bench;
pub mod best;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod dump;
pub mod embed;
pub mod epoch_order;
pub mod error;
pub mod eval;
pub mod finetune;
pub mod flat;
pub mod interrupt;
pub mod log;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod padding_idx;
pub mod phases;
pub mod precision;
pub mod pretrain;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod sentence_loss;
pub mod sentence_transformers;
pub mod tensorboard;
pub mod tensors;
pub mod train_embeddings;
pub mod trainer;

pub use best::{BestEval, Criterion, Goal};
pub use checkpoint::{Checkpoints, TrainState};
pub use config::{
    EmbeddingsConfig, FinetuneConfig, Init, OnNonFinite, PairData, PretrainConfig, ReportTo,
    TrainConfig,
};
pub use error::{Result, TrainError};
pub use finetune::finetune;
pub use log::{Record, Summary};
pub use optim::{AdamW, OptimizerConfig};
pub use precision::Precision;
pub use pretrain::pretrain;
pub use run::{Run, RunSpec};
pub use run_dir::{resolve_model, RunDir, RunMode, RunRecords};
pub use schedule::{Schedule, ScheduleConfig, ScheduleKind};
pub use train_embeddings::train_embeddings;
