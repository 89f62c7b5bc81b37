//! The GPU backends' kernels: the composed ones (Burn's fusion compiles their element-wise
//! parts), CubeCL kernels where a measurement showed the composed version's cost
//! ([`layer_norm`]), and composed ones run as one operation ([`dense`], [`flat`]).

mod cube;
mod dense;
mod flat;
mod layer_norm;

use crate::dropout;

/// The `Kernels` items a GPU backend overrides: expands inside its `impl Kernels`.
macro_rules! gpu_kernels {
    () => {
        dropout::composed_dropout!();

        fn layer_norm_forward(
            x: burn::tensor::ops::FloatTensor<Self>,
            gamma: burn::tensor::ops::FloatTensor<Self>,
            beta: burn::tensor::ops::FloatTensor<Self>,
            epsilon: f64,
        ) -> (
            burn::tensor::ops::FloatTensor<Self>,
            crate::LayerNormSaved<burn::tensor::ops::FloatTensor<Self>>,
        ) {
            layer_norm::forward::<Self>(x, gamma, beta, epsilon)
        }

        fn layer_norm_backward(
            saved: crate::LayerNormSaved<burn::tensor::ops::FloatTensor<Self>>,
            gamma: burn::tensor::ops::FloatTensor<Self>,
            grad: burn::tensor::ops::FloatTensor<Self>,
        ) -> crate::LayerNormGrads<burn::tensor::ops::FloatTensor<Self>> {
            layer_norm::backward::<Self>(saved, gamma, grad)
        }

        fn dense_backward(
            x: Option<burn::tensor::ops::FloatTensor<Self>>,
            weight: Option<burn::tensor::ops::FloatTensor<Self>>,
            grad: burn::tensor::ops::FloatTensor<Self>,
            bias: bool,
        ) -> crate::DenseGrads<burn::tensor::ops::FloatTensor<Self>> {
            dense::backward::<Self>(x, weight, grad, bias)
        }

        fn flatten_into(
            pieces: Vec<burn::tensor::ops::FloatTensor<Self>>,
            offsets: &[usize],
            len: usize,
        ) -> burn::tensor::ops::FloatTensor<Self> {
            flat::flatten_into::<Self>(pieces, offsets, len)
        }

        fn split(
            flat: burn::tensor::ops::FloatTensor<Self>,
            offsets: &[usize],
            shapes: &[burn::tensor::Shape],
        ) -> Vec<burn::tensor::ops::FloatTensor<Self>> {
            flat::split::<Self>(flat, offsets, shapes)
        }
    };
}

#[cfg(feature = "wgpu")]
impl crate::Kernels for burn::backend::Wgpu {
    gpu_kernels!();
}

#[cfg(feature = "cuda")]
impl crate::Kernels for burn::backend::Cuda {
    gpu_kernels!();
}
