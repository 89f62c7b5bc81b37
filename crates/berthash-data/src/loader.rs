//! The pre-training data loader: shuffled, masked batches prepared on
//! background threads, with an exactly resumable stream position.
//!
//! Pipeline (each stage a thread, joined by bounded channels):
//! `reader` (parquet or token shards → mixed documents) → `tokenizer` (rayon pool; token
//! shards' ids pass through) → `assembler` (windows → shuffle → batches; the batches masked
//! on the same pool, a group at a time) → consumer.
//!
//! Determinism: the stream is cut into *windows*. A window starts at a set of
//! source cursors and takes documents until it holds at least
//! `shuffle_buffer` rows (the tail of the last document is dropped, as the
//! recipe drops the tail of each group of records). Its rows are shuffled with
//! an RNG derived from `(seed, epoch, window)`. Batch `b` is masked with an RNG
//! derived from `(seed, b)`. So a position is just `(epoch, window, cursors at
//! the window start, rows of the window already delivered, batches delivered)`:
//! resuming re-reads that window and skips the delivered rows, and the batches
//! that follow are bit-identical to those of an uninterrupted run, however far
//! the prefetch threads had read ahead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

use crate::config::PretrainStreamConfig;
use crate::corpus::{
    cursor_at_row, Content, CorpusStream, Lane, SkipCounter, SourceCursor, SourceReader,
};
use crate::error::{DataError, Result};
use crate::mlm::{Masker, MlmBatch};
use crate::pack::{PackMode, PackedRows};
use crate::rng::{self, Domain};
use crate::token_shard::{self, is_token_shard};
use crate::tokenize::TokenizerHandle;

/// Text per chunk handed to the tokenizer: big enough to keep every core busy,
/// small enough to bound memory.
const CHUNK_BYTES: usize = 512 * 1024;
const CHUNK_DOCS: usize = 2048;
/// Chunks buffered between pipeline stages.
const STAGE_QUEUE: usize = 2;

/// Where the stream stands; save it with a checkpoint, pass it to
/// [`PretrainLoader::new`] to resume. Serializes to small JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Completed passes over the corpus.
    pub epoch: u64,
    /// Index of the current shuffle window within the epoch.
    pub window: u64,
    /// Lane cursors at the first document of that window (one per source, or per file when
    /// files are interleaved).
    pub sources: Vec<SourceCursor>,
    /// Rows of that window already delivered.
    pub offset: usize,
    /// Batches delivered since the start of training.
    pub batches: u64,
    /// Identifies the configuration the position belongs to.
    pub fingerprint: String,
}

/// Messages between the stages.
enum DocMsg {
    Docs(Vec<(usize, Content, SourceCursor)>),
    EpochEnd,
    End,
    Err(DataError),
}

struct TokDoc {
    lane: usize,
    ids: Vec<u32>,
    after: SourceCursor,
}

enum TokMsg {
    Docs(Vec<TokDoc>),
    EpochEnd,
    End,
    Err(DataError),
}

enum OutMsg {
    Batch(Box<(MlmBatch, StreamPosition)>),
    End,
    Err(DataError),
}

/// Streams masked pre-training batches; an iterator of `(batch, position after it)`.
///
/// Dropping the loader stops and joins its threads.
pub struct PretrainLoader {
    rx: Option<Receiver<OutMsg>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    skips: Arc<SkipCounter>,
    start: StreamPosition,
    finished: bool,
}

/// What a loader needs, resolved once.
struct Plan {
    config: PretrainStreamConfig,
    tokenizer: TokenizerHandle,
    lanes: Vec<Lane>,
    /// Cursors at the start of every epoch (after the held-out documents).
    epoch_start: Vec<SourceCursor>,
    fingerprint: String,
}

