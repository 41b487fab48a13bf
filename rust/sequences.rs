//! Framing tokenized documents into model rows.
//!
//! Framing is the tokenizer's (its single-sequence template, `crate::specials`): a prefix and a
//! suffix of special ids, `[CLS] … [SEP]` for BERT, `<s> … </s>` for RoBERTa/XLM-R.
//! - Chunking (default): `prefix doc suffix`, a long document split into chunks of at most
//!   `seq_len` (each with its own prefix and suffix).
//! - Packing: rows filled to `seq_len` across documents: `prefix d1 suffix d2 suffix d3…`; a
//!   document (with its suffix) that does not fit continues in the next row.
//!
//! Filters (DistilBERT's): rows shorter than `min_seq_len` are dropped, and rows (documents when
//! packing) with `[UNK]` making up >= `max_unk_ratio` of their tokens.
//!
//! Every row remembers where it starts — (document position, token offset in that document) — so a
//! stream can restart at any row without re-reading what came before, and a `key` unique within
//! the corpus that seeds its masks.

use std::collections::VecDeque;

use crate::corpus::DocPos;

/// A tokenized document: ids without special tokens, plus each token's word index when whole-word
/// masking needs it (empty otherwise).
#[derive(Clone, Debug, Default)]
pub struct TokDoc {
    pub pos: DocPos,
    pub ids: Vec<u32>,
    pub word_ids: Vec<u32>,
}

/// Where a row starts: the document and the token offset inside it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowStart {
    pub doc: DocPos,
    pub offset: u64,
}

impl RowStart {
    /// A corpus-unique number for this start (seeds the masks).
    pub fn key(&self) -> u64 {
        crate::splitmix::mix(self.doc.index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.offset)
    }
}

/// One model row: ids with their framing, and (whole-word masking only) a word-start flag per id.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub ids: Vec<u32>,
    pub word_start: Vec<bool>,
    pub start: RowStart,
}

#[derive(Clone, Debug)]
pub struct SeqConfig {
    pub seq_len: usize,
    pub packing: bool,
    pub min_seq_len: usize,
    pub max_unk_ratio: f64,
    /// Special ids before each row (chunking) or at the start of each row (packing).
    pub prefix: Vec<u32>,
    /// Special ids after each chunk, or after each document when packing (non-empty then).
    pub suffix: Vec<u32>,
    /// None when the tokenizer has no unknown token (nothing to filter).
    pub unk_id: Option<u32>,
    pub word_starts: bool,
}

impl SeqConfig {
    /// Document tokens a chunk holds: what the framing leaves of `seq_len`.
    fn body(&self) -> usize {
        self.seq_len - self.prefix.len() - self.suffix.len()
    }
}

counters! {
    /// What framing met (all cumulative).
    pub struct SeqStats {
        sequences,
        tokens,
        dropped_short,
        dropped_unk,
        empty_documents,
    }
}

/// Turns a stream of tokenized documents into rows, holding only the documents not yet consumed.
pub struct SequenceBuilder {
    cfg: SeqConfig,
    pending: VecDeque<TokDoc>,
    /// Token offset into the front pending document (packing: offsets len.. = its suffix).
    front_offset: usize,
    /// Packing: tokens available in `pending` (each document counts its suffix too).
    available: usize,
    pub stats: SeqStats,
}

fn unk_ratio_too_high(ids: &[u32], unk: Option<u32>, max_ratio: f64, total_len: usize) -> bool {
    let Some(unk) = unk else { return false };
    if max_ratio >= 1.0 || total_len == 0 {
        return false;
    }
    let unks = ids.iter().filter(|&&t| t == unk).count();
    unks as f64 / total_len as f64 >= max_ratio
}

impl SequenceBuilder {
    pub fn new(cfg: SeqConfig) -> Self {
        SequenceBuilder { cfg, pending: VecDeque::new(), front_offset: 0, available: 0, stats: SeqStats::default() }
    }

    /// Add a document. `skip` tokens of it are treated as already consumed (resume mid-document).
    pub fn push(&mut self, doc: TokDoc, skip: usize) {
        if doc.ids.is_empty() {
            self.stats.empty_documents += 1;
            return;
        }
        if self.cfg.packing {
            // Packing filters whole documents (a row mixes several).
            let framed = doc.ids.len() + self.cfg.prefix.len() + self.cfg.suffix.len();
            if unk_ratio_too_high(&doc.ids, self.cfg.unk_id, self.cfg.max_unk_ratio, framed) {
                self.stats.dropped_unk += 1;
                return;
            }
            let with_suffix = doc.ids.len() + self.cfg.suffix.len();
            self.available += with_suffix - skip.min(with_suffix);
        }
        if self.pending.is_empty() {
            self.front_offset = skip;
        }
        self.pending.push_back(doc);
    }

