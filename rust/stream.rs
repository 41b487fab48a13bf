//! The masked-LM stream behind `distilx.MaskedLMStream`: it owns a producer thread
//! (`crate::producer`) that runs ahead of the consumer into a bounded queue, hands batches out,
//! and keeps the position after the last one handed out (resume: see `crate::producer`).
//!
//! Sharding. Each rank reads only its own documents (`crate::source::Shard`). With world_size > 1
//! every rank yields the same number of batches per epoch: a counting pass at construction
//! (`crate::passes::count_rows`) gives each rank's row count, and every rank stops after the
//! minimum over ranks of its full batches.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::masking::{MaskedBatch, Masker, Mode};
use crate::options::StreamOptions;
use crate::passes;
use crate::producer::{produce, Engine, Msg};
pub use crate::producer::{Position, Stats};
use crate::source::Corpus;
use crate::tokenize::Tokenizer;

pub enum Poll {
    Batch(MaskedBatch),
    EndOfEpoch,
    /// Nothing yet (the caller checks for Ctrl-C and polls again).
    Pending,
}

/// The stateful stream behind `distilx.MaskedLMStream`.
pub struct Stream {
    engine: Arc<Engine>,
    /// Frequency masking's token counts (given, or counted over the corpus at construction).
    token_counts: Option<Vec<u64>>,
    /// Position after the last batch handed out.
    pos: Position,
    rx: Option<Receiver<Msg>>,
    handle: Option<JoinHandle<()>>,
    stop: Cancel,
    /// The process that started the producer (a forked child must start its own).
    owner_pid: u32,
    stats: Arc<Mutex<Stats>>,
    /// Batches per epoch once known (world_size > 1, a cache, or after a full epoch).
    known_batches: Option<u64>,
}

impl Stream {
    /// A stream over `corpus` with `opts` (validated here). Frequency masking uses `token_counts`
    /// when given, else counts the corpus now — through the same source and reading options the
    /// stream reads with, so the table describes exactly the documents it will see. The passes run
    /// here (token counts, the per-rank row count) stop with `Error::Interrupted` once `cancel` is set.
    pub fn new(corpus: Corpus, tokenizer: Arc<Tokenizer>, opts: StreamOptions, token_counts: Option<Vec<u64>>, cancel: &Cancel) -> Result<Self> {
        opts.validate()?;
        corpus.check(&opts.read())?;
        let seq = opts.seq(&tokenizer)?;
        if let Corpus::Cache(c) = &corpus {
            if opts.masking == Mode::WholeWord && !c.has_word_starts() {
                // Without the bits every token would read as its own word: silently per-token masking.
                return Err(Error::InvalidConfig(format!(
                    "masking=\"whole_word\" needs word starts, but the cache {} was built with word_starts=False; \
                     rebuild it with word_starts=True or choose another masking", c.path.display())));
            }
        }
        let token_counts = match (opts.masking, token_counts) {
            (Mode::Frequency, None) => Some(passes::count_tokens(&corpus, &opts.tokenizing(&tokenizer, cancel)?)?),
            (Mode::Frequency, given) => given,
            _ => None,
        };
        let tok = &tokenizer;
        let masker = Masker::new(&opts.mask(), tok.vocab_size, &tok.specials.ids, tok.specials.mask_id(), tok.specials.pad_id(), token_counts.as_deref())?;
        let mut engine = Engine { corpus, tokenizer: tokenizer.clone(), masker, seq, shape: opts.shape(), opts: opts.clone(), limit: None };
        let mut known_batches = None;
        if opts.world_size > 1 {
            let counts = passes::count_rows(&engine.corpus, &opts.tokenizing(&tokenizer, cancel)?, &engine.seq, opts.world_size)?;
            let limit = counts.iter().min().copied().unwrap_or(0) / opts.batch_size as u64;
            if limit == 0 {
                return Err(Error::InvalidInput(format!(
                    "the corpus yields too few sequences for {} ranks × batch_size {} (rows per rank: {:?}); use more data, a smaller batch_size or fewer ranks",
                    opts.world_size, opts.batch_size, counts)));
            }
            engine.limit = Some(limit);
            known_batches = Some(limit);
        }
        let mut stream = Stream {
            engine: Arc::new(engine),
            token_counts,
            pos: Position::default(),
            rx: None,
            handle: None,
            stop: Cancel::new(),
            owner_pid: std::process::id(),
            stats: Arc::new(Mutex::new(Stats::default())),
            known_batches,
        };
        if matches!(stream.engine.corpus, Corpus::Cache(_)) {
            // Cheap from a cache (no tokenization), and the same every epoch.
            stream.count_batches(cancel)?;
        }
        Ok(stream)
    }

