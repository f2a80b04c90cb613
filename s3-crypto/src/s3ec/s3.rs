//! S3 Encryption Client objects over the S3 transport ([`crate::s3`]): encrypt and PutObject (with
//! the metadata in the object, or on request in an instruction file), GetObject and decrypt.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{
    ContentMetadata, MetadataLookup, ObjectDecryptor, ObjectEncryptor, INSTRUCTION_FILE_MARKER,
    INSTRUCTION_FILE_SUFFIX,
};
use crate::error::{Error, Result};
use crate::s3::{
    get_object_with, head_object, part_size_for, put_object, put_object_with, upload_stream,
    PutOptions, SseCustomerKey, Undone,
};

/// The longest instruction file read (bytes). The official clients' are a few hundred bytes of
/// JSON (a wrapped data key, an IV, a materials description or encryption context, which KMS
/// limits to 8 KiB); a longer one is refused with [`Error::ObjectTooLarge`] before it is read.
pub const MAX_INSTRUCTION_FILE_LEN: u64 = 1 << 20;

/// Where the metadata goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataStorage {
    /// In the object's user metadata (the default, as the official clients).
    #[default]
    ObjectMetadata,
    /// In an instruction file, the object key + `.instruction` (V3 keeps `x-amz-c`, `x-amz-d`
    /// and `x-amz-i` in the object metadata).
    InstructionFile,
}

/// Encrypts `plaintext` and uploads it (each PutObject with its `Content-MD5`). With an
/// instruction file, the instruction file is written first, so the object never exists without
/// its key material. Returns the metadata written.
pub async fn put_encrypted_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    encryptor: &ObjectEncryptor<'_>,
    plaintext: &[u8],
    storage: MetadataStorage,
) -> Result<ContentMetadata> {
    let mut enc = encryptor.begin().await?;
    let metadata = enc.metadata().clone();
    let mut body = Vec::with_capacity(plaintext.len() + super::TAG_LENGTH);
    enc.update(plaintext, &mut body)?;
    enc.finish(&mut body);
    let object_metadata = object_metadata(client, bucket, key, &metadata, storage).await?;
    put_object(client, bucket, key, body, &object_metadata).await?;
    Ok(metadata)
}

/// Encrypts `input` (of any length, read to its end) and uploads it as a multipart upload of
/// `part_size` parts (at least [`MIN_PART_SIZE`](crate::s3::MIN_PART_SIZE), at most
/// [`MAX_PART_SIZE`](crate::s3::MAX_PART_SIZE)) even when it is short; see
/// [`put_encrypted_object_stream`], which picks PutObject for short input.
#[allow(clippy::too_many_arguments)]
pub async fn put_encrypted_object_multipart<R: AsyncRead + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    encryptor: &ObjectEncryptor<'_>,
    input: &mut R,
    part_size: usize,
    concurrency: usize,
    storage: MetadataStorage,
) -> Result<(u64, ContentMetadata)> {
    // Checked before anything is sent (an instruction file is PUT first).
    part_size_for(part_size, None)?;
    let options = PutOptions::default()
        .part_size(part_size)
        .concurrency(concurrency);
    put_encrypted(
        client, bucket, key, encryptor, input, storage, &options, true,
    )
    .await
}

