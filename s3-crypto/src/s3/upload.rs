//! Streaming uploads: one part in memory at a time on the reading side, parts in flight
//! concurrently, one PutObject when the input fits in the first part.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::JoinSet;

use super::{
    content_md5, put_object_with, MultipartUpload, PutOptions, MAX_PARTS, MAX_PART_SIZE,
    MIN_PART_SIZE,
};
use crate::error::{Error, Result};

/// Parts per size step when the input length is unknown: after every 1,000 parts the part size
/// doubles, so 10,000 parts reach S3's 5 TiB object limit from a 5 MiB start.
const PARTS_PER_STEP: i32 = 1_000;

/// The largest object S3 stores.
const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// The part size for an input of `expected_size` bytes (unknown: `None`): `requested`, grown to
/// a whole MiB so that at most [`MAX_PARTS`] parts are needed. Errors if `requested` is outside
/// [`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`] or the input is too large for S3.
pub fn part_size_for(requested: usize, expected_size: Option<u64>) -> Result<usize> {
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&requested) {
        return Err(Error::InvalidConfiguration(format!(
            "a part size of {requested} bytes; S3 takes {MIN_PART_SIZE} to {MAX_PART_SIZE}"
        )));
    }
    let Some(size) = expected_size else {
        return Ok(requested);
    };
    const MIB: u64 = 1 << 20;
    if size > MAX_OBJECT_SIZE {
        return Err(Error::InvalidConfiguration(format!(
            "{size} bytes is more than S3 takes in one object ({MAX_OBJECT_SIZE} bytes)"
        )));
    }
    let needed = size.div_ceil(MAX_PARTS as u64).div_ceil(MIB) * MIB;
    let part_size = (requested as u64).max(needed);
    usize::try_from(part_size).map_err(|_| {
        Error::InvalidConfiguration(format!(
            "a part size of {part_size} bytes is too large here"
        ))
    })
}

/// Uploads `input` (read to its end) to `bucket`/`key` with `metadata`: one PutObject if it ends
/// within the first part, else a multipart upload (parts concurrently, each with its
/// `Content-MD5`, retried per [`PutOptions::retry`]; aborted on any failure or cancellation).
/// Returns the number of bytes read.
pub async fn put_stream<R: AsyncRead + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    input: &mut R,
    metadata: &BTreeMap<String, String>,
    options: &PutOptions,
) -> Result<u64> {
    upload_stream(
        client,
        bucket,
        key,
        input,
        metadata,
        options,
        false,
        None::<fn(&[u8], bool, &mut Vec<u8>) -> Result<()>>,
        None::<std::future::Ready<Result<()>>>,
        None::<std::future::Ready<Result<Undone>>>,
    )
    .await
}

