//! The encrypt + `Content-MD5` upload pipeline: plaintext in, encrypted parts out, each with the
//! MD5 of its exact bytes, ready for UploadPart.
//!
//! # Layout
//!
//! The output is one AWS Encryption SDK message (unsigned, framed), cut into parts on frame
//! boundaries: every part holds `frames_per_part` whole frames (the first part also the header),
//! and the last part ends with the final frame. Part `k` therefore holds frames
//! `(k-1) × frames_per_part + 1 …` and the plaintext bytes `(k-1) × frames_per_part × frame_length …`,
//! which is all a part needs to be sealed independently of the others. The concatenated parts are
//! byte for byte the message [`MessageEncryptor::encrypt_stream`] would write.
//!
//! # Threads
//!
//! `threads` workers each take a batch of part buffers from the pool, then take the input in turn
//! (reading is sequential) and read up to `batch_parts` parts straight into their frames' places
//! (a vectored read: no copy), release the input, seal the frames in place, hash the batch's parts
//! *together* with multi-buffer MD5 ([`md5_parts`]), and hand each part to the sink. Parts reach
//! the sink in no particular order (each carries its number).
//!
//! # Memory
//!
//! Part buffers are the memory: at most `memory_budget / part_capacity` of them exist, reused as the
//! sink drops the [`PartBody`]s it was given (an upload drops it when the request is done). The
//! batch size is what the budget leaves per thread once the sink's own parts (uploads in flight)
//! are set aside, rounded down to a power of two and at most [`MAX_LANES`]: with 256 MiB, 5 MiB
//! parts, 2 threads and 4 uploads in flight, 16 parts per batch. A small budget degrades
//! gracefully: one part per batch is one single-stream MD5 per thread.
//!
//! [`MessageEncryptor::encrypt_stream`]: crate::MessageEncryptor::encrypt_stream

use std::io::{IoSliceMut, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::esdk::message::frame::{
    final_frame_len, prefix_len, regular_frame_len, FrameKey, FrameKind, FINAL_FRAME_MARKER,
};
use crate::md5::{md5_parts, Md5Digest, MAX_LANES};
use crate::MessageEncryptor;

/// The default memory budget for part buffers: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// How the pipeline runs: threads, part size, memory budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineConfig {
    threads: usize,
    part_size: usize,
    memory_budget: usize,
    sink_parts: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl PipelineConfig {
    /// Two threads, 8 MiB parts, [`DEFAULT_MEMORY_BUDGET`], four parts held by the sink.
    pub fn new() -> Self {
        Self {
            threads: 2,
            part_size: 8 << 20,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            sink_parts: 4,
        }
    }

    /// Worker threads (at least 1).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The least number of bytes in a part (but the last): parts hold as many whole frames as it
    /// takes to reach it. S3 needs at least 5 MiB
    /// ([`MIN_PART_SIZE`](crate::s3::MIN_PART_SIZE)).
    pub fn part_size(mut self, part_size: usize) -> Self {
        self.part_size = part_size.max(1);
        self
    }

    /// The bytes all part buffers together may take (default [`DEFAULT_MEMORY_BUDGET`]).
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// How many parts the sink may hold at once (uploads in flight); they are part of the budget.
    pub fn sink_parts(mut self, parts: usize) -> Self {
        self.sink_parts = parts;
        self
    }

    /// The part size.
    pub fn get_part_size(&self) -> usize {
        self.part_size
    }

    /// What the pipeline will do for a message with this frame length and header length.
    pub fn plan(&self, frame_length: u32, header_len: usize) -> Result<PipelinePlan> {
        let stride = usize::try_from(regular_frame_len(frame_length))
            .map_err(|_| Error::InvalidConfiguration("frame length too large".into()))?;
        let frames = self.part_size.div_ceil(stride).max(1);
        let frames_per_part = u32::try_from(frames)
            .map_err(|_| Error::InvalidConfiguration("part size too large".into()))?;
        // Header, full regular frames, and an empty final frame when the input ends on a part
        // boundary.
        let part_capacity = frames
            .checked_mul(stride)
            .and_then(|b| b.checked_add(header_len + final_frame_len(0) as usize))
            .ok_or_else(|| Error::InvalidConfiguration("part size too large".into()))?;
        let buffers = self.memory_budget / part_capacity;
        if buffers == 0 {
            return Err(Error::InvalidConfiguration(format!(
                "a memory budget of {} bytes cannot hold one part of {part_capacity} bytes",
                self.memory_budget
            )));
        }
        let threads = self.threads.min(buffers);
        let per_thread = (buffers.saturating_sub(self.sink_parts) / threads).clamp(1, MAX_LANES);
        // A power of two: the multi-buffer kernels run 4, 8, 16 or 32 lanes.
        let batch_parts = 1 << per_thread.ilog2();
        Ok(PipelinePlan {
            threads,
            frames_per_part,
            frame_length,
            header_len,
            part_capacity,
            buffers,
            batch_parts,
        })
    }
}

/// What a [`PipelineConfig`] comes to for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelinePlan {
    /// Worker threads.
    pub threads: usize,
    /// Frames in every part but the last.
    pub frames_per_part: u32,
    /// The frame length (plaintext bytes of a regular frame).
    pub frame_length: u32,
    /// The serialized header's length (at the start of part 1).
    pub header_len: usize,
    /// The bytes of one part buffer: the longest part.
    pub part_capacity: usize,
    /// The most part buffers allocated.
    pub buffers: usize,
    /// Parts a worker reads, seals and hashes together (1: single-stream MD5).
    pub batch_parts: usize,
}