/// Encrypts `input` (read to its end; a file, a pipe, stdin of unknown length) and uploads it,
/// streaming, as the official clients' objects are: one GCM stream over the whole object, the tag
/// at the end. Input that ends within the first part goes up in one PutObject; longer input as a
/// multipart upload of [`PutOptions::part_size`] parts (grown so that at most 10,000 are needed),
/// [`PutOptions::concurrency`] of them in flight, each with its `Content-MD5`. Encryption is
/// sequential (one GCM stream). Memory: about part size × (concurrency + 1). Any failure
/// (reading `input`, encrypting, uploading after the retries) or a cancellation aborts the
/// upload, so no parts are left behind. `options.sse` asks the store to encrypt as well (SSE-C:
/// the instruction file, if any, too). An instruction file is written once the whole body is in
/// the store, just before the object appears (the PutObject or CompleteMultipartUpload), so a
/// failed or cancelled upload over an object leaves that object readable. Returns the plaintext
/// length and the metadata.
pub async fn put_encrypted_object_stream<R: AsyncRead + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    encryptor: &ObjectEncryptor<'_>,
    input: &mut R,
    storage: MetadataStorage,
    options: &PutOptions,
) -> Result<(u64, ContentMetadata)> {
    put_encrypted(
        client, bucket, key, encryptor, input, storage, options, false,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn put_encrypted<R: AsyncRead + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    encryptor: &ObjectEncryptor<'_>,
    input: &mut R,
    storage: MetadataStorage,
    options: &PutOptions,
    force_multipart: bool,
) -> Result<(u64, ContentMetadata)> {
    if let Some(size) = options.expected_size {
        if size > super::MAX_PLAINTEXT_LENGTH {
            return Err(Error::InvalidConfiguration(format!(
                "{size} bytes is more than one AES-GCM stream may encrypt"
            )));
        }
    }
    let enc = encryptor.begin().await?;
    let metadata = enc.metadata().clone();
    // An instruction file is written once the whole body is in the store, right before the object
    // appears: a failed or cancelled upload over an object leaves its instruction file as it was.
    let (object_metadata, instruction_file) = match storage {
        MetadataStorage::ObjectMetadata => (metadata.to_object_metadata()?, None),
        MetadataStorage::InstructionFile => {
            let (object_metadata, file) = metadata.to_instruction_file()?;
            (object_metadata, Some(file))
        }
    };
    // What an instruction file written before the object replaces, to put back if the object then
    // does not appear (so that an existing object stays readable with its own file).
    let previous = match &instruction_file {
        Some(_) => Some(previous_instruction_file(client, bucket, key, options).await?),
        None => None,
    };
    let before_commit =
        instruction_file.map(|file| put_instruction_file(client, bucket, key, file, options));
    // The object as it is before the put (its ETag; `None`: there is none), to tell afterwards
    // whether a commit that answered an error went through all the same. An object that cannot
    // be read refuses the upload before anything is written: a failed commit could not be judged.
    let before = match &previous {
        Some(_) => Some(
            etag_of(client, bucket, key, options)
                .await
                .map_err(|e| Error::S3 {
                    operation: "HeadObject",
                    message: format!(
                "the existing object s3://{bucket}/{key} cannot be read ({e}): an upload that \
                 failed could not tell whether it had replaced it, and might leave it without \
                 its instruction file, so nothing was written; delete it first, or upload with \
                 the SSE-C key it was stored with (or with none, if it has none)"
            ),
                })?,
        ),
        None => None,
    };
    let undo_commit = previous.zip(before).map(|(previous, before)| {
        undo_instruction_file(client, bucket, key, previous, before, options)
    });
    let mut enc = Some(enc);
    let total = upload_stream(
        client,
        bucket,
        key,
        input,
        &object_metadata,
        options,
        force_multipart,
        Some(|plain: &[u8], last: bool, out: &mut Vec<u8>| {
            let Some(e) = enc.as_mut() else {
                return Err(Error::InvalidConfiguration(
                    "data after the end of the encrypted stream".into(),
                ));
            };
            e.update(plain, out)?;
            if last {
                if let Some(e) = enc.take() {
                    e.finish(out);
                }
            }
            Ok(())
        }),
        before_commit,
        undo_commit,
    )
    .await?;
    Ok((total, metadata))
}

async fn object_metadata(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    metadata: &ContentMetadata,
    storage: MetadataStorage,
) -> Result<std::collections::BTreeMap<String, String>> {
    object_metadata_with(
        client,
        bucket,
        key,
        metadata,
        storage,
        &PutOptions::default(),
    )
    .await
}

async fn object_metadata_with(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    metadata: &ContentMetadata,
    storage: MetadataStorage,
    options: &PutOptions,
) -> Result<std::collections::BTreeMap<String, String>> {
    match storage {
        MetadataStorage::ObjectMetadata => metadata.to_object_metadata(),
        MetadataStorage::InstructionFile => {
            let (object_metadata, file) = metadata.to_instruction_file()?;
            put_instruction_file(client, bucket, key, file, options).await?;
            Ok(object_metadata)
        }
    }
}

/// The instruction file of `key` before a put replaces it.
enum PreviousInstructionFile {
    /// There was none: a new one is deleted again.
    Absent,
    /// Its body (an instruction file is at most [`MAX_INSTRUCTION_FILE_LEN`] bytes), and whether
    /// it was stored under the put's SSE-C key (else without SSE-C): it is put back as it was.
    Body { body: Vec<u8>, with_sse_c: bool },
}

/// The instruction file a put is about to replace. One that exists but cannot be read (another
/// SSE-C key, no permission to read it, longer than an instruction file may be) refuses the put
/// before anything is written: were the upload then to fail, it could not be put back, and the
/// object it belongs to would be left unreadable.
async fn previous_instruction_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &PutOptions,
) -> Result<PreviousInstructionFile> {
    let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
    let unreadable = |e: Error| Error::S3 {
        operation: "GetObject",
        message: format!(
            "the existing instruction file {instruction_key} cannot be read ({e}): an upload that \
             failed after replacing it could not put it back, and the object it belongs to would \
             be left unreadable, so nothing was written; delete it first, or upload without \
             --instruction-file"
        ),
    };
    let (got, with_sse_c) = with_key_or_without(options, |sse_c| {
        get_object_with(client, bucket, &instruction_key, sse_c)
    })
    .await;
    match got {
        Ok(None) => Ok(PreviousInstructionFile::Absent),
        Ok(Some(object)) => object
            .read_all_limited(MAX_INSTRUCTION_FILE_LEN, "an instruction file")
            .await
            .map(|body| PreviousInstructionFile::Body { body, with_sse_c })
            .map_err(unreadable),
        Err(e) => Err(unreadable(e)),
    }
}

