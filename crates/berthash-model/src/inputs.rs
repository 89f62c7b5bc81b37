//! Model inputs as JSON (`{"input_ids": [[…]], "attention_mask": [[…]], "token_type_ids": [[…]]}`,
//! the golden `inputs.json` format), checked against a config before they reach the model, so a
//! bad id is an error naming the row and column rather than an out-of-bounds panic.

use std::path::Path;

use burn::prelude::*;
use serde::Deserialize;

use crate::config::BertHashConfig;
use crate::error::ModelError;
use crate::model::BertInput;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputBatch {
    pub input_ids: Vec<Vec<i64>>,
    #[serde(default)]
    pub attention_mask: Option<Vec<Vec<i64>>>,
    #[serde(default)]
    pub token_type_ids: Option<Vec<Vec<i64>>>,
}

impl InputBatch {
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ModelError::Io {
            path: path.to_path_buf(),
            cause,
        })?;
        serde_json::from_str(&text).map_err(|e| ModelError::Json {
            path: Some(path.to_path_buf()),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    pub fn batch_size(&self) -> usize {
        self.input_ids.len()
    }

    pub fn seq_len(&self) -> usize {
        self.input_ids.first().map_or(0, Vec::len)
    }

    /// Checks shapes and value ranges against `config`; `path` names the file in errors.
    pub fn validate(&self, config: &BertHashConfig, path: &Path) -> Result<(), ModelError> {
        let fail = |message: String| {
            Err(ModelError::Inputs {
                path: path.to_path_buf(),
                message,
            })
        };
        let (batch, seq) = (self.batch_size(), self.seq_len());
        if batch == 0 || seq == 0 {
            return fail("`input_ids` is empty".into());
        }
        if seq > config.max_position_embeddings {
            return fail(format!(
                "sequences of {seq} tokens exceed max_position_embeddings {}",
                config.max_position_embeddings
            ));
        }
        let fields = [
            ("input_ids", Some(&self.input_ids), config.vocab_size as i64),
            ("attention_mask", self.attention_mask.as_ref(), 2),
            (
                "token_type_ids",
                self.token_type_ids.as_ref(),
                config.type_vocab_size as i64,
            ),
        ];
        for (field, rows, limit) in fields {
            let Some(rows) = rows else { continue };
            if rows.len() != batch {
                return fail(format!(
                    "`{field}` has {} rows, `input_ids` has {batch}",
                    rows.len()
                ));
            }
            for (r, row) in rows.iter().enumerate() {
                if row.len() != seq {
                    return fail(format!(
                        "`{field}` row {r} has {} values, expected {seq} (all rows must be padded to one length)",
                        row.len()
                    ));
                }
                if let Some((c, v)) = row
                    .iter()
                    .enumerate()
                    .find(|(_, v)| !(0..limit).contains(*v))
                {
                    return fail(format!(
                        "`{field}` row {r}, column {c}: {v} is outside 0..{limit}"
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn to_input<B: Backend>(&self, device: &B::Device) -> BertInput<B> {
        let (batch, seq) = (self.batch_size(), self.seq_len());
        let tensor = |rows: &Vec<Vec<i64>>| {
            let flat: Vec<i64> = rows.iter().flatten().copied().collect();
            Tensor::<B, 2, Int>::from_data(TensorData::new(flat, [batch, seq]), device)
        };
        BertInput {
            input_ids: tensor(&self.input_ids),
            token_type_ids: self.token_type_ids.as_ref().map(tensor),
            attention_mask: self.attention_mask.as_ref().map(tensor),
        }
    }
}
