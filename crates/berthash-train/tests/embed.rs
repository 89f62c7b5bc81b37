//! Sentence embeddings against a hand computation from `last_hidden_state` and the attention
//! mask, independent of batch size and order, and normalised to unit length when asked.

mod common;

use std::path::Path;

use berthash_data::TokenizerHandle;
use berthash_model::pretrained::{init_model, save};
use berthash_model::weights::WeightLayout;
use berthash_model::{load, BertHashModel, BertInput, ModelOptions};
use berthash_train::embed::{EmbedOptions, Embedder, Embeddings, Pooling};
use burn::backend::Flex;
use burn::prelude::*;

type B = Flex;

/// Texts of different lengths, not sorted, so batches pad and reorder.
fn texts() -> Vec<String> {
    [
        "a cat",
        "the quick brown fox jumps over the lazy dog",
        "hello",
        "sentence embeddings from a tiny model with hashed tokens",
        "two words",
    ]
    .map(String::from)
    .to_vec()
}

fn tokenizer() -> TokenizerHandle {
    TokenizerHandle::from_file(common::tokenizer()).unwrap()
}

/// A tiny encoder over the full bert-base-uncased vocabulary, saved in `dir`.
fn write_model(dir: &Path) {
    let config = common::tiny_model();
    let model: BertHashModel<B> =
        init_model(&config, ModelOptions::default(), 3, &Default::default());
    save::<B, _>(dir, &config, &model, &WeightLayout::default()).unwrap();
}

fn embed(dir: &Path, options: EmbedOptions) -> Embeddings {
    Embedder::<B>::load(dir, tokenizer(), options, &Default::default())
        .unwrap()
        .embed(&texts())
        .unwrap()
}

/// Pooling written out over `last_hidden_state` of all texts in one padded batch, in input order.
fn by_hand(dir: &Path, pooling: Pooling) -> Vec<Vec<f32>> {
    let device = Default::default();
    let model = load::<B, BertHashModel<B>>(dir, None, 0, &device)
        .unwrap()
        .model;
    let ids: Vec<Vec<u32>> = texts()
        .iter()
        .map(|t| tokenizer().encode(t, true).unwrap())
        .collect();
    let (rows, seq) = (ids.len(), ids.iter().map(Vec::len).max().unwrap());
    let mut flat_ids = Vec::new();
    let mut mask = Vec::new();
    for row in &ids {
        for i in 0..seq {
            flat_ids.push(row.get(i).map_or(0, |&id| i64::from(id)));
            mask.push(i64::from(i < row.len()));
        }
    }
    let input = BertInput {
        input_ids: Tensor::from_data(TensorData::new(flat_ids, [rows, seq]), &device),
        token_type_ids: None,
        attention_mask: Some(Tensor::from_data(
            TensorData::new(mask.clone(), [rows, seq]),
            &device,
        )),
    };
    let hidden = model.encode(input);
    let dim = hidden.dims()[2];
    let hidden = hidden.into_data().to_vec::<f32>().unwrap();
    let at = |r: usize, s: usize| &hidden[(r * seq + s) * dim..(r * seq + s + 1) * dim];
    (0..rows)
        .map(|r| {
            let kept: Vec<usize> = (0..seq).filter(|&s| mask[r * seq + s] == 1).collect();
            (0..dim)
                .map(|d| match pooling {
                    Pooling::Mean => {
                        kept.iter().map(|&s| at(r, s)[d]).sum::<f32>() / kept.len() as f32
                    }
                    Pooling::Cls => at(r, 0)[d],
                    Pooling::Max => kept.iter().map(|&s| at(r, s)[d]).fold(f32::MIN, f32::max),
                })
                .collect()
        })
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn pooling_matches_a_hand_computation_from_the_hidden_states_and_mask() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
        let options = EmbedOptions {
            pooling,
            batch_size: 2,
            ..EmbedOptions::default()
        };
        let got = embed(dir.path(), options);
        let want = by_hand(dir.path(), pooling);
        assert_eq!(got.len(), want.len());
        assert_eq!(got.dim, 16);
        for (i, row) in want.iter().enumerate() {
            let diff = max_diff(got.row(i), row);
            assert!(diff < 1e-5, "{pooling} pooling, text {i}: off by {diff}");
        }
    }
    // The three poolings differ: a wrong mode would not pass unnoticed.
    let mean = by_hand(dir.path(), Pooling::Mean);
    assert!(max_diff(&mean[1], &by_hand(dir.path(), Pooling::Cls)[1]) > 1e-3);
    assert!(max_diff(&mean[1], &by_hand(dir.path(), Pooling::Max)[1]) > 1e-3);
}

#[test]
fn batch_size_and_length_sorting_do_not_change_the_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    for pooling in [Pooling::Mean, Pooling::Max] {
        let batched = |batch_size| {
            let options = EmbedOptions {
                pooling,
                batch_size,
                ..EmbedOptions::default()
            };
            embed(dir.path(), options).values
        };
        let diff = max_diff(&batched(1), &batched(64));
        assert!(diff < 1e-6, "{pooling}: batch 1 vs 64 off by {diff}");
    }
}

#[test]
fn normalize_gives_unit_vectors_in_the_same_direction() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    let raw = embed(dir.path(), EmbedOptions::default());
    let unit = embed(
        dir.path(),
        EmbedOptions {
            normalize: true,
            ..EmbedOptions::default()
        },
    );
    for i in 0..raw.len() {
        let norm = unit.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "text {i}: norm {norm}");
        assert!((raw.cosine(i, i) - 1.0).abs() < 1e-5);
        let raw_norm = raw.row(i).iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!(
            (raw_norm - 1.0).abs() > 1e-3,
            "the raw embedding was already unit"
        );
        let scaled: Vec<f32> = raw.row(i).iter().map(|x| x / raw_norm).collect();
        assert!(max_diff(unit.row(i), &scaled) < 1e-5);
    }
}

#[test]
fn refuses_a_sequence_length_beyond_the_positions_and_a_larger_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    write_model(dir.path());
    let too_long = EmbedOptions {
        max_seq_length: Some(65),
        ..EmbedOptions::default()
    };
    let err = Embedder::<B>::load(dir.path(), tokenizer(), too_long, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("max_seq_length 65") && err.contains("64 positions"),
        "{err}"
    );

    let small = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden/tiny/base");
    let err = Embedder::<B>::load(
        &small,
        tokenizer(),
        EmbedOptions::default(),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("30522") && err.contains("1000"), "{err}");
}