/// After the object's PutObject or CompleteMultipartUpload answered an error: if the object has
/// changed since before the put (`before`, its ETag then), the put went through all the same (a
/// 5xx after the store acted, an answer lost) and the new instruction file is the new object's:
/// nothing is undone. Otherwise the instruction file the put replaced is put back, so the old
/// object stays readable; when whether the object changed cannot be told (the store does not
/// answer the HEAD), it is put back too, and the error says so.
async fn undo_instruction_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    previous: PreviousInstructionFile,
    before: Option<String>,
    options: &PutOptions,
) -> Result<Undone> {
    let undone = match etag_of(client, bucket, key, options).await {
        Ok(now) if now != before => return Ok(Undone::ObjectWritten),
        Ok(_) => Undone::PutBack,
        Err(e) => Undone::PutBackUntold(e.to_string()),
    };
    restore_instruction_file(client, bucket, key, previous, options).await?;
    Ok(undone)
}

/// The object's ETag (`None`: there is no object), read with the put's SSE-C key or without
/// ([`with_key_or_without`]).
async fn etag_of(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    options: &PutOptions,
) -> Result<Option<String>> {
    let (head, _) =
        with_key_or_without(options, |sse_c| head_object(client, bucket, key, sse_c)).await;
    Ok(head?.and_then(|h| h.e_tag))
}

/// A read with the put's SSE-C key, or, when that fails, without one (an object stored without
/// SSE-C refuses a read that brings a key); the first error if both fail. Also says whether the
/// read that answered brought the key.
async fn with_key_or_without<'a, T, F, Fut>(options: &'a PutOptions, read: F) -> (Result<T>, bool)
where
    F: Fn(Option<&'a SseCustomerKey>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    match (read(options.sse_c()).await, options.sse_c()) {
        (Err(e), Some(_)) => (read(None).await.map_err(|_| e), false),
        (got, key) => (got, key.is_some()),
    }
}

