//! Text cells of Arrow arrays in any of Arrow's string layouts (`Utf8`, `LargeUtf8`,
//! `Utf8View`), for the corpus reader and the GLUE parquet reader.

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;

/// Whether a column of this type holds text.
pub(crate) fn is_text_type(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// Row `i` of a text column; `None` for a null cell or a column that is not text.
pub(crate) fn text_value(array: &ArrayRef, i: usize) -> Option<&str> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i)),
        DataType::Utf8View => Some(array.as_string_view().value(i)),
        _ => None,
    }
}
