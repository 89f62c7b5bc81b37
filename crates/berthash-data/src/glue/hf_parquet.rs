//! The Hugging Face parquet export of GLUE (`glue/<task>/<split>-*.parquet`):
//! named text columns and an integer `label` (a `ClassLabel`; `-1` in unlabelled
//! test splits) or a float one (STS-B).

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::arrow_text::{is_text_type, text_value};
use crate::corpus::open_parquet;
use crate::error::{DataError, OnBadInput, Result};
use crate::glue::task::{GlueExample, Label, LabelSpec, ParquetLayout, TaskSpec};
use crate::glue::tsv::parse_label;
use crate::parquet_guard::next_batch;

/// A label cell before it is mapped to the task's labels.
pub(crate) enum RawLabel {
    Int(i64),
    Float(f64),
    Text(String),
}

pub(crate) fn raw_label(array: &ArrayRef, i: usize) -> Option<RawLabel> {
    if array.is_null(i) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int8 => RawLabel::Int(array.as_primitive::<Int8Type>().value(i).into()),
        DataType::Int16 => RawLabel::Int(array.as_primitive::<Int16Type>().value(i).into()),
        DataType::Int32 => RawLabel::Int(array.as_primitive::<Int32Type>().value(i).into()),
        DataType::Int64 => RawLabel::Int(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => RawLabel::Int(array.as_primitive::<UInt8Type>().value(i).into()),
        DataType::UInt16 => RawLabel::Int(array.as_primitive::<UInt16Type>().value(i).into()),
        DataType::UInt32 => RawLabel::Int(array.as_primitive::<UInt32Type>().value(i).into()),
        DataType::UInt64 => RawLabel::Int(
            i64::try_from(array.as_primitive::<UInt64Type>().value(i)).unwrap_or(i64::MAX),
        ),
        DataType::Float32 => RawLabel::Float(array.as_primitive::<Float32Type>().value(i).into()),
        DataType::Float64 => RawLabel::Float(array.as_primitive::<Float64Type>().value(i)),
        _ => RawLabel::Text(text_value(array, i)?.to_string()),
    })
}

fn is_label_type(dt: &DataType) -> bool {
    dt.is_integer() || dt.is_floating() || is_text_type(dt)
}

/// Maps a raw label onto the task's labels; `None` for "no label" (negative integers).
fn map_label(
    spec: &TaskSpec,
    layout: &ParquetLayout,
    raw: RawLabel,
    path: &Path,
    place: &str,
) -> Result<Option<Label>> {
    let unknown = |label: String| {
        let known = match &spec.labels {
            LabelSpec::Classes(c) => c.clone(),
            LabelSpec::Regression => vec!["a number".to_string()],
        };
        DataError::UnknownLabel {
            path: path.to_path_buf(),
            place: place.to_string(),
            label,
            known,
        }
    };
    match (&spec.labels, raw) {
        (LabelSpec::Regression, RawLabel::Float(v)) => Ok(Some(Label::Score(v as f32))),
        (LabelSpec::Regression, RawLabel::Int(v)) => Ok(Some(Label::Score(v as f32))),
        (_, RawLabel::Text(t)) => parse_label(&spec.labels, &t, path, place).map(Some),
        (LabelSpec::Classes(_), RawLabel::Int(v)) if v < 0 => Ok(None),
        (LabelSpec::Classes(classes), RawLabel::Int(v)) => {
            let index = usize::try_from(v).map_err(|_| unknown(v.to_string()))?;
            match &layout.label_names {
                Some(names) => names
                    .get(index)
                    .and_then(|n| classes.iter().position(|c| c == n))
                    .map(|c| Some(Label::Class(c)))
                    .ok_or_else(|| unknown(v.to_string())),
                None if index < classes.len() => Ok(Some(Label::Class(index))),
                None => Err(unknown(v.to_string())),
            }
        }
        (LabelSpec::Classes(_), RawLabel::Float(v)) => Err(unknown(v.to_string())),
    }
}

