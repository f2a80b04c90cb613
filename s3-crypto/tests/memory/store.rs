//! Downloads through Garage (`scripts/garage.sh`; skipped without it, a failure under `CI`): a
//! framed object whose header announces huge frames, read whole and by range, and an S3
//! Encryption Client object whose instruction file is oversized.

use s3_crypto::esdk::s3::{framed_metadata, get_framed_object, GetOptions};
use s3_crypto::s3::{head_object, put_object};
use s3_crypto::s3ec::{
    get_decrypted_object, put_encrypted_object, read_metadata, AesKeyring, MetadataStorage,
    ObjectDecryptor, ObjectEncryptor, INSTRUCTION_FILE_SUFFIX, MAX_INSTRUCTION_FILE_LEN,
};
use s3_crypto::{ByteRange, Error, FrameKind, DEFAULT_MAX_BUFFERED_CONTENT};

use crate::esdk::{keyring, message};
use crate::garage_store::{garage, unique_in};
use crate::{serial, within, MIB};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What the S3 client needs for one GET beyond the frames (connection and response buffers).
const GET_OVERHEAD: usize = 4 * MIB;

/// Whole and ranged reads of a framed object, each capped at `budget`.
fn read_both_ways(
    rt: &tokio::runtime::Runtime,
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> [Result<u64, Error>; 2] {
    let keyring = keyring();
    let whole = GetOptions::new();
    let ranged = GetOptions::new().range(Some(ByteRange::Inclusive { first: 0, last: 0 }));
    [whole, ranged].map(|options| {
        within(GET_OVERHEAD, || {
            rt.block_on(async {
                let mut out = Vec::new();
                get_framed_object(client, bucket, key, &keyring, &options, &mut out)
                    .await
                    .map(|summary| summary.written.end - summary.written.start)
            })
        })
    })
}

#[test]
fn framed_downloads_of_hostile_headers_cost_only_what_arrives() {
    let _one = serial();
    let Some(s) = garage() else { return };
    let rt = runtime();
    let client = s.client();
    let put = |name: &str, frame_length: u32, body: Vec<u8>| {
        let key = unique_in("memory-test", name);
        let metadata = framed_metadata(frame_length, 0);
        rt.block_on(put_object(&client, &s.bucket, &key, body, &metadata))
            .unwrap();
        key
    };
    let empty_final = |k: &s3_crypto::FrameKey| k.seal_frame(1, FrameKind::Final, b"").unwrap();

    // Frames of 4 GiB: refused by the limit before any frame is read (the ranged read used to
    // allocate a buffer of the frame length here).
    let key = put("huge", u32::MAX, message(u32::MAX, empty_final));
    for outcome in read_both_ways(&rt, &client, &s.bucket, &key) {
        match outcome {
            Err(Error::ContentTooLarge { len, max }) => {
                assert_eq!(
                    (len, max),
                    (u64::from(u32::MAX), DEFAULT_MAX_BUFFERED_CONTENT)
                )
            }
            other => panic!("{other:?}"),
        }
    }

    // Frames of 255 MiB, under the limit, in a tiny object: buffers are what the object holds.
    let long = 255 * MIB as u32;
    let key = put("long-empty", long, message(long, empty_final));
    let [whole, ranged] = read_both_ways(&rt, &client, &s.bucket, &key);
    assert_eq!(whole.unwrap(), 0);
    assert!(
        matches!(ranged, Err(Error::RangeNotSatisfiable { total: 0, .. })),
        "{ranged:?}"
    );
    let cut = |_: &s3_crypto::FrameKey| {
        let mut body = 1u32.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 11]);
        body.push(1);
        body.extend(std::iter::repeat_n(0xA5, 1000));
        body
    };
    let key = put("long-cut", long, message(long, cut));
    for outcome in read_both_ways(&rt, &client, &s.bucket, &key) {
        assert!(matches!(outcome, Err(Error::Truncated(_))), "{outcome:?}");
    }
}

#[test]
fn an_oversized_instruction_file_is_refused_before_it_is_read() {
    let _one = serial();
    let Some(s) = garage() else { return };
    let rt = runtime();
    let client = s.client();
    let keyring = AesKeyring::new(&[0x5Cu8; 32]).unwrap();
    let key = unique_in("memory-test", "instruction-file");
    rt.block_on(put_encrypted_object(
        &client,
        &s.bucket,
        &key,
        &ObjectEncryptor::new(&keyring),
        b"secret",
        MetadataStorage::InstructionFile,
    ))
    .unwrap();
    let metadata = rt
        .block_on(head_object(&client, &s.bucket, &key, None))
        .unwrap()
        .unwrap()
        .metadata;
    // Eight times the limit, of JSON whitespace (the old read took it all, then parsed it).
    let instruction = format!("{key}{INSTRUCTION_FILE_SUFFIX}");
    let oversized = vec![b' '; 8 * MAX_INSTRUCTION_FILE_LEN as usize];
    rt.block_on(put_object(
        &client,
        &s.bucket,
        &instruction,
        oversized,
        &Default::default(),
    ))
    .unwrap();
    let refused = |e: Error| match e {
        Error::ObjectTooLarge {
            what: "an instruction file",
            key: k,
            max,
            ..
        } => assert_eq!((k, max), (instruction.clone(), MAX_INSTRUCTION_FILE_LEN)),
        other => panic!("{other:?}"),
    };
    within(GET_OVERHEAD, || {
        rt.block_on(async {
            refused(
                read_metadata(&client, &s.bucket, &key, &metadata, None)
                    .await
                    .unwrap_err(),
            );
            let mut out = Vec::new();
            let decryptor = ObjectDecryptor::new(&keyring);
            refused(
                get_decrypted_object(&client, &s.bucket, &key, &decryptor, &mut out)
                    .await
                    .unwrap_err(),
            );
            assert!(out.is_empty());
        })
    });
}
