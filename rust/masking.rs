//! Dynamic masking, a pure function of (seed, epoch, row or batch key) and the ids: a
//! counter-based RNG (splitmix64) keyed by those numbers, so threads, prefetch depth and resume
//! never change a mask, and a new epoch gives new masks.
//!
//! Targets are chosen by one of three modes, then each target becomes `[MASK]` with
//! `mask_replace_prob`, a random non-special id with `random_replace_prob`, else stays:
//! - uniform: every non-special token independently with `mlm_probability` (BERT/RoBERTa);
//! - frequency: exactly round(p · eligible tokens) per batch, drawn without replacement with
//!   weight count^-0.7 (DistilBERT's smoothing) — weighted reservoir keys u^(1/w);
//! - whole_word: every word (a run of tokens of one pre-tokenized word) with `mlm_probability`,
//!   all its tokens together.
//!
//! Special tokens and padding are never targets.

use crate::error::{Error, Result};

/// splitmix64's finalizer: a bijective 64-bit mix.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A tiny counter-based generator: its whole state is derived from the key.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64, epoch: u64, key: u64) -> Self {
        Rng(mix(seed ^ mix(epoch.wrapping_add(0x5851_F42D_4C95_7F2D) ^ mix(key))))
    }
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    #[inline]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [0, n).
    #[inline]
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Uniform,
    Frequency,
    WholeWord,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "uniform" => Ok(Mode::Uniform),
            "frequency" => Ok(Mode::Frequency),
            "whole_word" => Ok(Mode::WholeWord),
            o => Err(Error::InvalidConfig(format!("masking must be \"uniform\", \"frequency\" or \"whole_word\", not {o:?}"))),
        }
    }
}

pub struct Masker {
    pub mode: Mode,
    pub mlm_probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    pub mask_id: u32,
    pub pad_id: u32,
    /// special[id]: never a target.
    special: Vec<bool>,
    /// Ids a random replacement is drawn from (all non-special ids).
    replacements: Vec<u32>,
    /// Frequency mode: weight per id, count^-smoothing (0 for specials).
    weights: Vec<f64>,
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
}

pub const IGNORE: i64 = -100;

impl Masker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        mode: Mode,
        mlm_probability: f64,
        mask_replace_prob: f64,
        random_replace_prob: f64,
        vocab_size: u32,
        special_ids: &[u32],
        mask_id: u32,
        pad_id: u32,
        token_counts: Option<&[u64]>,
        smoothing: f64,
    ) -> Result<Self> {
        let prob_ok = |p: f64| (0.0..=1.0).contains(&p);
        if !prob_ok(mlm_probability) || !prob_ok(mask_replace_prob) || !prob_ok(random_replace_prob) {
            return Err(Error::InvalidConfig("mlm_probability, mask_replace_prob and random_replace_prob must lie in [0, 1]".into()));
        }
        if mask_replace_prob + random_replace_prob > 1.0 + 1e-12 {
            return Err(Error::InvalidConfig(format!(
                "mask_replace_prob + random_replace_prob = {} exceeds 1; the rest (kept unchanged) cannot be negative",
                mask_replace_prob + random_replace_prob)));
        }
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
        let weights = if mode == Mode::Frequency {
            let counts = token_counts.ok_or_else(|| Error::InvalidConfig("frequency masking needs a token-count table".into()))?;
            if counts.len() != n {
                return Err(Error::InvalidConfig(format!(
                    "the token-count table has {} entries but the vocabulary {}; recompute it for this tokenizer", counts.len(), n)));
            }
            if !smoothing.is_finite() {
                // NaN weights would exclude every token (no target at all), an infinite exponent all but the rarest.
                return Err(Error::InvalidConfig(format!("smoothing must be a finite number (DistilBERT uses 0.7), got {smoothing}")));
            }
            counts.iter().enumerate().map(|(i, &c)| if special[i] { 0.0 } else { (c.max(1) as f64).powf(-smoothing) }).collect()
        } else {
            Vec::new()
        };
        Ok(Masker { mode, mlm_probability, mask_replace_prob, random_replace_prob, mask_id, pad_id, special, replacements, weights })
    }

    #[inline]
    fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// Corrupt one target in place (80/10/10 by default).
    #[inline]
    fn corrupt(&self, rng: &mut Rng, id: u32) -> u32 {
        let u = rng.unit();
        if u < self.mask_replace_prob {
            self.mask_id
        } else if u < self.mask_replace_prob + self.random_replace_prob {
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
        match self.mode {
            Mode::Uniform => {
                // Bernoulli(p) per eligible token from 32-bit slices of one 64-bit draw (two tokens
                // per draw): p is resolved to 2^-32, far below any statistical effect.
                let threshold = (self.mlm_probability * 4_294_967_296.0).min(4_294_967_296.0) as u64;
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
                            chosen = rng.unit() < self.mlm_probability;
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
                        let w = self.weights.get(id as usize).copied().unwrap_or(0.0);
                        if w > 0.0 {
                            // log(u)/w orders like u^(1/w) and does not underflow.
                            let u = rng.unit().max(f64::MIN_POSITIVE);
                            cand.push((u.ln() / w, r * cols + c));
                        }
                    }
                }
                let k = ((self.mlm_probability * cand.len() as f64).round() as usize).min(cand.len());
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
        MaskedBatch { input_ids, attention_mask, labels, rows: n, cols, targets }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let m = Masker::new(mode, 0.15, 0.8, 0.1, 1000, &[0, 1, 2, 3, 4], 3, 0, Some(&counts), 0.7).unwrap();
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
        let m = Masker::new(Mode::Uniform, 0.15, 0.8, 0.1, 1000, &[0, 1, 2, 3, 4], 3, 0, None, 0.7).unwrap();
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
        let m = Masker::new(Mode::WholeWord, 0.15, 0.8, 0.1, 1000, &[0, 1, 2, 3, 4], 3, 0, None, 0.7).unwrap();
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
}
