//! `.arrow` files — Arrow IPC, both the file format (`ARROW1` magic and a footer) and the stream
//! format (what `datasets` writes to its cache and `save_to_disk`) — memory-mapped and read in
//! place: the text column's arrays point into the mapping (zero copy), only that column is decoded,
//! and each document is copied once, into the text round, as from any file.
//!
//! Opening indexes the file's record batches (their place and row count) from the footer or, for a
//! stream, from the message headers alone, so opening at a row goes straight to its batch. Pages of
//! batches already read are handed back to the kernel, so the resident memory stays about a batch
//! whatever the file's size.
//!
//! A file truncated in place while it is read raises an error naming it (`crate::mapping` turns the
//! fault on the lost pages into a flag checked after each document; the file's length, checked
//! before each batch, catches the tail of its last page, which reads as zeros without a fault).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_buffer::Buffer;
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::FileDecoder;
use arrow_ipc::{root_as_footer, root_as_message, Block, MessageHeader, MetadataVersion};
use arrow_schema::{DataType, SchemaRef};

use super::rows::{guarded, text_column, RowCursor, TextColumn};
use super::{shorter_than_position, truncated_while_read, CorpusFile, FileReader, ReadOptions, ReadStats};
use crate::error::{Error, Result};
use crate::mapping::MappedFile;

const FILE_MAGIC: &[u8] = b"ARROW1";
const CONTINUATION: [u8; 4] = [0xff; 4];
/// More than the kernel maps around a page fault (`fault_around_bytes`, 64 KiB by default).
const FAULT_AROUND_BYTES: usize = 1 << 20;

/// A record batch: where its message is, and its rows.
#[derive(Clone, Copy)]
struct BatchBlock {
    block: Block,
    rows: u64,
}

/// What opening learns from the headers: the schema and the record batches, in order.
struct Layout {
    schema: SchemaRef,
    version: MetadataVersion,
    batches: Vec<BatchBlock>,
}

fn corrupt(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!(
        "{} is not an Arrow IPC file the engine can read ({detail}): if it is truncated or corrupt, write it again \
         (pyarrow.ipc, or datasets' save_to_disk); its buffers must be uncompressed or zstd",
        path.display()))
}

fn read_i32(buf: &[u8], at: usize) -> Option<i32> {
    buf.get(at..at + 4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")))
}

/// The message starting at `at`: its flatbuffer header bytes and the length of its metadata
/// (prefix and padding included, as a [`Block`] counts it); None at an end-of-stream marker.
fn message_at(buf: &[u8], at: usize) -> std::result::Result<Option<(&[u8], usize)>, String> {
    let (prefix, len) = match buf.get(at..at + 4) {
        Some(b) if b == CONTINUATION => (8, read_i32(buf, at + 4)),
        Some(_) => (4, read_i32(buf, at)), // the pre-1.0 format, without the continuation marker
        None => return Err(format!("a message header is cut off at byte {at}")),
    };
    let len = len.ok_or_else(|| format!("a message header is cut off at byte {at}"))?;
    if len == 0 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| format!("a negative message length at byte {at}"))?;
    let header = buf.get(at + prefix..at + prefix + len).ok_or_else(|| format!("a message at byte {at} runs past the end of the file"))?;
    Ok(Some((header, prefix + len)))
}

/// The rows of the record batch whose message is `header`, and its body length; an error for any
/// other kind of message.
fn batch_rows(header: &[u8]) -> std::result::Result<(MessageHeader, u64, usize), String> {
    let msg = root_as_message(header).map_err(|e| format!("a message does not parse: {e}"))?;
    let body = usize::try_from(msg.bodyLength()).map_err(|_| "a negative body length".to_string())?;
    let rows = match msg.header_as_record_batch() {
        Some(b) => u64::try_from(b.length()).map_err(|_| "a negative row count".to_string())?,
        None => 0,
    };
    Ok((msg.header_type(), rows, body))
}

impl Layout {
    fn read(buf: &[u8], path: &Path) -> Result<Layout> {
        let bad = |detail: String| corrupt(path, detail);
        if buf.starts_with(FILE_MAGIC) {
            Layout::from_footer(buf).map_err(bad)
        } else {
            Layout::from_stream(buf).map_err(bad)
        }
    }