/// The machinery of every streaming upload: `transform(part, last, body)` turns each part of the
/// input into the bytes sent (encryption), in order; without one, each part is sent as read (its
/// buffer itself, not a copy). `force_multipart`: even a short input goes up as a (one-part)
/// multipart upload. `before_commit` runs once every byte is in the store and just before the
/// object appears (the PutObject, or the CompleteMultipartUpload): an upload that fails or is
/// cancelled before then has not run it (an instruction file is written there, so that a failed
/// upload over an object leaves that object's instruction file, and the object, as they were).
/// `undo_commit` runs when `before_commit` ran and the PutObject or CompleteMultipartUpload then
/// answered an error: it finds whether the object appeared all the same (a 5xx after the store
/// acted, an answer lost on the way back) and, only if it did not, puts back what `before_commit`
/// replaced. When it did, the upload went through and is answered as such.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn upload_stream<R, T, C, U>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    input: &mut R,
    metadata: &BTreeMap<String, String>,
    options: &PutOptions,
    force_multipart: bool,
    mut transform: Option<T>,
    before_commit: Option<C>,
    undo_commit: Option<U>,
) -> Result<u64>
where
    R: AsyncRead + Unpin,
    T: FnMut(&[u8], bool, &mut Vec<u8>) -> Result<()>,
    C: std::future::Future<Output = Result<()>>,
    U: std::future::Future<Output = Result<Undone>>,
{
    let mut before_commit = before_commit.map(Box::pin);
    let mut undo_commit = undo_commit;
    // Set before the commit is awaited: an undo after a commit that did not land puts back what
    // is already there, which is harmless; one missed after a commit that did is not.
    let mut commit_ran = false;
    let part_size = part_size_for(options.part_size, options.expected_size)?;
    let cancel = options.cancel.clone().unwrap_or_default();
    // Up to the first part: nothing exists in the store yet, so cancelling just stops (a
    // PutObject dropped in flight stores nothing).
    let first_phase = async {
        let mut first = Vec::with_capacity(part_size);
        read_part(input, &mut first, part_size).await?;
        let mut peek = [0u8; 1];
        let ends_here = first.len() < part_size || input.read(&mut peek).await? == 0;
        if ends_here && !force_multipart {
            let n = first.len() as u64;
            let body = match transform.as_mut() {
                Some(transform) => {
                    let mut body = Vec::with_capacity(first.len() + 16);
                    transform(&first, true, &mut body)?;
                    body
                }
                None => first,
            };
            if let Some(commit) = before_commit.take() {
                commit_ran = true;
                commit.await?;
            }
            match put_object_with(client, bucket, key, body, metadata, options).await {
                Ok(_) => return Ok(Err(n)),
                // The object may be there all the same: then the upload went through.
                Err(e) if commit_ran => {
                    undone(e, undo_commit.take()).await?;
                    return Ok(Err(n));
                }
                Err(e) => return Err(e),
            }
        }
        Ok::<Result<(Vec<u8>, Option<u8>), u64>, Error>(Ok((
            first,
            (!ends_here).then_some(peek[0]),
        )))
    };
    // A cancellation is not undone: a PutObject dropped in flight may have stored the object.
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => return Err(Error::Cancelled),
        r = first_phase => r,
    };
    let (first, carry) = match outcome {
        Ok(Err(done)) => return Ok(done),
        Ok(Ok(multipart)) => multipart,
        Err(e) if commit_ran => {
            return Err(match undone(e, undo_commit.take()).await {
                // Only a PutObject error can find the object written, and it returns above.
                Ok(()) => Error::S3 {
                    operation: "PutObject",
                    message: "the upload's outcome is unknown".into(),
                },
                Err(e) => e,
            });
        }
        Err(e) => return Err(e),
    };
    let mut upload = MultipartUpload::create_with(client, bucket, key, metadata, options).await?;
    let mut in_flight = JoinSet::new();
    let result = tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Error::Cancelled),
        r = upload_parts(
            &mut upload,
            &mut in_flight,
            input,
            first,
            carry,
            part_size,
            options,
            &mut transform,
        ) => r,
    };
    let result = match result {
        // Completing is one request; a cancellation now does not interrupt it.
        Ok(total) => {
            let committed = match before_commit.take() {
                Some(commit) => {
                    commit_ran = true;
                    commit.await
                }
                None => Ok(()),
            };
            let completed = match committed {
                Ok(()) => upload.complete_parts().await,
                Err(e) => Err(e),
            };
            match completed {
                Ok(()) => return Ok(total),
                Err(e) if commit_ran => match undone(e, undo_commit.take()).await {
                    // Completed after all (its answer lost): nothing to abort.
                    Ok(()) => return Ok(total),
                    Err(e) => e,
                },
                Err(e) => e,
            }
        }
        Err(e) => e,
    };
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
    Err(match upload.abort().await {
        Ok(()) => result,
        // Completed or aborted already (a completion whose answers were lost): no parts remain.
        Err(Error::S3 { message, .. }) if message.starts_with("NoSuchUpload") => result,
        Err(abort) => Error::S3 {
            operation: "AbortMultipartUpload",
            message: format!(
                "{result}; aborting the upload failed too ({abort}): parts may remain until the \
                 bucket's lifecycle rule removes them"
            ),
        },
    })
}

