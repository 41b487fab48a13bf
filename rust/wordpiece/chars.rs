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
//!
//! The tables are filled without locks ([`LazyBox`]): a process forked while a thread was building
//! a block rebuilds it instead of waiting for a builder that does not exist in the child.


use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{NormalizedString, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use super::lazy::LazyBox;

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
    // Payloads were packed from valid chars, so the fallbacks never fire.
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
    blocks: Box<[LazyBox<Block>]>,
    /// The 128 ASCII entries copied out of block 0, for the fast path.
    pub ascii: [u32; 128],
}

impl CharTable {
    /// The shared table for `flags` (one per process and flag combination, never freed).
    pub fn shared(flags: NormFlags) -> &'static CharTable {
        static TABLES: [LazyBox<CharTable>; 16] = [const { LazyBox::new() }; 16];
        TABLES[flags.index()].get_or_init(|| {
            let blocks = (0..BLOCKS).map(|_| LazyBox::new()).collect::<Vec<_>>().into_boxed_slice();
            let mut table = CharTable { flags, blocks, ascii: [0; 128] };
            let mut ascii = [0u32; 128];
            ascii.copy_from_slice(&table.block(0).entries[..128]);
            table.ascii = ascii;
            table
        })
    }

    #[inline]
    pub fn block(&self, index: usize) -> &Block {
        self.blocks[index].get_or_init(|| build_block(self.flags, index))
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

/// Separator for batched reference calls: an ASCII starter that every BertNormalizer flag
/// combination leaves as it is, so per-char results can be cut apart again. A batch whose output
/// does not have exactly the expected separators (a char that normalizes to or contains '|') is
/// redone char by char.
const SEP: char = '|';

/// `f` applied to the string `items[0] SEP items[1] SEP ... SEP`, cut back into one output per
/// item; None when the separators did not survive one-to-one.
fn batched(items: &[String], f: impl Fn(&str) -> String) -> Option<Vec<String>> {
    let mut joined = String::new();
    for item in items {
        joined.push_str(item);
        joined.push(SEP);
    }
    let out = f(&joined);
    let parts: Vec<String> = out.split(SEP).map(str::to_owned).collect();
    (parts.len() == items.len() + 1 && parts.last().is_some_and(|p| p.is_empty()))
        .then(|| parts[..items.len()].to_vec())
}

fn build_block(flags: NormFlags, index: usize) -> Block {
    let normalizer = flags.normalizer();
    let chars: Vec<char> = (0..256u32).filter_map(|o| char::from_u32(index as u32 * 256 + o)).collect();
    // 1. Normalize the block's chars in one reference call.
    let items: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let outputs = batched(&items, |text| {
        let mut normalized = NormalizedString::from(text);
        let _ = normalizer.normalize(&mut normalized);
        normalized.get().to_owned()
    })
    .unwrap_or_else(|| chars.iter().map(|&c| reference_normalize(&normalizer, c)).collect());

    // 2. Classify (and, with NFD, check for non-starters) the distinct non-ASCII output chars.
    let mut distinct: Vec<char> = outputs.iter().flat_map(|o| o.chars()).filter(|d| !d.is_ascii()).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let classes = reference_classes(&distinct);
    let non_starters: Vec<bool> = if flags.strip_accents { non_starter_flags(&distinct) } else { vec![false; distinct.len()] };
    let info = |d: char| -> (Class, bool) {
        if d.is_ascii() {
            (ascii_class(d), false)
        } else {
            let i = distinct.binary_search(&d).expect("collected above");
            (classes[i], non_starters[i])
        }
    };

    let mut entries = [TAG_EMPTY; 256];
    let mut pool: Vec<(char, Class)> = Vec::new();
    for (&c, output) in chars.iter().zip(&outputs) {
        let kind = if output.chars().any(|d| info(d).1) {
            Kind::Rare
        } else {
            let mut it = output.chars();
            match (it.next(), it.next()) {
                (None, _) => Kind::Empty,
                (Some(d), None) => Kind::One(d, info(d).0),
                _ => {
                    let start = pool.len() as u16;
                    pool.extend(output.chars().map(|d| (d, info(d).0)));
                    Kind::Many { start, len: output.chars().count() as u8 }
                }
            }
        };
        entries[c as usize & 255] = pack(kind);
    }
    Block { entries, pool }
}

/// The pre-tokenizer classes of `chars` in one reference call on "a c1 a c2 a ... a" (no spaces):
/// a char no split covers is whitespace, a char that is a split of its own is punctuation, and
/// a word char merges with its 'a' neighbours.
fn reference_classes(chars: &[char]) -> Vec<Class> {
    let mut text = String::from("a");
    let mut offsets = Vec::with_capacity(chars.len());
    for &c in chars {
        offsets.push(text.len());
        text.push(c);
        text.push('a');
    }
    let mut pre = PreTokenizedString::from(text.as_str());
    if BertPreTokenizer.pre_tokenize(&mut pre).is_err() {
        return chars.iter().map(|&c| reference_class(c)).collect();
    }
    let splits: Vec<(usize, usize)> =
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte).into_iter().map(|(_, o, _)| o).collect();
    chars
        .iter()
        .zip(offsets)
        .map(|(&c, start)| {
            let end = start + c.len_utf8();
            // Splits are sorted and disjoint: find the one that could contain `start`.
            let i = splits.partition_point(|&(_, e)| e <= start);
            match splits.get(i) {
                Some(&(s, e)) if s <= start && end <= e => {
                    if (s, e) == (start, end) {
                        Class::Punct
                    } else {
                        Class::Word
                    }
                }
                _ => Class::Space,
            }
        })
        .collect()
}

/// [`is_non_starter`] for many chars with three batched NFD calls.
fn non_starter_flags(chars: &[char]) -> Vec<bool> {
    let nfd_all = |items: Vec<String>| batched(&items, nfd);
    let own = nfd_all(chars.iter().map(|c| c.to_string()).collect());
    let before = nfd_all(chars.iter().map(|c| format!("{c}\u{334}")).collect());
    let after = nfd_all(chars.iter().map(|c| format!("\u{301}{c}")).collect());
    match (own, before, after) {
        (Some(own), Some(before), Some(after)) => (0..chars.len())
            .map(|i| before[i] != format!("{}\u{334}", own[i]) || after[i] != format!("\u{301}{}", own[i]))
            .collect(),
        _ => chars.iter().map(|&c| is_non_starter(c)).collect(),
    }
}

fn ascii_class(c: char) -> Class {
    if c.is_whitespace() {
        Class::Space
    } else if c.is_ascii_punctuation() {
        Class::Punct
    } else {
        Class::Word
    }
}
