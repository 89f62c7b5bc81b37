//! The CPU's one-pass AdamW update against the composed ops, bit for bit, over several steps with
//! and without weight decay; and a parameter another handle still holds is left as it was.

use berthash_kernels::{adamw, AdamWState, AdamWStep, Kernels};
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorPrimitive};

/// The update of `Flex` (one pass) or the composed one (which the GPU backends run), on the
/// tensors' primitives.
fn update(
    state: AdamWState<Tensor<Flex, 1>>,
    grad: Tensor<Flex, 1>,
    step: &AdamWStep,
    one_pass: bool,
) -> AdamWState<Tensor<Flex, 1>> {
    let primitive = |t: Tensor<Flex, 1>| t.into_primitive().tensor();
    let (state, grad) = (state.map(primitive), primitive(grad));
    let out = if one_pass {
        <Flex as Kernels>::adamw(state, grad, step)
    } else {
        berthash_kernels::adamw::composed::<Flex>(state, grad, step)
    };
    out.map(|t| Tensor::from_primitive(TensorPrimitive::Float(t)))
}

fn step_at(t: i32, weight_decay: f64) -> AdamWStep {
    let (b1, b2) = (0.9, 0.999);
    AdamWStep {
        lr: 1e-3,
        b1,
        b2,
        eps: 1e-6,
        weight_decay,
        bias_correction1: 1.0 - f64::powi(b1, t),
        bias_correction2_sqrt: (1.0 - f64::powi(b2, t)).sqrt(),
    }
}

fn bits(t: &Tensor<Flex, 1>) -> Vec<u32> {
    t.to_data()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn one_pass_equals_the_composed_ops_bit_for_bit() {
    let device = Default::default();
    Flex::seed(&device, 11);
    // One element, a tail, and several of the kernels' chunks (2^15 elements each).
    for n in [1, 37, 100_003] {
        for weight_decay in [0.0, 0.01] {
            let draw = || Tensor::<Flex, 1>::random([n], Distribution::Normal(0.0, 1.0), &device);
            let zeros = || Tensor::<Flex, 1>::zeros([n], &device);
            let param = draw();
            let mut fused = AdamWState {
                param: param.clone(),
                exp_avg: zeros(),
                exp_avg_sq: zeros(),
            };
            let mut reference = AdamWState {
                param,
                exp_avg: zeros(),
                exp_avg_sq: zeros(),
            };
            for t in 1..=4 {
                let grad = draw();
                let step = step_at(t, weight_decay);
                fused = update(fused, grad.clone(), &step, true);
                reference = update(reference, grad, &step, false);
                for (f, r) in [
                    (&fused.param, &reference.param),
                    (&fused.exp_avg, &reference.exp_avg),
                    (&fused.exp_avg_sq, &reference.exp_avg_sq),
                ] {
                    assert_eq!(bits(f), bits(r), "n {n}, decay {weight_decay}, step {t}");
                }
            }
        }
    }
}

#[test]
fn a_parameter_held_elsewhere_is_not_overwritten() {
    let device = Default::default();
    let param = Tensor::<Flex, 1>::from_floats([1.0, -2.0, 3.0], &device);
    let kept = param.clone();
    let before = bits(&kept);
    let zeros = || Tensor::<Flex, 1>::zeros([3], &device);
    let out = adamw(
        AdamWState {
            param,
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
        },
        Tensor::from_floats([0.5, 0.5, -0.5], &device),
        &step_at(1, 0.01),
    );
    assert_eq!(bits(&kept), before);
    assert_ne!(bits(&out.param), before);
}
