//! Fixtures for the unit tests: a small real WordPiece tokenizer (a vocab.txt written to a
//! temporary folder) and corpora of documents made of its words, so the stream, source and cache
//! tests need no downloaded asset.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::splitmix::Rng;
use crate::tokenize::{Backend, Tokenizer};

/// A fresh, empty temporary folder for test `name`.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("distilx-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Words of the test vocabulary: "w0" … "w299" (one token each), and "un" + "##able" (so
/// "unable" is one word of two tokens: whole-word masking has something to group).
const WORDS: usize = 300;

/// The test tokenizer: BERT's five specials, then the words (ids 5 …).
pub fn tokenizer(dir: &Path) -> Arc<Tokenizer> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "un", "##able"].iter().map(|s| s.to_string()).collect();
    vocab.extend((0..WORDS).map(|i| format!("w{i}")));
    let path = dir.join("vocab.txt");
    std::fs::write(&path, vocab.join("\n") + "\n").unwrap();
    Arc::new(Tokenizer::from_path(&path, Some(true), Backend::Auto).unwrap())
}

/// `n` documents of 3 to ~150 words (a few longer than a 32-token row, some "unable"s), seeded.
pub fn documents(n: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed, 0, 0);
    (0..n)
        .map(|_| {
            let len = 3 + if rng.below(5) == 0 { rng.below(150) } else { rng.below(30) };
            (0..len)
                .map(|_| if rng.below(10) == 0 { "unable".to_string() } else { format!("w{}", rng.below(WORDS)) })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Write `docs` one per line to `dir/name`; returns the path as a corpus input.
pub fn write_lines(dir: &Path, name: &str, docs: &[String]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, docs.join("\n") + "\n").unwrap();
    path.to_string_lossy().into_owned()
}
