//! [`Kms`]: the key service. Each public async method is one KMS operation; [`Kms::execute`] is the
//! JSON 1.1 entry, with the one dispatch table (`ops!`) and the one audit point, so every operation
//! enters once.
//!
//! The operations live one family a file, each an `impl Kms` block: `keys` (create, describe, list,
//! the state changes, and the checks of a key's state), `key_kinds` (operations of key kinds this
//! server does not make, refused as AWS refuses them for a symmetric key), `crypto` (Encrypt,
//! Decrypt, ReEncrypt, data keys, GenerateRandom), `aliases`, `tags`, `rotation`, `grants`, `principals` (the
//! identities SigV4 knows), `custom_key_stores` (the CloudHSM key store operations and this node's
//! logins to their tokens) and `sweeper` (deletion and rotation when due). Beside them: `cache` (what
//! is kept between calls), `root` (what each wrapped secret is bound to, the root check value,
//! re-wrapping) and `validate` (request checks the families share).

mod aliases;
mod authorize;
mod cache;
mod crypto;
mod custom_key_stores;
mod explain;
mod grants;
mod key_kinds;
mod key_policies;
mod keys;
mod principals;
mod root;
mod rotation;
mod sweeper;
mod tags;
mod validate;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::api::*;
use crate::audit::{AuditLog, AuditRecord, Caller};
use crate::custom_key_store::HsmClusters;
use crate::error::{KmsError, Result};
use crate::ids::{Accepts, Partition};
use crate::material::RootOfTrust;
use crate::now_millis;
use crate::store::Store;

use cache::{Caches, LoadedKey};
use key_kinds::ASYMMETRIC_AND_HMAC_OPERATIONS;
use root::{off_runtime, ROOT_CHECK, ROOT_CHECK_AAD, ROOT_CHECK_VALUE};

pub use crypto::{MAX_CIPHERTEXT_BLOB, MAX_ENCRYPT_PLAINTEXT};
pub use explain::Explanation;
pub(crate) use principals::generate_access_key;
pub use principals::{InitialPolicy, PrincipalInfo};
pub(crate) use root::{SESSION_TOKEN_KEY, SESSION_TOKEN_KEY_AAD};