impl Plan {
    fn new(config: &PretrainStreamConfig, tokenizer: TokenizerHandle) -> Result<Self> {
        config.validate()?;
        let files = config.corpus.resolve()?;
        check_token_shards(&files, &tokenizer)?;
        let lanes = config.corpus.lanes(&files)?;
        // The held-out documents open the first file of each source: its first lane.
        let epoch_start = lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| {
                if i > 0 && lanes[i - 1].source == lane.source {
                    return Ok(SourceCursor::default());
                }
                cursor_at_row(
                    &lane.files,
                    &lane.text_column,
                    config.eval_documents,
                    config.corpus.on_bad_input,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let fingerprint = config.fingerprint(&files, tokenizer.vocab_size());
        Ok(Plan {
            config: config.clone(),
            tokenizer,
            lanes,
            epoch_start,
            fingerprint,
        })
    }

    fn start_position(&self) -> StreamPosition {
        StreamPosition {
            epoch: 0,
            window: 0,
            sources: self.epoch_start.clone(),
            offset: 0,
            batches: 0,
            fingerprint: self.fingerprint.clone(),
        }
    }

    fn check(&self, pos: &StreamPosition) -> Result<()> {
        if pos.fingerprint != self.fingerprint {
            return Err(DataError::Position {
                message: format!(
                    "saved for configuration {}, this one is {} (files, file order, text columns, weights, \
                     max_length, pack mode, shuffle, seed, eval_documents or vocabulary changed)",
                    pos.fingerprint, self.fingerprint
                ),
            });
        }
        if pos.sources.len() != self.lanes.len() {
            return Err(DataError::Position {
                message: format!(
                    "{} cursors for {} lanes",
                    pos.sources.len(),
                    self.lanes.len()
                ),
            });
        }
        if let Some(config_epochs) = self.config.epochs {
            if pos.epoch >= config_epochs {
                return Err(DataError::Position {
                    message: format!(
                        "epoch {} is past the configured {config_epochs} epochs",
                        pos.epoch
                    ),
                });
            }
        }
        for (i, (c, lane)) in pos.sources.iter().zip(&self.lanes).enumerate() {
            if c.file > lane.files.len() {
                return Err(DataError::Position {
                    message: format!("lane {i}: file {} of {}", c.file, lane.files.len()),
                });
            }
        }
        Ok(())
    }

    fn masker(&self) -> Result<Masker> {
        Masker::new(
            self.config.masking,
            self.tokenizer.special_ids(),
            self.tokenizer.vocab_size(),
        )
    }

    fn new_rows(&self) -> PackedRows {
        PackedRows::new(
            self.config.pack_mode,
            self.config.max_length,
            self.tokenizer.vocab_size(),
            self.tokenizer.pad_id(),
            self.tokenizer.sep_id(),
        )
    }
}

impl PretrainLoader {
    /// Starts a loader at `start` (the beginning when `None`), loading the
    /// tokenizer from `config.tokenizer`.
    pub fn new(config: PretrainStreamConfig, start: Option<StreamPosition>) -> Result<Self> {
        let tokenizer = TokenizerHandle::from_file(&config.tokenizer)?;
        Self::with_tokenizer(config, tokenizer, start)
    }

    /// Like [`PretrainLoader::new`] with an already loaded tokenizer
    /// (`config.tokenizer` is then not read).
    pub fn with_tokenizer(
        config: PretrainStreamConfig,
        tokenizer: TokenizerHandle,
        start: Option<StreamPosition>,
    ) -> Result<Self> {
        let plan = Arc::new(Plan::new(&config, tokenizer)?);
        let start = match start {
            Some(pos) => {
                plan.check(&pos)?;
                pos
            }
            None => plan.start_position(),
        };
        let threads_wanted = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
        let pool = Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads_wanted)
                .thread_name(|i| format!("berthash-tokenize-{i}"))
                .build()
                .map_err(|e| DataError::config("threads", e.to_string()))?,
        );

        let stop = Arc::new(AtomicBool::new(false));
        let skips = Arc::new(SkipCounter::default());
        let (doc_tx, doc_rx) = bounded(STAGE_QUEUE);
        let (tok_tx, tok_rx) = bounded(STAGE_QUEUE);
        let (out_tx, out_rx) = bounded(config.prefetch_batches);

        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("berthash-{name}"))
                .spawn(f)
                .map_err(|e| DataError::Worker {
                    thread: format!("{name}: {e}"),
                })
        };
        let mut threads = Vec::new();
        {
            let (plan, stop, skips, start) =
                (plan.clone(), stop.clone(), skips.clone(), start.clone());
            threads.push(spawn(
                "reader",
                Box::new(move || read_documents(&plan, &start, &stop, &skips, &doc_tx)),
            )?);
        }
        {
            let (plan, stop, pool) = (plan.clone(), stop.clone(), pool.clone());
            threads.push(spawn(
                "tokenizer",
                Box::new(move || tokenize_documents(&plan, &pool, &stop, &doc_rx, &tok_tx)),
            )?);
        }
        {
            let (plan, stop, start) = (plan.clone(), stop.clone(), start.clone());
            threads.push(spawn(
                "assembler",
                Box::new(move || {
                    let assembler = Assembler::new(&plan, &start, &pool, tok_rx, out_tx.clone());
                    let mut assembler = match assembler {
                        Ok(a) => a,
                        Err(e) => {
                            let _ = out_tx.send(OutMsg::Err(e));
                            return;
                        }
                    };
                    let result = assembler.run(&stop);
                    // The batches before the end, or before an error, are delivered first.
                    if !assembler.flush() {
                        return;
                    }
                    let msg = match result {
                        Ok(()) => OutMsg::End,
                        Err(e) => OutMsg::Err(e),
                    };
                    let _ = out_tx.send(msg);
                }),
            )?);
        }
        Ok(PretrainLoader {
            rx: Some(out_rx),
            stop,
            threads,
            skips,
            start,
            finished: false,
        })
    }

    /// The position this loader started from.
    pub fn start_position(&self) -> &StreamPosition {
        &self.start
    }

    /// Rows and files skipped so far under `on_bad_input = "skip"`.
    pub fn skipped(&self) -> (u64, u64) {
        (self.skips.rows(), self.skips.files())
    }

    /// What the stream skipped so far, by kind, the non-zero counts only: rows without text
    /// (`empty_text_rows`), and rows and files skipped under `on_bad_input = "skip"`.
    pub fn skip_report(&self) -> std::collections::BTreeMap<String, u64> {
        [
            ("empty_text_rows", self.skips.empty()),
            ("bad_rows_skipped", self.skips.rows()),
            ("bad_files_skipped", self.skips.files()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), n))
        .collect()
    }

    /// The fixed evaluation batches: the held-out documents (the first
    /// `eval_documents` rows of each source's first file, sources in order),
    /// packed like training rows, not shuffled, masked with a fixed seed. The
    /// last batch may be smaller. At most `max_batches` batches.
    pub fn eval_batches(
        config: &PretrainStreamConfig,
        tokenizer: &TokenizerHandle,
        max_batches: usize,
    ) -> Result<Vec<MlmBatch>> {
        let plan = Plan::new(config, tokenizer.clone())?;
        let skips = Arc::new(SkipCounter::default());
        let mut contents = Vec::new();
        for (i, lane) in plan.lanes.iter().enumerate() {
            let mut reader = SourceReader::new(
                i,
                lane.files.clone(),
                &lane.text_column,
                &config.corpus,
                SourceCursor::default(),
                skips.clone(),
            );
            // Exactly the rows that training skips: up to the epoch start cursor.
            let key = |c: SourceCursor| (c.file, c.row_group, c.row);
            let end = key(plan.epoch_start[i]);
            while key(reader.cursor()) < end {
                match reader.next_doc()? {
                    // A skipped bad row may carry the reader past the end.
                    Some(doc) if key(doc.after) <= end => contents.push(doc.content),
                    _ => break,
                }
            }
        }
        let mut rows = plan.new_rows();
        for ids in token_ids(tokenizer, contents)? {
            rows.push_document(&ids);
        }
        rows.drop_tail();
        let masker = plan.masker()?;
        let per_doc = config.pack_mode == PackMode::PerDocument;
        let mut batches = Vec::new();
        for (b, start) in (0..rows.rows()).step_by(config.batch_size).enumerate() {
            if batches.len() >= max_batches {
                break;
            }
            let end = (start + config.batch_size).min(rows.rows());
            let mut ids = Vec::new();
            let mut mask = per_doc.then(Vec::new);
            for r in start..end {
                rows.copy_row(r, &mut ids, mask.as_mut());
            }
            let mut rng = rng::derive(config.seed, Domain::EvalMask, b as u64, 0);
            batches.push(masker.apply(ids, end - start, config.max_length, mask, &mut rng));
        }
        Ok(batches)
    }
}

