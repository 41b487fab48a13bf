//! Corpus discovery and document reading: files, directories and globs, expanded into an ordered
//! list of [`CorpusFile`]s ([`discover`]: links followed once, each file once, regular files only),
//! then read document by document by a [`DocReader`].
//!
//! Each file format is one module implementing [`FileReader`] plus one arm in [`open_at`]: [`lines`]
//! reads `.txt` (one document per line, or blank-line separated paragraphs) and `.jsonl` (a
//! configurable text field), each plain, gzip or zstd; [`parquet`] and [`arrow`] read a text column
//! of `.parquet` and Arrow IPC `.arrow` files; [`feed`] reads texts handed over by the caller (a
//! Python dataset) — the row-based three share [`rows`]. Memory stays bounded whatever the corpus size.
//!
//! Every document has a [`DocPos`]: its file, its offset in that file, and its global document
//! index. Seeking to a `DocPos` resumes reading exactly there.

mod arrow;
mod discover;
mod feed;
mod lines;
mod parquet;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use discover::expand_inputs;
pub use feed::{Feed, FeedPass};

use crate::cancel::Cancel;
use crate::error::{self, Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
    Parquet,
    /// Arrow IPC, file or stream format.
    Arrow,
    /// Texts handed over by the caller ([`Feed`]).
    Feed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Clone, Debug)]
pub struct CorpusFile {
    pub path: PathBuf,
    pub format: Format,
    pub compression: Compression,
    /// The texts of a [`Format::Feed`] input (its `path` is then the feed's name, for messages).
    pub feed: Option<Arc<dyn Feed>>,
}

impl CorpusFile {
    /// Classify a path by its extensions: `.parquet`, `.arrow`, else `.gz` / `.zst` / `.zstd` then
    /// `.jsonl` / `.json` / other (text).
    pub fn from_path(path: PathBuf) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
            (s.to_string(), Compression::Gzip)
        } else if let Some(s) = name.strip_suffix(".zst").or_else(|| name.strip_suffix(".zstd")) {
            (s.to_string(), Compression::Zstd)
        } else {
            (name.clone(), Compression::None)
        };
        let format = if name.ends_with(".parquet") {
            Format::Parquet
        } else if name.ends_with(".arrow") {
            Format::Arrow
        } else if stem.ends_with(".jsonl") || stem.ends_with(".json") || stem.ends_with(".ndjson") {
            Format::Jsonl
        } else {
            Format::Text
        };
        CorpusFile { path, format, compression, feed: None }
    }

    /// An input of texts handed over by the caller.
    pub fn feed(feed: Arc<dyn Feed>) -> Self {
        CorpusFile { path: PathBuf::from(feed.name()), format: Format::Feed, compression: Compression::None, feed: Some(feed) }
    }
}

/// Extensions picked up when a directory is given (files given by name are taken whatever their name).
const DIR_EXTENSIONS: [&str; 7] = [".txt", ".jsonl", ".json", ".ndjson", ".text", ".parquet", ".arrow"];

/// Whether a file met in a directory walk is a corpus file (by its extensions).
fn wanted_in_dir(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let base = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).or_else(|| name.strip_suffix(".zstd")).unwrap_or(&name);
    DIR_EXTENSIONS.iter().any(|e| base.ends_with(e))
}

/// Where a document starts: file index, offset in that file, global document index (documents
/// counted across all files, in order). The offset is whatever the file's format seeks by: the byte
/// offset of the document's first line in the decompressed file for line formats; a row-based
/// format (Parquet, Arrow) would use the row number in the file, so a position stays these three
/// numbers whatever the format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DocPos {
    pub file: u32,
    pub offset: u64,
    pub index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBadJson {
    Skip,
    Raise,
}

#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// `.txt`: blank-line separated paragraphs are documents (lines joined by '\n') instead of lines.
    pub paragraphs: bool,
    /// `.jsonl`: the field holding the text.
    pub text_field: String,
    pub on_bad_json: OnBadJson,
    /// A line longer than this is skipped (streamed past, counted) — a 100 MB line is almost always
    /// a broken file, and holding it would break the bounded-memory promise.
    pub max_document_bytes: usize,
    /// Set to stop reading: within the next MiB read (or decompressed while skipping to a resume
    /// offset), whatever the lines, reading ends in `Error::Interrupted`.
    pub cancel: Cancel,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { paragraphs: false, text_field: "text".into(), on_bad_json: OnBadJson::Skip, max_document_bytes: 16 << 20, cancel: Cancel::new() }
    }
}

