//! The Python binding `distilx._native` — the only file that knows PyO3.
//!
//! Inputs are converted to owned Rust values, long work runs with the GIL released (`py.detach`),
//! waits poll in short slices so Ctrl-C (`py.check_signals`) is honoured, batch arrays are handed
//! to NumPy without copying (`PyArray::from_vec` takes ownership of the Rust buffer), and every
//! Rust error becomes the matching Python exception. A panic is caught at this boundary.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyPermissionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::batches::{BatchShape, Padding};
use crate::cache::{self, Cache};
use crate::corpus::{DocPos, OnBadJson, ReadOptions};
use crate::error::Error;
use crate::masking::{Masker, Mode};
use crate::sequences::{RowStart, SeqConfig};
use crate::stream::{Poll, Position, Stream, StreamConfig};
use crate::tokenize::{self, Backend};

fn to_py(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::NotFound(_) => PyFileNotFoundError::new_err(msg),
        Error::PermissionDenied(_) => PyPermissionError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// Run `f` without the GIL, turning a panic into a Python exception instead of an abort.
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    let out = py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    match out {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(PyRuntimeError::new_err("internal error in distilx's Rust core (please report it with the input that caused it)")),
    }
}

#[pyclass(name = "Tokenizer", module = "distilx._native", frozen)]
struct PyTokenizer {
    inner: Arc<tokenize::Tokenizer>,
}

#[pymethods]
impl PyTokenizer {
    #[new]
    #[pyo3(signature = (path, *, lowercase=None, backend="auto"))]
    fn new(py: Python<'_>, path: PathBuf, lowercase: Option<bool>, backend: &str) -> PyResult<Self> {
        let backend = Backend::parse(backend).map_err(to_py)?;
        let tok = detached(py, || tokenize::Tokenizer::from_path(&path, lowercase, backend))?;
        Ok(PyTokenizer { inner: Arc::new(tok) })
    }

    #[getter]
    fn vocab_size(&self) -> u32 {
        self.inner.vocab_size
    }
    #[getter]
    fn cls_id(&self) -> u32 {
        self.inner.cls_id
    }
    #[getter]
    fn sep_id(&self) -> u32 {
        self.inner.sep_id
    }
    #[getter]
    fn pad_id(&self) -> u32 {
        self.inner.pad_id
    }
    #[getter]
    fn mask_id(&self) -> u32 {
        self.inner.mask_id
    }
    #[getter]
    fn unk_id(&self) -> u32 {
        self.inner.unk_id
    }
    #[getter]
    fn special_ids(&self) -> Vec<u32> {
        self.inner.special_ids.clone()
    }
    #[getter]
    fn backend(&self) -> &'static str {
        self.inner.backend_name()
    }
    #[getter]
    fn path(&self) -> PathBuf {
        self.inner.source.clone()
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    #[pyo3(signature = (texts, *, num_threads=None))]
    fn encode(&self, py: Python<'_>, texts: Vec<String>, num_threads: Option<usize>) -> PyResult<Vec<Vec<u32>>> {
        let tok = self.inner.clone();
        detached(py, move || {
            let pool = tokenize::thread_pool(num_threads)?;
            tok.encode_batch(&texts, &pool)
        })
    }

    /// Word index of every token (whole-word masking's grouping), one list per text.
    fn word_ids(&self, py: Python<'_>, texts: Vec<String>) -> PyResult<Vec<Vec<u32>>> {
        let tok = self.inner.clone();
        detached(py, move || {
            texts
                .iter()
                .map(|t| {
                    let (mut ids, mut words) = (Vec::new(), Vec::new());
                    tok.encode_into(t, &mut ids, Some(&mut words))?;
                    Ok(words)
                })
                .collect()
        })
    }

    fn __repr__(&self) -> String {
        format!("Tokenizer({:?}, vocab_size={}, backend={:?})", self.inner.source.display().to_string(), self.inner.vocab_size, self.inner.backend_name())
    }
}

