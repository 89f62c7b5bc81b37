//! Files compiled into the binary so it works from any directory: our transformers remote code
//! and the default tokenizer (bert-base-uncased, Apache-2.0; see data/tokenizer/…/SOURCES.md).

use berthash_data::tokenize::TOKENIZER_FILES;

/// Our transformers remote code, shipped in every exported model directory.
pub const REMOTE_CODE: [(&str, &str); 2] = [
    (
        "configuration_bert_hash.py",
        include_str!("../../../python/configuration_bert_hash.py"),
    ),
    (
        "modeling_bert_hash.py",
        include_str!("../../../python/modeling_bert_hash.py"),
    ),
];

pub const TOKENIZER_JSON: &str =
    include_str!("../../../data/tokenizer/bert-base-uncased/tokenizer.json");
pub const VOCAB_TXT: &str = include_str!("../../../data/tokenizer/bert-base-uncased/vocab.txt");

/// What transformers' `AutoTokenizer` needs beside `tokenizer.json` to build a BERT tokenizer.
pub const TOKENIZER_CONFIG_JSON: &str = r#"{
  "clean_up_tokenization_spaces": true,
  "cls_token": "[CLS]",
  "do_lower_case": true,
  "mask_token": "[MASK]",
  "model_max_length": 512,
  "pad_token": "[PAD]",
  "sep_token": "[SEP]",
  "strip_accents": null,
  "tokenize_chinese_chars": true,
  "tokenizer_class": "BertTokenizer",
  "unk_token": "[UNK]"
}
"#;

pub const SPECIAL_TOKENS_MAP_JSON: &str = r#"{
  "cls_token": "[CLS]",
  "mask_token": "[MASK]",
  "pad_token": "[PAD]",
  "sep_token": "[SEP]",
  "unk_token": "[UNK]"
}
"#;

/// The default tokenizer's files, by name.
pub const TOKENIZER: [(&str, &str); 4] = [
    (TOKENIZER_FILES[0], TOKENIZER_JSON),
    (TOKENIZER_FILES[1], VOCAB_TXT),
    (TOKENIZER_FILES[2], TOKENIZER_CONFIG_JSON),
    (TOKENIZER_FILES[3], SPECIAL_TOKENS_MAP_JSON),
];

/// The default pre-training corpus (a 680 KB cut of Wikipedia and BookCorpus; provenance and
/// licences in data/sample/SOURCES.md), so `berthash pretrain` runs with no data of its own.
pub const SAMPLE_CORPUS: [(&str, &[u8]); 2] = [
    (
        "wikipedia/train-00000-of-00001.parquet",
        include_bytes!("../../../data/sample/wikipedia/train-00000-of-00001.parquet"),
    ),
    (
        "books/train-00000-of-00001.parquet",
        include_bytes!("../../../data/sample/books/train-00000-of-00001.parquet"),
    ),
];
pub const SAMPLE_SOURCES_MD: &str = include_str!("../../../data/sample/SOURCES.md");

/// The recipes in configs/pretrain, one per preset.
pub fn pretrain_recipe(size: &str) -> Option<&'static str> {
    match size {
        "femto" => Some(include_str!("../../../configs/pretrain/femto.toml")),
        "pico" => Some(include_str!("../../../configs/pretrain/pico.toml")),
        "nano" => Some(include_str!("../../../configs/pretrain/nano.toml")),
        _ => None,
    }
}

/// Writes the embedded tokenizer files into `dir` (returns the tokenizer.json path).
pub fn write_tokenizer(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in TOKENIZER {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir.join(TOKENIZER_FILES[0]))
}

/// Writes the embedded sample corpus into `dir` (returns the folder to read).
pub fn write_sample_corpus(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    for (name, bytes) in SAMPLE_CORPUS {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        std::fs::write(path, bytes)?;
    }
    std::fs::write(dir.join("SOURCES.md"), SAMPLE_SOURCES_MD)?;
    Ok(dir.to_path_buf())
}
