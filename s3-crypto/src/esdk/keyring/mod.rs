//! The keyrings of AWS Encryption SDK messages: [`RawAesKeyring`] and [`MultiKeyring`] (as the ESDK
//! specifies them), and the message side of the shared [`KmsKeyring`](crate::KmsKeyring).

#[cfg(feature = "kms")]
mod kms;
mod multi;
mod raw_aes;

pub use multi::MultiKeyring;
pub use raw_aes::RawAesKeyring;
