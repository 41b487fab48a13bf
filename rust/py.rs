//! The Python binding `distilx._native` — the only file that knows PyO3.
//!
//! Inputs are converted to owned Rust values, long work runs with the GIL released (`py.detach`),
//! waits poll in short slices so Ctrl-C (`py.check_signals`) is honoured — the stream's waits for a
//! batch, and the long calls (construction with its passes, count_batches, count_tokens,
//! build_cache, cache_info), which run on a helper thread and are cancelled on Ctrl-C
//! ([`interruptible`]) —, batch arrays are handed to NumPy without copying (`PyArray::from_vec`
//! takes ownership of the Rust buffer), and every Rust error becomes the matching Python exception.
//! A panic is caught at this boundary.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::{PyAttributeError, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyPermissionError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyIterator, PyList, PyString};

use crate::cache::Cache;
use crate::cancel::Cancel;
use crate::corpus::{DocPos, Feed, FeedPass};
use crate::error::Error;
use crate::options::{StreamOptions, Value};
use crate::passes;
use crate::sequences::RowStart;
use crate::source::{Corpus, Input};
use crate::specials::Role;
use crate::stream::{Poll, Position, Stream};
use crate::tokenize::{self, Backend};

fn to_py(e: Error) -> PyErr {
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
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The outcome of Rust work run under `catch_unwind`: its error as the Python exception, a panic as
/// a RuntimeError instead of an abort.
fn completed<T>(out: std::thread::Result<crate::Result<T>>) -> PyResult<T> {
    match out {
        Ok(r) => r.map_err(to_py),
        Err(_) => Err(PyRuntimeError::new_err("internal error in distilx's Rust core (please report it with the input that caused it)")),
    }
}

/// Run `f` without the GIL (short work: it is not interruptible).
fn detached<T: Send>(py: Python<'_>, f: impl FnOnce() -> crate::Result<T> + Send) -> PyResult<T> {
    completed(py.detach(|| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))))
}

/// Run long work on a helper thread while this (the caller's) thread waits without the GIL and
/// checks for Ctrl-C every [`SIGNAL_POLL`]. On a signal the work's [`Cancel`] is set, the work stops
/// at its next check (within milliseconds: the passes check per round of documents and per MiB
/// read), and the signal's exception (KeyboardInterrupt) is raised once it has stopped.
fn interruptible<T: Send>(py: Python<'_>, work: impl FnOnce(&Cancel) -> crate::Result<T> + Send) -> PyResult<T> {
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
    fn cls_id(&self) -> Option<u32> {
        self.inner.specials.id(Role::Cls)
    }
    #[getter]
    fn sep_id(&self) -> Option<u32> {
        self.inner.specials.id(Role::Sep)
    }
    #[getter]
    fn pad_id(&self) -> u32 {
        self.inner.specials.pad_id()
    }
    #[getter]
    fn mask_id(&self) -> u32 {
        self.inner.specials.mask_id()
    }
    #[getter]
    fn unk_id(&self) -> Option<u32> {
        self.inner.specials.id(Role::Unk)
    }
    #[getter]
    fn special_ids(&self) -> Vec<u32> {
        self.inner.specials.ids.clone()
    }
    /// Each declared role ("cls", "sep", "pad", "mask", "unk", "bos", "eos") -> (token, id).
    #[getter]
    fn special_tokens<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (role, t) in self.inner.specials.declared() {
            d.set_item(role.name(), (t.token.as_str(), t.id))?;
        }
        Ok(d)
    }
    /// (ids before, ids after) every document: the tokenizer's single-sequence template.
    #[getter]
    fn framing(&self) -> (Vec<u32>, Vec<u32>) {
        (self.inner.specials.prefix.clone(), self.inner.specials.suffix.clone())
    }
    #[getter]
    fn word_rule(&self) -> &'static str {
        self.inner.word_rule()
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

/// An option value from Python: None, bool, int (numpy's too), float or str.
fn to_value(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
    if v.is_none() {
        Ok(Value::None)
    } else if let Ok(b) = v.cast::<PyBool>() {
        Ok(Value::Bool(b.is_true()))
    } else if let Ok(i) = v.extract::<i128>() {
        Ok(Value::Int(i))
    } else if let Ok(x) = v.extract::<f64>() {
        Ok(Value::Float(x))
    } else if let Ok(s) = v.extract::<String>() {
        Ok(Value::Str(s))
    } else {
        let kind = v.get_type().name().map(|n| n.to_string()).unwrap_or_default();
        Err(PyTypeError::new_err(format!("{name}: a stream option is None, a bool, an int, a float or a str, not {kind}")))
    }
}

fn from_value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::None => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Int(i) => i.into_pyobject(py)?.into_any(),
        Value::Float(x) => PyFloat::new(py, *x).into_any(),
        Value::Str(s) => PyString::new(py, s).into_any(),
    })
}

/// Every stream option, typed, defaulted and validated in Rust (`rust/options.rs`).
#[pyclass(name = "StreamOptions", module = "distilx._native", frozen)]
#[derive(Clone)]
struct PyStreamOptions {
    inner: StreamOptions,
}

