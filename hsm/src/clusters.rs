//! Custom key stores on PKCS#11 tokens: a `CloudHsmClusterId` is a name the server is configured
//! with for one token (module path and token label), and the store's password is that token's user
//! PIN, as AWS CloudHSM's `kmsuser` password is.
//!
//! [`TokenClusters`] implements [`kms_core::HsmClusters`]; a connection is a [`TokenKeys`], which
//! implements [`kms_core::HsmKeyStore`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use cryptoki::types::AuthPin;
use kms_core::{ConnectFailure, ConnectionErrorCode, HsmKeyStore, KmsError};
use zeroize::Zeroizing;

use crate::config::{Capabilities, HsmConfig, PinSource, TokenSelector};
use crate::error::HsmError;
use crate::keys::TokenKeys;

/// One cluster: the token behind a `CloudHsmClusterId`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HsmCluster {
    /// Path of the PKCS#11 module.
    pub module: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// The token's quirks.
    pub capabilities: Capabilities,
    /// Sessions kept open at most.
    pub max_sessions: usize,
}

impl HsmCluster {
    /// A cluster on `token` of `module`, SoftHSMv2 capabilities, 4 sessions.
    pub fn new(module: impl Into<PathBuf>, token: TokenSelector) -> Self {
        Self {
            module: module.into(),
            token,
            capabilities: Capabilities::default(),
            max_sessions: 4,
        }
    }

    /// Sets the token's capabilities.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sets the session pool's bound (at least 1).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// Parses `cluster-ID=MODULE_PATH:TOKEN_LABEL[;CAPABILITIES]` (the first `:` after `=` ends
    /// the path; a `;` ends the label and starts a [`Capabilities`] string applied on top of
    /// `default_caps`).
    pub fn parse(spec: &str, default_caps: &Capabilities) -> Result<(String, Self), HsmError> {
        let bad = |why: &str| {
            HsmError::Config(format!(
                "--hsm-cluster '{spec}': {why} (expected \
                 cluster-ID=MODULE_PATH:TOKEN_LABEL[;CAPABILITIES])"
            ))
        };
        let (spec_main, capabilities) = match spec.rsplit_once(';') {
            Some((main, caps)) => (main, default_caps.clone().apply(caps)?),
            None => (spec, default_caps.clone()),
        };
        let (id, rest) = spec_main.split_once('=').ok_or_else(|| bad("no '='"))?;
        let (module, label) = rest
            .split_once(':')
            .ok_or_else(|| bad("no ':' before the token label"))?;
        // AWS's shape, which SDKs check client-side: `cluster-` and 11 to 16 letters or digits.
        let valid_id = id.len() >= 19
            && id.len() <= 24
            && id.starts_with("cluster-")
            && id["cluster-".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric());
        if !valid_id {
            return Err(bad(
                "the id must be 'cluster-' and 11 to 16 letters or digits",
            ));
        }
        if module.is_empty() || label.is_empty() || label.len() > 32 {
            return Err(bad("empty module path, or a token label not 1 to 32 bytes"));
        }
        Ok((
            id.to_string(),
            Self::new(module, TokenSelector::Label(label.to_string()))
                .with_capabilities(capabilities),
        ))
    }

    fn identity(&self) -> String {
        format!("{} in {}", self.token, self.module.display())
    }
}

/// The clusters a server is configured with, by id.
#[derive(Debug, Clone, Default)]
pub struct TokenClusters {
    clusters: BTreeMap<String, HsmCluster>,
}

impl TokenClusters {
    /// No clusters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a cluster.
    pub fn with_cluster(mut self, id: impl Into<String>, cluster: HsmCluster) -> Self {
        self.clusters.insert(id.into(), cluster);
        self
    }

    /// The clusters, by id.
    pub fn clusters(&self) -> &BTreeMap<String, HsmCluster> {
        &self.clusters
    }
}

/// What DescribeCustomKeyStores shows for a failed login or a missing token.
pub fn connection_error_code(e: &HsmError) -> ConnectionErrorCode {
    match e {
        HsmError::Login("CKR_PIN_LOCKED") => ConnectionErrorCode::UserLockedOut,
        HsmError::Login("CKR_USER_PIN_NOT_INITIALIZED") => ConnectionErrorCode::UserNotFound,
        HsmError::Login(_) => ConnectionErrorCode::InvalidCredentials,
        HsmError::Module { .. } | HsmError::TokenNotFound(_) => {
            ConnectionErrorCode::ClusterNotFound
        }
        HsmError::Unavailable { .. } | HsmError::Busy => ConnectionErrorCode::NetworkErrors,
        _ => ConnectionErrorCode::InternalError,
    }
}

impl kms_core::HsmClusters for TokenClusters {
    fn token_identity(&self, cluster_id: &str) -> Option<String> {
        self.clusters.get(cluster_id).map(HsmCluster::identity)
    }

