//! Texts handed over by the caller in chunks — an in-memory or iterable `datasets` dataset fed
//! from Python (`rust/py/feed.rs` implements [`Feed`]) — read like a file of rows: the same row rule as
//! Parquet and Arrow, a document's offset its row number in the pass. A feed cannot seek: opening
//! at a row starts a fresh pass and skips that many rows (taken from the feed, not tokenized), so
//! resume needs a feed that yields the same rows in the same order on every pass.

use std::fmt;

use super::rows::{RowCursor, TextColumn};
use super::{shorter_than_position, FileReader, ReadOptions, ReadStats};
use crate::error::Result;

/// A source of texts that can be read from its start any number of times.
pub trait Feed: Send + Sync + fmt::Debug {
    /// What messages call it (e.g. "datasets.IterableDataset 'train'").
    fn name(&self) -> &str;
    /// A fresh pass from the first row.
    fn open(&self) -> Result<Box<dyn FeedPass>>;
}

/// One pass over a feed's rows, a chunk at a time.
pub trait FeedPass: Send {
    /// The next chunk of rows (None for a null row); None at the end.
    fn next_chunk(&mut self) -> Result<Option<Vec<Option<String>>>>;
}

pub(super) struct FeedReader {
    opts: ReadOptions,
    pass: Box<dyn FeedPass>,
    rows: RowCursor,
}

impl FeedReader {
    /// A pass over `feed` positioned at row `offset` (0, or a row number this reader returned).
    pub(super) fn open(feed: &dyn Feed, offset: u64, opts: &ReadOptions) -> Result<Self> {
        let mut pass = feed.open()?;
        let mut skipped = 0u64;
        let mut first = None;
        while skipped < offset {
            let Some(chunk) = pass.next_chunk()? else {
                return Err(shorter_than_position(std::path::Path::new(feed.name())));
            };
            let n = chunk.len() as u64;
            if skipped + n > offset {
                first = Some(chunk.into_iter().skip((offset - skipped) as usize).collect());
                break;
            }
            skipped += n;
        }
        let pass: Box<dyn FeedPass> = match first {
            Some(rest) => Box::new(Resumed { rest: Some(rest), pass }),
            None => pass,
        };
        Ok(FeedReader { opts: opts.clone(), pass, rows: RowCursor::at(offset) })
    }
}

/// A pass whose first chunk is the rest of the one a seek landed in.
struct Resumed {
    rest: Option<Vec<Option<String>>>,
    pass: Box<dyn FeedPass>,
}

impl FeedPass for Resumed {
    fn next_chunk(&mut self) -> Result<Option<Vec<Option<String>>>> {
        match self.rest.take() {
            Some(rest) => Ok(Some(rest)),
            None => self.pass.next_chunk(),
        }
    }
}

impl FileReader for FeedReader {
    fn next_doc(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<Option<u64>> {
        self.rows.next_doc(text, &self.opts, stats, || Ok(self.pass.next_chunk()?.map(TextColumn::Owned)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{read_all, read_from};
    use super::super::CorpusFile;
    use super::*;
    use std::sync::Arc;

    /// Rows in chunks of `chunk`.
    #[derive(Debug)]
    struct Rows {
        rows: Vec<Option<String>>,
        chunk: usize,
    }

    impl Feed for Rows {
        fn name(&self) -> &str {
            "test rows"
        }
        fn open(&self) -> Result<Box<dyn FeedPass>> {
            let chunks: Vec<Vec<Option<String>>> = self.rows.chunks(self.chunk).map(|c| c.to_vec()).collect();
            Ok(Box::new(Chunks(chunks.into_iter())))
        }
    }

    struct Chunks(std::vec::IntoIter<Vec<Option<String>>>);

    impl FeedPass for Chunks {
        fn next_chunk(&mut self) -> Result<Option<Vec<Option<String>>>> {
            Ok(self.0.next())
        }
    }

    #[test]
    fn a_feed_reads_like_rows_and_resumes_by_skipping() {
        let rows: Vec<Option<String>> = (0..500).map(|i| if i % 9 == 4 { None } else { Some(format!("text {i}")) }).collect();
        let feed: Arc<dyn Feed> = Arc::new(Rows { rows: rows.clone(), chunk: 37 });
        let files = vec![CorpusFile::feed(feed.clone()), CorpusFile::feed(feed)];
        let (docs, stats) = read_all(files.clone(), ReadOptions::default());
        let once: Vec<String> = rows.iter().flatten().cloned().collect();
        let texts: Vec<String> = docs.iter().map(|d| d.1.clone()).collect();
        assert_eq!(texts, [once.clone(), once].concat());
        assert_eq!((stats.lines, stats.null_rows), (1000, 2 * 56));
        for k in [0, 1, 36, 37, 38, docs.len() / 2, docs.len() - 1] {
            assert_eq!(read_from(&files, &ReadOptions::default(), docs[k].0), docs[k..], "from document {k}");
        }
    }
}