fn read_options(paragraphs: bool, text_field: String, on_bad_json: &str, max_document_bytes: usize) -> PyResult<ReadOptions> {
    let on_bad_json = match on_bad_json {
        "skip" => OnBadJson::Skip,
        "raise" => OnBadJson::Raise,
        o => return Err(PyValueError::new_err(format!("on_bad_json must be \"skip\" or \"raise\", not {o:?}"))),
    };
    if max_document_bytes == 0 {
        return Err(PyValueError::new_err("max_document_bytes must be >= 1"));
    }
    Ok(ReadOptions { paragraphs, text_field, on_bad_json, max_document_bytes })
}

/// Position as a flat tuple: (epoch, file, byte_offset, doc_index, token_offset, batch_in_window, batches_done).
type PosTuple = (u64, u32, u64, u64, u64, u64, u64);

#[pyclass(name = "Stream", module = "distilx._native", frozen)]
struct PyStream {
    inner: Mutex<Stream>,
}

fn lock(s: &Mutex<Stream>) -> std::sync::MutexGuard<'_, Stream> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

#[pymethods]
impl PyStream {
    #[new]
    #[pyo3(signature = (files, tokenizer, *, seq_len, batch_size, mlm_probability, mask_replace_prob,
        random_replace_prob, masking, seed, rank, world_size, packing, min_seq_len, max_unk_ratio,
        padding, pad_to_multiple_of, shuffle, drop_last, window_batches, num_threads, prefetch,
        text_field, paragraphs, on_bad_json, max_document_bytes, token_counts, smoothing, cache))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        files: Vec<String>,
        tokenizer: &PyTokenizer,
        seq_len: usize,
        batch_size: usize,
        mlm_probability: f64,
        mask_replace_prob: f64,
        random_replace_prob: f64,
        masking: &str,
        seed: u64,
        rank: u64,
        world_size: u64,
        packing: bool,
        min_seq_len: usize,
        max_unk_ratio: f64,
        padding: &str,
        pad_to_multiple_of: usize,
        shuffle: bool,
        drop_last: bool,
        window_batches: usize,
        num_threads: Option<usize>,
        prefetch: usize,
        text_field: String,
        paragraphs: bool,
        on_bad_json: &str,
        max_document_bytes: usize,
        token_counts: Option<Vec<u64>>,
        smoothing: f64,
        cache: Option<PathBuf>,
    ) -> PyResult<Self> {
        let tok = tokenizer.inner.clone();
        let mode = Mode::parse(masking).map_err(to_py)?;
        let padding = Padding::parse(padding).map_err(to_py)?;
        let read = read_options(paragraphs, text_field, on_bad_json, max_document_bytes)?;
        let masker = Masker::new(
            mode,
            mlm_probability,
            mask_replace_prob,
            random_replace_prob,
            tok.vocab_size,
            &tok.special_ids,
            tok.mask_id,
            tok.pad_id,
            token_counts.as_deref(),
            smoothing,
        )
        .map_err(to_py)?;
        let cfg = StreamConfig {
            seq: SeqConfig { seq_len, packing, min_seq_len, max_unk_ratio, cls_id: tok.cls_id, sep_id: tok.sep_id, unk_id: tok.unk_id, word_starts: false },
            shape: BatchShape { batch_size, seq_len, padding, pad_to_multiple_of, shuffle, drop_last },
            seed,
            rank,
            world_size,
            read,
            num_threads,
            prefetch,
            window_batches,
        };
        let stream = detached(py, move || {
            let cache = match cache {
                Some(p) => Some(Arc::new(Cache::open(&p, Some(&tok), true)?)),
                None => None,
            };
            Stream::new(&files, tok, cfg, masker, cache)
        })?;
        Ok(PyStream { inner: Mutex::new(stream) })
    }

    /// The next batch of the current epoch as (input_ids, attention_mask, labels) int64 arrays of
    /// shape [B, L], or None at the end of the epoch (the epoch counter then advances).
    #[allow(clippy::type_complexity)]
    fn next_batch<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, numpy::PyArray2<i64>>, Bound<'py, numpy::PyArray2<i64>>, Bound<'py, numpy::PyArray2<i64>>)>> {
        loop {
            let polled = detached(py, || lock(&self.inner).poll(Duration::from_millis(50)))?;
            match polled {
                Poll::Batch(b) => {
                    let shape = [b.rows, b.cols];
                    let ids = PyArray1::from_vec(py, b.input_ids).reshape(shape)?;
                    let att = PyArray1::from_vec(py, b.attention_mask).reshape(shape)?;
                    let lab = PyArray1::from_vec(py, b.labels).reshape(shape)?;
                    return Ok(Some((ids, att, lab)));
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

    fn seek(&self, py: Python<'_>, pos: PosTuple) {
        let position = Position {
            epoch: pos.0,
            window: RowStart { doc: DocPos { file: pos.1, offset: pos.2, index: pos.3 }, offset: pos.4 },
            batch_in_window: pos.5,
            batches_done: pos.6,
        };
        py.detach(|| lock(&self.inner).seek(position));
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
        detached(py, || lock(&self.inner).count_batches())
    }

    fn files(&self) -> Vec<PathBuf> {
        lock(&self.inner).files().iter().map(|f| f.path.clone()).collect()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = lock(&self.inner).stats();
        let d = PyDict::new(py);
        d.set_item("documents", s.read.documents)?;
        d.set_item("lines", s.read.lines)?;
        d.set_item("bytes", s.read.bytes)?;
        d.set_item("sequences", s.seq.sequences)?;
        d.set_item("tokens", s.seq.tokens)?;
        d.set_item("batches", s.batches)?;
        d.set_item("padded_tokens", s.padded_tokens)?;
        d.set_item("target_tokens", s.target_tokens)?;
        d.set_item("skipped_lines", s.read.skipped_lines)?;
        d.set_item("empty_lines", s.read.empty_lines)?;
        d.set_item("oversized_lines", s.read.oversized_lines)?;
        d.set_item("bad_json_lines", s.read.bad_json_lines)?;
        d.set_item("invalid_bytes", s.read.invalid_bytes)?;
        d.set_item("empty_documents", s.seq.empty_documents)?;
        d.set_item("dropped_short", s.seq.dropped_short)?;
        d.set_item("dropped_unk", s.seq.dropped_unk)?;
        d.set_item("files_opened", s.read.files_opened)?;
        Ok(d)
    }
}

/// Count every id over the corpus (one tokenization pass), for frequency masking.
#[pyfunction]
#[pyo3(signature = (files, tokenizer, *, num_threads=None, text_field="text".to_string(), paragraphs=false, on_bad_json="skip", max_document_bytes=16<<20))]
#[allow(clippy::too_many_arguments)]
fn count_tokens<'py>(
    py: Python<'py>,
    files: Vec<String>,
    tokenizer: &PyTokenizer,
    num_threads: Option<usize>,
    text_field: String,
    paragraphs: bool,
    on_bad_json: &str,
    max_document_bytes: usize,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let read = read_options(paragraphs, text_field, on_bad_json, max_document_bytes)?;
    let tok = tokenizer.inner.clone();
    let counts = detached(py, move || crate::stream::count_tokens(&files, &tok, read, num_threads))?;
    Ok(PyArray1::from_vec(py, counts))
}

/// Token counts of a cache (no tokenization).
#[pyfunction]
fn cache_token_counts<'py>(py: Python<'py>, path: PathBuf, tokenizer: &PyTokenizer) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let tok = tokenizer.inner.clone();
    let counts = detached(py, move || Ok(Cache::open(&path, Some(&tok), false)?.token_counts(tok.vocab_size)))?;
    Ok(PyArray1::from_vec(py, counts))
}

