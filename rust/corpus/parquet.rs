//! `.parquet` files, read with the Apache Parquet crate's record-batch reader: only the text column
//! is decoded, row group by row group, a page at a time, in batches of [`BATCH_ROWS`] rows, so
//! memory is bounded by a batch and the pages behind it, never by the file. A document's offset is
//! its row number in the file; opening at a row starts at its row group and skips the rows before
//! it in that group.
//!
//! A file truncated in place while it is read fails a read (plain reads stop at the new end, so no
//! wrong text is returned): the error then says so, rather than that the file is not Parquet.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;

use super::rows::{guarded, text_column, RowCursor, TextColumn};
use super::{shorter_than_position, truncated_while_read, CorpusFile, FileReader, ReadOptions, ReadStats};
use crate::error::{Error, Result};

/// Rows per decoded batch: about a text round (1 MB) of typical documents.
const BATCH_ROWS: usize = 1024;

pub(super) struct ParquetReader {
    path: PathBuf,
    /// The file (another handle to what the reader reads), and its length when opened: a failed
    /// read from a file shorter now is the truncation's fault.
    file: File,
    len: u64,
    opts: ReadOptions,
    batches: ParquetRecordBatchReader,
    rows: RowCursor,
}

fn unreadable(path: &Path, e: ParquetError) -> Error {
    match e {
        ParquetError::External(inner) => match inner.downcast::<std::io::Error>() {
            Ok(io) => Error::io(path, *io),
            Err(other) => unreadable_detail(path, &other.to_string()),
        },
        other => unreadable_detail(path, &other.to_string()),
    }
}

fn unreadable_detail(path: &Path, detail: &str) -> Error {
    Error::InvalidInput(format!(
        "{} is not a Parquet file the engine can read ({detail}): if it is truncated or corrupt, write it again; \
         its pages must be uncompressed, snappy, zstd or gzip",
        path.display()))
}

impl ParquetReader {
    /// Open `file` at row `offset` (0, or a row number this reader returned).
    pub(super) fn open(file: &CorpusFile, offset: u64, opts: &ReadOptions) -> Result<Self> {
        let path = &file.path;
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let file = f.try_clone().map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| unreadable(path, e)), |what| unreadable_detail(path, what))?;
        let column = text_column(builder.schema(), path, &opts.text_field)?;
        // The row group holding row `offset`, and the rows before it in that group.
        let groups: Vec<u64> = builder.metadata().row_groups().iter().map(|g| g.num_rows() as u64).collect();
        let (mut first, mut start) = (groups.len(), 0u64);
        for (g, &rows) in groups.iter().enumerate() {
            if offset < start + rows {
                first = g;
                break;
            }
            start += rows;
        }
        if first == groups.len() && offset > start {
            return Err(shorter_than_position(path));
        }
        let skip = if first == groups.len() { 0 } else { offset - start };
        let mask = ProjectionMask::roots(builder.parquet_schema(), [column]);
        let build = || {
            builder
                .with_projection(mask)
                .with_row_groups((first..groups.len()).collect())
                .with_offset(skip as usize)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| unreadable(path, e))
        };
        let batches = guarded(build, |what| unreadable_detail(path, what))?;
        Ok(ParquetReader { path: path.clone(), file, len, opts: opts.clone(), batches, rows: RowCursor::at(offset) })
    }
}

