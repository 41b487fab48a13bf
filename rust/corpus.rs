//! Corpus discovery and document streaming: files, directories and globs; `.txt` (one document per
//! line, or blank-line separated paragraphs) and `.jsonl` (a configurable text field), each plain,
//! gzip or zstd. Memory stays bounded whatever the corpus size: one line at a time, and a line
//! longer than `max_document_bytes` is skipped (counted) without ever being held whole.
//!
//! Every document has a [`DocPos`]: its file, the byte offset of its first line in the
//! (decompressed) file, and its global document index. Seeking to a `DocPos` resumes reading
//! exactly there: plain files seek; compressed ones decompress and discard up to the offset.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl,
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
}

impl CorpusFile {
    /// Classify a path by its extensions: `.gz` / `.zst` / `.zstd` then `.jsonl` / `.json` / other (text).
    pub fn from_path(path: PathBuf) -> Self {
        let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        let (stem, compression) = if let Some(s) = name.strip_suffix(".gz") {
            (s.to_string(), Compression::Gzip)
        } else if let Some(s) = name.strip_suffix(".zst").or_else(|| name.strip_suffix(".zstd")) {
            (s.to_string(), Compression::Zstd)
        } else {
            (name.clone(), Compression::None)
        };
        let format = if stem.ends_with(".jsonl") || stem.ends_with(".json") || stem.ends_with(".ndjson") {
            Format::Jsonl
        } else {
            Format::Text
        };
        CorpusFile { path, format, compression }
    }
}

/// Extensions picked up when a directory is given (files given by name are taken whatever their name).
const DIR_EXTENSIONS: [&str; 5] = [".txt", ".jsonl", ".json", ".ndjson", ".text"];

fn wanted_in_dir(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let base = name.strip_suffix(".gz").or_else(|| name.strip_suffix(".zst")).or_else(|| name.strip_suffix(".zstd")).unwrap_or(&name);
    DIR_EXTENSIONS.iter().any(|e| base.ends_with(e))
}

fn walk_dir(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk_dir(&p, out)?;
        } else if wanted_in_dir(&p) {
            out.push(p);
        }
    }
    Ok(())
}

/// Expand files, directories (recursively, sorted, known extensions) and glob patterns into the
/// ordered list of corpus files. Every file is opened once here so a missing or unreadable path
/// fails now, with its name, rather than mid-epoch.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<CorpusFile>> {
    if inputs.is_empty() {
        return Err(Error::InvalidInput("no input files were given (pass a file, a directory or a glob)".into()));
    }
    let mut paths = Vec::new();
    for input in inputs {
        let p = Path::new(input);
        if p.exists() {
            if p.is_dir() {
                let before = paths.len();
                walk_dir(p, &mut paths)?;
                if paths.len() == before {
                    return Err(Error::InvalidInput(format!(
                        "directory {input} holds no .txt/.jsonl files (optionally .gz/.zst); pass the files explicitly")));
                }
            } else {
                paths.push(p.to_path_buf());
            }
        } else if input.contains(['*', '?', '[']) {
            let pattern = glob::glob(input).map_err(|e| Error::InvalidInput(format!("bad glob pattern {input:?}: {e}")))?;
            let mut found: Vec<PathBuf> = pattern.filter_map(|r| r.ok()).filter(|p| p.is_file()).collect();
            if found.is_empty() {
                return Err(Error::NotFound(PathBuf::from(input)));
            }
            found.sort();
            paths.extend(found);
        } else {
            return Err(Error::NotFound(p.to_path_buf()));
        }
    }
    for p in &paths {
        File::open(p).map_err(|e| Error::io(p, e))?;
    }
    Ok(paths.into_iter().map(CorpusFile::from_path).collect())
}

/// Where a document starts: file index, byte offset of its first line in the decompressed file,
/// global document index (documents counted across all files, in order).
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
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions { paragraphs: false, text_field: "text".into(), on_bad_json: OnBadJson::Skip, max_document_bytes: 16 << 20 }
    }
}

