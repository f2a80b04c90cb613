//! Integration tests, built as one binary: golden vectors, round-trip properties, and interop with
//! the Python AWS Encryption SDK.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod layout;
mod parallel;
mod python;
mod range;
mod roundtrip;
mod vectors;
