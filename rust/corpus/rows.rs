//! What the row-based formats share — Parquet, Arrow IPC and texts handed over from Python: the
//! text column, found by name and checked to hold strings, and the rule that turns a row into a
//! document or a counted skip. The rule is the `.txt` reader's for a line (a blank row is no
//! document; a row longer than `max_document_bytes` is skipped), so a corpus stored as rows yields
//! the same documents, hence the same ids and masks, as its `.txt` export with one row per line.
//!
//! A document's offset is its row number in the file (what the readers seek to): with the row
//! counts of the file's row groups / record batches, that is (row group, row) without a second number.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, LargeStringArray, StringArray, StringViewArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Schema};

use super::{ReadOptions, ReadStats};
use crate::error::{Error, Result};

/// Whether a column of this type holds text the engine reads.
fn is_text(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

/// The index of the text column `field` in `schema`; the error names the file, the column, the
/// columns there are and the fix.
pub(super) fn text_column(schema: &Schema, path: &Path, field: &str) -> Result<usize> {
    let columns = || schema.fields().iter().map(|f| format!("{:?} ({})", f.name(), f.data_type())).collect::<Vec<_>>().join(", ");
    let Some((i, f)) = schema.column_with_name(field) else {
        return Err(Error::InvalidInput(format!(
            "{} has no column {field:?}; its columns are: {}. Pass text_field=<the column holding the text>",
            path.display(),
            columns())));
    };
    if !is_text(f.data_type()) {
        return Err(Error::InvalidInput(format!(
            "{}: column {field:?} holds {}, not strings; its columns are: {}. Pass text_field=<a string column> \
             (or cast the column to string when writing the file)",
            path.display(),
            f.data_type(),
            columns())));
    }
    Ok(i)
}

/// Run a decoder over data from a file: a panic on malformed data (the Arrow and Parquet decoders
/// check most of what they read, not all) becomes `corrupt(what it said)`, an error naming the file.
pub(super) fn guarded<T>(decode: impl FnOnce() -> Result<T>, corrupt: impl FnOnce(&str) -> Error) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)) {
        Ok(out) => out,
        Err(p) => {
            let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(corrupt(&what))
        }
    }
}

/// One batch of the text column, readable row by row without copying it.
pub(super) enum TextColumn {
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    Utf8View(StringViewArray),
    /// Dictionary-encoded strings: each row's key into `values` (null rows per `nulls`).
    Dictionary { keys: Vec<usize>, nulls: Option<NullBuffer>, values: Box<TextColumn> },
    /// Texts handed over from Python (None for a null row).
    Owned(Vec<Option<String>>),
}

impl TextColumn {
    /// View an array of the text column (its type was checked by [`text_column`]).
    pub(super) fn new(array: &ArrayRef) -> Result<Self> {
        Ok(match array.data_type() {
            DataType::Utf8 => TextColumn::Utf8(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => TextColumn::LargeUtf8(array.as_string::<i64>().clone()),
            DataType::Utf8View => TextColumn::Utf8View(array.as_string_view().clone()),
            DataType::Dictionary(..) => {
                let dict = array.as_any_dictionary();
                let values = TextColumn::new(dict.values())?;
                if values.len() == 0 {
                    // Only nulls (normalized_keys needs a value to point at).
                    TextColumn::Owned(vec![None; array.len()])
                } else {
                    TextColumn::Dictionary { keys: dict.normalized_keys(), nulls: array.logical_nulls(), values: Box::new(values) }
                }
            }
            other => return Err(Error::InvalidInput(format!("a text column of type {other} (the schema said strings): the file is corrupt"))),
        })
    }

    pub(super) fn len(&self) -> usize {
        match self {
            TextColumn::Utf8(a) => a.len(),
            TextColumn::LargeUtf8(a) => a.len(),
            TextColumn::Utf8View(a) => a.len(),
            TextColumn::Dictionary { keys, .. } => keys.len(),
            TextColumn::Owned(v) => v.len(),
        }
    }

    /// Row `i`'s text, or None for a null.
    fn get(&self, i: usize) -> Option<&str> {
        match self {
            TextColumn::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            TextColumn::LargeUtf8(a) => a.is_valid(i).then(|| a.value(i)),
            TextColumn::Utf8View(a) => a.is_valid(i).then(|| a.value(i)),
            TextColumn::Dictionary { keys, nulls, values } => {
                if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                    None
                } else {
                    values.get(keys[i])
                }
            }
            TextColumn::Owned(v) => v[i].as_deref(),
        }
    }
}

