//! The pre-training stream: packing, masking statistics, resume, eval split.

mod common;

use std::sync::Arc;

use berthash_data::{
    pack_documents, CorpusConfig, CorpusSource, CorpusStream, FileOrder, MlmBatch, PackMode,
    PretrainLoader, PretrainStreamConfig, SourceCursor, StreamPosition,
};

fn books() -> Vec<CorpusSource> {
    vec![CorpusSource::new(&[&common::books_sample()])]
}

fn both() -> Vec<CorpusSource> {
    vec![
        CorpusSource::new(&[&common::wiki_sample()]),
        CorpusSource::new(&[&common::books_sample()]),
    ]
}

fn collect(
    config: &PretrainStreamConfig,
    start: Option<StreamPosition>,
    n: usize,
) -> Vec<(MlmBatch, StreamPosition)> {
    PretrainLoader::new(config.clone(), start)
        .unwrap()
        .take(n)
        .map(|b| b.unwrap())
        .collect()
}

/// The input ids before masking.
fn unmasked(b: &MlmBatch) -> Vec<u32> {
    let mut ids = b.input_ids.clone();
    for (&p, &l) in b.masked_positions.iter().zip(&b.masked_labels) {
        ids[p as usize] = l;
    }
    ids
}

/// Token ids of every document of the sources, in stream order.
fn documents(sources: Vec<CorpusSource>) -> Vec<Vec<u32>> {
    let cfg = CorpusConfig::new(sources);
    let lanes = cfg.lanes(&cfg.resolve().unwrap()).unwrap();
    let start = vec![SourceCursor::default(); lanes.len()];
    let texts: Vec<String> = CorpusStream::new(&cfg, &lanes, &start, Arc::default())
        .map(|d| d.unwrap().content.text().unwrap().to_string())
        .collect();
    common::tokenizer().encode_batch(&texts, true).unwrap()
}

#[test]
fn packed_rows_are_the_documents_concatenated_and_cut_exactly() {
    let mut cfg = common::stream_config(books());
    cfg.shuffle = false;
    cfg.shuffle_buffer = 1_000_000; // one window: the whole corpus
    cfg.epochs = Some(1);
    let batches: Vec<MlmBatch> = collect(&cfg, None, usize::MAX)
        .into_iter()
        .map(|b| b.0)
        .collect();
    let docs = documents(books());
    let all: Vec<u32> = docs.concat();
    let rows = all.len() / 128;
    assert_eq!(batches.len(), rows / 16, "full batches only");
    let streamed: Vec<u32> = batches.iter().flat_map(unmasked).collect();
    assert_eq!(streamed[..], all[..streamed.len()]);
    for b in &batches {
        assert_eq!(
            (b.batch_size, b.seq_len, b.input_ids.len()),
            (16, 128, 16 * 128)
        );
        assert!(b.attention_mask.is_none());
        assert!(b.token_type_ids.iter().all(|&t| t == 0));
    }
    // The same rows from the packing function directly.
    let packed = pack_documents(&docs, PackMode::Packed, 128, 30522, 0, 102);
    assert_eq!(packed.rows(), rows);
    assert_eq!(packed.row(5), all[5 * 128..6 * 128]);
}

#[test]
fn masking_follows_the_recipe() {
    let mut cfg = common::stream_config(both());
    cfg.epochs = Some(1);
    cfg.shuffle_buffer = 256;
    let tok = common::tokenizer();
    let special = tok.special_ids();
    let (mut eligible, mut selected, mut as_mask, mut kept) = (0usize, 0usize, 0usize, 0usize);
    for (b, _) in collect(&cfg, None, 150) {
        let original = unmasked(&b);
        assert!(
            b.masked_positions.windows(2).all(|w| w[0] < w[1]),
            "ascending"
        );
        assert_eq!(b.masked_positions.len(), b.masked_labels.len());
        for (&p, &l) in b.masked_positions.iter().zip(&b.masked_labels) {
            assert!(!special.is_special(l), "special token selected");
            assert_eq!(original[p as usize], l);
            let now = b.input_ids[p as usize];
            as_mask += usize::from(now == special.mask);
            kept += usize::from(now == l);
        }
        // Outside the selected positions nothing changed.
        let mut changed: Vec<u32> = (0..b.input_ids.len())
            .filter(|&i| b.input_ids[i] != original[i])
            .map(|i| i as u32)
            .collect();
        changed.retain(|p| b.masked_positions.binary_search(p).is_err());
        assert!(changed.is_empty());
        eligible += original.iter().filter(|&&t| !special.is_special(t)).count();
        selected += b.masked_positions.len();
    }
    // Binomial bounds at about 6 standard deviations.
    let within = |count: usize, n: usize, p: f64| {
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        (count as f64 - n as f64 * p).abs() < 6.0 * sd
    };
    assert!(eligible > 150_000, "{eligible}");
    assert!(within(selected, eligible, 0.15), "{selected} of {eligible}");
    assert!(
        within(as_mask, selected, 0.8),
        "{as_mask} of {selected} masked"
    );
    // Kept = the 10% kept + random draws that hit the original id (negligible).
    assert!(within(kept, selected, 0.1), "{kept} of {selected} kept");
}

