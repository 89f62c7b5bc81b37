//! Global gradient-norm clipping with `torch.nn.utils.clip_grad_norm_` semantics: the total L2
//! norm over all gradients (the norm of the per-tensor norms), and every gradient scaled by
//! `min(1, max_norm / (norm + 1e-6))`. The scale is applied as a tensor, so clipping needs no
//! host sync; the returned norm is a lazy `[1]` tensor, read only when it is logged.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// The total gradient norm of `module`'s parameters in `grads`; when `max_norm` is given, the
/// gradients are scaled in place as torch does. Returns the norm before clipping.
pub fn clip_grad_norm<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    max_norm: Option<f64>,
) -> Tensor<B::InnerBackend, 1> {
    let mut norms = NormCollector::<B> {
        grads,
        norms: Vec::new(),
    };
    module.visit(&mut norms);
    let norms = norms.norms;
    if norms.is_empty() {
        return Tensor::zeros([1], &Default::default());
    }
    let total = Tensor::cat(norms, 0).powi_scalar(2).sum().sqrt();
    if let Some(max_norm) = max_norm {
        let coef = total
            .clone()
            .add_scalar(1e-6)
            .recip()
            .mul_scalar(max_norm)
            .clamp_max(1.0);
        module.visit(&mut Scaler::<B> { grads, coef });
    }
    total
}

/// Multiplies every gradient of `module` in `grads` by `factor` (loss-scale removal, say).
pub fn scale_grads<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    factor: Tensor<B::InnerBackend, 1>,
) {
    module.visit(&mut Scaler::<B> {
        grads,
        coef: factor,
    });
}

struct NormCollector<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    norms: Vec<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormCollector<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.get::<B::InnerBackend, D>(param.id) {
            self.norms.push(grad.powi_scalar(2).sum().sqrt());
        }
    }
}

struct Scaler<'a, B: AutodiffBackend> {
    grads: &'a mut GradientsParams,
    coef: Tensor<B::InnerBackend, 1>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Scaler<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = self.grads.remove::<B::InnerBackend, D>(param.id) {
            let coef = self.coef.clone().reshape([1usize; D]);
            self.grads.register(param.id, grad.mul(coef));
        }
    }
}
