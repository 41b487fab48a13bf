//! Whole-corpus passes, each one read of a [`Corpus`] through the same document sources the stream
//! reads (so they count exactly what it will read): token counts for frequency masking, rows per
//! rank for equal batch counts, and building a cache.

use std::path::Path;

use crate::cache::{tokenizer_hash, Writer};
use crate::corpus::ReadStats;
use crate::error::{Error, Result};
use crate::sequences::{SeqConfig, SequenceBuilder};
use crate::source::{Corpus, Shard, Tokenizing};

/// How often each id occurs in the corpus (every shard), for frequency masking.
pub fn count_tokens(corpus: &Corpus, tokenizing: &Tokenizing) -> Result<Vec<u64>> {
    let mut counts = vec![0u64; tokenizing.tokenizer.vocab_size as usize];
    corpus.for_each_doc(tokenizing, false, |d| {
        for id in d.ids {
            if let Some(c) = counts.get_mut(id as usize) {
                *c += 1;
            }
        }
        Ok(())
    })?;
    Ok(counts)
}

/// The rows each of `world` ranks gets in one epoch. Rows do not depend on the documents' order,
/// so one in-order read counts every epoch (and a cache's shuffled epochs).
pub fn count_rows(corpus: &Corpus, tokenizing: &Tokenizing, seq: &SeqConfig, world: u64) -> Result<Vec<u64>> {
    let mut builders: Vec<SequenceBuilder> = (0..world).map(|_| SequenceBuilder::new(SeqConfig { word_starts: false, ..seq.clone() })).collect();
    let mut counts = vec![0u64; world as usize];
    let drain = |b: &mut SequenceBuilder, c: &mut u64, end: bool| {
        while b.next_row(end).is_some() {
            *c += 1;
        }
    };
    corpus.for_each_doc(tokenizing, false, |d| {
        let r = Shard::owner(d.pos.index, world) as usize;
        builders[r].push(d, 0);
        drain(&mut builders[r], &mut counts[r], false);
        Ok(())
    })?;
    for (b, c) in builders.iter_mut().zip(counts.iter_mut()) {
        drain(b, c, true);
    }
    Ok(counts)
}

/// What building a cache met.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub read: ReadStats,
    pub documents: u64,
    pub tokens: u64,
}

/// Tokenize `corpus` once into a cache at `path` (written to a temporary name, then renamed).
pub fn build_cache(corpus: &Corpus, tokenizing: &Tokenizing, path: &Path, word_starts: bool) -> Result<BuildReport> {
    let tok = &tokenizing.tokenizer;
    let mut writer = Writer::create(path, tok.vocab_size, word_starts)?;
    let read = corpus.for_each_doc(tokenizing, word_starts, |d| writer.push(&d.ids, &d.word_ids))?;
    if writer.documents() == 0 {
        return Err(Error::InvalidInput("the corpus holds no document (empty files?); nothing to cache".into()));
    }
    let (documents, tokens) = writer.finish(tokenizer_hash(tok)?, &tokenizing.cancel)?;
    Ok(BuildReport { read, documents, tokens })
}
