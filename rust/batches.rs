//! Arranging a window of rows into batches: a seeded shuffle, then fixed-length batches, or —
//! with dynamic padding — length-grouped batches (rows sorted by length inside the window, cut into
//! batches, batch order shuffled) padded only to their longest row.

use crate::error::{Error, Result};
use crate::splitmix::Rng;
use crate::sequences::Row;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Fixed,
    Dynamic,
}

impl Padding {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "fixed" => Ok(Padding::Fixed),
            "dynamic" => Ok(Padding::Dynamic),
            o => Err(Error::InvalidConfig(format!("padding must be \"fixed\" or \"dynamic\", not {o:?}"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct BatchShape {
    pub batch_size: usize,
    pub seq_len: usize,
    pub padding: Padding,
    pub pad_to_multiple_of: usize,
    pub shuffle: bool,
    pub drop_last: bool,
}

/// One planned batch: indices into the window's rows and the padded length.
pub struct PlannedBatch {
    pub rows: Vec<usize>,
    pub cols: usize,
}

/// Plan the batches of one window. `rng` is keyed by the window, so the plan is reproducible.
pub fn plan(rows: &[Row], shape: &BatchShape, rng: &mut Rng) -> Vec<PlannedBatch> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    if shape.shuffle {
        rng.shuffle(&mut order);
    }
    if shape.padding == Padding::Dynamic {
        // Stable sort after the shuffle: equal lengths stay in random order.
        order.sort_by_key(|&i| rows[i].ids.len());
    }
    let mut batches: Vec<PlannedBatch> = order
        .chunks(shape.batch_size)
        .filter(|c| c.len() == shape.batch_size || !shape.drop_last)
        .map(|c| {
            let cols = match shape.padding {
                Padding::Fixed => shape.seq_len,
                Padding::Dynamic => {
                    let longest = c.iter().map(|&i| rows[i].ids.len()).max().unwrap_or(1);
                    let m = shape.pad_to_multiple_of.max(1);
                    (longest.div_ceil(m) * m).min(shape.seq_len.max(longest))
                }
            };
            PlannedBatch { rows: c.to_vec(), cols }
        })
        .collect();
    if shape.padding == Padding::Dynamic && shape.shuffle {
        // Keep a short final batch last so a resumed window plans identically either way.
        let full = batches.iter().filter(|b| b.rows.len() == shape.batch_size).count();
        rng.shuffle(&mut batches[..full]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequences::RowStart;

    #[test]
    fn dynamic_batches_group_lengths() {
        let rows: Vec<Row> = (0..64).map(|i| Row { ids: vec![1; 5 + (i * 7) % 60], word_start: vec![], start: RowStart::default() }).collect();
        let shape = BatchShape { batch_size: 8, seq_len: 64, padding: Padding::Dynamic, pad_to_multiple_of: 8, shuffle: true, drop_last: true };
        let plan = plan(&rows, &shape, &mut Rng::new(0, 0, 0));
        assert_eq!(plan.len(), 8);
        let mut seen: Vec<usize> = plan.iter().flat_map(|b| b.rows.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..64).collect::<Vec<_>>());
        let padded: usize = plan.iter().map(|b| b.cols * b.rows.len()).sum();
        let real: usize = rows.iter().map(|r| r.ids.len()).sum();
        assert!(padded < real * 13 / 10, "length grouping keeps padding low: {padded} vs {real}");
        assert!(plan.iter().all(|b| b.cols % 8 == 0 && b.rows.iter().all(|&i| rows[i].ids.len() <= b.cols)));
    }
}
