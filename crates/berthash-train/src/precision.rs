//! Mixed precision: f32 master weights, forward and backward in half precision.
//!
//! The compute copy of the model ([`compute_copy`]) holds every parameter cast to the half
//! dtype as a leaf of its own, under the master parameter's id: the backward delivers half
//! gradients keyed by the ids the master model and the optimizer use. The clipping and the
//! AdamW update cast each gradient to f32 as their first operation, and the update casts the new
//! f32 weights to the next step's compute copy as its last: on the GPU backends both casts join
//! kernels that run anyway, where a cast of their own was one kernel per parameter each way. f16
//! adds a dynamic loss scale ([`LossScaler`], torch `GradScaler` defaults). See
//! `docs/precision.md`.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::FloatDType;
use burn::tensor::TensorPrimitive;
use serde::{Deserialize, Serialize};

/// The dtype of the forward/backward computation. Weights and optimizer state stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
    F16,
}

impl Precision {
    pub fn dtype(self) -> FloatDType {
        match self {
            Precision::F32 => FloatDType::F32,
            Precision::Bf16 => FloatDType::BF16,
            Precision::F16 => FloatDType::F16,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            other => Err(format!("unknown precision {other:?} (f32, bf16 or f16)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The module with every float parameter cast to `dtype`, for inference in half precision (on an
/// autodiff backend the cast is tracked).
pub fn cast_params<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    module.map(&mut Caster { dtype })
}

struct Caster {
    dtype: FloatDType,
}

impl<B: Backend> ModuleMapper<B> for Caster {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(self.dtype), mapper)
    }
}

/// Half-precision values of parameters, by id: what an update wrote for the compute copy.
pub type HalfWeights<B> = HashMap<ParamId, FloatTensor<B>>;

/// The compute copy of `module` in `dtype`: each float parameter a leaf of its own under the
/// master parameter's id, requiring a gradient where the master parameter does. Its value is
/// taken from `cast` (the half weights the last update wrote, by id) where there, else cast
/// from the master parameter.
pub fn compute_copy<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    dtype: FloatDType,
    cast: HalfWeights<B::InnerBackend>,
) -> M {
    module.clone().map(&mut Leaves { dtype, cast })
}

struct Leaves<B: Backend> {
    dtype: FloatDType,
    cast: HalfWeights<B>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for Leaves<B::InnerBackend> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let require_grad = tensor.is_require_grad();
        let half = match self.cast.remove(&id) {
            Some(half) => Tensor::from_primitive(TensorPrimitive::Float(half)),
            None => tensor.inner().cast(self.dtype),
        };
        let mut leaf = Tensor::from_inner(half);
        if require_grad {
            leaf = leaf.require_grad();
        }
        Param::from_mapped_value(id, leaf, mapper)
    }
}

/// Casts `module`'s half-precision gradients in `grads` to f32 before they are accumulated over
/// micro-batches, so that the sum is taken in f32.
pub fn grads_to_f32<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
) {
    module.visit(&mut ToF32 { grads });
}

struct ToF32<'a> {
    grads: &'a mut GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ToF32<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            self.grads.register(param.id, grad.cast(FloatDType::F32));
        }
    }
}

/// Dynamic loss scaling for f16 (torch `GradScaler` defaults: start 2^16, halve on overflow,
/// double after 2000 finite steps). Its state is saved in the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct LossScaler {
    pub scale: f64,
    pub good_steps: u64,
    pub growth_interval: u64,
}

impl LossScaler {
    pub fn new() -> Self {
        Self {
            scale: 65536.0,
            good_steps: 0,
            growth_interval: 2000,
        }
    }

    pub fn from_state(state: &crate::checkpoint::TrainState) -> Self {
        let mut scaler = Self::new();
        if let Some(scale) = state.loss_scale {
            scaler.scale = scale;
            scaler.good_steps = state.loss_scale_good_steps;
        }
        scaler
    }

    pub fn save_to(&self, state: &mut crate::checkpoint::TrainState) {
        state.loss_scale = Some(self.scale);
        state.loss_scale_good_steps = self.good_steps;
    }

    /// After a step: back off on overflow, grow after a run of finite steps.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale = (self.scale * 0.5).max(1.0);
            self.good_steps = 0;
        }
    }
}

impl Default for LossScaler {
    fn default() -> Self {
        Self::new()
    }
}

/// Refuses a half precision the backend cannot compute in, naming the ones it can (wgpu's WGSL
/// has f16 but no bf16, for one).
pub fn check_precision<B: Backend>(precision: Precision, device: &B::Device) -> crate::Result<()> {
    use burn::tensor::backend::DTypeUsage;
    let usable = |precision: Precision| {
        let dtype: burn::tensor::DType = precision.dtype().into();
        precision == Precision::F32
            || B::dtype_usage(device, dtype).is_superset(DTypeUsage::general())
    };
    if !usable(precision) {
        let can: Vec<&str> = [Precision::F32, Precision::Bf16, Precision::F16]
            .into_iter()
            .filter(|&p| usable(p))
            .map(Precision::name)
            .collect();
        return Err(crate::TrainError::Precision {
            precision: precision.to_string(),
            message: format!(
                "backend {} cannot compute in {precision} on this device; it can in {}",
                B::name(device),
                can.join(", ")
            ),
        });
    }
    Ok(())
}