    pub fn options(&self) -> &StreamOptions {
        &self.engine.opts
    }

    pub fn corpus(&self) -> &Corpus {
        &self.engine.corpus
    }

    pub fn token_counts(&self) -> Option<&[u64]> {
        self.token_counts.as_deref()
    }

    pub fn position(&self) -> Position {
        self.pos
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn batches_per_epoch(&self) -> Option<u64> {
        self.known_batches
    }

    /// Run the counting pass now (tokenizes the corpus once; stops when `cancel` is set) and
    /// remember the result.
    pub fn count_batches(&mut self, cancel: &Cancel) -> Result<u64> {
        if let Some(n) = self.known_batches {
            return Ok(n);
        }
        let e = &self.engine;
        let rows = passes::count_rows(&e.corpus, &e.opts.tokenizing(&e.tokenizer, cancel)?, &e.seq, 1)?[0];
        let b = e.shape.batch_size as u64;
        // Exact for the fixed windows of a single rank: every window but the last is full.
        let n = if e.shape.drop_last { rows / b } else { rows.div_ceil(b) };
        self.known_batches = Some(n);
        Ok(n)
    }

    /// Stop the threads (the producer and its source's) for good, before the stream is dropped by a
    /// caller that must not hold a lock the threads may wait for (Python's GIL, when texts come from
    /// Python), waiting at most `grace` for them. A thread still busy then — one blocked inside a call
    /// into Python that does not return (a `datasets` generator waiting for data that will not come,
    /// e.g. after Ctrl-C) — is left to end by itself when that call returns (it then sees the stop and
    /// the closed queue), instead of blocking the drop, and with it the interpreter's exit, forever.
    pub fn stop_within(&mut self, grace: Duration) {
        if self.owner_pid != std::process::id() {
            return self.stop_producer(); // forked child: nothing to wait for
        }
        self.stop.cancel();
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let start = std::time::Instant::now();
            while !h.is_finished() && start.elapsed() < grace {
                std::thread::sleep(Duration::from_millis(2));
            }
            if h.is_finished() {
                let _ = h.join();
            } // else dropped: the thread is detached
        }
        self.stop = Cancel::new();
    }

    /// Stop the producer (if any) without blocking on a full queue.
    fn stop_producer(&mut self) {
        if self.owner_pid != std::process::id() {
            // Forked child: the parent's threads do not exist here and their locks may be held.
            // Leak the handles instead of touching them.
            std::mem::forget(self.rx.take());
            std::mem::forget(self.handle.take());
            self.stop = Cancel::new();
            self.owner_pid = std::process::id();
            return;
        }
        self.stop.cancel();
        drop(self.rx.take()); // unblocks a producer waiting on a full queue
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.stop = Cancel::new();
    }

    fn ensure_producer(&mut self) -> Result<()> {
        if self.owner_pid != std::process::id() {
            self.stop_producer();
        }
        if self.rx.is_some() {
            return Ok(());
        }
        let (tx, rx) = sync_channel(self.engine.opts.prefetch);
        let (engine, start, stop, stats) = (self.engine.clone(), self.pos, self.stop.clone(), self.stats.clone());
        let handle = std::thread::Builder::new()
            .name("distilx-producer".into())
            .spawn(move || produce(engine, start, tx, stop, stats))
            // e.g. the process's thread limit: an error that says so, not a panic at the boundary
            .map_err(|e| Error::InvalidConfig(format!("cannot start the data engine's producer thread: {e}")))?;
        self.rx = Some(rx);
        self.handle = Some(handle);
        Ok(())
    }

    /// Wait up to `timeout` for the next batch of the current epoch.
    pub fn poll(&mut self, timeout: Duration) -> Result<Poll> {
        self.ensure_producer()?;
        let rx = self.rx.as_ref().expect("producer started");
        match rx.recv_timeout(timeout) {
            Ok(Msg::Batch(batch, after)) => {
                self.pos = after;
                Ok(Poll::Batch(batch))
            }
            Ok(Msg::End) => {
                // batches_done counts from the epoch start even after a resume.
                if self.pos.batches_done > 0 {
                    self.known_batches.get_or_insert(self.pos.batches_done);
                }
                let done = self.pos.batches_done;
                self.stop_producer();
                self.pos = Position::epoch_start(self.pos.epoch + 1);
                if done == 0 {
                    return Err(Error::InvalidInput(format!(
                        "the corpus yielded no batch in epoch {}: it is empty, or has fewer than batch_size={} sequences of at least min_seq_len={} tokens (see stats())",
                        self.pos.epoch - 1,
                        self.engine.opts.batch_size,
                        self.engine.opts.min_seq_len)));
                }
                Ok(Poll::EndOfEpoch)
            }
            Ok(Msg::Err(e)) => {
                self.stop_producer();
                Err(e)
            }
            Err(RecvTimeoutError::Timeout) => Ok(Poll::Pending),
            Err(RecvTimeoutError::Disconnected) => {
                self.stop_producer();
                Err(Error::InvalidInput("the data engine's producer thread stopped unexpectedly".into()))
            }
        }
    }

