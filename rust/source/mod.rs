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
use crate::cancel::Cancel;
use crate::corpus::{check_files, expand_inputs, CorpusFile, DocPos, Feed, ReadOptions, ReadStats};
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

/// What reading a corpus needs: the tokenizer, the reading options, the threads to tokenize on and
/// the caller's cancel flag (reading stops with `Error::Interrupted` soon after it is set).
#[derive(Clone)]
pub struct Tokenizing {
    pub tokenizer: Arc<Tokenizer>,
    pub read: ReadOptions,
    pub pool: Arc<rayon::ThreadPool>,
    pub cancel: Cancel,
}

/// A corpus: where documents come from.
pub enum Corpus {
    Files(Vec<CorpusFile>),
    Cache(Arc<Cache>),
}

/// One input of a corpus: a path (file, directory or glob) or texts handed over by the caller.
pub enum Input {
    Path(String),
    Feed(Arc<dyn Feed>),
}

impl Corpus {
    /// The files, directories and globs of `inputs`, expanded (each file opened once, so a missing
    /// or unreadable one fails now).
    pub fn files(inputs: &[String]) -> Result<Self> {
        Ok(Corpus::Files(expand_inputs(inputs)?))
    }

    /// Paths and feeds, in order: each run of paths expanded as by [`Corpus::files`].
    pub fn inputs(inputs: Vec<Input>) -> Result<Self> {
        let (mut files, mut paths) = (Vec::new(), Vec::new());
        for input in inputs {
            match input {
                Input::Path(p) => paths.push(p),
                Input::Feed(feed) => {
                    if !paths.is_empty() {
                        files.extend(expand_inputs(&std::mem::take(&mut paths))?);
                    }
                    files.push(CorpusFile::feed(feed));
                }
            }
        }
        if !paths.is_empty() || files.is_empty() {
            // (expand_inputs refuses an empty list, with the message that says what to pass)
            files.extend(expand_inputs(&paths)?);
        }
        Ok(Corpus::Files(files))
    }

    /// Check what reading will need of files with a schema (Parquet, Arrow: the file parses, the
    /// text column exists and holds strings), before any batch.
    pub fn check(&self, read: &ReadOptions) -> Result<()> {
        match self {
            Corpus::Files(files) => check_files(files, read),
            Corpus::Cache(_) => Ok(()),
        }
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
        self.check(&tokenizing.read)?;
        let mut source = self.open(tokenizing, Want { shard: Shard::ALL, shuffle: None, word_ids });
        let mut docs = Vec::new();
        while source.next_docs(&mut docs)? {
            tokenizing.cancel.check()?;
            for d in docs.drain(..) {
                each(d)?;
            }
        }
        Ok(source.read_stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::DocPos;
    use crate::passes::build_cache;
    use crate::testutil::{documents, tmpdir, tokenizer, write_lines};
    use crate::tokenize::thread_pool;

    fn read_all(source: &mut dyn DocSource) -> Vec<TokDoc> {
        let mut out = Vec::new();
        while source.next_docs(&mut out).unwrap() {}
        out
    }

    fn key(docs: &[TokDoc]) -> Vec<(u64, Vec<u32>, Vec<u32>)> {
        docs.iter().map(|d| (d.pos.index, d.ids.clone(), d.word_ids.clone())).collect()
    }

    #[test]
    fn files_and_their_cache_give_the_same_shards_and_resume_anywhere() {
        let dir = tmpdir("source");
        let tok = tokenizer(&dir);
        let docs = documents(500, 4);
        let inputs = vec![write_lines(&dir, "a.txt", &docs[..200]), write_lines(&dir, "b.txt", &docs[200..])];
        let tokenizing = Tokenizing { tokenizer: tok.clone(), read: ReadOptions::default(), pool: Arc::new(thread_pool(Some(2)).unwrap()), cancel: Cancel::new() };
        let files = Corpus::files(&inputs).unwrap();
        build_cache(&files, &tokenizing, &dir.join("c.dxc"), true).unwrap();
        let cache = Corpus::Cache(Arc::new(Cache::open(&dir.join("c.dxc"), Some(&tok), true, &Cancel::new()).unwrap()));
        let mut covered = Vec::new();
        for rank in 0..3 {
            let want = Want { shard: Shard { rank, world: 3 }, shuffle: None, word_ids: true };
            let from_files = read_all(&mut *files.open(&tokenizing, want));
            let from_cache = read_all(&mut *cache.open(&tokenizing, want));
            assert_eq!(key(&from_files), key(&from_cache), "rank {rank}");
            assert!(from_files.iter().all(|d| d.pos.index % 3 == rank));
            covered.extend(from_files.iter().map(|d| d.pos.index));
            // A seek to any document a source yielded continues exactly from it.
            for corpus in [&files, &cache] {
                let all = read_all(&mut *corpus.open(&tokenizing, want));
                for k in [0, 1, 17, all.len() / 2, all.len() - 1] {
                    let mut s = corpus.open(&tokenizing, want);
                    s.seek(all[k].pos).unwrap();
                    assert_eq!(key(&read_all(&mut *s)), key(&all[k..]), "rank {rank}, from document {k}");
                }
            }
        }
        covered.sort();
        assert_eq!(covered, (0..500).collect::<Vec<u64>>(), "the shards cover the corpus once");
        // A shuffled cache shard: the same documents in another order, a new one each epoch.
        let shuffled = |epoch| key(&read_all(&mut *cache.open(&tokenizing, Want { shard: Shard { rank: 1, world: 3 }, shuffle: Some((0, epoch)), word_ids: false })));
        let (e0, e1) = (shuffled(0), shuffled(1));
        assert_ne!(e0, e1);
        let (mut s0, mut s1) = (e0.clone(), e1.clone());
        s0.sort();
        s1.sort();
        assert_eq!(s0, s1);
        // A source at its end stays there; a default position is the start.
        let mut s = files.open(&tokenizing, Want { shard: Shard::ALL, shuffle: None, word_ids: false });
        assert_eq!(read_all(&mut *s).len(), 500);
        assert!(!s.next_docs(&mut Vec::new()).unwrap());
        s.seek(DocPos::default()).unwrap();
        assert_eq!(read_all(&mut *s).len(), 500);
    }

    #[test]
    fn a_cache_is_refused_with_another_tokenizer() {
        let dir = tmpdir("source-other-tokenizer");
        let tok = tokenizer(&dir);
        let other_dir = dir.join("other");
        std::fs::create_dir_all(&other_dir).unwrap();
        let vocab = std::fs::read_to_string(dir.join("vocab.txt")).unwrap() + "extra\n";
        std::fs::write(other_dir.join("vocab.txt"), vocab).unwrap();
        let other = crate::tokenize::Tokenizer::from_path(&other_dir.join("vocab.txt"), Some(true), crate::tokenize::Backend::Auto).unwrap();
        let inputs = vec![write_lines(&dir, "a.txt", &documents(20, 5))];
        let tokenizing = Tokenizing { tokenizer: tok.clone(), read: ReadOptions::default(), pool: Arc::new(thread_pool(Some(1)).unwrap()), cancel: Cancel::new() };
        build_cache(&Corpus::files(&inputs).unwrap(), &tokenizing, &dir.join("c.dxc"), false).unwrap();
        assert!(Cache::open(&dir.join("c.dxc"), Some(&tok), true, &Cancel::new()).is_ok());
        let err = Cache::open(&dir.join("c.dxc"), Some(&other), true, &Cancel::new()).err().expect("another tokenizer is refused");
        assert!(err.to_string().contains("another tokenizer"), "{err}");
    }
}
