//! Softmax rows for the CPU attention kernel: the biased, scaled forward on the vectorised
//! `exp`, and the backward `probs * (grad - probs . grad)`.

use crate::exp::softmax_in_place;

/// `out = softmax(scores * scale + bias)` for one row.
pub fn forward_row(scores: &[f32], scale: f32, bias: Option<&[f32]>, out: &mut [f32]) {
    match bias {
        Some(bias) => {
            for ((o, &s), &b) in out.iter_mut().zip(scores).zip(bias) {
                *o = s * scale + b;
            }
        }
        None => {
            for (o, &s) in out.iter_mut().zip(scores) {
                *o = s * scale;
            }
        }
    }
    softmax_in_place(out);
}

/// `grad = scale * probs * (grad - probs . grad)` for one row, in place.
pub fn backward_row(probs: &[f32], scale: f32, grad: &mut [f32]) {
    // Eight partial sums: LLVM vectorises independent lanes, not one running sum.
    let mut lanes = [0.0f32; 8];
    let chunks = probs.chunks_exact(8).zip(grad.chunks_exact(8));
    for (p, g) in chunks {
        for j in 0..8 {
            lanes[j] += p[j] * g[j];
        }
    }
    let body = probs.len() / 8 * 8;
    let tail: f32 = probs[body..]
        .iter()
        .zip(&grad[body..])
        .map(|(p, g)| p * g)
        .sum();
    let dot = lanes.iter().sum::<f32>() + tail;
    for (g, &p) in grad.iter_mut().zip(probs) {
        *g = scale * p * (*g - dot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_is_the_biased_scaled_softmax_and_masks_exactly() {
        let scores: Vec<f32> = (0..19).map(|i| (i as f32 * 0.7).sin() * 5.0).collect();
        let mut bias = vec![0.0f32; 19];
        bias[3] = f32::MIN;
        bias[17] = f32::MIN;
        let mut out = vec![0.0f32; 19];
        forward_row(&scores, 0.25, Some(&bias), &mut out);
        assert_eq!((out[3], out[17]), (0.0, 0.0), "masked keys get exactly 0");
        let z: f64 = (0..19)
            .filter(|&i| i != 3 && i != 17)
            .map(|i| (scores[i] as f64 * 0.25).exp())
            .sum();
        for i in (0..19).filter(|&i| i != 3 && i != 17) {
            let exact = (scores[i] as f64 * 0.25).exp() / z;
            assert!(
                (out[i] as f64 - exact).abs() < 1e-6,
                "{i}: {} vs {exact}",
                out[i]
            );
        }
    }

    #[test]
    fn backward_matches_the_jacobian() {
        let probs = [0.1f32, 0.2, 0.3, 0.05, 0.05, 0.1, 0.1, 0.05, 0.05];
        let grad0 = [1.0f32, -2.0, 0.5, 3.0, 0.0, 1.5, -1.0, 2.0, 0.25];
        let mut grad = grad0;
        backward_row(&probs, 0.5, &mut grad);
        for i in 0..probs.len() {
            // d softmax_i / d x_j = p_i (delta_ij - p_j), times the chain's scale.
            let exact: f64 = (0..probs.len())
                .map(|j| {
                    let delta = if i == j { 1.0 } else { 0.0 };
                    grad0[j] as f64 * probs[j] as f64 * (delta - probs[i] as f64)
                })
                .sum::<f64>()
                * 0.5;
            assert!(
                (grad[i] as f64 - exact).abs() < 1e-6,
                "{i}: {} vs {exact}",
                grad[i]
            );
        }
    }
}
