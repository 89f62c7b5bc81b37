//! The one place a Burn backend is chosen. Commands are written once, generic over the backend,
//! as a [`BackendTask`]; `run` instantiates them for the backend the user asked for.

use berthash_kernels::TrainBackend;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (flex), always available.
    Cpu,
    /// wgpu (Vulkan/Metal/DX12); needs a build with `--features wgpu`.
    Wgpu,
    /// CUDA; needs a build with `--features cuda` and an NVIDIA driver at run time.
    Cuda,
}

/// A command body that runs on any autodiff backend.
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<Self::Output>;
}

pub fn run<T: BackendTask>(kind: BackendKind, task: T) -> anyhow::Result<T::Output> {
    use burn::backend::Autodiff;
    match kind {
        BackendKind::Cpu => task.run::<Autodiff<burn::backend::Flex>>(Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => task.run::<Autodiff<burn::backend::Wgpu>>(Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => task.run::<Autodiff<burn::backend::Cuda>>(Default::default()),
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "this berthash was built without the {other:?} backend: rebuild with `cargo build --release --features {}`",
            format!("{other:?}").to_lowercase()
        ),
    }
}