    /// The next row; `None` when more documents are needed (or, with `at_end`, none are left).
    pub fn next_row(&mut self, at_end: bool) -> Option<Row> {
        if self.cfg.packing {
            self.next_packed(at_end)
        } else {
            self.next_chunk()
        }
    }

    fn word_start_flags(&self, doc: &TokDoc, from: usize, to: usize, out: &mut Vec<bool>) {
        for i in from..to {
            out.push(i == from || doc.word_ids.get(i) != doc.word_ids.get(i - 1));
        }
    }

    fn next_chunk(&mut self) -> Option<Row> {
        let body = self.cfg.body();
        let framing = self.cfg.prefix.len() + self.cfg.suffix.len();
        loop {
            let doc = self.pending.front()?;
            if self.front_offset >= doc.ids.len() {
                self.pending.pop_front();
                self.front_offset = 0;
                continue;
            }
            let from = self.front_offset;
            let to = (from + body).min(doc.ids.len());
            let start = RowStart { doc: doc.pos, offset: from as u64 };
            let len = to - from + framing;
            self.front_offset = to;
            if len < self.cfg.min_seq_len {
                self.stats.dropped_short += 1;
                continue;
            }
            if unk_ratio_too_high(&doc.ids[from..to], self.cfg.unk_id, self.cfg.max_unk_ratio, len) {
                self.stats.dropped_unk += 1;
                continue;
            }
            let mut ids = Vec::with_capacity(len);
            ids.extend_from_slice(&self.cfg.prefix);
            ids.extend_from_slice(&doc.ids[from..to]);
            ids.extend_from_slice(&self.cfg.suffix);
            let mut word_start = Vec::new();
            if self.cfg.word_starts {
                word_start.reserve(len);
                word_start.extend(self.cfg.prefix.iter().map(|_| true));
                self.word_start_flags(doc, from, to, &mut word_start);
                word_start.extend(self.cfg.suffix.iter().map(|_| true));
            }
            self.stats.sequences += 1;
            self.stats.tokens += len as u64;
            return Some(Row { ids, word_start, start });
        }
    }

