//! The GPU backends run the composed kernels (Burn's fusion compiles them); a hand-written GPU
//! kernel would go here.

use crate::Kernels;

#[cfg(feature = "wgpu")]
impl Kernels for burn::backend::Wgpu {}

#[cfg(feature = "cuda")]
impl Kernels for burn::backend::Cuda {}
