//! Dynamic masking, a pure function of (seed, epoch, row or batch key) and the ids: a
//! counter-based RNG ([`crate::splitmix`]) keyed by those numbers, so threads, prefetch depth and
//! resume never change a mask, and a new epoch gives new masks.
//!
//! Targets are chosen by one of three modes, then each target becomes `[MASK]` with
//! `mask_replace_prob`, a random non-special id with `random_replace_prob`, else stays:
//! - uniform: every non-special token independently with `mlm_probability` (BERT/RoBERTa);
//! - frequency: a fixed number of targets per batch ([`TargetCount`]), drawn without replacement
//!   with weight count^-smoothing (DistilBERT's smoothing) — weighted reservoir keys u^(1/w), in
//!   log space when a weight would leave the f64 range (any finite smoothing keeps its count);
//! - whole_word: every word (a run of tokens of one pre-tokenized word) with `mlm_probability`,
//!   all its tokens together.
//!
//! Special tokens and padding are never targets.

use crate::error::{Error, Result};
use crate::splitmix::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Uniform,
    Frequency,
    WholeWord,
}

/// How many targets frequency masking draws per batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetCount {
    /// round(p x eligible tokens): the rate `uniform` gives in expectation, so switching modes keeps it.
    Eligible,
    /// ceil(p x all real tokens, [CLS]/[SEP] included): DistilBERT's original count.
    AllTokens,
}

/// What to mask and how (the masking options of a stream).
#[derive(Clone, Debug)]
pub struct MaskConfig {
    pub mode: Mode,
    pub mlm_probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    pub targets: TargetCount,
    pub smoothing: f64,
}

pub struct Masker {
    pub cfg: MaskConfig,
    pub mask_id: u32,
    pub pad_id: u32,
    /// special[id]: never a target.
    special: Vec<bool>,
    /// Ids a random replacement is drawn from (all non-special ids).
    replacements: Vec<u32>,
    /// Frequency mode: each id's weight count^-smoothing (specials excluded).
    weights: Weights,
}

/// Frequency masking's weights, and so its sampling keys. Both forms order the candidates alike
/// (exactly, up to rounding): the plain one whenever every weight is a comfortable f64 (DistilBERT's
/// 0.7 on any corpus), the log one when count^-smoothing would underflow to 0 (or overflow) for some
/// id — with smoothing >= 100 that silently removed the frequent tokens from the draw and shrank the
/// number of targets.
enum Weights {
    /// No weights (not frequency masking).
    None,
    /// w = count^-smoothing (0: special); key ln(u) / w, which orders like u^(1/w).
    Plain(Vec<f64>),
    /// ln w = -smoothing x ln(count) (-inf: special); key ln w - ln(-ln u), the Gumbel-top-k key,
    /// a monotone function of ln(u) / w that stays finite for any finite smoothing.
    Log(Vec<f64>),
}

/// Plain weights are used while every ln w lies in [-PLAIN_LN_LIMIT, PLAIN_LN_LIMIT]: w and
/// ln(u) / w (|ln u| <= 709) then stay finite, normal f64s.
const PLAIN_LN_LIMIT: f64 = 600.0;

/// |smoothing| is clamped to this before the weights are formed: beyond it smoothing x ln(count)
/// (ln count <= 44.4 for a u64 count) could overflow to -inf, which dropped those tokens from the draw
/// (smoothing 1e308 gave 14 targets where round(p x eligible) is 36). At 1e300 the keys already order
/// the tokens by their counts alone (the Gumbel noise is far below their rounding), the order every
/// larger smoothing tends to, so the clamp changes no draw and keeps the count.
const SMOOTHING_LIMIT: f64 = 1e300;

impl Weights {
    /// The weights for `counts` (one per id) with exponent `smoothing`; specials get none.
    fn new(counts: &[u64], special: &[bool], smoothing: f64) -> Self {
        let smoothing = smoothing.clamp(-SMOOTHING_LIMIT, SMOOTHING_LIMIT);
        let ln_w: Vec<f64> = counts.iter().enumerate().map(|(i, &c)| if special[i] { f64::NEG_INFINITY } else { -smoothing * (c.max(1) as f64).ln() }).collect();
        if ln_w.iter().all(|&l| l == f64::NEG_INFINITY || l.abs() <= PLAIN_LN_LIMIT) {
            Weights::Plain(counts.iter().enumerate().map(|(i, &c)| if special[i] { 0.0 } else { (c.max(1) as f64).powf(-smoothing) }).collect())
        } else {
            Weights::Log(ln_w)
        }
    }

