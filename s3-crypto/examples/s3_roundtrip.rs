//! Encrypt a stream into an S3-compatible store and read it back: the S3 Encryption Client V3
//! format (client-side, a raw AES wrapping key here; `KmsKeyring` for CSE-KMS), with
//! SSE-C on top (the store encrypts again with a key it does not keep).
//!
//! ```text
//! ENVELOPE_TEST_S3_ENDPOINT=http://127.0.0.1:3900 ENVELOPE_TEST_S3_BUCKET=test \
//! AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… AWS_REGION=garage \
//!   cargo run -p s3-crypto --example s3_roundtrip
//! ```
//!
//! `scripts/test` runs it against Garage. Credentials and region come from the standard AWS chain
//! (the `ENVELOPE_TEST_S3_*` variables of `scripts/garage.sh` are used when set).

use s3_crypto::s3::{PutOptions, S3ClientBuilder, ServerSideEncryption, SseCustomerKey};
use s3_crypto::s3ec::{
    get_decrypted_object_with, put_encrypted_object_stream, AesKeyring, MetadataStorage,
    ObjectDecryptor, ObjectEncryptor,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    for (from, to) in [
        ("ENVELOPE_TEST_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
        (
            "ENVELOPE_TEST_S3_SECRET_ACCESS_KEY",
            "AWS_SECRET_ACCESS_KEY",
        ),
        ("ENVELOPE_TEST_S3_REGION", "AWS_REGION"),
    ] {
        if let Some(v) = env(from) {
            std::env::set_var(to, v);
        }
    }
    let bucket = env("ENVELOPE_TEST_S3_BUCKET").ok_or("set ENVELOPE_TEST_S3_BUCKET")?;

    // 1. A client configured as the caller likes: here endpoint and path-style addressing.
    let mut builder = S3ClientBuilder::new().path_style(true);
    if let Some(endpoint) = env("ENVELOPE_TEST_S3_ENDPOINT") {
        builder = builder.endpoint_url(endpoint);
    }
    let client = builder.build().await?;

    // 2. Keys: the client-side wrapping key and the SSE-C key (use real secrets).
    let keyring = AesKeyring::new(&[0x11; 32])?;
    let sse_c = SseCustomerKey::new(&[0x22; 32])?;

    // 3. Upload from any AsyncRead (a file, stdin, a socket): 12 MiB in 5 MiB parts, 2 at once.
    let plaintext: Vec<u8> = (0..12 << 20).map(|i: u32| (i % 251) as u8).collect();
    let options = PutOptions::default()
        .part_size(5 << 20)
        .concurrency(2)
        .sse(ServerSideEncryption::Customer(sse_c.clone()));
    let key = "examples/s3_roundtrip.bin";
    let (sent, metadata) = put_encrypted_object_stream(
        &client,
        &bucket,
        key,
        &ObjectEncryptor::new(&keyring),
        &mut &plaintext[..],
        MetadataStorage::ObjectMetadata,
        &options,
    )
    .await?;
    println!(
        "uploaded {sent} bytes as s3://{bucket}/{key} ({:?})",
        metadata.content_algorithm()
    );

    // 4. Download into any AsyncWrite (a file: write to a temporary file, rename on Ok).
    let mut out = Vec::new();
    let got = get_decrypted_object_with(
        &client,
        &bucket,
        key,
        &ObjectDecryptor::new(&keyring),
        &mut out,
        Some(&sse_c),
    )
    .await?;
    assert_eq!(out, plaintext);
    println!("downloaded and verified {got} bytes");
    Ok(())
}