counters! {
    /// What the reader met (all cumulative).
    pub struct ReadStats {
        documents,
        lines,
        bytes,
        skipped_lines,
        empty_lines,
        oversized_lines,
        bad_json_lines,
        invalid_bytes,
        null_rows,
        files_opened,
    }
}

/// One file's documents, in order: what a file format implements.
pub(crate) trait FileReader: Send {
    /// Append the next document's text to `text` and return its offset in the file (what
    /// [`open_at`] seeks to); `None` at the file's end. Counts what it meets in `stats`.
    fn next_doc(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<Option<u64>>;
}

/// Open `file` at `offset` (0, or an offset its reader returned): the one place that dispatches on
/// the format.
fn open_at(file: &CorpusFile, offset: u64, opts: &ReadOptions) -> Result<Box<dyn FileReader>> {
    Ok(match file.format {
        Format::Text | Format::Jsonl => Box::new(lines::LineReader::open(file, offset, opts)?),
        Format::Parquet => Box::new(parquet::ParquetReader::open(file, offset, opts)?),
        Format::Arrow => Box::new(arrow::ArrowReader::open(file, offset, opts)?),
        Format::Feed => {
            let feed = file.feed.as_deref().expect("only CorpusFile::feed makes a feed input, with its feed");
            Box::new(feed::FeedReader::open(feed, offset, opts)?)
        }
    })
}

/// Check now what reading will need of each file whose format has a schema (Parquet, Arrow): that
/// it parses and holds `text_field` as strings — so a bad file fails before the first batch, with
/// its name, rather than mid-epoch.
pub fn check_files(files: &[CorpusFile], opts: &ReadOptions) -> Result<()> {
    for file in files.iter().filter(|f| matches!(f.format, Format::Parquet | Format::Arrow)) {
        open_at(file, 0, opts)?;
    }
    Ok(())
}

/// A position past a file's end: the file changed since the position was saved.
fn shorter_than_position(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "cannot resume in {}: it is shorter than the saved position (the file changed since the state was saved)",
        path.display()))
}

/// A file that lost bytes while it was read (what was read past its new end is not its text).
fn truncated_while_read(path: &Path) -> Error {
    Error::InvalidInput(error::truncated_while_read(
        path,
        "write it again (the engine reads a corpus file in place: to replace one, write a new file and rename it over the old)"))
}

/// Sequential document reader over a list of corpus files.
pub struct DocReader {
    files: Vec<CorpusFile>,
    opts: ReadOptions,
    file_idx: usize,
    reader: Option<Box<dyn FileReader>>,
    next_index: u64,
    pub stats: ReadStats,
}

impl DocReader {
    pub fn new(files: Vec<CorpusFile>, opts: ReadOptions) -> Self {
        DocReader { files, opts, file_idx: 0, reader: None, next_index: 0, stats: ReadStats::default() }
    }

    /// Continue reading at `pos` (a position previously returned with a document, or the start).
    pub fn seek(&mut self, pos: DocPos) -> Result<()> {
        self.file_idx = pos.file as usize;
        self.next_index = pos.index;
        self.reader = None;
        if let Some(file) = self.files.get(self.file_idx) {
            self.reader = Some(open_at(file, pos.offset, &self.opts)?);
            self.stats.files_opened += 1;
        }
        Ok(())
    }