/// The operations [`Kms::execute`] runs through one table: the operation's name, the method and
/// its request shape (and whether it is given the caller), the member naming its key (for the
/// audit log), and what it is authorized on: `key(M)` the key member M names (`key_only`: not by
/// alias), `blob(M)` the key the ciphertext M names, `account` the caller's account (identity
/// policies only), the others a method of their own in `authorize.rs`. `dispatch` expands it
/// into its `match`, and [`operations`] lists its names, so the two cannot disagree.
macro_rules! kms_operations {
    ($callback:ident) => {
        $callback! {
        "CreateKey" => create_key(CreateKeyRequest); account,
        "DescribeKey" => describe_key(KeyIdRequest) key key_id; key(key_id),
        "ListKeys" => list_keys(ListKeysRequest); account,
        "UpdateKeyDescription" => update_key_description(UpdateKeyDescriptionRequest) key key_id; key_only(key_id),
        "EnableKey" => enable_key(KeyIdRequest) key key_id; key_only(key_id),
        "DisableKey" => disable_key(KeyIdRequest) key key_id; key_only(key_id),
        "ScheduleKeyDeletion" => schedule_key_deletion(ScheduleKeyDeletionRequest) key key_id; key_only(key_id),
        "CancelKeyDeletion" => cancel_key_deletion(KeyIdRequest) key key_id; key_only(key_id),
        "GetKeyPolicy" => get_key_policy(GetKeyPolicyRequest) key key_id; key_only(key_id),
        "PutKeyPolicy" => put_key_policy(PutKeyPolicyRequest) key key_id; key_only(key_id),
        "ListKeyPolicies" => list_key_policies(ListKeyPoliciesRequest) key key_id; key_only(key_id),
        "CreateAlias" => create_alias(AliasRequest) key target_key_id; alias,
        "UpdateAlias" => update_alias(AliasRequest) key target_key_id; alias,
        "DeleteAlias" => delete_alias(DeleteAliasRequest) key alias_name; delete_alias,
        "ListAliases" => list_aliases(ListAliasesRequest) key key_id; account,
        "Encrypt" => encrypt(EncryptRequest) key key_id; key(key_id),
        "Decrypt" => decrypt(DecryptRequest) key key_id; blob(ciphertext_blob),
        "ReEncrypt" => re_encrypt(ReEncryptRequest) key destination_key_id; re_encrypt,
        "GenerateDataKey" => generate_data_key(GenerateDataKeyRequest) key key_id; key(key_id),
        "GenerateDataKeyWithoutPlaintext" => generate_data_key_without_plaintext(GenerateDataKeyRequest) key key_id; key(key_id),
        "GenerateRandom" => generate_random(GenerateRandomRequest); account,
        "EnableKeyRotation" => enable_key_rotation(EnableKeyRotationRequest) key key_id; key_only(key_id),
        "DisableKeyRotation" => disable_key_rotation(KeyIdRequest) key key_id; key_only(key_id),
        "GetKeyRotationStatus" => get_key_rotation_status(KeyIdRequest) key key_id; key_only(key_id),
        "RotateKeyOnDemand" => rotate_key_on_demand(KeyIdRequest) key key_id; key_only(key_id),
        "ListKeyRotations" => list_key_rotations(ListKeyRotationsRequest) key key_id; key_only(key_id),
        "TagResource" => tag_resource(TagResourceRequest) key key_id; key_only(key_id),
        "UntagResource" => untag_resource(UntagResourceRequest) key key_id; key_only(key_id),
        "ListResourceTags" => list_resource_tags(ListResourceTagsRequest) key key_id; key_only(key_id),
        "GetParametersForImport" => import_key_material(KeyIdRequest) key key_id; key_only(key_id),
        "ImportKeyMaterial" => import_key_material(KeyIdRequest) key key_id; key_only(key_id),
        "DeleteImportedKeyMaterial" => import_key_material(KeyIdRequest) key key_id; key_only(key_id),
        "CreateCustomKeyStore" => create_custom_key_store(CreateCustomKeyStoreRequest); account,
        "DescribeCustomKeyStores" => describe_custom_key_stores(DescribeCustomKeyStoresRequest) key custom_key_store_id; account,
        "ConnectCustomKeyStore" => connect_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id; account,
        "DisconnectCustomKeyStore" => disconnect_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id; account,
        "UpdateCustomKeyStore" => update_custom_key_store(UpdateCustomKeyStoreRequest) key custom_key_store_id; account,
        "DeleteCustomKeyStore" => delete_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id; account,
        "CreateGrant" => create_grant(CreateGrantRequest, caller) key key_id; key_only(key_id),
        "ListGrants" => list_grants(ListGrantsRequest) key key_id; key_only(key_id),
        "ListRetirableGrants" => list_retirable_grants(ListRetirableGrantsRequest); retiring_principal,
        // RetireGrant's decision weighs the grant itself (its grantee and retiring principal):
        // the operation asks `Kms::authorize` once it has the grant.
        "RetireGrant" => retire_grant(RetireGrantRequest, caller) key key_id; decided_by_operation,
        "RevokeGrant" => revoke_grant(RevokeGrantRequest) key key_id; key_only(key_id),
        }
    };
}

macro_rules! operation_names {
    ($($name:literal => $method:ident($req:ty $(, $caller:ident)?) $(key $field:ident)? ; $scope:ident $(($member:ident))?),* $(,)?) => {
        /// The operations of the table, in its order.
        const TABLE_OPERATIONS: &[&str] = &[$($name),*];
    };
}
kms_operations!(operation_names);

/// Every operation [`Kms::execute`] knows: those it runs, then those of key kinds it refuses for
/// its symmetric keys (`Sign`, `GenerateMac`, … answered as AWS answers them for such a key).
pub fn operations() -> impl Iterator<Item = &'static str> {
    TABLE_OPERATIONS
        .iter()
        .chain(ASYMMETRIC_AND_HMAC_OPERATIONS.iter())
        .copied()
}

tokio::task_local! {
    /// Who is calling, for the duration of one [`Kms::execute`].
    static CALLER: Caller;
    /// The authorization decisions taken for the current call, for its audit record.
    static DECISIONS: std::cell::RefCell<Vec<crate::audit::AuditDecision>>;
}

const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
const DAY_MS: i64 = 86_400_000;

