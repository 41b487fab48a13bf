//! Fast WordPiece: BERT tokenization (BertNormalizer + BertPreTokenizer + WordPiece) in one pass
//! over the text, with ids identical to the `tokenizers` library's.
//!
//! The pass fuses the three stages: each input char is normalized by a table lookup (ASCII from a
//! 128-entry table, everything else from lazily built per-block tables, see [`chars`]; built
//! without locks, so a fork mid-epoch is safe), classified as space / punctuation / word char,
//! and word chars are appended to one reused buffer. At a word end the buffer is split greedily
//! longest-match-first by walking a double-array trie of the vocabulary ([`trie`]). Added
//! (special) tokens such as `[MASK]` are matched in the raw text first, like the tokenizers
//! library does. Nothing is allocated per word.
//!
//! Tokenizers this path cannot reproduce exactly (another normalizer, added tokens that are
//! normalized or strip spaces, ...) are refused with `Ok(None)` so the caller uses the tokenizers
//! crate; the few texts with characters whose NFD reordering could matter are handed to the
//! tokenizers crate inside [`FastWordPiece::encode_into`].

mod chars;
mod lazy;
mod trie;
#[cfg(test)]
mod tests;

use std::str::FromStr;

use tokenizers::{ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

use crate::error::{Error, Result};
use chars::{CharTable, Class, Kind, NormFlags};
use trie::{Trie, ROOT};

pub use chars::{reference_class, reference_normalize};

/// ASCII table entry kinds (what one ASCII input byte does).
const A_EMPTY: u8 = 0;
const A_SPACE: u8 = 1;
const A_PUNCT: u8 = 2;
const A_WORD: u8 = 3;
/// Not expressible as one ASCII byte: take the general path.
const A_OTHER: u8 = 4;

/// Added tokens matched in the raw text (all `normalized: false`, no strip, not single-word).
struct AddedTokens {
    /// (content, id), longest first, so the first hit at a position is the longest.
    tokens: Vec<(Box<[u8]>, u32)>,
    /// Whether some token starts with this byte.
    first_byte: [bool; 256],
}

impl AddedTokens {
    /// Leftmost-longest semantics: called at each char start in order, the first position with
    /// a hit wins, and the longest token there.
    #[inline]
    fn match_at(&self, rest: &[u8]) -> Option<(usize, u32)> {
        self.tokens.iter().find(|(t, _)| rest.starts_with(t)).map(|(t, id)| (t.len(), *id))
    }
}

/// A BERT-style tokenizer (BertNormalizer + BertPreTokenizer + WordPiece) whose ids are identical
/// to the `tokenizers` library's. `Send + Sync`: one instance is shared by all worker threads.
pub struct FastWordPiece {
    chars: &'static CharTable,
    /// Per ASCII byte: kind (`A_*`) and the normalized byte.
    ascii_kind: [u8; 128],
    ascii_byte: [u8; 128],
    trie: Trie,
    /// The trie node of the continuing-subword prefix ("##"); None if no token starts with it.
    continuation_root: Option<u32>,
    unk_id: u32,
    max_input_chars_per_word: usize,
    added: AddedTokens,
    /// The tokenizers crate on the same definition: the exact answer for the rare texts whose
    /// characters the per-char tables cannot compose (see `chars`).
    reference: Tokenizer,
}

impl FastWordPiece {
    /// Build from the text of a `tokenizer.json` when it is a BERT-style WordPiece tokenizer this
    /// fast path reproduces exactly; `Ok(None)` when it is of another kind (the caller then falls
    /// back to the tokenizers crate); `Err` when it claims to be WordPiece but is malformed.
    pub fn from_tokenizer_json(json: &str) -> Result<Option<Self>> {
        let mut reference = Tokenizer::from_str(json)
            .map_err(|e| Error::InvalidTokenizer(format!("tokenizer.json does not parse: {e}")))?;
        reference
            .with_truncation(None)
            .map_err(|e| Error::InvalidTokenizer(format!("cannot switch truncation off: {e}")))?;
        reference.with_padding(None);

        let flags = match reference.get_normalizer() {
            Some(NormalizerWrapper::BertNormalizer(n)) => NormFlags {
                clean_text: n.clean_text,
                handle_chinese_chars: n.handle_chinese_chars,
                strip_accents: n.strip_accents.unwrap_or(n.lowercase),
                lowercase: n.lowercase,
            },
            _ => return Ok(None),
        };
        if !matches!(reference.get_pre_tokenizer(), Some(PreTokenizerWrapper::BertPreTokenizer(_))) {
            return Ok(None);
        }
        let (unk_token, prefix, max_input_chars_per_word) = match reference.get_model() {
            ModelWrapper::WordPiece(wp) => {
                (wp.unk_token.clone(), wp.continuing_subword_prefix.clone(), wp.max_input_chars_per_word)
            }
            _ => return Ok(None),
        };
        let vocab = reference.get_vocab(false);
        let Some(&unk_id) = vocab.get(&unk_token) else {
            return Err(Error::InvalidTokenizer(format!(
                "the WordPiece unk_token {unk_token:?} is not in the vocabulary; add it to model.vocab"
            )));
        };
        if reference.get_added_vocabulary().get_encode_special_tokens() {
            return Ok(None);
        }
        let mut added = Vec::new();
        for (id, token) in reference.get_added_tokens_decoder() {
            if token.normalized || token.lstrip || token.rstrip || token.single_word || token.content.is_empty() {
                return Ok(None);
            }
            added.push((token.content.into_bytes().into_boxed_slice(), id));
        }
        added.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        let mut first_byte = [false; 256];
        for (content, _) in &added {
            first_byte[content[0] as usize] = true;
        }

        let chars = CharTable::shared(flags);
        let mut ascii_kind = [A_OTHER; 128];
        let mut ascii_byte = [0u8; 128];
        for b in 0..128u8 {
            let (kind, out) = match chars::unpack(chars.ascii[b as usize]) {
                Kind::Empty => (A_EMPTY, 0),
                Kind::One(d, class) if d.is_ascii() => (
                    match class {
                        Class::Space => A_SPACE,
                        Class::Punct => A_PUNCT,
                        Class::Word => A_WORD,
                    },
                    d as u8,
                ),
                _ => (A_OTHER, 0),
            };
            ascii_kind[b as usize] = kind;
            ascii_byte[b as usize] = out;
        }

        let trie = Trie::build(vocab.iter().map(|(token, &id)| (token.as_bytes(), id)));
        let continuation_root = trie.walk(ROOT, prefix.as_bytes());
        Ok(Some(FastWordPiece {
            chars,
            ascii_kind,
            ascii_byte,
            trie,
            continuation_root,
            unk_id,
            max_input_chars_per_word,
            added: AddedTokens { tokens: added, first_byte },
            reference,
        }))
    }

    /// Append the ids of `text` (no special tokens) to `ids`. When `word_ids` is given, push for
    /// each token the index (from 0 within this text) of the pre-tokenized word it belongs to,
    /// exactly as `tokenizers`' `Encoding::get_word_ids` numbers them.
    pub fn encode_into(&self, text: &str, ids: &mut Vec<u32>, mut word_ids: Option<&mut Vec<u32>>) {
        let ids_start = ids.len();
        let word_ids_start = word_ids.as_ref().map_or(0, |w| w.len());
        let mut state = WordState { buf: Vec::with_capacity(64), chars: 0, index: 0 };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.added.first_byte[b as usize] {
                if let Some((len, id)) = self.added.match_at(&bytes[i..]) {
                    self.flush(&mut state, ids, word_ids.as_deref_mut());
                    ids.push(id);
                    if let Some(w) = word_ids.as_deref_mut() {
                        w.push(state.index);
                    }
                    state.index += 1;
                    i += len;
                    continue;
                }
            }
            if b < 128 {
                match self.ascii_kind[b as usize] {
                    A_WORD => {
                        state.buf.push(self.ascii_byte[b as usize]);
                        state.chars += 1;
                    }
                    A_SPACE => self.flush(&mut state, ids, word_ids.as_deref_mut()),
                    A_EMPTY => {}
                    A_PUNCT => {
                        self.flush(&mut state, ids, word_ids.as_deref_mut());
                        state.buf.push(self.ascii_byte[b as usize]);
                        state.chars = 1;
                        self.flush(&mut state, ids, word_ids.as_deref_mut());
                    }
                    _ => {
                        if !self.push_char(b as char, &mut state, ids, word_ids.as_deref_mut()) {
                            return self.encode_with_reference(text, ids, ids_start, word_ids, word_ids_start);
                        }
                    }
                }
                i += 1;
            } else {
                // `i` is always a char boundary: we step by whole chars and whole added tokens.
                let c = text[i..].chars().next().unwrap_or('\u{fffd}');
                if !self.push_char(c, &mut state, ids, word_ids.as_deref_mut()) {
                    return self.encode_with_reference(text, ids, ids_start, word_ids, word_ids_start);
                }
                i += c.len_utf8();
            }
        }
        self.flush(&mut state, ids, word_ids);
    }

    /// Normalize and classify one input char through the tables; false if the text must go to
    /// the reference instead.
    #[inline]
    fn push_char(&self, c: char, state: &mut WordState, ids: &mut Vec<u32>, mut word_ids: Option<&mut Vec<u32>>) -> bool {
        let (kind, block) = self.chars.lookup(c);
        match kind {
            Kind::Empty => {}
            Kind::One(d, class) => self.push_normalized(d, class, state, ids, word_ids),
            Kind::Many { start, len } => {
                for &(d, class) in &block.pool[start as usize..start as usize + len as usize] {
                    self.push_normalized(d, class, state, ids, word_ids.as_deref_mut());
                }
            }
            Kind::Rare => return false,
        }
        true
    }

    #[inline]
    fn push_normalized(&self, d: char, class: Class, state: &mut WordState, ids: &mut Vec<u32>, word_ids: Option<&mut Vec<u32>>) {
        match class {
            Class::Word => {
                let mut utf8 = [0u8; 4];
                state.buf.extend_from_slice(d.encode_utf8(&mut utf8).as_bytes());
                state.chars += 1;
            }
            Class::Space => self.flush(state, ids, word_ids),
            Class::Punct => {
                let mut word_ids = word_ids;
                self.flush(state, ids, word_ids.as_deref_mut());
                let mut utf8 = [0u8; 4];
                state.buf.extend_from_slice(d.encode_utf8(&mut utf8).as_bytes());
                state.chars = 1;
                self.flush(state, ids, word_ids);
            }
        }
    }

    /// Tokenize the buffered word (if any) and start a new one.
    #[inline]
    fn flush(&self, state: &mut WordState, ids: &mut Vec<u32>, word_ids: Option<&mut Vec<u32>>) {
        if state.buf.is_empty() {
            return;
        }
        let before = ids.len();
        self.tokenize_word(&state.buf, state.chars, ids);
        if let Some(w) = word_ids {
            w.resize(w.len() + (ids.len() - before), state.index);
        }
        state.index += 1;
        state.buf.clear();
        state.chars = 0;
    }

    /// WordPiece on one normalized word: greedy longest-match-first, the whole word as the unknown
    /// token when a position has no match or the word is longer than max_input_chars_per_word.
    #[inline]
    fn tokenize_word(&self, word: &[u8], chars: usize, ids: &mut Vec<u32>) {
        if chars > self.max_input_chars_per_word {
            ids.push(self.unk_id);
            return;
        }
        let mark = ids.len();
        let mut pos = 0;
        let mut start_node = ROOT;
        loop {
            let mut node = start_node;
            let mut best_end = pos;
            let mut best_id = 0;
            for (j, &b) in word[pos..].iter().enumerate() {
                match self.trie.child(node, b) {
                    Some(next) => {
                        node = next;
                        if let Some(id) = self.trie.value(next) {
                            best_end = pos + j + 1;
                            best_id = id;
                        }
                    }
                    None => break,
                }
            }
            if best_end == pos {
                ids.truncate(mark);
                ids.push(self.unk_id);
                return;
            }
            ids.push(best_id);
            pos = best_end;
            if pos == word.len() {
                return;
            }
            match self.continuation_root {
                Some(node) => start_node = node,
                None => {
                    ids.truncate(mark);
                    ids.push(self.unk_id);
                    return;
                }
            }
        }
    }

    #[cold]
    fn encode_with_reference(
        &self,
        text: &str,
        ids: &mut Vec<u32>,
        ids_start: usize,
        word_ids: Option<&mut Vec<u32>>,
        word_ids_start: usize,
    ) {
        ids.truncate(ids_start);
        // Construction checked what could make encoding fail (a missing unk token), so an error
        // here is a tokenizers bug; an empty result is the only sound answer without a Result.
        // `encode_fast` skips offsets and with them the word ids, so only use it without word ids.
        let encoding = match word_ids {
            Some(_) => self.reference.encode(text, false),
            None => self.reference.encode_fast(text, false),
        };
        let Ok(encoding) = encoding else {
            if let Some(w) = word_ids {
                w.truncate(word_ids_start);
            }
            return;
        };
        ids.extend_from_slice(encoding.get_ids());
        if let Some(w) = word_ids {
            w.truncate(word_ids_start);
            w.extend(encoding.get_word_ids().iter().map(|w| w.unwrap_or(0)));
        }
    }
}

/// The word being built: its normalized bytes, its length in chars, and its index in the text.
struct WordState {
    buf: Vec<u8>,
    chars: usize,
    index: u32,
}