/// Puts back the instruction file a failed put had replaced (or deletes the one it made).
async fn restore_instruction_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    previous: PreviousInstructionFile,
    options: &PutOptions,
) -> Result<()> {
    let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
    match previous {
        PreviousInstructionFile::Body { body, with_sse_c } => {
            let marker = [(INSTRUCTION_FILE_MARKER.to_owned(), String::new())].into();
            // A file read without the put's SSE-C key goes back without it (and without SSE).
            let without_key;
            let options = if with_sse_c || options.sse_c().is_none() {
                options
            } else {
                without_key = PutOptions {
                    sse: None,
                    ..options.clone()
                };
                &without_key
            };
            put_object_with(client, bucket, &instruction_key, body, &marker, options).await?;
            Ok(())
        }
        PreviousInstructionFile::Absent => {
            client
                .delete_object()
                .bucket(bucket)
                .key(&instruction_key)
                .send()
                .await
                .map_err(|e| Error::S3 {
                    operation: "DeleteObject",
                    message: format!("s3://{bucket}/{instruction_key}: {e}"),
                })?;
            Ok(())
        }
    }
}

/// Puts the instruction file of the object `key`.
async fn put_instruction_file(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    file: String,
    options: &PutOptions,
) -> Result<()> {
    let marker = [(INSTRUCTION_FILE_MARKER.to_owned(), String::new())].into();
    let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
    put_object_with(
        client,
        bucket,
        &instruction_key,
        file.into_bytes(),
        &marker,
        options,
    )
    .await?;
    Ok(())
}

/// Downloads `key`, reads its metadata (fetching the instruction file if the object metadata
/// says so) and decrypts it into `output`, streaming. Returns the plaintext length.
///
/// As everywhere in [`s3ec`](super): the last [`HOLD_BACK`](super::HOLD_BACK) bytes reach
/// `output` only once the object has authenticated; on an error `output` has received a strict,
/// unauthenticated prefix (write to a temporary file and rename on `Ok`).
pub async fn get_decrypted_object<W: AsyncWrite + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    decryptor: &ObjectDecryptor<'_>,
    output: &mut W,
) -> Result<u64> {
    get_decrypted_object_with(client, bucket, key, decryptor, output, None).await
}

/// [`get_decrypted_object`] of an object the store holds with SSE-C (`sse_c`: the key; the
/// instruction file, if any, is read with it too).
pub async fn get_decrypted_object_with<W: AsyncWrite + Unpin>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    decryptor: &ObjectDecryptor<'_>,
    output: &mut W,
    sse_c: Option<&SseCustomerKey>,
) -> Result<u64> {
    let mut object = get_object_with(client, bucket, key, sse_c)
        .await?
        .ok_or_else(|| Error::S3 {
            operation: "GetObject",
            message: format!("NoSuchKey: s3://{bucket}/{key} does not exist"),
        })?;
    let metadata = read_metadata(client, bucket, key, &object.metadata, sse_c).await?;
    let mut dec = decryptor.begin(&metadata).await?;
    let mut out = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = object.next_chunk().await? {
        out.clear();
        dec.update(&chunk, &mut out)?;
        output.write_all(&out).await?;
        total += out.len() as u64;
    }
    out.clear();
    dec.finish(&mut out)?;
    output.write_all(&out).await?;
    output.flush().await?;
    Ok(total + out.len() as u64)
}

/// The S3 Encryption Client metadata of an object whose user metadata is `object_metadata`:
/// from it, or from the instruction file it points to. No decryption.
pub async fn read_metadata(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    object_metadata: &std::collections::BTreeMap<String, String>,
    sse_c: Option<&SseCustomerKey>,
) -> Result<ContentMetadata> {
    Ok(
        match ContentMetadata::from_object_metadata(object_metadata)? {
            MetadataLookup::Complete(m) => m,
            MetadataLookup::NeedsInstructionFile => {
                let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
                let file = get_object_with(client, bucket, &instruction_key, sse_c)
                    .await?
                    .ok_or_else(|| {
                        Error::InvalidS3ecMetadata(format!(
                            "s3://{bucket}/{key} has no S3 Encryption Client metadata and no \
                         instruction file: not an S3EC object?"
                        ))
                    })?
                    .read_all_limited(MAX_INSTRUCTION_FILE_LEN, "an instruction file")
                    .await?;
                ContentMetadata::from_instruction_file(object_metadata, &file)?
            }
        },
    )
}
