//! Custom key stores: KMS keys whose material never leaves an HSM (the AWS CloudHSM key store).
//!
//! A custom key store names a cluster ([`HsmClusters`] says what a `CloudHsmClusterId` means on
//! this server: the `hsm` crate maps it to a PKCS#11 token) and holds the password the service logs
//! in with (the token's user PIN, kept wrapped by the root of trust). Connecting logs in; while the
//! store is connected, its keys encrypt and decrypt inside the token ([`HsmKeyStore`]); while it is
//! not, they are `Unavailable` and every cryptographic call on them is refused with
//! `KMSInvalidStateException`.
//!
//! The connection state is kept in the key store (so every node sees it); the login itself belongs
//! to each node: a node that finds a store `CONNECTED` without a session of its own logs in on first
//! use (after a restart, or on another node).
//!
//! This module holds what a cluster implements and the states a store goes through; the six
//! operations and the logins are the key service's (`service/custom_key_stores.rs`).

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::error::{KmsError, Result};

/// AWS's `ConnectionState` of a custom key store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Logged in; the keys are usable.
    Connected,
    /// A connection is being made.
    Connecting,
    /// Never connected, or disconnected on request.
    Disconnected,
    /// Being disconnected.
    Disconnecting,
    /// The last connection attempt failed; see the [`ConnectionErrorCode`].
    Failed,
}

impl ConnectionState {
    /// The name AWS uses, on the wire and in the key store.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connected => "CONNECTED",
            ConnectionState::Connecting => "CONNECTING",
            ConnectionState::Disconnected => "DISCONNECTED",
            ConnectionState::Disconnecting => "DISCONNECTING",
            ConnectionState::Failed => "FAILED",
        }
    }

    /// Parses a stored name.
    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "CONNECTED" => ConnectionState::Connected,
            "CONNECTING" => ConnectionState::Connecting,
            "DISCONNECTED" => ConnectionState::Disconnected,
            "DISCONNECTING" => ConnectionState::Disconnecting,
            "FAILED" => ConnectionState::Failed,
            _ => {
                return Err(KmsError::Internal(
                    "The key store holds an unknown connection state.".into(),
                ))
            }
        })
    }
}

/// AWS's `ConnectionErrorCode`: why a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionErrorCode {
    /// The token refused the password (`CKR_PIN_INCORRECT`, `CKR_PIN_INVALID`, ...).
    InvalidCredentials,
    /// The cluster is not configured on this server, its PKCS#11 module cannot be loaded, or no
    /// token has its label.
    ClusterNotFound,
    /// The cluster has no usable HSM.
    InsufficientCloudhsmHsms,
    /// The token locked the user out (`CKR_PIN_LOCKED`).
    UserLockedOut,
    /// The token has no user PIN set (`CKR_USER_PIN_NOT_INITIALIZED`).
    UserNotFound,
    /// The token or module failed while connecting (device error, session lost).
    NetworkErrors,
    /// Anything else.
    InternalError,
}

impl ConnectionErrorCode {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionErrorCode::InvalidCredentials => "INVALID_CREDENTIALS",
            ConnectionErrorCode::ClusterNotFound => "CLUSTER_NOT_FOUND",
            ConnectionErrorCode::InsufficientCloudhsmHsms => "INSUFFICIENT_CLOUDHSM_HSMS",
            ConnectionErrorCode::UserLockedOut => "USER_LOCKED_OUT",
            ConnectionErrorCode::UserNotFound => "USER_NOT_FOUND",
            ConnectionErrorCode::NetworkErrors => "NETWORK_ERRORS",
            ConnectionErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

/// A failed connection attempt: the code AWS would show, and details for the server's log (never
/// the password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// What DescribeCustomKeyStores shows.
    pub code: ConnectionErrorCode,
    /// For the log.
    pub reason: String,
}

/// The clusters this server can reach: what a `CloudHsmClusterId` means here. Implemented by the
/// `hsm` crate over PKCS#11 tokens. Calls may block (they load modules and log in).
pub trait HsmClusters: Send + Sync + 'static {
    /// An identity of the token behind `cluster_id` (two ids naming one token are one cluster),
    /// or `None` when no such cluster is configured.
    fn token_identity(&self, cluster_id: &str) -> Option<String>;
    /// Logs in to the cluster's token with `password` and checks that it is usable.
    fn connect(
        &self,
        cluster_id: &str,
        password: &[u8],
    ) -> std::result::Result<Arc<dyn HsmKeyStore>, ConnectFailure>;
}

/// A logged-in token holding KMS keys, one persistent, non-extractable AES-256 key per KMS key,
/// addressed by label (the key ARN). Every call runs inside the token and may block.
///
/// The sealed form is self-contained (it carries its own IV and tag); the AAD is bound, never stored.
pub trait HsmKeyStore: Send + Sync + 'static {
    /// Creates the key `label`; fails if one exists.
    fn create_key(&self, label: &str) -> Result<()>;
    /// AES-GCM encryption with the key `label`, binding `aad`.
    fn encrypt(&self, label: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>>;
    /// Opens what [`HsmKeyStore::encrypt`] returned; `InvalidCiphertext` when anything differs.
    fn decrypt(&self, label: &str, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
    /// Destroys the key `label`.
    fn destroy_key(&self, label: &str) -> Result<()>;
    /// `n` random bytes from the token.
    fn generate_random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>>;
}
