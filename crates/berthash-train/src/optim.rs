//! AdamW over Burn modules, decoupled exactly as `torch.optim.AdamW`:
//!
//! ```text
//! p <- p * (1 - lr * wd)                 (decoupled weight decay, first)
//! m <- b1 * m + (1 - b1) * g
//! v <- b2 * v + (1 - b2) * g^2
//! p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! The arithmetic of one parameter's update is [`berthash_kernels::adamw()`] (one pass in place on
//! the CPU). Weight decay is skipped for biases and LayerNorm weights, decided by the parameter's
//! Hugging Face name ([`is_no_decay`]). The state (step and the two moments per parameter) is
//! keyed by that name, so it can be saved to safetensors and loaded into a fresh model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use berthash_kernels::{adamw, AdamWState, AdamWStep, Kernels};
use berthash_model::names::{param_names, ParamName};
use berthash_model::weights::{RawTensor, TensorFile};
use burn::module::{AutodiffModule, ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::precision::{compute_copy, HalfWeights};

/// Whether HF's `run_mlm`/`run_glue` exclude a parameter from weight decay: biases and LayerNorm
/// weights (`no_decay = ["bias", "LayerNorm.weight"]`).
pub fn is_no_decay(name: &str) -> bool {
    name.contains("bias") || name.contains("LayerNorm.weight")
}

/// AdamW hyper-parameters (the learning rate is the schedule's peak) and gradient clipping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: (f64, f64),
    #[serde(default = "default_eps")]
    pub eps: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm weights).
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Global gradient-norm clipping; `None` disables it (the norm is still logged).
    #[serde(default = "default_max_grad_norm")]
    pub max_grad_norm: Option<f64>,
}

// Field defaults are the pre-training recipe; `OptimizerConfig::finetuning()` is run_glue's.
fn default_lr() -> f64 {
    1e-3
}
fn default_betas() -> (f64, f64) {
    (0.9, 0.999)
}
fn default_eps() -> f64 {
    1e-6
}
fn default_weight_decay() -> f64 {
    0.01
}
fn default_max_grad_norm() -> Option<f64> {
    Some(1.0)
}

impl OptimizerConfig {
    /// The model card's pre-training run: lr 1e-3, betas (0.9, 0.999), eps 1e-6, wd 0.01, clip 1.
    pub fn pretraining() -> Self {
        Self {
            lr: default_lr(),
            betas: default_betas(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            max_grad_norm: default_max_grad_norm(),
        }
    }

    /// `run_glue` with the card's flags: lr 1e-4, wd 0, and the `TrainingArguments` defaults
    /// betas (0.9, 0.999), eps 1e-8, clip 1.
    pub fn finetuning() -> Self {
        Self {
            lr: 1e-4,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: Some(1.0),
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, message: String| Err(TrainError::config(field, message));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(
                "optimizer.lr",
                format!("must be a finite number >= 0, got {}", self.lr),
            );
        }
        for (i, b) in [self.betas.0, self.betas.1].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return bad(
                    &format!("optimizer.betas[{i}]"),
                    format!("must be in [0, 1), got {b}"),
                );
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("optimizer.eps", format!("must be > 0, got {}", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "optimizer.weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            );
        }
        if let Some(n) = self.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return bad("optimizer.max_grad_norm", format!("must be > 0, got {n}"));
            }
        }
        Ok(())
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::pretraining()
    }
}

/// The two moments of one parameter, flattened.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// AdamW with per-parameter weight-decay groups. `B` is the autodiff backend of the model;
/// the state lives on its inner backend.
#[derive(Debug)]
pub struct AdamW<B: AutodiffBackend> {
    config: OptimizerConfig,
    /// Updates taken (torch's `state["step"]`, the same for every parameter here).
    step: u64,
    params: HashMap<ParamId, ParamName>,
    state: HashMap<ParamId, Moments<B::InnerBackend>>,
}

const EXP_AVG: &str = "exp_avg/";
const EXP_AVG_SQ: &str = "exp_avg_sq/";
const FORMAT: &str = "berthash-adamw-v1";

impl<B: AutodiffBackend> AdamW<B> {
    /// A fresh optimizer for `module`'s parameters.
    pub fn new<M: AutodiffModule<B>>(config: OptimizerConfig, module: &M) -> Self {
        let params = param_names::<B, M>(module)
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        Self {
            config,
            step: 0,
            params,
            state: HashMap::new(),
        }
    }

    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Updates taken so far.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// The HF names of the parameters that get weight decay, sorted.
    pub fn decayed_names(&self) -> Vec<String> {
        self.names_where(|n| !is_no_decay(n))
    }

