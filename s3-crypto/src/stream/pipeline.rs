//! The parallel frame pipeline shared by encryption and decryption: one thread reads frames in
//! order, `threads` workers seal or open them, and the caller's thread writes them in order.
//!
//! Frames travel in batches of about [`BATCH_BYTES`] (at least one frame, at most
//! [`MAX_BATCH_FRAMES`]), so that the hand-offs
//! between threads (a channel send and a wake-up each, several microseconds on a VM) are paid once
//! per batch rather than once per frame: a 64 KiB frame is only ~20 µs of AES-GCM.
//!
//! Memory is a fixed pool of [`FrameBuffer`]s (`(4 × threads + 2)` batches' worth): the reader blocks
//! for a free buffer once they are all in flight, and the writer returns each one after writing it.
//! The pool cannot deadlock: batches are submitted in order, so the batch the writer waits for is
//! always submitted (queued or in a worker) or, if the reader is still filling it, every earlier
//! batch has been written and its buffers are free (a batch is smaller than the pool).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::message::frame::{FrameBuffer, FrameKind, FINAL_FRAME_MARKER};
use crate::message::suite::IV_LEN;

/// The sequence number after `sequence`; the format allows at most 2^32 - 2 frames.
pub(crate) fn next_sequence(sequence: u32) -> Result<u32> {
    sequence
        .checked_add(1)
        .filter(|s| *s != FINAL_FRAME_MARKER)
        .ok_or(Error::MalformedBody("more than 2^32-2 frames"))
}

/// The plaintext bytes a batch of frames aims at.
const BATCH_BYTES: usize = 1 << 20;
/// The most frames in a batch (tiny frames would otherwise make huge batches).
const MAX_BATCH_FRAMES: usize = 256;

/// One frame on its way through the pipeline.
pub(crate) struct Job {
    pub(crate) sequence: u32,
    pub(crate) kind: FrameKind,
    /// The IV field read from the frame (decryption only).
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) buf: FrameBuffer,
}

/// Frames in sequence order, and, once a worker has run, the first one that failed and why.
pub(crate) struct Batch {
    index: u64,
    jobs: Vec<Job>,
    failed: Option<(usize, Error)>,
}

/// The reader's end: buffers from the pool, frames into batches, batches into the queue. Dropping it
/// submits the batch being filled, so frames read before a reader error are still processed.
pub(crate) struct Feeder {
    batches: SyncSender<Batch>,
    free: Receiver<FrameBuffer>,
    filling: Vec<Job>,
    next_index: u64,
    batch_len: usize,
    allocated: usize,
    cap: usize,
    frame_length: usize,
    abort: Arc<AtomicBool>,
}

impl Feeder {
    /// A free buffer: a recycled one, a new one while the pool is not full, else waits for one.
    /// `None` once the writer has stopped.
    pub(crate) fn buffer(&mut self) -> Option<FrameBuffer> {
        if let Ok(buf) = self.free.try_recv() {
            return Some(buf);
        }
        if self.allocated < self.cap {
            self.allocated += 1;
            return Some(FrameBuffer::new(self.frame_length));
        }
        self.free.recv().ok()
    }

    /// Adds a frame to the batch being filled, and queues the batch when it is full or the frame is
    /// the final one; false if the pipeline has stopped (the writer failed).
    pub(crate) fn submit(&mut self, job: Job) -> bool {
        let last = job.kind == FrameKind::Final;
        self.filling.push(job);
        if last || self.filling.len() >= self.batch_len {
            self.flush();
        }
        !self.aborted()
    }

    /// Queues the batch being filled, if any.
    fn flush(&mut self) {
        if self.filling.is_empty() || self.aborted() {
            return;
        }
        let batch = Batch {
            index: self.next_index,
            jobs: std::mem::take(&mut self.filling),
            failed: None,
        };
        self.next_index += 1;
        if self.batches.send(batch).is_err() {
            self.abort.store(true, Ordering::Relaxed);
        }
    }

