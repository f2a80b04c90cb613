//! The custom key store operations (CreateCustomKeyStore, DescribeCustomKeyStores,
//! ConnectCustomKeyStore, DisconnectCustomKeyStore, UpdateCustomKeyStore, DeleteCustomKeyStore),
//! this node's logins to the stores' tokens, and what a key in a custom key store needs from its
//! store (its token, its shown state, its cluster). The traits a cluster implements and the
//! connection states are in [`crate::custom_key_store`].

use std::sync::Arc;

use zeroize::Zeroizing;

use super::root::{off_runtime, password_aad};
use super::validate::{
    check_custom_key_store_id, check_length, decode_marker, page, page_limit, required,
};
use super::{secs, Kms, LoadedKey};
use crate::api::*;
use crate::custom_key_store::{
    ConnectFailure, ConnectionErrorCode, ConnectionState, HsmClusters, HsmKeyStore,
};
use crate::error::{KmsError, Result};
use crate::material::{self, RootOfTrust};
use crate::now_millis;
use crate::store::{CustomKeyStoreRow, NewStore, StoredKeyState};

const CLOUDHSM: &str = "AWS_CLOUDHSM";

fn not_found(what: &str) -> KmsError {
    KmsError::CustomKeyStoreNotFound(format!("Custom key store {what} does not exist."))
}

fn check_name(name: &str, field: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > 256 {
        return Err(KmsError::constraint(
            name,
            field,
            "Member must have length between 1 and 256",
        ));
    }
    Ok(())
}

/// This node's login to a store's token, with what it logged in with: a login is used only for the
/// row it was made from (a connection racing a disconnect, a password change and a reconnection
/// must not lend the reconnection its login under the old password).
pub(super) struct Login {
    cluster_id: String,
    /// As stored (wrapped under the root of trust): every password change wraps anew.
    wrapped_password: Vec<u8>,
    token: Arc<dyn HsmKeyStore>,
}

impl Login {
    fn is_for(&self, row: &CustomKeyStoreRow) -> bool {
        self.cluster_id == row.cluster_id && self.wrapped_password == row.wrapped_password
    }
}

fn check_password(p: &KeyStorePassword) -> Result<()> {
    let n = p.expose().chars().count();
    if !(7..=32).contains(&n) {
        // Never echo the value.
        return Err(KmsError::constraint(
            "***",
            "keyStorePassword",
            "Member must have length between 7 and 32",
        ));
    }
    Ok(())
}

fn check_type(t: Option<&str>) -> Result<()> {
    match t {
        None | Some(CLOUDHSM) => Ok(()),
        Some("EXTERNAL_KEY_STORE") => Err(KmsError::UnsupportedOperation(
            "External key stores (XKS) are not supported by this server; use AWS_CLOUDHSM.".into(),
        )),
        Some(t) => Err(KmsError::constraint(
            t,
            "customKeyStoreType",
            "Member must satisfy enum value set: [AWS_CLOUDHSM, EXTERNAL_KEY_STORE]",
        )),
    }
}

/// Whether a CreateCustomKeyStore or UpdateCustomKeyStore request sets an `XksProxy*` member.
macro_rules! sets_xks_proxy {
    ($req:expr) => {
        $req.xks_proxy_uri_endpoint.is_some()
            || $req.xks_proxy_uri_path.is_some()
            || $req.xks_proxy_vpc_endpoint_service_name.is_some()
            || $req.xks_proxy_connectivity.is_some()
    };
}

/// The `XksProxy*` members, which only an external key store takes.
fn refuse_xks_proxy(given: bool) -> Result<()> {
    if given {
        return Err(KmsError::Validation(
            "XksProxy* parameters are valid only for an EXTERNAL_KEY_STORE.".into(),
        ));
    }
    Ok(())
}

fn new_store_id() -> Result<String> {
    let mut r = [0u8; 9];
    material::random_bytes(&mut r)?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("cks-{}", &hex[..17]))
}

impl Kms {
    /// The clusters, or `CloudHsmClusterNotFound` when none are configured.
    fn clusters(&self) -> Result<&Arc<dyn HsmClusters>> {
        self.clusters.as_ref().ok_or_else(|| {
            KmsError::CloudHsmClusterNotFound(
                "No CloudHSM cluster is configured on this server (envelope serve --hsm-cluster)."
                    .into(),
            )
        })
    }