impl FileReader for ParquetReader {
    fn next_doc(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<Option<u64>> {
        let (batches, path) = (&mut self.batches, &self.path);
        let next_batch = || {
            guarded(
                || match batches.next() {
                    None => Ok(None),
                    Some(Err(e)) => Err(unreadable_detail(path, &e.to_string())),
                    // The projection keeps the text column alone.
                    Some(Ok(batch)) => TextColumn::new(batch.column(0)).map(Some),
                },
                |what| unreadable_detail(path, what),
            )
        };
        let doc = self.rows.next_doc(text, &self.opts, stats, next_batch);
        if doc.is_err() && self.file.metadata().is_ok_and(|m| m.len() < self.len) {
            return Err(truncated_while_read(path));
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{read_all, read_from, tmpdir};
    use super::super::{expand_inputs, DocReader, ReadOptions};
    use super::*;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, LargeStringArray, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    /// Write `column` (and an id column) as a Parquet file with row groups of `group_rows` rows.
    pub(crate) fn write_parquet(path: &Path, column: ArrayRef, compression: Compression, group_rows: usize) {
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..column.len() as i64));
        let batch = RecordBatch::try_from_iter([("id", ids), ("body", column)]).unwrap();
        let props = WriterProperties::builder().set_compression(compression).set_max_row_group_row_count(Some(group_rows)).build();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn body() -> ReadOptions {
        ReadOptions { text_field: "body".into(), ..ReadOptions::default() }
    }

    #[test]
    fn every_codec_and_string_type_reads_the_rows_and_seeks_to_any() {
        let d = tmpdir("parquet");
        let texts: Vec<Option<String>> =
            (0..2500).map(|i| if i % 97 == 5 { None } else if i % 101 == 7 { Some("  ".into()) } else { Some(format!("row {i} text")) }).collect();
        let want: Vec<(u64, String)> =
            texts.iter().enumerate().filter_map(|(i, t)| t.as_ref().filter(|t| !t.trim().is_empty()).map(|t| (i as u64, t.clone()))).collect();
        let nulls = texts.iter().filter(|t| t.is_none()).count() as u64;
        let blanks = texts.iter().flatten().filter(|t| t.trim().is_empty()).count() as u64;
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("utf8", Arc::new(StringArray::from(texts.clone()))),
            ("large", Arc::new(LargeStringArray::from(texts.clone()))),
            ("dict", Arc::new(texts.iter().map(|t| t.as_deref()).collect::<DictionaryArray<arrow_array::types::Int32Type>>())),
        ];
        let codecs = [
            Compression::SNAPPY,
            Compression::ZSTD(ZstdLevel::default()),
            Compression::GZIP(GzipLevel::default()),
            Compression::UNCOMPRESSED,
        ];
        for (name, column) in columns {
            for codec in codecs {
                let path = d.join(format!("{name}-{codec:?}.parquet").replace(['(', ')', ' ', '{', '}', ':'], ""));
                write_parquet(&path, column.clone(), codec, 300);
                let files = expand_inputs(&[path.to_string_lossy().into_owned()]).unwrap();
                let (docs, stats) = read_all(files.clone(), body());
                let got: Vec<(u64, String)> = docs.iter().map(|(p, t)| (p.offset, t.clone())).collect();
                assert_eq!(got, want, "{name} {codec:?}");
                assert_eq!((stats.lines, stats.null_rows, stats.empty_lines), (2500, nulls, blanks), "{name} {codec:?}");
                // A seek to any document continues exactly from it (within and across row groups).
                for k in [0, 1, 299, 300, 301, want.len() / 2, want.len() - 1] {
                    assert_eq!(read_from(&files, &body(), docs[k].0), docs[k..], "{name} {codec:?} from document {k}");
                }
            }
        }
    }

    #[test]
    fn bad_files_and_columns_are_named() {
        let d = tmpdir("parquet-bad");
        let good = d.join("good.parquet");
        write_parquet(&good, Arc::new(StringArray::from(vec!["a b c"; 50])), Compression::SNAPPY, 10);
        let open = |p: &Path, field: &str| {
            let file = CorpusFile::from_path(p.to_path_buf());
            ParquetReader::open(&file, 0, &ReadOptions { text_field: field.into(), ..ReadOptions::default() }).err().expect("an error").to_string()
        };
        let missing = open(&good, "text");
        assert!(missing.contains("good.parquet") && missing.contains("no column \"text\"") && missing.contains("\"body\" (Utf8)"), "{missing}");
        let not_text = open(&good, "id");
        assert!(not_text.contains("column \"id\" holds Int64, not strings"), "{not_text}");
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(d.join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
        let cut = open(&d.join("cut.parquet"), "body");
        assert!(cut.contains("cut.parquet is not a Parquet file the engine can read"), "{cut}");
        // A corrupt page (the footer intact) fails when read, naming the file.
        let mut bad = bytes.clone();
        for b in &mut bad[4..bytes.len() / 3] {
            *b ^= 0x5A;
        }
        std::fs::write(d.join("corrupt.parquet"), &bad).unwrap();
        let mut r = DocReader::new(vec![CorpusFile::from_path(d.join("corrupt.parquet"))], body());
        let mut t = String::new();
        let err = loop {
            match r.next_doc(&mut t) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a corrupt file read to its end"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("corrupt.parquet"), "{err}");
        super::super::rows::tests::damaged_copies_never_panic(&good, &body());
        // A position past the file's rows (the file changed since) is refused.
        let past = ParquetReader::open(&CorpusFile::from_path(good.clone()), 51, &body()).err().expect("refused").to_string();
        assert!(past.contains("shorter than the saved position"), "{past}");
    }
}