impl Iterator for PretrainLoader {
    type Item = Result<(MlmBatch, StreamPosition)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let msg = self.rx.as_ref()?.recv();
        match msg {
            Ok(OutMsg::Batch(b)) => Some(Ok(*b)),
            Ok(OutMsg::End) => {
                self.finished = true;
                None
            }
            Ok(OutMsg::Err(e)) => {
                self.finished = true;
                Some(Err(e))
            }
            Err(_) => {
                self.finished = true;
                Some(Err(DataError::Worker {
                    thread: "assembler".to_string(),
                }))
            }
        }
    }
}

impl Drop for PretrainLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Closing the output channel unblocks the assembler, whose exit closes
        // the channel before it, and so on up the pipeline.
        self.rx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Stage 1: mixed documents in chunks, epoch after epoch.
fn read_documents(
    plan: &Plan,
    start: &StreamPosition,
    stop: &AtomicBool,
    skips: &Arc<SkipCounter>,
    tx: &Sender<DocMsg>,
) {
    let mut epoch = start.epoch;
    let mut cursors = start.sources.clone();
    loop {
        let mut stream =
            CorpusStream::new(&plan.config.corpus, &plan.lanes, &cursors, skips.clone());
        let whole_pass = cursors == plan.epoch_start;
        let (mut chunk, mut bytes, mut docs) = (Vec::new(), 0, 0usize);
        loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match stream.next_doc() {
                Ok(Some(doc)) => {
                    docs += 1;
                    bytes += match &doc.content {
                        Content::Text(text) => text.len(),
                        Content::Ids(ids) => 4 * ids.len(),
                    };
                    chunk.push((doc.lane, doc.content, doc.after));
                    if bytes >= CHUNK_BYTES || chunk.len() >= CHUNK_DOCS {
                        bytes = 0;
                        if tx.send(DocMsg::Docs(std::mem::take(&mut chunk))).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(DocMsg::Err(e));
                    return;
                }
            }
        }
        if whole_pass && docs == 0 {
            let files = plan.lanes.iter().map(|l| l.files.len()).sum();
            let empty = skips.empty();
            let _ = tx.send(DocMsg::Err(DataError::NoText { files, empty }));
            return;
        }
        if !chunk.is_empty() && tx.send(DocMsg::Docs(chunk)).is_err() {
            return;
        }
        if tx.send(DocMsg::EpochEnd).is_err() {
            return;
        }
        epoch += 1;
        if plan.config.epochs.is_some_and(|n| epoch >= n) {
            let _ = tx.send(DocMsg::End);
            return;
        }
        cursors = plan.epoch_start.clone();
    }
}