    /// The sampling key of a token with id `id` and uniform draw `u` in (0, 1): the batch's targets
    /// are the tokens with the largest keys. None for ids that are never drawn.
    #[inline]
    fn key(&self, id: u32, u: f64) -> Option<f64> {
        match self {
            Weights::None => None,
            Weights::Plain(w) => w.get(id as usize).copied().filter(|&w| w > 0.0).map(|w| u.ln() / w),
            Weights::Log(ln_w) => ln_w.get(id as usize).copied().filter(|&l| l > f64::NEG_INFINITY).map(|l| l - (-u.ln()).ln()),
        }
    }
}

/// The three arrays of one batch, row-major [rows, cols].
pub struct MaskedBatch {
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub labels: Vec<i64>,
    pub rows: usize,
    pub cols: usize,
    /// Number of prediction targets (labels != -100).
    pub targets: usize,
    /// Where each row starts, as (document index, token offset) pairs, row after row: the stream's
    /// record of what the batch was made of (filled by the producer).
    pub row_starts: Vec<u64>,
}

pub const IGNORE: i64 = -100;

impl Masker {
    /// A masker over a vocabulary of `vocab_size` ids; `token_counts` (one per id) is needed by
    /// frequency masking. `cfg` is checked by `StreamOptions::validate`.
    pub fn new(cfg: &MaskConfig, vocab_size: u32, special_ids: &[u32], mask_id: u32, pad_id: u32, token_counts: Option<&[u64]>) -> Result<Self> {
        let n = vocab_size as usize;
        let mut special = vec![false; n];
        for &s in special_ids {
            if (s as usize) < n {
                special[s as usize] = true;
            }
        }
        let replacements: Vec<u32> = (0..vocab_size).filter(|&i| !special[i as usize]).collect();
        if replacements.is_empty() {
            return Err(Error::InvalidTokenizer("the vocabulary has no non-special token to mask".into()));
        }
        let weights = if cfg.mode == Mode::Frequency {
            let counts = token_counts.ok_or_else(|| Error::InvalidConfig("frequency masking needs a token-count table".into()))?;
            if counts.len() != n {
                return Err(Error::InvalidConfig(format!(
                    "token_counts must hold one count per id ({n} for this vocabulary), got {}; compute it with distilx.data.count_tokens for this tokenizer",
                    counts.len())));
            }
            Weights::new(counts, &special, cfg.smoothing)
        } else {
            Weights::None
        };
        Ok(Masker { cfg: cfg.clone(), mask_id, pad_id, special, replacements, weights })
    }

    #[inline]
    fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Corrupt one target in place (80/10/10 by default).
    #[inline]
    fn corrupt(&self, rng: &mut Rng, id: u32) -> u32 {
        let u = rng.unit();
        if u < self.cfg.mask_replace_prob {
            self.mask_id
        } else if u < self.cfg.mask_replace_prob + self.cfg.random_replace_prob {
            self.replacements[rng.below(self.replacements.len())]
        } else {
            id
        }
    }