impl PyStreamOptions {
    /// `options` when given, else the defaults.
    fn or_default(options: Option<&PyStreamOptions>) -> StreamOptions {
        options.map(|o| o.inner.clone()).unwrap_or_default()
    }
}

#[pymethods]
impl PyStreamOptions {
    #[new]
    #[pyo3(signature = (**options))]
    fn new(options: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut values = Vec::new();
        for (k, v) in options.into_iter().flatten() {
            let name: String = k.extract()?;
            let value = to_value(&name, &v)?;
            values.push((name, value));
        }
        let inner = StreamOptions::from_values(values.iter().map(|(n, v)| (n.as_str(), v.clone()))).map_err(to_py)?;
        Ok(PyStreamOptions { inner })
    }

    fn __getattr__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        match self.inner.get(name) {
            Some(v) => from_value(py, &v),
            None => Err(PyAttributeError::new_err(format!("StreamOptions has no option {name:?}"))),
        }
    }

    /// Every option and its value.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (name, v) in self.inner.values() {
            d.set_item(name, from_value(py, &v)?)?;
        }
        Ok(d)
    }

    /// One dict per option, in declaration order: name, type (as `_native.pyi` spells it),
    /// default, doc, changes_batches (part of a resume state's fingerprint).
    #[staticmethod]
    fn fields(py: Python<'_>) -> PyResult<Bound<'_, PyList>> {
        let out = PyList::empty(py);
        for f in StreamOptions::fields() {
            let d = PyDict::new(py);
            d.set_item("name", f.name)?;
            d.set_item("type", f.python_type)?;
            d.set_item("default", from_value(py, &f.default)?)?;
            d.set_item("doc", f.doc)?;
            d.set_item("changes_batches", f.changes_batches)?;
            out.append(d)?;
        }
        Ok(out)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<PyStreamOptions>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __repr__(&self) -> String {
        let changed: Vec<String> = self
            .inner
            .values()
            .into_iter()
            .filter(|(name, v)| StreamOptions::default().get(name).as_ref() != Some(v))
            .map(|(name, v)| format!("{name}={v}"))
            .collect();
        format!("StreamOptions({})", changed.join(", "))
    }
}

/// Texts handed over from Python in chunks: `chunks()` returns an iterator of lists of str (None
/// for a null row). The engine calls it once per pass over the corpus, from its reader thread,
/// holding the GIL only while it takes one chunk.
#[pyclass(name = "TextFeed", module = "distilx._native", frozen)]
struct PyTextFeed {
    feed: Arc<PythonFeed>,
}

#[pymethods]
impl PyTextFeed {
    #[new]
    fn new(chunks: Bound<'_, PyAny>, name: String) -> PyResult<Self> {
        if !chunks.is_callable() {
            return Err(PyTypeError::new_err("TextFeed(chunks, name): chunks must be a callable that returns an iterator of lists of texts"));
        }
        Ok(PyTextFeed { feed: Arc::new(PythonFeed { chunks: chunks.unbind(), name }) })
    }

    #[getter]
    fn name(&self) -> String {
        self.feed.name.clone()
    }

    fn __repr__(&self) -> String {
        format!("TextFeed({:?})", self.feed.name)
    }
}

#[derive(Debug)]
struct PythonFeed {
    chunks: Py<PyAny>,
    name: String,
}

/// A Python exception met while taking texts from a feed, as an engine error naming the feed.
fn feed_error(name: &str, e: PyErr) -> Error {
    Error::InvalidInput(format!("{name}: {e}"))
}

impl Feed for PythonFeed {
    fn name(&self) -> &str {
        &self.name
    }

    fn open(&self) -> crate::Result<Box<dyn FeedPass>> {
        Python::attach(|py| {
            let iter = self.chunks.bind(py).call0()?.try_iter()?;
            Ok(Box::new(PythonPass { iter: iter.unbind(), name: self.name.clone() }) as Box<dyn FeedPass>)
        })
        .map_err(|e| feed_error(&self.name, e))
    }
}

struct PythonPass {
    iter: Py<PyIterator>,
    name: String,
}

impl FeedPass for PythonPass {
    fn next_chunk(&mut self) -> crate::Result<Option<Vec<Option<String>>>> {
        Python::attach(|py| {
            let Some(chunk) = self.iter.bind(py).clone().next() else { return Ok(None) };
            let mut rows = Vec::new();
            for item in chunk?.try_iter()? {
                let item = item?;
                rows.push(if item.is_none() {
                    None
                } else {
                    let kind = item.get_type().name().map(|n| n.to_string()).unwrap_or_default();
                    Some(item.extract::<String>().map_err(|_| PyTypeError::new_err(format!("a row's text is a {kind}, not a str (or None)")))?)
                });
            }
            Ok(Some(rows))
        })
        .map_err(|e| feed_error(&self.name, e))
    }
}

/// A corpus input from Python: a path (file, directory, glob) or a `TextFeed`.
#[derive(FromPyObject)]
enum PyInput<'py> {
    Path(String),
    Feed(Bound<'py, PyTextFeed>),
}

fn to_inputs(files: Vec<PyInput<'_>>) -> Vec<Input> {
    files
        .into_iter()
        .map(|f| match f {
            PyInput::Path(p) => Input::Path(p),
            PyInput::Feed(feed) => Input::Feed(feed.get().feed.clone()),
        })
        .collect()
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

impl Drop for PyStream {
    fn drop(&mut self) {
        // A reader thread taking texts from a TextFeed may be waiting for the GIL, which this
        // thread holds: stop the threads with the GIL released, or joining them would wait forever.
        let inner = &self.inner;
        Python::attach(|py| py.detach(|| lock(inner).stop()));
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

/// Count every id over the corpus (one tokenization pass, reading as `options` say), for
/// frequency masking.
#[pyfunction]
#[pyo3(signature = (files, tokenizer, options=None))]
fn count_tokens<'py>(py: Python<'py>, files: Vec<PyInput<'py>>, tokenizer: &PyTokenizer, options: Option<&PyStreamOptions>) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let opts = PyStreamOptions::or_default(options);
    let tok = tokenizer.inner.clone();
    let inputs = to_inputs(files);
    let counts = interruptible(py, move |cancel| passes::count_tokens(&Corpus::inputs(inputs)?, &opts.tokenizing(&tok, cancel)?))?;
    Ok(PyArray1::from_vec(py, counts))
}

/// Tokenize a corpus once (reading as `options` say) into a memory-mapped cache file. Returns
/// documents, tokens and the reading counters.
#[pyfunction]
#[pyo3(signature = (files, tokenizer, path, options=None, *, word_starts=true))]
fn build_cache<'py>(
    py: Python<'py>,
    files: Vec<PyInput<'py>>,
    tokenizer: &PyTokenizer,
    path: PathBuf,
    options: Option<&PyStreamOptions>,
    word_starts: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let opts = PyStreamOptions::or_default(options);
    let tok = tokenizer.inner.clone();
    let inputs = to_inputs(files);
    let r = interruptible(py, move |cancel| passes::build_cache(&Corpus::inputs(inputs)?, &opts.tokenizing(&tok, cancel)?, &path, word_starts))?;
    let d = PyDict::new(py);
    for (k, v) in r.read.items().into_iter().chain([("documents", r.documents), ("tokens", r.tokens)]) {
        d.set_item(k, v)?;
    }
    Ok(d)
}

/// Open a cache and validate it (length, magic, version, checksum); returns its header facts.
#[pyfunction]
#[pyo3(signature = (path, tokenizer=None))]
fn cache_info<'py>(py: Python<'py>, path: PathBuf, tokenizer: Option<&PyTokenizer>) -> PyResult<Bound<'py, PyDict>> {
    let tok = tokenizer.map(|t| t.inner.clone());
    let c = interruptible(py, move |cancel| Cache::open(&path, tok.as_deref(), true, cancel))?;
    let d = PyDict::new(py);
    d.set_item("documents", c.num_documents())?;
    d.set_item("tokens", c.num_tokens)?;
    d.set_item("id_bytes", c.id_bytes)?;
    d.set_item("word_starts", c.has_word_starts())?;
    Ok(d)
}

