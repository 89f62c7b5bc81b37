//! The losses of sentence-embedding training, defined exactly as sentence-transformers defines
//! them, on the pooled embeddings of a batch of pairs `(a_i, b_i)`:
//!
//! - `CoSENTLoss(scale)`: with `s_i = scale * cos(a_i, b_i)`, `log(1 + Σ exp(s_i - s_j))` over
//!   the pairs `(i, j)` whose gold score is lower for `i` than for `j`.
//! - `CosineSimilarityLoss`: the mean squared error of `cos(a_i, b_i)` and the gold score (in
//!   [0, 1]).
//! - `MultipleNegativesRankingLoss(scale)`: cross-entropy of `scale * cos(a_i, b_j)` over `j`,
//!   the target being `j = i` (every other positive of the batch is a negative).
//!
//! Cosines are those of `torch.nn.functional.normalize` (norms clamped at 1e-12).

use berthash_kernels::{cross_entropy, Kernels};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::embed::normalize;

/// Which loss, and its scale where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SentenceLoss {
    /// sentence-transformers' `CoSENTLoss`, for scored pairs.
    Cosent {
        #[serde(default = "default_scale")]
        scale: f64,
    },
    /// sentence-transformers' `CosineSimilarityLoss` (MSE), for scored pairs.
    CosineSimilarity,
    /// sentence-transformers' `MultipleNegativesRankingLoss` (cosine), for (anchor, positive)
    /// pairs.
    MultipleNegativesRanking {
        #[serde(default = "default_scale")]
        scale: f64,
    },
}

fn default_scale() -> f64 {
    20.0
}

impl SentenceLoss {
    /// The loss of a batch: embeddings `a`, `b` `[n, dim]` and, for the scored losses, the gold
    /// scores `[n]` in [0, 1].
    pub fn loss<B: Kernels>(
        self,
        a: Tensor<B, 2>,
        b: Tensor<B, 2>,
        scores: Option<Tensor<B, 1>>,
    ) -> Tensor<B, 1> {
        match self {
            SentenceLoss::Cosent { scale } => {
                cosent(a, b, scores.expect("CoSENT needs scores"), scale)
            }
            SentenceLoss::CosineSimilarity => {
                let cos = pairwise_cosine(a, b);
                (cos - scores.expect("CosineSimilarityLoss needs scores"))
                    .powi_scalar(2)
                    .mean()
            }
            SentenceLoss::MultipleNegativesRanking { scale } => {
                let [n, _] = a.dims();
                let logits = normalize(a).matmul(normalize(b).transpose()) * scale;
                let targets = Tensor::<B, 1, Int>::arange(0..n as i64, &logits.device());
                cross_entropy(logits, targets)
            }
        }
    }
}

/// `cos(a_i, b_i)` for each row `[n]`.
pub fn pairwise_cosine<B: Backend>(a: Tensor<B, 2>, b: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, _] = a.dims();
    (normalize(a) * normalize(b)).sum_dim(1).reshape([n])
}

fn cosent<B: Backend>(
    a: Tensor<B, 2>,
    b: Tensor<B, 2>,
    labels: Tensor<B, 1>,
    scale: f64,
) -> Tensor<B, 1> {
    let [n, _] = a.dims();
    let s = pairwise_cosine(a, b) * scale;
    // diff[i, j] = s_i - s_j, kept where label_i < label_j, else pushed to -1e12.
    let diff = s.clone().unsqueeze_dim::<2>(1) - s.unsqueeze_dim::<2>(0);
    let lower = labels
        .clone()
        .unsqueeze_dim::<2>(1)
        .lower(labels.unsqueeze_dim::<2>(0));
    let diff = diff.mask_fill(lower.bool_not(), -1e12).reshape([n * n]);
    // logsumexp over [0, diff...], shifted by its maximum (at least the 0).
    let device = diff.device();
    let all = Tensor::cat(vec![Tensor::zeros([1], &device), diff], 0);
    let max = all.clone().max().detach();
    (all - max.clone()).exp().sum().log() + max
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    type B = Flex;

    fn t2(rows: &[[f32; 2]]) -> Tensor<B, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([rows.len(), 2])
    }

    fn t1(v: &[f32]) -> Tensor<B, 1> {
        Tensor::from_floats(v, &Default::default())
    }

    fn value(t: Tensor<B, 1>) -> f64 {
        t.into_scalar() as f64
    }

    fn cos(x: [f32; 2], y: [f32; 2]) -> f64 {
        let dot = (x[0] * y[0] + x[1] * y[1]) as f64;
        let n = ((x[0] * x[0] + x[1] * x[1]) as f64).sqrt()
            * ((y[0] * y[0] + y[1] * y[1]) as f64).sqrt();
        dot / n
    }

    const A: [[f32; 2]; 3] = [[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]];
    const BB: [[f32; 2]; 3] = [[1.0, 1.0], [-1.0, 0.5], [0.3, 1.0]];

    #[test]
    fn cosent_is_the_log_sum_over_misordered_pairs() {
        let labels = [0.9f32, 0.1, 0.5];
        let s: Vec<f64> = (0..3).map(|i| 20.0 * cos(A[i], BB[i])).collect();
        let mut terms = vec![0.0f64];
        for i in 0..3 {
            for j in 0..3 {
                if labels[i] < labels[j] {
                    terms.push(s[i] - s[j]);
                }
            }
        }
        let max = terms.iter().cloned().fold(f64::MIN, f64::max);
        let expected = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
        let loss = SentenceLoss::Cosent { scale: 20.0 }.loss(t2(&A), t2(&BB), Some(t1(&labels)));
        assert!((value(loss) - expected).abs() < 1e-4 * expected.abs().max(1.0));
    }

    #[test]
    fn cosine_similarity_is_the_mse_of_the_cosines() {
        let labels = [0.9f32, 0.1, 0.5];
        let expected = (0..3)
            .map(|i| (cos(A[i], BB[i]) - labels[i] as f64).powi(2))
            .sum::<f64>()
            / 3.0;
        let loss = SentenceLoss::CosineSimilarity.loss(t2(&A), t2(&BB), Some(t1(&labels)));
        assert!((value(loss) - expected).abs() < 1e-6);
    }

    #[test]
    fn multiple_negatives_ranking_is_cross_entropy_over_the_batch() {
        let mut expected = 0.0;
        for i in 0..3 {
            let logits: Vec<f64> = (0..3).map(|j| 20.0 * cos(A[i], BB[j])).collect();
            let max = logits.iter().cloned().fold(f64::MIN, f64::max);
            let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
            expected += lse - logits[i];
        }
        expected /= 3.0;
        let loss = value(SentenceLoss::MultipleNegativesRanking { scale: 20.0 }.loss(
            t2(&A),
            t2(&BB),
            None,
        ));
        assert!(
            (loss - expected).abs() < 1e-4 * expected.max(1.0),
            "{loss} vs {expected}"
        );
    }
}