/// What undoing a commit found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Undone {
    /// The object did not appear: what the commit replaced is back.
    PutBack,
    /// Whether the object appeared could not be told (why): what the commit replaced is back.
    PutBackUntold(String),
    /// The object appeared all the same (only the answer was an error): nothing was undone.
    ObjectWritten,
}

/// After a commit answered `error`: runs `undo` (if any). `Ok(())` when the object was written all
/// the same (the upload went through); else the error, with a failed undo said in it.
async fn undone<U: std::future::Future<Output = Result<Undone>>>(
    error: Error,
    undo: Option<U>,
) -> std::result::Result<(), Error> {
    Err(match undo {
        None => error,
        Some(undo) => match undo.await {
            // The object changed: the commit went through after all, unless the store's answer
            // said it stored other bytes than were sent (then the change is that damage).
            Ok(Undone::ObjectWritten) if !matches!(error, Error::StoredDigestMismatch { .. }) => {
                return Ok(())
            }
            Ok(Undone::ObjectWritten) => also_said(
                error,
                "the object was replaced all the same, by what the store stored",
            ),
            Ok(Undone::PutBack) => error,
            Ok(Undone::PutBackUntold(why)) => also_said(
                error,
                &format!(
                    "whether the object was replaced all the same could not be told ({why}), and \
                     the instruction file the upload had replaced was put back: if the object was \
                     replaced, it cannot be read until it is uploaded again"
                ),
            ),
            Err(also) => also_said(
                error,
                &format!("putting back what the upload had replaced failed too ({also})"),
            ),
        },
    })
}

/// The commit's `error` with what undoing it found: still named by the request that failed first
/// (PutObject or CompleteMultipartUpload).
fn also_said(error: Error, also: &str) -> Error {
    let (operation, first) = match error {
        Error::S3 { operation, message } => (operation, message),
        other => ("PutObject", other.to_string()),
    };
    Error::S3 {
        operation,
        message: format!("{first}; {also}"),
    }
}

async fn read_part<R: AsyncRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    part_size: usize,
) -> Result<()> {
    let want = part_size.saturating_sub(buf.len()) as u64;
    (&mut *input).take(want).read_to_end(buf).await?;
    Ok(())
}

type PartResult = Result<aws_sdk_s3::types::CompletedPart>;

#[allow(clippy::too_many_arguments)]
async fn upload_parts<R, T>(
    upload: &mut MultipartUpload,
    in_flight: &mut JoinSet<PartResult>,
    input: &mut R,
    mut part: Vec<u8>,
    mut carry: Option<u8>,
    base_part_size: usize,
    options: &PutOptions,
    transform: &mut Option<T>,
) -> Result<u64>
where
    R: AsyncRead + Unpin,
    T: FnMut(&[u8], bool, &mut Vec<u8>) -> Result<()>,
{
    let concurrency = options.concurrency.max(1);
    let grow = options.expected_size.is_none();
    let bodies = BodyPool::default();
    let mut total = 0u64;
    let mut number = 1i32;
    loop {
        // The first part is already read; every later one waits for a free slot first: in
        // flight (at most concurrency − 1) + this part's plaintext + its body stay within
        // part_size × (concurrency + 1).
        let last = if number == 1 {
            carry.is_none()
        } else {
            while in_flight.len() >= concurrency {
                collect_one(upload, in_flight).await?;
            }
            let size = if grow {
                let step = u32::try_from((number - 1) / PARTS_PER_STEP).unwrap_or(u32::MAX);
                base_part_size
                    .checked_shl(step)
                    .unwrap_or(MAX_PART_SIZE)
                    .min(MAX_PART_SIZE)
            } else {
                base_part_size
            };
            part.clear();
            part.extend(carry.take());
            read_part(input, &mut part, size).await?;
            let mut peek = [0u8; 1];
            let last = part.len() < size || input.read(&mut peek).await? == 0;
            if !last {
                carry = Some(peek[0]);
            }
            last
        };
        total += part.len() as u64;
        let body = match transform.as_mut() {
            Some(transform) => {
                let mut body = bodies.take(part.len() + 16);
                transform(&part, last, &mut body)?;
                body
            }
            // The part is the body: send its buffer and read the next part into another.
            None => std::mem::replace(&mut part, bodies.take(base_part_size)),
        };
        let md5 = content_md5(&body);
        let body = bodies.bytes(body);
        let next = upload.next_part()?;
        in_flight.spawn(async move { next.send_hashed(body, &md5).await });
        number += 1;
        if last {
            break;
        }
        if number == 2 {
            // The first part's buffer was sized for it; keep it for the next ones.
            part.reserve(base_part_size.saturating_sub(part.capacity()));
        }
    }
    while !in_flight.is_empty() {
        collect_one(upload, in_flight).await?;
    }
    Ok(total)
}

