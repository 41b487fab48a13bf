//! A pre-tokenized cache as a document source: the shard's documents, shuffled per epoch when
//! asked. A position's `index` is the cache's document number, its `offset` the place in this
//! shard's order (so a seek is O(1)).

use std::sync::Arc;

use super::{DocSource, Shard, Want};
use crate::cache::Cache;
use crate::corpus::{DocPos, ReadStats};
use crate::error::Result;
use crate::sequences::TokDoc;
use crate::splitmix::Rng;

/// Documents handed out per `next_docs` call.
const ROUND_DOCS: usize = super::text::ROUND_DOCS;

pub(super) struct CacheSource {
    cache: Arc<Cache>,
    order: Vec<u64>,
    next: usize,
    stats: ReadStats,
    word_ids: bool,
}

impl CacheSource {
    pub(super) fn new(cache: Arc<Cache>, want: Want) -> Self {
        let order = shard_order(&cache, want.shard, want.shuffle);
        CacheSource { cache, order, next: 0, stats: ReadStats::default(), word_ids: want.word_ids }
    }
}

/// The documents `shard` reads from a cache, in order: a shard owns the same documents as when
/// streaming raw files, shuffled per (seed, epoch) when asked, so its row count is the same every epoch.
fn shard_order(cache: &Cache, shard: Shard, shuffle: Option<(u64, u64)>) -> Vec<u64> {
    let mut mine: Vec<u64> = (0..cache.num_documents()).filter(|&i| shard.owns(i)).collect();
    if let Some((seed, epoch)) = shuffle {
        Rng::new(seed, epoch, 0xCAC4E ^ shard.rank).shuffle(&mut mine);
    }
    mine
}

impl DocSource for CacheSource {
    fn seek(&mut self, at: DocPos) -> Result<()> {
        self.next = at.offset as usize;
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
            self.cache.document(d, &mut doc.ids, if self.word_ids { Some(&mut doc.word_ids) } else { None })?;
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
