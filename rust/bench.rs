//! Per-stage costs for `bench/bench_data.py`, built only with the `bench` cargo feature (the
//! shipped wheel carries neither this timing code nor its `libc` dependency): each stage of the
//! pipeline run alone over a whole corpus held in memory, with wall and process-CPU seconds.

use std::time::Instant;

use rayon::prelude::*;

use crate::corpus::{expand_inputs, DocReader, ReadOptions};
use crate::error::Result;
use crate::masking::Masker;
use crate::sequences::{SeqConfig, SequenceBuilder};
use crate::source::text::tokenize_docs;
use crate::tokenize::{thread_pool, Tokenizer};

/// Seconds and counts of each stage run alone over a whole corpus.
#[derive(Clone, Debug, Default)]
pub struct StageCosts {
    pub documents: u64,
    pub bytes: u64,
    pub tokens: u64,
    pub rows: u64,
    pub padded_tokens: u64,
    /// (wall seconds, process CPU seconds of all threads) per stage: CPU time stays meaningful on a
    /// busy machine.
    pub read: (f64, f64),
    pub tokenize: (f64, f64),
    pub frame: (f64, f64),
    pub mask: (f64, f64),
}

/// CPU seconds used so far by this process, all threads (user + system).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Run `stage`, returning its result and its (wall, CPU) seconds.
fn timed<T>(stage: impl FnOnce() -> Result<T>) -> Result<(T, (f64, f64))> {
    let (t, cpu) = (Instant::now(), process_cpu_seconds());
    let out = stage()?;
    Ok((out, (t.elapsed().as_secs_f64(), process_cpu_seconds() - cpu)))
}

/// Run read -> tokenize -> frame -> mask one stage at a time over the corpus (held in memory:
/// benchmark corpora only); tokenization and masking use `num_threads` threads.
pub fn stage_costs(inputs: &[String], tokenizer: &Tokenizer, seq: SeqConfig, batch_size: usize, masker: &Masker, num_threads: Option<usize>) -> Result<StageCosts> {
    let pool = thread_pool(num_threads)?;
    let mut c = StageCosts::default();
    let mut reader = DocReader::new(expand_inputs(inputs)?, ReadOptions::default());
    let (items, read) = timed(|| {
        let mut items = Vec::new();
        let mut text = String::new();
        while let Some(pos) = reader.next_doc(&mut text)? {
            items.push((pos, std::mem::take(&mut text)));
        }
        Ok(items)
    })?;
    (c.read, c.documents, c.bytes) = (read, items.len() as u64, reader.stats.bytes);
    let (docs, tokenize) = timed(|| tokenize_docs(tokenizer, &items, false, &pool))?;
    (c.tokenize, c.tokens) = (tokenize, docs.iter().map(|d| d.ids.len() as u64).sum());
    let (rows, frame) = timed(|| {
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
        Ok(rows)
    })?;
    (c.frame, c.rows) = (frame, rows.len() as u64);
    let (padded, mask) = timed(|| {
        Ok(pool.install(|| {
            rows.par_chunks(batch_size)
                .map(|chunk| {
                    let ids: Vec<&[u32]> = chunk.iter().map(|r| r.ids.as_slice()).collect();
                    let keys: Vec<u64> = chunk.iter().map(|r| r.start.key()).collect();
                    let b = masker.mask(&ids, &[], &keys, keys[0], seq.seq_len, 0, 0);
                    (b.rows * b.cols) as u64
                })
                .sum()
        }))
    })?;
    (c.mask, c.padded_tokens) = (mask, padded);
    Ok(c)
}