/// Tokenize a corpus once into a memory-mapped cache file. Returns its statistics.
#[pyfunction]
#[pyo3(signature = (files, tokenizer, path, *, num_threads=None, text_field="text".to_string(), paragraphs=false, on_bad_json="skip", max_document_bytes=16<<20, word_starts=true))]
#[allow(clippy::too_many_arguments)]
fn build_cache<'py>(
    py: Python<'py>,
    files: Vec<String>,
    tokenizer: &PyTokenizer,
    path: PathBuf,
    num_threads: Option<usize>,
    text_field: String,
    paragraphs: bool,
    on_bad_json: &str,
    max_document_bytes: usize,
    word_starts: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let read = read_options(paragraphs, text_field, on_bad_json, max_document_bytes)?;
    let tok = tokenizer.inner.clone();
    let r = detached(py, move || cache::build(&files, &tok, &path, read, num_threads, word_starts))?;
    let d = PyDict::new(py);
    d.set_item("documents", r.documents)?;
    d.set_item("tokens", r.tokens)?;
    d.set_item("lines", r.read.lines)?;
    d.set_item("bytes", r.read.bytes)?;
    d.set_item("skipped_lines", r.read.skipped_lines)?;
    d.set_item("bad_json_lines", r.read.bad_json_lines)?;
    d.set_item("invalid_bytes", r.read.invalid_bytes)?;
    d.set_item("oversized_lines", r.read.oversized_lines)?;
    Ok(d)
}

