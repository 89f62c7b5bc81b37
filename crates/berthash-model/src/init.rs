//! Seeded weight initialisation, done on the host so a seed gives the same weights on every
//! backend (CPU, wgpu, CUDA): BERT's normal(0, initializer_range) for linear and embedding
//! weights, zero biases, LayerNorm 1/0.

use burn::module::Param;
use burn::nn::{Embedding, Linear};

use crate::layer_norm::LayerNorm;
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

pub struct Initializer<'a, B: Backend> {
    rng: ChaCha8Rng,
    std: f64,
    device: &'a B::Device,
}

impl<'a, B: Backend> Initializer<'a, B> {
    pub fn new(seed: u64, std: f64, device: &'a B::Device) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            std,
            device,
        }
    }

    pub fn device(&self) -> &'a B::Device {
        self.device
    }

    fn normal<const D: usize>(&mut self, shape: [usize; D]) -> Tensor<B, D> {
        let normal = Normal::new(0.0f32, self.std as f32).expect("std is finite and >= 0");
        let len = shape.iter().product();
        let values: Vec<f32> = (0..len).map(|_| normal.sample(&mut self.rng)).collect();
        Tensor::from_data(TensorData::new(values, shape), self.device)
    }

    /// A linear layer `d_in -> d_out`; Burn stores the weight as `[d_in, d_out]`.
    pub fn linear(&mut self, d_in: usize, d_out: usize, bias: bool) -> Linear<B> {
        let weight = Param::from_tensor(self.normal([d_in, d_out]));
        let bias = bias.then(|| Param::from_tensor(Tensor::zeros([d_out], self.device)));
        Linear { weight, bias }
    }

    /// An embedding table; the padding row is zeroed, as `nn.Embedding(padding_idx=…)` does.
    pub fn embedding(
        &mut self,
        rows: usize,
        dim: usize,
        padding_idx: Option<usize>,
    ) -> Embedding<B> {
        let mut table = self.normal([rows, dim]);
        if let Some(pad) = padding_idx.filter(|&p| p < rows) {
            table =
                table.slice_assign([pad..pad + 1, 0..dim], Tensor::zeros([1, dim], self.device));
        }
        Embedding {
            weight: Param::from_tensor(table),
        }
    }

    pub fn layer_norm(&mut self, dim: usize, eps: f64) -> LayerNorm<B> {
        LayerNorm::new(dim, eps, self.device)
    }
}