/// Settings of a [`Kms`].
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Region and account of every ARN.
    pub partition: Partition,
    /// How long unwrapped key material, aliases and principal secrets are cached. With several nodes
    /// on one database, a state change made on one node reaches the others within this TTL plus
    /// one second (an expired entry serves while one caller reloads it).
    pub cache_ttl: Duration,
    /// AWS's resource quotas (LimitExceededException beyond them).
    pub quotas: ResourceQuotas,
}

/// How many of each resource an account (or a key) may have: AWS's default resource quotas,
/// which AWS adjusts on request and an operator here sets with `envelope serve --resource-quota`.
/// Grants per key (50,000) and on-demand rotations per key (25, not adjustable) are fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceQuotas {
    /// Customer managed keys per account, whatever their state (100,000).
    pub keys_per_account: i64,
    /// Aliases per key (50).
    pub aliases_per_key: i64,
    /// Custom key stores per account (10).
    pub custom_key_stores_per_account: i64,
}

impl Default for ResourceQuotas {
    fn default() -> Self {
        Self {
            keys_per_account: 100_000,
            aliases_per_key: 50,
            custom_key_stores_per_account: 10,
        }
    }
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            partition: Partition {
                region: "us-east-1".into(),
                account_id: "111122223333".into(),
            },
            cache_ttl: Duration::from_secs(5),
            quotas: ResourceQuotas::default(),
        }
    }
}

