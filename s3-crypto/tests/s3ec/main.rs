//! The S3 Encryption Client object format (`s3_crypto::s3ec`): golden vectors made by the official
//! Python client, objects written here and read by it, round trips, policy and tamper checks, and
//! the KMS keyring against envelope's own endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

mod common;
#[cfg(feature = "s3")]
mod garage;
#[cfg(feature = "s3")]
#[path = "../common/garage.rs"]
mod garage_store;
#[cfg(feature = "kms")]
mod kms;
mod python;
mod roundtrip;
#[cfg(feature = "s3")]
mod sse;
#[cfg(feature = "s3")]
mod streaming;
mod vectors;
