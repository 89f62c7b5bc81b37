//! The dense layer against Burn's `linear` and the ops that follow it: value, and the gradients of
//! the input, weight and bias, with and without a bias, for each step after the product, with
//! and without autodiff; and a layer whose input needs no gradient.

use berthash_kernels::{dense, DenseThen};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{activation, module, Distribution, Tolerance};

type Ad = Autodiff<Flex>;

fn tolerance() -> Tolerance<f32> {
    Tolerance::absolute(2e-5).set_relative(1e-4)
}

/// The largest difference, relative to the largest value of `want`: gradients summed over
/// thousands of terms cancel in places, where an element-wise relative bound means nothing.
fn assert_close(got: &TensorData, want: &TensorData, what: &str) {
    assert_eq!(got.shape, want.shape, "{what}");
    let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    let diff = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (g, w)| m.max((g - w).abs()));
    assert!(
        diff <= 2e-6 * scale,
        "{what}: differs by {diff} at scale {scale}"
    );
}

/// The inputs of one case: `x` `[rows, inputs]`, `weight`, `bias` `[outputs]` and a residual.
struct Case {
    x: TensorData,
    weight: TensorData,
    bias: TensorData,
    residual: TensorData,
}

impl Case {
    fn new([rows, inputs, outputs]: [usize; 3]) -> Self {
        let device = Default::default();
        let draw = |shape: Vec<usize>| {
            Tensor::<Flex, 2>::random(Shape::from(shape), Distribution::Normal(0.0, 1.0), &device)
                .into_data()
        };
        Self {
            x: draw(vec![rows, inputs]),
            weight: draw(vec![inputs, outputs]),
            bias: Tensor::<Flex, 1>::random([outputs], Distribution::Normal(0.0, 1.0), &device)
                .into_data(),
            residual: draw(vec![rows, outputs]),
        }
    }
}

/// The output and the gradients of `x`, weight and bias of `(then(x W + b))²` summed, from the
/// fused layer or from Burn's ops.
fn run(case: &Case, fused: bool, with_bias: bool, then: usize, x_grad: bool) -> Vec<TensorData> {
    let device = Default::default();
    let x = Tensor::<Ad, 2>::from_data(case.x.clone(), &device);
    let x = if x_grad { x.require_grad() } else { x };
    let weight = Tensor::<Ad, 2>::from_data(case.weight.clone(), &device).require_grad();
    let bias = Tensor::<Ad, 1>::from_data(case.bias.clone(), &device).require_grad();
    let residual = Tensor::<Ad, 2>::from_data(case.residual.clone(), &device);
    let bias_used = with_bias.then(|| bias.clone());
    let out = if fused {
        let then = match then {
            0 => DenseThen::Nothing,
            1 => DenseThen::Gelu,
            _ => DenseThen::Add(residual),
        };
        dense(x.clone(), weight.clone(), bias_used, then)
    } else {
        let y = module::linear(x.clone(), weight.clone(), bias_used);
        match then {
            0 => y,
            1 => activation::gelu(y),
            _ => y + residual,
        }
    };
    let grads = (out.clone() * out.clone()).sum().backward();
    let mut results = vec![out.into_data()];
    if x_grad {
        results.push(x.grad(&grads).expect("x gradient").into_data());
    }
    results.push(weight.grad(&grads).expect("weight gradient").into_data());
    if with_bias {
        results.push(bias.grad(&grads).expect("bias gradient").into_data());
    }
    results
}

#[test]
fn value_and_gradients_match_burn() {
    Flex::seed(&Default::default(), 7);
    // A weight each block packs, and one (64 x 4,200, over 1 MiB) packed once for all blocks.
    for shape in [[37, 13, 21], [300, 64, 129], [1, 7, 3], [45, 64, 4200]] {
        let case = Case::new(shape);
        for with_bias in [true, false] {
            for then in 0..3 {
                let fused = run(&case, true, with_bias, then, true);
                let burn = run(&case, false, with_bias, then, true);
                for (i, (f, b)) in fused.iter().zip(&burn).enumerate() {
                    assert_close(
                        f,
                        b,
                        &format!("{shape:?} bias {with_bias} then {then}: {i}"),
                    );
                }
            }
        }
    }
}

