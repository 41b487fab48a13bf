//! The producer: one epoch of a stream, from a position, on a thread of its own — documents from a
//! source -> rows -> windows -> planned, masked batches -> a bounded queue.
//!
//! Determinism and resume. Rows are cut into *windows* of `window_batches × batch_size` rows; a
//! window is shuffled / length-grouped with an RNG keyed by (seed, epoch, its first row), and each
//! batch's masks are keyed by (seed, epoch, its rows). A [`Position`] is therefore tiny: (epoch,
//! the first row of the current window — a document position plus a token offset —, batches of
//! that window already handed out, batches in the epoch so far). Resuming seeks the source straight
//! to that document, rebuilds the one window and skips the batches already seen: the batches that
//! follow are exactly an uninterrupted run's.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::batches::{plan, BatchShape, PlannedBatch};
use crate::cancel::Cancel;
use crate::corpus::ReadStats;
use crate::error::{Error, Result};
use crate::masking::{MaskedBatch, Masker};
use crate::options::StreamOptions;
use crate::sequences::{Row, RowStart, SeqConfig, SeqStats, SequenceBuilder};
use crate::source::{Corpus, DocSource, Want};
use crate::splitmix::{mix, Rng};
use crate::tokenize::Tokenizer;

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

/// What the producer sends.
pub(crate) enum Msg {
    /// A batch and the position after it.
    Batch(MaskedBatch, Position),
    /// The epoch is over.
    End,
    Err(Error),
}

/// Everything a producer needs, shared read-only.
pub(crate) struct Engine {
    pub corpus: Corpus,
    pub tokenizer: Arc<Tokenizer>,
    /// Validated.
    pub opts: StreamOptions,
    pub seq: SeqConfig,
    pub shape: BatchShape,
    pub masker: Masker,
    /// Batches per epoch on this rank when ranks must stop together (world_size > 1).
    pub limit: Option<u64>,
}

/// Run one epoch from `start`, sending batches until the end, an error, or the receiver is dropped.
pub(crate) fn produce(engine: Arc<Engine>, start: Position, tx: SyncSender<Msg>, stop: Cancel, stats: Arc<Mutex<Stats>>) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| produce_epoch(&engine, start, &tx, &stop, &stats)));
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

/// Rows from a document source, a window at a time; publishes the reading and framing counters.
struct Rows {
    source: Box<dyn DocSource>,
    builder: SequenceBuilder,
    /// Tokens of the first document already consumed before the resume point.
    first_skip: usize,
    exhausted: bool,
    last_read: ReadStats,
    last_seq: SeqStats,
}

impl Rows {
    /// The next window of up to `n` rows (fewer at the end of the epoch; none after it), or None
    /// when asked to stop.
    fn window(&mut self, n: usize, stop: &Cancel, stats: &Mutex<Stats>) -> Result<Option<Vec<Row>>> {
        let mut rows = Vec::with_capacity(n);
        let mut docs = Vec::new();
        while rows.len() < n {
            if let Some(r) = self.builder.next_row(self.exhausted) {
                rows.push(r);
                continue;
            }
            if self.exhausted {
                break;
            }
            if stop.is_cancelled() {
                return Ok(None);
            }
            self.exhausted = !self.source.next_docs(&mut docs)?;
            for d in docs.drain(..) {
                self.builder.push(d, std::mem::take(&mut self.first_skip));
            }
            // Publish the counters' growth since the last round.
            let (read, seq) = (self.source.read_stats(), self.builder.stats.clone());
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.read.add_growth(&read, &self.last_read);
            s.seq.add_growth(&seq, &self.last_seq);
            drop(s);
            self.last_read = read;
            self.last_seq = seq;
        }
        Ok(Some(rows))
    }
}

/// Mask the planned batches of a window (from the `skip`-th on) in parallel on `pool`.
fn mask_window(engine: &Engine, pool: &rayon::ThreadPool, rows: &[Row], planned: &[PlannedBatch], skip: u64, epoch: u64) -> Vec<(u64, MaskedBatch)> {
    pool.install(|| {
        planned
            .par_iter()
            .enumerate()
            .skip(skip as usize)
            .map(|(j, b)| {
                let ids: Vec<&[u32]> = b.rows.iter().map(|&i| rows[i].ids.as_slice()).collect();
                let words: Vec<&[bool]> = b.rows.iter().map(|&i| rows[i].word_start.as_slice()).collect();
                let keys: Vec<u64> = b.rows.iter().map(|&i| rows[i].start.key()).collect();
                let batch_key = keys.iter().fold(0u64, |a, &k| mix(a ^ k));
                let mut masked = engine.masker.mask(&ids, &words, &keys, batch_key, b.cols, engine.opts.seed, epoch);
                masked.row_starts = b.rows.iter().flat_map(|&i| [rows[i].start.doc.index, rows[i].start.offset]).collect();
                (j as u64, masked)
            })
            .collect()
    })
}

fn produce_epoch(engine: &Engine, start: Position, tx: &SyncSender<Msg>, stop: &Cancel, stats: &Mutex<Stats>) -> Result<()> {
    let epoch = start.epoch;
    // Stopping the producer also stops a source waiting on a long read.
    let tokenizing = engine.opts.tokenizing(&engine.tokenizer, stop)?;
    let want = Want { shard: engine.opts.shard(), shuffle: engine.shape.shuffle.then_some((engine.opts.seed, epoch)), word_ids: engine.seq.word_starts };
    let mut source = engine.corpus.open(&tokenizing, want);
    source.seek(start.window.doc)?;
    let mut rows_in = Rows {
        source,
        builder: SequenceBuilder::new(engine.seq.clone()),
        first_skip: start.window.offset as usize,
        exhausted: false,
        last_read: ReadStats::default(),
        last_seq: SeqStats::default(),
    };
    let window_rows = engine.opts.window_batches * engine.shape.batch_size;
    let mut skip_batches = start.batch_in_window;
    let mut batches_done = start.batches_done;
    loop {
        let rows = match rows_in.window(window_rows, stop, stats)? {
            Some(rows) if !rows.is_empty() => rows,
            _ => return Ok(()),
        };
        let window = rows[0].start;
        let mut rng = Rng::new(engine.opts.seed, epoch, window.key() ^ 0x57A7E);
        let planned = plan(&rows, &engine.shape, &mut rng);
        let masked = mask_window(engine, &tokenizing.pool, &rows, &planned, std::mem::take(&mut skip_batches), epoch);
        for (j, data) in masked {
            if engine.limit.is_some_and(|limit| batches_done >= limit) {
                return Ok(());
            }
            batches_done += 1;
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.batches += 1;
                s.padded_tokens += (data.rows * data.cols) as u64;
                s.target_tokens += data.targets as u64;
            }
            let after = Position { epoch, window, batch_in_window: j + 1, batches_done };
            if tx.send(Msg::Batch(data, after)).is_err() || stop.is_cancelled() {
                return Ok(());
            }
        }
    }
}
