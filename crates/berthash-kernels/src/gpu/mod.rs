//! The GPU backends' kernels: the composed ones (Burn's fusion compiles their element-wise
//! parts), CubeCL kernels where a measurement showed the composed version's cost
//! ([`layer_norm`], [`attention`]'s softmax), and composed ones run as one operation
//! ([`attention`], [`dense`], [`flat`]).

mod attention;
mod cube;
mod dense;
mod flat;
mod layer_norm;

use crate::dropout;

/// The `Kernels` items a GPU backend overrides: expands inside its `impl Kernels`.
macro_rules! gpu_kernels {
    () => {
        dropout::composed_dropout!();

        fn attention_forward(
            qkv: [burn::tensor::ops::FloatTensor<Self>; 3],
            key_bias: Option<burn::tensor::ops::FloatTensor<Self>>,
            config: crate::AttentionConfig,
        ) -> (
            burn::tensor::ops::FloatTensor<Self>,
            burn::tensor::ops::FloatTensor<Self>,
            Option<Self::DropoutMask>,
        ) {
            attention::forward::<Self>(qkv, key_bias, config)
        }

        fn attention_backward(
            qkv: [burn::tensor::ops::FloatTensor<Self>; 3],
            probs: burn::tensor::ops::FloatTensor<Self>,
            mask: Option<Self::DropoutMask>,
            config: crate::AttentionConfig,
            grad: burn::tensor::ops::FloatTensor<Self>,
        ) -> [burn::tensor::ops::FloatTensor<Self>; 3] {
            attention::backward::<Self>(qkv, probs, mask, config, grad)
        }

        fn attention_inference(
            qkv: [burn::tensor::ops::FloatTensor<Self>; 3],
            key_bias: Option<burn::tensor::ops::FloatTensor<Self>>,
            config: crate::AttentionConfig,
        ) -> burn::tensor::ops::FloatTensor<Self> {
            attention::inference::<Self>(qkv, key_bias, config)
        }

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

        fn layer_norm_inference(
            x: burn::tensor::ops::FloatTensor<Self>,
            gamma: burn::tensor::ops::FloatTensor<Self>,
            beta: burn::tensor::ops::FloatTensor<Self>,
            epsilon: f64,
        ) -> burn::tensor::ops::FloatTensor<Self> {
            layer_norm::inference::<Self>(x, gamma, beta, epsilon)
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
