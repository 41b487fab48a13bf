//! The masked-LM stream: documents -> rows -> windows -> masked batches, produced ahead of the
//! consumer by a background thread (tokenization and masking on a rayon pool) into a bounded queue.
//!
//! Determinism and resume. Rows are cut into *windows* of `window_batches × batch_size` rows; a
//! window is shuffled / length-grouped with an RNG keyed by (seed, epoch, its first row), and each
//! batch's masks are keyed by (seed, epoch, its rows). A position is therefore tiny: (epoch, the
//! first row of the current window — a document position plus a token offset —, batches of that
//! window already handed out, batches in the epoch so far). Resuming seeks the reader straight to
//! that document (a byte offset), rebuilds the one window and skips the batches already seen: the
//! batches that follow are exactly an uninterrupted run's.
//!
//! Sharding. Document i belongs to rank i % world_size (disjoint, covering); each rank tokenizes
//! only its own documents. With world_size > 1 every rank yields the same number of batches per
//! epoch: a counting pass (run once, at construction, or read from a cache) gives each rank's row
//! count, and every rank stops after min over ranks of its full batches.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rayon::prelude::*;

use crate::batches::{plan, BatchShape};
use crate::cache::Cache;
use crate::corpus::{expand_inputs, CorpusFile, DocPos, DocReader, ReadOptions, ReadStats};
use crate::error::{Error, Result};
use crate::masking::{MaskedBatch, Masker, Rng};
use crate::sequences::{RowStart, SeqConfig, SeqStats, SequenceBuilder, TokDoc};
use crate::tokenize::{thread_pool, Tokenizer};

#[derive(Clone, Debug)]
pub struct StreamConfig {
    pub seq: SeqConfig,
    pub shape: BatchShape,
    pub seed: u64,
    pub rank: u64,
    pub world_size: u64,
    pub read: ReadOptions,
    pub num_threads: Option<usize>,
    /// Batches queued ahead of the consumer.
    pub prefetch: usize,
    /// Window size in batches (the span of shuffling and length grouping).
    pub window_batches: usize,
}

/// A position in the stream: see the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub window: RowStart,
    pub batch_in_window: u64,
    pub batches_done: u64,
}

impl Position {
    pub fn epoch_start(epoch: u64) -> Self {
        Position { epoch, ..Default::default() }
    }
}

pub struct Batch {
    pub data: MaskedBatch,
    /// The position after this batch.
    pub after: Position,
}

enum Msg {
    Batch(Batch),
    /// The epoch is over.
    End,
    Err(Error),
}

pub enum Poll {
    Batch(MaskedBatch),
    EndOfEpoch,
    /// Nothing yet (the caller checks for Ctrl-C and polls again).
    Pending,
}

/// Cumulative counters (over the stream's whole life, all epochs; the producer runs ahead of the
/// consumer by the prefetch depth, so they count work done, not batches consumed).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub read: ReadStats,
    pub seq: SeqStats,
    pub batches: u64,
    pub padded_tokens: u64,
    pub target_tokens: u64,
}

/// What the producer thread needs, shared read-only.
struct Shared {
    cfg: StreamConfig,
    tokenizer: Arc<Tokenizer>,
    files: Vec<CorpusFile>,
    cache: Option<Arc<Cache>>,
    masker: Masker,
    /// Batches per epoch on this rank, when known.
    limit: Option<u64>,
    want_words: bool,
}

/// Where tokenized documents come from: raw files (read + tokenized now) or a cache.
trait DocSource {
    fn seek(&mut self, pos: DocPos) -> Result<()>;
    /// Append the next documents; false at the end of the corpus.
    fn next_docs(&mut self, out: &mut Vec<TokDoc>) -> Result<bool>;
    fn read_stats(&self) -> ReadStats;
}

/// Raw files, read and tokenized ahead in two threads of their own: a reader thread (decompress,
/// split, decode; keeps this rank's documents) feeds a tokenizer thread (encodes each round on the
/// pool), which feeds the producer. Reading, tokenizing and framing/masking thus overlap.
struct RawSource {
    shared: Arc<Shared>,
    pool: Arc<rayon::ThreadPool>,
    rx: Option<Receiver<Feed>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    stats: ReadStats,
    ended: bool,
}