/// The key service.
pub struct Kms {
    store: Store,
    root: Arc<dyn RootOfTrust>,
    config: KmsConfig,
    cache: Caches,
    audit: Option<AuditLog>,
    /// What a CloudHSM cluster id means on this server (none: custom key stores cannot connect).
    clusters: Option<Arc<dyn HsmClusters>>,
    /// This node's logins to custom key stores' tokens, by store id.
    connections: RwLock<HashMap<String, custom_key_stores::Login>>,
    /// One login at a time.
    connecting: tokio::sync::Mutex<()>,
    /// Identity policies by principal, the session token key (`identity/`).
    identities: crate::identity::IdentityState,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("root", &self.root.describe())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn secs(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

impl Kms {
    /// Opens the service over a store, checking that `root` is the root of trust the store's key
    /// material was wrapped with (a check value written on first use).
    pub async fn open(store: Store, root: Arc<dyn RootOfTrust>, config: KmsConfig) -> Result<Self> {
        match store.meta_get(ROOT_CHECK).await? {
            Some(check) => {
                // An unavailable HSM is an error of its own, not "the wrong root key".
                let ok = off_runtime(&root, move |r| {
                    r.try_unwrap(ROOT_CHECK_AAD, &check)
                        .map(|v| v.is_some_and(|v| v.as_slice() == ROOT_CHECK_VALUE))
                })
                .await?;
                if !ok {
                    return Err(KmsError::InvalidState(format!(
                        "The root key does not match this key store: its check value does not open under the \
                         {} given. Use the root key this data was created with.",
                        root.describe()
                    )));
                }
            }
            None => {
                if !store.is_empty().await? {
                    return Err(KmsError::InvalidState(
                        "The key store holds keys but no root key check value; refusing to guess."
                            .into(),
                    ));
                }
                let check =
                    off_runtime(&root, |r| r.wrap(ROOT_CHECK_AAD, ROOT_CHECK_VALUE)).await?;
                if !store.meta_put_new(ROOT_CHECK, &check).await? {
                    // Another node initialised the store at the same moment: check against its value.
                    return Box::pin(Kms::open(store, root, config)).await;
                }
            }
        }
        store
            .adopt_unowned_rows(&config.partition.account_id)
            .await?;
        store
            .adopt_home_account(&config.partition.account_id)
            .await?;
        Ok(Self {
            store,
            root,
            config,
            cache: Caches::default(),
            audit: None,
            clusters: None,
            connections: RwLock::default(),
            connecting: tokio::sync::Mutex::new(()),
            identities: Default::default(),
        })
    }

    /// Lets custom key stores connect to these clusters.
    pub fn with_hsm_clusters(mut self, clusters: Arc<dyn HsmClusters>) -> Self {
        self.clusters = Some(clusters);
        self
    }

    /// Sets the resource quotas (AWS's defaults until then).
    pub fn with_resource_quotas(mut self, quotas: ResourceQuotas) -> Self {
        self.config.quotas = quotas;
        self
    }

    /// Sends a record of every [`Kms::execute`] call to `log`.
    pub fn with_audit_log(mut self, log: AuditLog) -> Self {
        self.audit = Some(log);
        self
    }

    /// Writes out pending audit records (call before exiting).
    pub fn flush_audit_log(&self) {
        if let Some(log) = &self.audit {
            log.flush();
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Region and account.
    pub fn partition(&self) -> &Partition {
        &self.config.partition
    }

    /// The account the current call acts in: the caller's inside [`Kms::execute`], the home account
    /// for in-process calls of the Rust API (which act as the home account's root).
    pub(crate) fn account(&self) -> String {
        CALLER
            .try_with(|c| c.principal.account.clone())
            .ok()
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| self.config.partition.account_id.clone())
    }

    /// The caller of the current call (the home account's root for in-process calls).
    pub(crate) fn caller(&self) -> Caller {
        CALLER.try_with(Caller::clone).unwrap_or_else(|_| Caller {
            principal: crate::policy::Principal::root(&self.config.partition.account_id),
            ..Caller::default()
        })
    }

    /// Runs one call as `caller` (for [`Kms::account`] and [`Kms::caller`]), returning its result
    /// and the authorization decisions it took, for its audit record.
    pub(crate) async fn in_call<T>(
        &self,
        caller: &Caller,
        call: impl std::future::Future<Output = T>,
    ) -> (T, Vec<crate::audit::AuditDecision>) {
        DECISIONS
            .scope(std::cell::RefCell::default(), async {
                let r = CALLER.scope(caller.clone(), call).await;
                (r, DECISIONS.with(|d| d.take()))
            })
            .await
    }

    /// A key's ARN, in the key's own account (a key never changes account: the account is learnt
    /// when the key's row is first read or written, and the caller's account stands in until then).
    fn arn(&self, id: &Uuid) -> String {
        match self.known_account(id) {
            Some(a) => self.config.partition.key_arn_in(&a, id),
            None => self.config.partition.key_arn_in(&self.account(), id),
        }
    }

    /// The account of key `id`, if this node has read or written the key (a key never changes
    /// account).
    pub(super) fn known_account(&self, id: &Uuid) -> Option<Arc<str>> {
        self.cache
            .key_accounts
            .read()
            .ok()
            .and_then(|m| m.get(id).cloned())
    }

    /// Remembers the account of a key whose row was read or written.
    pub(super) fn learn_account(&self, k: &crate::store::KeyRow) {
        let known = self
            .cache
            .key_accounts
            .read()
            .is_ok_and(|m| m.get(&k.id).is_some_and(|a| **a == *k.account_id));
        if !known {
            if let Ok(mut m) = self.cache.key_accounts.write() {
                m.insert(k.id, Arc::from(k.account_id.as_str()));
            }
        }
    }

    fn not_found(&self, id: &Uuid) -> KmsError {
        KmsError::NotFound(format!("Key '{}' does not exist", self.arn(id)))
    }

    // ----- the JSON API -------------------------------------------------------------------------

    /// Runs one operation of the AWS KMS JSON 1.1 API: `operation` is the part of `X-Amz-Target`
    /// after `TrentService.`, `body` the request JSON. Returns the response JSON, zeroized on drop
    /// (it may carry a plaintext or a data key). Records the call in the audit log.
    pub async fn execute(
        &self,
        caller: &Caller,
        operation: &str,
        body: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut key_ref: Option<String> = None;
        let (result, decisions) = self
            .in_call(caller, self.dispatch(caller, operation, body, &mut key_ref))
            .await;
        if let Some(log) = &self.audit {
            log.record(&AuditRecord {
                event_time: crate::rfc3339(now_millis()),
                event_name: operation,
                principal_arn: &caller.principal.arn,
                access_key_id: &caller.access_key_id,
                request_id: &caller.request_id,
                source_ip_address: caller.source_ip.as_deref(),
                key_id: key_ref.as_deref(),
                error_code: result.as_ref().err().map(KmsError::aws_name),
                authorization: &decisions,
            });
        }
        result
    }

    async fn dispatch(
        &self,
        caller: &Caller,
        operation: &str,
        body: &[u8],
        key_ref: &mut Option<String>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let action = format!("kms:{operation}");
        if ASYMMETRIC_AND_HMAC_OPERATIONS.contains(&operation) {
            let req: KeyIdRequest = parse(operation, body)?;
            key_ref.clone_from(&req.key_id);
            if let Some(raw) = &req.key_id {
                self.authorize_on_key(&action, raw, Accepts::KeyOrAlias, &req)
                    .await?;
            }
            return to_json(&self.refuse_on_symmetric_key(operation, req).await?);
        }
        // One arm per row of `kms_operations!`: parse, note the key, authorize, run.
        macro_rules! ops {
            ($($name:literal => $method:ident($req:ty $(, $caller:ident)?) $(key $field:ident)? ; $scope:ident $(($member:ident))?),* $(,)?) => {
                match operation {
                    $($name => {
                        let req: $req = parse(operation, body)?;
                        $(*key_ref = req.$field.clone();)?
                        ops!(@authorize self, req, action, $scope $(($member))?);
                        to_json(&ops!(@call self, $method, req $(, $caller)?).await?)
                    })*
                    _ => Err(KmsError::UnknownOperation(format!("Operation {operation} is not known to this service."))),
                }
            };
            (@authorize $s:ident, $req:ident, $action:ident, key($m:ident)) => {
                if let Some(raw) = &$req.$m {
                    $s.authorize_on_key(&$action, raw, Accepts::KeyOrAlias, &$req).await?;
                }
            };
            (@authorize $s:ident, $req:ident, $action:ident, key_only($m:ident)) => {
                if let Some(raw) = &$req.$m {
                    $s.authorize_on_key(&$action, raw, Accepts::KeyOnly, &$req).await?;
                }
            };
            (@authorize $s:ident, $req:ident, $action:ident, blob($m:ident)) => {
                if let Some(blob) = &$req.$m {
                    $s.authorize_on_blob(&$action, blob, &$req).await?;
                }
            };
            (@authorize $s:ident, $req:ident, $action:ident, account) => {
                $s.authorize_identity(&$action, None, &$req).await?;
            };
            (@authorize $s:ident, $req:ident, $action:ident, alias) => {
                $s.authorize_alias(&$action, $req.alias_name.as_deref(), $req.target_key_id.as_deref()).await?;
            };
            (@authorize $s:ident, $req:ident, $action:ident, delete_alias) => {
                $s.authorize_alias(&$action, $req.alias_name.as_deref(), None).await?;
            };
            (@authorize $s:ident, $req:ident, $action:ident, retiring_principal) => {
                $s.authorize_retiring(&$req).await?;
            };
            (@authorize $s:ident, $req:ident, $action:ident, re_encrypt) => {
                $s.authorize_re_encrypt(&$req).await?;
            };
            (@authorize $s:ident, $req:ident, $action:ident, decided_by_operation) => {};
            // `caller` is written here, not taken from the table: the table is written outside this
            // function, where its `caller` would not name this one's argument.
            (@call $s:ident, $method:ident, $req:ident) => { $s.$method($req) };
            (@call $s:ident, $method:ident, $req:ident, $caller:ident) => { $s.$method($req, caller) };
        }
        kms_operations!(ops)
    }
}

/// How deep a request's JSON may nest, skipped unknown members included. AWS's deepest request
/// member (a tag inside `Tags`) is at depth 3.
const MAX_JSON_DEPTH: usize = 32;

/// Parses a request body; an empty body is `{}`. The body must be a JSON object (never an array
/// read as a structure) nested at most [`MAX_JSON_DEPTH`] deep, with no repeated member or map key.
/// The error never echoes the body (it may hold plaintext).
fn parse<T: serde::de::DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    let fail = |what: &str| {
        KmsError::Serialization(format!("Cannot read the {operation} request: {what}."))
    };
    if json_depth(body) > MAX_JSON_DEPTH {
        return Err(fail(&format!(
            "the body nests deeper than {MAX_JSON_DEPTH} levels"
        )));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    crate::api::map_only(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Data => {
                    "a member has the wrong type or an invalid value"
                }
                serde_json::error::Category::Eof => "the body ends early",
                _ => "the body is not valid JSON",
            };
            fail(&format!(
                "{what} (line {}, column {})",
                e.line(),
                e.column()
            ))
        })
}

/// The deepest nesting of arrays and objects in `json` (strings skipped), without recursion.
fn json_depth(json: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The response JSON in one exactly sized buffer, zeroized on drop.
fn to_json<T: serde::Serialize>(v: &T) -> Result<Zeroizing<Vec<u8>>> {
    crate::secret::to_json_zeroizing(v)
        .map_err(|_| KmsError::Internal("Cannot encode the response.".into()))
}
