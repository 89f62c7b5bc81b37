//! The dense layer against Burn's `linear` and the ops that follow it: value, and the gradients of
//! the input, weight and bias, with and without a bias, for each step after the product, with
//! and without autodiff; and a layer whose input needs no gradient.

use berthash_kernels::{dense, DenseThen};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{activation, module, Tolerance};

mod common;

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
    fn new([rows, inputs, outputs]: [usize; 3], seed: u64) -> Self {
        let draw =
            |shape: &[usize], stream: u64| common::normal(shape, 0.0, 1.0, 4 * seed + stream);
        Self {
            x: draw(&[rows, inputs], 0),
            weight: draw(&[inputs, outputs], 1),
            bias: draw(&[outputs], 2),
            residual: draw(&[rows, outputs], 3),
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
    // A weight each block packs, and one (64 x 4,200, over 1 MiB) packed once for all blocks.
    for shape in [[37, 13, 21], [300, 64, 129], [1, 7, 3], [45, 64, 4200]] {
        let case = Case::new(shape, 7);
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
    let case = Case::new([20, 9, 11], 8);
    let fused = run(&case, true, true, 0, false);
    let burn = run(&case, false, true, 0, false);
    assert_eq!(fused.len(), 3);
    for (i, (f, b)) in fused.iter().zip(&burn).enumerate() {
        assert_close(f, b, &format!("output or gradient {i}"));
    }
}

#[test]
fn without_autodiff_it_is_the_same_layer() {
    let case = Case::new([33, 17, 40], 9);
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
    for (len, blocks) in [
        (32768, 64),
        (4096, 16),
        (4915, 5),
        (1000, 2),
        (511, 1),
        (255, 1),
    ] {
        assert_eq!(sum_blocks(len), blocks, "{len} terms");
    }
}

#[test]
fn rows_are_cut_into_up_to_64_blocks_of_at_least_256_the_last_padded() {
    use berthash_kernels::sum_blocks::row_blocks;
    for (rows, width, partial, blocks) in [
        (32768, 512, 128 * 512, (64, 512)),
        (65536, 128, 128, (64, 1024)),
        (4096, 128, 128 * 128, (16, 256)),
        (4919, 128, 128 * 128, (19, 259)),
        (1000, 128, 128, (3, 334)),
        (511, 128, 128, (1, 511)),
        (1, 128, 128, (1, 1)),
        (4919, 128, 1 << 25, (1, 4919)),
        (4919, 128, 1 << 26, (1, 4919)),
        // A vocabulary decoder's gradient: cut by a divisor, not padded, its partial sums
        // (128 x 30,522 per block) kept within 2^25 elements.
        (19660, 30522, 128 * 30522, (5, 3932)),
        (4915, 30522, 128 * 30522, (5, 983)),
        (4919, 30522, 128 * 30522, (1, 4919)),
    ] {
        assert_eq!(
            row_blocks(rows, width, partial),
            blocks,
            "{rows} rows of {width} into {partial}"
        );
    }
}

/// Each element of `got` against its sum taken in f64, `exact[k] = (sum, sum of the terms'
/// magnitudes)`. The bound, 2e-6 of the magnitudes (16 f32 epsilons), holds for sums in f32 in any
/// order of blocks; one term left out or counted twice moves an element by about 1 / terms of
/// its magnitudes, over 1e-4 here, so the check still sees a row or block lost.
fn assert_sums(got: &TensorData, exact: &[(f64, f64)], what: &str) -> f64 {
    let got = got.to_vec::<f32>().unwrap();
    assert_eq!(got.len(), exact.len(), "{what}");
    let mut worst = 0f64;
    for (k, (g, (sum, magnitude))) in got.iter().zip(exact).enumerate() {
        let ratio = (*g as f64 - sum).abs() / magnitude.max(f64::MIN_POSITIVE);
        assert!(
            ratio <= 2e-6,
            "{what}: element {k} is {g}, its sum {sum}, {ratio:e} of the terms' magnitude {magnitude}"
        );
        worst = worst.max(ratio);
    }
    worst
}

/// `(Σ a·b, Σ |a·b|)` over `n` terms, in f64.
fn exact_sum(n: usize, term: impl Fn(usize) -> f64) -> (f64, f64) {
    (0..n)
        .map(term)
        .fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()))
}

/// The GPU backends' backward, run on the CPU: the weight's and bias's gradients summed block
/// by block of rows (a prime number of narrow rows padded, 512 rows of 8,192 cut in 2), and the
/// input's by block of outputs where there are 8,192 or more, equal the sums over all rows
/// taken in f64.
#[test]
fn the_backward_in_blocks_equals_the_one_over_all_rows() {
    use berthash_kernels::sum_blocks::dense_backward_in_blocks;
    let device = Default::default();
    let inputs = 24;
    let mut worst = 0f64;
    for (seed, [rows, outputs]) in [[4096, 40], [4919, 40], [100, 40], [512, 8192], [37, 9000]]
        .into_iter()
        .enumerate()
    {
        let case = Case::new([rows, inputs, outputs], 100 + seed as u64);
        let tensor = |data: &TensorData| Tensor::<Flex, 2>::from_data(data.clone(), &device);
        let got = dense_backward_in_blocks::<Flex>(
            Some(tensor(&case.x).into_primitive().tensor()),
            Some(tensor(&case.weight).into_primitive().tensor()),
            tensor(&case.residual).into_primitive().tensor(),
            true,
        );
        let data = |t: Option<_>| {
            Tensor::<Flex, 2>::from_primitive(burn::tensor::TensorPrimitive::Float(t.unwrap()))
                .into_data()
        };
        let bias = Tensor::<Flex, 1>::from_primitive(burn::tensor::TensorPrimitive::Float(
            got.bias.unwrap(),
        ));
        let host = |data: &TensorData| -> Vec<f64> { data.iter::<f32>().map(f64::from).collect() };
        let (x, w, g) = (host(&case.x), host(&case.weight), host(&case.residual));
        let weight: Vec<_> = (0..inputs * outputs)
            .map(|k| {
                exact_sum(rows, |r| {
                    x[r * inputs + k / outputs] * g[r * outputs + k % outputs]
                })
            })
            .collect();
        let bias_sums: Vec<_> = (0..outputs)
            .map(|o| exact_sum(rows, |r| g[r * outputs + o]))
            .collect();
        let input: Vec<_> = (0..rows * inputs)
            .map(|k| {
                let (r, i) = (k / inputs, k % inputs);
                exact_sum(outputs, |o| g[r * outputs + o] * w[i * outputs + o])
            })
            .collect();
        let what = |part: &str| format!("{rows} rows, {outputs} outputs: {part}");
        worst = worst
            .max(assert_sums(&data(got.weight), &weight, &what("weight")))
            .max(assert_sums(&bias.into_data(), &bias_sums, &what("bias")))
            .max(assert_sums(&data(got.x), &input, &what("input")));
    }
    eprintln!("worst difference: {worst:e} of the terms' magnitude");
}