/// Token ids of documents, in order: texts encoded in parallel on the current rayon pool (with
/// `[CLS]` and `[SEP]`), a token shard's ids as they are.
fn token_ids(tokenizer: &TokenizerHandle, contents: Vec<Content>) -> Result<Vec<Vec<u32>>> {
    use rayon::prelude::*;
    contents
        .into_par_iter()
        .map(|content| match content {
            Content::Text(text) => tokenizer.encode(&text, true),
            Content::Ids(ids) => Ok(ids),
        })
        .collect()
}

/// Token shards hold the ids of one tokenizer: refuses those made with another.
fn check_token_shards(
    files: &[Arc<Vec<std::path::PathBuf>>],
    tokenizer: &TokenizerHandle,
) -> Result<()> {
    let mut fingerprint = None;
    for path in files
        .iter()
        .flat_map(|f| f.iter())
        .filter(|p| is_token_shard(p))
    {
        let meta = token_shard::read_info(path)?.meta;
        let ours = match &fingerprint {
            Some(f) => f,
            None => fingerprint.insert(tokenizer.fingerprint()?),
        };
        if meta.tokenizer != *ours || meta.vocab_size != tokenizer.vocab_size() {
            return Err(DataError::Format {
                path: path.clone(),
                message: format!(
                    "token shard made with tokenizer {} (vocabulary {}), this run's tokenizer {} \
                     is {ours} (vocabulary {}): pre-tokenize the corpus with this tokenizer",
                    meta.tokenizer,
                    meta.vocab_size,
                    tokenizer.name(),
                    tokenizer.vocab_size()
                ),
            });
        }
    }
    Ok(())
}

