//! Pre-tokenized cache: tokenize a corpus once into one memory-mapped file, then every epoch reads
//! ids straight from the page cache (global shuffling, exact per-rank counts, O(1) resume).
//!
//! Layout (little-endian):
//! ```text
//! header  64 bytes: magic "DSTXCACH", version u32, id_bytes u32 (2 = u16 ids, 4 = u32),
//!         num_docs u64, num_tokens u64, tokenizer_hash u64, flags u32 (bit 0: word starts),
//!         reserved u32, checksum u64 (of everything after the header), file_len u64
//! ids     num_tokens × id_bytes
//! offsets (num_docs + 1) × u64 (token offsets of the documents)
//! words   ceil(num_tokens / 8) bytes, a word-start bit per token (only with flag bit 0)
//! ```
//! A truncated, corrupt or foreign file is detected on open (length, magic, version, checksum) and
//! a cache built with another tokenizer is refused (tokenizer hash). A file truncated in place while
//! it is read is detected too ([`crate::mapping`]) and raises an error naming it.
//!
//! This module is the file format only: [`Writer`] writes documents it is given, [`Cache`] reads
//! them; `passes::build_cache` feeds a writer from a corpus and `source::cache` reads a cache as a
//! document source.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::cancel::Cancel;
use crate::error::{self, Error, Result};
use crate::mapping::MappedFile;
use crate::splitmix::{hash_bytes, Hasher};
use crate::tokenize::Tokenizer;
use crate::words::WordRule;

const MAGIC: &[u8; 8] = b"DSTXCACH";
const VERSION: u32 = 1;
const HEADER: usize = 64;
/// Seeds of the body checksum and of the tokenizer fingerprint.
const CHECKSUM_SEED: u64 = 0xC4EC;
const TOKENIZER_SEED: u64 = 0x70CE;
/// Bytes checksummed between two cancel checks.
const CHECKSUM_BLOCK: usize = 16 << 20;

/// A stable fingerprint of a tokenizer: its file's bytes, plus its word rule when that is not the
/// pre-tokenizer's (caches of byte-level and Metaspace tokenizers built before those rules carry
/// other word starts, and are refused).
pub fn tokenizer_hash(tok: &Tokenizer) -> Result<u64> {
    let mut bytes = std::fs::read(&tok.source).map_err(|e| Error::io(&tok.source, e))?;
    if tok.word_rule() != WordRule::PreTokens.name() {
        bytes.extend_from_slice(tok.word_rule().as_bytes());
    }
    Ok(hash_bytes(&bytes, TOKENIZER_SEED))
}

pub struct Cache {
    map: MappedFile,
    pub path: PathBuf,
    pub id_bytes: usize,
    num_docs: u64,
    pub num_tokens: u64,
    has_words: bool,
    ids_at: usize,
    offsets_at: usize,
    words_at: usize,
}

fn truncated_while_read(path: &Path) -> Error {
    Error::CorruptCache(error::truncated_while_read(path, "rebuild it with distilx.build_cache (builds write a new file and rename it)"))
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::CorruptCache(format!("{}: {what}; delete it and build it again with distilx.build_cache", path.display()))
}

