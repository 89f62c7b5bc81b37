//! Configuration of the pre-training stream.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::corpus::CorpusConfig;
use crate::error::{DataError, Result};
use crate::mlm::MaskingConfig;
use crate::pack::PackMode;
use crate::rng::StableHasher;

/// Everything that defines the pre-training batch stream. Two loaders with the
/// same config (and the same files) produce the same batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainStreamConfig {
    pub corpus: CorpusConfig,
    /// Path of a Hugging Face `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Tokens per row.
    #[serde(default = "default_max_length")]
    pub max_length: usize,
    #[serde(default)]
    pub pack_mode: PackMode,
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Rows per shuffle window (the shuffle buffer, in sequences). Memory is about
    /// `shuffle_buffer * max_length * 2` bytes.
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
    /// `false` keeps rows in corpus order.
    #[serde(default = "default_true")]
    pub shuffle: bool,
    #[serde(default = "default_seed")]
    pub seed: u64,
    #[serde(default)]
    pub masking: MaskingConfig,
    /// Passes over the corpus; `None` loops forever (the position counts epochs).
    #[serde(default)]
    pub epochs: Option<u64>,
    /// The first `eval_documents` rows of each source's first file are held out
    /// of training and form the evaluation batches.
    #[serde(default = "default_eval_documents")]
    pub eval_documents: usize,
    /// Batches prepared ahead of the consumer.
    #[serde(default = "default_prefetch")]
    pub prefetch_batches: usize,
    /// The loader's pool, which tokenizes text and masks batches; 0 = one thread per core.
    #[serde(default)]
    pub threads: usize,
}

fn default_max_length() -> usize {
    128
}
fn default_batch_size() -> usize {
    64
}
fn default_shuffle_buffer() -> usize {
    8192
}
fn default_true() -> bool {
    true
}
fn default_seed() -> u64 {
    42
}
fn default_eval_documents() -> usize {
    20
}
fn default_prefetch() -> usize {
    4
}

impl PretrainStreamConfig {
    /// A config with the defaults of the reference recipe (128 tokens, packed,
    /// batch 64, 15% masking 80/10/10).
    pub fn new(corpus: CorpusConfig, tokenizer: impl AsRef<Path>) -> Self {
        PretrainStreamConfig {
            corpus,
            tokenizer: tokenizer.as_ref().to_path_buf(),
            max_length: default_max_length(),
            pack_mode: PackMode::default(),
            batch_size: default_batch_size(),
            shuffle_buffer: default_shuffle_buffer(),
            shuffle: true,
            seed: default_seed(),
            masking: MaskingConfig::default(),
            epochs: None,
            eval_documents: default_eval_documents(),
            prefetch_batches: default_prefetch(),
            threads: 0,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        self.corpus.validate()?;
        self.masking.validate()?;
        if self.max_length < 2 {
            return Err(DataError::config(
                "max_length",
                "must be at least 2 ([CLS] and [SEP])",
            ));
        }
        if self.batch_size == 0 {
            return Err(DataError::config("batch_size", "must be > 0"));
        }
        if self.shuffle_buffer == 0 {
            return Err(DataError::config("shuffle_buffer", "must be > 0"));
        }
        if self.prefetch_batches == 0 {
            return Err(DataError::config("prefetch_batches", "must be > 0"));
        }
        if self.epochs == Some(0) {
            return Err(DataError::config(
                "epochs",
                "must be > 0 (or absent for no limit)",
            ));
        }
        Ok(())
    }

    /// Identifies what a stream position depends on: file names, columns, weights,
    /// row shape, windows, seed, held-out documents and vocabulary. A position
    /// saved under another fingerprint is refused.
    pub(crate) fn fingerprint(&self, files: &[Arc<Vec<PathBuf>>], vocab_size: usize) -> String {
        let mut h = StableHasher::new();
        for (source, files) in self.corpus.sources.iter().zip(files) {
            h.write(source.text_column.as_bytes());
            h.write(&source.weight.to_le_bytes());
            // File names, not full paths: a run may resume with the data moved.
            for f in files.iter() {
                let name = f.file_name().unwrap_or(f.as_os_str());
                h.write(name.to_string_lossy().as_bytes());
            }
        }
        // Sequential reading adds nothing, so positions saved before the choice existed resume.
        if self.corpus.file_order == crate::corpus::FileOrder::Interleaved {
            h.write(b"file_order=interleaved");
        }
        for v in [
            self.max_length as u64,
            self.shuffle_buffer as u64,
            u64::from(self.shuffle),
            self.seed,
            self.eval_documents as u64,
            vocab_size as u64,
            self.pack_mode as u64,
        ] {
            h.write(&v.to_le_bytes());
        }
        format!("{:016x}", h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_from_toml_with_defaults_and_rejects_typos() {
        let text = r#"
            tokenizer = "data/tokenizer/bert-base-uncased/tokenizer.json"
            pack_mode = "per_document"
            epochs = 3
            [corpus]
            on_bad_input = "skip"
            [[corpus.sources]]
            paths_or_globs = ["wiki/*.parquet"]
            [[corpus.sources]]
            paths_or_globs = ["books/"]
            weight = 2.5
            [masking]
            mlm_probability = 0.2
        "#;
        let c: PretrainStreamConfig = toml::from_str(text).unwrap();
        assert_eq!(c.pack_mode, PackMode::PerDocument);
        assert_eq!(
            (c.max_length, c.batch_size, c.seed, c.epochs),
            (128, 64, 42, Some(3))
        );
        assert_eq!(c.corpus.sources[0].text_column, "text");
        assert_eq!(c.corpus.sources[1].weight, 2.5);
        assert_eq!((c.masking.mlm_probability, c.masking.mask), (0.2, 0.8));
        c.validate().unwrap();
        let back: PretrainStreamConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);

        let typo = text.replace("epochs = 3", "epoch = 3");
        assert!(toml::from_str::<PretrainStreamConfig>(&typo).is_err());
        let zero = PretrainStreamConfig { batch_size: 0, ..c };
        assert!(zero
            .validate()
            .unwrap_err()
            .to_string()
            .contains("batch_size"));
    }
}
