//! Framed objects, the download half: a whole object streamed through the decryptor, or a byte
//! range read frame by frame with ranged GETs (see the [parent module](super) for the guarantees).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Buf;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::data_key::Keyring;
use crate::error::{Error, Result};
use crate::esdk::message::frame::{
    final_frame_len, regular_frame_len, BodyLayout, FrameKind, FINAL_FRAME_MARKER,
};
use crate::esdk::message::header::{ContentType, Header, HeaderLimits};
use crate::esdk::message::reader::Input;
use crate::esdk::message::suite::{IV_LEN, TAG_LEN};
use crate::esdk::stream::Decryptor;
use crate::esdk::DEFAULT_MAX_ENCRYPTED_DATA_KEYS;
use crate::range::ByteRange;
use crate::s3::sse::apply_sse_c;
use crate::s3::{get_object_with, lower_case, s3_error, Object, SseCustomerKey};

use super::{GetOptions, GetSummary};

/// The first ranged GET of a ranged read asks for this many bytes, enough for any usual header.
const HEADER_GUESS: u64 = 16 * 1024;
/// Headers longer than this are refused on ranged reads.
const MAX_HEADER: u64 = 1 << 20;

/// Decrypts the framed object (or any AWS Encryption SDK message stored as an object) at
/// `s3://bucket/key` to `output`: all of it, or the byte range of `options`. See the
/// [module documentation](super) for what `output` may hold after an error.
pub async fn get_framed_object<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    match options.range {
        Some(range) => get_range(client, bucket, key, keyring, options, range, output).await,
        None => get_whole(client, bucket, key, keyring, options, output).await,
    }
}

fn no_such_key(bucket: &str, key: &str) -> Error {
    Error::S3 {
        operation: "GetObject",
        message: format!("NoSuchKey: no such object (s3://{bucket}/{key})"),
    }
}

/// Parses a header from the start of `bytes`: `Ok(None)` if more bytes are needed.
fn parse_header(bytes: &[u8]) -> Result<Option<Header>> {
    let mut rest = bytes;
    let limits = HeaderLimits {
        max_encrypted_data_keys: DEFAULT_MAX_ENCRYPTED_DATA_KEYS,
        allow_non_committing: true,
    };
    match Header::read(&mut Input::new(&mut rest), limits) {
        Ok(header) => Ok(Some(header)),
        Err(Error::Truncated(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn get_whole<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    mut output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    let object = get_object_with(client, bucket, key, options.sse_c.as_ref())
        .await?
        .ok_or_else(|| no_such_key(bucket, key))?;
    let metadata = object.metadata.clone();
    // Buffer the header, so that reading it below never blocks on the network.
    let mut head = Vec::new();
    let mut body = Some(object);
    while let Some(object) = body.as_mut() {
        if parse_header(&head)?.is_some() {
            break;
        }
        match object.next_chunk().await? {
            Some(chunk) => head.extend_from_slice(&chunk),
            // The decryptor reports the truncated header.
            None => body = None,
        }
        if head.len() as u64 > MAX_HEADER + (1 << 20) {
            return Err(Error::MalformedHeader("header longer than 1 MiB"));
        }
    }
    let reader = ObjectReader {
        buffered: bytes::Bytes::from(head),
        object: body,
        handle: tokio::runtime::Handle::current(),
    };
    let decryptor = Decryptor::new(keyring)
        .required_context(options.required_context.clone())
        .max_buffered_content(options.max_buffered_content)
        .memory_budget(options.memory_budget)
        .begin(reader)
        .await?;
    let threads = options.threads;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let decrypting = tokio::task::spawn_blocking(move || {
        // Every decryption path flushes its output once, at the end, after the final frame.
        let writer = ChannelWriter {
            tx,
            pending: Vec::with_capacity(CHANNEL_CHUNK),
        };
        decryptor.decrypt_to_parallel(writer, threads)
    });
    let mut written = 0u64;
    let mut write_error = None;
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = output.write_all(&chunk).await {
            write_error = Some(e);
            break;
        }
        written += chunk.len() as u64;
    }
    drop(rx);
    let decrypted = decrypting
        .await
        .map_err(|e| Error::InvalidConfiguration(format!("the decryption task failed: {e}")))?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    let header = decrypted?;
    output.flush().await?;
    Ok(GetSummary {
        header,
        written: 0..written,
        plaintext_len: written,
        metadata,
    })
}

/// The object body as a blocking reader (for the decryptor, on a blocking thread): bytes already
/// received (the rest of the last chunk, not copied), then the rest of the body (`None`: it has
/// ended), which it waits for on `handle`.
struct ObjectReader {
    buffered: bytes::Bytes,
    object: Option<Object>,
    handle: tokio::runtime::Handle,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.buffered.is_empty() {
            let Some(object) = self.object.as_mut() else {
                return Ok(0);
            };
            match self.handle.block_on(object.next_chunk()) {
                Ok(Some(chunk)) => self.buffered = chunk,
                Ok(None) => self.object = None,
                Err(e) => return Err(std::io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.buffered.len());
        buf[..n].copy_from_slice(&self.buffered[..n]);
        self.buffered.advance(n);
        Ok(n)
    }
}

/// Plaintext the decryptor hands to the async writer at a time.
const CHANNEL_CHUNK: usize = 1 << 20;

/// Plaintext from the blocking decryptor to the async writer, gathered into chunks of
/// [`CHANNEL_CHUNK`] (one copy; each chunk is sent, not copied again).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    pending: Vec<u8>,
}

impl ChannelWriter {
    fn send_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(CHANNEL_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "output closed"))
    }
}

