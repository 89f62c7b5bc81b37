//! The GPU backends run the composed kernels (Burn's fusion compiles the element-wise parts); a
//! hand-written GPU kernel would go here.

use crate::{dropout, Kernels};

#[cfg(feature = "wgpu")]
impl Kernels for burn::backend::Wgpu {
    dropout::composed_dropout!();
}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {
    dropout::composed_dropout!();
}
