//! Hugging Face model directories (`config.json` + `model.safetensors`): load any of the three
//! models from one, with or without the `bert.` prefix, pooler or heads, and save one back in
//! the layout it was read in.

use std::path::Path;

use burn::module::Module;
use burn::prelude::*;

use crate::config::{Architecture, BertHashConfig};
use crate::error::ModelError;
use crate::init::Initializer;
use crate::model::{
    BertHashForMaskedLM, BertHashForSequenceClassification, BertHashModel, ModelOptions,
};
use crate::weights::{load_module, module_tensors, LoadReport, TensorFile, WeightLayout};

pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A model class that can live in a Hugging Face directory.
pub trait HfModel<B: Backend>: Module<B> + Sized {
    const ARCHITECTURE: Architecture;
    /// Keys that may be absent from a file (initialised fresh instead).
    const OPTIONAL: &'static [&'static str];
    /// The task head's key prefix and what to do about a file without it: a freshly
    /// initialised head answers with noise, so commands that use the head refuse one.
    const HEAD: Option<(&'static str, &'static str)>;

    fn build(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self;

    /// Whether the encoder's keys carry `bert.`: true for the models with a head.
    fn prefixed() -> bool {
        Self::ARCHITECTURE != Architecture::Base
    }
}

impl<B: Backend> HfModel<B> for BertHashModel<B> {
    const ARCHITECTURE: Architecture = Architecture::Base;
    const OPTIONAL: &'static [&'static str] = &["pooler."];
    const HEAD: Option<(&'static str, &'static str)> = None;

    fn build(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        Self::new(config, options, init)
    }
}

impl<B: Backend> HfModel<B> for BertHashForMaskedLM<B> {
    const ARCHITECTURE: Architecture = Architecture::MaskedLm;
    const OPTIONAL: &'static [&'static str] = &["cls.", "bert.pooler."];
    const HEAD: Option<(&'static str, &'static str)> = Some((
        "cls.",
        "use a pre-trained (masked-LM) model, or export the model as the class it was trained as",
    ));

    fn build(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        Self::new(config, options, init)
    }
}

impl<B: Backend> HfModel<B> for BertHashForSequenceClassification<B> {
    const ARCHITECTURE: Architecture = Architecture::SequenceClassification;
    const OPTIONAL: &'static [&'static str] = &["classifier.", "bert.pooler."];
    const HEAD: Option<(&'static str, &'static str)> =
        Some(("classifier.", "fine-tune it first (berthash finetune)"));

    fn build(config: &BertHashConfig, options: ModelOptions, init: &mut Initializer<B>) -> Self {
        Self::new(config, options, init)
    }
}

/// A model with its config and the file layout it came from.
#[derive(Debug)]
pub struct Pretrained<M> {
    pub config: BertHashConfig,
    pub model: M,
    pub layout: WeightLayout,
    pub report: LoadReport,
}

/// Reads `DIR/config.json`.
pub fn read_config(dir: &Path) -> Result<BertHashConfig, ModelError> {
    check_dir(dir)?;
    BertHashConfig::from_file(&dir.join(CONFIG_FILE))
}

fn check_dir(dir: &Path) -> Result<(), ModelError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ModelError::Io {
            path: dir.to_path_buf(),
            cause: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a model directory (expected config.json and model.safetensors in it)",
            ),
        })
    }
}

/// A freshly initialised model (pre-training from scratch).
pub fn init_model<B: Backend, M: HfModel<B>>(
    config: &BertHashConfig,
    options: ModelOptions,
    seed: u64,
    device: &B::Device,
) -> M {
    let mut init = Initializer::new(seed, config.initializer_range, device);
    M::build(config, options, &mut init)
}

