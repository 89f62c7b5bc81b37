//! A graceful stop. A signal handler (the CLI registers Ctrl-C and SIGTERM on [`flag`]) asks the
//! running loop to stop; the loop finishes its current step, writes a checkpoint and returns
//! [`crate::TrainError::Interrupted`], so a resume loses nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// The process-wide stop request: set it (from a signal handler, say) to stop the running loop
/// after its current step.
pub fn flag() -> Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone()
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    flag().load(Ordering::SeqCst)
}
