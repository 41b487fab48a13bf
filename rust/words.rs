//! What a "word" is for whole-word masking, by tokenizer kind.
//!
//! - Tokenizers that mark where words start in their tokens — byte-level BPE (a `ByteLevel`
//!   pre-tokenizer or decoder: RoBERTa, ModernBERT; a space is `Ġ`, a newline `Ċ`) and
//!   SentencePiece-style ones (a `Metaspace` pre-tokenizer or decoder: XLM-R, DeBERTa-v3; a space
//!   is `▁`): a token starts a word when its text begins with whitespace, unless the token before
//!   it is all whitespace (a lone `Ġ`/`▁` belongs to the word it precedes); a document's first
//!   token starts a word. A word is thus what whitespace delimits, punctuation attached — the rule
//!   fairseq's whole-word masking applies to RoBERTa and XLM-R (a token starting with a space /
//!   `▁` begins a word). The crate's word ids (one per pre-token) are not used for these: for
//!   ByteLevel they make punctuation and contractions words of their own ("don" "'t", "world" "!").
//! - Every other tokenizer (WordPiece above all): the pre-tokenizer's words, i.e. the word ids the
//!   `tokenizers` crate gives each token (the fast WordPiece gives the same): for BERT a word and
//!   its `##` continuations, each punctuation mark a word of its own.
//!
//! The whitespace rule needs two bits per id (text begins with whitespace, text is only
//! whitespace), computed once from the vocabulary.

use serde_json::Value;

/// Per-id flags of the whitespace rule.
const BEGINS_WITH_SPACE: u8 = 1;
const ONLY_SPACE: u8 = 2;

pub enum WordRule {
    /// The pre-tokenizer's words (the tokenizer's own word ids).
    PreTokens,
    /// A word starts at whitespace (see the module doc): flags per id.
    Whitespace { kind: &'static str, flags: Vec<u8> },
}

/// How a tokenizer writes whitespace inside its tokens.
enum Marker {
    /// GPT-2's byte-to-character map: every byte is one printable character.
    ByteLevel,
    /// SentencePiece's: a space is this character (`▁`).
    Metaspace(char),
}

/// The marker a pre-tokenizer or decoder (possibly a Sequence) declares.
fn marker(component: &Value) -> Option<Marker> {
    match component.get("type")?.as_str()? {
        "ByteLevel" => Some(Marker::ByteLevel),
        "Metaspace" => Some(Marker::Metaspace(component.get("replacement").and_then(Value::as_str).and_then(|s| s.chars().next()).unwrap_or('▁'))),
        "Sequence" => ["pretokenizers", "decoders"]
            .iter()
            .filter_map(|key| component.get(*key)?.as_array())
            .flatten()
            .find_map(marker),
        _ => None,
    }
}

/// GPT-2's `bytes_to_unicode`, reversed: the printable Latin-1 bytes stand for themselves, the
/// others (controls, space, …) are the characters U+0100… in byte order.
fn byte_level_decoder() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut shifted = 0u32;
    (0..=255u8)
        .map(|b| {
            if printable(b) {
                (b as char, b)
            } else {
                shifted += 1;
                (char::from_u32(255 + shifted).expect("U+0100..U+0143 are characters"), b)
            }
        })
        .collect()
}

/// The flags of one token's text (with whitespace already written as whitespace).
fn flags_of(text: &str) -> u8 {
    let mut chars = text.chars().peekable();
    let begins = chars.peek().is_some_and(|c| c.is_whitespace());
    let only = begins && chars.all(char::is_whitespace);
    (begins as u8 * BEGINS_WITH_SPACE) | (only as u8 * ONLY_SPACE)
}