impl Cache {
    /// Open and validate a cache; `tokenizer` (when given) must be the one it was built with. The
    /// checksum pass (`verify_checksum`) stops with `Error::Interrupted` once `cancel` is set.
    pub fn open(path: &Path, tokenizer: Option<&Tokenizer>, verify_checksum: bool, cancel: &Cancel) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mapped = MappedFile::map(&file, path)?;
        let map = mapped.bytes();
        if map.len() < HEADER || &map[..8] != MAGIC {
            return Err(corrupt(path, "not a distilx cache (bad magic or shorter than its header)"));
        }
        let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap());
        if u32_at(8) != VERSION {
            return Err(corrupt(path, &format!("format version {} (this distilx reads {VERSION})", u32_at(8))));
        }
        let id_bytes = u32_at(12) as usize;
        let (num_docs, num_tokens, tok_hash, flags, checksum, file_len) = (u64_at(16), u64_at(24), u64_at(32), u32_at(40), u64_at(48), u64_at(56));
        if id_bytes != 2 && id_bytes != 4 {
            return Err(corrupt(path, "bad id width"));
        }
        let has_words = flags & 1 == 1;
        let ids_at = HEADER;
        let offsets_at = ids_at + num_tokens as usize * id_bytes;
        let words_at = offsets_at + (num_docs as usize + 1) * 8;
        let want_len = words_at + if has_words { num_tokens.div_ceil(8) as usize } else { 0 };
        if map.len() as u64 != file_len || want_len as u64 != file_len {
            return Err(corrupt(path, &format!("it is {} bytes but its header promises {} (truncated or overwritten)", map.len(), file_len.max(want_len as u64))));
        }
        if verify_checksum {
            let mut hasher = Hasher::new(CHECKSUM_SEED);
            for block in map[HEADER..].chunks(CHECKSUM_BLOCK) {
                cancel.check()?;
                hasher.update(block);
            }
            if mapped.truncated() {
                return Err(truncated_while_read(path));
            }
            if hasher.finish() != checksum {
                return Err(corrupt(path, "checksum mismatch (the file is corrupt)"));
            }
        }
        if let Some(t) = tokenizer {
            if tokenizer_hash(t)? != tok_hash {
                return Err(Error::CorruptCache(format!(
                    "{} was built with another tokenizer than {}; rebuild it or pass the tokenizer it was built with",
                    path.display(),
                    t.source.display())));
            }
        }
        let cache = Cache { map: mapped, path: path.to_path_buf(), id_bytes, num_docs, num_tokens, has_words, ids_at, offsets_at, words_at };
        if cache.offset(num_docs) != num_tokens {
            return Err(corrupt(path, "its index does not match its token count"));
        }
        cache.check_intact()?;
        Ok(cache)
    }

    pub fn num_documents(&self) -> u64 {
        self.num_docs
    }

    pub fn has_word_starts(&self) -> bool {
        self.has_words
    }

    fn offset(&self, i: u64) -> u64 {
        let o = self.offsets_at + i as usize * 8;
        u64::from_le_bytes(self.map.bytes()[o..o + 8].try_into().unwrap())
    }

    /// An error naming the file if it was truncated under us since it was opened (what was read
    /// from the lost pages is zeros, not the cache's contents).
    pub fn check_intact(&self) -> Result<()> {
        if self.map.truncated() {
            return Err(truncated_while_read(&self.path));
        }
        Ok(())
    }

    /// Append document `i`'s ids (and word indices, numbered from 0, when asked and stored); an
    /// error if the file was truncated under us.
    pub fn document(&self, i: u64, ids: &mut Vec<u32>, word_ids: Option<&mut Vec<u32>>) -> Result<()> {
        let (a, b) = (self.offset(i) as usize, self.offset(i + 1) as usize);
        self.check_intact()?;
        let map = self.map.bytes();
        let bytes = &map[self.ids_at + a * self.id_bytes..self.ids_at + b * self.id_bytes];
        if self.id_bytes == 2 {
            ids.extend(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32));
        } else {
            ids.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())));
        }
        if let Some(w) = word_ids {
            let mut word = 0u32;
            for t in a..b {
                let start = !self.has_words || (map[self.words_at + t / 8] >> (t % 8)) & 1 == 1;
                if start && t > a {
                    word += 1;
                }
                w.push(word);
            }
        }
        self.check_intact()
    }
}

/// Writes a cache: documents are appended to temporary files beside `path`; `finish` joins them,
/// checksums the body, writes the header and renames the result to `path`. Dropped unfinished
/// (an error while building), it removes its temporary files.
pub struct Writer {
    path: PathBuf,
    /// The cache being written (header first, as zeros), the document offsets and the word-start
    /// bits: three files joined at the end, so memory stays bounded.
    tmp: [PathBuf; 3],
    out: BufWriter<File>,
    offsets: BufWriter<File>,
    words: Option<BufWriter<File>>,
    id_bytes: usize,
    documents: u64,
    tokens: u64,
    bits: u8,
    nbits: u32,
    encoded: Vec<u8>,
}

fn io_error(p: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(p, e)
}