enum Feed {
    Texts(Vec<(DocPos, String)>, ReadStats),
    Docs(Vec<TokDoc>, ReadStats),
    End(ReadStats),
    Err(Error),
}

/// About this much text is tokenized per parallel round (bounded memory, good thread use).
const ROUND_BYTES: usize = 1 << 20;
const ROUND_DOCS: usize = 4096;

pub(crate) fn tokenize_docs(tok: &Tokenizer, items: &[(DocPos, String)], words: bool, pool: &rayon::ThreadPool) -> Result<Vec<TokDoc>> {
    pool.install(|| {
        items
            .par_iter()
            .map(|(pos, text)| {
                let mut d = TokDoc { pos: *pos, ids: Vec::new(), word_ids: Vec::new() };
                tok.encode_into(text, &mut d.ids, if words { Some(&mut d.word_ids) } else { None })?;
                Ok(d)
            })
            .collect()
    })
}

fn read_rounds(shared: Arc<Shared>, start: DocPos, tx: SyncSender<Feed>, stop: Arc<AtomicBool>) {
    let (rank, world) = (shared.cfg.rank, shared.cfg.world_size);
    let mut reader = DocReader::new(shared.files.clone(), shared.cfg.read.clone());
    if let Err(e) = reader.seek(start) {
        let _ = tx.send(Feed::Err(e));
        return;
    }
    let mut text = String::new();
    loop {
        let mut texts = Vec::new();
        let mut bytes = 0;
        while bytes < ROUND_BYTES && texts.len() < ROUND_DOCS {
            match reader.next_doc(&mut text) {
                Err(e) => {
                    let _ = tx.send(Feed::Err(e));
                    return;
                }
                Ok(None) => break,
                Ok(Some(pos)) if pos.index % world == rank => {
                    bytes += text.len();
                    texts.push((pos, std::mem::take(&mut text)));
                }
                Ok(Some(_)) => {}
            }
        }
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let msg = if texts.is_empty() { Feed::End(reader.stats.clone()) } else { Feed::Texts(texts, reader.stats.clone()) };
        let end = matches!(msg, Feed::End(_));
        if tx.send(msg).is_err() || end {
            return;
        }
    }
}

fn tokenize_rounds(shared: Arc<Shared>, pool: Arc<rayon::ThreadPool>, rx: Receiver<Feed>, tx: SyncSender<Feed>, stop: Arc<AtomicBool>) {
    while let Ok(msg) = rx.recv() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let out = match msg {
            Feed::Texts(texts, st) => match tokenize_docs(&shared.tokenizer, &texts, shared.want_words, &pool) {
                Ok(docs) => Feed::Docs(docs, st),
                Err(e) => Feed::Err(e),
            },
            other => other,
        };
        let last = matches!(out, Feed::End(_) | Feed::Err(_));
        if tx.send(out).is_err() || last {
            return;
        }
    }
}

impl RawSource {
    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.rx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stop = Arc::new(AtomicBool::new(false));
    }

    fn start(&mut self, pos: DocPos) -> Result<()> {
        self.shutdown();
        // A few rounds (~1 MB of text each) in flight per stage keep every thread busy.
        let (text_tx, text_rx) = sync_channel(4);
        let (doc_tx, doc_rx) = sync_channel(4);
        let spawn_err = |e: std::io::Error| Error::InvalidConfig(format!("cannot start a data-engine thread: {e}"));
        let (sh, st) = (self.shared.clone(), self.stop.clone());
        self.threads.push(std::thread::Builder::new().name("distilx-reader".into()).spawn(move || read_rounds(sh, pos, text_tx, st)).map_err(spawn_err)?);
        let (sh, pool, st) = (self.shared.clone(), self.pool.clone(), self.stop.clone());
        self.threads.push(
            std::thread::Builder::new().name("distilx-tokenizer".into()).spawn(move || tokenize_rounds(sh, pool, text_rx, doc_tx, st)).map_err(spawn_err)?,
        );
        self.rx = Some(doc_rx);
        Ok(())
    }
}