impl PipelinePlan {
    /// The most bytes the part buffers take: `buffers × part_capacity`, within the budget.
    pub fn memory(&self) -> usize {
        self.buffers * self.part_capacity
    }

    /// The plaintext bytes of a full part.
    pub fn part_plaintext(&self) -> u64 {
        u64::from(self.frames_per_part) * u64::from(self.frame_length)
    }
}

/// One encrypted part: whole frames (the header first in part 1, the final frame last in the last
/// part) and the MD5 of exactly these bytes.
#[derive(Debug)]
pub struct EncryptedPart {
    /// The part number, from 1.
    pub number: u32,
    /// The bytes to upload.
    pub body: PartBody,
    /// MD5 of `body`, for `Content-MD5`.
    pub md5: Md5Digest,
    /// Whether this is the last part of the message.
    pub last: bool,
    /// The plaintext bytes this part carries.
    pub plaintext_len: u64,
}

/// The bytes of a part, in a pipeline buffer that goes back to the pool when this is dropped.
pub struct PartBody {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<Pool>,
}

impl PartBody {
    /// The part's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The part's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the part is empty (never, for a part of a message).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for PartBody {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::fmt::Debug for PartBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartBody").field("len", &self.len).finish()
    }
}

impl Drop for PartBody {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

/// What a finished pipeline produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipelineSummary {
    /// Parts handed to the sink (numbered 1 to `parts`).
    pub parts: u32,
    /// Plaintext bytes read.
    pub plaintext_len: u64,
    /// Message bytes produced (all parts).
    pub message_len: u64,
    /// The plan the pipeline ran.
    pub plan: PipelinePlan,
    /// The most bytes of part buffers that existed at once (measured: a high-water mark of the
    /// buffers allocated and not yet freed); at most [`PipelinePlan::memory`], so within the
    /// budget.
    pub peak_memory: usize,
}