    /// Blocking convenience for Rust callers: the next batch, or `None` at the end of the epoch.
    pub fn next_batch(&mut self) -> Result<Option<MaskedBatch>> {
        loop {
            match self.poll(Duration::from_millis(100))? {
                Poll::Batch(b) => return Ok(Some(b)),
                Poll::EndOfEpoch => return Ok(None),
                Poll::Pending => continue,
            }
        }
    }

    /// Continue from `pos` (from `position()` of this or an identically configured stream).
    pub fn seek(&mut self, pos: Position) {
        self.stop_producer();
        self.pos = pos;
    }

    /// Start epoch `epoch` from its beginning.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.seek(Position::epoch_start(epoch));
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop_producer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batches::Padding;
    use crate::cache::Cache;
    use crate::masking::IGNORE;
    use crate::passes::build_cache;
    use crate::testutil::{documents, tmpdir, tokenizer, write_lines};
    use std::io::Write;

    /// (input_ids, attention_mask, labels) of a batch, and the position after it.
    type Seen = ((Vec<i64>, Vec<i64>, Vec<i64>), Position);

    fn epoch(s: &mut Stream) -> Vec<Seen> {
        let mut out = Vec::new();
        while let Some(b) = s.next_batch().unwrap() {
            out.push(((b.input_ids, b.attention_mask, b.labels), s.position()));
        }
        out
    }

