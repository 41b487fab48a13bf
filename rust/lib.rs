//! distilx core: streaming tokenization and dynamic masking for masked-LM distillation.
//!
//! Pure Rust; the Python binding lives in `py.rs` alone, behind the `python` feature, so
//! `cargo test` builds and tests everything here without Python.
//!
//! Pipeline: [`corpus`] (files -> documents) -> [`tokenize`] (documents -> ids) ->
//! [`sequences`] (ids -> `[CLS] … [SEP]` rows) -> [`batches`] (rows -> planned batches) ->
//! [`masking`] (batches -> input_ids / attention_mask / labels), driven by [`stream`]; [`cache`]
//! stores tokenized documents for multi-epoch runs.

pub mod batches;
pub mod cache;
pub mod corpus;
pub mod error;
pub mod masking;
pub mod sequences;
pub mod stream;
pub mod tokenize;
pub mod wordpiece;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
