//! The parquet decoder asserts on some corrupt inputs instead of returning an error (a bitmap
//! shorter than its level count, say), and a damaged shard must be an error naming the file like
//! any other. Record batches are read through [`next_batch`], which turns such a panic of the
//! decoder into an error (which the readers report as a parquet error naming the file) and keeps the decoder's panic message off the terminal
//! (other panics print as usual).

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReader;

thread_local! {
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Chains a panic hook that stays silent for panics inside the decoder.
fn quiet_decoder_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !DECODING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The next record batch of `reader`, `None` at the end; an error is the decoder's message.
pub(crate) fn next_batch(
    reader: &mut ParquetRecordBatchReader,
) -> Option<std::result::Result<RecordBatch, String>> {
    quiet_decoder_panics();
    DECODING.with(|d| d.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| reader.next()));
    DECODING.with(|d| d.set(false));
    match outcome {
        Ok(next) => next.map(|batch| batch.map_err(|e| e.to_string())),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Some(Err(format!("corrupt data ({what})")))
        }
    }
}