impl Writer {
    /// Start a cache at `path` for ids below `vocab_size`, with a word-start bit per token if `word_starts`.
    pub fn create(path: &Path, vocab_size: u32, word_starts: bool) -> Result<Self> {
        // Temporary names unique to this build (process id, build number): ranks or threads that
        // each build the same missing cache must not write into one another's files; each renames
        // a complete file, and the last rename wins.
        static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let build_no = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sibling = |tag: &str| {
            let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "cache".into());
            name.push(format!(".{}-{build_no}.{tag}", std::process::id()));
            path.with_file_name(name)
        };
        let tmp = [sibling("tmp-build"), sibling("tmp-offsets"), sibling("tmp-words")];
        let create = |p: &Path| -> Result<BufWriter<File>> { Ok(BufWriter::with_capacity(1 << 20, File::create(p).map_err(io_error(p))?)) };
        let mut out = create(&tmp[0])?;
        out.write_all(&[0u8; HEADER]).map_err(io_error(&tmp[0]))?;
        let mut offsets = create(&tmp[1])?;
        offsets.write_all(&0u64.to_le_bytes()).map_err(io_error(&tmp[1]))?;
        let words = if word_starts { Some(create(&tmp[2])?) } else { None };
        Ok(Writer {
            path: path.to_path_buf(),
            tmp,
            out,
            offsets,
            words,
            id_bytes: if vocab_size <= 65536 { 2 } else { 4 },
            documents: 0,
            tokens: 0,
            bits: 0,
            nbits: 0,
            encoded: Vec::with_capacity(1 << 16),
        })
    }

    pub fn documents(&self) -> u64 {
        self.documents
    }

    /// Append a document: its ids and (when word starts are kept) each token's word index.
    pub fn push(&mut self, ids: &[u32], word_ids: &[u32]) -> Result<()> {
        self.encoded.clear();
        for &id in ids {
            if self.id_bytes == 2 {
                self.encoded.extend_from_slice(&(id as u16).to_le_bytes());
            } else {
                self.encoded.extend_from_slice(&id.to_le_bytes());
            }
        }
        self.out.write_all(&self.encoded).map_err(io_error(&self.tmp[0]))?;
        if let Some(words) = self.words.as_mut() {
            for i in 0..ids.len() {
                let start = i == 0 || word_ids[i] != word_ids[i - 1];
                self.bits |= (start as u8) << self.nbits;
                self.nbits += 1;
                if self.nbits == 8 {
                    words.write_all(&[self.bits]).map_err(io_error(&self.tmp[2]))?;
                    self.bits = 0;
                    self.nbits = 0;
                }
            }
        }
        self.tokens += ids.len() as u64;
        self.documents += 1;
        self.offsets.write_all(&self.tokens.to_le_bytes()).map_err(io_error(&self.tmp[1]))?;
        Ok(())
    }

    /// Complete the file (built with the tokenizer whose `tokenizer_hash` is given) and move it to
    /// its path. Returns (documents, tokens). The checksum pass stops once `cancel` is set (the
    /// temporary files are then removed).
    pub fn finish(mut self, tokenizer_hash: u64, cancel: &Cancel) -> Result<(u64, u64)> {
        let [tmp, tmp_offsets, tmp_words] = self.tmp.clone();
        let word_starts = self.words.is_some();
        if let Some(mut words) = self.words.take() {
            if self.nbits > 0 {
                words.write_all(&[self.bits]).map_err(io_error(&tmp_words))?;
            }
            words.flush().map_err(io_error(&tmp_words))?;
        }
        self.offsets.flush().map_err(io_error(&tmp_offsets))?;
        for (p, keep) in [(&tmp_offsets, true), (&tmp_words, word_starts)] {
            if keep {
                let mut f = File::open(p).map_err(io_error(p))?;
                std::io::copy(&mut f, &mut self.out).map_err(io_error(&tmp))?;
            }
        }
        self.out.flush().map_err(io_error(&tmp))?;
        // Checksum the body (read back in blocks: memory stays bounded), then write the header.
        let mut f = File::open(&tmp).map_err(io_error(&tmp))?;
        let file_len = f.metadata().map_err(io_error(&tmp))?.len();
        let mut hasher = Hasher::new(CHECKSUM_SEED);
        let mut block = vec![0u8; 1 << 20];
        let mut skip = HEADER;
        loop {
            cancel.check()?;
            let n = f.read(&mut block).map_err(io_error(&tmp))?;
            if n == 0 {
                break;
            }
            let from = skip.min(n);
            skip -= from;
            hasher.update(&block[from..n]);
        }
        let mut h = Vec::with_capacity(HEADER);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(self.id_bytes as u32).to_le_bytes());
        h.extend_from_slice(&self.documents.to_le_bytes());
        h.extend_from_slice(&self.tokens.to_le_bytes());
        h.extend_from_slice(&tokenizer_hash.to_le_bytes());
        h.extend_from_slice(&(word_starts as u32).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&hasher.finish().to_le_bytes());
        h.extend_from_slice(&file_len.to_le_bytes());
        let mut f = std::fs::OpenOptions::new().write(true).open(&tmp).map_err(io_error(&tmp))?;
        f.seek(SeekFrom::Start(0)).map_err(io_error(&tmp))?;
        f.write_all(&h).map_err(io_error(&tmp))?;
        f.sync_all().map_err(io_error(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io_error(&self.path))?;
        Ok((self.documents, self.tokens))
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // After a successful finish the build file was renamed away; these are leftovers only.
        for p in &self.tmp {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitmix::Rng;
    use crate::testutil::tmpdir;

    /// Documents of random ids below `vocab` with random word indices (runs of 1-3 tokens).
    fn docs(n: usize, vocab: u32) -> Vec<(Vec<u32>, Vec<u32>)> {
        let mut rng = Rng::new(5, 0, vocab as u64);
        (0..n)
            .map(|_| {
                let len = rng.below(40); // empty documents included
                let ids: Vec<u32> = (0..len).map(|_| rng.below(vocab as usize) as u32).collect();
                let mut word = 0;
                let words = (0..len).map(|i| {
                    if i > 0 && rng.below(3) == 0 {
                        word += 1;
                    }
                    word
                });
                (ids, words.collect())
            })
            .collect()
    }

    fn write(path: &Path, vocab: u32, word_starts: bool, docs: &[(Vec<u32>, Vec<u32>)]) {
        let mut w = Writer::create(path, vocab, word_starts).unwrap();
        for (ids, words) in docs {
            w.push(ids, words).unwrap();
        }
        assert_eq!(w.finish(42, &Cancel::new()).unwrap(), (docs.len() as u64, docs.iter().map(|d| d.0.len() as u64).sum()));
    }

    #[test]
    fn round_trip_with_both_id_widths_and_word_starts() {
        let dir = tmpdir("cache-round-trip");
        for (vocab, width, word_starts) in [(30_000, 2, true), (70_000, 4, true), (500, 2, false)] {
            let path = dir.join(format!("c{vocab}.dxc"));
            let want = docs(300, vocab);
            write(&path, vocab, word_starts, &want);
            let c = Cache::open(&path, None, true, &Cancel::new()).unwrap();
            assert_eq!((c.id_bytes, c.num_documents(), c.has_word_starts()), (width, 300, word_starts));
            for (i, (ids, words)) in want.iter().enumerate() {
                let (mut got_ids, mut got_words) = (Vec::new(), Vec::new());
                c.document(i as u64, &mut got_ids, Some(&mut got_words)).unwrap();
                assert_eq!(&got_ids, ids, "document {i}");
                // Without the bits every token is its own word.
                let want_words: Vec<u32> = if word_starts { words.clone() } else { (0..ids.len() as u32).collect() };
                assert_eq!(got_words, want_words, "document {i}");
            }
            let left: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("tmp-")).collect();
            assert!(left.is_empty(), "temporary files left behind");
        }
    }

    #[test]
    fn truncated_corrupt_and_foreign_files_are_refused() {
        let dir = tmpdir("cache-corrupt");
        let path = dir.join("c.dxc");
        write(&path, 1000, true, &docs(50, 1000));
        let data = std::fs::read(&path).unwrap();
        let refused = |name: &str, bytes: &[u8]| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap();
            match Cache::open(&p, None, true, &Cancel::new()) {
                Err(Error::CorruptCache(m)) => m,
                Err(e) => panic!("{name}: {e}"),
                Ok(_) => panic!("{name} was accepted"),
            }
        };
        assert!(refused("trunc.dxc", &data[..data.len() - 10]).contains("truncated"));
        let mut flipped = data.clone();
        flipped[HEADER + 30] ^= 0xFF;
        assert!(refused("flip.dxc", &flipped).contains("checksum"));
        assert!(refused("junk.dxc", b"hello").contains("not a distilx cache"));
        let mut version = data.clone();
        version[8] = 9;
        assert!(refused("version.dxc", &version).contains("format version 9"));
        // Not verifying the checksum skips reading the body, nothing else.
        assert!(Cache::open(&dir.join("flip.dxc"), None, false, &Cancel::new()).is_ok());
        assert!(matches!(Cache::open(&dir.join("trunc.dxc"), None, false, &Cancel::new()), Err(Error::CorruptCache(_))));
    }

    #[test]
    fn an_unfinished_build_leaves_nothing_behind() {
        let dir = tmpdir("cache-unfinished");
        let path = dir.join("c.dxc");
        let mut w = Writer::create(&path, 1000, true).unwrap();
        w.push(&[1, 2, 3], &[0, 0, 1]).unwrap();
        drop(w); // an error while building
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
