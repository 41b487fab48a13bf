//! distilx core: streaming tokenization and dynamic masking for masked-LM distillation.
//!
//! Pure Rust; the Python binding lives in `py.rs` alone, behind the `python` feature, so
//! `cargo test` builds and tests everything here without Python.

pub mod error;
pub mod wordpiece;

pub use error::{Error, Result};
