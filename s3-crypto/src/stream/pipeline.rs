//! The parallel frame pipeline shared by encryption and decryption: one thread reads frames in
//! order, `threads` workers seal or open them, and the caller's thread writes them in order.
//!
//! Memory is a fixed pool of [`FrameBuffer`]s (`4 × threads + 2`): the reader blocks for a free
//! buffer once they are all in flight, and the writer returns each one after writing it. The pool
//! cannot deadlock: frames are submitted in sequence order, so the frame the writer waits for is
//! always submitted (queued or in a worker) or, if the reader holds it, every earlier frame has been
//! written and its buffer is free.

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

/// One frame on its way through the pipeline.
pub(crate) struct Job {
    pub(crate) sequence: u32,
    pub(crate) kind: FrameKind,
    /// The IV field read from the frame (decryption only).
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) buf: FrameBuffer,
}

/// The reader's end: buffers from the pool, frames into the queue.
pub(crate) struct Feeder {
    jobs: SyncSender<Job>,
    free: Receiver<FrameBuffer>,
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

    /// Queues a frame; false if the pipeline has stopped (the writer failed).
    pub(crate) fn submit(&self, job: Job) -> bool {
        !self.aborted() && self.jobs.send(job).is_ok()
    }

    /// True once the writer has failed: the reader should stop.
    pub(crate) fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }
}

/// The workers' end.
pub(crate) struct Workers {
    jobs: Arc<Mutex<Receiver<Job>>>,
    done: SyncSender<(u32, Result<Job>)>,
    threads: usize,
    abort: Arc<AtomicBool>,
}

impl Workers {
    /// Starts the workers in `scope`; each runs `work` on the frames it takes from the queue.
    pub(crate) fn spawn<'scope, F>(self, scope: &'scope std::thread::Scope<'scope, '_>, work: F)
    where
        F: Fn(&mut Job) -> Result<()> + Send + Sync + 'scope,
    {
        let work = Arc::new(work);
        for _ in 0..self.threads {
            let jobs = Arc::clone(&self.jobs);
            let done = self.done.clone();
            let abort = Arc::clone(&self.abort);
            let work = Arc::clone(&work);
            scope.spawn(move || loop {
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(mut job) = job else {
                    return; // the reader is done
                };
                if abort.load(Ordering::Relaxed) {
                    continue; // drain without working
                }
                let sequence = job.sequence;
                let result = work(&mut job).map(|()| job);
                if done.send((sequence, result)).is_err() {
                    abort.store(true, Ordering::Relaxed);
                }
            });
        }
    }
}

/// The writer's end.
pub(crate) struct Collector {
    done: Receiver<(u32, Result<Job>)>,
    free: SyncSender<FrameBuffer>,
    abort: Arc<AtomicBool>,
}

impl Collector {
    /// Hands frames to `write` in sequence order as they come back, until the workers are done;
    /// returns the first error in sequence order (a worker's or `write`'s), after which the pipeline
    /// stops. Returns how many frames were written.
    pub(crate) fn write_in_order<F>(self, mut write: F) -> Result<u32>
    where
        F: FnMut(&Job) -> Result<()>,
    {
        let mut pending = BTreeMap::new();
        let mut next: u32 = 1;
        let mut written: u32 = 0;
        for (sequence, result) in self.done.iter() {
            pending.insert(sequence, result);
            while let Some(result) = pending.remove(&next) {
                let outcome = result.and_then(|job| {
                    write(&job)?;
                    let _ = self.free.try_send(job.buf);
                    Ok(())
                });
                if let Err(e) = outcome {
                    // Stop the reader and let the workers drain; dropping `done` unblocks them.
                    self.abort.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                written += 1;
                next = next.wrapping_add(1);
            }
        }
        Ok(written)
    }
}

/// A pipeline for `threads` workers over frames of up to `frame_length` bytes.
pub(crate) fn pipeline(threads: usize, frame_length: usize) -> (Feeder, Workers, Collector) {
    let threads = threads.max(1);
    let cap = 4 * threads + 2;
    let (job_tx, job_rx) = sync_channel(cap);
    let (done_tx, done_rx) = sync_channel(cap);
    let (free_tx, free_rx) = sync_channel(cap);
    let abort = Arc::new(AtomicBool::new(false));
    (
        Feeder {
            jobs: job_tx,
            free: free_rx,
            allocated: 0,
            cap,
            frame_length,
            abort: Arc::clone(&abort),
        },
        Workers {
            jobs: Arc::new(Mutex::new(job_rx)),
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