/// The body buffers of the parts in flight, reused: a part's buffer comes back when its request is
/// done, so an upload allocates about `concurrency + 1` of them, not one per part (and the
/// allocator is left with no freed part-sized blocks that it might keep from the system).
#[derive(Clone, Debug, Default)]
struct BodyPool(Arc<Mutex<Vec<Vec<u8>>>>);

impl BodyPool {
    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut body = self
            .0
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default();
        body.clear();
        body.reserve(capacity);
        body
    }

    /// `body` as the bytes of a request; its buffer returns here when they are dropped.
    fn bytes(&self, body: Vec<u8>) -> bytes::Bytes {
        bytes::Bytes::from_owner(PooledBody {
            body,
            pool: self.clone(),
        })
    }
}

struct PooledBody {
    body: Vec<u8>,
    pool: BodyPool,
}

impl AsRef<[u8]> for PooledBody {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.0.lock() {
            free.push(std::mem::take(&mut self.body));
        }
    }
}

async fn collect_one(
    upload: &mut MultipartUpload,
    in_flight: &mut JoinSet<PartResult>,
) -> Result<()> {
    match in_flight.join_next().await {
        Some(Ok(part)) => {
            upload.part_done(part?);
            Ok(())
        }
        Some(Err(e)) => Err(Error::S3 {
            operation: "UploadPart",
            message: format!("the upload task failed: {e}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_grow_to_fit_ten_thousand_parts() {
        let mib = 1usize << 20;
        assert_eq!(part_size_for(8 * mib, None).ok(), Some(8 * mib));
        assert_eq!(part_size_for(8 * mib, Some(1 << 30)).ok(), Some(8 * mib));
        // 100 GiB / 10,000 = 10.24 MiB → 11 MiB.
        assert_eq!(part_size_for(8 * mib, Some(100 << 30)).ok(), Some(11 * mib));
        assert!(part_size_for(mib, None).is_err());
        assert!(part_size_for(8 * mib, Some(6 << 40)).is_err());
    }

    #[tokio::test]
    async fn a_failed_restore_keeps_the_name_of_the_request_that_failed_first() {
        let s3 = |operation, message: &str| Error::S3 {
            operation,
            message: message.into(),
        };
        let failed = s3("CompleteMultipartUpload", "InternalError");
        let restore = async { Err(s3("PutObject", "SlowDown")) };
        let e = undone(failed, Some(restore)).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::S3 {
                    operation: "CompleteMultipartUpload",
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "S3 CompleteMultipartUpload failed: InternalError; putting back what the upload had \
             replaced failed too (S3 PutObject failed: SlowDown)"
        );
        // A restore that worked leaves the first error as it was.
        let e = undone(
            s3("PutObject", "InternalError"),
            Some(async { Ok(Undone::PutBack) }),
        )
        .await
        .unwrap_err();
        assert_eq!(e.to_string(), "S3 PutObject failed: InternalError");
        // An object that appeared all the same: the upload went through.
        let written = async { Ok(Undone::ObjectWritten) };
        assert!(undone(s3("PutObject", "InternalError"), Some(written))
            .await
            .is_ok());
    }
}
