//! The GPU backends run the composed kernels (Burn's fusion compiles the element-wise parts); a
//! hand-written GPU kernel would go here.

use burn::tensor::ops::FloatTensor;

use crate::{dropout, Kernels};

macro_rules! composed_kernels {
    ($backend:ty) => {
        impl Kernels for $backend {
            type DropoutMask = FloatTensor<Self>;

            fn dropout_forward(
                x: FloatTensor<Self>,
                prob: f64,
            ) -> (FloatTensor<Self>, Self::DropoutMask) {
                dropout::forward_composed::<Self>(x, prob)
            }

            fn dropout_backward(
                grad: FloatTensor<Self>,
                mask: Self::DropoutMask,
                prob: f64,
            ) -> FloatTensor<Self> {
                dropout::backward_composed::<Self>(grad, mask, prob)
            }
        }
    };
}

#[cfg(feature = "wgpu")]
composed_kernels!(burn::backend::Wgpu);

#[cfg(feature = "cuda")]
composed_kernels!(burn::backend::Cuda);
