//! Parity with the PyTorch reference: every golden case's model dirs give the expected outputs
//! within 1e-4 (f32), padding rows included. `tiny` ships in the repo; `pico` is read from
//! `../shared/golden` (or `$BERTHASH_SHARED/golden`) when present.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berthash_model::inputs::InputBatch;
use berthash_model::weights::TensorFile;
use berthash_model::{load_any, AnyModel};
use burn::backend::Flex;
use burn::prelude::*;

type B = Flex;
const TOLERANCE: f32 = 1e-4;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shared_golden() -> Option<PathBuf> {
    let shared = std::env::var_os("BERTHASH_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared"));
    let golden = shared.join("golden");
    golden.is_dir().then_some(golden)
}

fn expected(case: &Path) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let file = TensorFile::read(&case.join("expected.safetensors")).unwrap();
    file.tensors
        .into_iter()
        .filter(|(_, t)| t.dtype == safetensors::Dtype::F32)
        .map(|(k, t)| {
            let values = t
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (k, (t.shape, values))
        })
        .collect()
}

fn values<const D: usize>(tensor: Tensor<B, D>) -> (Vec<usize>, Vec<f32>) {
    let shape = tensor.dims().to_vec();
    (shape, tensor.into_data().to_vec::<f32>().unwrap())
}

fn max_abs_diff(a: &(Vec<usize>, Vec<f32>), b: &(Vec<usize>, Vec<f32>)) -> f32 {
    assert_eq!(a.0, b.0, "shapes differ");
    a.1.iter()
        .zip(&b.1)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs the three model dirs of a case; returns (name, max diff) per compared output.
fn check_case(case: &Path) -> Vec<(String, f32)> {
    let device = Default::default();
    let expected = expected(case);
    let inputs = InputBatch::from_file(&case.join("inputs.json")).unwrap();
    let mut results = Vec::new();
    for head in ["base", "mlm", "cls"] {
        let loaded = load_any::<B>(&case.join(head), &device).unwrap();
        inputs
            .validate(&loaded.config, &case.join("inputs.json"))
            .unwrap();
        let input = inputs.to_input::<B>(&device);
        let mut outputs = Vec::new();
        match loaded.model {
            AnyModel::Base(model) => {
                let out = model.forward(input);
                assert!(
                    out.pooler_output.is_none(),
                    "the base golden model has no pooler"
                );
                outputs.push(("last_hidden_state", values(out.last_hidden_state)));
            }
            AnyModel::MaskedLm(model) => {
                let (out, logits) = model.forward(input);
                outputs.push(("last_hidden_state", values(out.last_hidden_state)));
                outputs.push(("logits", values(logits)));
            }
            AnyModel::Classifier(model) => {
                let (out, logits) = model.forward(input);
                outputs.push(("last_hidden_state", values(out.last_hidden_state)));
                outputs.push(("pooler_output", values(out.pooler_output.unwrap())));
                outputs.push(("logits", values(logits)));
            }
        }
        for (name, got) in outputs {
            // The golden base dir is the classifier's encoder saved bare (no prefix, no
            // pooler), so it reproduces the classifier's hidden states.
            let key = match head {
                "base" => format!("cls.{name}"),
                _ => format!("{head}.{name}"),
            };
            results.push((
                format!("{head} vs {key}"),
                max_abs_diff(&got, &expected[&key]),
            ));
        }
    }
    results
}

fn assert_parity(case: &Path) {
    let results = check_case(case);
    for (name, diff) in &results {
        println!("{}: {name}: max |diff| = {diff:.3e}", case.display());
    }
    for (name, diff) in results {
        assert!(
            diff <= TOLERANCE,
            "{}: {name}: max |diff| {diff} > {TOLERANCE}",
            case.display()
        );
    }
}

#[test]
fn tiny_golden_case_matches_pytorch() {
    assert_parity(&repo_root().join("tests/fixtures/golden/tiny"));
}

#[test]
fn shared_golden_cases_match_pytorch() {
    let Some(golden) = shared_golden() else {
        eprintln!("skipped: ../shared/golden not found (set BERTHASH_SHARED); CI runs this test");
        return;
    };
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("inputs.json").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        golden.display()
    );
    for case in cases {
        assert_parity(&case);
    }
}

#[test]
fn logits_at_selected_positions_equal_the_full_head_rows_and_give_the_loss() {
    let device = Default::default();
    let case = repo_root().join("tests/fixtures/golden/tiny");
    let inputs = InputBatch::from_file(&case.join("inputs.json")).unwrap();
    let loaded = berthash_model::load::<B, berthash_model::BertHashForMaskedLM<B>>(
        &case.join("mlm"),
        None,
        0,
        &device,
    )
    .unwrap();
    let (batch, seq) = (inputs.batch_size(), inputs.seq_len());
    let positions = [0usize, 3, seq + 1, 2 * seq + 9];
    let index = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            positions.iter().map(|&p| p as i64).collect::<Vec<_>>(),
            [positions.len()],
        ),
        &device,
    );
    let labels = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![5i64, 6, 7, 8], [4]), &device);
    let (loss, selected) = loaded.model.loss(inputs.to_input(&device), index, labels);
    let (_, full) = loaded.model.forward(inputs.to_input(&device));
    let vocab = loaded.config.vocab_size;
    let full = full
        .reshape([batch * seq, vocab])
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let selected = selected.into_data().to_vec::<f32>().unwrap();
    let mut expected_loss = 0.0f64;
    for (row, &p) in positions.iter().enumerate() {
        let got = &selected[row * vocab..(row + 1) * vocab];
        let want = &full[p * vocab..(p + 1) * vocab];
        let diff = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff < 1e-5, "row {row}: {diff}");
        let max = want.iter().copied().fold(f32::MIN, f32::max) as f64;
        let log_sum = want
            .iter()
            .map(|&v| (v as f64 - max).exp())
            .sum::<f64>()
            .ln()
            + max;
        expected_loss += log_sum - want[5 + row] as f64;
    }
    expected_loss /= positions.len() as f64;
    let loss = loss.into_scalar() as f64;
    assert!(
        (loss - expected_loss).abs() < 1e-4,
        "{loss} vs {expected_loss}"
    );
}
