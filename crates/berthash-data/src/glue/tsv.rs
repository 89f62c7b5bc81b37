//! The original GLUE tsv layout: tab-separated, no quoting (quotes are literal
//! text), an optional UTF-8 byte-order mark, `\n` or `\r\n` line ends.

use std::path::Path;

use crate::error::{DataError, OnBadInput, Result};
use crate::glue::task::{Column, GlueExample, Label, LabelSpec, TaskSpec};

/// Resolves a column to a field index, given the header (if any) and the row width.
fn resolve(
    column: &Column,
    header: Option<&[&str]>,
    width: usize,
    path: &Path,
    line: usize,
) -> Result<usize> {
    let found = match column {
        Column::Index(i) if *i >= 0 => usize::try_from(*i).ok().filter(|&i| i < width),
        Column::Index(i) => width.checked_sub(i.unsigned_abs() as usize),
        Column::Name(name) => header.and_then(|h| h.iter().position(|f| f == name)),
    };
    found.ok_or_else(|| DataError::NoSuchField {
        path: path.to_path_buf(),
        line,
        column: column.to_string(),
        fields: width,
    })
}

/// Column indices of one file.
struct Fields {
    text_a: usize,
    text_b: Option<usize>,
    label: Option<usize>,
    width: usize,
}

/// Parses a label field.
pub(crate) fn parse_label(
    labels: &LabelSpec,
    value: &str,
    path: &Path,
    place: &str,
) -> Result<Label> {
    match labels {
        LabelSpec::Classes(classes) => classes
            .iter()
            .position(|c| c == value)
            .map(Label::Class)
            .ok_or_else(|| DataError::UnknownLabel {
                path: path.to_path_buf(),
                place: place.to_string(),
                label: value.to_string(),
                known: classes.clone(),
            }),
        LabelSpec::Regression => value
            .trim()
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Label::Score)
            .ok_or_else(|| DataError::BadScore {
                path: path.to_path_buf(),
                place: place.to_string(),
                value: value.to_string(),
            }),
    }
}

/// Reads one tsv file. Returns the examples and the number of skipped rows
/// (non-zero only with [`OnBadInput::Skip`]).
pub fn read_tsv(
    spec: &TaskSpec,
    path: &Path,
    on_bad_row: OnBadInput,
) -> Result<(Vec<GlueExample>, usize)> {
    let bytes = std::fs::read(path).map_err(|e| DataError::reading(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        DataError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {line}: not UTF-8"),
            ),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if text.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "no lines".to_string(),
        });
    }
    // A final line end does not start another row.
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .peekable();

    let layout = &spec.tsv;
    let header: Option<Vec<&str>> = if layout.has_header {
        lines.next().map(|(_, l)| l.split('\t').collect())
    } else {
        None
    };
    let first_line = if layout.has_header { 2 } else { 1 };
    let width = match (layout.num_fields, &header) {
        (Some(n), _) => n,
        (None, Some(h)) => h.len(),
        (None, None) => match lines.peek() {
            Some((_, l)) => l.split('\t').count(),
            None => 0,
        },
    };
    let fields = {
        let h = header.as_deref();
        Fields {
            text_a: resolve(&layout.text_a, h, width, path, first_line)?,
            text_b: layout
                .text_b
                .as_ref()
                .map(|c| resolve(c, h, width, path, first_line))
                .transpose()?,
            label: layout
                .label
                .as_ref()
                .map(|c| resolve(c, h, width, path, first_line))
                .transpose()?,
            width,
        }
    };

    let mut examples = Vec::new();
    let mut skipped = 0;
    for (line, content) in lines {
        match parse_row(spec, &fields, content, path, line) {
            Ok(ex) => examples.push(ex),
            Err(e) if on_bad_row == OnBadInput::Skip => {
                tracing::warn!("skipping row: {e}");
                skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if examples.is_empty() && skipped == 0 {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "no data rows".to_string(),
        });
    }
    Ok((examples, skipped))
}

fn parse_row(
    spec: &TaskSpec,
    f: &Fields,
    content: &str,
    path: &Path,
    line: usize,
) -> Result<GlueExample> {
    let row: Vec<&str> = content.split('\t').collect();
    if row.len() != f.width {
        return Err(DataError::FieldCount {
            path: path.to_path_buf(),
            line,
            expected: f.width,
            found: row.len(),
        });
    }
    let at = format!("line {line}");
    let label = f
        .label
        .map(|i| parse_label(&spec.labels, row[i], path, &at))
        .transpose()?;
    Ok(GlueExample {
        text_a: row[f.text_a].to_string(),
        text_b: f.text_b.map(|i| row[i].to_string()),
        label,
    })
}
