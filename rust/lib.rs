//! distilx core: streaming tokenization and dynamic masking for masked-LM distillation.
//!
//! Pure Rust; the Python binding lives in `py/` alone, behind the `python` feature, so
//! `cargo test` builds and tests everything here without Python.
//!
//! Pipeline: [`corpus`] (files -> documents) -> [`tokenize`] (documents -> ids; the tokenizer's
//! [`specials`] and [`words`] from what it declares), both behind a [`source`] (or a [`cache`] of
//! tokenized documents) -> [`sequences`] (ids -> rows framed as the tokenizer frames, `[CLS] …
//! [SEP]` or `<s> … </s>`) -> [`batches`] (rows -> planned batches) -> [`masking`] (batches -> input_ids /
//! attention_mask / labels), driven by [`producer`] on a thread of [`stream`]. [`options`] holds
//! every stream option; [`passes`] reads a whole corpus (token counts, row counts, cache
//! building); [`mapping`] maps cache files so that a truncation under the reader is an error, not
//! a crash; [`splitmix`] is the shared randomness and hashing; [`cancel`] stops long work
//! (Ctrl-C).

/// A struct of cumulative `u64` counters with `add_growth(now, before)`, which adds what a later
/// snapshot of a counter set holds beyond an earlier one (a producer publishes its growth), and
/// `items()`, each counter with its name (what Python's statistics dicts show).
macro_rules! counters {
    ($(#[$meta:meta])* pub struct $name:ident { $($field:ident,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default)]
        pub struct $name {
            $(pub $field: u64,)+
        }

        impl $name {
            pub fn add_growth(&mut self, now: &Self, before: &Self) {
                $(self.$field += now.$field - before.$field;)+
            }

            pub fn items(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($field), self.$field)),+]
            }
        }
    };
}

pub mod batches;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cache;
pub mod cancel;
pub mod corpus;
pub mod error;
pub mod mapping;
pub mod masking;
pub mod options;
pub mod passes;
mod producer;
pub mod sequences;
pub mod source;
pub mod specials;
pub mod splitmix;
pub mod stream;
pub mod tokenize;
pub mod wordpiece;
pub mod words;

#[cfg(feature = "python")]
mod py;
#[cfg(test)]
mod testutil;

pub use error::{Error, Result};
