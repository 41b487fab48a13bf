//! `TextFeed` and corpus inputs: texts handed over from Python (e.g. a `datasets` iterator).

use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyIterator;

use crate::corpus::{Feed, FeedPass};
use crate::error::Error;
use crate::source::Input;

/// Texts handed over from Python in chunks: `chunks()` returns an iterator of lists of str (None
/// for a null row). The engine calls it once per pass over the corpus, from its reader thread,
/// holding the GIL only while it takes one chunk.
#[pyclass(name = "TextFeed", module = "distilx._native", frozen)]
pub(super) struct PyTextFeed {
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
pub(super) struct PythonFeed {
    chunks: Py<PyAny>,
    name: String,
}

/// A Python exception met while taking texts from a feed, as an engine error naming the feed.
pub(super) fn feed_error(name: &str, e: PyErr) -> Error {
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

pub(super) struct PythonPass {
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
pub(super) enum PyInput<'py> {
    Path(String),
    Feed(Bound<'py, PyTextFeed>),
}

pub(super) fn to_inputs(files: Vec<PyInput<'_>>) -> Vec<Input> {
    files
        .into_iter()
        .map(|f| match f {
            PyInput::Path(p) => Input::Path(p),
            PyInput::Feed(feed) => Input::Feed(feed.get().feed.clone()),
        })
        .collect()
}
