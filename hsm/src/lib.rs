//! PKCS#11 backend for envelope: the root of trust held in an HSM token.
//!
//! [`HsmRootKey`] implements [`kms_core::RootOfTrust`] with a non-extractable, sensitive AES-256 key
//! that lives in the token (found by label, or created on first start). Wrapping and unwrapping run
//! AES-GCM inside the token, with the caller's AAD bound. Every line of PKCS#11 (through the
//! `cryptoki` crate) stays in this crate; PKCS#11 return codes become [`HsmError`] in one function.
//!
//! Tokens differ (who generates the GCM IV, which return code a bad tag gets): [`Capabilities`]
//! says so per token. Calls borrow a session from a bounded pool (a PKCS#11 session serves one thread
//! at a time); a device failure re-initialises the module and the call is tried once more.
//!
//! ```no_run
//! use hsm::{HsmConfig, HsmRootKey, PinSource, TokenSelector};
//! use kms_core::RootOfTrust;
//!
//! let config = HsmConfig::new(
//!     "/usr/lib/softhsm/libsofthsm2.so",
//!     TokenSelector::Label("envelope".into()),
//!     PinSource::File("/etc/envelope/hsm.pin".into()),
//! );
//! let root = HsmRootKey::open(config)?;
//! let wrapped = root.wrap(b"context", b"a secret")?;
//! assert_eq!(&root.unwrap(b"context", &wrapped)?[..], b"a secret");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`TokenKeys`] holds KMS keys in the token itself (the custom key store case): one persistent,
//! non-extractable AES-256 key per label, encryption and decryption inside the token. It implements
//! [`kms_core::HsmKeyStore`]; [`TokenClusters`] implements [`kms_core::HsmClusters`], mapping each
//! configured `CloudHsmClusterId` to a token.
//!
//! The calls block on the token: from async code, run them with `tokio::task::spawn_blocking`
//! (`kms-core` does).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clusters;
mod config;
mod error;
mod keys;
mod pool;
mod root;

pub use clusters::{connection_error_code, HsmCluster, TokenClusters};
pub use config::{
    Capabilities, GcmLayout, HsmConfig, IvSource, PinSource, TagMismatchCode, TokenSelector,
    DEFAULT_ROOT_KEY_LABEL,
};
pub use error::HsmError;
pub use keys::TokenKeys;
pub use root::{HsmRootKey, KeyAttributes, IV_LEN, TAG_LEN, WRAP_FORMAT};