#[test]
fn an_input_without_gradient_still_trains_the_weight() {
    Flex::seed(&Default::default(), 8);
    let case = Case::new([20, 9, 11]);
    let fused = run(&case, true, true, 0, false);
    let burn = run(&case, false, true, 0, false);
    assert_eq!(fused.len(), 3);
    for (i, (f, b)) in fused.iter().zip(&burn).enumerate() {
        assert_close(f, b, &format!("output or gradient {i}"));
    }
}

#[test]
fn without_autodiff_it_is_the_same_layer() {
    Flex::seed(&Default::default(), 9);
    let case = Case::new([33, 17, 40]);
    let device = Default::default();
    let x = Tensor::<Flex, 2>::from_data(case.x.clone(), &device);
    let weight = Tensor::<Flex, 2>::from_data(case.weight.clone(), &device);
    let bias = Tensor::<Flex, 1>::from_data(case.bias.clone(), &device);
    let residual = Tensor::<Flex, 2>::from_data(case.residual.clone(), &device);
    let want = activation::gelu(module::linear(
        x.clone(),
        weight.clone(),
        Some(bias.clone()),
    ));
    dense(
        x.clone(),
        weight.clone(),
        Some(bias.clone()),
        DenseThen::Gelu,
    )
    .into_data()
    .assert_approx_eq::<f32>(&want.into_data(), tolerance());
    let want = module::linear(x.clone(), weight.clone(), Some(bias.clone())) + residual.clone();
    dense(x, weight, Some(bias), DenseThen::Add(residual))
        .into_data()
        .assert_approx_eq::<f32>(&want.into_data(), tolerance());
}

#[test]
fn sums_are_cut_into_equal_blocks_of_at_least_256() {
    use berthash_kernels::sum_blocks::sum_blocks;
    for (rows, blocks) in [
        (32768, 64),
        (4096, 16),
        (4915, 5),
        (1000, 2),
        (511, 1),
        (255, 1),
    ] {
        assert_eq!(sum_blocks(rows), blocks, "{rows} rows");
    }
}

/// The GPU backends' backward, run on the CPU: the weight's and bias's gradients summed block
/// by block of rows, and the input's by block of outputs where there are 8,192 or more, equal
/// one product and one column sum over all the rows.
#[test]
fn the_backward_in_blocks_equals_the_one_over_all_rows() {
    use berthash_kernels::sum_blocks::dense_backward_in_blocks;
    let device = Default::default();
    for [rows, outputs] in [[4096, 40], [4915, 40], [100, 40], [300, 8192], [37, 9000]] {
        let case = Case::new([rows, 24, outputs]);
        let tensor = |data: &TensorData| Tensor::<Flex, 2>::from_data(data.clone(), &device);
        let (x, weight, grad) = (
            tensor(&case.x),
            tensor(&case.weight),
            tensor(&case.residual),
        );
        let got = dense_backward_in_blocks::<Flex>(
            Some(x.clone().into_primitive().tensor()),
            Some(weight.clone().into_primitive().tensor()),
            grad.clone().into_primitive().tensor(),
            true,
        );
        let data = |t: Option<_>| {
            Tensor::<Flex, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(t.unwrap()))
                .into_data()
        };
        let bias = Tensor::<Flex, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(
            got.bias.unwrap(),
        ));
        assert_close(
            &data(got.weight),
            &x.transpose().matmul(grad.clone()).into_data(),
            &format!("{rows} rows: weight"),
        );
        assert_close(
            &bias.into_data(),
            &grad.clone().sum_dim(0).reshape([outputs]).into_data(),
            &format!("{rows} rows: bias"),
        );
        assert_close(
            &data(got.x),
            &grad.matmul(weight.transpose()).into_data(),
            &format!("{rows} rows: input"),
        );
    }
}
