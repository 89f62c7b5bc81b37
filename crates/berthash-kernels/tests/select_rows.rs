//! Rows picked by index and their gradient: the parallel scatter the GPU backends run against
//! Burn's loop over the indices, for unique and repeated indices, with and without padding of
//! the last block; and the graph node under autodiff against Burn's `select`.

use berthash_kernels::select_rows::{backward_in_parallel, index_blocks};
use berthash_kernels::{embedding, select_rows, RowIndices};
use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::FloatTensorOps;
use burn::tensor::{TensorPrimitive, Tolerance};

mod common;

type Ad = Autodiff<Flex>;

fn random(shape: [usize; 2], seed: u64) -> Tensor<Flex, 2> {
    Tensor::from_data(common::normal(&shape, 0.0, 1.0, seed), &Default::default())
}

/// Burn's gradient of `select`: each row of `grad` added in index order.
fn burn_backward(
    grad: &Tensor<Flex, 2>,
    indices: &Tensor<Flex, 1, Int>,
    rows: usize,
) -> TensorData {
    let width = grad.dims()[1];
    let zeros = Tensor::<Flex, 2>::zeros([rows, width], &Default::default());
    let out = Flex::float_select_add(
        zeros.into_primitive().tensor(),
        0,
        indices.clone().into_primitive(),
        grad.clone().into_primitive().tensor(),
    );
    Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(out)).into_data()
}

fn parallel_backward(
    grad: &Tensor<Flex, 2>,
    indices: &Tensor<Flex, 1, Int>,
    rows: usize,
    kind: RowIndices,
) -> TensorData {
    let out = backward_in_parallel::<Flex>(
        grad.clone().into_primitive().tensor(),
        indices.clone().into_primitive(),
        rows,
        kind,
    );
    Tensor::<Flex, 2>::from_primitive(TensorPrimitive::Float(out)).into_data()
}

#[test]
fn blocks_hold_about_128_indices_within_the_memory_cap() {
    // 256 x 128 tokens into the token-type table (2 x 128): 256 blocks of 128. Into the hashed
    // word table of nano (30,522 x 5), the tables' size caps them: 2^25 / 152,610 = 219.
    assert_eq!(index_blocks(32768, 2, 128), 256);
    assert_eq!(index_blocks(32768, 30522, 5), 219);
    assert_eq!(index_blocks(131072, 30522, 5), 219);
    assert_eq!(index_blocks(1000, 7, 5), 8);
    assert_eq!(index_blocks(100, 7, 5), 1);
    assert_eq!(index_blocks(10, 1 << 26, 1), 1);
}

#[test]
fn repeated_indices_sum_like_burns_loop() {
    let device = Default::default();
    // 1,000 indices make 8 blocks of 125; 1,001 make 8 of 126 with 7 padding entries at row 0.
    for (picked, rows, width) in [(1000, 7, 5), (1001, 7, 5), (300, 40, 3), (50, 3, 4)] {
        let grad = random([picked, width], picked as u64);
        let indices = Tensor::<Flex, 1, Int>::from_data(
            common::below(picked, rows, 7 + picked as u64),
            &device,
        );
        parallel_backward(&grad, &indices, rows, RowIndices::Repeated).assert_approx_eq::<f32>(
            &burn_backward(&grad, &indices, rows),
            Tolerance::absolute(1e-5).set_relative(1e-5),
        );
    }
}

#[test]
fn unique_indices_are_written_where_burn_adds_them() {
    let device = Default::default();
    let rows = 64;
    // Every third row, in an order that is not sorted.
    let picks: Vec<i64> = (0..rows).step_by(3).rev().map(|r| r as i64).collect();
    let indices =
        Tensor::<Flex, 1, Int>::from_data(TensorData::new(picks.clone(), [picks.len()]), &device);
    let grad = random([picks.len(), 6], 3);
    let got = parallel_backward(&grad, &indices, rows, RowIndices::Unique);
    got.assert_eq(&burn_backward(&grad, &indices, rows), true);
}

#[test]
fn the_node_gives_burns_gradients() {
    let device = Default::default();
    let table = random([11, 4], 5).into_data();
    let ids = Tensor::<Ad, 2, Int>::from_data([[1, 3, 3, 0], [10, 1, 1, 1]], &device);

    let x = Tensor::<Ad, 2>::from_data(table.clone(), &device).require_grad();
    let out = embedding(x.clone(), ids.clone());
    assert_eq!(out.dims(), [2, 4, 4]);
    let weights =
        Tensor::<Ad, 3>::from_data(random([8, 4], 9).reshape([2, 4, 4]).into_data(), &device);
    let got = (out.clone() * weights.clone()).sum().backward();

    let y = Tensor::<Ad, 2>::from_data(table, &device).require_grad();
    let want_out = y.clone().select(0, ids.reshape([8])).reshape([2, 4, 4]);
    out.into_data()
        .assert_eq(&want_out.clone().into_data(), true);
    let want = (want_out * weights).sum().backward();
    x.grad(&got)
        .unwrap()
        .into_data()
        .assert_approx_eq::<f32>(&y.grad(&want).unwrap().into_data(), Tolerance::default());

    // Unique positions of a `[rows, width]` input, as the masked-row pick uses them.
    let h = Tensor::<Ad, 2>::from_data(random([9, 3], 11).into_data(), &device).require_grad();
    let positions = Tensor::<Ad, 1, Int>::from_data([8, 2, 5], &device);
    let picked = select_rows(h.clone(), positions.clone(), RowIndices::Unique);
    let grads = (picked.clone() * picked).sum().backward();
    let g = h.grad(&grads).unwrap().into_data().to_vec::<f32>().unwrap();
    let values = h.into_data().to_vec::<f32>().unwrap();
    for row in 0..9 {
        for col in 0..3 {
            let want = if [8, 2, 5].contains(&row) {
                2.0 * values[row * 3 + col]
            } else {
                0.0
            };
            assert!(
                (g[row * 3 + col] - want).abs() < 1e-6,
                "row {row} col {col}"
            );
        }
    }
}