    /// The file format: the schema and the batches' blocks are in the footer.
    fn from_footer(buf: &[u8]) -> std::result::Result<Layout, String> {
        let n = buf.len();
        if n < 2 * FILE_MAGIC.len() + 4 || !buf.ends_with(FILE_MAGIC) {
            return Err("it starts like an Arrow file but has no footer".into());
        }
        let footer_len = usize::try_from(read_i32(buf, n - 10).expect("long enough")).map_err(|_| "a negative footer length")?;
        let footer_start = (n - 10).checked_sub(footer_len).ok_or("the footer length exceeds the file")?;
        let footer = root_as_footer(&buf[footer_start..n - 10]).map_err(|e| format!("the footer does not parse: {e}"))?;
        let schema = footer.schema().ok_or("the footer has no schema")?;
        let schema = try_fb_to_schema(schema).map_err(|e| format!("the schema does not parse: {e}"))?;
        let mut batches = Vec::new();
        for block in footer.recordBatches().iter().flatten() {
            let at = usize::try_from(block.offset()).map_err(|_| "a negative batch offset")?;
            let meta = usize::try_from(block.metaDataLength()).map_err(|_| "a negative metadata length")?;
            let body = usize::try_from(block.bodyLength()).map_err(|_| "a negative body length")?;
            if at + meta + body > footer_start {
                return Err(format!("a record batch at byte {at} runs past the data"));
            }
            let (header, _) = message_at(buf, at)?.ok_or("a record batch block points at an end-of-stream marker")?;
            let (_, rows, _) = batch_rows(header)?;
            batches.push(BatchBlock { block: *block, rows });
        }
        Ok(Layout { schema: Arc::new(schema), version: footer.version(), batches })
    }

    /// The stream format: a schema message, then dictionary and record batch messages, each a
    /// header and a body, up to an end-of-stream marker or the end of the file.
    fn from_stream(buf: &[u8]) -> std::result::Result<Layout, String> {
        let (mut schema, mut version, mut batches) = (None, MetadataVersion::V5, Vec::new());
        let mut at = 0;
        while at < buf.len() {
            let Some((header, meta)) = message_at(buf, at)? else { break };
            let (kind, rows, body) = batch_rows(header)?;
            if at + meta + body > buf.len() {
                return Err(format!("a message at byte {at} runs past the end of the file"));
            }
            match kind {
                MessageHeader::Schema if schema.is_none() => {
                    let msg = root_as_message(header).map_err(|e| format!("the schema does not parse: {e}"))?;
                    let fb = msg.header_as_schema().ok_or("a schema message without a schema")?;
                    schema = Some(try_fb_to_schema(fb).map_err(|e| format!("the schema does not parse: {e}"))?);
                    version = msg.version();
                }
                MessageHeader::RecordBatch if schema.is_some() => {
                    let block = Block::new(at as i64, meta as i32, body as i64);
                    batches.push(BatchBlock { block, rows });
                }
                MessageHeader::DictionaryBatch if schema.is_some() => {}
                other => return Err(format!("an unexpected {other:?} message at byte {at}")),
            }
            at += meta + body;
        }
        let schema = schema.ok_or("no schema message (an empty or non-Arrow file)")?;
        Ok(Layout { schema: Arc::new(schema), version, batches })
    }
}

pub(super) struct ArrowReader {
    path: PathBuf,
    opts: ReadOptions,
    batches: Batches,
    rows: RowCursor,
}

/// The record batches of a mapped file, decoded one after the other.
struct Batches {
    /// The file mapped, kept open to check its length.
    file: File,
    map: Arc<MappedFile>,
    /// The whole mapping as an Arrow buffer (arrays decoded from it point into the mapping).
    data: Buffer,
    decoder: FileDecoder,
    blocks: Vec<BatchBlock>,
    /// The next batch to decode, and the rows to skip at its start (a seek into its middle).
    next: usize,
    skip: usize,
}

