//! Every parser a user can feed survives damaged input without a panic: each seed of the
//! committed corpus (`tests/fixtures/fuzz/`, plus the shipped recipes and fixtures) is mutated a
//! few hundred times from a fixed seed (bytes flipped, cut, inserted, repeated, digits
//! replaced) and parsed; an error is fine, a panic fails the test and names the mutant.
//! `BERTHASH_FUZZ_MUTANTS=100000` searches longer.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use berthash_data::glue::{hf_parquet, tsv};
use berthash_data::rng::SplitMix64;
use berthash_data::{
    builtin_task, CorpusConfig, CorpusSource, CorpusStream, FileOrder, OnBadInput,
};
use berthash_model::inputs::InputBatch;
use berthash_model::weights::TensorFile;
use berthash_model::BertHashConfig;
use berthash_train::{FinetuneConfig, PretrainConfig};

/// Mutants per seed file: 300, or `BERTHASH_FUZZ_MUTANTS` for a longer search.
fn mutants() -> usize {
    std::env::var("BERTHASH_FUZZ_MUTANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn seed(path: &str) -> Vec<u8> {
    std::fs::read(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `n`-th mutant of `input`: one to four random edits.
fn mutate(input: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut out = input.to_vec();
    let edits = 1 + rng.next_u64() % 4;
    for _ in 0..edits {
        let len = out.len().max(1) as u64;
        let at = (rng.next_u64() % len) as usize;
        match rng.next_u64() % 6 {
            0 if !out.is_empty() => {
                let bit = 1 << (rng.next_u64() % 8);
                let i = at.min(out.len() - 1);
                out[i] ^= bit;
            }
            1 => out.truncate(at),
            2 => {
                let count = 1 + rng.next_u64() % 16;
                let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
                let at = at.min(out.len());
                out.splice(at..at, bytes);
            }
            3 if !out.is_empty() => {
                let end = (at + 1 + (rng.next_u64() % 64) as usize).min(out.len());
                let chunk = out[at.min(end)..end].to_vec();
                out.splice(end..end, chunk);
            }
            4 => {
                // A number made huge, negative or odd: where lengths, offsets and sizes live.
                if let Some(i) = out.iter().skip(at).position(u8::is_ascii_digit) {
                    let text: &[u8] = match rng.next_u64() % 4 {
                        0 => b"99999999999999999999",
                        1 => b"-1",
                        2 => b"1e308",
                        _ => b"0",
                    };
                    out.splice(at + i..at + i + 1, text.iter().copied());
                }
            }
            _ if !out.is_empty() => {
                let byte = rng.next_u64() as u8;
                let i = at.min(out.len() - 1);
                out[i] = byte;
            }
            _ => {}
        }
    }
    out
}

/// Feeds every mutant of `seed` to `parse`; a panic fails with the mutant's index.
fn fuzz(name: &str, seed: &[u8], parse: impl Fn(&[u8])) {
    let mut rng = SplitMix64(0x5eed ^ seed.len() as u64);
    parse(seed);
    for i in 0..mutants() {
        let input = mutate(seed, &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| parse(&input)));
        assert!(
            outcome.is_ok(),
            "{name}: mutant {i} panicked ({} bytes)",
            input.len()
        );
    }
}

/// Parses through a file, as users give them.
fn with_file(dir: &Path, name: &str, bytes: &[u8], parse: impl FnOnce(&Path)) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    parse(&path);
}

#[test]
fn safetensors_config_and_inputs_parsers_never_panic() {
    for file in ["base", "mlm", "cls"] {
        let weights = seed(&format!(
            "tests/fixtures/golden/tiny/{file}/model.safetensors"
        ));
        fuzz("model.safetensors", &weights, |bytes| {
            let _ = TensorFile::parse(Path::new("model.safetensors"), bytes);
        });
    }
    let config = seed("tests/fixtures/golden/tiny/mlm/config.json");
    fuzz("config.json", &config, |bytes| {
        let _ = BertHashConfig::from_json_str(&String::from_utf8_lossy(bytes));
    });
    let dir = tempfile::tempdir().unwrap();
    let model = BertHashConfig::from_json_str(std::str::from_utf8(&config).unwrap()).unwrap();
    fuzz(
        "inputs.json",
        &seed("tests/fixtures/golden/tiny/inputs.json"),
        |bytes| {
            with_file(dir.path(), "inputs.json", bytes, |path| {
                if let Ok(inputs) = InputBatch::from_file(path) {
                    let _ = inputs.validate(&model, path);
                }
            });
        },
    );
}

#[test]
fn recipe_parsers_never_panic() {
    for file in [
        "configs/pretrain/nano.toml",
        "tests/fixtures/fuzz/pretrain.toml",
    ] {
        fuzz(file, &seed(file), |bytes| {
            if let Ok(config) = toml::from_str::<PretrainConfig>(&String::from_utf8_lossy(bytes)) {
                let _ = config.resolve();
            }
        });
    }
    let file = "tests/fixtures/fuzz/finetune.toml";
    fuzz(file, &seed(file), |bytes| {
        if let Ok(config) = toml::from_str::<FinetuneConfig>(&String::from_utf8_lossy(bytes)) {
            let _ = config.resolve().and_then(|c| c.model_config());
        }
    });
    let file = "crates/berthash-data/src/glue/builtin/mnli.toml";
    fuzz(file, &seed(file), |bytes| {
        let _ = berthash_data::TaskSpec::from_toml_str(&String::from_utf8_lossy(bytes), "fuzz");
    });
}

#[test]
fn tsv_and_parquet_readers_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    for (task, file) in [
        ("sst2", "tests/fixtures/fuzz/sst2-dev.tsv"),
        ("mrpc", "tests/fixtures/fuzz/mrpc-dev.tsv"),
        ("stsb", "tests/fixtures/fuzz/stsb-dev.tsv"),
    ] {
        let spec = builtin_task(task).unwrap();
        fuzz(file, &seed(file), |bytes| {
            with_file(dir.path(), "dev.tsv", bytes, |path| {
                let _ = tsv::read_tsv(&spec, path, OnBadInput::Error);
                let _ = tsv::read_tsv(&spec, path, OnBadInput::Skip);
            });
        });
    }
    let spec = builtin_task("sst2").unwrap();
    let file = "tests/fixtures/fuzz/sst2-validation.parquet";
    fuzz(file, &seed(file), |bytes| {
        with_file(dir.path(), "validation.parquet", bytes, |path| {
            let _ = hf_parquet::read_parquet(&spec, path, OnBadInput::Error);
            let _ = hf_parquet::read_parquet(&spec, path, OnBadInput::Skip);
        });
    });
    let file = "tests/fixtures/fuzz/corpus.parquet";
    fuzz(file, &seed(file), |bytes| {
        with_file(dir.path(), "corpus.parquet", bytes, |path| {
            let orders = [FileOrder::Sequential, FileOrder::Interleaved];
            for (on_bad_input, file_order) in [OnBadInput::Error, OnBadInput::Skip]
                .into_iter()
                .flat_map(|bad| orders.map(|order| (bad, order)))
            {
                let config = CorpusConfig {
                    on_bad_input,
                    file_order,
                    ..CorpusConfig::new(vec![CorpusSource::new(&[&path.to_string_lossy()])])
                };
                // Interleaved reading opens the footer to weigh the file: a parser too.
                let Ok(lanes) = config.resolve().and_then(|files| config.lanes(&files)) else {
                    continue;
                };
                let stream =
                    CorpusStream::new(&config, &lanes, &[Default::default()], Default::default());
                for doc in stream {
                    if doc.is_err() {
                        break;
                    }
                }
            }
        });
    });
}