/// Encrypts `input` as the body of `encryptor`'s message, cut into parts as the module
/// documentation describes, and hands every part to `sink` (from the worker threads, in no
/// particular order). Returns once every part was handed over, or with the first error: of
/// reading, of sealing, or of `sink` (which stops the workers). Signed suites are refused
/// ([`Error::UnsupportedAlgorithmSuite`]): their signature needs the message in order.
pub fn encrypt_parts<R, S>(
    encryptor: MessageEncryptor,
    config: &PipelineConfig,
    input: R,
    sink: S,
) -> Result<PipelineSummary>
where
    R: Read + Send,
    S: Fn(EncryptedPart) -> Result<()> + Sync,
{
    let (header, frame_key) = encryptor.into_unsigned_parts()?;
    let header_bytes = header.to_bytes();
    let plan = config.plan(header.frame_length, header_bytes.len())?;
    run(&plan, &header_bytes, &frame_key, input, sink)
}

/// The pool of part buffers.
struct Pool {
    state: Mutex<PoolState>,
    returned: Condvar,
    /// Held by the one worker gathering a batch, so that two workers never each hold half of what
    /// both need.
    taking: Mutex<()>,
    capacity: usize,
}

struct PoolState {
    free: Vec<Vec<u8>>,
    /// Buffers that exist (allocated, not yet freed).
    allocated: usize,
    /// The most that existed at once.
    peak: usize,
    cap: usize,
    closed: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Pool {
    fn new(cap: usize, capacity: usize) -> Self {
        Self {
            state: Mutex::new(PoolState {
                free: Vec::new(),
                allocated: 0,
                peak: 0,
                cap,
                closed: false,
            }),
            returned: Condvar::new(),
            taking: Mutex::new(()),
            capacity,
        }
    }

    /// `n` buffers: free ones, new ones while fewer than `cap` exist, else waits for returns.
    /// `None` once the pool is closed.
    fn take(&self, n: usize) -> Option<Vec<Vec<u8>>> {
        let _turn = self.taking.lock().ok()?;
        let mut state = self.state.lock().ok()?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if state.closed {
                // The buffers gathered so far are freed with `out`.
                state.allocated = state.allocated.saturating_sub(out.len());
                return None;
            }
            if let Some(buf) = state.free.pop() {
                out.push(buf);
            } else if state.allocated < state.cap {
                state.allocated += 1;
                state.peak = state.peak.max(state.allocated);
                out.push(vec![0u8; self.capacity]);
            } else {
                state = self.returned.wait(state).ok()?;
            }
        }
        Some(out)
    }

    fn give_back(&self, buf: Vec<u8>) {
        if buf.len() != self.capacity {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            if state.closed {
                // Nobody takes buffers any more: free it now.
                state.allocated = state.allocated.saturating_sub(1);
                drop(buf);
            } else {
                state.free.push(buf);
            }
        }
        self.returned.notify_all();
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
            state.allocated = state.allocated.saturating_sub(state.free.len());
            state.free.clear();
        }
        self.returned.notify_all();
    }

    /// The most bytes of buffers that existed at once.
    fn peak_bytes(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.peak * self.capacity)
            .unwrap_or(0)
    }
}

/// The input side, behind the lock.
struct Source<R> {
    input: R,
    next_number: u32,
    /// A byte read past a full part to learn whether the input ended there.
    pending: Option<u8>,
    plaintext_len: u64,
    over: bool,
}

/// A part read into its buffer and not yet sealed.
struct ReadPart {
    number: u32,
    buf: Vec<u8>,
    /// Full regular frames.
    regular: usize,
    /// The final frame's plaintext length, in the last part.
    final_len: Option<usize>,
    plaintext_len: u64,
}