    /// The next document (appended to `text`, which is cleared first), or `None` at the corpus end.
    pub fn next_doc(&mut self, text: &mut String) -> Result<Option<DocPos>> {
        text.clear();
        loop {
            let Some(file) = self.files.get(self.file_idx) else { return Ok(None) };
            let reader = match &mut self.reader {
                Some(r) => r,
                None => {
                    self.stats.files_opened += 1;
                    self.reader.insert(open_at(file, 0, &self.opts)?)
                }
            };
            match reader.next_doc(text, &mut self.stats)? {
                Some(offset) => {
                    let pos = DocPos { file: self.file_idx as u32, offset, index: self.next_index };
                    self.next_index += 1;
                    self.stats.documents += 1;
                    return Ok(Some(pos));
                }
                None => {
                    self.reader = None;
                    self.file_idx += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(super) fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distilx-corpus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    pub(super) fn read_all(files: Vec<CorpusFile>, opts: ReadOptions) -> (Vec<(DocPos, String)>, ReadStats) {
        let mut r = DocReader::new(files, opts);
        let out = read_rest(&mut r);
        (out, r.stats)
    }

    /// The documents of `files` from `pos` (a position a reader returned) to the end.
    pub(super) fn read_from(files: &[CorpusFile], opts: &ReadOptions, pos: DocPos) -> Vec<(DocPos, String)> {
        let mut r = DocReader::new(files.to_vec(), opts.clone());
        r.seek(pos).unwrap();
        read_rest(&mut r)
    }

    fn read_rest(r: &mut DocReader) -> Vec<(DocPos, String)> {
        let mut out = Vec::new();
        let mut t = String::new();
        while let Some(p) = r.next_doc(&mut t).unwrap() {
            out.push((p, t.clone()));
        }
        out
    }

    #[test]
    fn formats_compression_and_seek() {
        let d = tmpdir("fmt");
        let mut raw = b"first doc\n\n  \nsecond ".to_vec();
        raw.push(0xff);
        raw.extend_from_slice(b"doc\r\nthird\n");
        std::fs::write(d.join("a.txt"), &raw).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"{\"text\": \"json one\"}\nnot json\n{\"body\": 1}\n{\"text\": \"json two\"}\n").unwrap();
        std::fs::write(d.join("b.jsonl.gz"), gz.finish().unwrap()).unwrap();
        let z = zstd::stream::encode_all(&b"zst line\n"[..], 1).unwrap();
        std::fs::write(d.join("c.txt.zst"), z).unwrap();
        let files = expand_inputs(&[d.to_string_lossy().into_owned()]).unwrap();
        assert_eq!(files.len(), 3);
        let (docs, stats) = read_all(files.clone(), ReadOptions::default());
        let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(texts, ["first doc", "second \u{FFFD}doc", "third", "json one", "json two", "zst line"]);
        assert_eq!(stats.invalid_bytes, 1);
        assert_eq!(stats.bad_json_lines, 2);
        assert_eq!(docs.iter().map(|d| d.0.index).collect::<Vec<_>>(), (0..6).collect::<Vec<u64>>());
        // Seeking to any document's position continues exactly from it.
        for (k, (pos, _)) in docs.iter().enumerate() {
            assert_eq!(read_from(&files, &ReadOptions::default(), *pos), docs[k..].to_vec());
        }
        // Strict JSON mode raises, naming the file.
        let opts = ReadOptions { on_bad_json: OnBadJson::Raise, ..ReadOptions::default() };
        let mut r = DocReader::new(files, opts);
        let mut t = String::new();
        let err = loop {
            match r.next_doc(&mut t) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("b.jsonl.gz"), "{err}");
    }

    #[test]
    fn paragraphs_and_oversized_lines() {
        let d = tmpdir("para");
        let mut body = String::from("p1 line1\np1 line2\n\n\np2\n");
        body.push_str(&"x".repeat(5000));
        body.push_str("\nafter\n");
        std::fs::write(d.join("p.txt"), &body).unwrap();
        let files = expand_inputs(&[d.join("p.txt").to_string_lossy().into_owned()]).unwrap();
        let mut opts = ReadOptions { paragraphs: true, max_document_bytes: 1000, ..ReadOptions::default() };
        let (docs, stats) = read_all(files.clone(), opts.clone());
        let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(texts, ["p1 line1\np1 line2", "p2\nafter"]);
        assert_eq!(stats.oversized_lines, 1);
        opts.paragraphs = false;
        let (docs, _) = read_all(files, opts);
        let texts: Vec<&str> = docs.iter().map(|d| d.1.as_str()).collect();
        assert_eq!(texts, ["p1 line1", "p1 line2", "p2", "after"]);
    }

    #[test]
    fn missing_paths_are_not_found() {
        assert!(matches!(expand_inputs(&["/no/such/file.txt".into()]), Err(Error::NotFound(_))));
        assert!(matches!(expand_inputs(&["/no/such/*.txt".into()]), Err(Error::NotFound(_))));
        assert!(matches!(expand_inputs(&[]), Err(Error::InvalidInput(_))));
    }
}
