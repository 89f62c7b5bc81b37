//! How token vectors become one sentence vector, as sentence-transformers' `Pooling` and
//! `Normalize` modules compute it: over every position whose attention mask is 1, special tokens
//! included.

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;

/// How token vectors become one sentence vector (sentence-transformers' pooling modes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the attended positions (`pooling_mode_mean_tokens`).
    #[default]
    Mean,
    /// The first token, `[CLS]` (`pooling_mode_cls_token`).
    Cls,
    /// The element-wise maximum over the attended positions (`pooling_mode_max_tokens`).
    Max,
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Pooling::Mean),
            "cls" => Ok(Pooling::Cls),
            "max" => Ok(Pooling::Max),
            other => Err(format!("unknown pooling `{other}`: use mean, cls or max")),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::Max => "max",
        })
    }
}

/// `[batch, seq, hidden]` token vectors to `[batch, hidden]`, with `mask` `[batch, seq]` (1 =
/// attended) as sentence-transformers' `Pooling.forward` uses it.
pub fn pool<B: Backend>(
    hidden: Tensor<B, 3>,
    mask: Tensor<B, 2, Int>,
    pooling: Pooling,
) -> Tensor<B, 2> {
    let [batch, seq, dim] = hidden.dims();
    match pooling {
        Pooling::Cls => hidden.slice([0..batch, 0..1, 0..dim]).reshape([batch, dim]),
        Pooling::Mean => {
            let mask = mask.float().unsqueeze_dim::<3>(2);
            let counts = mask.clone().sum_dim(1).clamp_min(1e-9);
            (hidden * mask).sum_dim(1).div(counts).reshape([batch, dim])
        }
        Pooling::Max => {
            let padding = mask
                .equal_elem(0)
                .unsqueeze_dim::<3>(2)
                .expand([batch, seq, dim]);
            hidden
                .mask_fill(padding, -1e9)
                .max_dim(1)
                .reshape([batch, dim])
        }
    }
}

/// Each row divided by its L2 norm, at least 1e-12 (torch's `F.normalize`).
pub fn normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x.div(norm)
}