/// Counters of what the reader met (all cumulative).
#[derive(Clone, Debug, Default)]
pub struct ReadStats {
    pub documents: u64,
    pub lines: u64,
    pub bytes: u64,
    pub skipped_lines: u64,
    pub empty_lines: u64,
    pub oversized_lines: u64,
    pub bad_json_lines: u64,
    pub invalid_bytes: u64,
    pub files_opened: u64,
}

fn open_decoded(file: &CorpusFile) -> Result<Box<dyn BufRead + Send>> {
    let f = File::open(&file.path).map_err(|e| Error::io(&file.path, e))?;
    Ok(match file.compression {
        Compression::None => Box::new(BufReader::with_capacity(1 << 20, f)),
        Compression::Gzip => Box::new(BufReader::with_capacity(1 << 20, flate2::read::MultiGzDecoder::new(BufReader::new(f)))),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(f).map_err(|e| Error::io(&file.path, e))?;
            Box::new(BufReader::with_capacity(1 << 20, d))
        }
    })
}

/// Convert bytes to text, replacing each invalid UTF-8 sequence with U+FFFD; returns the number of
/// invalid bytes met.
fn decode_utf8(bytes: &[u8], out: &mut String) -> u64 {
    // Fast path: valid UTF-8 (the common case) is copied as is.
    if let Ok(s) = std::str::from_utf8(bytes) {
        out.push_str(s);
        return 0;
    }
    let mut invalid = 0u64;
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            invalid += chunk.invalid().len() as u64;
            out.push('\u{FFFD}');
        }
    }
    invalid
}

/// Sequential document reader over a list of corpus files.
pub struct DocReader {
    files: Vec<CorpusFile>,
    opts: ReadOptions,
    file_idx: usize,
    reader: Option<Box<dyn BufRead + Send>>,
    offset: u64,
    next_index: u64,
    line: Vec<u8>,
    /// 1-based number, in its file, of the line last read; None after a seek into a file's middle.
    line_no: Option<u64>,
    pub stats: ReadStats,
}

enum Line {
    Eof,
    /// The line's bytes are in `self.line` (without the newline); `start` is its byte offset.
    Ok { start: u64 },
    /// Longer than the limit: skipped.
    Oversized,
}

impl DocReader {
    pub fn new(files: Vec<CorpusFile>, opts: ReadOptions) -> Self {
        DocReader { files, opts, file_idx: 0, reader: None, offset: 0, next_index: 0, line: Vec::new(), line_no: Some(0), stats: ReadStats::default() }
    }

    pub fn files(&self) -> &[CorpusFile] {
        &self.files
    }

    /// Continue reading at `pos` (a position previously returned with a document, or the start).
    pub fn seek(&mut self, pos: DocPos) -> Result<()> {
        self.file_idx = pos.file as usize;
        self.next_index = pos.index;
        self.reader = None;
        self.offset = 0;
        if self.file_idx >= self.files.len() {
            return Ok(());
        }
        let file = &self.files[self.file_idx];
        if file.compression == Compression::None {
            let mut f = File::open(&file.path).map_err(|e| Error::io(&file.path, e))?;
            let len = f.metadata().map_err(|e| Error::io(&file.path, e))?.len();
            if len < pos.offset {
                // Seeking past the end would succeed and silently end the epoch early.
                return Err(shorter_than_position(&file.path));
            }
            f.seek(SeekFrom::Start(pos.offset)).map_err(|e| Error::io(&file.path, e))?;
            self.reader = Some(Box::new(BufReader::with_capacity(1 << 20, f)));
        } else {
            let mut r = open_decoded(file)?;
            let skipped = std::io::copy(&mut (&mut r).take(pos.offset), &mut std::io::sink()).map_err(|e| Error::io(&file.path, e))?;
            if skipped != pos.offset {
                return Err(shorter_than_position(&file.path));
            }
            self.reader = Some(r);
        }
        self.offset = pos.offset;
        self.line_no = (pos.offset == 0).then_some(0);
        self.stats.files_opened += 1;
        Ok(())
    }