#[test]
fn per_document_rows_are_padded_with_a_mask_and_padding_is_never_selected() {
    let mut cfg = common::stream_config(books());
    cfg.pack_mode = PackMode::PerDocument;
    cfg.max_length = 32;
    cfg.shuffle = false;
    let docs = documents(books());
    let batches = collect(&cfg, None, 5);
    let b = &batches[0].0;
    let mask = b.attention_mask.as_ref().unwrap();
    let original = unmasked(b);
    for row in 0..16 {
        let doc = &docs[row];
        let len = doc.len().min(32);
        let r = &original[row * 32..(row + 1) * 32];
        assert_eq!(&r[..len - 1], &doc[..len - 1]);
        assert_eq!(r[len - 1], 102, "rows end with [SEP], truncated or not");
        assert!(r[len..].iter().all(|&t| t == 0));
        assert!(mask[row * 32..(row + 1) * 32]
            .iter()
            .enumerate()
            .all(|(i, &m)| m == u32::from(i < len)));
    }
    for (b, _) in &batches {
        let mask = b.attention_mask.as_ref().unwrap();
        assert!(b.masked_positions.iter().all(|&p| mask[p as usize] == 1));
        assert_eq!(b.real_tokens(), mask.iter().filter(|&&m| m == 1).count());
    }
}

/// Both samples as one source of two files, read side by side.
fn interleaved() -> PretrainStreamConfig {
    let mut cfg = common::stream_config(vec![CorpusSource::new(&[
        &common::wiki_sample(),
        &common::books_sample(),
    ])]);
    cfg.corpus.file_order = FileOrder::Interleaved;
    cfg
}

#[test]
fn resuming_from_a_saved_position_gives_the_same_next_batches() {
    resumes_exactly(common::stream_config(both()));
    resumes_exactly(interleaved());
}

fn resumes_exactly(mut cfg: PretrainStreamConfig) {
    cfg.shuffle_buffer = 50; // small windows so positions fall mid-window and across windows
    cfg.batch_size = 24;
    cfg.max_length = 64;
    cfg.epochs = Some(2);
    let full = collect(&cfg, None, usize::MAX);
    assert!(full.len() > 300, "{}", full.len());
    let epoch_end = full.iter().position(|(_, p)| p.epoch == 1).unwrap();
    for k in [0, 1, 2, 7, 33, epoch_end - 1, epoch_end, full.len() - 3] {
        // The position goes through JSON as it would in a checkpoint.
        let json = serde_json::to_string(&full[k].1).unwrap();
        assert!(json.len() < 400, "{json}");
        let pos: StreamPosition = serde_json::from_str(&json).unwrap();
        let resumed = collect(&cfg, Some(pos), 6);
        let expected: Vec<_> = full[k + 1..].iter().take(6).cloned().collect();
        assert_eq!(resumed.len(), expected.len(), "after batch {k}");
        for (i, (got, want)) in resumed.iter().zip(&expected).enumerate() {
            assert!(
                got == want,
                "batch {} differs after resuming at {k}",
                k + 1 + i
            );
        }
    }
    // At the very end nothing is left.
    assert_eq!(
        collect(&cfg, Some(full.last().unwrap().1.clone()), 3).len(),
        0
    );
    // Epoch 2 sees the same rows in another order.
    let first = &full[0].0;
    assert!(full[epoch_end..]
        .iter()
        .all(|(b, _)| b.input_ids != first.input_ids));
    assert_eq!(full.last().unwrap().1.batches, full.len() as u64);
}

