//! Dropout composed from Burn tensor ops, as `burn::nn::Dropout` computes it: a Bernoulli mask
//! drawn from the backend's RNG, kept for the backward.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Distribution, Scalar, TensorMetadata};

/// `(x * mask / (1 - prob), mask)`.
pub fn forward_composed<B: Backend>(
    x: FloatTensor<B>,
    prob: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let mask = draw_mask::<B>(&x, prob);
    let out = B::float_mul_scalar(
        B::float_mul(x, mask.clone()),
        Scalar::Float(1.0 / (1.0 - prob)),
    );
    (out, mask)
}

/// The composed dropout's mask for a tensor like `x`: 1 where kept (probability `1 - prob`),
/// 0 where dropped, drawn from the backend's RNG.
pub fn draw_mask<B: Backend>(x: &FloatTensor<B>, prob: f64) -> FloatTensor<B> {
    B::float_random(
        x.shape(),
        Distribution::Bernoulli(1.0 - prob),
        &B::float_device(x),
        x.dtype().into(),
    )
}

/// `grad * mask / (1 - prob)`.
pub fn backward_composed<B: Backend>(
    grad: FloatTensor<B>,
    mask: FloatTensor<B>,
    prob: f64,
) -> FloatTensor<B> {
    B::float_mul_scalar(B::float_mul(grad, mask), Scalar::Float(1.0 / (1.0 - prob)))
}

/// The `Kernels` dropout items of a backend that runs the composed dropout (mask kept as a
/// tensor): expands inside its `impl Kernels`.
macro_rules! composed_dropout {
    () => {
        type DropoutMask = burn::tensor::ops::FloatTensor<Self>;

        fn dropout_forward(
            x: burn::tensor::ops::FloatTensor<Self>,
            prob: f64,
        ) -> (burn::tensor::ops::FloatTensor<Self>, Self::DropoutMask) {
            $crate::dropout::forward_composed::<Self>(x, prob)
        }

        fn dropout_backward(
            grad: burn::tensor::ops::FloatTensor<Self>,
            mask: Self::DropoutMask,
            prob: f64,
        ) -> burn::tensor::ops::FloatTensor<Self> {
            $crate::dropout::backward_composed::<Self>(grad, mask, prob)
        }
    };
}
pub(crate) use composed_dropout;
