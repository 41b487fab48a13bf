//! Fast WordPiece (BERT) tokenization — placeholder with the agreed API; the real
//! implementation replaces this file (issue: Fast WordPiece).

use crate::error::Result;

/// A BERT-style tokenizer (BertNormalizer + BertPreTokenizer + WordPiece) whose ids are identical
/// to the `tokenizers` library's. `Send + Sync`: one instance is shared by all worker threads.
pub struct FastWordPiece {
    _private: (),
}

impl FastWordPiece {
    /// Build from the text of a `tokenizer.json` when it is a BERT-style WordPiece tokenizer this
    /// fast path reproduces exactly; `Ok(None)` when it is of another kind (the caller then falls
    /// back to the tokenizers crate); `Err` when it claims to be WordPiece but is malformed.
    pub fn from_tokenizer_json(_json: &str) -> Result<Option<Self>> {
        Ok(None)
    }

    /// Build from the contents of a BERT `vocab.txt` (one token per line, id = line number).
    pub fn from_vocab_txt(_vocab: &str, _lowercase: bool) -> Result<Self> {
        Err(crate::error::Error::InvalidTokenizer("fast WordPiece not built yet".into()))
    }

    /// Append the ids of `text` (no special tokens) to `ids`. When `word_ids` is given, push for
    /// each token the index (from 0 within this text) of the pre-tokenized word it belongs to,
    /// exactly as `tokenizers`' `Encoding::get_word_ids` numbers them.
    pub fn encode_into(&self, _text: &str, _ids: &mut Vec<u32>, _word_ids: Option<&mut Vec<u32>>) {}
}
