//! The envelope key service: KMS keys and their material, the ciphertext blob, aliases, tags,
//! rotation, principals, the key store and the audit log. No HTTP: `kms-server` puts this on the wire.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use std::sync::Arc;
//! use kms_core::{api, Kms, KmsConfig, KeyMaterial, SoftwareRootKey, Store};
//!
//! let store = Store::connect("sqlite::memory:").await?;
//! let root = Arc::new(SoftwareRootKey::new(KeyMaterial::generate()?));
//! let kms = Kms::open(store, root, KmsConfig::default()).await?;
//! let key = kms.create_key(api::CreateKeyRequest::default()).await?.key_metadata;
//! let dk = kms
//!     .generate_data_key(api::GenerateDataKeyRequest {
//!         key_id: Some(key.arn.clone()),
//!         key_spec: Some("AES_256".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! let back = kms
//!     .decrypt(api::DecryptRequest { ciphertext_blob: Some(dk.ciphertext_blob), ..Default::default() })
//!     .await?;
//! assert_eq!(back.plaintext, dk.plaintext.unwrap());
//! # Ok::<(), kms_core::KmsError>(()) }).unwrap();
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod audit;
pub mod blob;
pub mod context;
pub mod custom_key_store;
pub mod error;
pub mod identity;
pub mod ids;
pub mod material;
pub mod policy;
pub mod secret;
mod service;
pub mod store;

pub use audit::{AuditDecision, AuditLog, Caller};
pub use context::EncryptionContext;
pub use custom_key_store::{
    ConnectFailure, ConnectionErrorCode, ConnectionState, HsmClusters, HsmKeyStore,
};
pub use error::{KmsError, Result};
pub use ids::Partition;
pub use material::{KeyMaterial, RootOfTrust, SoftwareRootKey};
pub use secret::SecretBytes;
pub use service::{
    operations, Explanation, InitialPolicy, Kms, KmsConfig, PrincipalInfo, ResourceQuotas,
    MAX_CIPHERTEXT_BLOB, MAX_ENCRYPT_PLAINTEXT,
};
pub use store::Store;

/// Now, in unix milliseconds.
pub fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Unix milliseconds as RFC 3339 UTC.
pub fn rfc3339(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
