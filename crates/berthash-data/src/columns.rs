//! Named columns of a table file, by its extension: `.tsv` with a header row (GLUE's conventions:
//! tab-separated, no quoting, an optional byte-order mark), `.parquet` (text or numeric
//! columns), `.jsonl` (one object a line; strings and numbers). Each row keeps its place in the
//! file (`line N`, or `row N` of a parquet file, 1-based) for error messages.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::error::{DataError, Result};
use crate::glue::hf_parquet::{raw_label, RawLabel};
use crate::parquet_guard::next_batch;

/// The cells of the asked-for columns, row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub path: PathBuf,
    /// Where each row is (`line 3`, `row 3`), and its cells in the order the columns were asked.
    pub rows: Vec<(String, Vec<String>)>,
}

/// Reads `columns` of the `.tsv`, `.parquet` or `.jsonl` file `path`. A column the file lacks is
/// an error listing the ones it has; so is a missing or null cell, naming its row.
pub fn read_columns(path: &Path, columns: &[&str]) -> Result<Table> {
    let rows = match path.extension().and_then(|e| e.to_str()) {
        Some("tsv") => read_tsv(path, columns)?,
        Some("parquet") => read_parquet(path, columns)?,
        Some("jsonl") => read_jsonl(path, columns)?,
        _ => {
            return Err(DataError::Format {
                path: path.to_path_buf(),
                message: "unknown table format: name it .tsv, .parquet or .jsonl".into(),
            })
        }
    };
    Ok(Table {
        path: path.to_path_buf(),
        rows,
    })
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| DataError::reading(path, e))
}

fn read_tsv(path: &Path, columns: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
    let text = read_text(path)?;
    let mut lines = text.trim_start_matches('\u{feff}').lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let indices = columns
        .iter()
        .map(|c| {
            header
                .iter()
                .position(|h| h == c)
                .ok_or_else(|| DataError::MissingColumn {
                    path: path.to_path_buf(),
                    column: c.to_string(),
                    available: header.iter().map(|h| h.to_string()).collect(),
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != header.len() {
            return Err(DataError::FieldCount {
                path: path.to_path_buf(),
                line: i + 2,
                expected: header.len(),
                found: fields.len(),
            });
        }
        let cells = indices.iter().map(|&k| fields[k].to_string()).collect();
        rows.push((format!("line {}", i + 2), cells));
    }
    Ok(rows)
}

fn read_jsonl(path: &Path, columns: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
    let text = read_text(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = format!("line {}", i + 1);
        let bad = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message: format!("{place}: {message}"),
        };
        let record: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON ({e})")))?;
        let cells = columns
            .iter()
            .map(|c| match record.get(c) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(other) => Err(bad(format!("`{c}` is {other}, not a string or number"))),
                None => Err(bad(format!("no `{c}` field"))),
            })
            .collect::<Result<Vec<_>>>()?;
        rows.push((place, cells));
    }
    Ok(rows)
}

fn read_parquet(path: &Path, columns: &[&str]) -> Result<Vec<(String, Vec<String>)>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::reading(path, e))?;
    let parquet_error = |message: String| DataError::Parquet {
        path: path.to_path_buf(),
        row_group: None,
        message,
    };
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(e.to_string()))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::new();
    for c in columns {
        let Some((index, _)) = schema.column_with_name(c) else {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                column: c.to_string(),
                available: schema.fields().iter().map(|f| f.name().clone()).collect(),
            });
        };
        roots.push(index);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| parquet_error(e.to_string()))?;
    let mut rows = Vec::new();
    while let Some(batch) = next_batch(&mut reader) {
        let batch: RecordBatch = batch.map_err(parquet_error)?;
        for i in 0..batch.num_rows() {
            let place = format!("row {}", rows.len() + 1);
            let cells = columns
                .iter()
                .map(|c| {
                    let array = batch.column_by_name(c).expect("projected column");
                    match raw_label(array, i) {
                        Some(RawLabel::Text(s)) => Ok(s),
                        Some(RawLabel::Int(v)) => Ok(v.to_string()),
                        Some(RawLabel::Float(v)) => Ok(v.to_string()),
                        None => Err(DataError::Format {
                            path: path.to_path_buf(),
                            message: format!("{place}: `{c}` is null or not text or a number"),
                        }),
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            rows.push((place, cells));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(table: &Table) -> Vec<Vec<&str>> {
        table
            .rows
            .iter()
            .map(|(_, c)| c.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn tsv_and_jsonl_give_the_same_rows() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        std::fs::write(
            &tsv,
            "\u{feff}id\ta\tb\tscore\n1\tx \"y\"\tz\t4.5\n2\tp\tq\t0\n",
        )
        .unwrap();
        let jsonl = dir.path().join("pairs.jsonl");
        std::fs::write(
            &jsonl,
            "{\"a\": \"x \\\"y\\\"\", \"b\": \"z\", \"score\": 4.5}\n\n{\"a\": \"p\", \"b\": \"q\", \"score\": 0}\n",
        )
        .unwrap();
        let from_tsv = read_columns(&tsv, &["a", "b", "score"]).unwrap();
        let from_jsonl = read_columns(&jsonl, &["a", "b", "score"]).unwrap();
        assert_eq!(cells(&from_tsv), cells(&from_jsonl));
        assert_eq!(cells(&from_tsv)[0], ["x \"y\"", "z", "4.5"]);
        assert_eq!(from_tsv.rows[1].0, "line 3");
        assert_eq!(from_jsonl.rows[1].0, "line 3");
    }

    #[test]
    fn errors_name_the_file_the_column_and_the_row() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = dir.path().join("pairs.tsv");
        std::fs::write(&tsv, "a\tb\nx\ty\nonly-one\n").unwrap();
        let err = read_columns(&tsv, &["a", "label"]).unwrap_err().to_string();
        assert!(
            err.contains("pairs.tsv") && err.contains("label") && err.contains("a, b"),
            "{err}"
        );
        let err = read_columns(&tsv, &["a"]).unwrap_err().to_string();
        assert!(err.contains("pairs.tsv:3"), "{err}");
        let jsonl = dir.path().join("pairs.jsonl");
        std::fs::write(&jsonl, "{\"a\": \"x\"}\n{\"a\": null}\n").unwrap();
        let err = read_columns(&jsonl, &["a"]).unwrap_err().to_string();
        assert!(
            err.contains("pairs.jsonl") && err.contains("line 2") && err.contains("`a`"),
            "{err}"
        );
        let err = read_columns(&dir.path().join("pairs.csv"), &["a"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pairs.csv") && err.contains(".tsv, .parquet or .jsonl"),
            "{err}"
        );
    }
}
