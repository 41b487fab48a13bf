//! libFuzzer target: the fast WordPiece path must give the same ids and word ids as the
//! tokenizers crate on any UTF-8 input, for the bert-base-uncased tokenizer and a cased,
//! accent-stripping variant of it. Run with `bash fuzz/run.sh [SECONDS]`.
#![no_main]

use std::str::FromStr;
use std::sync::OnceLock;

use distilx::wordpiece::FastWordPiece;
use libfuzzer_sys::fuzz_target;
use tokenizers::Tokenizer;

struct Pair {
    fast: FastWordPiece,
    reference: Tokenizer,
}

fn pairs() -> &'static [Pair] {
    static PAIRS: OnceLock<Vec<Pair>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let path = std::env::var("DISTILX_TEST_TOKENIZER_JSON")
            .expect("set DISTILX_TEST_TOKENIZER_JSON to a bert-base-uncased tokenizer.json (fuzz/run.sh does)");
        let text = std::fs::read_to_string(&path).expect("read tokenizer.json");
        let base: serde_json::Value = serde_json::from_str(&text).expect("tokenizer.json parses");
        let mut cased = base.clone();
        cased["normalizer"] = serde_json::json!({"type": "BertNormalizer", "clean_text": true,
            "handle_chinese_chars": true, "strip_accents": true, "lowercase": false});
        [base, cased]
            .iter()
            .map(|json| {
                let json = json.to_string();
                let fast = FastWordPiece::from_tokenizer_json(&json).unwrap().expect("BERT WordPiece");
                let mut reference = Tokenizer::from_str(&json).unwrap();
                reference.with_truncation(None).unwrap();
                reference.with_padding(None);
                Pair { fast, reference }
            })
            .collect()
    })
}

/// Bytes -> text. Valid UTF-8 is used as is (the seeds are real lines); otherwise every 3 bytes
/// are one code point anywhere in Unicode, so mutations reach every block, not only the ones
/// valid UTF-8 edits tend to produce.
fn text_of(data: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(data) {
        return text.to_owned();
    }
    data.chunks(3)
        .filter_map(|c| {
            let v = c.iter().fold(0u32, |acc, &b| acc << 8 | b as u32);
            // Bias towards assigned planes: most of the space above U+30000 is unassigned.
            char::from_u32(if v & 0x80_0000 != 0 { v % 0x110000 } else { v % 0x30000 })
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let owned = text_of(data);
    let text = owned.as_str();
    for pair in pairs() {
        let mut ids = Vec::new();
        let mut words = Vec::new();
        pair.fast.encode_into(text, &mut ids, Some(&mut words));
        let enc = pair.reference.encode(text, false).unwrap();
        let ref_words: Vec<u32> = enc.get_word_ids().iter().map(|w| w.unwrap()).collect();
        assert_eq!(ids, enc.get_ids(), "ids differ on {text:?}");
        assert_eq!(words, ref_words, "word ids differ on {text:?}");
    }
});
