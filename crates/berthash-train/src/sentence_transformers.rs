//! The files that make a Hugging Face model directory a sentence-transformers model, as
//! `SentenceTransformer(dir, trust_remote_code=True)` reads them: `modules.json` (Transformer,
//! then Pooling, then Normalize when embeddings are normalised), `1_Pooling/config.json`,
//! `sentence_bert_config.json` (`max_seq_length`, the remote-code argument) and
//! `config_sentence_transformers.json` (cosine similarity). `embed` reads them back for its
//! defaults, so a directory embeds the same way in both libraries.

use std::path::Path;

use berthash_model::fs::write_atomic;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::embed::{check_max_seq_length, default_max_seq_length, Pooling};
use crate::error::{Result, TrainError};

pub const MODULES: &str = "modules.json";
pub const POOLING_DIR: &str = "1_Pooling";
pub const NORMALIZE_DIR: &str = "2_Normalize";
pub const SENTENCE_BERT_CONFIG: &str = "sentence_bert_config.json";
pub const CONFIG_SENTENCE_TRANSFORMERS: &str = "config_sentence_transformers.json";

/// How a sentence-transformers directory turns token vectors into a sentence embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentenceConfig {
    pub pooling: Pooling,
    pub normalize: bool,
    /// Longer texts are truncated to this many tokens, special tokens included.
    pub max_seq_length: usize,
}

impl SentenceConfig {
    /// The settings a model directory embeds with: each given flag, else the directory's own
    /// sentence-transformers files, else the defaults (mean pooling, not normalised, 128 tokens
    /// or the model's positions when fewer). Refuses a length beyond the model's positions.
    pub fn resolve(
        dir: &Path,
        pooling: Option<Pooling>,
        normalize: bool,
        max_seq_length: Option<usize>,
    ) -> Result<Self> {
        let model = berthash_model::read_config(dir)?;
        let own = read(dir)?;
        let positions = model.max_position_embeddings;
        let config = Self {
            pooling: pooling.or(own.map(|c| c.pooling)).unwrap_or_default(),
            normalize: normalize || own.is_some_and(|c| c.normalize),
            max_seq_length: max_seq_length
                .or(own.map(|c| c.max_seq_length))
                .unwrap_or(default_max_seq_length(&model)),
        };
        check_max_seq_length(dir, config.max_seq_length, positions)?;
        Ok(config)
    }
}

/// One entry of `modules.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Module {
    idx: usize,
    name: String,
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `1_Pooling/config.json`: one flag per pooling mode.
#[derive(Debug, Serialize, Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: usize,
    pooling_mode_cls_token: bool,
    pooling_mode_mean_tokens: bool,
    pooling_mode_max_tokens: bool,
    pooling_mode_mean_sqrt_len_tokens: bool,
    pooling_mode_weightedmean_tokens: bool,
    pooling_mode_lasttoken: bool,
    include_prompt: bool,
}

const TRANSFORMER: &str = "sentence_transformers.models.Transformer";
const POOLING: &str = "sentence_transformers.models.Pooling";
const NORMALIZE: &str = "sentence_transformers.models.Normalize";

/// Writes the sentence-transformers files into the model directory `dir`, whose encoder has
/// `hidden_size` outputs and `pooler` weights or none.
pub fn write(dir: &Path, hidden_size: usize, pooler: bool, config: &SentenceConfig) -> Result<()> {
    let mut modules = vec![
        Module {
            idx: 0,
            name: "0".into(),
            path: String::new(),
            kind: TRANSFORMER.into(),
        },
        Module {
            idx: 1,
            name: "1".into(),
            path: POOLING_DIR.into(),
            kind: POOLING.into(),
        },
    ];
    if config.normalize {
        modules.push(Module {
            idx: 2,
            name: "2".into(),
            path: NORMALIZE_DIR.into(),
            kind: NORMALIZE.into(),
        });
        std::fs::create_dir_all(dir.join(NORMALIZE_DIR))
            .map_err(|e| TrainError::io(dir.join(NORMALIZE_DIR), e))?;
    }
    let pooling = PoolingConfig {
        word_embedding_dimension: hidden_size,
        pooling_mode_cls_token: config.pooling == Pooling::Cls,
        pooling_mode_mean_tokens: config.pooling == Pooling::Mean,
        pooling_mode_max_tokens: config.pooling == Pooling::Max,
        pooling_mode_mean_sqrt_len_tokens: false,
        pooling_mode_weightedmean_tokens: false,
        pooling_mode_lasttoken: false,
        include_prompt: true,
    };
    std::fs::create_dir_all(dir.join(POOLING_DIR))
        .map_err(|e| TrainError::io(dir.join(POOLING_DIR), e))?;
    write_json(&dir.join(MODULES), &modules)?;
    write_json(&dir.join(POOLING_DIR).join("config.json"), &pooling)?;
    // sentence-transformers passes `model_args` to `AutoModel.from_pretrained`; our encoder is
    // remote code, so it needs `trust_remote_code` (which the caller must also allow), and
    // without pooler weights it is built without a pooler (pooling happens in module 1).
    let mut model_args = json!({ "trust_remote_code": true });
    if !pooler {
        model_args["add_pooling_layer"] = json!(false);
    }
    write_json(
        &dir.join(SENTENCE_BERT_CONFIG),
        &json!({
            "max_seq_length": config.max_seq_length,
            "do_lower_case": false,
            "model_args": model_args,
            "tokenizer_args": { "trust_remote_code": true },
            "config_args": { "trust_remote_code": true },
        }),
    )?;
    write_json(
        &dir.join(CONFIG_SENTENCE_TRANSFORMERS),
        &json!({
            "model_type": "SentenceTransformer",
            "prompts": {},
            "default_prompt_name": null,
            "similarity_fn_name": "cosine",
        }),
    )
}