    /// The HF names of the parameters without weight decay (biases, LayerNorm weights), sorted.
    pub fn no_decay_names(&self) -> Vec<String> {
        self.names_where(is_no_decay)
    }

    fn names_where(&self, keep: impl Fn(&str) -> bool) -> Vec<String> {
        let mut names: Vec<String> = self
            .params
            .values()
            .filter(|p| keep(&p.name))
            .map(|p| p.name.clone())
            .collect();
        names.sort();
        names
    }

    /// One update of every parameter that has a gradient in `grads` (consumed), at `lr`, each
    /// gradient multiplied by `grad_scale` first where given (the clip coefficient and a loss
    /// scale's inverse: [`crate::clip::Clipped`]). The product is the first operation of each
    /// parameter's update, so the GPU backends fuse it with the rest.
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        grads: GradientsParams,
        grad_scale: Option<Tensor<B::InnerBackend, 1>>,
    ) -> M
    where
        B::InnerBackend: Kernels,
    {
        self.update(lr, module, grads, grad_scale, None).0
    }

    /// [`AdamW::step`] for a model trained in half precision: the gradients may be in `dtype`
    /// (each is cast to f32 first), and each parameter's update also writes its new value in
    /// `dtype`. Returns the updated f32 model and the compute copy for the next step
    /// ([`crate::precision::compute_copy`]).
    pub fn step_and_cast<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        grads: GradientsParams,
        grad_scale: Option<Tensor<B::InnerBackend, 1>>,
        dtype: FloatDType,
    ) -> (M, M)
    where
        B::InnerBackend: Kernels,
    {
        let (module, cast) = self.update(lr, module, grads, grad_scale, Some(dtype));
        let copy = compute_copy(&module, dtype, cast);
        (module, copy)
    }

    /// The update, and with `cast` each updated parameter in that dtype, by id.
    fn update<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        mut grads: GradientsParams,
        grad_scale: Option<Tensor<B::InnerBackend, 1>>,
        cast: Option<FloatDType>,
    ) -> (M, HalfWeights<B::InnerBackend>)
    where
        B::InnerBackend: Kernels,
    {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = self.config.betas;
        let mut mapper = Updater::<B> {
            step: AdamWStep {
                lr,
                b1,
                b2,
                eps: self.config.eps,
                weight_decay: self.config.weight_decay,
                bias_correction1: 1.0 - b1.powi(t),
                bias_correction2_sqrt: (1.0 - b2.powi(t)).sqrt(),
            },
            params: &self.params,
            state: &mut self.state,
            grads: &mut grads,
            grad_scale,
            cast: cast.map(|dtype| (dtype, HashMap::new())),
        };
        let module = module.map(&mut mapper);
        (
            module,
            mapper.cast.map(|(_, cast)| cast).unwrap_or_default(),
        )
    }

    /// The state as a safetensors file: `exp_avg/<name>` and `exp_avg_sq/<name>` (f32, Burn's
    /// parameter shapes) and the step in the metadata. Reads the tensors back from the device.
    pub fn state_file(&self, path: &Path) -> TensorFile {
        let mut tensors = BTreeMap::new();
        for (id, moments) in &self.state {
            let param = &self.params[id];
            for (prefix, tensor) in [
                (EXP_AVG, &moments.exp_avg),
                (EXP_AVG_SQ, &moments.exp_avg_sq),
            ] {
                let values = tensor
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("converted to f32");
                tensors.insert(
                    format!("{prefix}{}", param.name),
                    RawTensor::from_f32(param.shape.clone(), &values),
                );
            }
        }
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
        ]);
        TensorFile {
            path: path.to_path_buf(),
            tensors,
            metadata: Some(metadata),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(self.state_file(path).write(path)?)
    }

    /// Restores the state saved by [`AdamW::save`] for `module` (which may be a freshly built
    /// model: parameters are matched by name). Every parameter must be found with its shape.
    pub fn load<M: AutodiffModule<B>>(
        config: OptimizerConfig,
        module: &M,
        path: &Path,
        device: &B::Device,
    ) -> Result<Self> {
        let file = TensorFile::read(path)?;
        let mut optim = Self::new(config, module);
        let fail = |message: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        };
        let meta = file.metadata.clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(fail(format!(
                "not an optimizer state file (format {:?}, expected {FORMAT})",
                meta.get("format")
            )));
        }
        optim.step = meta
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail("metadata has no valid `step`".into()))?;
        let mut used = 0;
        for (id, param) in &optim.params {
            let mut moments = Vec::new();
            for prefix in [EXP_AVG, EXP_AVG_SQ] {
                let key = format!("{prefix}{}", param.name);
                let Some(raw) = file.tensors.get(&key) else {
                    if optim.step == 0 {
                        continue;
                    }
                    return Err(fail(format!(
                        "no state for parameter `{}` (`{key}`)",
                        param.name
                    )));
                };
                if raw.shape != param.shape || raw.dtype != safetensors::Dtype::F32 {
                    return Err(fail(format!(
                        "state `{key}` has shape {:?} ({:?}), the model's parameter has shape {:?}",
                        raw.shape, raw.dtype, param.shape
                    )));
                }
                let values = raw.to_f32(path, &key)?;
                let n = values.len();
                moments.push(Tensor::<B::InnerBackend, 1>::from_data(
                    TensorData::new(values, [n]),
                    device,
                ));
                used += 1;
            }
            if let Ok([exp_avg, exp_avg_sq]) = <[_; 2]>::try_from(moments) {
                optim.state.insert(
                    *id,
                    Moments {
                        exp_avg,
                        exp_avg_sq,
                    },
                );
            }
        }
        if used != file.tensors.len() {
            let known: std::collections::HashSet<String> = optim
                .params
                .values()
                .flat_map(|p| {
                    [
                        format!("{EXP_AVG}{}", p.name),
                        format!("{EXP_AVG_SQ}{}", p.name),
                    ]
                })
                .collect();
            let extra: Vec<&String> = file
                .tensors
                .keys()
                .filter(|k| !known.contains(*k))
                .collect();
            return Err(fail(format!(
                "state for parameters this model does not have: {extra:?}"
            )));
        }
        Ok(optim)
    }
}

