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
//! a cache built with another tokenizer is refused (tokenizer hash).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::corpus::{expand_inputs, DocReader, ReadOptions, ReadStats};
use crate::error::{Error, Result};
use crate::masking::mix;
use crate::tokenize::{thread_pool, Tokenizer};

const MAGIC: &[u8; 8] = b"DSTXCACH";
const VERSION: u32 = 1;
const HEADER: usize = 64;

/// A stable fingerprint of a tokenizer file's bytes.
pub fn tokenizer_hash(tok: &Tokenizer) -> Result<u64> {
    let bytes = std::fs::read(&tok.source).map_err(|e| Error::io(&tok.source, e))?;
    Ok(hash_bytes(&bytes, 0x70CE))
}

/// A fast streaming 64-bit hash (splitmix over 8-byte words, the length mixed in at the end).
struct Hasher {
    h: u64,
    pending: [u8; 8],
    n_pending: usize,
    len: u64,
}

impl Hasher {
    fn new(seed: u64) -> Self {
        Hasher { h: mix(seed), pending: [0; 8], n_pending: 0, len: 0 }
    }
    fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        if self.n_pending > 0 {
            let take = (8 - self.n_pending).min(data.len());
            self.pending[self.n_pending..self.n_pending + take].copy_from_slice(&data[..take]);
            self.n_pending += take;
            data = &data[take..];
            if self.n_pending < 8 {
                return;
            }
            self.h = mix(self.h ^ u64::from_le_bytes(self.pending));
            self.n_pending = 0;
        }
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            self.h = mix(self.h ^ u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.n_pending = rest.len();
    }
    fn finish(mut self) -> u64 {
        self.pending[self.n_pending..].fill(0);
        mix(mix(self.h ^ u64::from_le_bytes(self.pending)) ^ self.len)
    }
}

fn hash_bytes(data: &[u8], seed: u64) -> u64 {
    let mut h = Hasher::new(seed);
    h.update(data);
    h.finish()
}

pub struct Cache {
    map: memmap2::Mmap,
    pub path: PathBuf,
    pub id_bytes: usize,
    num_docs: u64,
    pub num_tokens: u64,
    has_words: bool,
    ids_at: usize,
    offsets_at: usize,
    words_at: usize,
}

fn corrupt(path: &Path, what: &str) -> Error {
    Error::CorruptCache(format!("{}: {what}; delete it and build it again with distilx.build_cache", path.display()))
}

impl Cache {
    /// Open and validate a cache; `tokenizer` (when given) must be the one it was built with.
    pub fn open(path: &Path, tokenizer: Option<&Tokenizer>, verify_checksum: bool) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: the file is opened read-only; distilx never writes a cache in place (builds go to a
        // temporary name and are renamed), so the mapping does not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
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
        if verify_checksum && hash_bytes(&map[HEADER..], 0xC4EC) != checksum {
            return Err(corrupt(path, "checksum mismatch (the file is corrupt)"));
        }
        if let Some(t) = tokenizer {
            if tokenizer_hash(t)? != tok_hash {
                return Err(Error::CorruptCache(format!(
                    "{} was built with another tokenizer than {}; rebuild it or pass the tokenizer it was built with",
                    path.display(),
                    t.source.display())));
            }
        }
        let cache = Cache { map, path: path.to_path_buf(), id_bytes, num_docs, num_tokens, has_words, ids_at, offsets_at, words_at };
        if cache.offset(num_docs) != num_tokens {
            return Err(corrupt(path, "its index does not match its token count"));
        }
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
        u64::from_le_bytes(self.map[o..o + 8].try_into().unwrap())
    }

    /// Append document `i`'s ids (and word indices, numbered from 0, when asked and stored).
    pub fn document(&self, i: u64, ids: &mut Vec<u32>, word_ids: Option<&mut Vec<u32>>) {
        let (a, b) = (self.offset(i) as usize, self.offset(i + 1) as usize);
        let bytes = &self.map[self.ids_at + a * self.id_bytes..self.ids_at + b * self.id_bytes];
        if self.id_bytes == 2 {
            ids.extend(bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32));
        } else {
            ids.extend(bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())));
        }
        if let Some(w) = word_ids {
            let mut word = 0u32;
            for t in a..b {
                let start = !self.has_words || (self.map[self.words_at + t / 8] >> (t % 8)) & 1 == 1;
                if start && t > a {
                    word += 1;
                }
                w.push(word);
            }
        }
    }

    /// Count of every id over the whole cache (for frequency masking).
    pub fn token_counts(&self, vocab_size: u32) -> Vec<u64> {
        let mut counts = vec![0u64; vocab_size as usize];
        let bytes = &self.map[self.ids_at..self.offsets_at];
        if self.id_bytes == 2 {
            for c in bytes.chunks_exact(2) {
                let id = u16::from_le_bytes([c[0], c[1]]) as usize;
                if id < counts.len() {
                    counts[id] += 1;
                }
            }
        } else {
            for c in bytes.chunks_exact(4) {
                let id = u32::from_le_bytes(c.try_into().unwrap()) as usize;
                if id < counts.len() {
                    counts[id] += 1;
                }
            }
        }
        counts
    }
}

/// What building a cache met.
#[derive(Clone, Debug, Default)]
pub struct BuildReport {
    pub read: ReadStats,
    pub documents: u64,
    pub tokens: u64,
}

