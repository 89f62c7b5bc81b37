//! BERT Hash in Burn: stock BERT (post-LN, GELU-erf, absolute positions, token types, pooler)
//! whose word embedding is a tiny `[vocab, projections]` table projected to `hidden_size`.
//!
//! Modules mirror transformers' `modeling_bert.py` names, so Hugging Face weights load by path
//! (see [`weights`]). Everything is generic over the Burn backend; the caller picks one.

pub mod attention;
pub mod config;
pub mod dense;
pub mod embeddings;
pub mod encoder;
pub mod error;
pub mod fs;
pub mod heads;
pub mod init;
pub mod inputs;
pub mod layer_norm;
pub mod loss;
pub mod model;
pub mod names;
pub mod pooling;
pub mod pretrained;
pub mod weights;

pub use config::{Architecture, BertHashConfig, ParameterCounts};
pub use error::ModelError;
pub use model::{
    BertHashForMaskedLM, BertHashForSequenceClassification, BertHashModel, BertInput,
    BertModelOutput, ClassificationTargets, ModelOptions,
};
pub use pretrained::{
    load, load_any, load_trained, read_config, save, AnyModel, HfModel, Pretrained,
};