/// Reads one parquet export file. Returns the examples and the number of
/// skipped rows (non-zero only with [`OnBadInput::Skip`]).
pub fn read_parquet(
    spec: &TaskSpec,
    path: &Path,
    on_bad_row: OnBadInput,
) -> Result<(Vec<GlueExample>, usize)> {
    let Some(layout) = spec.parquet.as_ref() else {
        return Err(DataError::TaskSpec {
            path: spec.name.clone(),
            message: format!("no [parquet] layout, cannot read {}", path.display()),
        });
    };
    let (builder, _) = open_parquet(path, &layout.text_a)?;
    let schema = builder.schema().clone();
    let mut wanted = vec![layout.text_a.as_str(), layout.label.as_str()];
    wanted.extend(layout.text_b.as_deref());
    let mut roots = Vec::new();
    for name in &wanted {
        let Some((index, field)) = schema.column_with_name(name) else {
            return Err(DataError::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                available: schema.fields().iter().map(|f| f.name().clone()).collect(),
            });
        };
        let ok = if *name == layout.label {
            is_label_type(field.data_type())
        } else {
            is_text_type(field.data_type())
        };
        if !ok {
            return Err(DataError::ColumnType {
                path: path.to_path_buf(),
                column: name.to_string(),
                found: field.data_type().to_string(),
                expected: if *name == layout.label {
                    "integer, float or string"
                } else {
                    "string"
                }
                .to_string(),
            });
        }
        roots.push(index);
    }
    let rg_rows: Vec<usize> = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|rg| usize::try_from(rg.num_rows()).unwrap_or(0))
        .collect();
    if rg_rows.iter().sum::<usize>() == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "parquet file has no rows".to_string(),
        });
    }
    let mut reader = read_all(builder, roots, path)?;

    let mut examples = Vec::new();
    let mut skipped = 0;
    let mut row = 0usize;
    while let Some(batch) = next_batch(&mut reader) {
        let rg = row_group_of(&rg_rows, row);
        let batch = batch.map_err(|message| DataError::Parquet {
            path: path.to_path_buf(),
            row_group: Some(rg),
            message,
        })?;
        let col = |name: &str| batch_column(&batch, name);
        let (a, label) = (col(&layout.text_a), col(&layout.label));
        let b = layout.text_b.as_deref().map(col);
        for i in 0..batch.num_rows() {
            let r = row + i;
            match example_at(spec, layout, path, (&a, b.as_ref(), &label), i, r, &rg_rows) {
                Ok(ex) => examples.push(ex),
                Err(e) if on_bad_row == OnBadInput::Skip => {
                    tracing::warn!("skipping row: {e}");
                    skipped += 1;
                }
                Err(e) => return Err(e),
            }
        }
        row += batch.num_rows();
    }
    Ok((examples, skipped))
}

fn read_all(
    builder: ParquetRecordBatchReaderBuilder<std::fs::File>,
    roots: Vec<usize>,
    path: &Path,
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_projection(mask)
        .build()
        .map_err(|e| DataError::Parquet {
            path: path.to_path_buf(),
            row_group: None,
            message: e.to_string(),
        })
}

fn batch_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    batch.column_by_name(name).cloned()
}

fn row_group_of(rg_rows: &[usize], row: usize) -> usize {
    let mut left = row;
    for (i, &n) in rg_rows.iter().enumerate() {
        if left < n {
            return i;
        }
        left -= n;
    }
    rg_rows.len().saturating_sub(1)
}

type Columns<'a> = (
    &'a Option<ArrayRef>,
    Option<&'a Option<ArrayRef>>,
    &'a Option<ArrayRef>,
);

fn example_at(
    spec: &TaskSpec,
    layout: &ParquetLayout,
    path: &Path,
    (a, b, label): Columns<'_>,
    i: usize,
    row: usize,
    rg_rows: &[usize],
) -> Result<GlueExample> {
    let null = |column: &str| DataError::NullValue {
        path: path.to_path_buf(),
        row_group: row_group_of(rg_rows, row),
        row,
        column: column.to_string(),
    };
    let text = |array: &Option<ArrayRef>, column: &str| {
        array
            .as_ref()
            .and_then(|arr| text_value(arr, i))
            .map(str::to_string)
            .ok_or_else(|| null(column))
    };
    let text_a = text(a, &layout.text_a)?;
    let text_b = match (b, layout.text_b.as_deref()) {
        (Some(arr), Some(name)) => Some(text(arr, name)?),
        _ => None,
    };
    let raw = label
        .as_ref()
        .and_then(|arr| raw_label(arr, i))
        .ok_or_else(|| null(&layout.label))?;
    let label = map_label(spec, layout, raw, path, &format!("row {row}"))?;
    Ok(GlueExample {
        text_a,
        text_b,
        label,
    })
}