    /// Read one line into `self.line` (bounded by `max_document_bytes`).
    fn read_line(&mut self) -> Result<Line> {
        let limit = self.opts.max_document_bytes;
        self.line.clear();
        let start = self.offset;
        let mut oversized = false;
        let mut seen_any = false;
        let reader = self.reader.as_mut().expect("reader open");
        loop {
            let buf = match reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.files[self.file_idx].path, e)),
            };
            if buf.is_empty() {
                if !seen_any {
                    return Ok(Line::Eof);
                }
                break;
            }
            seen_any = true;
            let (take, done) = match memchr(b'\n', buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !oversized {
                if self.line.len() + take > limit + 1 {
                    oversized = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(&buf[..take]);
                }
            }
            reader.consume(take);
            self.offset += take as u64;
            self.stats.bytes += take as u64;
            if done {
                break;
            }
        }
        self.stats.lines += 1;
        if let Some(n) = self.line_no.as_mut() {
            *n += 1;
        }
        if oversized {
            return Ok(Line::Oversized);
        }
        if self.line.last() == Some(&b'\n') {
            self.line.pop();
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(Line::Ok { start })
    }

    fn open_current(&mut self) -> Result<bool> {
        while self.reader.is_none() {
            if self.file_idx >= self.files.len() {
                return Ok(false);
            }
            self.reader = Some(open_decoded(&self.files[self.file_idx])?);
            self.offset = 0;
            self.line_no = Some(0);
            self.stats.files_opened += 1;
        }
        Ok(true)
    }

    fn next_file(&mut self) {
        self.reader = None;
        self.file_idx += 1;
        self.offset = 0;
    }

    /// The next documents, about `max_bytes` of text in all (one parallel tokenization round);
    /// empty at the corpus end.
    pub fn next_docs(&mut self, max_bytes: usize) -> Result<Vec<(DocPos, String)>> {
        let mut items = Vec::new();
        let mut bytes = 0;
        let mut text = String::new();
        while bytes < max_bytes {
            match self.next_doc(&mut text)? {
                None => break,
                Some(pos) => {
                    bytes += text.len();
                    items.push((pos, std::mem::take(&mut text)));
                }
            }
        }
        Ok(items)
    }

    /// The next document (appended to `text`, which is cleared first), or `None` at the corpus end.
    pub fn next_doc(&mut self, text: &mut String) -> Result<Option<DocPos>> {
        text.clear();
        loop {
            if !self.open_current()? {
                return Ok(None);
            }
            let format = self.files[self.file_idx].format;
            let file = self.file_idx as u32;
            match self.read_line()? {
                Line::Eof => self.next_file(),
                Line::Oversized => {
                    self.stats.oversized_lines += 1;
                    self.stats.skipped_lines += 1;
                }
                Line::Ok { start } => {
                    if format == Format::Jsonl {
                        if let Some(found) = self.jsonl_text(text, start)? {
                            if found {
                                return Ok(Some(self.emit(file, start)));
                            }
                        }
                    } else if self.opts.paragraphs {
                        if self.line_is_blank() {
                            self.stats.empty_lines += 1;
                            continue;
                        }
                        self.stats.invalid_bytes += decode_utf8(&self.line, text);
                        // Gather the following lines up to a blank line or the file end.
                        loop {
                            match self.read_line()? {
                                Line::Eof => break,
                                Line::Oversized => {
                                    self.stats.oversized_lines += 1;
                                    self.stats.skipped_lines += 1;
                                }
                                Line::Ok { .. } => {
                                    if self.line_is_blank() {
                                        self.stats.empty_lines += 1;
                                        break;
                                    }
                                    text.push('\n');
                                    self.stats.invalid_bytes += decode_utf8(&self.line, text);
                                }
                            }
                        }
                        return Ok(Some(self.emit(file, start)));
                    } else {
                        if self.line_is_blank() {
                            self.stats.empty_lines += 1;
                            self.stats.skipped_lines += 1;
                            continue;
                        }
                        self.stats.invalid_bytes += decode_utf8(&self.line, text);
                        return Ok(Some(self.emit(file, start)));
                    }
                }
            }
        }
    }

    fn emit(&mut self, file: u32, offset: u64) -> DocPos {
        let pos = DocPos { file, offset, index: self.next_index };
        self.next_index += 1;
        self.stats.documents += 1;
        pos
    }

    fn line_is_blank(&self) -> bool {
        self.line.iter().all(|b| b.is_ascii_whitespace())
    }

    /// Parse the current line as JSON; `Some(true)` when a text was found, `Some(false)`/`None`
    /// when the line is skipped (blank, bad JSON in skip mode, empty text).
    fn jsonl_text(&mut self, text: &mut String, start: u64) -> Result<Option<bool>> {
        if self.line_is_blank() {
            self.stats.empty_lines += 1;
            self.stats.skipped_lines += 1;
            return Ok(None);
        }
        let mut decoded = String::new();
        self.stats.invalid_bytes += decode_utf8(&self.line, &mut decoded);
        let problem = match serde_json::from_str::<serde_json::Value>(&decoded) {
            Err(e) => format!("malformed JSON ({e})"),
            Ok(v) => match v.get(&self.opts.text_field) {
                Some(serde_json::Value::String(s)) => {
                    if s.trim().is_empty() {
                        self.stats.empty_lines += 1;
                        self.stats.skipped_lines += 1;
                        return Ok(Some(false));
                    }
                    text.push_str(s);
                    return Ok(Some(true));
                }
                Some(_) => format!("field {:?} is not a string", self.opts.text_field),
                None => format!("no field {:?}", self.opts.text_field),
            },
        };
        self.stats.bad_json_lines += 1;
        self.stats.skipped_lines += 1;
        if self.opts.on_bad_json == OnBadJson::Raise {
            // The line in this file (stats.lines counts every file read so far, from the last seek).
            let place = match self.line_no {
                Some(n) => format!("line {n}"),
                None => format!("the line at byte {start}"),
            };
            return Err(Error::InvalidInput(format!(
                "{} {place}: {problem}; fix the line, set text_field to the right key, or pass on_bad_json=\"skip\"",
                self.files[self.file_idx].path.display())));
        }
        Ok(Some(false))
    }
}

fn shorter_than_position(path: &Path) -> Error {
    Error::InvalidInput(format!(
        "cannot resume in {}: it is shorter than the saved position (the file changed since the state was saved)",
        path.display()))
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    memchr::memchr(needle, hay)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("distilx-corpus-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read_all(files: Vec<CorpusFile>, opts: ReadOptions) -> (Vec<(DocPos, String)>, ReadStats) {
        let mut r = DocReader::new(files, opts);
        let mut out = Vec::new();
        let mut t = String::new();
        while let Some(p) = r.next_doc(&mut t).unwrap() {
            out.push((p, t.clone()));
        }
        (out, r.stats)
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
            let mut r = DocReader::new(files.clone(), ReadOptions::default());
            r.seek(*pos).unwrap();
            let mut t = String::new();
            let mut rest = Vec::new();
            while let Some(p) = r.next_doc(&mut t).unwrap() {
                rest.push((p, t.clone()));
            }
            assert_eq!(rest, docs[k..].to_vec());
        }
        // Strict JSON mode raises, naming the file.
        let mut opts = ReadOptions::default();
        opts.on_bad_json = OnBadJson::Raise;
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
        let mut opts = ReadOptions::default();
        opts.paragraphs = true;
        opts.max_document_bytes = 1000;
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
