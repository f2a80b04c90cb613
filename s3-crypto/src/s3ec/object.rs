//! S3 Encryption Client objects over the S3 transport ([`crate::s3`]): encrypt and PutObject (with
//! the metadata in the object, or on request in an instruction file), GetObject and decrypt.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;

use super::{
    ContentMetadata, MetadataLookup, ObjectDecryptor, ObjectEncryptor, INSTRUCTION_FILE_MARKER,
    INSTRUCTION_FILE_SUFFIX,
};
use crate::error::{Error, Result};
use crate::s3::{get_object, put_object, MultipartUpload, MAX_PART_SIZE, MIN_PART_SIZE};

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
/// `part_size` parts (at least [`MIN_PART_SIZE`], at most [`MAX_PART_SIZE`]), as the official
/// clients' multipart uploads: one GCM stream over the whole object, the tag at the end of the
/// last part. Encryption is sequential (one GCM stream); up to `concurrency` parts upload at once,
/// each with its `Content-MD5`. Memory: about `part_size × (concurrency + 1)`. Any failure
/// (reading `input`, encrypting, uploading) aborts the upload, so no parts are left behind.
/// Returns the plaintext length and the metadata.
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
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Err(Error::InvalidConfiguration(format!(
            "a part size of {part_size} bytes; S3 takes {MIN_PART_SIZE} to {MAX_PART_SIZE}"
        )));
    }
    let enc = encryptor.begin().await?;
    let metadata = enc.metadata().clone();
    let object_metadata = object_metadata(client, bucket, key, &metadata, storage).await?;
    let mut upload = MultipartUpload::create(client, bucket, key, &object_metadata).await?;
    let mut in_flight = JoinSet::new();
    let result = upload_parts(
        &mut upload,
        &mut in_flight,
        enc,
        input,
        part_size,
        concurrency.max(1),
    )
    .await;
    match result {
        Ok(total) => {
            upload.complete().await?;
            Ok((total, metadata))
        }
        Err(e) => {
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            // Report the cause; if the abort fails too, the store's lifecycle rules must clean up.
            let _ = upload.abort().await;
            Err(e)
        }
    }
}

type PartResult = Result<aws_sdk_s3::types::CompletedPart>;

async fn upload_parts<R: AsyncRead + Unpin>(
    upload: &mut MultipartUpload,
    in_flight: &mut JoinSet<PartResult>,
    mut enc: super::ContentEncryptor,
    input: &mut R,
    part_size: usize,
    concurrency: usize,
) -> Result<u64> {
    let mut total = 0u64;
    // One byte of look-ahead says whether a full part is the last one, without reading a whole
    // next part.
    let mut carry: Option<u8> = None;
    // One plaintext buffer for every part; only the ciphertext goes to the upload task.
    let mut part = Vec::with_capacity(part_size);
    loop {
        // Wait for a free slot first: in flight (at most concurrency − 1) + this part's plaintext
        // + its ciphertext stay within part_size × (concurrency + 1).
        while in_flight.len() >= concurrency {
            collect_one(upload, in_flight).await?;
        }
        part.clear();
        part.extend(carry.take());
        (&mut *input)
            .take((part_size - part.len()) as u64)
            .read_to_end(&mut part)
            .await?;
        let mut peek = [0u8; 1];
        let last = part.len() < part_size || input.read(&mut peek).await? == 0;
        if !last {
            carry = Some(peek[0]);
        }
        total += part.len() as u64;
        let mut body = Vec::with_capacity(part.len() + super::TAG_LENGTH);
        enc.update(&part, &mut body)?;
        if last {
            enc.finish(&mut body);
            in_flight.spawn(upload.next_part()?.send(body));
            break;
        }
        in_flight.spawn(upload.next_part()?.send(body));
    }
    while !in_flight.is_empty() {
        collect_one(upload, in_flight).await?;
    }
    Ok(total)
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

async fn object_metadata(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    metadata: &ContentMetadata,
    storage: MetadataStorage,
) -> Result<std::collections::BTreeMap<String, String>> {
    match storage {
        MetadataStorage::ObjectMetadata => metadata.to_object_metadata(),
        MetadataStorage::InstructionFile => {
            let (object_metadata, file) = metadata.to_instruction_file()?;
            let marker = [(INSTRUCTION_FILE_MARKER.to_owned(), String::new())].into();
            let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
            put_object(client, bucket, &instruction_key, file.into_bytes(), &marker).await?;
            Ok(object_metadata)
        }
    }
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
    let mut object = get_object(client, bucket, key)
        .await?
        .ok_or_else(|| Error::S3 {
            operation: "GetObject",
            message: format!("NoSuchKey: s3://{bucket}/{key} does not exist"),
        })?;
    let metadata = match ContentMetadata::from_object_metadata(&object.metadata)? {
        MetadataLookup::Complete(m) => m,
        MetadataLookup::NeedsInstructionFile => {
            let instruction_key = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
            let file = get_object(client, bucket, &instruction_key)
                .await?
                .ok_or_else(|| {
                    Error::InvalidS3ecMetadata(format!(
                        "s3://{bucket}/{key} has no S3 Encryption Client metadata and no \
                         instruction file: not an S3EC object?"
                    ))
                })?
                .read_all()
                .await?;
            ContentMetadata::from_instruction_file(&object.metadata, &file)?
        }
    };
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