/// Time each stage alone over a corpus (benchmarks only: the corpus is held in memory).
#[cfg(feature = "bench")]
#[pyfunction]
#[pyo3(signature = (files, tokenizer, *, seq_len=128, batch_size=32, packing=false, num_threads=None))]
fn stage_costs<'py>(py: Python<'py>, files: Vec<String>, tokenizer: &PyTokenizer, seq_len: usize, batch_size: usize, packing: bool, num_threads: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
    let tok = tokenizer.inner.clone();
    let c = detached(py, move || {
        let opts = StreamOptions { seq_len, batch_size, packing, num_threads, ..StreamOptions::default() };
        opts.validate()?;
        let masker = crate::masking::Masker::new(&opts.mask(), tok.vocab_size, &tok.specials.ids, tok.specials.mask_id(), tok.specials.pad_id(), None)?;
        crate::bench::stage_costs(&files, &tok, opts.seq(&tok)?, batch_size, &masker, num_threads)
    })?;
    let d = PyDict::new(py);
    for (k, v) in [("documents", c.documents), ("bytes", c.bytes), ("tokens", c.tokens), ("rows", c.rows), ("padded_tokens", c.padded_tokens)] {
        d.set_item(k, v)?;
    }
    for (stage, (wall, cpu)) in [("read", c.read), ("tokenize", c.tokenize), ("frame", c.frame), ("mask", c.mask)] {
        d.set_item(format!("{stage}_s"), wall)?;
        d.set_item(format!("{stage}_cpu"), cpu)?;
    }
    Ok(d)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_class::<PyStream>()?;
    m.add_class::<PyStreamOptions>()?;
    m.add_class::<PyTextFeed>()?;
    m.add_function(wrap_pyfunction!(count_tokens, m)?)?;
    m.add_function(wrap_pyfunction!(build_cache, m)?)?;
    m.add_function(wrap_pyfunction!(cache_info, m)?)?;
    #[cfg(feature = "bench")]
    m.add_function(wrap_pyfunction!(stage_costs, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