/// Stage 2: token ids for each chunk, in parallel, order kept.
fn tokenize_documents(
    plan: &Plan,
    pool: &rayon::ThreadPool,
    stop: &AtomicBool,
    rx: &Receiver<DocMsg>,
    tx: &Sender<TokMsg>,
) {
    for msg in rx {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let out = match msg {
            DocMsg::Docs(docs) => {
                let (places, contents): (Vec<_>, Vec<_>) = docs
                    .into_iter()
                    .map(|(lane, content, after)| ((lane, after), content))
                    .unzip();
                match pool.install(|| token_ids(&plan.tokenizer, contents)) {
                    Ok(ids) => TokMsg::Docs(
                        places
                            .into_iter()
                            .zip(ids)
                            .map(|((lane, after), ids)| TokDoc { lane, ids, after })
                            .collect(),
                    ),
                    Err(e) => TokMsg::Err(e),
                }
            }
            DocMsg::EpochEnd => TokMsg::EpochEnd,
            DocMsg::End => TokMsg::End,
            DocMsg::Err(e) => TokMsg::Err(e),
        };
        let last = matches!(out, TokMsg::End | TokMsg::Err(_));
        if tx.send(out).is_err() || last {
            return;
        }
    }
}

/// What ended a window.
enum WindowEnd {
    Full,
    Epoch,
    Stream,
}

enum Event {
    Doc(TokDoc),
    EpochEnd,
    End,
}

/// Stage 3: windows, shuffling, batching, masking.
struct Assembler<'a> {
    plan: &'a Plan,
    masker: Masker,
    rx: Receiver<TokMsg>,
    tx: Sender<OutMsg>,
    pending: VecDeque<Event>,
    epoch: u64,
    window: u64,
    /// Cursors after the last document taken.
    cursors: Vec<SourceCursor>,
    /// Rows of the first window to skip (resume).
    skip: usize,
    batches: u64,
    /// Whether the current epoch began at its start (not resumed mid-way).
    epoch_from_start: bool,
    rows_this_epoch: u64,
    ids: Vec<u32>,
    mask: Option<Vec<u32>>,
    rows_in_batch: usize,
    /// Masks a group of batches at once, one per thread.
    pool: &'a rayon::ThreadPool,
    unmasked: Vec<Unmasked>,
}

/// A full batch waiting for its masks.
struct Unmasked {
    ids: Vec<u32>,
    mask: Option<Vec<u32>>,
    /// Its index in the stream: the masks depend only on it and the seed.
    index: u64,
    position: StreamPosition,
}

impl<'a> Assembler<'a> {
    fn new(
        plan: &'a Plan,
        start: &StreamPosition,
        pool: &'a rayon::ThreadPool,
        rx: Receiver<TokMsg>,
        tx: Sender<OutMsg>,
    ) -> Result<Self> {
        let per_doc = plan.config.pack_mode == PackMode::PerDocument;
        Ok(Assembler {
            plan,
            pool,
            unmasked: Vec::new(),
            masker: plan.masker()?,
            rx,
            tx,
            pending: VecDeque::new(),
            epoch: start.epoch,
            window: start.window,
            cursors: start.sources.clone(),
            skip: start.offset,
            batches: start.batches,
            epoch_from_start: start.window == 0
                && start.offset == 0
                && start.sources == plan.epoch_start,
            rows_this_epoch: 0,
            ids: Vec::new(),
            mask: per_doc.then(Vec::new),
            rows_in_batch: 0,
        })
    }

