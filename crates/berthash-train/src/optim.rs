//! AdamW over Burn modules, decoupled exactly as `torch.optim.AdamW`:
//!
//! ```text
//! p <- p * (1 - lr * wd)                 (decoupled weight decay, first)
//! m <- b1 * m + (1 - b1) * g
//! v <- b2 * v + (1 - b2) * g^2
//! p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! Weight decay is skipped for biases and LayerNorm weights, decided by the parameter's Hugging
//! Face name ([`is_no_decay`]): two groups, as torch's `param_groups`. Each group is updated as a
//! whole, its gradients, parameters and moments each one flat vector ([`crate::flat`]), by one
//! call of [`berthash_kernels::adamw()`] (one pass in place on the CPU, one fused kernel on the
//! GPU backends), the multi-tensor update torch's `foreach` and `fused` variants make. The
//! moments are saved per parameter, keyed by its name, so that they load into a fresh model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use berthash_kernels::{adamw, AdamWState, AdamWStep, Kernels};
use berthash_model::names::{param_names, ParamName};
use berthash_model::weights::{RawTensor, TensorFile};
use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{FloatDType, TensorPrimitive};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::flat::Layout;
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

/// The weight-decay groups, as torch's `param_groups`: the parameters with weight decay, and
/// those without ([`is_no_decay`]). Indices into the optimizer's per-group arrays.
const DECAY: usize = 0;
const NO_DECAY: usize = 1;

/// The gradients of a module's parameters as one flat vector per weight-decay group
/// ([`AdamW::gather`], layout in [`crate::flat`]): what clipping and the update take.
pub struct GroupGrads<B: Backend> {
    groups: [Option<FlatGrad<B>>; 2],
}

/// A parameter's group and index among the group's segments.
struct Place {
    group: usize,
    index: usize,
}

struct FlatGrad<B: Backend> {
    layout: Layout,
    values: Tensor<B, 1>,
}

impl<B: Backend> GroupGrads<B> {
    /// Each group's gradient vector (zeros between the parameters).
    pub fn vectors(&self) -> impl Iterator<Item = &Tensor<B, 1>> {
        self.groups.iter().flatten().map(|g| &g.values)
    }

    /// Where each parameter with a gradient lies, by id.
    fn places(&self) -> HashMap<ParamId, Place> {
        let mut places = HashMap::new();
        for (group, grad) in self.groups.iter().enumerate() {
            let segments = grad.iter().flat_map(|g| g.layout.segments());
            for (index, segment) in segments.enumerate() {
                places.insert(segment.id, Place { group, index });
            }
        }
        places
    }
}

/// The two moments of one parameter or of a group, flattened.
#[derive(Debug, Clone)]
struct Moments<B: Backend> {
    exp_avg: Tensor<B, 1>,
    exp_avg_sq: Tensor<B, 1>,
}

/// A group's moments, as vectors in the layout of the group's last update.
#[derive(Debug)]
struct GroupState<B: Backend> {
    layout: Layout,
    moments: Moments<B>,
}

/// AdamW with per-parameter weight-decay groups. `B` is the autodiff backend of the model;
/// the state lives on its inner backend.
#[derive(Debug)]
pub struct AdamW<B: AutodiffBackend> {
    config: OptimizerConfig,
    /// Updates taken (torch's `state["step"]`, the same for every parameter here).
    step: u64,
    params: HashMap<ParamId, ParamName>,
    /// Each group's moments since its last update.
    groups: [Option<GroupState<B::InnerBackend>>; 2],
    /// Moments of single parameters: loaded from a file, or left by a group whose parameters
    /// with a gradient changed (a parameter keeps its moments through updates without one).
    loose: HashMap<ParamId, Moments<B::InnerBackend>>,
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
            groups: [None, None],
            loose: HashMap::new(),
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

    /// The gradients of `module`'s parameters in `grads` (consumed), as one flat vector per
    /// group, in module order. A half-precision gradient stays in its dtype.
    pub fn gather<M: AutodiffModule<B>>(
        &mut self,
        module: &M,
        grads: GradientsParams,
    ) -> GroupGrads<B::InnerBackend>
    where
        B::InnerBackend: Kernels,
    {
        let mut gather = Gather::<B> {
            params: &self.params,
            grads,
            layouts: Default::default(),
            pieces: Default::default(),
        };
        module.visit(&mut gather);
        let Gather {
            layouts, pieces, ..
        } = gather;
        let mut groups = [None, None];
        for ((group, layout), pieces) in groups.iter_mut().zip(layouts).zip(pieces) {
            if !layout.is_empty() {
                let values = layout.concat(pieces);
                *group = Some(FlatGrad { layout, values });
            }
        }
        GroupGrads { groups }
    }

