//! Raw files as a document source: read and tokenized ahead in two threads of their own. A reader
//! thread (decompress, split, decode; keeps this shard's documents) feeds a tokenizer thread
//! (encodes each round on the pool), which feeds the consumer. Reading, tokenizing and what the
//! consumer does with the documents thus overlap.
//!
//! Stopping: the source's own flag (set when it is dropped or restarted) reaches the reader inside
//! a file (`ReadOptions::cancel`, checked per MiB read and per skipped document of another rank),
//! and the consumer checks the caller's flag (`Tokenizing::cancel`) while it waits, so neither
//! waits on a long read.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rayon::prelude::*;

use super::{DocSource, Tokenizing, Want};
use crate::cancel::Cancel;
use crate::corpus::{CorpusFile, DocPos, DocReader, ReadOptions, ReadStats};
use crate::error::{Error, Result};
use crate::sequences::TokDoc;
use crate::tokenize::Tokenizer;

/// About this much text is tokenized per parallel round (bounded memory, good thread use).
const ROUND_BYTES: usize = 1 << 20;
pub(crate) const ROUND_DOCS: usize = 4096;
/// Rounds in flight per stage: enough to keep every thread busy, few enough to bound memory.
const ROUNDS_AHEAD: usize = 4;
/// How often a consumer waiting for a round checks the caller's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

pub(crate) fn tokenize_docs(tok: &Tokenizer, items: &[(DocPos, String)], words: bool, pool: &rayon::ThreadPool) -> Result<Vec<TokDoc>> {
    pool.install(|| {
        items
            .par_iter()
            .map(|(pos, text)| {
                let mut d = TokDoc { pos: *pos, ids: Vec::new(), word_ids: Vec::new() };
                tok.encode_into(text, &mut d.ids, if words { Some(&mut d.word_ids) } else { None })?;
                Ok(d)
            })
            .collect()
    })
}

enum Feed {
    Texts(Vec<(DocPos, String)>, ReadStats),
    Docs(Vec<TokDoc>, ReadStats),
    End(ReadStats),
    Err(Error),
}

/// What both threads share, read-only.
struct Input {
    files: Vec<CorpusFile>,
    tokenizing: Tokenizing,
    want: Want,
}

pub(crate) struct TextSource {
    input: Arc<Input>,
    rx: Option<Receiver<Feed>>,
    threads: Vec<JoinHandle<()>>,
    /// Set to stop this source's threads (a fresh flag per start).
    stop: Cancel,
    stats: ReadStats,
    ended: bool,
}

fn read_rounds(input: Arc<Input>, start: DocPos, tx: SyncSender<Feed>, stop: Cancel) {
    let read = ReadOptions { cancel: stop.clone(), ..input.tokenizing.read.clone() };
    let mut reader = DocReader::new(input.files.clone(), read);
    if let Err(e) = reader.seek(start) {
        let _ = tx.send(Feed::Err(e));
        return;
    }
    let shard = input.want.shard;
    let mut text = String::new();
    loop {
        let mut texts = Vec::new();
        let mut bytes = 0;
        while bytes < ROUND_BYTES && texts.len() < ROUND_DOCS {
            match reader.next_doc(&mut text) {
                Err(e) => {
                    let _ = tx.send(Feed::Err(e));
                    return;
                }
                Ok(None) => break,
                Ok(Some(pos)) if shard.owns(pos.index) => {
                    bytes += text.len();
                    texts.push((pos, std::mem::take(&mut text)));
                }
                // Another rank's document: a round may skip many of them before it fills.
                Ok(Some(_)) if stop.is_cancelled() => return,
                Ok(Some(_)) => {}
            }
        }
        if stop.is_cancelled() {
            return;
        }
        let msg = if texts.is_empty() { Feed::End(reader.stats.clone()) } else { Feed::Texts(texts, reader.stats.clone()) };
        let end = matches!(msg, Feed::End(_));
        if tx.send(msg).is_err() || end {
            return;
        }
    }
}

fn tokenize_rounds(input: Arc<Input>, rx: Receiver<Feed>, tx: SyncSender<Feed>, stop: Cancel) {
    let t = &input.tokenizing;
    while let Ok(msg) = rx.recv() {
        if stop.is_cancelled() {
            return;
        }
        let out = match msg {
            Feed::Texts(texts, st) => match tokenize_docs(&t.tokenizer, &texts, input.want.word_ids, &t.pool) {
                Ok(docs) => Feed::Docs(docs, st),
                Err(e) => Feed::Err(e),
            },
            other => other,
        };
        let last = matches!(out, Feed::End(_) | Feed::Err(_));
        if tx.send(out).is_err() || last {
            return;
        }
    }
}

impl TextSource {
    pub(super) fn new(files: Vec<CorpusFile>, tokenizing: Tokenizing, want: Want) -> Self {
        TextSource {
            input: Arc::new(Input { files, tokenizing, want }),
            rx: None,
            threads: Vec::new(),
            stop: Cancel::new(),
            stats: ReadStats::default(),
            ended: false,
        }
    }

    fn shutdown(&mut self) {
        self.stop.cancel();
        drop(self.rx.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.stop = Cancel::new();
    }

    fn start(&mut self, pos: DocPos) -> Result<()> {
        self.shutdown();
        let (text_tx, text_rx) = sync_channel(ROUNDS_AHEAD);
        let (doc_tx, doc_rx) = sync_channel(ROUNDS_AHEAD);
        let spawn_err = |e: std::io::Error| Error::InvalidConfig(format!("cannot start a data-engine thread: {e}"));
        let (input, stop) = (self.input.clone(), self.stop.clone());
        self.threads.push(std::thread::Builder::new().name("distilx-reader".into()).spawn(move || read_rounds(input, pos, text_tx, stop)).map_err(spawn_err)?);
        let (input, stop) = (self.input.clone(), self.stop.clone());
        self.threads
            .push(std::thread::Builder::new().name("distilx-tokenizer".into()).spawn(move || tokenize_rounds(input, text_rx, doc_tx, stop)).map_err(spawn_err)?);
        self.rx = Some(doc_rx);
        Ok(())
    }
}

impl Drop for TextSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl DocSource for TextSource {
    fn seek(&mut self, at: DocPos) -> Result<()> {
        self.ended = false;
        self.start(at)
    }

    fn next_docs(&mut self, out: &mut Vec<TokDoc>) -> Result<bool> {
        if self.ended {
            return Ok(false);
        }
        if self.rx.is_none() {
            self.start(DocPos::default())?;
        }
        let rx = self.rx.as_ref().expect("started");
        let received = loop {
            match rx.recv_timeout(CANCEL_POLL) {
                Err(RecvTimeoutError::Timeout) => self.input.tokenizing.cancel.check()?,
                Err(RecvTimeoutError::Disconnected) => break Err(()),
                Ok(feed) => break Ok(feed),
            }
        };
        match received {
            Ok(Feed::Docs(docs, st)) => {
                self.stats = st;
                out.extend(docs);
                Ok(true)
            }
            Ok(Feed::End(st)) => {
                self.stats = st;
                self.shutdown();
                // Stay at the end: a later call must not restart from the beginning.
                self.ended = true;
                Ok(false)
            }
            Ok(Feed::Err(e)) => Err(e),
            Ok(Feed::Texts(..)) => unreachable!("texts are tokenized before they reach the consumer"),
            Err(_) => Err(Error::InvalidInput("the data engine's reader thread stopped unexpectedly".into())),
        }
    }

    fn read_stats(&self) -> ReadStats {
        self.stats.clone()
    }
}