    /// Mask a batch of rows padded to `cols`. `keys[i]` identifies row i in the corpus; `batch_key`
    /// the batch (frequency mode draws over the whole batch).
    #[allow(clippy::too_many_arguments)]
    pub fn mask(&self, rows: &[&[u32]], word_starts: &[&[bool]], keys: &[u64], batch_key: u64, cols: usize, seed: u64, epoch: u64) -> MaskedBatch {
        let n = rows.len();
        // Each array written once, row by row (no fill-then-overwrite pass).
        let mut input_ids = Vec::with_capacity(n * cols);
        let mut attention_mask = Vec::with_capacity(n * cols);
        for ids in rows {
            let len = ids.len().min(cols);
            input_ids.extend(ids[..len].iter().map(|&x| x as i64));
            input_ids.extend(std::iter::repeat_n(self.pad_id as i64, cols - len));
            attention_mask.extend(std::iter::repeat_n(1i64, len));
            attention_mask.extend(std::iter::repeat_n(0i64, cols - len));
        }
        let mut labels = vec![IGNORE; n * cols];
        let mut targets = 0usize;
        match self.cfg.mode {
            Mode::Uniform => {
                // Bernoulli(p) per eligible token from 32-bit slices of one 64-bit draw (two tokens
                // per draw): p is resolved to 2^-32, far below any statistical effect.
                let threshold = (self.cfg.mlm_probability * 4_294_967_296.0).min(4_294_967_296.0) as u64;
                for (r, ids) in rows.iter().enumerate() {
                    let mut rng = Rng::new(seed, epoch, keys[r]);
                    let base = r * cols;
                    let (mut bits, mut left) = (0u64, 0u32);
                    for (c, &id) in ids.iter().enumerate() {
                        if self.is_special(id) {
                            continue;
                        }
                        if left == 0 {
                            bits = rng.next_u64();
                            left = 2;
                        }
                        let draw = bits & 0xFFFF_FFFF;
                        bits >>= 32;
                        left -= 1;
                        if draw < threshold {
                            targets += 1;
                            labels[base + c] = id as i64;
                            input_ids[base + c] = self.corrupt(&mut rng, id) as i64;
                        }
                    }
                }
            }
            Mode::WholeWord => {
                for (r, ids) in rows.iter().enumerate() {
                    let mut rng = Rng::new(seed, epoch, keys[r]);
                    let starts = word_starts.get(r).copied().unwrap_or(&[]);
                    let base = r * cols;
                    let mut chosen = false;
                    for (c, &id) in ids.iter().enumerate() {
                        if self.is_special(id) {
                            chosen = false;
                            continue;
                        }
                        // A new word decides for all its tokens (a missing flag = a new word).
                        if starts.get(c).copied().unwrap_or(true) || c == 0 || self.is_special(ids[c - 1]) {
                            chosen = rng.unit() < self.cfg.mlm_probability;
                        }
                        if chosen {
                            targets += 1;
                            labels[base + c] = id as i64;
                            input_ids[base + c] = self.corrupt(&mut rng, id) as i64;
                        }
                    }
                }
            }
            Mode::Frequency => {
                let mut rng = Rng::new(seed, epoch, batch_key ^ 0xF5E9_0000_0000_0000);
                // (key, flat index): the k largest keys u^(1/w) are a weighted sample without replacement.
                let mut cand: Vec<(f64, usize)> = Vec::new();
                for (r, ids) in rows.iter().enumerate() {
                    for (c, &id) in ids.iter().enumerate() {
                        if self.is_special(id) {
                            continue;
                        }
                        // The same draws as before the log form existed: one per non-special token.
                        let u = rng.unit().max(f64::MIN_POSITIVE);
                        if let Some(key) = self.weights.key(id, u) {
                            cand.push((key, r * cols + c));
                        }
                    }
                }
                let k = match self.cfg.targets {
                    TargetCount::Eligible => (self.cfg.mlm_probability * cand.len() as f64).round() as usize,
                    TargetCount::AllTokens => {
                        // As DistilBERT computes it: ceil(p * lengths.sum()) over the real tokens.
                        let real: usize = rows.iter().map(|ids| ids.len().min(cols)).sum();
                        (self.cfg.mlm_probability * real as f64).ceil() as usize
                    }
                }
                .min(cand.len());
                if k > 0 && k < cand.len() {
                    cand.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
                }
                let mut picked: Vec<usize> = cand[..k].iter().map(|x| x.1).collect();
                picked.sort_unstable();
                targets = picked.len();
                for idx in picked {
                    let id = input_ids[idx] as u32;
                    labels[idx] = id as i64;
                    input_ids[idx] = self.corrupt(&mut rng, id) as i64;
                }
            }
        }
        MaskedBatch { input_ids, attention_mask, labels, rows: n, cols, targets, row_starts: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitmix::Rng;

    fn cfg(mode: Mode) -> MaskConfig {
        MaskConfig { mode, mlm_probability: 0.15, mask_replace_prob: 0.8, random_replace_prob: 0.1, targets: TargetCount::Eligible, smoothing: 0.7 }
    }

    fn rows(n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
        let mut rng = Rng::new(seed, 0, 0);
        (0..n)
            .map(|_| {
                let mut r = vec![1];
                r.extend((0..len - 2).map(|_| 5 + rng.below(995) as u32));
                r.push(2);
                r
            })
            .collect()
    }

    fn rates(m: &Masker, data: &[Vec<u32>], epoch: u64) -> (f64, f64, f64, u64) {
        let (mut tgt, mut eligible, mut masked, mut random, mut kept) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for (b, chunk) in data.chunks(32).enumerate() {
            let refs: Vec<&[u32]> = chunk.iter().map(|r| r.as_slice()).collect();
            let keys: Vec<u64> = (0..chunk.len()).map(|i| (b * 32 + i) as u64).collect();
            let out = m.mask(&refs, &[], &keys, b as u64, 128, 7, epoch);
            for (r, row) in chunk.iter().enumerate() {
                for (c, &id) in row.iter().enumerate() {
                    let i = r * 128 + c;
                    if id > 4 {
                        eligible += 1;
                    }
                    if out.labels[i] != IGNORE {
                        assert!(id > 4, "a special token was a target");
                        assert_eq!(out.labels[i], id as i64);
                        tgt += 1;
                        match out.input_ids[i] {
                            3 => masked += 1,
                            x if x == id as i64 => kept += 1,
                            x => {
                                assert!(x > 4, "random replacement drew a special id");
                                random += 1
                            }
                        }
                    }
                }
                for c in row.len()..128 {
                    assert_eq!(out.labels[r * 128 + c], IGNORE);
                    assert_eq!(out.attention_mask[r * 128 + c], 0);
                }
            }
        }
        let t = tgt as f64;
        // a random replacement can draw the original id: counted as kept here (1/995 of 10%).
        (t / eligible as f64, masked as f64 / t, random as f64 / t, kept)
    }

    #[test]
    fn uniform_and_frequency_rates() {
        let data = rows(8000, 128, 1); // ~1M tokens
        for mode in [Mode::Uniform, Mode::Frequency] {
            let counts: Vec<u64> = (0..1000u64).map(|i| 1 + (i * 37) % 500).collect();
            let m = Masker::new(&cfg(mode), 1000, &[0, 1, 2, 3, 4], 3, 0, Some(&counts)).unwrap();
            let (rate, mk, rnd, _) = rates(&m, &data, 0);
            assert!((rate - 0.15).abs() < 0.005, "{mode:?} rate {rate}");
            assert!((mk - 0.8).abs() < 0.01, "{mode:?} mask share {mk}");
            assert!((rnd - 0.1).abs() < 0.01, "{mode:?} random share {rnd}");
        }
    }

    #[test]
    fn deterministic_and_epoch_dependent() {
        let data = rows(4, 100, 2);
        let refs: Vec<&[u32]> = data.iter().map(|r| r.as_slice()).collect();
        let m = Masker::new(&cfg(Mode::Uniform), 1000, &[0, 1, 2, 3, 4], 3, 0, None).unwrap();
        let a = m.mask(&refs, &[], &[1, 2, 3, 4], 9, 100, 0, 0);
        let b = m.mask(&refs, &[], &[1, 2, 3, 4], 9, 100, 0, 0);
        let c = m.mask(&refs, &[], &[1, 2, 3, 4], 9, 100, 0, 1);
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.input_ids, b.input_ids);
        assert_ne!(a.labels, c.labels);
    }

    #[test]
    fn whole_words_are_masked_together() {
        let data = rows(200, 128, 3);
        let starts: Vec<Vec<bool>> = data.iter().map(|r| (0..r.len()).map(|i| i % 3 != 2).collect()).collect();
        let refs: Vec<&[u32]> = data.iter().map(|r| r.as_slice()).collect();
        let srefs: Vec<&[bool]> = starts.iter().map(|r| r.as_slice()).collect();
        let keys: Vec<u64> = (0..200).collect();
        let m = Masker::new(&cfg(Mode::WholeWord), 1000, &[0, 1, 2, 3, 4], 3, 0, None).unwrap();
        let out = m.mask(&refs, &srefs, &keys, 0, 128, 0, 0);
        let (mut words, mut chosen) = (0usize, 0usize);
        for (r, row) in data.iter().enumerate() {
            for c in 1..row.len() - 1 {
                if !starts[r][c] && row[c - 1] > 4 {
                    let prev = out.labels[r * 128 + c - 1] != IGNORE;
                    let this = out.labels[r * 128 + c] != IGNORE;
                    assert_eq!(prev, this, "row {r} col {c}: a word was split");
                } else {
                    words += 1;
                    chosen += (out.labels[r * 128 + c] != IGNORE) as usize;
                }
            }
        }
        // ~16.8k words: the share of words chosen is mlm_probability within a few standard errors.
        let rate = chosen as f64 / words as f64;
        assert!((rate - 0.15).abs() < 0.01, "whole-word rate {rate} over {words} words");
    }

    /// count^-smoothing underflows to 0 for frequent tokens once smoothing is large (1e6^-100 =
    /// 1e-600): main dropped those tokens from the draw, so a batch got far fewer targets than
    /// round(p x eligible) (10% -> 0% at smoothing 300). In log space every finite smoothing keeps
    /// the count, and a large smoothing picks the rarest tokens first.
    #[test]
    fn frequency_target_count_holds_for_any_smoothing() {
        let data = rows(32, 128, 5);
        let refs: Vec<&[u32]> = data.iter().map(|r| r.as_slice()).collect();
        let keys: Vec<u64> = (0..32).collect();
        // Counts from 1 to ~1e6, rarest at the high ids.
        let counts: Vec<u64> = (0..1000u64).map(|i| 1 + (999 - i).pow(2)).collect();
        let eligible = data.iter().map(|r| r.len() - 2).sum::<usize>();
        let want = (0.15 * eligible as f64).round() as usize;
        for smoothing in [0.7, 100.0, 300.0, -100.0, 1e5, -1e5, 1e300, 1e308, f64::MAX, -f64::MAX] {
            let m = Masker::new(&MaskConfig { smoothing, ..cfg(Mode::Frequency) }, 1000, &[0, 1, 2, 3, 4], 3, 0, Some(&counts)).unwrap();
            let out = m.mask(&refs, &[], &keys, 9, 128, 0, 0);
            assert_eq!(out.targets, want, "smoothing {smoothing}");
            let chosen: Vec<u64> = out.labels.iter().filter(|&&l| l != IGNORE).map(|&l| counts[l as usize]).collect();
            assert_eq!(chosen.len(), want, "smoothing {smoothing}");
            if smoothing.abs() >= 1e5 {
                // The draw is then "the rarest first" (the most frequent for a negative exponent):
                // the closest counts differ by 0.2%, i.e. by >= 200 in ln w, more than the noise
                // of any key (< 44), so no token left out is rarer (more frequent) than one chosen.
                let mut left: Vec<u64> = Vec::new();
                for (r, row) in data.iter().enumerate() {
                    for (c, &id) in row.iter().enumerate() {
                        if id > 4 && out.labels[r * 128 + c] == IGNORE {
                            left.push(counts[id as usize]);
                        }
                    }
                }
                let (rarest_left, most_chosen) = (*left.iter().min().unwrap(), *chosen.iter().max().unwrap());
                let (most_left, rarest_chosen) = (*left.iter().max().unwrap(), *chosen.iter().min().unwrap());
                if smoothing > 0.0 {
                    assert!(rarest_left >= most_chosen, "smoothing {smoothing}: left a count-{rarest_left} token, chose a count-{most_chosen} one");
                } else {
                    assert!(most_left <= rarest_chosen, "smoothing {smoothing}");
                }
            }
        }
    }

    #[test]
    fn frequency_target_counts() {
        // Rows of different lengths, [CLS] ... [SEP]: 2 specials per row, padded to 128.
        let data: Vec<Vec<u32>> = rows(40, 128, 4).into_iter().enumerate().map(|(i, r)| {
            let keep = 20 + (i * 13) % 100;
            let mut r = r[..keep].to_vec();
            r.push(2);
            r
        }).collect();
        let refs: Vec<&[u32]> = data.iter().map(|r| r.as_slice()).collect();
        let keys: Vec<u64> = (0..40).collect();
        let counts: Vec<u64> = (0..1000u64).map(|i| 1 + i % 50).collect();
        let real: usize = data.iter().map(|r| r.len()).sum();
        let eligible = real - 2 * data.len();
        for (targets, want) in [
            (TargetCount::Eligible, (0.15 * eligible as f64).round() as usize),
            (TargetCount::AllTokens, (0.15 * real as f64).ceil() as usize),
        ] {
            let m = Masker::new(&MaskConfig { targets, ..cfg(Mode::Frequency) }, 1000, &[0, 1, 2, 3, 4], 3, 0, Some(&counts)).unwrap();
            let out = m.mask(&refs, &[], &keys, 9, 128, 0, 0);
            assert_eq!(out.targets, want, "{targets:?}");
            assert_eq!(out.labels.iter().filter(|&&l| l != IGNORE).count(), want);
        }
    }
}