/// The sentence-transformers configuration of `dir`, or `None` when it has no `modules.json`.
/// Refuses pipelines berthash cannot run (modules other than Transformer, Pooling, Normalize;
/// pooling modes other than mean, cls and max).
pub fn read(dir: &Path) -> Result<Option<SentenceConfig>> {
    let modules_path = dir.join(MODULES);
    if !modules_path.is_file() {
        return Ok(None);
    }
    let modules: Vec<Module> = read_json(&modules_path)?;
    let format = |path: &Path, message: String| TrainError::Format {
        path: path.to_path_buf(),
        message,
    };
    let mut pooling = None;
    let mut normalize = false;
    for module in &modules {
        match module.kind.as_str() {
            TRANSFORMER => {}
            POOLING => {
                let path = dir.join(&module.path).join("config.json");
                let config: PoolingConfig = read_json(&path)?;
                pooling = Some(
                    match (
                        config.pooling_mode_mean_tokens,
                        config.pooling_mode_cls_token,
                        config.pooling_mode_max_tokens,
                        config.pooling_mode_mean_sqrt_len_tokens
                            || config.pooling_mode_weightedmean_tokens
                            || config.pooling_mode_lasttoken,
                    ) {
                        (true, false, false, false) => Pooling::Mean,
                        (false, true, false, false) => Pooling::Cls,
                        (false, false, true, false) => Pooling::Max,
                        _ => {
                            return Err(format(
                                &path,
                                "berthash pools with exactly one of mean, cls or max tokens".into(),
                            ))
                        }
                    },
                );
            }
            NORMALIZE => normalize = true,
            other => {
                return Err(format(
                    &modules_path,
                    format!("module {} is a {other}: berthash runs Transformer, Pooling and Normalize modules only", module.name),
                ))
            }
        }
    }
    let pooling = pooling.ok_or_else(|| format(&modules_path, "no Pooling module".into()))?;
    let sbert_path = dir.join(SENTENCE_BERT_CONFIG);
    let sbert: serde_json::Value = read_json(&sbert_path)?;
    let max_seq_length = sbert["max_seq_length"].as_u64().ok_or_else(|| {
        format(
            &sbert_path,
            "`max_seq_length` is missing or not a whole number".into(),
        )
    })? as usize;
    Ok(Some(SentenceConfig {
        pooling,
        normalize,
        max_seq_length,
    }))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).expect("plain data serialises");
    text.push('\n');
    Ok(write_atomic(path, text.as_bytes())?)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_config_reads_back() {
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max] {
            for normalize in [false, true] {
                let dir = tempfile::tempdir().unwrap();
                let config = SentenceConfig {
                    pooling,
                    normalize,
                    max_seq_length: 96,
                };
                write(dir.path(), 64, false, &config).unwrap();
                assert_eq!(read(dir.path()).unwrap(), Some(config));
                assert_eq!(dir.path().join(NORMALIZE_DIR).is_dir(), normalize);
            }
        }
    }

    #[test]
    fn a_plain_model_dir_has_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
    }

    #[test]
    fn unknown_modules_and_pooling_modes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = SentenceConfig {
            pooling: Pooling::Mean,
            normalize: false,
            max_seq_length: 128,
        };
        write(dir.path(), 64, false, &config).unwrap();
        let pooling = dir.path().join(POOLING_DIR).join("config.json");
        let text = std::fs::read_to_string(&pooling).unwrap();
        std::fs::write(
            &pooling,
            text.replace(
                "\"pooling_mode_lasttoken\": false",
                "\"pooling_mode_lasttoken\": true",
            ),
        )
        .unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("1_Pooling/config.json"), "{err}");
        std::fs::write(
            dir.path().join(MODULES),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Dense"}]"#,
        )
        .unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("Dense") && err.contains("modules.json"),
            "{err}"
        );
    }
}