/// Open a cache and validate it (length, magic, version, checksum); returns its header facts.
#[pyfunction]
#[pyo3(signature = (path, tokenizer=None))]
fn cache_info<'py>(py: Python<'py>, path: PathBuf, tokenizer: Option<&PyTokenizer>) -> PyResult<Bound<'py, PyDict>> {
    let tok = tokenizer.map(|t| t.inner.clone());
    let c = detached(py, move || Cache::open(&path, tok.as_deref(), true))?;
    let d = PyDict::new(py);
    d.set_item("documents", c.num_documents())?;
    d.set_item("tokens", c.num_tokens)?;
    d.set_item("id_bytes", c.id_bytes)?;
    d.set_item("word_starts", c.has_word_starts())?;
    Ok(d)
}

/// Time each stage alone over a corpus (benchmarks only: the corpus is held in memory).
#[pyfunction]
#[pyo3(signature = (files, tokenizer, *, seq_len=128, batch_size=32, packing=false, num_threads=None))]
fn stage_costs<'py>(py: Python<'py>, files: Vec<String>, tokenizer: &PyTokenizer, seq_len: usize, batch_size: usize, packing: bool, num_threads: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
    let tok = tokenizer.inner.clone();
    let c = detached(py, move || {
        let seq = SeqConfig { seq_len, packing, min_seq_len: 12, max_unk_ratio: 0.5, cls_id: tok.cls_id, sep_id: tok.sep_id, unk_id: tok.unk_id, word_starts: false };
        let masker = Masker::new(Mode::Uniform, 0.15, 0.8, 0.1, tok.vocab_size, &tok.special_ids, tok.mask_id, tok.pad_id, None, 0.7)?;
        crate::stream::stage_costs(&files, &tok, seq, batch_size, &masker, num_threads)
    })?;
    let d = PyDict::new(py);
    for (k, v) in [("documents", c.documents), ("bytes", c.bytes), ("tokens", c.tokens), ("rows", c.rows), ("padded_tokens", c.padded_tokens)] {
        d.set_item(k, v)?;
    }
    for (k, v) in [
        ("read_s", c.read_s),
        ("tokenize_s", c.tokenize_s),
        ("frame_s", c.frame_s),
        ("mask_s", c.mask_s),
        ("read_cpu", c.read_cpu),
        ("tokenize_cpu", c.tokenize_cpu),
        ("frame_cpu", c.frame_cpu),
        ("mask_cpu", c.mask_cpu),
    ] {
        d.set_item(k, v)?;
    }
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyStream>()?;
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(cache_token_counts, m)?)?;
    m.add_function(wrap_pyfunction!(build_cache, m)?)?;
    m.add_function(wrap_pyfunction!(cache_info, m)?)?;
    m.add_function(wrap_pyfunction!(stage_costs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