fn run<R, S>(
    plan: &PipelinePlan,
    header_bytes: &[u8],
    frame_key: &FrameKey,
    input: R,
    sink: S,
) -> Result<PipelineSummary>
where
    R: Read + Send,
    S: Fn(EncryptedPart) -> Result<()> + Sync,
{
    let pool = Arc::new(Pool::new(plan.buffers, plan.part_capacity));
    let source = Mutex::new(Source {
        input,
        next_number: 1,
        pending: None,
        plaintext_len: 0,
        over: false,
    });
    let failed = Mutex::new(None::<Error>);
    let abort = AtomicBool::new(false);
    let message_len = std::sync::atomic::AtomicU64::new(0);
    let last_number = std::sync::atomic::AtomicU32::new(0);
    let fail = |e: Error| {
        if let Ok(mut f) = failed.lock() {
            f.get_or_insert(e);
        }
        abort.store(true, Ordering::SeqCst);
        pool.close();
    };
    std::thread::scope(|scope| {
        for _ in 0..plan.threads {
            scope.spawn(|| {
                while !abort.load(Ordering::SeqCst) {
                    let Some(bufs) = pool.take(plan.batch_parts) else {
                        return;
                    };
                    let parts = {
                        let Ok(mut src) = source.lock() else {
                            return fail(Error::InvalidConfiguration("pipeline poisoned".into()));
                        };
                        if src.over {
                            drop(src);
                            for buf in bufs {
                                pool.give_back(buf);
                            }
                            return;
                        }
                        match read_batch(&mut src, plan, header_bytes, bufs, &pool) {
                            Ok(parts) => {
                                if src.over {
                                    // Nothing more to read: wake the workers waiting for buffers.
                                    pool.close();
                                }
                                parts
                            }
                            Err(e) => {
                                src.over = true;
                                return fail(e);
                            }
                        }
                    };
                    match seal_and_hash(plan, frame_key, parts, &pool) {
                        Ok(parts) => {
                            for part in parts {
                                message_len.fetch_add(part.body.len() as u64, Ordering::Relaxed);
                                if part.last {
                                    last_number.store(part.number, Ordering::SeqCst);
                                }
                                if let Err(e) = sink(part) {
                                    return fail(e);
                                }
                            }
                        }
                        Err(e) => return fail(e),
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    let src = source
        .into_inner()
        .map_err(|_| Error::InvalidConfiguration("pipeline poisoned".into()))?;
    let parts = last_number.load(Ordering::SeqCst);
    if !src.over || parts == 0 || parts + 1 != src.next_number {
        return Err(Error::InvalidConfiguration(
            "the pipeline stopped before the last part".into(),
        ));
    }
    Ok(PipelineSummary {
        parts,
        plaintext_len: src.plaintext_len,
        message_len: message_len.load(Ordering::Relaxed),
        plan: *plan,
        peak_memory: pool.peak_bytes(),
    })
}

/// Reads up to `bufs.len()` parts (fewer at the end of the input); unused buffers go back.
fn read_batch<R: Read>(
    src: &mut Source<R>,
    plan: &PipelinePlan,
    header_bytes: &[u8],
    bufs: Vec<Vec<u8>>,
    pool: &Pool,
) -> Result<Vec<ReadPart>> {
    let mut parts = Vec::with_capacity(bufs.len());
    let mut bufs = bufs.into_iter();
    for mut buf in bufs.by_ref() {
        let number = src.next_number;
        let part = read_part(src, plan, header_bytes, number, &mut buf)?;
        src.next_number = number
            .checked_add(1)
            .ok_or_else(|| Error::InvalidConfiguration("too many parts".into()))?;
        let last = part.final_len.is_some();
        parts.push(ReadPart { buf, ..part });
        if last {
            src.over = true;
            break;
        }
    }
    for buf in bufs {
        pool.give_back(buf);
    }
    Ok(parts)
}

/// Reads part `number`'s plaintext into its frames' places in `buf` (and the header, in part 1).
fn read_part<R: Read>(
    src: &mut Source<R>,
    plan: &PipelinePlan,
    header_bytes: &[u8],
    number: u32,
    buf: &mut [u8],
) -> Result<ReadPart> {
    let fl = plan.frame_length as usize;
    let n = plan.frames_per_part as usize;
    let stride = regular_frame_len(plan.frame_length) as usize;
    let regular_prefix = prefix_len(FrameKind::Regular)?;
    let start = if number == 1 {
        buf[..header_bytes.len()].copy_from_slice(header_bytes);
        header_bytes.len()
    } else {
        0
    };
    let capacity = n * fl;
    let mut got = 0usize;
    {
        let area = &mut buf[start..start + n * stride];
        let mut slots: Vec<IoSliceMut<'_>> = area
            .chunks_mut(stride)
            .map(|frame| IoSliceMut::new(&mut frame[regular_prefix..regular_prefix + fl]))
            .collect();
        let mut rest: &mut [IoSliceMut<'_>] = &mut slots;
        if let Some(byte) = src.pending.take() {
            if let Some(first) = rest.first_mut().and_then(|s| s.first_mut()) {
                *first = byte;
                got = 1;
                IoSliceMut::advance_slices(&mut rest, 1);
            }
        }
        while !rest.is_empty() {
            match src.input.read_vectored(rest) {
                Ok(0) => break,
                Ok(k) => {
                    got += k;
                    IoSliceMut::advance_slices(&mut rest, k);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let last = if got == capacity {
        // Full: the part is the last one only if the input ends right here.
        let mut one = [0u8; 1];
        loop {
            match src.input.read(&mut one) {
                Ok(0) => break true,
                Ok(_) => {
                    src.pending = Some(one[0]);
                    break false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        true
    };
    let regular = got / fl;
    let final_len = last.then_some(got % fl);
    if let Some(len) = final_len {
        // The final frame's prefix is longer: move its plaintext to where it belongs.
        let at = start + regular * stride;
        let shift = prefix_len(FrameKind::Final)?;
        buf.copy_within(at + regular_prefix..at + regular_prefix + len, at + shift);
    }
    // Sequence numbers must stay below the final-frame marker.
    let frames = regular as u64 + u64::from(last);
    let first = u64::from(number - 1) * u64::from(plan.frames_per_part) + 1;
    if first + frames > u64::from(FINAL_FRAME_MARKER) {
        return Err(Error::InvalidConfiguration(
            "the input needs more than 2^32-2 frames: choose a larger frame length".into(),
        ));
    }
    src.plaintext_len += got as u64;
    Ok(ReadPart {
        number,
        buf: Vec::new(),
        regular,
        final_len,
        plaintext_len: got as u64,
    })
}

/// Seals every frame of the parts in place and hashes the parts together.
fn seal_and_hash(
    plan: &PipelinePlan,
    frame_key: &FrameKey,
    parts: Vec<ReadPart>,
    pool: &Arc<Pool>,
) -> Result<Vec<EncryptedPart>> {
    let stride = regular_frame_len(plan.frame_length) as usize;
    let mut lens = Vec::with_capacity(parts.len());
    let mut parts = parts;
    for part in &mut parts {
        let start = if part.number == 1 { plan.header_len } else { 0 };
        let first = (part.number - 1) * plan.frames_per_part + 1;
        for j in 0..part.regular {
            let at = start + j * stride;
            frame_key.seal_laid_out(
                first + j as u32,
                FrameKind::Regular,
                &mut part.buf[at..at + stride],
            )?;
        }
        let mut end = start + part.regular * stride;
        if let Some(len) = part.final_len {
            let frame_len = final_frame_len(len as u32) as usize;
            frame_key.seal_laid_out(
                first + part.regular as u32,
                FrameKind::Final,
                &mut part.buf[end..end + frame_len],
            )?;
            end += frame_len;
        }
        lens.push(end);
    }
    let digests = {
        let bodies: Vec<&[u8]> = parts
            .iter()
            .zip(&lens)
            .map(|(p, len)| &p.buf[..*len])
            .collect();
        md5_parts(&bodies)
    };
    Ok(parts
        .into_iter()
        .zip(lens)
        .zip(digests)
        .map(|((part, len), md5)| EncryptedPart {
            number: part.number,
            last: part.final_len.is_some(),
            plaintext_len: part.plaintext_len,
            md5,
            body: PartBody {
                buf: part.buf,
                len,
                pool: pool.clone(),
            },
        })
        .collect())
}