    fn cluster_identity(&self, cluster_id: &str) -> Result<String> {
        self.clusters()?.token_identity(cluster_id).ok_or_else(|| {
            KmsError::CloudHsmClusterNotFound(format!(
                "Cluster {cluster_id} is not configured on this server."
            ))
        })
    }

    /// A store's row; `cached` allows one read within the cache TTL.
    pub(crate) async fn custom_key_store_row(
        &self,
        id: &str,
        cached: bool,
    ) -> Result<CustomKeyStoreRow> {
        check_custom_key_store_id(id)?;
        if cached {
            if let Some(row) = self.cache.store_rows.fresh(id, self.config.cache_ttl) {
                return Ok(row);
            }
        }
        let ticket = self.cache.store_rows.ticket(id);
        let row = self
            .store
            .get_custom_key_store(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        self.cache
            .store_rows
            .put(id.to_string(), row.clone(), ticket);
        Ok(row)
    }

    /// A store of the caller's account, for the operations on stores and CreateKey: another
    /// account's store is CustomKeyStoreNotFoundException, as one that does not exist. (A key in
    /// a store is used through `custom_key_store_row`, whoever the key's policy lets use it.)
    async fn own_custom_key_store_row(&self, id: &str) -> Result<CustomKeyStoreRow> {
        let row = self.custom_key_store_row(id, false).await?;
        if row.account_id != self.account() {
            return Err(not_found(id));
        }
        Ok(row)
    }

    fn forget_store(&self, id: &str) {
        self.cache.store_rows.forget(id);
        self.log_out(id);
    }

    /// Drops this node's login to a store's token.
    fn log_out(&self, id: &str) {
        if let Ok(mut map) = self.connections.write() {
            map.remove(id);
        }
    }

    /// Logs in to the store's cluster (this node's connection), unless already logged in with
    /// the row's cluster and password.
    async fn open_connection(
        &self,
        row: &CustomKeyStoreRow,
    ) -> std::result::Result<Arc<dyn HsmKeyStore>, ConnectFailure> {
        let connected = || {
            self.connections.read().ok().and_then(|m| {
                m.get(&row.id)
                    .filter(|login| login.is_for(row))
                    .map(|login| login.token.clone())
            })
        };
        // Every request on a store key comes here: the logged-in case takes no lock but the map's.
        if let Some(c) = connected() {
            return Ok(c);
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = connected() {
            return Ok(c);
        }
        let Some(clusters) = self.clusters.clone() else {
            return Err(ConnectFailure {
                code: ConnectionErrorCode::ClusterNotFound,
                reason: "no CloudHSM cluster is configured on this server".into(),
            });
        };
        let (aad, wrapped, cluster) = (
            password_aad(&row.id),
            row.wrapped_password.clone(),
            row.cluster_id.clone(),
        );
        let internal = |reason: String| ConnectFailure {
            code: ConnectionErrorCode::InternalError,
            reason,
        };
        let connected = off_runtime(&self.root, move |root: &dyn RootOfTrust| {
            let password = root.unwrap(&aad, &wrapped)?;
            Ok(clusters.connect(&cluster, &password))
        })
        .await
        .map_err(|e| internal(format!("cannot unwrap the key store password: {e}")))??;
        if let Ok(mut map) = self.connections.write() {
            map.insert(
                row.id.clone(),
                Login {
                    cluster_id: row.cluster_id.clone(),
                    wrapped_password: row.wrapped_password.clone(),
                    token: connected.clone(),
                },
            );
        }
        Ok(connected)
    }

    /// The token holding a key of a custom key store, if the store is connected; AWS's
    /// `KMSInvalidStateException` (the key is `Unavailable`) if not.
    pub(crate) async fn token_of(&self, key: &LoadedKey) -> Result<Arc<dyn HsmKeyStore>> {
        let Some(store_id) = &key.record.custom_key_store_id else {
            return Err(KmsError::Internal(
                "The key is not in a custom key store.".into(),
            ));
        };
        let row = self.custom_key_store_row(store_id, true).await?;
        if row.connection_state != ConnectionState::Connected {
            self.log_out(store_id);
            return Err(KmsError::InvalidState(format!(
                "{} is unavailable: its custom key store {store_id} is not connected.",
                key.arn
            )));
        }
        self.open_connection(&row).await.map_err(|f| {
            tracing::warn!(store = %store_id, code = f.code.as_str(), reason = %f.reason,
                "cannot log in to the custom key store's cluster");
            KmsError::InvalidState(format!(
                "{} is unavailable: this server cannot log in to its custom key store {store_id} ({}).",
                key.arn,
                f.code.as_str()
            ))
        })
    }

    /// The key state AWS shows: `Unavailable` while the store is not connected (unless pending
    /// deletion).
    pub(crate) async fn shown_state(&self, rec: &crate::store::KeyRow) -> Result<KeyState> {
        if let Some(store_id) = &rec.custom_key_store_id {
            if rec.state != StoredKeyState::PendingDeletion {
                let row = self.custom_key_store_row(store_id, false).await?;
                if row.connection_state != ConnectionState::Connected {
                    return Ok(KeyState::Unavailable);
                }
            }
        }
        Ok(rec.state.into())
    }

    /// The cluster of a key's custom key store, for its metadata.
    pub(crate) async fn cluster_of(&self, rec: &crate::store::KeyRow) -> Result<Option<String>> {
        match &rec.custom_key_store_id {
            Some(id) => Ok(Some(self.custom_key_store_row(id, true).await?.cluster_id)),
            None => Ok(None),
        }
    }

    /// The token of a store that must be CONNECTED (`needs` says for what, when it is not): for a
    /// new key (CreateKey with a `CustomKeyStoreId`) and for GenerateRandom.
    pub(crate) async fn connected_token(
        &self,
        store_id: &str,
        needs: &str,
    ) -> Result<Arc<dyn HsmKeyStore>> {
        let row = self.own_custom_key_store_row(store_id).await?;
        if row.connection_state != ConnectionState::Connected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {store_id} is {}; {needs}.",
                row.connection_state.as_str()
            )));
        }
        let token = self.open_connection(&row).await.map_err(|f| {
            tracing::warn!(store = %store_id, code = f.code.as_str(), reason = %f.reason,
                "cannot log in to the custom key store's cluster");
            KmsError::CustomKeyStoreInvalidState(format!(
                "This server cannot log in to custom key store {store_id} ({}).",
                f.code.as_str()
            ))
        })?;
        Ok(token)
    }

    /// Writes `f`'s change to a store under optimistic concurrency, retrying on a conflict.
    async fn modify_store(
        &self,
        id: &str,
        mut f: impl FnMut(&mut CustomKeyStoreRow) -> Result<bool>,
    ) -> Result<CustomKeyStoreRow> {
        for _ in 0..32 {
            let mut row = self.own_custom_key_store_row(id).await?;
            if !f(&mut row)? {
                return Ok(row);
            }
            let ok = self.store.update_custom_key_store(&row).await?;
            self.cache.store_rows.forget(id);
            if ok {
                row.revision += 1;
                return Ok(row);
            }
        }
        Err(KmsError::Internal(
            "The custom key store is being changed concurrently; try again.".into(),
        ))
    }

    /// Refuses a cluster that backs another store (by id, or by being the same token).
    async fn check_cluster_free(&self, cluster_id: &str, except: Option<&str>) -> Result<String> {
        let identity = self.cluster_identity(cluster_id)?;
        let mut after: Option<String> = None;
        loop {
            let rows = self
                .store
                .list_custom_key_stores(None, None, after.as_deref(), 100)
                .await?;
            for r in &rows {
                if Some(r.id.as_str()) == except {
                    continue;
                }
                let same = r.cluster_id == cluster_id
                    || self.clusters()?.token_identity(&r.cluster_id).as_deref()
                        == Some(identity.as_str());
                if same {
                    return Err(self.cluster_in_use(cluster_id, &r.id, &r.account_id));
                }
            }
            if rows.len() < 100 {
                return Ok(identity);
            }
            after = rows.last().map(|r| r.id.clone());
        }
    }

    /// CloudHsmClusterInUseException: `cluster_id` backs store `store_id` of `account_id`, named
    /// only to its own account.
    fn cluster_in_use(&self, cluster_id: &str, store_id: &str, account_id: &str) -> KmsError {
        KmsError::CloudHsmClusterInUse(if account_id == self.account() {
            format!("Cluster {cluster_id} is already associated with custom key store {store_id}.")
        } else {
            format!("Cluster {cluster_id} is already associated with a custom key store.")
        })
    }

    async fn wrap_password(&self, store_id: &str, p: &KeyStorePassword) -> Result<Vec<u8>> {
        let (aad, p) = (password_aad(store_id), p.clone());
        off_runtime(&self.root, move |root| {
            root.wrap(&aad, p.expose().as_bytes())
        })
        .await
    }

    fn entry(&self, r: CustomKeyStoreRow) -> CustomKeyStoreEntry {
        CustomKeyStoreEntry {
            custom_key_store_id: r.id,
            custom_key_store_name: r.name,
            cloud_hsm_cluster_id: r.cluster_id,
            trust_anchor_certificate: r.trust_anchor,
            connection_error_code: if r.connection_state == ConnectionState::Failed {
                r.connection_error
            } else {
                None
            },
            connection_state: r.connection_state.as_str().into(),
            creation_date: secs(r.created_at),
            custom_key_store_type: CLOUDHSM.into(),
        }
    }

    // ----- the six operations -------------------------------------------------------------------

    /// CreateCustomKeyStore (AWS_CLOUDHSM): the store starts DISCONNECTED; the password is not
    /// tried until ConnectCustomKeyStore.
    pub async fn create_custom_key_store(
        &self,
        req: CreateCustomKeyStoreRequest,
    ) -> Result<CreateCustomKeyStoreResponse> {
        let account = self.account();
        let name = required(req.custom_key_store_name, "customKeyStoreName")?;
        check_name(&name, "customKeyStoreName")?;
        check_type(req.custom_key_store_type.as_deref())?;
        refuse_xks_proxy(sets_xks_proxy!(req))?;
        let cluster_id = required(req.cloud_hsm_cluster_id, "cloudHsmClusterId")?;
        let trust_anchor = required(req.trust_anchor_certificate, "trustAnchorCertificate")?;
        if trust_anchor.trim().is_empty() || trust_anchor.len() > 5000 {
            return Err(KmsError::constraint(
                "...",
                "trustAnchorCertificate",
                "Member must have length between 1 and 5000",
            ));
        }
        let password = required(req.key_store_password, "keyStorePassword")?;
        check_password(&password)?;
        if !self
            .store
            .list_custom_key_stores(Some(&account), Some(&name), None, 1)
            .await?
            .is_empty()
        {
            return Err(KmsError::CustomKeyStoreNameInUse(format!(
                "A custom key store named {name} already exists."
            )));
        }
        let identity = self.check_cluster_free(&cluster_id, None).await?;
        // A first look; the insert counts again, atomically.
        let quota = self.config.quotas.custom_key_stores_per_account;
        if self.store.count_custom_key_stores(&account).await? >= quota {
            return Err(stores_full(&account, quota));
        }
        let id = new_store_id()?;
        let row = CustomKeyStoreRow {
            wrapped_password: self.wrap_password(&id, &password).await?,
            id: id.clone(),
            account_id: account,
            name,
            cluster_id,
            trust_anchor,
            connection_state: ConnectionState::Disconnected,
            connection_error: None,
            created_at: now_millis(),
            revision: 0,
        };
        // Checked again where the row is written: a create racing this one may have taken the
        // cluster (or the last place) since.
        let clusters = self.clusters()?;
        let same = |other: &str| {
            other == row.cluster_id
                || clusters.token_identity(other).as_deref() == Some(identity.as_str())
        };
        match self
            .store
            .insert_custom_key_store(&row, quota, &same)
            .await?
        {
            NewStore::Created => {}
            NewStore::Full => return Err(stores_full(&row.account_id, quota)),
            NewStore::ClusterInUse {
                store_id,
                account_id,
            } => return Err(self.cluster_in_use(&row.cluster_id, &store_id, &account_id)),
        }
        tracing::info!(store = %id, cluster = %row.cluster_id, "custom key store created");
        Ok(CreateCustomKeyStoreResponse {
            custom_key_store_id: id,
        })
    }

    /// DescribeCustomKeyStores: one by id or name, or all, paged.
    pub async fn describe_custom_key_stores(
        &self,
        req: DescribeCustomKeyStoresRequest,
    ) -> Result<DescribeCustomKeyStoresResponse> {
        let limit = page_limit(req.limit, 1000, 1000)?;
        if let Some(name) = &req.custom_key_store_name {
            check_length(name, 1, 256, "customKeyStoreName")?;
        }
        if let Some(id) = &req.custom_key_store_id {
            let row = self.own_custom_key_store_row(id).await?;
            if req
                .custom_key_store_name
                .as_deref()
                .is_some_and(|n| n != row.name)
            {
                return Err(not_found(id));
            }
            return Ok(DescribeCustomKeyStoresResponse {
                custom_key_stores: vec![self.entry(row)],
                truncated: false,
                next_marker: None,
            });
        }
        let after = decode_marker(req.marker.as_deref())?;
        let mut rows = self
            .store
            .list_custom_key_stores(
                Some(&self.account()),
                req.custom_key_store_name.as_deref(),
                after.as_deref(),
                limit + 1,
            )
            .await?;
        if let (Some(name), true) = (&req.custom_key_store_name, rows.is_empty()) {
            return Err(not_found(name));
        }
        let (truncated, next_marker) = page(&mut rows, limit, |r| r.id.clone());
        Ok(DescribeCustomKeyStoresResponse {
            custom_key_stores: rows.into_iter().map(|r| self.entry(r)).collect(),
            truncated,
            next_marker,
        })
    }

    /// ConnectCustomKeyStore: logs in to the cluster's token. As with AWS, the call succeeds once the
    /// attempt is made; a failed attempt shows as `FAILED` with a `ConnectionErrorCode` in
    /// DescribeCustomKeyStores.
    pub async fn connect_custom_key_store(&self, req: CustomKeyStoreIdRequest) -> Result<Empty> {
        let id = required(req.custom_key_store_id, "customKeyStoreId")?;
        let row = self
            .modify_store(&id, |r| match r.connection_state {
                s @ (ConnectionState::Disconnecting | ConnectionState::Failed) => {
                    Err(KmsError::CustomKeyStoreInvalidState(format!(
                        "Custom key store {id} is {}; disconnect it before connecting it again.",
                        s.as_str()
                    )))
                }
                ConnectionState::Connected => Ok(false),
                ConnectionState::Connecting | ConnectionState::Disconnected => {
                    r.connection_state = ConnectionState::Connecting;
                    r.connection_error = None;
                    Ok(true)
                }
            })
            .await?;
        let was_connected = row.connection_state == ConnectionState::Connected;
        if !was_connected {
            // A fresh login: a session from an earlier connection may hold an old password.
            self.log_out(&id);
        }
        let (state, code) = match self.open_connection(&row).await {
            Ok(_) if was_connected => return Ok(Empty {}),
            Ok(_) => (ConnectionState::Connected, None),
            Err(f) => {
                tracing::warn!(store = %id, code = f.code.as_str(), reason = %f.reason,
                    "custom key store connection failed");
                (ConnectionState::Failed, Some(f.code.as_str().to_string()))
            }
        };
        let expected = if was_connected {
            ConnectionState::Connected
        } else {
            ConnectionState::Connecting
        };
        self.modify_store(&id, |r| {
            // Changed meanwhile (disconnected, say, or disconnected and connecting again): leave it
            // so.
            if r.connection_state != expected || r.revision != row.revision {
                return Ok(false);
            }
            r.connection_state = state;
            r.connection_error = code.clone();
            Ok(true)
        })
        .await?;
        if state != ConnectionState::Connected {
            self.log_out(&id);
        } else {
            tracing::info!(store = %id, "custom key store connected");
        }
        Ok(Empty {})
    }

    /// DisconnectCustomKeyStore: logs out; the store's keys become `Unavailable` at once on this
    /// node, and on others within the cache TTL.
    pub async fn disconnect_custom_key_store(&self, req: CustomKeyStoreIdRequest) -> Result<Empty> {
        let id = required(req.custom_key_store_id, "customKeyStoreId")?;
        self.modify_store(&id, |r| match r.connection_state {
            s @ (ConnectionState::Disconnected | ConnectionState::Disconnecting) => {
                Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is already {}.",
                    s.as_str()
                )))
            }
            _ => {
                r.connection_state = ConnectionState::Disconnected;
                r.connection_error = None;
                Ok(true)
            }
        })
        .await?;
        self.forget_store(&id);
        tracing::info!(store = %id, "custom key store disconnected");
        Ok(Empty {})
    }

    /// UpdateCustomKeyStore: the name in any state; the password and cluster only while
    /// DISCONNECTED. A new cluster must be the same token under another id.
    pub async fn update_custom_key_store(&self, req: UpdateCustomKeyStoreRequest) -> Result<Empty> {
        let id = required(req.custom_key_store_id, "customKeyStoreId")?;
        refuse_xks_proxy(sets_xks_proxy!(req))?;
        if let Some(n) = &req.new_custom_key_store_name {
            check_name(n, "newCustomKeyStoreName")?;
        }
        if let Some(p) = &req.key_store_password {
            check_password(p)?;
        }
        let current = self.own_custom_key_store_row(&id).await?;
        let changes_connection =
            req.key_store_password.is_some() || req.cloud_hsm_cluster_id.is_some();
        if changes_connection && current.connection_state != ConnectionState::Disconnected {
            return Err(KmsError::CustomKeyStoreInvalidState(format!(
                "Custom key store {id} is {}; disconnect it before changing its password or cluster.",
                current.connection_state.as_str()
            )));
        }
        if let Some(cluster) = &req.cloud_hsm_cluster_id {
            if *cluster != current.cluster_id {
                let identity = self.check_cluster_free(cluster, Some(&id)).await?;
                if self
                    .clusters()?
                    .token_identity(&current.cluster_id)
                    .as_deref()
                    != Some(identity.as_str())
                {
                    return Err(KmsError::CloudHsmClusterNotRelated(format!(
                        "Cluster {cluster} is not related to cluster {} of custom key store {id}: \
                         it is another token.",
                        current.cluster_id
                    )));
                }
            }
        }
        if let Some(n) = &req.new_custom_key_store_name {
            if *n != current.name
                && !self
                    .store
                    .list_custom_key_stores(Some(&current.account_id), Some(n), None, 1)
                    .await?
                    .is_empty()
            {
                return Err(KmsError::CustomKeyStoreNameInUse(format!(
                    "A custom key store named {n} already exists."
                )));
            }
        }
        let wrapped = match &req.key_store_password {
            Some(p) => Some(self.wrap_password(&id, p).await?),
            None => None,
        };
        self.modify_store(&id, |r| {
            let state = r.connection_state;
            if changes_connection && state != ConnectionState::Disconnected {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is {}; disconnect it first.",
                    r.connection_state.as_str()
                )));
            }
            // As AWS: a new name while CONNECTED or DISCONNECTED, not while a connection is changing
            // or has failed.
            if req.new_custom_key_store_name.is_some()
                && !matches!(
                    state,
                    ConnectionState::Connected | ConnectionState::Disconnected
                )
            {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is {}; it can be renamed only while CONNECTED or \
                     DISCONNECTED.",
                    r.connection_state.as_str()
                )));
            }
            if let Some(n) = &req.new_custom_key_store_name {
                r.name = n.clone();
            }
            if let Some(c) = &req.cloud_hsm_cluster_id {
                r.cluster_id = c.clone();
            }
            if let Some(w) = &wrapped {
                r.wrapped_password = w.clone();
            }
            Ok(true)
        })
        .await?;
        self.forget_store(&id);
        Ok(Empty {})
    }

    /// DeleteCustomKeyStore: only a DISCONNECTED store that holds no keys.
    pub async fn delete_custom_key_store(&self, req: CustomKeyStoreIdRequest) -> Result<Empty> {
        let id = required(req.custom_key_store_id, "customKeyStoreId")?;
        for _ in 0..32 {
            let row = self.own_custom_key_store_row(&id).await?;
            if row.connection_state != ConnectionState::Disconnected {
                return Err(KmsError::CustomKeyStoreInvalidState(format!(
                    "Custom key store {id} is {}; disconnect it before deleting it.",
                    row.connection_state.as_str()
                )));
            }
            if self.store.delete_custom_key_store(&row).await? {
                self.forget_store(&id);
                tracing::info!(store = %id, "custom key store deleted");
                return Ok(Empty {});
            }
        }
        Err(KmsError::Internal(
            "The custom key store is being changed concurrently; try again.".into(),
        ))
    }

    /// GenerateRandom with a `CustomKeyStoreId`: random bytes from the store's token.
    pub(crate) async fn random_from_store(
        &self,
        store_id: &str,
        n: usize,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let token = self
            .connected_token(store_id, "GenerateRandom needs it CONNECTED")
            .await?;
        in_token(token, move |t| t.generate_random(n)).await
    }
}

/// Runs a call into a token on the blocking pool.
pub(crate) async fn in_token<T: Send + 'static>(
    token: Arc<dyn HsmKeyStore>,
    f: impl FnOnce(&dyn HsmKeyStore) -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || f(token.as_ref()))
        .await
        .map_err(|_| KmsError::Internal("The HSM call did not complete.".into()))?
}

/// LimitExceededException for an account at its custom key stores quota.
fn stores_full(account: &str, quota: i64) -> KmsError {
    KmsError::LimitExceeded(format!(
        "Account {account} has {quota} custom key stores, its quota."
    ))
}