#[test]
fn the_stream_is_deterministic_and_depends_on_the_seed() {
    let cfg = common::stream_config(both());
    let a = collect(&cfg, None, 12);
    assert_eq!(a, collect(&cfg, None, 12));
    let mut other = cfg.clone();
    other.seed = 7;
    assert_ne!(a[0].0, collect(&other, None, 1)[0].0);
    // A position from another configuration is refused.
    let err = PretrainLoader::new(other, Some(a[3].1.clone()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn infinite_streams_count_epochs_and_dropping_stops_the_threads() {
    let mut cfg = common::stream_config(books());
    cfg.max_length = 512;
    cfg.batch_size = 64;
    cfg.shuffle_buffer = 16;
    let mut loader = PretrainLoader::new(cfg, None).unwrap();
    let mut last = loader.start_position().clone();
    for _ in 0..12 {
        last = loader.next().unwrap().unwrap().1;
    }
    assert!(last.epoch >= 3, "{last:?}"); // ~3 batches per epoch of this small corpus
    drop(loader); // joins the reader, tokenizer and assembler threads
}

#[test]
fn eval_batches_are_fixed_and_held_out_of_training() {
    let mut cfg = common::stream_config(books());
    cfg.eval_documents = 500;
    cfg.shuffle = false;
    let tok = common::tokenizer();
    let eval = PretrainLoader::eval_batches(&cfg, &tok, 1000).unwrap();
    assert_eq!(
        eval,
        PretrainLoader::eval_batches(&cfg, &tok, 1000).unwrap()
    );
    let docs = documents(books());
    let held: Vec<u32> = docs[..500].concat();
    let eval_ids: Vec<u32> = eval.iter().flat_map(unmasked).collect();
    assert_eq!(eval_ids.len(), held.len() / 128 * 128);
    assert_eq!(eval_ids[..], held[..eval_ids.len()]);
    // Training starts with document 500.
    let train = collect(&cfg, None, 1);
    let first_row = &unmasked(&train[0].0)[..128];
    assert_eq!(first_row, &docs[500..].concat()[..128]);
    assert_eq!(
        PretrainLoader::eval_batches(&cfg, &tok, 2).unwrap().len(),
        2
    );
}

#[test]
fn interleaved_files_hold_out_the_same_documents_and_mix_the_rest() {
    let mut sequential = common::stream_config(vec![CorpusSource::new(&[
        &common::wiki_sample(),
        &common::books_sample(),
    ])]);
    sequential.eval_documents = 5;
    sequential.shuffle = false;
    let mut mixed = interleaved();
    mixed.eval_documents = 5;
    mixed.shuffle = false;
    let tok = common::tokenizer();
    assert_eq!(
        PretrainLoader::eval_batches(&mixed, &tok, 100).unwrap(),
        PretrainLoader::eval_batches(&sequential, &tok, 100).unwrap()
    );
    // Sequential reading starts on the Wikipedia file; interleaved reading draws on the books
    // file (20 times the rows) from the first batch.
    let books: Vec<u32> = documents(books()).concat();
    let first = |cfg: &PretrainStreamConfig| unmasked(&collect(cfg, None, 1)[0].0);
    let share_of_books = |ids: &[u32]| {
        let in_books: std::collections::HashSet<&[u32]> = books.windows(8).collect();
        ids.chunks(8)
            .filter(|c| c.len() == 8 && in_books.contains(c))
            .count() as f64
            / (ids.len() / 8) as f64
    };
    assert!(share_of_books(&first(&sequential)) < 0.05);
    assert!(share_of_books(&first(&mixed)) > 0.2);
    // A position of one order is refused by the other.
    let pos = collect(&sequential, None, 1)[0].1.clone();
    let err = PretrainLoader::new(mixed, Some(pos)).err().unwrap();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn bad_shards_surface_through_the_loader() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("zz-bad.parquet");
    std::fs::write(&bad, b"not parquet").unwrap();
    let mut cfg = common::stream_config(vec![CorpusSource::new(&[
        &common::books_sample(),
        &bad.to_string_lossy(),
    ])]);
    cfg.epochs = Some(1);
    let results: Vec<_> = PretrainLoader::new(cfg.clone(), None).unwrap().collect();
    let err = results
        .last()
        .unwrap()
        .as_ref()
        .expect_err("an error at the end");
    assert!(err.to_string().contains("zz-bad.parquet"), "{err}");

    cfg.corpus.on_bad_input = berthash_data::OnBadInput::Skip;
    let mut loader = PretrainLoader::new(cfg, None).unwrap();
    let n = loader.by_ref().inspect(|b| assert!(b.is_ok())).count();
    assert!(n > 0);
    assert_eq!(loader.skipped(), (0, 1));
}
