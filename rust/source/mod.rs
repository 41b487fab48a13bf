//! Where tokenized documents come from. A [`DocSource`] yields one shard's documents in rounds, in
//! a fixed order, and can restart at any document it yielded. The kinds of corpus are the arms of
//! [`Corpus`]: raw files, read and tokenized as they are needed by [`text::TextSource`]'s threads,
//! or a pre-tokenized cache ([`cache::CacheSource`]). Every consumer reads through these sources —
//! the stream's producer and the whole-corpus passes (token counts, row counts, cache building,
//! `crate::passes`) — so they all see the same documents.
//!
//! A new kind of corpus (e.g. texts handed over from Python) is one module implementing
//! [`DocSource`] plus one arm in [`Corpus::open`]. A new file format (Parquet, Arrow) is not a new
//! source: it is a new reader in `crate::corpus`, and [`text::TextSource`] tokenizes its documents.

mod cache;
pub(crate) mod text;

use std::sync::Arc;

use crate::cache::Cache;
use crate::corpus::{expand_inputs, CorpusFile, DocPos, ReadOptions, ReadStats};
use crate::error::Result;
use crate::sequences::TokDoc;
use crate::tokenize::Tokenizer;

/// A stream of tokenized documents.
pub trait DocSource: Send {
    /// Continue from `at`: a document position this source yielded, or the default (the start).
    fn seek(&mut self, at: DocPos) -> Result<()>;
    /// Append the next round of documents to `out`; false at the end (nothing appended).
    fn next_docs(&mut self, out: &mut Vec<TokDoc>) -> Result<bool>;
    /// What reading met so far (cumulative since the source was made).
    fn read_stats(&self) -> ReadStats;
}

/// The documents one rank reads: document `i` (its global index over the corpus, in order) belongs
/// to rank `i % world` — disjoint, covering, and the same for every epoch and every kind of corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: u64,
    pub world: u64,
}

impl Shard {
    /// Every document (one rank of one).
    pub const ALL: Shard = Shard { rank: 0, world: 1 };

    /// The rank, among `world`, that owns document `index`.
    pub fn owner(index: u64, world: u64) -> u64 {
        index % world
    }

    pub fn owns(&self, index: u64) -> bool {
        Shard::owner(index, self.world) == self.rank
    }
}

/// Which documents to read, in which order, with what.
#[derive(Clone, Copy, Debug)]
pub struct Want {
    pub shard: Shard,
    /// (seed, epoch) to shuffle the documents by, where the corpus allows random access (a cache);
    /// files are read in order (the stream shuffles rows inside windows).
    pub shuffle: Option<(u64, u64)>,
    /// Each token's word index (whole-word masking, word-start bits of a cache).
    pub word_ids: bool,
}

/// What reading raw text needs: the tokenizer, the reading options and the threads to tokenize on.
#[derive(Clone)]
pub struct Tokenizing {
    pub tokenizer: Arc<Tokenizer>,
    pub read: ReadOptions,
    pub pool: Arc<rayon::ThreadPool>,
}

/// A corpus: where documents come from.
pub enum Corpus {
    Files(Vec<CorpusFile>),
    Cache(Arc<Cache>),
}

impl Corpus {
    /// The files, directories and globs of `inputs`, expanded (each file opened once, so a missing
    /// or unreadable one fails now).
    pub fn files(inputs: &[String]) -> Result<Self> {
        Ok(Corpus::Files(expand_inputs(inputs)?))
    }

    /// A source over this corpus: the one place that dispatches on the kind of corpus.
    pub fn open(&self, tokenizing: &Tokenizing, want: Want) -> Box<dyn DocSource> {
        match self {
            Corpus::Files(files) => Box::new(text::TextSource::new(files.clone(), tokenizing.clone(), want)),
            Corpus::Cache(c) => Box::new(cache::CacheSource::new(c.clone(), want)),
        }
    }

    /// Read the whole corpus (every shard, in order), handing each document to `each`.
    pub fn for_each_doc(&self, tokenizing: &Tokenizing, word_ids: bool, mut each: impl FnMut(TokDoc) -> Result<()>) -> Result<ReadStats> {
        let mut source = self.open(tokenizing, Want { shard: Shard::ALL, shuffle: None, word_ids });
        let mut docs = Vec::new();
        while source.next_docs(&mut docs)? {
            for d in docs.drain(..) {
                each(d)?;
            }
        }
        Ok(source.read_stats())
    }
}
