//! Files compiled into the binary so it works from any directory: our transformers remote code
//! and the default tokenizer (bert-base-uncased, Apache-2.0; see data/tokenizer/…/SOURCES.md).

pub const CONFIGURATION_PY: &str = include_str!("../../../python/configuration_bert_hash.py");
pub const MODELING_PY: &str = include_str!("../../../python/modeling_bert_hash.py");

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
