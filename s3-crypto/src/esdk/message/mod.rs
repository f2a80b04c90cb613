//! The AWS Encryption SDK message format: header, body (frames), footer.
//!
//! ```text
//! message = header ‖ body ‖ footer?
//! header  = version 2: 02 ‖ suite id ‖ message id (32) ‖ u16 len ‖ encryption context
//!                      ‖ u16 count ‖ encrypted data keys ‖ content type ‖ u32 frame length
//!                      ‖ commitment (32) ‖ auth tag (16)
//!           version 1: 01 ‖ 80 ‖ suite id ‖ message id (16) ‖ … ‖ content type ‖ 00000000
//!                      ‖ IV length (0C) ‖ u32 frame length ‖ IV (12) ‖ auth tag (16)
//! body    = framed:     (u32 seq ‖ IV ‖ frame-length bytes ‖ tag)*
//!                       ‖ FFFFFFFF ‖ u32 seq ‖ IV ‖ u32 len ‖ len bytes ‖ tag
//!           non-framed: IV ‖ u64 len ‖ len bytes ‖ tag                      (read only)
//! footer  = u16 len ‖ DER ECDSA signature over SHA-256/384(header ‖ body)   (signed suites)
//! ```

pub(crate) mod frame;
pub(crate) mod header;
pub(crate) mod kdf;
pub(crate) mod reader;
pub(crate) mod signature;
pub(crate) mod suite;