/// Loads `DIR` as model class `M`. `config` replaces `DIR/config.json` when given (a new label
/// set for fine-tuning, say). Tensors the file lacks but `M` may miss (a head, the pooler) are
/// initialised from `seed` and listed in the report.
pub fn load<B: Backend, M: HfModel<B>>(
    dir: &Path,
    config: Option<BertHashConfig>,
    seed: u64,
    device: &B::Device,
) -> Result<Pretrained<M>, ModelError> {
    let config = match config {
        Some(config) => config,
        None => read_config(dir)?,
    };
    check_dir(dir)?;
    let file = TensorFile::read(&dir.join(WEIGHTS_FILE))?;
    let (projection, projection_bias) =
        file.find_projection(config.hidden_size, config.projections)?;
    let options = ModelOptions {
        with_pooler: M::ARCHITECTURE == Architecture::SequenceClassification || file.has_pooler(),
        projection_bias,
    };
    let layout = WeightLayout {
        projection,
        dtype: file
            .tensors
            .values()
            .next()
            .map_or(safetensors::Dtype::F32, |t| t.dtype),
        metadata: file.metadata.clone(),
    };
    let model: M = init_model(&config, options, seed, device);
    let (model, report) = load_module(model, &file, M::prefixed(), &layout, M::OPTIONAL, device)?;
    Ok(Pretrained {
        config,
        model,
        layout,
        report,
    })
}

/// Loads `DIR` as `M`, refusing a file without `M`'s trained head (see [`HfModel::HEAD`]).
pub fn load_trained<B: Backend, M: HfModel<B>>(
    dir: &Path,
    device: &B::Device,
) -> Result<Pretrained<M>, ModelError> {
    let loaded = load::<B, M>(dir, None, 0, device)?;
    if let Some((head, hint)) = M::HEAD {
        if let Some(key) = loaded
            .report
            .initialized
            .iter()
            .find(|k| k.starts_with(head))
        {
            return Err(ModelError::MissingHead {
                path: dir.to_path_buf(),
                class: M::ARCHITECTURE.class_name(),
                key: key.clone(),
                hint,
            });
        }
    }
    Ok(loaded)
}

/// Writes `DIR/config.json` (with `architectures` set to `M`'s class) and `DIR/model.safetensors`.
pub fn save<B: Backend, M: HfModel<B>>(
    dir: &Path,
    config: &BertHashConfig,
    model: &M,
    layout: &WeightLayout,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|cause| ModelError::Io {
        path: dir.to_path_buf(),
        cause,
    })?;
    let mut config = config.clone();
    config.set_architecture(M::ARCHITECTURE);
    let weights = dir.join(WEIGHTS_FILE);
    module_tensors(model, M::prefixed(), layout, &weights).write(&weights)?;
    config.save(&dir.join(CONFIG_FILE))
}

/// Any of the three models, as named by a directory's `config.json`. One is held at a time, so
/// the size difference between the variants costs nothing worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum AnyModel<B: Backend> {
    Base(BertHashModel<B>),
    MaskedLm(BertHashForMaskedLM<B>),
    Classifier(BertHashForSequenceClassification<B>),
}

/// Loads whatever `DIR` holds: the class in `architectures`, or, when it names none of ours,
/// the one its tensors fit (an MLM head, a classifier, else the bare encoder).
pub fn load_any<B: Backend>(
    dir: &Path,
    device: &B::Device,
) -> Result<Pretrained<AnyModel<B>>, ModelError> {
    let config = read_config(dir)?;
    let architecture = match config.architecture() {
        Some(a) => a,
        None => {
            let file = TensorFile::read(&dir.join(WEIGHTS_FILE))?;
            if file.has_mlm_head() {
                Architecture::MaskedLm
            } else if file.has_classifier() {
                Architecture::SequenceClassification
            } else {
                Architecture::Base
            }
        }
    };
    fn wrap<M, B: Backend>(
        p: Pretrained<M>,
        f: impl FnOnce(M) -> AnyModel<B>,
    ) -> Pretrained<AnyModel<B>> {
        Pretrained {
            config: p.config,
            model: f(p.model),
            layout: p.layout,
            report: p.report,
        }
    }
    Ok(match architecture {
        Architecture::Base => wrap(load(dir, Some(config), 0, device)?, AnyModel::Base),
        Architecture::MaskedLm => wrap(load(dir, Some(config), 0, device)?, AnyModel::MaskedLm),
        Architecture::SequenceClassification => {
            wrap(load(dir, Some(config), 0, device)?, AnyModel::Classifier)
        }
    })
}
