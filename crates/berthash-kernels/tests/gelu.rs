//! The fused GELU against Burn's own, value and gradient, with and without autodiff.

use berthash_kernels::gelu;
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{activation, Distribution, Tolerance};

type Ad = Autodiff<Flex>;

#[test]
fn gelu_and_its_gradient_match_burn() {
    let device = Default::default();
    Flex::seed(&device, 1);
    // 3 x 5 x 67: an 8-lane body and a tail in every chunk.
    let data =
        Tensor::<Flex, 3>::random([3, 5, 67], Distribution::Normal(0.0, 3.0), &device).into_data();
    let tolerance = Tolerance::absolute(2e-6).set_relative(1e-5);

    let x = Tensor::<Flex, 3>::from_data(data.clone(), &device);
    gelu(x.clone())
        .into_data()
        .assert_approx_eq::<f32>(&activation::gelu(x).into_data(), tolerance);

    let grad_of = |fused: bool| {
        let x = Tensor::<Ad, 3>::from_data(data.clone(), &device).require_grad();
        let y = x.clone() * 1.0;
        let out = if fused { gelu(y) } else { activation::gelu(y) };
        let grads = (out.clone() * out).sum().backward();
        x.grad(&grads).unwrap().into_data()
    };
    grad_of(true).assert_approx_eq::<f32>(&grad_of(false), tolerance);
}