impl Drop for RawSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl DocSource for RawSource {
    fn seek(&mut self, pos: DocPos) -> Result<()> {
        self.ended = false;
        self.start(pos)
    }

    fn next_docs(&mut self, out: &mut Vec<TokDoc>) -> Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if self.rx.is_none() {
            self.start(DocPos::default())?;
        }
        match self.rx.as_ref().expect("started").recv() {
            Ok(Feed::Docs(docs, st)) => {
                self.stats = st;
                out.extend(docs);
                Ok(true)
            }
            Ok(Feed::End(st)) => {
                self.stats = st;
                self.shutdown();
                // Stay at the end: a later call must not restart from the beginning.
                self.ended = true;
                Ok(false)
            }
            Ok(Feed::Err(e)) => Err(e),
            Ok(Feed::Texts(..)) => unreachable!("texts are tokenized before they reach the producer"),
            Err(_) => Err(Error::InvalidInput("the data engine's reader thread stopped unexpectedly".into())),
        }
    }

    fn read_stats(&self) -> ReadStats {
        self.stats.clone()
    }
}

/// Documents from a pre-tokenized cache: this rank's documents in a per-epoch shuffled order. `DocPos.index` is the cache's document number, `offset`
/// the position in this rank's order.
struct CacheSource<'a> {
    cache: &'a Cache,
    order: Vec<u64>,
    next: usize,
    stats: ReadStats,
    want_words: bool,
}

impl DocSource for CacheSource<'_> {
    fn seek(&mut self, pos: DocPos) -> Result<()> {
        self.next = pos.offset as usize;
        Ok(())
    }

    fn next_docs(&mut self, out: &mut Vec<TokDoc>) -> Result<bool> {
        if self.next >= self.order.len() {
            return Ok(false);
        }
        let end = (self.next + ROUND_DOCS).min(self.order.len());
        for k in self.next..end {
            let d = self.order[k];
            let mut doc = TokDoc { pos: DocPos { file: 0, offset: k as u64, index: d }, ids: Vec::new(), word_ids: Vec::new() };
            self.cache.document(d, &mut doc.ids, if self.want_words { Some(&mut doc.word_ids) } else { None });
            self.stats.documents += 1;
            out.push(doc);
        }
        self.next = end;
        Ok(true)
    }

    fn read_stats(&self) -> ReadStats {
        self.stats.clone()
    }
}

/// The documents rank `rank` reads from a cache in `epoch`, in order.
fn cache_order(cache: &Cache, seed: u64, epoch: u64, shuffle: bool, rank: u64, world: u64) -> Vec<u64> {
    // Ranks own fixed documents (i % world_size == rank, as when streaming raw files), shuffled
    // per epoch: each rank's row count is then the same every epoch.
    let mut mine: Vec<u64> = (rank..cache.num_documents()).step_by(world as usize).collect();
    if shuffle {
        Rng::new(seed, epoch, 0xCAC4E ^ rank).shuffle(&mut mine);
    }
    mine
}

impl Shared {
    fn source<'a>(self: &'a Arc<Self>, pool: &Arc<rayon::ThreadPool>, epoch: u64) -> Box<dyn DocSource + 'a> {
        match &self.cache {
            Some(c) => Box::new(CacheSource {
                cache: c,
                order: cache_order(c, self.cfg.seed, epoch, self.cfg.shape.shuffle, self.cfg.rank, self.cfg.world_size),
                next: 0,
                stats: ReadStats::default(),
                want_words: self.want_words,
            }),
            None => Box::new(RawSource {
                shared: self.clone(),
                pool: pool.clone(),
                rx: None,
                threads: Vec::new(),
                stop: Arc::new(AtomicBool::new(false)),
                stats: ReadStats::default(),
                ended: false,
            }),
        }
    }

    fn window_rows(&self) -> usize {
        self.cfg.window_batches.max(1) * self.cfg.shape.batch_size
    }
}

