//! Tokenizer loading (a `tokenizer.json`, a BERT `vocab.txt`, or a directory holding one) and
//! encoding without special tokens. Two backends with identical ids:
//! - "wordpiece": the fast BERT WordPiece of `crate::wordpiece` (used by "auto" when it accepts
//!   the tokenizer);
//! - "hf": the Hugging Face `tokenizers` crate — any tokenizer.json.
//!
//! The engine frames sequences itself, so a tokenizer.json's own truncation and padding (the
//! bert-base-uncased one pads and truncates every text to 128) are switched off here. Its special
//! tokens and framing come from what it declares (`crate::specials`), its notion of a word for
//! whole-word masking from its kind (`crate::words`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::specials::{self, Declarations, Specials};
use crate::wordpiece::FastWordPiece;
use crate::words::WordRule;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Auto,
    WordPiece,
    Hf,
}

impl Backend {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Backend::Auto),
            "wordpiece" => Ok(Backend::WordPiece),
            "hf" => Ok(Backend::Hf),
            other => Err(Error::InvalidConfig(format!("backend must be \"auto\", \"wordpiece\" or \"hf\", not {other:?}"))),
        }
    }
}

enum Inner {
    Fast(Box<FastWordPiece>),
    Hf(Box<tokenizers::Tokenizer>),
}

/// A loaded tokenizer plus what the engine needs to know of it. `Send + Sync`.
pub struct Tokenizer {
    inner: Inner,
    /// Source file (tokenizer.json or vocab.txt).
    pub source: PathBuf,
    pub vocab_size: u32,
    /// Its special tokens by role, its framing and every special id.
    pub specials: Specials,
    /// What a word is, for whole-word masking.
    words: WordRule,
    /// token -> id lookup for `token_to_id` (the vocabulary including added tokens).
    vocab: std::collections::HashMap<String, u32>,
}

/// Ids must lie below this: per-id tables stay under a few hundred MB.
pub const MAX_VOCAB_SIZE: u32 = 1 << 24;

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|_| Error::InvalidTokenizer(format!("{} is not UTF-8 text", path.display())))
}

