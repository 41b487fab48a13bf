//! The line-based formats: `.txt` (one document per line, or blank-line separated paragraphs) and
//! `.jsonl` (a text field per line), each plain, gzip or zstd. A document's offset is the byte
//! offset of its first line in the decompressed file. Memory stays bounded: one line at a time,
//! and a line longer than `max_document_bytes` is streamed past (counted), never held whole.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::{shorter_than_position, Compression, CorpusFile, FileReader, Format, OnBadJson, ReadOptions, ReadStats};
use crate::error::{Error, Result};

/// Bytes read (or decompressed while skipping to an offset) between two cancel checks.
const CHECK_BYTES: u64 = 1 << 20;

/// Documents of one `.txt` / `.jsonl` file.
pub(super) struct LineReader {
    path: PathBuf,
    format: Format,
    opts: ReadOptions,
    reader: Box<dyn BufRead + Send>,
    /// Byte offset (decompressed) of the next unread byte.
    offset: u64,
    line: Vec<u8>,
    /// 1-based number, in this file, of the line last read; None after a seek into the middle.
    line_no: Option<u64>,
    /// Bytes read since the cancel flag was last checked (checked per MiB, not per line: a
    /// check per document cost ~0.2 ns/token of the reader's ~2).
    unchecked: u64,
}

enum Line {
    Eof,
    /// The line's bytes are in `self.line` (without the newline); `start` is its byte offset.
    Ok { start: u64 },
    /// Longer than the limit: skipped.
    Oversized,
}

impl LineReader {
    /// Open `file` at byte `offset` (0, or a document offset this reader returned): plain files
    /// seek; compressed ones are decompressed and discarded up to it.
    pub(super) fn open(file: &CorpusFile, offset: u64, opts: &ReadOptions) -> Result<Self> {
        let path = &file.path;
        let reader: Box<dyn BufRead + Send> = if file.compression == Compression::None {
            let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
            let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
            if len < offset {
                // Seeking past the end would succeed and silently end the epoch early.
                return Err(shorter_than_position(path));
            }
            f.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(path, e))?;
            Box::new(BufReader::with_capacity(1 << 20, f))
        } else {
            let mut r = open_decoded(file)?;
            // Decompressed and discarded a block at a time, so a cancel is seen during a long skip.
            let mut skipped = 0;
            while skipped < offset {
                opts.cancel.check()?;
                let block = (offset - skipped).min(CHECK_BYTES);
                let n = std::io::copy(&mut (&mut r).take(block), &mut std::io::sink()).map_err(|e| Error::io(path, e))?;
                if n < block {
                    return Err(shorter_than_position(path));
                }
                skipped += n;
            }
            r
        };
        Ok(LineReader {
            path: path.clone(),
            format: file.format,
            opts: opts.clone(),
            reader,
            offset,
            line: Vec::new(),
            line_no: (offset == 0).then_some(0),
            unchecked: 0,
        })
    }

    /// Read one line into `self.line` (bounded by `max_document_bytes`).
    fn read_line(&mut self, stats: &mut ReadStats) -> Result<Line> {
        let limit = self.opts.max_document_bytes;
        self.line.clear();
        let start = self.offset;
        let mut oversized = false;
        let mut seen_any = false;
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&self.path, e)),
            };
            if buf.is_empty() {
                if !seen_any {
                    return Ok(Line::Eof);
                }
                break;
            }
            seen_any = true;
            let (take, done) = match memchr::memchr(b'\n', buf) {
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
            self.reader.consume(take);
            self.offset += take as u64;
            stats.bytes += take as u64;
            // Lines skipped without end (blank, oversized, bad JSON) or one endless line: a
            // cancel is seen within a MiB.
            self.unchecked += take as u64;
            if self.unchecked >= CHECK_BYTES {
                self.unchecked = 0;
                self.opts.cancel.check()?;
            }
            if done {
                break;
            }
        }
        stats.lines += 1;
        if let Some(n) = self.line_no.as_mut() {
            *n += 1;
        }
        if oversized {
            stats.oversized_lines += 1;
            stats.skipped_lines += 1;
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

    fn line_is_blank(&self) -> bool {
        self.line.iter().all(|b| b.is_ascii_whitespace())
    }

    /// A `.txt` paragraph: the current (non-blank) line and the following ones up to a blank line
    /// or the file end, joined by '\n'.
    fn paragraph(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<()> {
        stats.invalid_bytes += decode_utf8(&self.line, text);
        loop {
            match self.read_line(stats)? {
                Line::Eof => return Ok(()),
                Line::Oversized => {}
                Line::Ok { .. } => {
                    if self.line_is_blank() {
                        stats.empty_lines += 1;
                        return Ok(());
                    }
                    text.push('\n');
                    stats.invalid_bytes += decode_utf8(&self.line, text);
                }
            }
        }
    }

    /// Parse the current line as JSON; true when a text was found, false when the line is skipped
    /// (blank, bad JSON in skip mode, empty text).
    fn jsonl_text(&mut self, text: &mut String, start: u64, stats: &mut ReadStats) -> Result<bool> {
        if self.line_is_blank() {
            stats.empty_lines += 1;
            stats.skipped_lines += 1;
            return Ok(false);
        }
        let mut decoded = String::new();
        stats.invalid_bytes += decode_utf8(&self.line, &mut decoded);
        let problem = match serde_json::from_str::<serde_json::Value>(&decoded) {
            Err(e) => format!("malformed JSON ({e})"),
            Ok(v) => match v.get(&self.opts.text_field) {
                Some(serde_json::Value::String(s)) => {
                    if s.trim().is_empty() {
                        stats.empty_lines += 1;
                        stats.skipped_lines += 1;
                        return Ok(false);
                    }
                    text.push_str(s);
                    return Ok(true);
                }
                Some(_) => format!("field {:?} is not a string", self.opts.text_field),
                None => format!("no field {:?}", self.opts.text_field),
            },
        };
        stats.bad_json_lines += 1;
        stats.skipped_lines += 1;
        if self.opts.on_bad_json == OnBadJson::Raise {
            let place = match self.line_no {
                Some(n) => format!("line {n}"),
                None => format!("the line at byte {start}"),
            };
            return Err(Error::InvalidInput(format!(
                "{} {place}: {problem}; fix the line, set text_field to the right key, or pass on_bad_json=\"skip\"",
                self.path.display())));
        }
        Ok(false)
    }
}

impl FileReader for LineReader {
    fn next_doc(&mut self, text: &mut String, stats: &mut ReadStats) -> Result<Option<u64>> {
        loop {
            let start = match self.read_line(stats)? {
                Line::Eof => return Ok(None),
                Line::Oversized => continue,
                Line::Ok { start } => start,
            };
            if self.format == Format::Jsonl {
                if self.jsonl_text(text, start, stats)? {
                    return Ok(Some(start));
                }
            } else if self.line_is_blank() {
                stats.empty_lines += 1;
                if !self.opts.paragraphs {
                    stats.skipped_lines += 1;
                }
            } else {
                if self.opts.paragraphs {
                    self.paragraph(text, stats)?;
                } else {
                    stats.invalid_bytes += decode_utf8(&self.line, text);
                }
                return Ok(Some(start));
            }
        }
    }
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