    /// Two files (plain and gzip) of 600 documents in all.
    fn corpus(dir: &std::path::Path) -> Vec<String> {
        let docs = documents(600, 1);
        let plain = write_lines(dir, "a.txt", &docs[..300]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all((docs[300..].join("\n") + "\n").as_bytes()).unwrap();
        std::fs::write(dir.join("b.txt.gz"), gz.finish().unwrap()).unwrap();
        vec![plain, dir.join("b.txt.gz").to_string_lossy().into_owned()]
    }

    fn small() -> StreamOptions {
        StreamOptions { seq_len: 32, batch_size: 4, window_batches: 3, ..StreamOptions::default() }
    }

    #[test]
    fn resume_at_any_position_equals_the_uninterrupted_run() {
        let dir = tmpdir("stream-resume");
        let (tok, inputs) = (tokenizer(&dir), corpus(&dir));
        let cache = dir.join("c.dxc");
        build_cache(&Corpus::files(&inputs).unwrap(), &small().tokenizing(&tok, &Cancel::new()).unwrap(), &cache, true).unwrap();
        let open_cache = || Corpus::Cache(Arc::new(Cache::open(&cache, Some(&tok), true, &Cancel::new()).unwrap()));
        let variants: Vec<(&str, StreamOptions, bool)> = vec![
            ("chunks", small(), false),
            ("packing", StreamOptions { packing: true, ..small() }, false),
            ("dynamic whole-word", StreamOptions { padding: Padding::Dynamic, masking: Mode::WholeWord, ..small() }, false),
            ("frequency rank 1 of 2", StreamOptions { masking: Mode::Frequency, rank: 1, world_size: 2, ..small() }, false),
            ("cache", StreamOptions { masking: Mode::WholeWord, ..small() }, true),
        ];
        for (name, opts, from_cache) in variants {
            let make = || {
                let corpus = if from_cache { open_cache() } else { Corpus::files(&inputs).unwrap() };
                Stream::new(corpus, tok.clone(), opts.clone(), None, &Cancel::new()).unwrap()
            };
            let full = epoch(&mut make());
            assert!(full.len() > 12, "{name}: {} batches", full.len());
            for k in [1, 2, 4, 7, full.len() / 2, full.len() - 1] {
                let mut s = make();
                s.seek(full[k - 1].1);
                let rest = epoch(&mut s);
                assert!(rest == full[k..], "{name}: resuming after batch {k} differs");
                assert_eq!(s.position(), Position::epoch_start(1), "{name}: the epoch advances");
            }
        }
    }

    #[test]
    fn same_batches_with_any_threads_and_prefetch_and_new_masks_each_epoch() {
        let dir = tmpdir("stream-threads");
        let (tok, inputs) = (tokenizer(&dir), corpus(&dir));
        let run = |num_threads, prefetch| {
            let opts = StreamOptions { num_threads: Some(num_threads), prefetch, ..small() };
            let mut s = Stream::new(Corpus::files(&inputs).unwrap(), tok.clone(), opts, None, &Cancel::new()).unwrap();
            (epoch(&mut s), epoch(&mut s))
        };
        let (a0, a1) = run(1, 1);
        let (b0, _) = run(2, 8);
        assert!(a0 == b0);
        let labels = |e: &[Seen]| e.iter().map(|b| b.0 .2.clone()).collect::<Vec<_>>();
        assert_ne!(labels(&a0), labels(&a1), "a new epoch draws new masks");
    }

    /// The rows a rank saw: each row's original ids (labels where masked), padding cut off.
    fn rows(batches: &[Seen], cols: usize) -> Vec<Vec<i64>> {
        let mut out = Vec::new();
        for ((ids, att, labels), _) in batches {
            for r in 0..ids.len() / cols {
                let row = (r * cols..(r + 1) * cols).filter(|&i| att[i] == 1).map(|i| if labels[i] != IGNORE { labels[i] } else { ids[i] });
                out.push(row.collect());
            }
        }
        out
    }

    /// 300 one-row documents (100 per rank of 3), in batches of 5 rows.
    fn one_row_documents(name: &str) -> (Arc<Tokenizer>, Vec<String>, StreamOptions) {
        let dir = tmpdir(name);
        let tok = tokenizer(&dir);
        let docs: Vec<String> = documents(300, 2).iter().map(|d| d.split(' ').take(10).collect::<Vec<_>>().join(" ")).collect();
        let inputs = vec![write_lines(&dir, "d.txt", &docs)];
        (tok, inputs, StreamOptions { seq_len: 32, batch_size: 5, min_seq_len: 0, drop_last: false, ..StreamOptions::default() })
    }

    #[test]
    fn ranks_are_disjoint_covering_and_equal() {
        let (tok, inputs, opts) = one_row_documents("stream-ranks");
        let mut all = rows(&epoch(&mut Stream::new(Corpus::files(&inputs).unwrap(), tok.clone(), opts.clone(), None, &Cancel::new()).unwrap()), 32);
        let mut seen: Vec<Vec<i64>> = Vec::new();
        for rank in 0..3 {
            let mut s = Stream::new(Corpus::files(&inputs).unwrap(), tok.clone(), StreamOptions { rank, world_size: 3, ..opts.clone() }, None, &Cancel::new()).unwrap();
            let batches = epoch(&mut s);
            assert_eq!((batches.len() as u64, s.batches_per_epoch()), (20, Some(20)), "rank {rank}");
            seen.extend(rows(&batches, 32));
        }
        all.sort();
        seen.sort();
        assert_eq!(seen.len(), 300);
        assert_eq!(seen, all, "the ranks' rows are the corpus's, each once");
    }

    #[test]
    fn row_starts_name_each_rows_document_once() {
        // each row starts at token 0 of its own document
        let (tok, inputs, opts) = one_row_documents("stream-row-starts");
        let mut seen = Vec::new();
        for rank in 0..3 {
            let mut s = Stream::new(Corpus::files(&inputs).unwrap(), tok.clone(), StreamOptions { rank, world_size: 3, ..opts.clone() }, None, &Cancel::new()).unwrap();
            while let Some(b) = s.next_batch().unwrap() {
                assert_eq!(b.row_starts.len(), 2 * b.rows);
                for start in b.row_starts.chunks(2) {
                    assert_eq!((start[0] % 3, start[1]), (rank, 0), "rank {rank} reads its own documents, each from its start");
                    seen.push(start[0]);
                }
            }
        }
        seen.sort();
        assert_eq!(seen, (0..300).collect::<Vec<u64>>(), "every document once");
    }

    #[test]
    fn frequency_counts_are_the_tokens_the_stream_reads() {
        let dir = tmpdir("stream-counts");
        let tok = tokenizer(&dir);
        let docs = documents(400, 3);
        let inputs = vec![write_lines(&dir, "d.txt", &docs)];
        let limit = 120;
        let opts = StreamOptions { masking: Mode::Frequency, max_document_bytes: limit, world_size: 2, rank: 1, ..small() };
        let s = Stream::new(Corpus::files(&inputs).unwrap(), tok.clone(), opts, None, &Cancel::new()).unwrap();
        // Reference: every document the reader keeps (lines up to the byte limit), all ranks.
        let mut want = vec![0u64; tok.vocab_size as usize];
        let kept: Vec<&String> = docs.iter().filter(|d| d.len() <= limit).collect();
        assert!(kept.len() < docs.len() && !kept.is_empty(), "the limit must skip some documents");
        for d in kept {
            let mut ids = Vec::new();
            tok.encode_into(d, &mut ids, None).unwrap();
            for id in ids {
                want[id as usize] += 1;
            }
        }
        assert_eq!(s.token_counts(), Some(&want[..]));
    }
}