    fn next_event(&mut self) -> Result<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Ok(e);
            }
            match self.rx.recv() {
                Ok(TokMsg::Docs(docs)) => self.pending.extend(docs.into_iter().map(Event::Doc)),
                Ok(TokMsg::EpochEnd) => return Ok(Event::EpochEnd),
                Ok(TokMsg::End) => return Ok(Event::End),
                Ok(TokMsg::Err(e)) => return Err(e),
                Err(_) => {
                    return Err(DataError::Worker {
                        thread: "tokenizer".to_string(),
                    })
                }
            }
        }
    }

    /// Takes documents until the window holds `shuffle_buffer` rows or the epoch ends.
    fn build_window(&mut self) -> Result<(PackedRows, WindowEnd)> {
        let mut rows = self.plan.new_rows();
        let end = loop {
            if rows.rows() >= self.plan.config.shuffle_buffer {
                break WindowEnd::Full;
            }
            match self.next_event()? {
                Event::Doc(doc) => {
                    rows.push_document(&doc.ids);
                    self.cursors[doc.lane] = doc.after;
                }
                Event::EpochEnd => break WindowEnd::Epoch,
                Event::End => break WindowEnd::Stream,
            }
        };
        rows.drop_tail();
        Ok((rows, end))
    }

    fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        loop {
            let start = self.cursors.clone();
            let (rows, end) = self.build_window()?;
            let n = rows.rows();
            let mut order: Vec<usize> = (0..n).collect();
            if self.plan.config.shuffle {
                let mut rng = rng::derive(
                    self.plan.config.seed,
                    Domain::Shuffle,
                    self.epoch,
                    self.window,
                );
                rng::shuffle(&mut rng, &mut order);
            }
            for (offset, &row) in order.iter().enumerate().skip(self.skip) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                rows.copy_row(row, &mut self.ids, self.mask.as_mut());
                self.rows_in_batch += 1;
                if self.rows_in_batch == self.plan.config.batch_size {
                    let after = if offset + 1 < n {
                        (self.window, start.clone(), offset + 1)
                    } else {
                        (self.window + 1, self.cursors.clone(), 0)
                    };
                    if !self.emit(after) {
                        return Ok(());
                    }
                }
            }
            self.skip = 0;
            self.rows_this_epoch += n as u64;
            self.window += 1;
            match end {
                WindowEnd::Full => {}
                WindowEnd::Epoch => {
                    if self.epoch_from_start && self.rows_this_epoch == 0 {
                        return Err(DataError::config(
                            "corpus",
                            format!(
                                "a whole epoch gave no {}-token row (too little text after the \
                                 {} held-out documents per source?)",
                                self.plan.config.max_length, self.plan.config.eval_documents
                            ),
                        ));
                    }
                    self.epoch += 1;
                    self.window = 0;
                    self.cursors = self.plan.epoch_start.clone();
                    self.epoch_from_start = true;
                    self.rows_this_epoch = 0;
                }
                // A final partial batch is dropped: every batch has `batch_size` rows.
                WindowEnd::Stream => return Ok(()),
            }
        }
    }

    /// Queues the full batch, and masks and sends the queue once it holds a batch per thread;
    /// `false` when the consumer is gone.
    fn emit(&mut self, (window, sources, offset): (u64, Vec<SourceCursor>, usize)) -> bool {
        let index = self.batches;
        self.batches += 1;
        self.rows_in_batch = 0;
        self.unmasked.push(Unmasked {
            ids: std::mem::take(&mut self.ids),
            mask: self.mask.as_mut().map(std::mem::take),
            index,
            position: StreamPosition {
                epoch: self.epoch,
                window,
                sources,
                offset,
                batches: self.batches,
                fingerprint: self.plan.fingerprint.clone(),
            },
        });
        self.unmasked.len() < self.pool.current_num_threads() || self.flush()
    }

    /// Masks the queued batches in parallel and sends them in order; `false` when the consumer
    /// is gone.
    fn flush(&mut self) -> bool {
        use rayon::prelude::*;
        let cfg = &self.plan.config;
        let masker = &self.masker;
        let queued = std::mem::take(&mut self.unmasked);
        let masked: Vec<_> = self.pool.install(|| {
            queued
                .into_par_iter()
                .map(|u| {
                    let mut rng = rng::derive(cfg.seed, Domain::Mask, u.index, 0);
                    let batch =
                        masker.apply(u.ids, cfg.batch_size, cfg.max_length, u.mask, &mut rng);
                    (batch, u.position)
                })
                .collect()
        });
        masked
            .into_iter()
            .all(|b| self.tx.send(OutMsg::Batch(Box::new(b))).is_ok())
    }
}