    /// True once the writer has failed: the reader should stop.
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The workers' end.
pub(crate) struct Workers {
    batches: Arc<Mutex<Receiver<Batch>>>,
    done: SyncSender<Batch>,
    threads: usize,
    abort: Arc<AtomicBool>,
}

impl Workers {
    /// Starts the workers in `scope`; each runs `work` on the frames of the batches it takes from
    /// the queue, in order, stopping a batch at its first failure.
    pub(crate) fn spawn<'scope, F>(self, scope: &'scope std::thread::Scope<'scope, '_>, work: F)
    where
        F: Fn(&mut Job) -> Result<()> + Send + Sync + 'scope,
    {
        let work = Arc::new(work);
        for _ in 0..self.threads {
            let batches = Arc::clone(&self.batches);
            let done = self.done.clone();
            let abort = Arc::clone(&self.abort);
            let work = Arc::clone(&work);
            scope.spawn(move || loop {
                let batch = match batches.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(mut batch) = batch else {
                    return; // the reader is done
                };
                if abort.load(Ordering::Relaxed) {
                    continue; // drain without working
                }
                for (i, job) in batch.jobs.iter_mut().enumerate() {
                    if let Err(e) = work(job) {
                        batch.failed = Some((i, e));
                        break;
                    }
                }
                if done.send(batch).is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
            });
        }
    }
}

/// The writer's end.
pub(crate) struct Collector {
    done: Receiver<Batch>,
    free: SyncSender<FrameBuffer>,
    abort: Arc<AtomicBool>,
}

impl Collector {
    /// Hands frames to `write` in sequence order as their batches come back, until the workers are
    /// done; returns the first error in sequence order (a worker's or `write`'s), after writing every
    /// frame before it, and then the pipeline stops. Returns how many frames were written.
    pub(crate) fn write_in_order<F>(self, mut write: F) -> Result<u32>
    where
        F: FnMut(&Job) -> Result<()>,
    {
        let mut pending = BTreeMap::new();
        let mut next: u64 = 0;
        let mut written: u32 = 0;
        for batch in self.done.iter() {
            pending.insert(batch.index, batch);
            while let Some(batch) = pending.remove(&next) {
                let good = batch.failed.as_ref().map_or(batch.jobs.len(), |(i, _)| *i);
                let mut outcome = Ok(());
                for job in batch.jobs.into_iter().take(good) {
                    if let Err(e) = write(&job) {
                        outcome = Err(e);
                        break;
                    }
                    let _ = self.free.try_send(job.buf);
                    written += 1;
                }
                if let Some((_, e)) = batch.failed {
                    outcome = outcome.and(Err(e));
                }
                if let Err(e) = outcome {
                    // Stop the reader and let the workers drain; dropping `done` unblocks them.
                    self.abort.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                next += 1;
            }
        }
        Ok(written)
    }
}

/// A pipeline for `threads` workers over frames of up to `frame_length` bytes.
pub(crate) fn pipeline(threads: usize, frame_length: usize) -> (Feeder, Workers, Collector) {
    let threads = threads.max(1);
    let batch_len = (BATCH_BYTES / frame_length.max(1)).clamp(1, MAX_BATCH_FRAMES);
    let batches = 4 * threads + 2;
    let cap = batches * batch_len;
    let (batch_tx, batch_rx) = sync_channel(batches);
    let (done_tx, done_rx) = sync_channel(batches);
    let (free_tx, free_rx) = sync_channel(cap);
    let abort = Arc::new(AtomicBool::new(false));
    (
        Feeder {
            batches: batch_tx,
            free: free_rx,
            filling: Vec::new(),
            next_index: 0,
            batch_len,
            allocated: 0,
            cap,
            frame_length,
            abort: Arc::clone(&abort),
        },
        Workers {
            batches: Arc::new(Mutex::new(batch_rx)),
            done: done_tx,
            threads,
            abort: Arc::clone(&abort),
        },
        Collector {
            done: done_rx,
            free: free_tx,
            abort,
        },
    )
}
