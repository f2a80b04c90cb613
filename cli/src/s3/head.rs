//! `envelope s3 head`: an object's encryption metadata as JSON, client-side (framed or S3
//! Encryption Client, read from the object's metadata or its instruction file) and server-side,
//! without decrypting it.

use std::collections::BTreeMap;

use s3_crypto::esdk::s3 as framed;
use s3_crypto::s3ec::{self, ContentParameters};

use super::{s3_client, s3_err, sse_c_hint, sse_c_key, HeadArgs, S3Url};
use crate::CliError;

/// `envelope s3 head`.
pub(super) async fn head(args: HeadArgs) -> Result<(), CliError> {
    let object = match S3Url::parse(&args.object) {
        Some(url) => url?,
        None => {
            return Err(CliError::Usage(format!(
                "{}: expected s3://BUCKET/KEY",
                args.object
            )))
        }
    };
    let sse_c = sse_c_key(args.sse_c_key_file.as_deref())?;
    let client = s3_client(&args.connection).await?;
    let head = s3_crypto::s3::head_object(&client, &object.bucket, &object.key, sse_c.as_ref())
        .await
        .map_err(|e| {
            let hint = sse_c_hint(&e, sse_c.is_some());
            CliError::Usage(format!("{e}{hint}"))
        })?
        .ok_or_else(|| CliError::Usage(format!("{object} does not exist")))?;
    let client_side = if framed::is_framed(&head.metadata) {
        use framed::{FRAME_LENGTH_KEY, HEADER_LENGTH_KEY};
        // The message header (suite, data keys, context) is inside the object; these are the
        // metadata's hints, written by the upload and not authenticated.
        serde_json::json!({
            "format": "framed",
            "message_format": "AWS Encryption SDK message, framed",
            "frame_length": head.metadata.get(FRAME_LENGTH_KEY),
            "header_length": head.metadata.get(HEADER_LENGTH_KEY),
        })
    } else {
        match s3ec::read_metadata(
            &client,
            &object.bucket,
            &object.key,
            &head.metadata,
            sse_c.as_ref(),
        )
        .await
        {
            Ok(m) => {
                let (format, algorithm) = match &m.content {
                    ContentParameters::AesGcm { .. } => ("s3ec-v2", "AES/GCM/NoPadding"),
                    _ => ("s3ec-v3", "ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY"),
                };
                let instruction_file = !head.metadata.contains_key("x-amz-3")
                    && !head.metadata.contains_key("x-amz-key-v2");
                serde_json::json!({
                    "format": format,
                    "content_algorithm": algorithm,
                    "wrapping_algorithm": m.wrapping.name(),
                    // Only legacy objects name their KMS key; for kms+context it is inside the
                    // encrypted data key, which only KMS reads.
                    "kms_key_id": m.context.get("kms_cmk_id"),
                    "encryption_context": m.context.iter().collect::<BTreeMap<_, _>>(),
                    "instruction_file": instruction_file,
                })
            }
            Err(s3_crypto::Error::InvalidS3ecMetadata(reason)) => serde_json::json!({
                "format": "unknown",
                "note": reason,
            }),
            Err(e) => return Err(s3_err(e)),
        }
    };
    let json = serde_json::json!({
        "object": object.to_string(),
        "content_length": head.content_length,
        "etag": head.e_tag,
        "client_side": client_side,
        "server_side": {
            "sse": head.server_side_encryption,
            "kms_key_id": head.sse_kms_key_id,
            "bucket_key_enabled": head.bucket_key_enabled,
            "sse_c_algorithm": head.sse_customer_algorithm,
            "sse_c_key_md5": head.sse_customer_key_md5,
        },
        "user_metadata": head.metadata,
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    Ok(())
}