impl Write for ChannelWriter {
    /// Takes what fits in the chunk (never growing it: `write_all` comes back for the rest) and
    /// sends the chunk once full.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(CHANNEL_CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHANNEL_CHUNK {
            self.send_pending()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send_pending()
    }
}

/// The whole of a (short) response body.
async fn collect(body: ByteStream) -> Result<Vec<u8>> {
    Ok(body
        .collect()
        .await
        .map_err(|e| Error::S3 {
            operation: "GetObject",
            message: format!("reading the body failed: {e}"),
        })?
        .to_vec())
}

/// A ranged GetObject of bytes `range` (half-open): the body, the object's length and metadata.
async fn get_bytes(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    sse_c: Option<&SseCustomerKey>,
    range: Range<u64>,
) -> Result<(ByteStream, u64, BTreeMap<String, String>)> {
    let request = client.get_object().bucket(bucket).key(key).range(format!(
        "bytes={}-{}",
        range.start,
        range.end - 1
    ));
    let out = match apply_sse_c!(request, sse_c).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
            return Err(no_such_key(bucket, key))
        }
        Err(e) => return Err(s3_error("GetObject", bucket, key, e)),
    };
    let total = out
        .content_range()
        .and_then(|r| r.rsplit_once('/'))
        .and_then(|(_, total)| total.parse::<u64>().ok())
        .ok_or_else(|| Error::S3 {
            operation: "GetObject",
            message: format!("no object length in the Content-Range answer (s3://{bucket}/{key})"),
        })?;
    let expected = range.end.min(total).saturating_sub(range.start);
    if out.content_length() != Some(expected as i64) {
        return Err(Error::S3 {
            operation: "GetObject",
            message: format!(
                "asked for {expected} bytes of s3://{bucket}/{key}, the store announced {:?}",
                out.content_length()
            ),
        });
    }
    let metadata = lower_case(out.metadata());
    Ok((out.body, total, metadata))
}

