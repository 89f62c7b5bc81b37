//! Which tokenizer a command uses: `--tokenizer FILE`, else the model directory's
//! `tokenizer.json`, else the embedded bert-base-uncased.

use std::path::Path;

use anyhow::Context;
use berthash_data::TokenizerHandle;

use crate::assets;

pub fn load(explicit: Option<&Path>, model_dir: Option<&Path>) -> anyhow::Result<TokenizerHandle> {
    if let Some(path) = explicit {
        return TokenizerHandle::from_file(path)
            .with_context(|| format!("loading the tokenizer {}", path.display()));
    }
    if let Some(file) = model_dir
        .map(|d| d.join("tokenizer.json"))
        .filter(|f| f.is_file())
    {
        return TokenizerHandle::from_file(&file)
            .with_context(|| format!("loading the tokenizer {}", file.display()));
    }
    Ok(TokenizerHandle::from_bytes(
        assets::TOKENIZER_JSON.as_bytes(),
        "embedded bert-base-uncased tokenizer.json",
    )?)
}

/// A `tokenizer.json` on disk for code that takes a path: `--tokenizer`, the model's own, or the
/// embedded one written into `scratch`.
pub fn file(
    explicit: Option<&Path>,
    model_dir: Option<&Path>,
    scratch: &Path,
) -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(file) = model_dir
        .map(|d| d.join("tokenizer.json"))
        .filter(|f| f.is_file())
    {
        return Ok(file);
    }
    assets::write_tokenizer(&scratch.join("tokenizer"))
        .with_context(|| format!("writing the tokenizer into {}", scratch.display()))
}