impl ArrowReader {
    /// Open `file` at row `offset` (0, or a row number this reader returned).
    pub(super) fn open(file: &CorpusFile, offset: u64, opts: &ReadOptions) -> Result<Self> {
        let path = &file.path;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let map = Arc::new(MappedFile::map(&file, path)?);
        let layout = guarded(|| Layout::read(map.bytes(), path), |what| corrupt(path, what));
        if map.truncated() {
            return Err(truncated_while_read(path));
        }
        let layout = layout?;
        let column = text_column(&layout.schema, path, &opts.text_field)?;
        if matches!(layout.schema.field(column).data_type(), DataType::Dictionary(..)) {
            return Err(Error::InvalidInput(format!(
                "{}: column {:?} is dictionary-encoded, which the engine reads from Parquet but not from Arrow IPC; \
                 cast it to string when writing the file (e.g. pyarrow.compute.cast(column, pyarrow.string()))",
                path.display(),
                opts.text_field)));
        }
        // Indexing touched a page per message header, and the kernel maps pages around each touch:
        // hand them all back, so that only the batches being read stay resident.
        let len = map.bytes().len();
        map.drop_pages(0, len);
        map.advise_sequential();
        let data = match NonNull::new(map.bytes().as_ptr() as *mut u8) {
            // SAFETY: the pointer and length describe the live mapping, which the buffer keeps
            // alive (and registered with the fault handler) through its owner, the Arc; nothing
            // writes to it.
            Some(ptr) => unsafe { Buffer::from_custom_allocation(ptr, len, map.clone()) },
            None => Buffer::from_vec(Vec::<u8>::new()),
        };
        let decoder = FileDecoder::new(layout.schema.clone(), layout.version).with_projection(vec![column]);
        // The batch holding row `offset`, and the rows before it in that batch.
        let (mut next, mut start) = (layout.batches.len(), 0u64);
        for (b, batch) in layout.batches.iter().enumerate() {
            if offset < start + batch.rows {
                next = b;
                break;
            }
            start += batch.rows;
        }
        if next == layout.batches.len() && offset > start {
            return Err(shorter_than_position(path));
        }
        let batches = Batches { file, map, data, decoder, blocks: layout.batches, next, skip: (offset - start) as usize };
        Ok(ArrowReader { path: path.clone(), opts: opts.clone(), batches, rows: RowCursor::at(offset) })
    }
}

impl Batches {
    /// Decode the next batch (its text column only), without its first `skip` rows; an error if the
    /// file is shorter than when it was mapped.
    fn decode_next(&mut self, path: &Path) -> Result<Option<TextColumn>> {
        let len = self.file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len < self.map.bytes().len() as u64 {
            return Err(truncated_while_read(path));
        }
        let Some(b) = self.blocks.get(self.next).copied() else { return Ok(None) };
        if self.next > 0 {
            // The previous batch is done: hand its pages back to the kernel — and those before it
            // that a fault while reading it mapped too (the kernel maps the pages around a
            // faulting one, FAULT_AROUND_BYTES at most).
            let prev = self.blocks[self.next - 1].block.offset() as usize;
            let start = prev.saturating_sub(FAULT_AROUND_BYTES);
            self.map.drop_pages(start, b.block.offset() as usize - start);
        }
        self.next += 1;
        let len = b.block.metaDataLength() as usize + b.block.bodyLength() as usize;
        let message = self.data.slice_with_length(b.block.offset() as usize, len);
        let skip = std::mem::take(&mut self.skip);
        let Some(batch) = self.decoder.read_record_batch(&b.block, &message).map_err(|e| corrupt(path, e))? else { return Ok(None) };
        let column = batch.column(0);
        let skip = skip.min(column.len());
        TextColumn::new(&column.slice(skip, column.len() - skip)).map(Some)
    }
}