/// Reads exactly `len` bytes of a body into `buf` (cleared first), growing it only as the bytes
/// arrive: by doubling from 64 KiB, never past `len` (the store's answer, not the header, decides
/// how much is held).
async fn fill(
    body: &mut ByteStream,
    carry: &mut bytes::Bytes,
    buf: &mut Vec<u8>,
    len: u64,
) -> Result<()> {
    let len = usize::try_from(len).map_err(|_| Error::MalformedBody("a frame beyond memory"))?;
    buf.clear();
    let mut filled = 0;
    while filled < len {
        if filled == buf.len() {
            let next = filled.saturating_mul(2).max(1 << 16).min(len);
            buf.reserve_exact(next - filled);
            buf.resize(next, 0);
        }
        if carry.is_empty() {
            *carry = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    return Err(Error::S3 {
                        operation: "GetObject",
                        message: format!("reading the body failed: {e}"),
                    })
                }
                None => return Err(Error::Truncated("the object ends inside a frame")),
            };
        }
        let n = carry.len().min(buf.len() - filled);
        buf[filled..filled + n].copy_from_slice(&carry[..n]);
        carry.advance(n);
        filled += n;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn get_range<W>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    keyring: &dyn Keyring,
    options: &GetOptions,
    range: ByteRange,
    mut output: W,
) -> Result<GetSummary>
where
    W: AsyncWrite + Unpin + Send,
{
    let sse_c = options.sse_c.as_ref();
    // 1. The header (one request, more only for an unusually long header).
    let (body, object_len, metadata) =
        get_bytes(client, bucket, key, sse_c, 0..HEADER_GUESS).await?;
    let mut head = collect(body).await?;
    let header = loop {
        if let Some(header) = parse_header(&head)? {
            break header;
        }
        let have = head.len() as u64;
        if have >= object_len {
            return Err(Error::Truncated("inside the header"));
        }
        if have >= MAX_HEADER {
            return Err(Error::MalformedHeader("header longer than 1 MiB"));
        }
        let (more, _, _) =
            get_bytes(client, bucket, key, sse_c, have..(2 * have).min(object_len)).await?;
        head.extend_from_slice(&collect(more).await?);
    };
    let body_start = header.to_bytes().len() as u64;
    let decryptor = Decryptor::new(keyring)
        .required_context(options.required_context.clone())
        .begin(&head[..body_start as usize])
        .await?;
    // The frame length is the object's word: capped before any buffer is sized by it.
    let fl = decryptor.header().frame_length;
    if u64::from(fl) > options.max_buffered_content {
        return Err(Error::ContentTooLarge {
            len: u64::from(fl),
            max: options.max_buffered_content,
        });
    }
    let header = decryptor.header().clone();
    if header.suite.signature().is_some() {
        return Err(Error::RangeOfSignedMessage);
    }
    if header.content_type != ContentType::Framed {
        return Err(Error::InvalidConfiguration(
            "a byte range of a non-framed message: download it whole".into(),
        ));
    }
    let frame_key = decryptor.frame_key();

    // 2. The geometry: k regular frames and a final frame of f bytes fill the body exactly.
    let stride = regular_frame_len(fl);
    let layout = object_len
        .checked_sub(body_start)
        .and_then(|body| BodyLayout::of(body, fl))
        .ok_or(Error::Truncated("the message ends before its final frame"))?;
    let (regular_frames, final_len) = (layout.regular_frames, layout.final_len);
    let final_sequence = layout.final_sequence();
    let total = layout.plaintext_len(fl);

    // 3. The final frame, first: it authenticates the plaintext length.
    let final_start = body_start + regular_frames * stride;
    let final_bytes = final_frame_len(final_len as u32);
    let mut final_frame = Vec::new();
    if final_start + final_bytes <= head.len() as u64 {
        final_frame
            .extend_from_slice(&head[final_start as usize..(final_start + final_bytes) as usize]);
    } else {
        let (mut b, _, _) = get_bytes(
            client,
            bucket,
            key,
            sse_c,
            final_start..final_start + final_bytes,
        )
        .await?;
        fill(
            &mut b,
            &mut bytes::Bytes::new(),
            &mut final_frame,
            final_bytes,
        )
        .await?;
    }
    let final_plaintext = open_final(frame_key, final_sequence, final_len, &mut final_frame)?;

    // 4. The frames the range touches, in one request, each verified before it is written.
    let r = range.resolve_or_err(total)?;
    let fl64 = u64::from(fl);
    let (first, last) = (r.start / fl64 + 1, (r.end - 1) / fl64 + 1);
    let last_regular = last.min(regular_frames);
    let mut frame = Vec::new();
    if first <= last_regular {
        let from = body_start + (first - 1) * stride;
        let to = body_start + last_regular * stride;
        let (mut b, _, _) = if to <= head.len() as u64 {
            (
                ByteStream::from(head[from as usize..to as usize].to_vec()),
                0,
                BTreeMap::new(),
            )
        } else {
            get_bytes(client, bucket, key, sse_c, from..to).await?
        };
        let mut carry = bytes::Bytes::new();
        for sequence in first..=last_regular {
            fill(&mut b, &mut carry, &mut frame, stride).await?;
            let plaintext = open_regular(frame_key, sequence as u32, &mut frame)?;
            let frame_start = (sequence - 1) * fl64;
            let a = r.start.saturating_sub(frame_start) as usize;
            let z = (r.end - frame_start).min(fl64) as usize;
            output.write_all(&plaintext[a..z]).await?;
        }
    }
    if last > regular_frames {
        let frame_start = regular_frames * fl64;
        let a = r.start.saturating_sub(frame_start) as usize;
        let z = (r.end - frame_start) as usize;
        output.write_all(&final_plaintext[a..z]).await?;
    }
    output.flush().await?;
    Ok(GetSummary {
        header,
        written: r,
        plaintext_len: total,
        metadata,
    })
}

/// Opens regular frame `sequence` laid out in `frame` (`seq ‖ IV ‖ ciphertext ‖ tag`); returns its
/// plaintext.
fn open_regular<'a>(
    frame_key: &crate::FrameKey,
    sequence: u32,
    frame: &'a mut [u8],
) -> Result<&'a [u8]> {
    let (seq, rest) = frame.split_at_mut(4);
    let found = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
    if found == FINAL_FRAME_MARKER {
        return Err(Error::MalformedBody("a final frame before the last frame"));
    }
    if found != sequence {
        return Err(Error::FrameSequence {
            expected: sequence,
            found,
        });
    }
    let (iv, body) = rest.split_at_mut(IV_LEN);
    Ok(frame_key.open_frame(sequence, FrameKind::Regular, iv, body)?)
}

/// Opens the final frame laid out in `frame`, which must be frame `sequence` of `len` bytes.
fn open_final(
    frame_key: &crate::FrameKey,
    sequence: u32,
    len: u64,
    frame: &mut [u8],
) -> Result<Vec<u8>> {
    const NO_FINAL: &str = "the message ends before its final frame";
    let (fields, body) = frame.split_at_mut(4 + 4 + IV_LEN + 4);
    let field =
        |i: usize| u32::from_be_bytes([fields[i], fields[i + 1], fields[i + 2], fields[i + 3]]);
    if field(0) != FINAL_FRAME_MARKER || u64::from(field(4 + 4 + IV_LEN)) != len {
        return Err(Error::Truncated(NO_FINAL));
    }
    if field(4) != sequence {
        return Err(Error::FrameSequence {
            expected: sequence,
            found: field(4),
        });
    }
    if body.len() != len as usize + TAG_LEN {
        return Err(Error::Truncated(NO_FINAL));
    }
    let iv = fields[8..8 + IV_LEN].to_vec();
    Ok(frame_key
        .open_frame(sequence, FrameKind::Final, &iv, body)?
        .to_vec())
}
