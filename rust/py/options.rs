//! `StreamOptions`: every stream option, converted between Python values and `rust/options.rs`.

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyList, PyString};

use super::to_py;
use crate::options::{StreamOptions, Value};

/// An option value from Python: None, bool, int (numpy's too), float or str.
pub(super) fn to_value(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Value> {
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

pub(super) fn from_value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
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
pub(super) struct PyStreamOptions {
    pub(super) inner: StreamOptions,
}

impl PyStreamOptions {
    /// `options` when given, else the defaults.
    pub(super) fn or_default(options: Option<&PyStreamOptions>) -> StreamOptions {
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