/// Tokenize `inputs` once into a cache at `path` (written to a temporary name, then renamed).
pub fn build(inputs: &[String], tokenizer: &Tokenizer, path: &Path, read: ReadOptions, num_threads: Option<usize>, word_starts: bool) -> Result<BuildReport> {
    let files = expand_inputs(inputs)?;
    let pool = thread_pool(num_threads)?;
    let id_bytes: usize = if tokenizer.vocab_size <= 65536 { 2 } else { 4 };
    // Temporary names unique to this build (process id, build number): ranks or threads that each
    // build the same missing cache must not write into one another's files; each renames a
    // complete file, and the last rename wins.
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let build_no = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let sibling = |tag: &str| {
        let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "cache".into());
        name.push(format!(".{}-{build_no}.{tag}", std::process::id()));
        path.with_file_name(name)
    };
    let (tmp, tmp_off, tmp_words) = (sibling("tmp-build"), sibling("tmp-offsets"), sibling("tmp-words"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| Error::io(&p, e)
    };
    let result = (|| -> Result<BuildReport> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(io(&tmp))?);
        let mut offs = BufWriter::with_capacity(1 << 20, File::create(&tmp_off).map_err(io(&tmp_off))?);
        let mut words = BufWriter::with_capacity(1 << 20, File::create(&tmp_words).map_err(io(&tmp_words))?);
        out.write_all(&[0u8; HEADER]).map_err(io(&tmp))?;
        let mut reader = DocReader::new(files, read);
        let mut tokens: u64 = 0;
        let mut docs: u64 = 0;
        let mut bits: u8 = 0;
        let mut nbits = 0;
        let mut hasher_ids = Vec::with_capacity(1 << 16);
        offs.write_all(&0u64.to_le_bytes()).map_err(io(&tmp_off))?;
        loop {
            let items = reader.next_docs(4 << 20)?;
            if items.is_empty() {
                break;
            }
            let encoded = crate::stream::tokenize_docs(tokenizer, &items, word_starts, &pool)?;
            for d in encoded {
                hasher_ids.clear();
                for &id in &d.ids {
                    if id_bytes == 2 {
                        hasher_ids.extend_from_slice(&(id as u16).to_le_bytes());
                    } else {
                        hasher_ids.extend_from_slice(&id.to_le_bytes());
                    }
                }
                out.write_all(&hasher_ids).map_err(io(&tmp))?;
                if word_starts {
                    for i in 0..d.ids.len() {
                        let start = i == 0 || d.word_ids[i] != d.word_ids[i - 1];
                        bits |= (start as u8) << nbits;
                        nbits += 1;
                        if nbits == 8 {
                            words.write_all(&[bits]).map_err(io(&tmp_words))?;
                            bits = 0;
                            nbits = 0;
                        }
                    }
                }
                tokens += d.ids.len() as u64;
                docs += 1;
                offs.write_all(&tokens.to_le_bytes()).map_err(io(&tmp_off))?;
            }
        }
        if nbits > 0 {
            words.write_all(&[bits]).map_err(io(&tmp_words))?;
        }
        if docs == 0 {
            return Err(Error::InvalidInput("the corpus holds no document (empty files?); nothing to cache".into()));
        }
        offs.flush().map_err(io(&tmp_off))?;
        words.flush().map_err(io(&tmp_words))?;
        drop(offs);
        drop(words);
        for (p, keep) in [(&tmp_off, true), (&tmp_words, word_starts)] {
            if keep {
                let mut f = File::open(p).map_err(io(p))?;
                std::io::copy(&mut f, &mut out).map_err(io(&tmp))?;
            }
        }
        out.flush().map_err(io(&tmp))?;
        drop(out);
        // Checksum the body (read back in blocks: memory stays bounded), then write the header.
        let mut f = File::open(&tmp).map_err(io(&tmp))?;
        let file_len = f.metadata().map_err(io(&tmp))?.len();
        let mut hasher = Hasher::new(0xC4EC);
        let mut block = vec![0u8; 1 << 20];
        let mut skip = HEADER;
        loop {
            let n = f.read(&mut block).map_err(io(&tmp))?;
            if n == 0 {
                break;
            }
            let from = skip.min(n);
            skip -= from;
            hasher.update(&block[from..n]);
        }
        let checksum = hasher.finish();
        let mut h = Vec::with_capacity(HEADER);
        h.extend_from_slice(MAGIC);
        h.extend_from_slice(&VERSION.to_le_bytes());
        h.extend_from_slice(&(id_bytes as u32).to_le_bytes());
        h.extend_from_slice(&docs.to_le_bytes());
        h.extend_from_slice(&tokens.to_le_bytes());
        h.extend_from_slice(&tokenizer_hash(tokenizer)?.to_le_bytes());
        h.extend_from_slice(&(word_starts as u32).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&checksum.to_le_bytes());
        h.extend_from_slice(&file_len.to_le_bytes());
        {
            use std::io::{Seek, SeekFrom};
            let mut f = std::fs::OpenOptions::new().write(true).open(&tmp).map_err(io(&tmp))?;
            f.seek(SeekFrom::Start(0)).map_err(io(&tmp))?;
            f.write_all(&h).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(io(path))?;
        Ok(BuildReport { read: reader.stats.clone(), documents: docs, tokens })
    })();
    let _ = std::fs::remove_file(&tmp_off);
    let _ = std::fs::remove_file(&tmp_words);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
