//! What BertNormalizer + BertPreTokenizer do to each character, as lazily built lookup tables.
//!
//! Exactness is the contract, and the `tokenizers` crate's own Unicode tables (its pinned
//! `unicode_categories` and `unicode-normalization-alignments` versions) decide what is a control
//! char, a mark, punctuation, or how a char decomposes. Rather than copying those tables (and
//! drifting from them), each table entry is *computed by calling the tokenizers crate itself* on
//! that one character, the first time any character of its 256-char block is met. The result is
//! identical to the reference by construction, and the hot loop is one array load per char.
//!
//! Why per-char results compose into the whole-string result: every BertNormalizer step is
//! char-local (clean_text filters/maps a char, CJK padding maps a char to " c ", lowercase maps a
//! char to its `to_lowercase` chars) except NFD's canonical reordering, which permutes runs of
//! non-starters (combining class != 0). Nonspacing marks (Mn) are dropped right after NFD, so the
//! reordering can only show when a *surviving* non-starter is emitted. Such chars (a few dozen,
//! e.g. U+302E, U+1D165) are marked [`Kind::Rare`]: a text containing one is handed whole to the
//! tokenizers crate.

use std::sync::{Arc, Mutex, OnceLock};

use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

/// How the pre-tokenizer treats one (already normalized) char.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Class {
    /// `char::is_whitespace`: ends the current word and is dropped.
    Space = 0,
    /// BERT punctuation: a word of its own.
    Punct = 1,
    /// Anything else: part of the current word.
    Word = 2,
}

/// What the normalizer turns one input char into (packed into a `u32` table entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The char is removed (control char, nonspacing mark with strip_accents, ...).
    Empty,
    /// Exactly one output char of the given class.
    One(char, Class),
    /// Several output chars: `pool[start..start + len]` of the block.
    Many { start: u16, len: u8 },
    /// Emits a non-starter that NFD could reorder against its neighbours: use the reference.
    Rare,
}

const TAG_EMPTY: u32 = 0;
const TAG_SPACE: u32 = 1;
const TAG_PUNCT: u32 = 2;
const TAG_WORD: u32 = 3;
const TAG_MANY: u32 = 4;
const TAG_RARE: u32 = 5;

#[inline]
fn pack(kind: Kind) -> u32 {
    match kind {
        Kind::Empty => TAG_EMPTY,
        Kind::One(c, Class::Space) => (c as u32) << 3 | TAG_SPACE,
        Kind::One(c, Class::Punct) => (c as u32) << 3 | TAG_PUNCT,
        Kind::One(c, Class::Word) => (c as u32) << 3 | TAG_WORD,
        Kind::Many { start, len } => ((start as u32) << 8 | len as u32) << 3 | TAG_MANY,
        Kind::Rare => TAG_RARE,
    }
}

#[inline]
pub fn unpack(entry: u32) -> Kind {
    // SAFETY of from_u32_unchecked is not needed: payloads were made from valid chars.
    let payload = entry >> 3;
    match entry & 7 {
        TAG_EMPTY => Kind::Empty,
        TAG_SPACE => Kind::One(char::from_u32(payload).unwrap_or(' '), Class::Space),
        TAG_PUNCT => Kind::One(char::from_u32(payload).unwrap_or(' '), Class::Punct),
        TAG_WORD => Kind::One(char::from_u32(payload).unwrap_or(' '), Class::Word),
        TAG_MANY => Kind::Many { start: (payload >> 8) as u16, len: payload as u8 },
        _ => Kind::Rare,
    }
}

/// The BertNormalizer flags that change per-char results (strip_accents already resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NormFlags {
    pub clean_text: bool,
    pub handle_chinese_chars: bool,
    pub strip_accents: bool,
    pub lowercase: bool,
}

impl NormFlags {
    fn index(self) -> usize {
        self.clean_text as usize
            | (self.handle_chinese_chars as usize) << 1
            | (self.strip_accents as usize) << 2
            | (self.lowercase as usize) << 3
    }

    fn normalizer(self) -> BertNormalizer {
        BertNormalizer::new(self.clean_text, self.handle_chinese_chars, Some(self.strip_accents), self.lowercase)
    }
}

/// 256 consecutive code points: packed entries plus the outputs of the multi-char ones.
pub struct Block {
    pub entries: [u32; 256],
    pub pool: Vec<(char, Class)>,
}

const BLOCKS: usize = 0x110000 / 256;

/// The per-char tables of one flag combination, filled block by block on first use.
pub struct CharTable {
    flags: NormFlags,
    blocks: Box<[OnceLock<Box<Block>>]>,
    /// The 128 ASCII entries copied out of block 0, for the fast path.
    pub ascii: [u32; 128],
}