/// Resolve a path to (file, is_json). A directory must hold tokenizer.json or vocab.txt.
fn resolve(path: &Path) -> Result<(PathBuf, bool)> {
    if !path.exists() {
        return Err(Error::NotFound(path.to_path_buf()));
    }
    if path.is_dir() {
        for (name, json) in [("tokenizer.json", true), ("vocab.txt", false)] {
            let p = path.join(name);
            if p.is_file() {
                return Ok((p, json));
            }
        }
        return Err(Error::InvalidTokenizer(format!(
            "directory {} holds neither tokenizer.json nor vocab.txt; pass the tokenizer file itself", path.display())));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    Ok((path.to_path_buf(), name.ends_with(".json")))
}

/// `do_lower_case` from a tokenizer_config.json beside a vocab.txt, if any.
fn lowercase_hint(vocab_txt: &Path) -> Option<bool> {
    let cfg = vocab_txt.parent()?.join("tokenizer_config.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(cfg).ok()?).ok()?;
    v.get("do_lower_case")?.as_bool()
}

/// The tokenizer.json that `BertWordPieceTokenizer(vocab, lowercase=lowercase)` of the tokenizers
/// library builds from a BERT vocab.txt (one token per line, id = line number): BertNormalizer
/// (clean text, CJK spacing, strip accents iff lowercase), `##` continuation, 100 chars per word
/// at most, [UNK] [SEP] [CLS] [PAD] [MASK] as special tokens when present and `[CLS] … [SEP]`
/// framing (BertProcessing) when both exist. A vocab.txt is loaded as this JSON, so both kinds of
/// file take one path.
pub(crate) fn vocab_txt_as_tokenizer_json(vocab_txt: &str, lowercase: bool) -> Result<String> {
    let mut vocab = serde_json::Map::new();
    // Like tokenizers' WordPiece::read_file: one token per line, trailing whitespace trimmed,
    // id = line number, a repeated token keeps its last line.
    for (index, line) in vocab_txt.lines().enumerate() {
        vocab.insert(line.trim_end().to_owned(), serde_json::Value::from(index as u64));
    }
    if vocab.is_empty() {
        return Err(Error::InvalidTokenizer("vocab.txt is empty; pass a BERT vocab.txt (one token per line)".into()));
    }
    if !vocab.contains_key("[UNK]") {
        return Err(Error::InvalidTokenizer(
            "vocab.txt has no [UNK] line; a BERT WordPiece vocabulary needs one".into(),
        ));
    }
    let added: Vec<serde_json::Value> = ["[UNK]", "[SEP]", "[CLS]", "[PAD]", "[MASK]"]
        .iter()
        .filter_map(|t| {
            vocab.get(*t).map(|id| {
                serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                                   "rstrip": false, "normalized": false, "special": true})
            })
        })
        .collect();
    let post_processor = match (vocab.get("[SEP]"), vocab.get("[CLS]")) {
        (Some(sep), Some(cls)) => serde_json::json!({"type": "BertProcessing", "sep": ["[SEP]", sep], "cls": ["[CLS]", cls]}),
        _ => serde_json::Value::Null,
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": post_processor,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    });
    Ok(json.to_string())
}

impl Tokenizer {
    /// Load from a tokenizer.json, a vocab.txt or a directory holding one. `lowercase` applies to
    /// vocab.txt only (None: `do_lower_case` of a tokenizer_config.json beside it, else true); a
    /// tokenizer.json's own normalizer decides for it.
    pub fn from_path(path: &Path, lowercase: Option<bool>, backend: Backend) -> Result<Self> {
        let (file, is_json) = resolve(path)?;
        let mut text = read_text(&file)?;
        if !is_json {
            let lower = lowercase.or_else(|| lowercase_hint(&file)).unwrap_or(true);
            text = vocab_txt_as_tokenizer_json(&text, lower)?;
        }
        let unparsable = |e: &dyn std::fmt::Display| {
            Error::InvalidTokenizer(format!("{} does not parse as a Hugging Face tokenizer.json ({e}); pass a valid tokenizer.json or a vocab.txt", file.display()))
        };
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| unparsable(&e))?;
        let mut hf: tokenizers::Tokenizer = text.parse().map_err(|e| unparsable(&e))?;
        hf.with_truncation(None).map_err(|e| Error::InvalidTokenizer(e.to_string()))?;
        hf.with_padding(None);
        let vocab = hf.get_vocab(true);
        // Whichever backend encodes, specials and words are the file's.
        let specials = specials::resolve(&Declarations { source: &file, json: &json, hf: &hf, vocab: &vocab })?;
        let max_id = vocab.values().copied().max().unwrap_or(0);
        let vocab_size = (hf.get_vocab_size(true) as u32).max(max_id.saturating_add(1));
        if vocab_size > MAX_VOCAB_SIZE {
            // The engine keeps tables of one entry per id (counts, weights, flags): an id of 4e9
            // would ask for tens of GB before the first batch.
            let (token, id) = vocab.iter().max_by_key(|(_, &id)| id).map(|(t, &id)| (t.as_str(), id)).unwrap_or(("", 0));
            return Err(Error::InvalidTokenizer(format!(
                "{} gives token {token:?} the id {id}; distilx supports ids below {MAX_VOCAB_SIZE} (2^24, far above any real vocabulary); \
                 renumber the vocabulary densely from 0",
                file.display())));
        }
        let words = WordRule::new(&json, &hf, vocab_size);
        let fast = match backend {
            Backend::Hf => None,
            _ => FastWordPiece::from_tokenizer_json(&text)?,
        };
        let inner = match (fast, backend) {
            (Some(f), _) => Inner::Fast(Box::new(f)),
            (None, Backend::WordPiece) => {
                return Err(Error::InvalidConfig(format!(
                    "backend=\"wordpiece\" cannot reproduce {} (not a BERT WordPiece tokenizer the fast path supports); use backend=\"auto\" or \"hf\"", file.display())))
            }
            (None, _) => Inner::Hf(Box::new(hf)),
        };
        Ok(Tokenizer { inner, source: file, vocab_size, specials, words, vocab })
    }

    /// "wordpiece" or "hf": the backend actually in use.
    pub fn backend_name(&self) -> &'static str {
        match self.inner {
            Inner::Fast(_) => "wordpiece",
            Inner::Hf(_) => "hf",
        }
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.vocab.get(token).copied()
    }

    /// "pre-tokenizer", "byte-level" or "metaspace": what a word is for whole-word masking.
    pub fn word_rule(&self) -> &'static str {
        self.words.name()
    }

    /// Append the ids of `text` (no special tokens) and, when asked, each token's word index.
    pub fn encode_into(&self, text: &str, ids: &mut Vec<u32>, word_ids: Option<&mut Vec<u32>>) -> Result<()> {
        match &self.inner {
            Inner::Fast(f) => {
                f.encode_into(text, ids, word_ids);
                Ok(())
            }
            Inner::Hf(hf) => {
                // encode_fast leaves every word id None: the slower encode when the rule reads them.
                let enc = if word_ids.is_some() && self.words.needs_pre_token_words() { hf.encode(text, false) } else { hf.encode_fast(text, false) }
                    .map_err(|e| Error::InvalidInput(format!("the tokenizer failed on a text: {e}")))?;
                ids.extend_from_slice(enc.get_ids());
                if let Some(w) = word_ids {
                    self.words.word_ids(enc.get_ids(), enc.get_word_ids(), w);
                }
                Ok(())
            }
        }
    }

    /// Encode many texts on `pool` (order kept). No special tokens.
    pub fn encode_batch(&self, texts: &[String], pool: &rayon::ThreadPool) -> Result<Vec<Vec<u32>>> {
        pool.install(|| {
            texts
                .par_iter()
                .map(|t| {
                    let mut ids = Vec::new();
                    self.encode_into(t, &mut ids, None)?;
                    Ok(ids)
                })
                .collect()
        })
    }
}

