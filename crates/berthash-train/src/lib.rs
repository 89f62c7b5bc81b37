//! Training for berthash: masked-LM pre-training and GLUE fine-tuning of BERT Hash models.
//!
//! Entry points: [`pretrain`] and [`finetune`], generic over the Burn autodiff backend (the CLI
//! picks it), each driven by a serde config ([`PretrainConfig`], [`FinetuneConfig`]) and writing
//! a run directory ([`run_dir`]). The pieces they are built from are public too: AdamW
//! ([`optim`]), clipping ([`clip`]), schedules ([`schedule`]), checkpoints ([`checkpoint`]),
//! GLUE metrics ([`metrics`]) and logs ([`log`]).

pub mod batch;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod dump;
pub mod error;
pub mod finetune;
pub mod log;
pub mod metrics;
pub mod names;
pub mod optim;
pub mod padding;
pub mod precision;
pub mod pretrain;
pub mod run_dir;
pub mod schedule;
mod start;
pub mod trainer;

pub use checkpoint::{Checkpoints, TrainState};
pub use config::{FinetuneConfig, OnNonFinite, PretrainConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use finetune::finetune;
pub use log::{Record, Summary};
pub use optim::{AdamW, OptimizerConfig};
pub use precision::Precision;
pub use pretrain::pretrain;
pub use run_dir::{RunDir, RunMode};
pub use schedule::{Schedule, ScheduleConfig, ScheduleKind};
