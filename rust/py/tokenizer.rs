//! `Tokenizer`: the engine's tokenizer (WordPiece, BPE, Unigram) with its special tokens.

use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::{detached, to_py};
use crate::specials::Role;
use crate::tokenize::{self, Backend};

#[pyclass(name = "Tokenizer", module = "distilx._native", frozen)]
pub(super) struct PyTokenizer {
    pub(super) inner: Arc<tokenize::Tokenizer>,
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
