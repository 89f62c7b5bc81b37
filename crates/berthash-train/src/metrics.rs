//! GLUE task metrics, as `run_glue` computes them (scikit-learn / scipy definitions), reported
//! under its names (`eval_accuracy`, `eval_f1`, `eval_matthews_correlation`, `eval_pearson`,
//! `eval_spearmanr`, `eval_combined_score`).

use std::collections::BTreeMap;

pub use berthash_data::glue::Metric;

/// Share of equal predictions and labels (0 for no examples).
pub fn accuracy(predictions: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    if labels.is_empty() {
        return 0.0;
    }
    let hits = predictions
        .iter()
        .zip(labels)
        .filter(|(p, l)| p == l)
        .count();
    hits as f64 / labels.len() as f64
}

/// Binary F1 of the positive class 1 (scikit-learn's `f1_score`, 0 when undefined).
pub fn f1(predictions: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (&p, &l) in predictions.iter().zip(labels) {
        match (p == 1, l == 1) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => {}
        }
    }
    let denom = 2 * tp + fp + fn_;
    if denom == 0 {
        0.0
    } else {
        2.0 * tp as f64 / denom as f64
    }
}

/// Matthews correlation coefficient, multiclass form (scikit-learn's `matthews_corrcoef`;
/// 0 when undefined).
pub fn matthews_correlation(predictions: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(predictions.len(), labels.len(), "one prediction per label");
    let classes = predictions.iter().chain(labels).max().map_or(0, |m| m + 1);
    let mut confusion = vec![vec![0f64; classes]; classes];
    for (&p, &l) in predictions.iter().zip(labels) {
        confusion[l][p] += 1.0;
    }
    let t: Vec<f64> = (0..classes).map(|k| confusion[k].iter().sum()).collect();
    let p: Vec<f64> = (0..classes)
        .map(|k| (0..classes).map(|i| confusion[i][k]).sum())
        .collect();
    let c: f64 = (0..classes).map(|k| confusion[k][k]).sum();
    let s = labels.len() as f64;
    let cov_ytyp = c * s - t.iter().zip(&p).map(|(a, b)| a * b).sum::<f64>();
    let cov_ypyp = s * s - p.iter().map(|x| x * x).sum::<f64>();
    let cov_ytyt = s * s - t.iter().map(|x| x * x).sum::<f64>();
    let denom = (cov_ytyt * cov_ypyp).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        cov_ytyp / denom
    }
}

/// Pearson correlation (0 when a side is constant).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "one prediction per label");
    let n = x.len() as f64;
    if x.is_empty() {
        return 0.0;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    let denom = (sxx * syy).sqrt();
    if denom == 0.0 {
        0.0
    } else {
        sxy / denom
    }
}

/// Ranks starting at 1, ties given their average rank (scipy's `rankdata(method="average")`).
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the mean of ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman rank correlation: Pearson of the average ranks.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// What a classifier (or regressor) produced on an evaluation set.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    Classes {
        predictions: Vec<usize>,
        labels: Vec<usize>,
    },
    Scores {
        predictions: Vec<f64>,
        labels: Vec<f64>,
    },
}

/// The requested metrics under run_glue's names (`eval_` prefix), plus `eval_combined_score`
/// (the mean) when there are several.
pub fn task_metrics(metrics: &[Metric], predictions: &Predictions) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for metric in metrics {
        let value = match (metric, predictions) {
            (
                Metric::Accuracy,
                Predictions::Classes {
                    predictions,
                    labels,
                },
            ) => accuracy(predictions, labels),
            (
                Metric::F1,
                Predictions::Classes {
                    predictions,
                    labels,
                },
            ) => f1(predictions, labels),
            (
                Metric::MatthewsCorrelation,
                Predictions::Classes {
                    predictions,
                    labels,
                },
            ) => matthews_correlation(predictions, labels),
            (
                Metric::Pearson,
                Predictions::Scores {
                    predictions,
                    labels,
                },
            ) => pearson(predictions, labels),
            (
                Metric::Spearman,
                Predictions::Scores {
                    predictions,
                    labels,
                },
            ) => spearman(predictions, labels),
            _ => continue, // a class metric on a regression task or the reverse: not defined
        };
        out.insert(format!("eval_{}", metric.run_glue_name()), value);
    }
    if out.len() > 1 {
        let mean = out.values().sum::<f64>() / out.len() as f64;
        out.insert("eval_combined_score".to_string(), mean);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    #[test]
    fn accuracy_by_hand() {
        close(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]), 0.5);
        close(accuracy(&[2, 0, 1], &[2, 0, 1]), 1.0);
    }

    #[test]
    fn f1_by_hand() {
        // tp 2, fp 1, fn 1: precision 2/3, recall 2/3, F1 2/3 = 2*2 / (4 + 1 + 1).
        close(f1(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0]), 2.0 / 3.0);
        // No positive predicted or true: sklearn returns 0 (with a warning).
        close(f1(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn matthews_by_hand() {
        // Binary: tp 2, tn 1, fp 1, fn 1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6.
        close(
            matthews_correlation(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0]),
            1.0 / 6.0,
        );
        close(matthews_correlation(&[0, 1, 0, 1], &[0, 1, 0, 1]), 1.0);
        close(matthews_correlation(&[1, 0, 1, 0], &[0, 1, 0, 1]), -1.0);
        // Constant prediction: undefined, 0.
        close(matthews_correlation(&[1, 1, 1], &[0, 1, 0]), 0.0);
    }

    #[test]
    fn pearson_by_hand() {
        // x = 1,2,3, y = 2,4,7: dx = -1,0,1, dy = -7/3,-1/3,8/3; sxy = 5, sxx = 2,
        // syy = (49 + 1 + 64)/9 = 114/9 -> 5 / sqrt(2 * 114/9) = 15 / sqrt(228).
        close(
            pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0]),
            15.0 / 228f64.sqrt(),
        );
        close(pearson(&[1.0, 2.0], &[3.0, 3.0]), 0.0);
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            vec![2.0, 3.5, 3.5, 1.0]
        );
        assert_eq!(average_ranks(&[1.0, 1.0, 1.0]), vec![2.0, 2.0, 2.0]);
    }

    #[test]
    fn spearman_by_hand() {
        // Monotone but not linear: 1.
        close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]),
            1.0,
        );
        // x ranks 1,2,3,4; y = 1,3,2,2 -> ranks 1, 4, 2.5, 2.5. Means 2.5, 2.5;
        // dx = -1.5,-0.5,0.5,1.5; dy = -1.5,1.5,0,0; sxy = 2.25 - 0.75 = 1.5; sxx = 5; syy = 4.5.
        close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 2.0]),
            1.5 / (22.5f64).sqrt(),
        );
    }

    #[test]
    fn run_glue_names() {
        let m = task_metrics(
            &[Metric::F1, Metric::Accuracy],
            &Predictions::Classes {
                predictions: vec![1, 1, 1, 0, 0],
                labels: vec![1, 1, 0, 1, 0],
            },
        );
        close(m["eval_f1"], 2.0 / 3.0);
        close(m["eval_accuracy"], 0.6);
        close(m["eval_combined_score"], (2.0 / 3.0 + 0.6) / 2.0);
        let s = task_metrics(
            &[Metric::Pearson, Metric::Spearman],
            &Predictions::Scores {
                predictions: vec![1.0, 2.0, 3.0],
                labels: vec![1.0, 2.0, 3.0],
            },
        );
        assert_eq!(
            s.keys().collect::<Vec<_>>(),
            ["eval_combined_score", "eval_pearson", "eval_spearmanr"]
        );
    }
}