/// A thread pool for the engine's work; `None` = one thread per available core.
pub fn thread_pool(num_threads: Option<usize>) -> Result<rayon::ThreadPool> {
    crate::options::check_num_threads(num_threads)?;
    let n = num_threads.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("distilx-{i}"))
        .build()
        .map_err(|e| Error::InvalidConfig(format!("cannot start {n} threads: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::specials::Role;

    fn tok_json() -> Option<PathBuf> {
        std::env::var_os("DISTILX_TEST_TOKENIZER_JSON").map(PathBuf::from)
    }

    #[test]
    fn json_and_vocab_txt_agree_and_truncation_is_off() {
        let Some(json) = tok_json() else {
            eprintln!("DISTILX_TEST_TOKENIZER_JSON not set: scripts/test.sh sets it");
            return;
        };
        let a = Tokenizer::from_path(&json, None, Backend::Hf).unwrap();
        let b = Tokenizer::from_path(&json.with_file_name("vocab.txt"), Some(true), Backend::Hf).unwrap();
        let text = "Héllo, wörld! 東京 naïve café 🙂 ".repeat(40);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        a.encode_into(&text, &mut x, None).unwrap();
        b.encode_into(&text, &mut y, None).unwrap();
        assert!(x.len() > 128, "truncation must be off: {} ids", x.len());
        assert_eq!(x, y);
        for t in [&a, &b] {
            let s = &t.specials;
            let ids: Vec<Option<u32>> = [Role::Cls, Role::Sep, Role::Pad, Role::Mask, Role::Unk].iter().map(|&r| s.id(r)).collect();
            assert_eq!(ids, [Some(101), Some(102), Some(0), Some(103), Some(100)]);
            assert_eq!((s.prefix.as_slice(), s.suffix.as_slice()), ([101].as_slice(), [102].as_slice()));
        }
    }

    #[test]
    fn both_backends_give_the_same_words() {
        let Some(json) = tok_json() else {
            eprintln!("DISTILX_TEST_TOKENIZER_JSON not set: scripts/test.sh sets it");
            return;
        };
        let text = "Unbelievably, tokenization isn't hard: 東京 naïve-café [MASK] end.";
        let words = |backend| {
            let t = Tokenizer::from_path(&json, None, backend).unwrap();
            let (mut ids, mut words) = (Vec::new(), Vec::new());
            t.encode_into(text, &mut ids, Some(&mut words)).unwrap();
            (t.backend_name(), words)
        };
        let (fast, hf) = (words(Backend::Auto), words(Backend::Hf));
        assert_eq!((fast.0, hf.0), ("wordpiece", "hf"));
        assert!(fast.1.last() > Some(&10), "{:?}", fast.1);
        assert_eq!(fast.1, hf.1);
    }

    #[test]
    fn vocabulary_without_specials_is_rejected() {
        let d = std::env::temp_dir().join(format!("distilx-tok-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("vocab.txt");
        std::fs::write(&p, "[PAD]\n[UNK]\nhello\nworld\n").unwrap();
        let err = Tokenizer::from_path(&p, Some(true), Backend::Hf).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains("[CLS]") && msg.contains("[MASK]"), "{msg}");
        let bad = d.join("tokenizer.json");
        std::fs::write(&bad, "{not json").unwrap();
        assert!(matches!(Tokenizer::from_path(&bad, None, Backend::Auto), Err(Error::InvalidTokenizer(_))));
    }
}