struct Updater<'a, B: AutodiffBackend> {
    /// The update's scalars, with the weight decay of the decayed parameters.
    step: AdamWStep,
    params: &'a HashMap<ParamId, ParamName>,
    state: &'a mut HashMap<ParamId, Moments<B::InnerBackend>>,
    grads: &'a mut GradientsParams,
    /// Every gradient's factor (`[1]`), where there is one.
    grad_scale: Option<Tensor<B::InnerBackend, 1>>,
    /// The dtype of the compute copy, and the updated parameters cast to it, by id.
    cast: Option<(FloatDType, HalfWeights<B::InnerBackend>)>,
}

impl<B: AutodiffBackend<InnerBackend: Kernels>> ModuleMapper<B> for Updater<'_, B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let dims = tensor.dims();
        let n = dims.iter().product::<usize>();
        let weight_decay = match self.params.get(&id) {
            Some(p) if is_no_decay(&p.name) => 0.0,
            _ => self.step.weight_decay,
        };
        // The update runs in the parameter's own shape, the moments reshaped to it, and they go
        // back to `[n]` only after it (and after the half copy): Burn's fusion does not join a
        // reshape to fewer axes into a chain and ends the chain there, so flattening the
        // parameter or its gradient first splits the update in three kernels on the GPU
        // backends. The factor's reshape comes before the gradient's cast to f32, so that a
        // half-precision gradient's cast joins the chain the factor's product starts.
        let factor = self.grad_scale.clone().map(|f| f.reshape([1; D]));
        let mut grad = grad.cast(FloatDType::F32);
        if let Some(factor) = factor {
            grad = grad.mul(factor);
        }
        let (exp_avg, exp_avg_sq) = match self.state.remove(&id) {
            Some(m) => (m.exp_avg.reshape(dims), m.exp_avg_sq.reshape(dims)),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let updated = adamw(
            AdamWState {
                param: tensor.inner(),
                exp_avg,
                exp_avg_sq,
            },
            grad,
            &AdamWStep {
                weight_decay,
                ..self.step
            },
        );
        if let Some((dtype, cast)) = &mut self.cast {
            let half = updated.param.clone().cast(*dtype);
            cast.insert(id, half.into_primitive().tensor());
        }
        self.state.insert(
            id,
            Moments {
                exp_avg: updated.exp_avg.reshape([n]),
                exp_avg_sq: updated.exp_avg_sq.reshape([n]),
            },
        );
        let mut tensor = Tensor::from_inner(updated.param);
        if require_grad {
            tensor = tensor.require_grad();
        }
        Param::from_mapped_value(id, tensor, mapper)
    }
}