    /// One update of every parameter that has a gradient in `grads`, at `lr`, the gradients
    /// multiplied by `grad_scale` first where given (the clip coefficient and a loss scale's
    /// inverse: [`crate::clip::Clipped`]). The product is the first operation of the update, so
    /// the GPU backends fuse it with the rest.
    pub fn step<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        grads: GroupGrads<B::InnerBackend>,
        grad_scale: Option<Tensor<B::InnerBackend, 1>>,
    ) -> M
    where
        B::InnerBackend: Kernels,
    {
        self.update(lr, module, grads, grad_scale, None).0
    }

    /// [`AdamW::step`] for a model trained in half precision: the gradients may be in `dtype`
    /// (cast to f32 first), and the update also writes the new values in `dtype`. Returns the
    /// updated f32 model and the compute copy for the next step
    /// ([`crate::precision::compute_copy`]).
    pub fn step_and_cast<M: AutodiffModule<B>>(
        &mut self,
        lr: f64,
        module: M,
        grads: GroupGrads<B::InnerBackend>,
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
        grads: GroupGrads<B::InnerBackend>,
        grad_scale: Option<Tensor<B::InnerBackend, 1>>,
        cast: Option<FloatDType>,
    ) -> (M, HalfWeights<B::InnerBackend>)
    where
        B::InnerBackend: Kernels,
    {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = self.config.betas;
        let step = AdamWStep {
            lr,
            b1,
            b2,
            eps: self.config.eps,
            weight_decay: self.config.weight_decay,
            bias_correction1: 1.0 - b1.powi(t),
            bias_correction2_sqrt: (1.0 - b2.powi(t)).sqrt(),
        };
        let places = grads.places();
        let mut values = Values::<B> {
            wanted: &places,
            found: HashMap::new(),
        };
        module.visit(&mut values);
        let mut found = values.found;
        let mut updated = [None, None];
        for (group, grad) in grads.groups.into_iter().enumerate() {
            let Some(grad) = grad else {
                continue;
            };
            let param = grad
                .layout
                .segments()
                .iter()
                .map(|s| {
                    found
                        .remove(&s.id)
                        .expect("a gathered gradient's parameter is in the module")
                })
                .collect();
            let step = AdamWStep {
                weight_decay: if group == NO_DECAY {
                    0.0
                } else {
                    step.weight_decay
                },
                ..step
            };
            updated[group] = Some(self.update_group(group, grad, param, &grad_scale, &step, cast));
        }
        let mut scatter = Scatter {
            places,
            updated,
            cast: HashMap::new(),
        };
        let module = module.map(&mut scatter);
        (module, scatter.cast)
    }

    /// One group's update from its gradient and its parameters' values (flattened, in the
    /// layout's order): the new values, cut back into parameters, and their half copies.
    fn update_group(
        &mut self,
        group: usize,
        grad: FlatGrad<B::InnerBackend>,
        param: Vec<FloatTensor<B::InnerBackend>>,
        grad_scale: &Option<Tensor<B::InnerBackend, 1>>,
        step: &AdamWStep,
        cast: Option<FloatDType>,
    ) -> Updated<B::InnerBackend>
    where
        B::InnerBackend: Kernels,
    {
        let FlatGrad { layout, values } = grad;
        let param = layout.concat(param);
        let moments = self.moments(group, &layout, &param.device());
        // The gradient's cast (of a half-precision gradient) and the factor's product are the
        // first operations of the chain the GPU backends fuse into one kernel, and the half
        // copy's cast is its last.
        let mut grad = values.cast(FloatDType::F32);
        if let Some(factor) = grad_scale {
            grad = grad.mul(factor.clone());
        }
        let new = adamw(
            AdamWState {
                param,
                exp_avg: moments.exp_avg,
                exp_avg_sq: moments.exp_avg_sq,
            },
            grad,
            step,
        );
        let half = cast.map(|dtype| layout.split(new.param.clone().cast(dtype)));
        let param = layout.split(new.param);
        self.groups[group] = Some(GroupState {
            layout,
            moments: Moments {
                exp_avg: new.exp_avg,
                exp_avg_sq: new.exp_avg_sq,
            },
        });
        Updated { param, half }
    }

    /// The moments of `group` as vectors in `layout`: the group's own where its last update had
    /// that layout, else put together from single parameters' (zeros for a parameter without).
    fn moments(
        &mut self,
        group: usize,
        layout: &Layout,
        device: &burn::tensor::Device<B::InnerBackend>,
    ) -> Moments<B::InnerBackend>
    where
        B::InnerBackend: Kernels,
    {
        match self.groups[group].take() {
            Some(state) if state.layout == *layout => return state.moments,
            Some(GroupState { layout, moments }) => {
                let exp_avg = layout.split(moments.exp_avg);
                let exp_avg_sq = layout.split(moments.exp_avg_sq);
                for ((segment, exp_avg), exp_avg_sq) in
                    layout.segments().iter().zip(exp_avg).zip(exp_avg_sq)
                {
                    let flat = |t| {
                        Tensor::<B::InnerBackend, 1>::from_primitive(TensorPrimitive::Float(t))
                            .reshape([segment.len()])
                    };
                    let moments = Moments {
                        exp_avg: flat(exp_avg),
                        exp_avg_sq: flat(exp_avg_sq),
                    };
                    self.loose.insert(segment.id, moments);
                }
            }
            None => {}
        }
        let (mut exp_avg, mut exp_avg_sq) = (Vec::new(), Vec::new());
        for segment in layout.segments() {
            let moments = self.loose.remove(&segment.id).unwrap_or_else(|| {
                let zeros = Tensor::zeros([segment.len()], device);
                Moments {
                    exp_avg: zeros.clone(),
                    exp_avg_sq: zeros,
                }
            });
            exp_avg.push(moments.exp_avg.into_primitive().tensor());
            exp_avg_sq.push(moments.exp_avg_sq.into_primitive().tensor());
        }
        Moments {
            exp_avg: layout.concat(exp_avg),
            exp_avg_sq: layout.concat(exp_avg_sq),
        }
    }

    /// Each parameter's two moments as f32 values, by id. Reads them back from the device.
    fn moments_by_param(&self) -> Vec<(ParamId, [Vec<f32>; 2])> {
        let read = |t: &Tensor<B::InnerBackend, 1>| {
            t.clone()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("converted to f32")
        };
        let mut moments = Vec::new();
        for state in self.groups.iter().flatten() {
            let [exp_avg, exp_avg_sq] =
                [&state.moments.exp_avg, &state.moments.exp_avg_sq].map(read);
            for segment in state.layout.segments() {
                let range = segment.range();
                moments.push((
                    segment.id,
                    [exp_avg[range.clone()].to_vec(), exp_avg_sq[range].to_vec()],
                ));
            }
        }
        for (id, m) in &self.loose {
            moments.push((*id, [read(&m.exp_avg), read(&m.exp_avg_sq)]));
        }
        moments
    }

    /// The state as a safetensors file: `exp_avg/<name>` and `exp_avg_sq/<name>` (f32, Burn's
    /// parameter shapes) and the step in the metadata. Reads the tensors back from the device.
    pub fn state_file(&self, path: &Path) -> TensorFile {
        let mut tensors = BTreeMap::new();
        for (id, moments) in self.moments_by_param() {
            let param = &self.params[&id];
            for (prefix, values) in [EXP_AVG, EXP_AVG_SQ].into_iter().zip(moments) {
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
                optim.loose.insert(
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

/// Takes `module`'s gradients out of a `GradientsParams`, in module order, into each group's
/// layout and pieces (each gradient in its own shape).
struct Gather<'a, B: AutodiffBackend> {
    params: &'a HashMap<ParamId, ParamName>,
    grads: GradientsParams,
    layouts: [Layout; 2],
    pieces: [Vec<FloatTensor<B::InnerBackend>>; 2],
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Gather<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) else {
            return;
        };
        let group = match self.params.get(&param.id) {
            Some(p) if is_no_decay(&p.name) => NO_DECAY,
            _ => DECAY,
        };
        self.layouts[group].push(param.id, grad.dims().to_vec());
        self.pieces[group].push(grad.into_primitive().tensor());
    }
}

/// The current values of the parameters in `wanted`, by id.
struct Values<'a, B: AutodiffBackend> {
    wanted: &'a HashMap<ParamId, Place>,
    found: HashMap<ParamId, FloatTensor<B::InnerBackend>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Values<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.wanted.contains_key(&param.id) {
            let value = param.val().inner();
            self.found.insert(param.id, value.into_primitive().tensor());
        }
    }
}

/// A group's updated parameters in the order of its layout, and their half-precision copies
/// where made.
struct Updated<B: Backend> {
    param: Vec<FloatTensor<B>>,
    half: Option<Vec<FloatTensor<B>>>,
}

/// Puts each updated parameter into the module, and collects the half-precision copies by id.
struct Scatter<B: Backend> {
    places: HashMap<ParamId, Place>,
    updated: [Option<Updated<B>>; 2],
    cast: HalfWeights<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Scatter<B::InnerBackend> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(place) = self.places.get(&id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let updated = self.updated[place.group]
            .as_ref()
            .expect("the group was updated");
        if let Some(half) = &updated.half {
            self.cast.insert(id, half[place.index].clone());
        }
        let value = updated.param[place.index].clone();
        let value = Tensor::<B::InnerBackend, D>::from_primitive(TensorPrimitive::Float(value));
        let mut value = Tensor::from_inner(value);
        if tensor.is_require_grad() {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}