impl CharTable {
    /// The shared table for `flags` (one per process and flag combination).
    pub fn shared(flags: NormFlags) -> Arc<CharTable> {
        static TABLES: OnceLock<Mutex<[Option<Arc<CharTable>>; 16]>> = OnceLock::new();
        let tables = TABLES.get_or_init(|| Mutex::new(Default::default()));
        let mut tables = tables.lock().unwrap_or_else(|poison| poison.into_inner());
        tables[flags.index()]
            .get_or_insert_with(|| {
                let blocks = (0..BLOCKS).map(|_| OnceLock::new()).collect::<Vec<_>>().into_boxed_slice();
                let mut table = CharTable { flags, blocks, ascii: [0; 128] };
                let block0 = table.block(0);
                let mut ascii = [0u32; 128];
                ascii.copy_from_slice(&block0.entries[..128]);
                table.ascii = ascii;
                Arc::new(table)
            })
            .clone()
    }

    #[inline]
    pub fn block(&self, index: usize) -> &Block {
        self.blocks[index].get_or_init(|| Box::new(build_block(self.flags, index)))
    }

    /// The normalization of char `c` (computed on first use of its block).
    #[inline]
    pub fn lookup(&self, c: char) -> (Kind, &Block) {
        let cp = c as usize;
        let block = self.block(cp >> 8);
        (unpack(block.entries[cp & 255]), block)
    }
}

/// The pre-tokenizer's class of one char, asked of the tokenizers crate: `"a" + c` splits into
/// nothing extra (space), two words (punctuation) or stays one word.
pub fn reference_class(c: char) -> Class {
    let text = format!("a{c}");
    let mut pre = PreTokenizedString::from(text.as_str());
    if BertPreTokenizer.pre_tokenize(&mut pre).is_err() {
        return Class::Word;
    }
    let splits = pre.get_splits(OffsetReferential::Original, OffsetType::Byte);
    match splits.as_slice() {
        [only] if only.0 == "a" => Class::Space,
        [_, _] => Class::Punct,
        _ => Class::Word,
    }
}

/// The BertNormalizer output for the one-char string `c`.
pub fn reference_normalize(normalizer: &BertNormalizer, c: char) -> String {
    let mut normalized = NormalizedString::from(c.to_string());
    // BertNormalizer::normalize cannot fail; an error would only leave `c` as it is.
    let _ = normalizer.normalize(&mut normalized);
    normalized.get().to_owned()
}

fn nfd(text: &str) -> String {
    let mut normalized = NormalizedString::from(text);
    normalized.nfd();
    normalized.get().to_owned()
}

/// Whether `c` is a non-starter (canonical combining class != 0) for the tokenizers crate's NFD.
/// U+0334 has class 1 and U+0301 class 230: a char with class > 1 is moved before a following
/// U+0334, a char with class < 230 before a preceding U+0301; together they catch every class != 0.
fn is_non_starter(c: char) -> bool {
    let own = nfd(&c.to_string());
    nfd(&format!("{c}\u{334}")) != format!("{own}\u{334}") || nfd(&format!("\u{301}{c}")) != format!("\u{301}{own}")
}

fn build_block(flags: NormFlags, index: usize) -> Block {
    let normalizer = flags.normalizer();
    let mut entries = [TAG_EMPTY; 256];
    let mut pool: Vec<(char, Class)> = Vec::new();
    for offset in 0..256 {
        let Some(c) = char::from_u32((index * 256 + offset) as u32) else {
            continue; // surrogates never occur in a &str
        };
        let output = reference_normalize(&normalizer, c);
        let kind = if flags.strip_accents && !c.is_ascii() && output.chars().any(is_non_starter) {
            Kind::Rare
        } else {
            let mut chars = output.chars();
            match (chars.next(), chars.next()) {
                (None, _) => Kind::Empty,
                (Some(d), None) => Kind::One(d, class_of(d)),
                _ => {
                    let start = pool.len() as u16;
                    pool.extend(output.chars().map(|d| (d, class_of(d))));
                    Kind::Many { start, len: output.chars().count() as u8 }
                }
            }
        };
        entries[offset] = pack(kind);
    }
    Block { entries, pool }
}

/// Class of a normalized char: ASCII by rule (checked against the reference in the tests),
/// everything else by asking the reference.
fn class_of(c: char) -> Class {
    if c.is_ascii() {
        if c.is_whitespace() {
            Class::Space
        } else if c.is_ascii_punctuation() {
            Class::Punct
        } else {
            Class::Word
        }
    } else {
        reference_class(c)
    }
}