impl FileReader for ArrowReader {
    /// Guarded whole: reading a row reads the mapping again after its batch was checked, and a file
    /// truncated since leaves zeros there that can break the batch's offsets.
    fn next_doc(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<Option<u64>> {
        let (rows, batches, path, opts) = (&mut self.rows, &mut self.batches, &self.path, &self.opts);
        let doc = guarded(|| rows.next_doc(text, opts, stats, || batches.decode_next(path)), |what| corrupt(path, what));
        // After the read: a fault on a page the file lost, during it, is the cause of whatever it
        // returned (zeros instead of text, or an error over them).
        if batches.map.truncated() {
            return Err(truncated_while_read(path));
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{read_all, read_from, tmpdir};
    use super::super::DocReader;
    use super::*;
    use arrow_array::{ArrayRef, DictionaryArray, Int64Array, LargeStringArray, RecordBatch, StringArray, StringViewArray};
    use arrow_ipc::writer::{FileWriter, StreamWriter};

    /// `texts` as Arrow IPC (an id column first), in record batches of `batch_rows` rows.
    fn write_ipc(path: &Path, column: impl Fn(&[Option<String>]) -> ArrayRef, texts: &[Option<String>], batch_rows: usize, stream: bool) {
        let batches: Vec<RecordBatch> = texts
            .chunks(batch_rows)
            .enumerate()
            .map(|(k, chunk)| {
                let ids: ArrayRef = Arc::new(Int64Array::from_iter_values((0..chunk.len() as i64).map(|i| i + (k * batch_rows) as i64)));
                RecordBatch::try_from_iter([("id", ids), ("text", column(chunk))]).unwrap()
            })
            .collect();
        let schema = batches[0].schema();
        let f = File::create(path).unwrap();
        if stream {
            let mut w = StreamWriter::try_new(f, &schema).unwrap();
            batches.iter().for_each(|b| w.write(b).unwrap());
            w.finish().unwrap();
        } else {
            let mut w = FileWriter::try_new(f, &schema).unwrap();
            batches.iter().for_each(|b| w.write(b).unwrap());
            w.finish().unwrap();
        }
    }

    fn texts() -> Vec<Option<String>> {
        (0..1300).map(|i| if i % 89 == 3 { None } else if i % 211 == 10 { Some(" \t".into()) } else { Some(format!("document {i} here")) }).collect()
    }

    #[test]
    fn file_and_stream_formats_read_every_string_type_and_seek_to_any_row() {
        let d = tmpdir("arrow");
        let texts = texts();
        let want: Vec<(u64, String)> =
            texts.iter().enumerate().filter_map(|(i, t)| t.as_ref().filter(|t| !t.trim().is_empty()).map(|t| (i as u64, t.clone()))).collect();
        let nulls = texts.iter().filter(|t| t.is_none()).count() as u64;
        let blanks = texts.iter().flatten().filter(|t| t.trim().is_empty()).count() as u64;
        type MakeColumn = Box<dyn Fn(&[Option<String>]) -> ArrayRef>;
        let kinds: Vec<(&str, MakeColumn)> = vec![
            ("utf8", Box::new(|c| Arc::new(StringArray::from(c.to_vec())))),
            ("large", Box::new(|c| Arc::new(LargeStringArray::from(c.to_vec())))),
            ("view", Box::new(|c| Arc::new(StringViewArray::from(c.to_vec())))),
        ];
        for (kind, column) in &kinds {
            for stream in [false, true] {
                let path = d.join(format!("{kind}-{stream}.arrow"));
                write_ipc(&path, column, &texts, 250, stream);
                let files = vec![CorpusFile::from_path(path)];
                let (docs, stats) = read_all(files.clone(), ReadOptions::default());
                let got: Vec<(u64, String)> = docs.iter().map(|(p, t)| (p.offset, t.clone())).collect();
                assert_eq!(got, want, "{kind} stream={stream}");
                assert_eq!((stats.lines, stats.null_rows, stats.empty_lines), (1300, nulls, blanks), "{kind} stream={stream}");
                for k in [0, 1, 248, 249, 250, want.len() / 2, want.len() - 1] {
                    assert_eq!(read_from(&files, &ReadOptions::default(), docs[k].0), docs[k..], "{kind} stream={stream} from document {k}");
                }
            }
        }
    }

    /// Read `path` to its end, truncating it to `keep(len)` bytes after the tenth document: the
    /// documents read, and the error that ended the read.
    fn read_truncated_midway(path: &Path, keep: impl Fn(u64) -> u64) -> (Vec<String>, String) {
        let (mut r, mut t) = (DocReader::new(vec![CorpusFile::from_path(path.to_path_buf())], ReadOptions::default()), String::new());
        let mut docs = Vec::new();
        loop {
            match r.next_doc(&mut t) {
                Ok(Some(_)) => docs.push(t.clone()),
                Ok(None) => panic!("the truncated file read to its end without an error"),
                Err(e) => return (docs, e.to_string()),
            }
            if docs.len() == 10 {
                let len = std::fs::metadata(path).unwrap().len();
                std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(keep(len)).unwrap();
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_truncated_while_read_is_named_instead_of_killing_the_process() {
        let d = tmpdir("arrow-truncated");
        let texts: Vec<Option<String>> = (0..20_000).map(|i| Some(format!("document {i} {}", "word ".repeat(i % 40)))).collect();
        let want: Vec<String> = texts.iter().flatten().cloned().collect();
        for stream in [false, true] {
            // One batch of 2.5 MB: the cut lands inside the batch being read, whose pages past it
            // fault (SIGBUS before the mapping was protected).
            let path = d.join(format!("in-batch-{stream}.arrow"));
            write_ipc(&path, |c| Arc::new(StringArray::from(c.to_vec())), &texts, texts.len(), stream);
            let (docs, err) = read_truncated_midway(&path, |len| len / 3);
            assert!(err.contains(&path.display().to_string()) && err.contains("truncated while it was being read"), "{err}");
            assert!(docs.len() > 10 && docs.len() < want.len() / 2, "{} documents", docs.len());
            // What precedes the cut is the file's; the rest of the page holding the cut reads as
            // zeros (no fault there), and the read fails at the next page at the latest.
            let intact = docs.iter().zip(&want).take_while(|(got, want)| got == want).count();
            let zeros_after = |doc: &str, text: usize| doc.bytes().skip(text).all(|b| b == 0);
            let (cut, after) = docs[intact..].split_first().map_or((None, &[][..]), |(cut, after)| (Some(cut), after));
            let cut_ok = cut.is_none_or(|doc| zeros_after(doc, doc.bytes().zip(want[intact].bytes()).take_while(|(a, b)| a == b).count()));
            assert!(cut_ok && after.iter().all(|doc| zeros_after(doc, 0)), "stream={stream}");
            // SAFETY: a plain libc query.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
            assert!(docs[intact..].iter().map(String::len).sum::<usize>() < page, "stream={stream}");

            // Cut within the last page (the footer, or the end-of-stream marker): no page faults;
            // the length checked before the next batch tells, and every row before it is intact.
            let path = d.join(format!("tail-{stream}.arrow"));
            write_ipc(&path, |c| Arc::new(StringArray::from(c.to_vec())), &texts, 1000, stream);
            let (docs, err) = read_truncated_midway(&path, |len| len - 4);
            assert!(err.contains("tail-") && err.contains("truncated while it was being read"), "{err}");
            assert_eq!(docs[..], want[..1000], "stream={stream}");
        }
    }

    #[test]
    fn bad_files_and_columns_are_named() {
        let d = tmpdir("arrow-bad");
        let texts = texts();
        let open = |p: &Path, field: &str| {
            let opts = ReadOptions { text_field: field.into(), ..ReadOptions::default() };
            ArrowReader::open(&CorpusFile::from_path(p.to_path_buf()), 0, &opts).err().expect("an error").to_string()
        };
        for stream in [false, true] {
            let good = d.join(format!("good-{stream}.arrow"));
            write_ipc(&good, |c| Arc::new(StringArray::from(c.to_vec())), &texts, 100, stream);
            let missing = open(&good, "body");
            assert!(missing.contains("no column \"body\"") && missing.contains("\"id\" (Int64), \"text\" (Utf8)"), "{missing}");
            assert!(open(&good, "id").contains("column \"id\" holds Int64, not strings"));
            let bytes = std::fs::read(&good).unwrap();
            for (name, cut) in [("cut", bytes.len() / 2), ("stub", 5), ("empty", 0)] {
                let p = d.join(format!("{name}-{stream}.arrow"));
                std::fs::write(&p, &bytes[..cut]).unwrap();
                let err = open(&p, "text");
                assert!(err.contains(&format!("{name}-{stream}.arrow is not an Arrow IPC file the engine can read")), "{err}");
            }
            // Garbage inside a batch body: the validation of the decoded array fails, naming the file.
            let mut bad = bytes.clone();
            let mid = bytes.len() / 2;
            for b in &mut bad[mid..mid + 4000] {
                *b = 0xEE;
            }
            let p = d.join(format!("corrupt-{stream}.arrow"));
            std::fs::write(&p, &bad).unwrap();
            let err = match ArrowReader::open(&CorpusFile::from_path(p.clone()), 0, &ReadOptions::default()) {
                Err(e) => e.to_string(),
                Ok(_) => {
                    let (mut r, mut t) = (DocReader::new(vec![CorpusFile::from_path(p)], ReadOptions::default()), String::new());
                    loop {
                        match r.next_doc(&mut t) {
                            Ok(Some(_)) => continue,
                            Ok(None) => panic!("a corrupt file read to its end (stream={stream})"),
                            Err(e) => break e.to_string(),
                        }
                    }
                }
            };
            assert!(err.contains(&format!("corrupt-{stream}.arrow")), "{err}");
            super::super::rows::tests::damaged_copies_never_panic(&good, &ReadOptions::default());
        }
        let dict = d.join("dict.arrow");
        write_ipc(&dict, |c| Arc::new(c.iter().map(|t| t.as_deref()).collect::<DictionaryArray<arrow_array::types::Int32Type>>()), &texts, 100, true);
        assert!(open(&dict, "text").contains("dictionary-encoded"));
    }
}