/// The producer: runs one epoch from `start`, sending batches until the end, an error, or the
/// receiver is dropped.
fn produce(shared: Arc<Shared>, start: Position, tx: SyncSender<Msg>, stop: Arc<AtomicBool>, stats: Arc<Mutex<Stats>>) {
    let pool = match thread_pool(shared.cfg.num_threads) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            let _ = tx.send(Msg::Err(e));
            return;
        }
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce_epoch(&shared, &pool, start, &tx, &stop, &stats)));
    let msg = match result {
        Ok(Ok(())) => Msg::End,
        Ok(Err(e)) => Msg::Err(e),
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            Msg::Err(Error::InvalidInput(format!("internal error in the data engine (please report): {what}")))
        }
    };
    let _ = tx.send(msg);
}

fn produce_epoch(shared: &Arc<Shared>, pool: &Arc<rayon::ThreadPool>, start: Position, tx: &SyncSender<Msg>, stop: &AtomicBool, stats: &Mutex<Stats>) -> Result<()> {
    let cfg = &shared.cfg;
    let epoch = start.epoch;
    let mut source = shared.source(pool, epoch);
    let resume_doc = start.window.doc;
    source.seek(resume_doc)?;
    let mut builder = SequenceBuilder::new(cfg.seq.clone());
    let mut first_skip = start.window.offset as usize;
    let mut skip_batches = start.batch_in_window;
    let mut batches_done = start.batches_done;
    let mut exhausted = false;
    let mut docs = Vec::new();
    let window_rows = shared.window_rows();
    let mut last_read = ReadStats::default();
    let mut last_seq = SeqStats::default();
    loop {
        let mut rows = Vec::with_capacity(window_rows);
        while rows.len() < window_rows {
            if let Some(r) = builder.next_row(exhausted) {
                rows.push(r);
                continue;
            }
            if exhausted {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            docs.clear();
            exhausted = !source.next_docs(&mut docs)?;
            for d in docs.drain(..) {
                builder.push(d, first_skip);
                first_skip = 0;
            }
            // Publish the counters' growth since the last round.
            let (read, seq) = (source.read_stats(), builder.stats.clone());
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            add_read(&mut s.read, &read, &last_read);
            add_seq(&mut s.seq, &seq, &last_seq);
            drop(s);
            last_read = read;
            last_seq = seq;
        }
        if rows.is_empty() {
            return Ok(());
        }
        let window = rows[0].start;
        let mut rng = Rng::new(cfg.seed, epoch, window.key() ^ 0x57A7E);
        let planned = plan(&rows, &cfg.shape, &mut rng);
        let todo: Vec<(u64, &crate::batches::PlannedBatch)> =
            planned.iter().enumerate().map(|(j, b)| (j as u64, b)).filter(|(j, _)| *j >= skip_batches).collect();
        skip_batches = 0;
        let masked: Vec<(u64, MaskedBatch)> = pool.install(|| {
            todo.par_iter()
                .map(|(j, b)| {
                    let ids: Vec<&[u32]> = b.rows.iter().map(|&i| rows[i].ids.as_slice()).collect();
                    let words: Vec<&[bool]> = b.rows.iter().map(|&i| rows[i].word_start.as_slice()).collect();
                    let keys: Vec<u64> = b.rows.iter().map(|&i| rows[i].start.key()).collect();
                    let batch_key = keys.iter().fold(0u64, |a, &k| crate::masking::mix(a ^ k));
                    (*j, shared.masker.mask(&ids, &words, &keys, batch_key, b.cols, cfg.seed, epoch))
                })
                .collect()
        });
        for (j, data) in masked {
            if let Some(limit) = shared.limit {
                if batches_done >= limit {
                    return Ok(());
                }
            }
            batches_done += 1;
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.batches += 1;
                s.padded_tokens += (data.rows * data.cols) as u64;
                s.target_tokens += data.targets as u64;
            }
            let after = Position { epoch, window, batch_in_window: j + 1, batches_done };
            if tx.send(Msg::Batch(Batch { data, after })).is_err() || stop.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
    }
}

fn add_read(total: &mut ReadStats, now: &ReadStats, before: &ReadStats) {
    total.documents += now.documents - before.documents;
    total.lines += now.lines - before.lines;
    total.bytes += now.bytes - before.bytes;
    total.skipped_lines += now.skipped_lines - before.skipped_lines;
    total.empty_lines += now.empty_lines - before.empty_lines;
    total.oversized_lines += now.oversized_lines - before.oversized_lines;
    total.bad_json_lines += now.bad_json_lines - before.bad_json_lines;
    total.invalid_bytes += now.invalid_bytes - before.invalid_bytes;
    total.files_opened += now.files_opened - before.files_opened;
}

fn add_seq(total: &mut SeqStats, now: &SeqStats, before: &SeqStats) {
    total.sequences += now.sequences - before.sequences;
    total.tokens += now.tokens - before.tokens;
    total.dropped_short += now.dropped_short - before.dropped_short;
    total.dropped_unk += now.dropped_unk - before.dropped_unk;
    total.empty_documents += now.empty_documents - before.empty_documents;
}

/// Count the rows each rank gets in one epoch (tokenizes everything once; no masking).
fn count_rows(shared: &Shared, epoch: u64) -> Result<Vec<u64>> {
    let world = shared.cfg.world_size as usize;
    let pool = thread_pool(shared.cfg.num_threads)?;
    let mut builders: Vec<SequenceBuilder> = (0..world).map(|_| SequenceBuilder::new(shared.cfg.seq.clone())).collect();
    let mut counts = vec![0u64; world];
    let drain = |b: &mut SequenceBuilder, c: &mut u64, end: bool| {
        while b.next_row(end).is_some() {
            *c += 1;
        }
    };
    match &shared.cache {
        Some(cache) => {
            for r in 0..world {
                let order = cache_order(cache, shared.cfg.seed, epoch, shared.cfg.shape.shuffle, r as u64, world as u64);
                let mut ids = Vec::new();
                for d in order {
                    ids.clear();
                    cache.document(d, &mut ids, None);
                    builders[r].push(TokDoc { pos: DocPos { file: 0, offset: 0, index: d }, ids: std::mem::take(&mut ids), word_ids: Vec::new() }, 0);
                    drain(&mut builders[r], &mut counts[r], false);
                }
            }
        }
        None => {
            let mut reader = DocReader::new(shared.files.clone(), shared.cfg.read.clone());
            loop {
                let items = reader.next_docs(ROUND_BYTES * 4)?;
                if items.is_empty() {
                    break;
                }
                for d in tokenize_docs(&shared.tokenizer, &items, false, &pool)? {
                    let r = (d.pos.index % world as u64) as usize;
                    builders[r].push(d, 0);
                    drain(&mut builders[r], &mut counts[r], false);
                }
            }
        }
    }
    for r in 0..world {
        drain(&mut builders[r], &mut counts[r], true);
    }
    Ok(counts)
}

/// The stateful stream behind `distilx.MaskedLMStream`.
pub struct Stream {
    shared: Arc<Shared>,
    /// Position after the last batch handed out.
    pos: Position,
    rx: Option<Receiver<Msg>>,
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The process that started the producer (a forked child must start its own).
    owner_pid: u32,
    stats: Arc<Mutex<Stats>>,
    /// Batches per epoch once known (world_size > 1, a cache, or after a full epoch).
    known_batches: Option<u64>,
}

impl Stream {
    pub fn new(inputs: &[String], tokenizer: Arc<Tokenizer>, cfg: StreamConfig, masker: Masker, cache: Option<Arc<Cache>>) -> Result<Self> {
        if cfg.seq.seq_len < 3 {
            return Err(Error::InvalidConfig(format!("seq_len must be >= 3 (room for [CLS], a token and [SEP]), got {}", cfg.seq.seq_len)));
        }
        if cfg.shape.batch_size == 0 {
            return Err(Error::InvalidConfig("batch_size must be >= 1".into()));
        }
        if cfg.world_size == 0 || cfg.rank >= cfg.world_size {
            return Err(Error::InvalidConfig(format!("rank must satisfy 0 <= rank < world_size, got rank={} world_size={}", cfg.rank, cfg.world_size)));
        }
        if cfg.prefetch == 0 {
            return Err(Error::InvalidConfig("prefetch must be >= 1".into()));
        }
        let files = if cache.is_some() { Vec::new() } else { expand_inputs(inputs)? };
        let want_words = masker.mode == crate::masking::Mode::WholeWord;
        if let Some(c) = cache.as_ref().filter(|c| want_words && !c.has_word_starts()) {
            // Without the bits every token would read as its own word: silently per-token masking.
            return Err(Error::InvalidConfig(format!(
                "masking=\"whole_word\" needs word starts, but the cache {} was built with word_starts=False; \
                 rebuild it with word_starts=True or choose another masking", c.path.display())));
        }
        let mut cfg = cfg;
        cfg.seq.word_starts = want_words;
        if cfg.world_size > 1 {
            // Equal batch counts need full batches only.
            cfg.shape.drop_last = true;
        }
        let mut shared = Shared { cfg, tokenizer, files, cache, masker, limit: None, want_words };
        let mut known_batches = None;
        if shared.cfg.world_size > 1 {
            let counts = count_rows(&shared, 0)?;
            let limit = counts.iter().min().copied().unwrap_or(0) / shared.cfg.shape.batch_size as u64;
            if limit == 0 {
                return Err(Error::InvalidInput(format!(
                    "the corpus yields too few sequences for {} ranks × batch_size {} (rows per rank: {:?}); use more data, a smaller batch_size or fewer ranks",
                    shared.cfg.world_size, shared.cfg.shape.batch_size, counts)));
            }
            shared.limit = Some(limit);
            known_batches = Some(limit);
        } else if shared.cache.is_some() {
            // Cheap from a cache (no tokenization), and the same every epoch: rows do not depend
            // on the document order.
            let rows = count_rows(&shared, 0)?[0];
            let b = shared.cfg.shape.batch_size as u64;
            known_batches = Some(if shared.cfg.shape.drop_last { rows / b } else { rows.div_ceil(b) });
        }
        Ok(Stream {
            shared: Arc::new(shared),
            pos: Position::default(),
            rx: None,
            handle: None,
            stop: Arc::new(AtomicBool::new(false)),
            owner_pid: std::process::id(),
            stats: Arc::new(Mutex::new(Stats::default())),
            known_batches,
        })
    }

    pub fn config(&self) -> &StreamConfig {
        &self.shared.cfg
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    pub fn files(&self) -> &[CorpusFile] {
        &self.shared.files
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

    /// Run the counting pass now (tokenizes the corpus once) and remember the result.
    pub fn count_batches(&mut self) -> Result<u64> {
        if let Some(n) = self.known_batches {
            return Ok(n);
        }
        let rows = count_rows(&self.shared, self.pos.epoch)?[0];
        let b = self.shared.cfg.shape.batch_size as u64;
        let n = if self.shared.cfg.shape.drop_last { rows / b } else { rows.div_ceil(b) };
        // Exact only for the fixed windows of a single rank: every window but the last is full.
        self.known_batches = Some(n);
        Ok(n)
    }

    /// Stop the producer (if any) without blocking on a full queue.
    fn stop_producer(&mut self) {
        if self.owner_pid != std::process::id() {
            // Forked child: the parent's threads do not exist here and their locks may be held.
            // Leak the handles instead of touching them.
            std::mem::forget(self.rx.take());
            std::mem::forget(self.handle.take());
            self.stop = Arc::new(AtomicBool::new(false));
            self.owner_pid = std::process::id();
            return;
        }
        self.stop.store(true, Ordering::Relaxed);
        drop(self.rx.take()); // unblocks a producer waiting on a full queue
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.stop = Arc::new(AtomicBool::new(false));
    }

    fn ensure_producer(&mut self) -> Result<()> {
        if self.owner_pid != std::process::id() {
            self.stop_producer();
        }
        if self.rx.is_some() {
            return Ok(());
        }
        let (tx, rx) = sync_channel(self.shared.cfg.prefetch);
        let (shared, start, stop, stats) = (self.shared.clone(), self.pos, self.stop.clone(), self.stats.clone());
        let handle = std::thread::Builder::new()
            .name("distilx-producer".into())
            .spawn(move || produce(shared, start, tx, stop, stats))
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
            Ok(Msg::Batch(b)) => {
                self.pos = b.after;
                Ok(Poll::Batch(b.data))
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
                        self.shared.cfg.shape.batch_size,
                        self.shared.cfg.seq.min_seq_len)));
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

/// Count every id over the corpus (one tokenization pass; bounded memory), for frequency masking.
pub fn count_tokens(inputs: &[String], tokenizer: &Tokenizer, read: ReadOptions, num_threads: Option<usize>) -> Result<Vec<u64>> {
    let files = expand_inputs(inputs)?;
    let pool = thread_pool(num_threads)?;
    let mut reader = DocReader::new(files, read);
    let mut counts = vec![0u64; tokenizer.vocab_size as usize];
    loop {
        let items = reader.next_docs(ROUND_BYTES * 4)?;
        if items.is_empty() {
            break;
        }
        for d in tokenize_docs(tokenizer, &items, false, &pool)? {
            for id in d.ids {
                if let Some(c) = counts.get_mut(id as usize) {
                    *c += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// Seconds and counts of each stage run alone over a whole corpus (for `bench/bench_data.py`).
#[derive(Clone, Debug, Default)]
pub struct StageCosts {
    pub documents: u64,
    pub bytes: u64,
    pub tokens: u64,
    pub rows: u64,
    pub padded_tokens: u64,
    pub read_s: f64,
    pub tokenize_s: f64,
    pub frame_s: f64,
    pub mask_s: f64,
    /// Process CPU seconds (all threads) of each stage: meaningful even on a busy machine.
    pub read_cpu: f64,
    pub tokenize_cpu: f64,
    pub frame_cpu: f64,
    pub mask_cpu: f64,
}

/// CPU seconds used so far by this process, all threads (user + system).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Run read -> tokenize -> frame -> mask one stage at a time over the corpus (held in memory:
/// benchmark corpora only), timing each; tokenization and masking use `num_threads` threads.
pub fn stage_costs(inputs: &[String], tokenizer: &Tokenizer, seq: SeqConfig, batch_size: usize, masker: &Masker, num_threads: Option<usize>) -> Result<StageCosts> {
    use std::time::Instant;
    let pool = thread_pool(num_threads)?;
    let mut c = StageCosts::default();
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let mut reader = DocReader::new(expand_inputs(inputs)?, ReadOptions::default());
    let mut items = Vec::new();
    let mut text = String::new();
    while let Some(pos) = reader.next_doc(&mut text)? {
        items.push((pos, std::mem::take(&mut text)));
    }
    c.read_s = t.elapsed().as_secs_f64();
    c.read_cpu = process_cpu_seconds() - cpu;
    c.documents = items.len() as u64;
    c.bytes = reader.stats.bytes;
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let docs = tokenize_docs(tokenizer, &items, false, &pool)?;
    c.tokenize_s = t.elapsed().as_secs_f64();
    c.tokenize_cpu = process_cpu_seconds() - cpu;
    c.tokens = docs.iter().map(|d| d.ids.len() as u64).sum();
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let mut builder = SequenceBuilder::new(seq.clone());
    let mut rows = Vec::new();
    for d in docs {
        builder.push(d, 0);
        while let Some(r) = builder.next_row(false) {
            rows.push(r);
        }
    }
    while let Some(r) = builder.next_row(true) {
        rows.push(r);
    }
    c.frame_s = t.elapsed().as_secs_f64();
    c.frame_cpu = process_cpu_seconds() - cpu;
    c.rows = rows.len() as u64;
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let padded: u64 = pool.install(|| {
        rows.par_chunks(batch_size)
            .map(|chunk| {
                let ids: Vec<&[u32]> = chunk.iter().map(|r| r.ids.as_slice()).collect();
                let keys: Vec<u64> = chunk.iter().map(|r| r.start.key()).collect();
                let b = masker.mask(&ids, &[], &keys, keys[0], seq.seq_len, 0, 0);
                (b.rows * b.cols) as u64
            })
            .sum()
    });
    c.mask_s = t.elapsed().as_secs_f64();
    c.mask_cpu = process_cpu_seconds() - cpu;
    c.padded_tokens = padded;
    Ok(c)
}