    fn next_packed(&mut self, at_end: bool) -> Option<Row> {
        let body = self.cfg.seq_len - self.cfg.prefix.len();
        loop {
            if self.available == 0 || (self.available < body && !at_end) {
                return None;
            }
            let front = self.pending.front().expect("available > 0 implies a pending document");
            let start = RowStart { doc: front.pos, offset: self.front_offset as u64 };
            let mut ids = Vec::with_capacity(self.cfg.seq_len);
            let mut word_start = Vec::new();
            ids.extend_from_slice(&self.cfg.prefix);
            if self.cfg.word_starts {
                word_start.extend(self.cfg.prefix.iter().map(|_| true));
            }
            while ids.len() < self.cfg.seq_len {
                let Some(doc) = self.pending.front() else { break };
                let n = doc.ids.len();
                if self.front_offset < n {
                    let take = (self.cfg.seq_len - ids.len()).min(n - self.front_offset);
                    let from = self.front_offset;
                    ids.extend_from_slice(&doc.ids[from..from + take]);
                    if self.cfg.word_starts {
                        let mut flags = Vec::with_capacity(take);
                        self.word_start_flags(doc, from, from + take, &mut flags);
                        word_start.extend(flags);
                    }
                    self.front_offset += take;
                    self.available -= take;
                } else {
                    // The document's suffix, as much of it as fits.
                    let done = self.front_offset - n;
                    let take = (self.cfg.seq_len - ids.len()).min(self.cfg.suffix.len() - done);
                    ids.extend_from_slice(&self.cfg.suffix[done..done + take]);
                    if self.cfg.word_starts {
                        word_start.extend(std::iter::repeat_n(true, take));
                    }
                    self.available -= take;
                    self.front_offset += take;
                    if self.front_offset == n + self.cfg.suffix.len() {
                        self.pending.pop_front();
                        self.front_offset = 0;
                    }
                }
            }
            if ids.len() < self.cfg.min_seq_len {
                self.stats.dropped_short += 1;
                continue;
            }
            self.stats.sequences += 1;
            self.stats.tokens += ids.len() as u64;
            return Some(Row { ids, word_start, start });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(packing: bool) -> SeqConfig {
        SeqConfig { seq_len: 8, packing, min_seq_len: 3, max_unk_ratio: 0.5, prefix: vec![1], suffix: vec![2], unk_id: Some(3), word_starts: true }
    }

    fn doc(index: u64, ids: Vec<u32>) -> TokDoc {
        let word_ids = (0..ids.len() as u32).map(|i| i / 2).collect();
        TokDoc { pos: DocPos { file: 0, offset: index * 100, index }, ids, word_ids }
    }

    fn drain(b: &mut SequenceBuilder) -> Vec<Row> {
        let mut out = Vec::new();
        while let Some(r) = b.next_row(true) {
            out.push(r);
        }
        out
    }

    #[test]
    fn chunking_splits_and_filters() {
        let mut b = SequenceBuilder::new(cfg(false));
        b.push(doc(0, (10..23).collect()), 0); // 13 tokens -> 6 + 6 + 1 (last too short: 3 ids ok)
        b.push(doc(1, vec![3, 3, 3, 10]), 0); // 3/6 unk -> dropped
        b.push(doc(2, vec![]), 0);
        let rows = drain(&mut b);
        let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 10, 11, 12, 13, 14, 15, 2], vec![1, 16, 17, 18, 19, 20, 21, 2], vec![1, 22, 2]]);
        assert_eq!(rows[1].start, RowStart { doc: DocPos { file: 0, offset: 0, index: 0 }, offset: 6 });
        assert_eq!(b.stats.dropped_unk, 1);
        assert_eq!(b.stats.empty_documents, 1);
        // Word starts: CLS, then pairs (word index i/2), SEP.
        assert_eq!(rows[0].word_start, vec![true, true, false, true, false, true, false, true]);
        assert!(rows[1].word_start[1], "a chunk opens with a word start");
    }

    #[test]
    fn chunks_follow_any_framing() {
        // Prefix only, suffix only, two tokens on each side: the body is what the framing leaves.
        for (prefix, suffix) in [(vec![1], vec![]), (vec![], vec![2]), (vec![1, 4], vec![2, 5])] {
            let mut b = SequenceBuilder::new(SeqConfig { prefix: prefix.clone(), suffix: suffix.clone(), ..cfg(false) });
            b.push(doc(0, (10..23).collect()), 0);
            let rows = drain(&mut b);
            let body = 8 - prefix.len() - suffix.len();
            let docs: Vec<u32> = (10..23).collect();
            let want: Vec<Vec<u32>> = docs.chunks(body).map(|c| [prefix.as_slice(), c, suffix.as_slice()].concat()).filter(|r| r.len() >= 3).collect();
            assert_eq!(rows.iter().map(|r| r.ids.clone()).collect::<Vec<_>>(), want, "{prefix:?} … {suffix:?}");
            assert!(rows.iter().all(|r| r.word_start.len() == r.ids.len()));
        }
    }

    #[test]
    fn packing_fills_rows_and_resumes_mid_document() {
        let docs = vec![doc(0, (10..15).collect()), doc(1, (20..29).collect()), doc(2, (30..33).collect())];
        // One-token framing ([CLS] d1 [SEP] d2 [SEP]) and a two-token suffix that rows cut through.
        for (prefix, suffix) in [(vec![1], vec![2]), (vec![1, 4], vec![2, 5])] {
            let cfg = SeqConfig { prefix: prefix.clone(), suffix: suffix.clone(), ..cfg(true) };
            let mut b = SequenceBuilder::new(cfg.clone());
            for d in &docs {
                b.push(d.clone(), 0);
            }
            let rows = drain(&mut b);
            let flat: Vec<u32> = rows.iter().flat_map(|r| r.ids[prefix.len()..].to_vec()).collect();
            let want: Vec<u32> = docs.iter().flat_map(|d| [d.ids.as_slice(), suffix.as_slice()].concat()).collect();
            assert_eq!(flat, want);
            assert!(rows.iter().all(|r| r.ids.len() <= 8 && r.ids.starts_with(&prefix) && r.word_start.len() == r.ids.len()));
            // Restarting at any row's start reproduces the rest.
            for (k, row) in rows.iter().enumerate() {
                let mut b2 = SequenceBuilder::new(cfg.clone());
                let first = docs.iter().position(|d| d.pos == row.start.doc).unwrap();
                b2.push(docs[first].clone(), row.start.offset as usize);
                for d in &docs[first + 1..] {
                    b2.push(d.clone(), 0);
                }
                let rest: Vec<Vec<u32>> = drain(&mut b2).into_iter().map(|r| r.ids).collect();
                let want: Vec<Vec<u32>> = rows[k..].iter().map(|r| r.ids.clone()).collect();
                assert_eq!(rest, want, "{suffix:?}: resume at row {k}");
            }
        }
    }
}
