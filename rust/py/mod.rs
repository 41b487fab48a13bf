//! The Python binding `distilx._native` — the only module that knows PyO3: this file holds the
//! shared call helpers and the module table; `tokenizer.rs`, `options.rs`, `feed.rs` (texts from
//! Python), `stream.rs` and `passes.rs` (whole-corpus calls) one class or job each.
//!
//! Inputs are converted to owned Rust values, long work runs with the GIL released (`py.detach`),
//! waits poll in short slices so Ctrl-C (`py.check_signals`) is honoured — the stream's waits for a
//! batch, and the long calls (construction with its passes, count_batches, count_tokens,
//! build_cache, cache_info), which run on a helper thread and are cancelled on Ctrl-C
//! ([`interruptible`]) —, batch arrays are handed to NumPy without copying (`PyArray::from_vec`
//! takes ownership of the Rust buffer), and every Rust error becomes the matching Python exception.
//! A panic is caught at this boundary.

mod feed;
mod options;
mod passes;
mod stream;
mod tokenizer;

use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::time::Duration;

use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

use crate::cancel::Cancel;
use crate::error::Error;

pub(super) fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::PermissionDenied(_) => PyPermissionError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// How often a thread waiting on Rust work checks for Ctrl-C.
pub(super) const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The outcome of Rust work run under `catch_unwind`: its error as the Python exception, a panic as
/// a RuntimeError instead of an abort.
pub(super) fn completed<T>(out: std::thread::Result<crate::Result<T>>) -> PyResult<T> {
    match out {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(PyRuntimeError::new_err("internal error in distilx's Rust core (please report it with the input that caused it)")),
    }
}

/// Run `f` without the GIL (short work: it is not interruptible).
pub(super) fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    completed(py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))))
}

/// Run long work on a helper thread while this (the caller's) thread waits without the GIL and
/// checks for Ctrl-C every [`SIGNAL_POLL`]. On a signal the work's [`Cancel`] is set, the work stops
/// at its next check (within milliseconds: the passes check per round of documents and per MiB
/// read), and the signal's exception (KeyboardInterrupt) is raised once it has stopped.
pub(super) fn interruptible<T: Send>(py: Python<'_>, work: impl FnOnce(&Cancel) -> crate::Result<T> + Send) -> PyResult<T> {
    let cancel = Cancel::new();
    std::thread::scope(|scope| {
        let (tx, mut rx) = sync_channel(1);
        let token = &cancel;
        std::thread::Builder::new()
            .name("distilx-call".into())
            .spawn_scoped(scope, move || {
                let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(token))));
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a thread for distilx's Rust core: {e}")))?;
        loop {
            let (got, back) = py.detach(move || (rx.recv_timeout(SIGNAL_POLL), rx));
            rx = back;
            match got {
                Ok(out) => return completed(out),
                Err(RecvTimeoutError::Disconnected) => return completed(Err(Box::new("the work thread ended without a result"))),
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(signal) = py.check_signals() {
                        cancel.cancel();
                        py.detach(move || drop(rx.recv()));
                        return Err(signal);
                    }
                }
            }
        }
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<tokenizer::PyTokenizer>()?;
    m.add_class::<stream::PyStream>()?;
    m.add_class::<options::PyStreamOptions>()?;
    m.add_class::<feed::PyTextFeed>()?;
    m.add_function(wrap_pyfunction!(passes::count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(passes::build_cache, m)?)?;
    m.add_function(wrap_pyfunction!(passes::cache_info, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(passes::stage_costs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