/// Append row `value` to `text` when it is a document, counting what it is either way (a row is
/// counted as a line): a null row, a blank one (only ASCII whitespace, as a blank `.txt` line) and
/// one over `max_document_bytes` are skipped.
fn take_row(value: Option<&str>, text: &mut String, opts: &ReadOptions, stats: &mut ReadStats) -> bool {
    stats.lines += 1;
    let Some(s) = value else {
        stats.null_rows += 1;
        stats.skipped_lines += 1;
        return false;
    };
    stats.bytes += s.len() as u64;
    if s.len() > opts.max_document_bytes {
        stats.oversized_lines += 1;
        stats.skipped_lines += 1;
        return false;
    }
    if s.bytes().all(|b| b.is_ascii_whitespace()) {
        stats.empty_lines += 1;
        stats.skipped_lines += 1;
        return false;
    }
    text.push_str(s);
    true
}

/// Walks a file's rows batch by batch: the shared half of a row-based [`super::FileReader`].
pub(super) struct RowCursor {
    batch: Option<TextColumn>,
    /// Next row of `batch` to look at.
    next: usize,
    /// Row number, in the file, of `batch`'s next row.
    row: u64,
}

impl RowCursor {
    /// A cursor whose first batch starts at row `row` of the file (a reader that seeks into the
    /// middle of a batch hands over the rest of it, sliced).
    pub(super) fn at(row: u64) -> Self {
        RowCursor { batch: None, next: 0, row }
    }

    /// The next document (appended to `text`) and its row number; `next_batch` hands over the
    /// following batch of the text column, None at the file's end.
    pub(super) fn next_doc(
        &mut self,
        text: &mut String,
        opts: &ReadOptions,
        stats: &mut ReadStats,
        mut next_batch: impl FnMut() -> Result<Option<TextColumn>>,
    ) -> Result<Option<u64>> {
        loop {
            if let Some(batch) = &self.batch {
                while self.next < batch.len() {
                    let (i, row) = (self.next, self.row);
                    self.next += 1;
                    self.row += 1;
                    if take_row(batch.get(i), text, opts, stats) {
                        return Ok(Some(row));
                    }
                }
            }
            match next_batch()? {
                Some(batch) => {
                    self.batch = Some(batch);
                    self.next = 0;
                }
                None => {
                    self.batch = None;
                    return Ok(None);
                }
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::{CorpusFile, DocReader, ReadOptions};
    use crate::splitmix::Rng;
    use std::path::Path;

    /// Damage `good` at many places, one at a time (bytes overwritten, or the file cut): reading
    /// each copy to its end gives documents or an error naming the file, never a panic.
    pub(in crate::corpus) fn damaged_copies_never_panic(good: &Path, opts: &ReadOptions) {
        let bytes = std::fs::read(good).unwrap();
        let bad = good.with_extension(format!("bad.{}", good.extension().unwrap().to_string_lossy()));
        let mut rng = Rng::new(7, 0, 0);
        let (mut errors, mut trials) = (0, 0);
        for k in 0..300 {
            let mut copy = bytes.clone();
            if k % 3 == 0 {
                copy.truncate(rng.below(bytes.len()));
            } else {
                let at = rng.below(bytes.len());
                for b in copy.iter_mut().skip(at).take(1 + rng.below(16)) {
                    *b = rng.below(256) as u8;
                }
            }
            std::fs::write(&bad, &copy).unwrap();
            let mut r = DocReader::new(vec![CorpusFile::from_path(bad.clone())], opts.clone());
            let mut t = String::new();
            trials += 1;
            loop {
                match r.next_doc(&mut t) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => {
                        let name = bad.file_name().unwrap().to_string_lossy().into_owned();
                        assert!(e.to_string().contains(&name), "{e}");
                        errors += 1;
                        break;
                    }
                }
            }
        }
        assert!(errors > trials / 3, "only {errors} of {trials} damaged copies were refused");
    }
}
