//! An endpoint in this process, on loopback, over a throwaway store: for the tests of code that talks
//! to a KMS endpoint (keyrings, pipelines), here and in other crates.

use std::net::SocketAddr;
use std::sync::Arc;

use kms_core::{KeyMaterial, Kms, KmsConfig, KmsError, SoftwareRootKey, Store};
use zeroize::Zeroizing;

use crate::{serve, App, Limits};

/// A running endpoint on `127.0.0.1:<free port>` with a SQLite store in a temporary directory, a
/// random root key and one principal. Stops (and removes its store) when dropped.
pub struct LocalEndpoint {
    addr: SocketAddr,
    access_key_id: String,
    secret_access_key: Zeroizing<String>,
    kms: Arc<Kms>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for LocalEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEndpoint")
            .field("addr", &self.addr)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl LocalEndpoint {
    /// Starts one on the current tokio runtime, with the default limits.
    pub async fn start() -> Result<Self, KmsError> {
        Self::start_with(Limits::default()).await
    }

    /// Starts one with chosen limits.
    pub async fn start_with(limits: Limits) -> Result<Self, KmsError> {
        let internal = |e: std::io::Error| KmsError::Internal(format!("local endpoint: {e}"));
        let dir = tempfile::tempdir().map_err(internal)?;
        let store = Store::connect(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("db").display()
        ))
        .await?;
        let root = Arc::new(SoftwareRootKey::new(KeyMaterial::generate()?));
        let kms = Arc::new(Kms::open(store, root, KmsConfig::default()).await?);
        let (info, secret) = kms.create_principal("tester", None).await?;
        let secret = secret.ok_or_else(|| KmsError::Internal("no secret generated".into()))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(internal)?;
        let addr = listener.local_addr().map_err(internal)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            App::new(kms.clone(), limits),
            None,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr,
            access_key_id: info.access_key_id,
            secret_access_key: secret,
            kms,
            stop: Some(stop),
            _dir: dir,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The principal's access key id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The principal's secret access key.
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The key service behind the endpoint.
    pub fn kms(&self) -> &Arc<Kms> {
        &self.kms
    }
}

impl Drop for LocalEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
