//! Whole-corpus calls: token counts, cache building and checking, per-stage costs (benchmarks).

use std::path::PathBuf;

use numpy::PyArray1;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::feed::{to_inputs, PyInput};
use super::options::PyStreamOptions;
use super::tokenizer::PyTokenizer;
use super::interruptible;
#[cfg(feature = "bench")]
use super::detached;
use crate::cache::Cache;
#[cfg(feature = "bench")]
use crate::options::StreamOptions;
use crate::passes;
use crate::source::Corpus;

/// Count every id over the corpus (one tokenization pass, reading as `options` say), for
/// frequency masking.
#[pyfunction]
#[pyo3(signature = (files, tokenizer, options=None))]
pub(super) fn count_tokens<'py>(py: Python<'py>, files: Vec<PyInput<'py>>, tokenizer: &PyTokenizer, options: Option<&PyStreamOptions>) -> PyResult<Bound<'py, PyArray1<u64>>> {
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
pub(super) fn build_cache<'py>(
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
pub(super) fn cache_info<'py>(py: Python<'py>, path: PathBuf, tokenizer: Option<&PyTokenizer>) -> PyResult<Bound<'py, PyDict>> {
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
pub(super) fn stage_costs<'py>(py: Python<'py>, files: Vec<String>, tokenizer: &PyTokenizer, seq_len: usize, batch_size: usize, packing: bool, num_threads: Option<usize>) -> PyResult<Bound<'py, PyDict>> {
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
