//! `Stream`: the batches of a corpus, produced on Rust threads, handed to NumPy without copying.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::feed::{to_inputs, PyInput};
use super::options::PyStreamOptions;
use super::tokenizer::PyTokenizer;
use super::{detached, interruptible};
use crate::cache::Cache;
use crate::corpus::DocPos;
use crate::sequences::RowStart;
use crate::source::Corpus;
use crate::stream::{Poll, Position, Stream};

/// Position as a flat tuple: (epoch, file, byte_offset, doc_index, token_offset, batch_in_window, batches_done).
pub(super) type PosTuple = (u64, u32, u64, u64, u64, u64, u64);

#[pyclass(name = "Stream", module = "distilx._native", frozen)]
pub(super) struct PyStream {
    inner: Mutex<Stream>,
}

pub(super) fn lock(s: &Mutex<Stream>) -> std::sync::MutexGuard<'_, Stream> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long dropping a stream waits for its threads: they stop within milliseconds, unless one is
/// blocked inside a Python feed that never returns (then it is left to end by itself: `stop_within`).
const DROP_GRACE: Duration = Duration::from_secs(1);

impl Drop for PyStream {
    fn drop(&mut self) {
        // A reader thread taking texts from a TextFeed may be waiting for the GIL, which this
        // thread holds: stop the threads with the GIL released, or joining them would wait forever;
        // and one blocked in the feed itself is not waited for past DROP_GRACE.
        let inner = &self.inner;
        Python::attach(|py| py.detach(|| lock(inner).stop_within(DROP_GRACE)));
    }
}

#[pymethods]
impl PyStream {
    #[new]
    #[pyo3(signature = (files, tokenizer, options, *, token_counts=None, cache=None))]
    fn new(
        py: Python<'_>,
        files: Vec<PyInput<'_>>,
        tokenizer: &PyTokenizer,
        options: &PyStreamOptions,
        token_counts: Option<PyReadonlyArray1<'_, u64>>,
        cache: Option<PathBuf>,
    ) -> PyResult<Self> {
        let tok = tokenizer.inner.clone();
        let opts = options.inner.clone();
        let counts = token_counts.map(|c| c.as_array().to_vec());
        let inputs = to_inputs(files);
        let stream = interruptible(py, move |cancel| {
            let corpus = match cache {
                Some(p) => Corpus::Cache(Arc::new(Cache::open(&p, Some(&tok), true, cancel)?)),
                None => Corpus::inputs(inputs)?,
            };
            Stream::new(corpus, tok, opts, counts, cancel)
        })?;
        Ok(PyStream { inner: Mutex::new(stream) })
    }

    /// The next batch of the current epoch as (input_ids, attention_mask, labels) int64 arrays of
    /// shape [B, L] and the rows' starts, a uint64 array [B, 2] of (document index, token offset), or
    /// None at the end of the epoch (the epoch counter then advances).
    #[allow(clippy::type_complexity)]
    fn next_batch<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, numpy::PyArray2<i64>>, Bound<'py, numpy::PyArray2<i64>>, Bound<'py, numpy::PyArray2<i64>>, Bound<'py, numpy::PyArray2<u64>>)>> {
        loop {
            let polled = detached(py, || lock(&self.inner).poll(Duration::from_millis(50)))?;
            match polled {
                Poll::Batch(b) => {
                    let shape = [b.rows, b.cols];
                    let ids = PyArray1::from_vec(py, b.input_ids).reshape(shape)?;
                    let att = PyArray1::from_vec(py, b.attention_mask).reshape(shape)?;
                    let lab = PyArray1::from_vec(py, b.labels).reshape(shape)?;
                    let starts = PyArray1::from_vec(py, b.row_starts).reshape([b.rows, 2])?;
                    return Ok(Some((ids, att, lab, starts)));
                }
                Poll::EndOfEpoch => return Ok(None),
                Poll::Pending => py.check_signals()?,
            }
        }
    }

    fn position(&self) -> PosTuple {
        let p = lock(&self.inner).position();
        (p.epoch, p.window.doc.file, p.window.doc.offset, p.window.doc.index, p.window.offset, p.batch_in_window, p.batches_done)
    }

    fn seek(&self, py: Python<'_>, position: PosTuple) {
        let to = Position {
            epoch: position.0,
            window: RowStart { doc: DocPos { file: position.1, offset: position.2, index: position.3 }, offset: position.4 },
            batch_in_window: position.5,
            batches_done: position.6,
        };
        py.detach(|| lock(&self.inner).seek(to));
    }

    fn set_epoch(&self, py: Python<'_>, epoch: u64) {
        py.detach(|| lock(&self.inner).set_epoch(epoch));
    }

    #[getter]
    fn epoch(&self) -> u64 {
        lock(&self.inner).position().epoch
    }

    #[getter]
    fn batches_per_epoch(&self) -> Option<u64> {
        lock(&self.inner).batches_per_epoch()
    }

    fn count_batches(&self, py: Python<'_>) -> PyResult<u64> {
        interruptible(py, |cancel| lock(&self.inner).count_batches(cancel))
    }

    fn files(&self) -> Vec<PathBuf> {
        match lock(&self.inner).corpus() {
            Corpus::Files(files) => files.iter().map(|f| f.path.clone()).collect(),
            Corpus::Cache(_) => Vec::new(),
        }
    }

    #[getter]
    fn options(&self) -> PyStreamOptions {
        PyStreamOptions { inner: lock(&self.inner).options().clone() }
    }

    #[getter]
    fn token_counts<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyArray1<u64>>> {
        lock(&self.inner).token_counts().map(|c| PyArray1::from_slice(py, c))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = lock(&self.inner).stats();
        let d = PyDict::new(py);
        let engine = [("batches", s.batches), ("padded_tokens", s.padded_tokens), ("target_tokens", s.target_tokens)];
        for (k, v) in s.read.items().into_iter().chain(s.seq.items()).chain(engine) {
            d.set_item(k, v)?;
        }
        Ok(d)
    }
}