impl WordRule {
    /// The rule for a tokenizer: its tokenizer.json (parsed) and the crate's tokenizer for the
    /// token strings of ids `0..vocab_size`.
    pub fn new(json: &Value, hf: &tokenizers::Tokenizer, vocab_size: u32) -> WordRule {
        let Some(marker) = ["pre_tokenizer", "decoder"].iter().find_map(|k| json.get(*k).and_then(marker)) else {
            return WordRule::PreTokens;
        };
        let bytes = byte_level_decoder();
        let text = |token: &str| -> String {
            match marker {
                Marker::ByteLevel => {
                    // Characters outside the map (an added token's) stand for their own UTF-8.
                    let mut raw = Vec::with_capacity(token.len());
                    for c in token.chars() {
                        match bytes.get(&c) {
                            Some(&b) => raw.push(b),
                            None => raw.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                    // A token holding part of a multi-byte character decodes to U+FFFD: not whitespace.
                    String::from_utf8_lossy(&raw).into_owned()
                }
                Marker::Metaspace(space) => token.replace(space, " "),
            }
        };
        let flags = (0..vocab_size).map(|id| hf.id_to_token(id).map_or(0, |t| flags_of(&text(&t)))).collect();
        let kind = match marker {
            Marker::ByteLevel => "byte-level",
            Marker::Metaspace(_) => "metaspace",
        };
        WordRule::Whitespace { kind, flags }
    }

    /// Whether `word_ids` reads the tokenizer's own word ids (which the crate computes only when
    /// it tracks offsets: `encode`, not `encode_fast`).
    pub fn needs_pre_token_words(&self) -> bool {
        matches!(self, WordRule::PreTokens)
    }

    /// "pre-tokenizer", "byte-level" or "metaspace": the rule in use.
    pub fn name(&self) -> &'static str {
        match self {
            WordRule::PreTokens => "pre-tokenizer",
            WordRule::Whitespace { kind, .. } => kind,
        }
    }

    /// Append the word index (from 0) of each of a document's `ids`; `pre_token_words` are the
    /// tokenizer's own word ids for them (None for a token outside any word: it continues the
    /// previous word).
    pub fn word_ids(&self, ids: &[u32], pre_token_words: &[Option<u32>], out: &mut Vec<u32>) {
        match self {
            WordRule::PreTokens => {
                let mut last = 0u32;
                out.extend(pre_token_words.iter().map(|w| {
                    if let Some(w) = w {
                        last = *w;
                    }
                    last
                }));
            }
            WordRule::Whitespace { flags, .. } => {
                let (mut word, mut after_space) = (0u32, false);
                for (i, &id) in ids.iter().enumerate() {
                    let f = flags.get(id as usize).copied().unwrap_or(BEGINS_WITH_SPACE);
                    if i > 0 && f & BEGINS_WITH_SPACE != 0 && !after_space {
                        word += 1;
                    }
                    after_space = f & ONLY_SPACE != 0;
                    out.push(word);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_map_is_the_crates_alphabet() {
        let ours: std::collections::HashSet<char> = byte_level_decoder().into_keys().collect();
        let crate_alphabet: std::collections::HashSet<char> = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet().into_iter().collect();
        assert_eq!(ours, crate_alphabet);
        let map = byte_level_decoder();
        assert_eq!((map[&'Ġ'], map[&'Ċ'], map[&'ĉ'], map[&'a']), (b' ', b'\n', b'\t', b'a'));
    }

    /// A WordLevel tokenizer over `tokens` with the given pre-tokenizer (only the vocabulary and
    /// the marker matter to the rule).
    fn rule(tokens: &[&str], pre_tokenizer: Value) -> WordRule {
        let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), Value::from(i))).collect();
        let json = serde_json::json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": pre_tokenizer, "post_processor": null, "decoder": null,
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": tokens[0]}});
        let hf: tokenizers::Tokenizer = json.to_string().parse().unwrap();
        WordRule::new(&json, &hf, tokens.len() as u32)
    }

    fn words(rule: &WordRule, ids: &[u32]) -> Vec<u32> {
        let mut out = Vec::new();
        rule.word_ids(ids, &vec![None; ids.len()], &mut out);
        out
    }

    #[test]
    fn byte_level_words_start_at_whitespace_with_punctuation_attached() {
        let seq = serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]});
        let r = rule(&["<unk>", "Hel", "lo", ",", "Ġworld", "!", "Ġ", "Ġst", "Ċ", "now", "æĿ", "±"], seq);
        assert_eq!(r.name(), "byte-level");
        // "Hello, world! [2 spaces]st\nnow 東" : "Hello," | "world!" | " st" | "\nnow" | " 東" (2 byte tokens)
        assert_eq!(words(&r, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 6, 10, 11]), vec![0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 4]);
    }

    #[test]
    fn metaspace_words_start_at_the_marker() {
        let meta = serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true});
        let r = rule(&["<unk>", "▁H", "el", ",", "▁", "東京", "▁x", "\n", "no"], meta);
        assert_eq!(r.name(), "metaspace");
        assert_eq!(words(&r, &[1, 2, 3, 4, 5, 6, 4, 4, 6, 7, 8]), vec![0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4]);
    }

    #[test]
    fn other_tokenizers_use_their_pre_token_words() {
        let r = rule(&["[UNK]", "a", "##b"], serde_json::json!({"type": "BertPreTokenizer"}));
        assert_eq!(r.name(), "pre-tokenizer");
        let mut out = Vec::new();
        r.word_ids(&[1, 2, 1], &[Some(0), None, Some(1)], &mut out);
        assert_eq!(out, vec![0, 0, 1]);
    }
}