    fn connect(
        &self,
        cluster_id: &str,
        password: &[u8],
    ) -> Result<Arc<dyn HsmKeyStore>, ConnectFailure> {
        let cluster = self
            .clusters
            .get(cluster_id)
            .ok_or_else(|| ConnectFailure {
                code: ConnectionErrorCode::ClusterNotFound,
                reason: format!("cluster {cluster_id} is not configured on this server"),
            })?;
        let pin = std::str::from_utf8(password).map_err(|_| ConnectFailure {
            code: ConnectionErrorCode::InvalidCredentials,
            reason: "the key store password is not UTF-8".into(),
        })?;
        let pin = AuthPin::from(pin);
        let config = HsmConfig::new(
            cluster.module.clone(),
            cluster.token.clone(),
            PinSource::KeyStorePassword,
        )
        .with_capabilities(cluster.capabilities.clone())
        .with_max_sessions(cluster.max_sessions);
        match TokenKeys::open_with_pin(config, pin) {
            Ok(keys) => {
                tracing::info!(cluster = %cluster_id, token = %cluster.identity(), "logged in to the cluster's token");
                Ok(Arc::new(keys))
            }
            Err(e) => Err(ConnectFailure {
                code: connection_error_code(&e),
                reason: e.to_string(),
            }),
        }
    }
}

/// Errors of a key store call on the wire: a tag mismatch is the caller's bad ciphertext; a key
/// missing from the token or a failing token is the service's problem (logged, not on the wire).
fn key_store_error(e: HsmError) -> KmsError {
    match e {
        HsmError::TagMismatch | HsmError::Malformed(_) => KmsError::InvalidCiphertext(
            "The ciphertext is invalid, or was not encrypted under this key with this encryption context."
                .into(),
        ),
        HsmError::KeyNotFound(label) => {
            tracing::error!(label = %label, "a custom key store key is missing from its token");
            KmsError::InvalidState(format!(
                "The key material of {label} is not in its custom key store's cluster."
            ))
        }
        e => {
            tracing::error!(error = %e, "custom key store token failed");
            let message = match e {
                HsmError::Busy => "Every HSM session of the custom key store is busy; try again.",
                _ => "The custom key store's HSM failed; the request was not carried out.",
            };
            KmsError::Internal(message.into())
        }
    }
}

impl HsmKeyStore for TokenKeys {
    fn create_key(&self, label: &str) -> kms_core::Result<()> {
        TokenKeys::create_key(self, label).map_err(key_store_error)
    }

    fn encrypt(&self, label: &str, aad: &[u8], plaintext: &[u8]) -> kms_core::Result<Vec<u8>> {
        TokenKeys::encrypt(self, label, aad, plaintext).map_err(key_store_error)
    }

    fn decrypt(
        &self,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> kms_core::Result<Zeroizing<Vec<u8>>> {
        TokenKeys::decrypt(self, label, aad, sealed).map_err(key_store_error)
    }

    fn destroy_key(&self, label: &str) -> kms_core::Result<()> {
        TokenKeys::destroy_key(self, label).map_err(key_store_error)
    }

    fn generate_random(&self, n: usize) -> kms_core::Result<Zeroizing<Vec<u8>>> {
        TokenKeys::generate_random(self, n).map_err(key_store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_specs() {
        let soft = Capabilities::softhsm2();
        let (id, c) = HsmCluster::parse(
            "cluster-abc123def45=/usr/lib/softhsm/libsofthsm2.so:tok:en",
            &soft,
        )
        .unwrap();
        assert_eq!(id, "cluster-abc123def45");
        assert_eq!(c.module, PathBuf::from("/usr/lib/softhsm/libsofthsm2.so"));
        assert_eq!(c.token, TokenSelector::Label("tok:en".into()));
        assert_eq!(c.capabilities, soft);
        // Capabilities of its own, on top of the default given.
        let (_, c) = HsmCluster::parse(
            "cluster-abc123def45=/m.so:tok;iv=token,gcm=no-iv-bits",
            &soft,
        )
        .unwrap();
        assert_eq!(c.token, TokenSelector::Label("tok".into()));
        assert_eq!(
            c.capabilities,
            soft.clone().apply("iv=token,gcm=no-iv-bits").unwrap()
        );
        assert!(HsmCluster::parse("cluster-abc123def45=/m.so:tok;iv=nope", &soft).is_err());
        for bad in [
            "cluster-abc123def45",
            "cluster-abc123def45=/m.so",
            "cluster-abc=/m.so:t",
            "nope-abc123def45=/m.so:t",
            "cluster-=/m.so:t",
            "cluster-a_b123def45=/m.so:t",
            "cluster-abc123def45=:t",
            "cluster-abc123def45=/m.so:",
        ] {
            assert!(HsmCluster::parse(bad, &soft).is_err(), "{bad}");
        }
    }

    #[test]
    fn login_failures_have_aws_codes() {
        assert_eq!(
            connection_error_code(&HsmError::Login("CKR_PIN_INCORRECT")),
            ConnectionErrorCode::InvalidCredentials
        );
        assert_eq!(
            connection_error_code(&HsmError::Login("CKR_PIN_LOCKED")),
            ConnectionErrorCode::UserLockedOut
        );
        assert_eq!(
            connection_error_code(&HsmError::TokenNotFound("x".into())),
            ConnectionErrorCode::ClusterNotFound
        );
        assert_eq!(
            connection_error_code(&HsmError::Module {
                module: "m".into(),
                reason: "r".into()
            }),
            ConnectionErrorCode::ClusterNotFound
        );
    }
}
