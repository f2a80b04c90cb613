//! [`Kms`]: the key service. Each public async method is one KMS operation.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

use crate::api::*;
use crate::audit::{AuditLog, AuditRecord, Caller};
use crate::blob::{self, BlobHeader};
use crate::context::EncryptionContext;
use crate::custom_key_store::{in_token, password_aad, HsmClusters, HsmKeyStore};
use crate::error::{KmsError, Result};
use crate::ids::{validate_alias_name, Accepts, KeyRef, Partition};
use crate::material::{self, KeyMaterial, RootOfTrust};
use crate::now_millis;
use crate::store::{KeyRecord, MaterialRow, PrincipalRow, Store, WrappedSecret};

/// Largest plaintext Encrypt accepts.
pub const MAX_ENCRYPT_PLAINTEXT: usize = 4096;
/// Largest ciphertext blob Decrypt and ReEncrypt accept.
pub const MAX_CIPHERTEXT_BLOB: usize = 6144;
/// At most this many on-demand rotations per key (AWS's limit).
pub const MAX_ON_DEMAND_ROTATIONS: usize = 10;
const SYMMETRIC_DEFAULT: &str = "SYMMETRIC_DEFAULT";
const DAY_MS: i64 = 86_400_000;
const ROOT_CHECK: &str = "root_check";
const ROOT_CHECK_AAD: &[u8] = b"envelope/root-check/v1";
const ROOT_CHECK_VALUE: &[u8] = b"envelope root key check value";

/// Settings of a [`Kms`].
#[derive(Debug, Clone)]
pub struct KmsConfig {
    /// Region and account of every ARN.
    pub partition: Partition,
    /// How long unwrapped key material, aliases and principal secrets are cached. With several nodes
    /// on one database, a state change made on one node reaches the others within this TTL plus
    /// one second (an expired entry serves while one caller reloads it).
    pub cache_ttl: Duration,
}

impl Default for KmsConfig {
    fn default() -> Self {
        Self {
            partition: Partition {
                region: "us-east-1".into(),
                account_id: "111122223333".into(),
            },
            cache_ttl: Duration::from_secs(5),
        }
    }
}

pub(crate) struct LoadedKey {
    pub(crate) record: KeyRecord,
    pub(crate) arn: String,
    /// Index `v - 1` holds version `v` (empty for a key in a custom key store).
    materials: Vec<KeyMaterial>,
    /// The wrapped form each of `materials` was unwrapped from: a reload reuses a material whose
    /// wrapped bytes did not change, so it needs the root of trust only for new material (and keeps
    /// working while an HSM root is unavailable).
    wrapped: Vec<Vec<u8>>,
    loaded: Instant,
    /// Set by the one caller reloading an expired entry.
    refreshing: AtomicBool,
    /// Set when this node changed the key: the entry must not serve again, but a reload may still
    /// reuse its unwrapped material.
    stale: AtomicBool,
}

/// How long an expired cache entry may still serve while one caller reloads it.
const REFRESH_GRACE: Duration = Duration::from_secs(1);

struct CachedPrincipal {
    arn: String,
    secret: Zeroizing<Vec<u8>>,
    /// What `secret` was unwrapped from (a reload with the same bytes does not ask the root).
    wrapped: Vec<u8>,
    loaded: Instant,
}

/// A principal as `principal list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrincipalInfo {
    /// Name.
    pub user_name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// Access key id.
    pub access_key_id: String,
    /// Creation time, RFC 3339.
    pub create_date: String,
}

/// The key service.
pub struct Kms {
    pub(crate) store: Store,
    pub(crate) root: Arc<dyn RootOfTrust>,
    pub(crate) config: KmsConfig,
    keys: RwLock<HashMap<Uuid, Arc<LoadedKey>>>,
    aliases: RwLock<HashMap<String, (Uuid, Instant)>>,
    principals: RwLock<HashMap<String, Arc<CachedPrincipal>>>,
    audit: Option<AuditLog>,
    /// What a CloudHSM cluster id means on this server (none: custom key stores cannot connect).
    pub(crate) clusters: Option<Arc<dyn HsmClusters>>,
    /// This node's logins to custom key stores' tokens, by store id.
    pub(crate) connections: RwLock<HashMap<String, Arc<dyn HsmKeyStore>>>,
    /// Custom key store rows, cached like keys.
    pub(crate) store_rows: RwLock<HashMap<String, (crate::store::CustomKeyStoreRow, Instant)>>,
    /// One login at a time.
    pub(crate) connecting: tokio::sync::Mutex<()>,
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

fn material_aad(id: &Uuid, version: u32) -> Vec<u8> {
    let mut aad = b"envelope/key-material/v1".to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// Runs a root-of-trust call on the blocking pool: an HSM-backed root blocks on its token.
pub(crate) async fn off_runtime<T: Send + 'static>(
    root: &Arc<dyn RootOfTrust>,
    f: impl FnOnce(&dyn RootOfTrust) -> Result<T> + Send + 'static,
) -> Result<T> {
    let root = root.clone();
    tokio::task::spawn_blocking(move || f(root.as_ref()))
        .await
        .map_err(|_| KmsError::Internal("The root of trust call did not complete.".into()))?
}

fn secret_aad(access_key_id: &str) -> Vec<u8> {
    let mut aad = b"envelope/principal-secret/v1".to_vec();
    aad.extend_from_slice(access_key_id.as_bytes());
    aad
}

pub(crate) fn required<T>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| KmsError::missing(field))
}

fn check_range(v: i64, lo: i64, hi: i64, field: &str) -> Result<()> {
    if v < lo {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have value greater than or equal to {lo}"),
        ));
    }
    if v > hi {
        return Err(KmsError::constraint(
            v,
            field,
            &format!("Member must have value less than or equal to {hi}"),
        ));
    }
    Ok(())
}

pub(crate) fn page_limit(limit: Option<i64>, max: i64, default: i64) -> Result<i64> {
    let l = limit.unwrap_or(default);
    check_range(l, 1, max, "limit")?;
    Ok(l)
}

pub(crate) fn encode_marker(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s.as_bytes())
}

pub(crate) fn decode_marker(m: Option<&str>) -> Result<Option<String>> {
    m.map(|m| {
        URL_SAFE_NO_PAD
            .decode(m.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                KmsError::InvalidMarker("The marker is not one this service returned.".into())
            })
    })
    .transpose()
}

fn check_algorithm(alg: Option<&str>) -> Result<()> {
    match alg {
        None | Some(SYMMETRIC_DEFAULT) => Ok(()),
        Some(a @ ("RSAES_OAEP_SHA_1" | "RSAES_OAEP_SHA_256" | "SM2PKE")) => Err(KmsError::InvalidKeyUsage(
            format!("The encryption algorithm {a} is not compatible with the key spec SYMMETRIC_DEFAULT."),
        )),
        Some(a) => Err(KmsError::constraint(
            a,
            "encryptionAlgorithm",
            "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]",
        )),
    }
}

fn check_dry_run(dry_run: Option<bool>) -> Result<()> {
    if dry_run == Some(true) {
        return Err(KmsError::DryRunOperation(
            "The request would have succeeded, but the DryRun option is set.".into(),
        ));
    }
    Ok(())
}

/// A key usable for cryptography: Enabled. AWS's errors for the other states.
fn check_usable(k: &KeyRecord, arn: &str) -> Result<()> {
    match k.state {
        KeyState::Enabled => Ok(()),
        KeyState::Disabled => Err(KmsError::Disabled(format!("{arn} is disabled."))),
        KeyState::PendingDeletion => Err(KmsError::InvalidState(format!(
            "{arn} is pending deletion."
        ))),
        KeyState::Unavailable => Err(KmsError::InvalidState(format!("{arn} is unavailable."))),
    }
}

/// Keys in a custom key store have their material in the token: no rotation, no import.
fn refuse_for_custom_key_store(k: &KeyRecord, arn: &str, what: &str) -> Result<()> {
    if let Some(store) = &k.custom_key_store_id {
        return Err(KmsError::UnsupportedOperation(format!(
            "{arn} is in custom key store {store}: {what} is not supported for keys in a custom key store."
        )));
    }
    Ok(())
}

fn check_not_pending_deletion(k: &KeyRecord, arn: &str) -> Result<()> {
    if k.state == KeyState::PendingDeletion {
        return Err(KmsError::InvalidState(format!(
            "{arn} is pending deletion."
        )));
    }
    Ok(())
}

fn validate_tags(tags: &[Tag]) -> Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(tags.len());
    for t in tags {
        let k = t
            .tag_key
            .clone()
            .ok_or_else(|| KmsError::missing("tags.member.tagKey"))?;
        let v = t
            .tag_value
            .clone()
            .ok_or_else(|| KmsError::missing("tags.member.tagValue"))?;
        if k.is_empty() || k.chars().count() > 128 {
            return Err(KmsError::Tag(format!(
                "Tag key '{k}' must be 1 to 128 characters long."
            )));
        }
        if v.chars().count() > 256 {
            return Err(KmsError::Tag(format!(
                "The value of tag '{k}' must be at most 256 characters long."
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(KmsError::Tag(format!(
                "Tag key '{k}' uses the reserved prefix 'aws:'."
            )));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn context(pairs: Option<BTreeMap<String, String>>) -> Result<EncryptionContext> {
    EncryptionContext::new(pairs.unwrap_or_default())
}

const KEY_SPECS: &[&str] = &[
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
];

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
        Ok(Self {
            store,
            root,
            config,
            keys: RwLock::default(),
            aliases: RwLock::default(),
            principals: RwLock::default(),
            audit: None,
            clusters: None,
            connections: RwLock::default(),
            store_rows: RwLock::default(),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// Lets custom key stores connect to these clusters.
    pub fn with_hsm_clusters(mut self, clusters: Arc<dyn HsmClusters>) -> Self {
        self.clusters = Some(clusters);
        self
    }

    /// Re-wraps everything `store` holds under the root of trust `from` (key material, principals'
    /// secrets, the root check value) under `to`, in one transaction: all or nothing. Run it while
    /// no server uses the store. Returns how many secrets were re-wrapped.
    pub async fn migrate_root(
        store: &Store,
        from: Arc<dyn RootOfTrust>,
        to: Arc<dyn RootOfTrust>,
    ) -> Result<usize> {
        store
            .rewrap_all(ROOT_CHECK, |all| async move {
                tokio::task::spawn_blocking(move || {
                    all.iter()
                        .map(|w| {
                            let (aad, wrapped) = match w {
                                WrappedSecret::Material {
                                    key_id,
                                    version,
                                    wrapped,
                                } => (material_aad(key_id, *version), wrapped),
                                WrappedSecret::Principal {
                                    access_key_id,
                                    wrapped,
                                } => (secret_aad(access_key_id), wrapped),
                                WrappedSecret::KeyStorePassword { store_id, wrapped } => {
                                    (password_aad(store_id), wrapped)
                                }
                                WrappedSecret::Meta { wrapped, .. } => {
                                    (ROOT_CHECK_AAD.to_vec(), wrapped)
                                }
                            };
                            let plain = from.unwrap(&aad, wrapped)?;
                            to.wrap(&aad, &plain)
                        })
                        .collect::<Result<Vec<_>>>()
                })
                .await
                .map_err(|_| KmsError::Internal("The re-wrapping task did not complete.".into()))?
            })
            .await
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

    fn arn(&self, id: &Uuid) -> String {
        self.config.partition.key_arn(id)
    }

    fn not_found(&self, id: &Uuid) -> KmsError {
        KmsError::NotFound(format!("Key '{}' does not exist", self.arn(id)))
    }

    // ----- resolution and caching -------------------------------------------------------------

    /// Resolves a key identifier to a key id. `cached` allows a cached alias mapping.
    async fn resolve(&self, raw: &str, accepts: Accepts, cached: bool) -> Result<Uuid> {
        match self.config.partition.parse_key_ref(raw, accepts)? {
            KeyRef::Key(id) => Ok(id),
            KeyRef::Alias(name) => {
                if cached {
                    if let Ok(map) = self.aliases.read() {
                        if let Some((id, at)) = map.get(&name) {
                            if at.elapsed() < self.config.cache_ttl {
                                return Ok(*id);
                            }
                        }
                    }
                }
                let alias = self.store.get_alias(&name).await?.ok_or_else(|| {
                    KmsError::NotFound(format!(
                        "Alias {} is not found.",
                        self.config.partition.alias_arn(&name)
                    ))
                })?;
                if let Ok(mut map) = self.aliases.write() {
                    map.insert(name, (alias.key_id, Instant::now()));
                }
                Ok(alias.key_id)
            }
        }
    }

    async fn record(&self, id: &Uuid) -> Result<KeyRecord> {
        self.store
            .get_key(id)
            .await?
            .ok_or_else(|| self.not_found(id))
    }

    /// The key with its unwrapped material, from the cache when fresh.
    ///
    /// When an entry expires, one caller reloads it while the others keep using it for at most
    /// [`REFRESH_GRACE`] more, so a hot key does not send every in-flight request to the store at once.
    async fn loaded(&self, id: &Uuid) -> Result<Arc<LoadedKey>> {
        let stale = match self.keys.read() {
            Ok(map) => map.get(id).cloned(),
            Err(_) => None,
        };
        if let Some(k) = stale.as_ref().filter(|k| !k.stale.load(Ordering::Acquire)) {
            let age = k.loaded.elapsed();
            if age < self.config.cache_ttl {
                return Ok(k.clone());
            }
            if age < self.config.cache_ttl + REFRESH_GRACE
                && k.refreshing.swap(true, Ordering::AcqRel)
            {
                return Ok(k.clone());
            }
        }
        let fresh = self.load_key(id, stale.as_deref()).await;
        if let (Err(_), Some(k)) = (&fresh, &stale) {
            k.refreshing.store(false, Ordering::Release);
        }
        fresh
    }

    /// Loads a key's record and material; material whose wrapped bytes are those `previous` (the
    /// expired cache entry) was unwrapped from is reused, not unwrapped again.
    async fn load_key(&self, id: &Uuid, previous: Option<&LoadedKey>) -> Result<Arc<LoadedKey>> {
        let record = self.record(id).await?;
        let rows = self.store.get_materials(id).await?;
        for (i, row) in rows.iter().enumerate() {
            if row.version as usize != i + 1 {
                return Err(KmsError::Internal(
                    "Key material versions are not contiguous.".into(),
                ));
            }
        }
        let known = |i: usize, wrapped: &[u8]| {
            let p = previous?;
            (p.wrapped.get(i)?.as_slice() == wrapped).then(|| p.materials.get(i).cloned())?
        };
        let mut materials: Vec<Option<KeyMaterial>> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| known(i, &row.wrapped))
            .collect();
        let missing: Vec<(usize, u32, Vec<u8>)> = rows
            .iter()
            .enumerate()
            .filter(|(i, _)| materials[*i].is_none())
            .map(|(i, row)| (i, row.version, row.wrapped.clone()))
            .collect();
        if !missing.is_empty() {
            let key_id = *id;
            let unwrapped = off_runtime(&self.root, move |root| {
                missing
                    .iter()
                    .map(|(i, version, wrapped)| {
                        let raw = root.unwrap(&material_aad(&key_id, *version), wrapped)?;
                        Ok((*i, KeyMaterial::from_slice(&raw)?))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .await?;
            for (i, m) in unwrapped {
                materials[i] = Some(m);
            }
        }
        let materials = materials
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| KmsError::Internal("Key material went missing.".into()))?;
        let k = Arc::new(LoadedKey {
            arn: self.arn(id),
            record,
            materials,
            wrapped: rows.into_iter().map(|row| row.wrapped).collect(),
            loaded: Instant::now(),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        });
        if let Ok(mut map) = self.keys.write() {
            map.insert(*id, k.clone());
        }
        Ok(k)
    }

    fn invalidate(&self, id: &Uuid) {
        if let Ok(map) = self.keys.read() {
            if let Some(k) = map.get(id) {
                k.stale.store(true, Ordering::Release);
            }
        }
        if let Ok(mut map) = self.aliases.write() {
            map.retain(|_, (k, _)| k != id);
        }
    }

    /// Reads a key, lets `f` change it, writes it back under optimistic concurrency, retrying on a
    /// conflict. `f` returns false when nothing needs writing.
    async fn modify(
        &self,
        id: &Uuid,
        mut f: impl FnMut(&mut KeyRecord) -> Result<bool>,
    ) -> Result<KeyRecord> {
        for _ in 0..32 {
            let mut rec = self.record(id).await?;
            if !f(&mut rec)? {
                return Ok(rec);
            }
            if self.store.update_key(&rec).await? {
                self.invalidate(id);
                rec.revision += 1;
                return Ok(rec);
            }
        }
        Err(KmsError::Internal(
            "The key is being changed concurrently; try again.".into(),
        ))
    }

    async fn metadata(&self, k: &KeyRecord) -> Result<KeyMetadata> {
        let key_state = self.shown_state(k).await?;
        let cloud_hsm_cluster_id = self.cluster_of(k).await?;
        Ok(KeyMetadata {
            aws_account_id: self.config.partition.account_id.clone(),
            key_id: k.id.to_string(),
            arn: self.arn(&k.id),
            creation_date: secs(k.created_at),
            enabled: key_state == KeyState::Enabled,
            description: k.description.clone(),
            key_usage: k.key_usage.clone(),
            key_state,
            deletion_date: k.deletion_date.map(secs),
            origin: k.origin.clone(),
            key_manager: "CUSTOMER".into(),
            customer_master_key_spec: k.key_spec.clone(),
            key_spec: k.key_spec.clone(),
            encryption_algorithms: vec![SYMMETRIC_DEFAULT.into()],
            multi_region: false,
            pending_deletion_window_in_days: k.pending_window_days,
            custom_key_store_id: k.custom_key_store_id.clone(),
            cloud_hsm_cluster_id,
        })
    }

    async fn wrap_material(&self, id: &Uuid, version: u32, m: &KeyMaterial) -> Result<Vec<u8>> {
        let (aad, m) = (material_aad(id, version), m.clone());
        off_runtime(&self.root, move |root| root.wrap(&aad, m.expose())).await
    }

    // ----- key management -----------------------------------------------------------------------

    /// CreateKey.
    pub async fn create_key(&self, req: CreateKeyRequest) -> Result<KeyMetadataResponse> {
        let in_store =
            req.custom_key_store_id.is_some() || req.origin.as_deref() == Some("AWS_CLOUDHSM");
        for (field, spec) in [
            ("keySpec", &req.key_spec),
            ("customerMasterKeySpec", &req.customer_master_key_spec),
        ] {
            match spec.as_deref() {
                None | Some(SYMMETRIC_DEFAULT) => {}
                Some(s) if KEY_SPECS.contains(&s) && in_store => {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "Custom key stores support only SYMMETRIC_DEFAULT keys; {s} cannot be created in one."
                    )))
                }
                Some(s) if KEY_SPECS.contains(&s) => {
                    return Err(KmsError::UnsupportedOperation(format!(
                        "envelope supports only SYMMETRIC_DEFAULT keys; {s} is not supported."
                    )))
                }
                Some(s) => {
                    return Err(KmsError::constraint(
                        s,
                        field,
                        "Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSA_2048, ...]",
                    ))
                }
            }
        }
        match req.key_usage.as_deref() {
            None | Some("ENCRYPT_DECRYPT") => {}
            Some(u @ ("SIGN_VERIFY" | "GENERATE_VERIFY_MAC" | "KEY_AGREEMENT")) => {
                return Err(KmsError::UnsupportedOperation(format!(
                    "envelope supports only ENCRYPT_DECRYPT keys; {u} is not supported."
                )))
            }
            Some(u) => {
                return Err(KmsError::constraint(
                    u,
                    "keyUsage",
                    "Member must satisfy enum value set: [SIGN_VERIFY, ENCRYPT_DECRYPT, GENERATE_VERIFY_MAC, KEY_AGREEMENT]",
                ))
            }
        }
        match (req.origin.as_deref(), req.custom_key_store_id.is_some()) {
            (None | Some("AWS_KMS"), false) | (Some("AWS_CLOUDHSM"), true) => {}
            (Some("AWS_CLOUDHSM"), false) => return Err(KmsError::missing("customKeyStoreId")),
            (None | Some("AWS_KMS"), true) => {
                return Err(KmsError::Validation(
                    "A key in a custom key store must have the Origin AWS_CLOUDHSM.".into(),
                ))
            }
            (Some("EXTERNAL"), true) => {
                return Err(KmsError::UnsupportedOperation(
                    "Keys in a custom key store cannot have imported key material (Origin EXTERNAL)."
                        .into(),
                ))
            }
            (Some(o @ ("EXTERNAL" | "EXTERNAL_KEY_STORE")), _) => {
                return Err(KmsError::UnsupportedOperation(format!("Origin {o} is not supported by this server.")))
            }
            (Some(o), _) => {
                return Err(KmsError::constraint(
                    o,
                    "origin",
                    "Member must satisfy enum value set: [EXTERNAL, AWS_KMS, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]",
                ))
            }
        }
        if req.multi_region == Some(true) {
            return Err(KmsError::UnsupportedOperation(
                "Multi-Region keys are not supported.".into(),
            ));
        }
        if req.xks_key_id.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "External key stores (XKS) are not supported by this server.".into(),
            ));
        }
        let description = req.description.unwrap_or_default();
        if description.chars().count() > 8192 {
            return Err(KmsError::constraint(
                "...",
                "description",
                "Member must have length less than or equal to 8192",
            ));
        }
        let policy = req.policy.unwrap_or_default();
        if policy.len() > 32768 {
            return Err(KmsError::constraint(
                "...",
                "policy",
                "Member must have length less than or equal to 32768",
            ));
        }
        let tags = validate_tags(req.tags.as_deref().unwrap_or_default())?;
        if tags.len() > 50 {
            return Err(KmsError::Tag("A key can have at most 50 tags.".into()));
        }
        let id = Uuid::new_v4();
        let now = now_millis();
        let mut rec = KeyRecord {
            id,
            created_at: now,
            description,
            state: KeyState::Enabled,
            key_usage: "ENCRYPT_DECRYPT".into(),
            key_spec: SYMMETRIC_DEFAULT.into(),
            origin: "AWS_KMS".into(),
            policy,
            deletion_date: None,
            pending_window_days: None,
            rotation_period_days: None,
            next_rotation: None,
            revision: 0,
            custom_key_store_id: None,
        };
        if let Some(store_id) = req.custom_key_store_id {
            // The material is born in the token, labelled with the key ARN, and never leaves it.
            let (_, token) = self.store_for_new_key(&store_id).await?;
            let label = self.arn(&id);
            in_token(token.clone(), {
                let label = label.clone();
                move |t| t.create_key(&label)
            })
            .await?;
            rec.origin = "AWS_CLOUDHSM".into();
            rec.custom_key_store_id = Some(store_id);
            if let Err(e) = self.store.insert_key(&rec, None, &tags).await {
                let _ = in_token(token, move |t| t.destroy_key(&label)).await;
                return Err(e);
            }
        } else {
            let material = KeyMaterial::generate()?;
            let row = MaterialRow {
                version: 1,
                wrapped: self.wrap_material(&id, 1, &material).await?,
                created_at: now,
                rotation_type: None,
            };
            self.store.insert_key(&rec, Some(&row), &tags).await?;
        }
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&rec).await?,
        })
    }

    /// DescribeKey.
    pub async fn describe_key(&self, req: KeyIdRequest) -> Result<KeyMetadataResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOrAlias, false)
            .await?;
        let rec = self.record(&id).await?;
        Ok(KeyMetadataResponse {
            key_metadata: self.metadata(&rec).await?,
        })
    }

    /// ListKeys.
    pub async fn list_keys(&self, req: ListKeysRequest) -> Result<ListKeysResponse> {
        let limit = page_limit(req.limit, 1000, 100)?;
        let after = decode_marker(req.marker.as_deref())?;
        let mut ids = self.store.list_keys(after.as_deref(), limit + 1).await?;
        let truncated = ids.len() as i64 > limit;
        ids.truncate(limit as usize);
        let next_marker = truncated
            .then(|| ids.last().map(|l| encode_marker(&l.to_string())))
            .flatten();
        Ok(ListKeysResponse {
            keys: ids
                .iter()
                .map(|id| KeyListEntry {
                    key_id: id.to_string(),
                    key_arn: self.arn(id),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }

    /// UpdateKeyDescription.
    pub async fn update_key_description(&self, req: UpdateKeyDescriptionRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let description = required(req.description, "description")?;
        if description.chars().count() > 8192 {
            return Err(KmsError::constraint(
                "...",
                "description",
                "Member must have length less than or equal to 8192",
            ));
        }
        let arn = self.arn(&id);
        self.modify(&id, |k| {
            check_not_pending_deletion(k, &arn)?;
            k.description = description.clone();
            Ok(true)
        })
        .await?;
        Ok(Empty {})
    }

    /// EnableKey.
    pub async fn enable_key(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let arn = self.arn(&id);
        self.modify(&id, |k| {
            check_not_pending_deletion(k, &arn)?;
            let change = k.state != KeyState::Enabled;
            k.state = KeyState::Enabled;
            Ok(change)
        })
        .await?;
        Ok(Empty {})
    }

    /// DisableKey.
    pub async fn disable_key(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let arn = self.arn(&id);
        self.modify(&id, |k| {
            check_not_pending_deletion(k, &arn)?;
            let change = k.state != KeyState::Disabled;
            k.state = KeyState::Disabled;
            Ok(change)
        })
        .await?;
        Ok(Empty {})
    }

    /// ScheduleKeyDeletion: 7 to 30 days, 30 by default. The material is destroyed when due.
    pub async fn schedule_key_deletion(
        &self,
        req: ScheduleKeyDeletionRequest,
    ) -> Result<ScheduleKeyDeletionResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let days = req.pending_window_in_days.unwrap_or(30);
        check_range(days, 7, 30, "pendingWindowInDays")?;
        let arn = self.arn(&id);
        let now = now_millis();
        let rec = self
            .modify(&id, |k| {
                check_not_pending_deletion(k, &arn)?;
                k.state = KeyState::PendingDeletion;
                k.deletion_date = Some(now + days * DAY_MS);
                k.pending_window_days = Some(days);
                Ok(true)
            })
            .await?;
        Ok(ScheduleKeyDeletionResponse {
            key_id: arn,
            deletion_date: secs(rec.deletion_date.unwrap_or(now)),
            key_state: rec.state,
            pending_window_in_days: days,
        })
    }

    /// CancelKeyDeletion: the key returns Disabled.
    pub async fn cancel_key_deletion(&self, req: KeyIdRequest) -> Result<KeyIdResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let arn = self.arn(&id);
        self.modify(&id, |k| {
            if k.state != KeyState::PendingDeletion {
                return Err(KmsError::InvalidState(format!(
                    "{arn} is not pending deletion."
                )));
            }
            k.state = KeyState::Disabled;
            k.deletion_date = None;
            k.pending_window_days = None;
            Ok(true)
        })
        .await?;
        Ok(KeyIdResponse { key_id: arn })
    }

    // ----- aliases ------------------------------------------------------------------------------

    async fn alias_target(&self, raw: Option<String>) -> Result<Uuid> {
        let id = self
            .resolve(&required(raw, "targetKeyId")?, Accepts::KeyOnly, false)
            .await?;
        let rec = self.record(&id).await?;
        check_not_pending_deletion(&rec, &self.arn(&id))?;
        Ok(id)
    }

    /// CreateAlias.
    pub async fn create_alias(&self, req: AliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, true)?;
        let id = self.alias_target(req.target_key_id).await?;
        self.store.create_alias(&name, &id, now_millis()).await?;
        Ok(Empty {})
    }

    /// UpdateAlias.
    pub async fn update_alias(&self, req: AliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, true)?;
        let id = self.alias_target(req.target_key_id).await?;
        if !self.store.update_alias(&name, &id, now_millis()).await? {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.config.partition.alias_arn(&name)
            )));
        }
        if let Ok(mut map) = self.aliases.write() {
            map.remove(&name);
        }
        Ok(Empty {})
    }

    /// DeleteAlias.
    pub async fn delete_alias(&self, req: DeleteAliasRequest) -> Result<Empty> {
        let name = required(req.alias_name, "aliasName")?;
        validate_alias_name(&name, false)?;
        if !self.store.delete_alias(&name).await? {
            return Err(KmsError::NotFound(format!(
                "Alias {} is not found.",
                self.config.partition.alias_arn(&name)
            )));
        }
        if let Ok(mut map) = self.aliases.write() {
            map.remove(&name);
        }
        Ok(Empty {})
    }

    /// ListAliases.
    pub async fn list_aliases(&self, req: ListAliasesRequest) -> Result<ListAliasesResponse> {
        let limit = page_limit(req.limit, 100, 50)?;
        let key = match req.key_id {
            Some(k) => {
                let id = self.resolve(&k, Accepts::KeyOnly, false).await?;
                self.record(&id).await?;
                Some(id)
            }
            None => None,
        };
        let after = decode_marker(req.marker.as_deref())?;
        let mut rows = self
            .store
            .list_aliases(key.as_ref(), after.as_deref(), limit + 1)
            .await?;
        let truncated = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_marker = truncated
            .then(|| rows.last().map(|l| encode_marker(&l.name)))
            .flatten();
        Ok(ListAliasesResponse {
            aliases: rows
                .into_iter()
                .map(|a| AliasListEntry {
                    alias_arn: self.config.partition.alias_arn(&a.name),
                    alias_name: a.name,
                    target_key_id: a.key_id.to_string(),
                    creation_date: secs(a.created_at),
                    last_updated_date: secs(a.updated_at),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }

    // ----- cryptography -------------------------------------------------------------------------

    /// Seals under the current version of a key named by any identifier form, with a fresh salt
    /// drawn by the caller.
    async fn seal_with(
        &self,
        raw: &str,
        ctx: &EncryptionContext,
        plaintext: &[u8],
        salt: [u8; blob::SALT_LEN],
    ) -> Result<(Vec<u8>, String)> {
        let id = self.resolve(raw, Accepts::KeyOrAlias, true).await?;
        let key = self.loaded(&id).await?;
        // A key in a custom key store (unless pending deletion, refused below) runs in its token.
        if key.record.custom_key_store_id.is_some() && key.record.state != KeyState::PendingDeletion
        {
            let token = self.token_of(&key).await?;
            check_usable(&key.record, &key.arn)?;
            let header = blob::token_header(&id);
            let aad = blob::token_aad(&header, ctx);
            let (label, plaintext) = (key.arn.clone(), Zeroizing::new(plaintext.to_vec()));
            let sealed = in_token(token, move |t| t.encrypt(&label, &aad, &plaintext)).await?;
            return Ok((blob::token_blob(&header, &sealed), key.arn.clone()));
        }
        check_usable(&key.record, &key.arn)?;
        let version = key.materials.len();
        let material = key
            .materials
            .last()
            .ok_or_else(|| KmsError::Internal("Key has no material.".into()))?;
        let header = BlobHeader {
            key_id: id,
            version: version as u32,
        };
        Ok((
            blob::seal_with_salt(header, material, ctx, plaintext, salt)?,
            key.arn.clone(),
        ))
    }

    /// Opens a blob; `expected` is the optional KeyId of the request.
    async fn open_blob(
        &self,
        blob_bytes: &[u8],
        expected: Option<&str>,
        ctx: &EncryptionContext,
    ) -> Result<(Zeroizing<Vec<u8>>, String)> {
        if blob_bytes.is_empty() || blob_bytes.len() > MAX_CIPHERTEXT_BLOB {
            return Err(KmsError::constraint(
                "...",
                "ciphertextBlob",
                &format!("Member must have length between 1 and {MAX_CIPHERTEXT_BLOB}"),
            ));
        }
        let header = blob::parse_header(blob_bytes)?;
        if let Some(raw) = expected {
            let want = self.resolve(raw, Accepts::KeyOrAlias, true).await?;
            if want != header.key_id {
                return Err(KmsError::IncorrectKey(
                    "The key ID in the request does not identify the KMS key that encrypted the ciphertext.".into(),
                ));
            }
        }
        let key = match self.loaded(&header.key_id).await {
            Ok(k) => k,
            Err(KmsError::NotFound(_)) => {
                return Err(KmsError::InvalidCiphertext(
                    "The ciphertext refers to a KMS key that does not exist in this account and region.".into(),
                ))
            }
            Err(e) => return Err(e),
        };
        let arn = key.arn.clone();
        // A key in a custom key store (unless pending deletion, refused below) runs in its token.
        if key.record.custom_key_store_id.is_some() && key.record.state != KeyState::PendingDeletion
        {
            let token = self.token_of(&key).await?;
            check_usable(&key.record, &arn)?;
            let (header_bytes, sealed) = blob::split_token_blob(blob_bytes)?;
            let aad = blob::token_aad(header_bytes, ctx);
            let (label, sealed) = (arn.clone(), sealed.to_vec());
            let plaintext = in_token(token, move |t| t.decrypt(&label, &aad, &sealed)).await?;
            return Ok((plaintext, arn));
        }
        check_usable(&key.record, &arn)?;
        let material = (header.version as usize)
            .checked_sub(1)
            .and_then(|i| key.materials.get(i))
            .ok_or_else(|| {
                KmsError::InvalidCiphertext(
                    "The ciphertext names a key version that does not exist.".into(),
                )
            })?;
        Ok((blob::open(blob_bytes, material, ctx)?, arn))
    }

    /// Encrypt: at most 4096 bytes, under the key's current material version.
    pub async fn encrypt(&self, req: EncryptRequest) -> Result<EncryptResponse> {
        let key_id = required(req.key_id, "keyId")?;
        let mut plaintext = required(req.plaintext, "plaintext")?;
        let result = async {
            if plaintext.is_empty() || plaintext.len() > MAX_ENCRYPT_PLAINTEXT {
                return Err(KmsError::constraint(
                    "...",
                    "plaintext",
                    &format!("Member must have length between 1 and {MAX_ENCRYPT_PLAINTEXT}"),
                ));
            }
            check_algorithm(req.encryption_algorithm.as_deref())?;
            let ctx = context(req.encryption_context)?;
            let (ciphertext_blob, key_id) = self
                .seal_with(&key_id, &ctx, &plaintext, fresh_salt()?)
                .await?;
            check_dry_run(req.dry_run)?;
            Ok(EncryptResponse {
                ciphertext_blob,
                key_id,
                encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            })
        }
        .await;
        plaintext.zeroize();
        result
    }

    /// Decrypt: the blob names its key; KeyId, when given, must match it.
    pub async fn decrypt(&self, req: DecryptRequest) -> Result<DecryptResponse> {
        if req.recipient.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "Recipient (Nitro Enclaves attestation) is not supported.".into(),
            ));
        }
        let blob_bytes = required(req.ciphertext_blob, "ciphertextBlob")?;
        check_algorithm(req.encryption_algorithm.as_deref())?;
        let ctx = context(req.encryption_context)?;
        let (plaintext, key_id) = self
            .open_blob(&blob_bytes, req.key_id.as_deref(), &ctx)
            .await?;
        check_dry_run(req.dry_run)?;
        Ok(DecryptResponse {
            key_id,
            plaintext,
            encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    /// ReEncrypt: decrypts and encrypts again, server-side, under the destination key.
    pub async fn re_encrypt(&self, req: ReEncryptRequest) -> Result<ReEncryptResponse> {
        let blob_bytes = required(req.ciphertext_blob, "ciphertextBlob")?;
        let dest = required(req.destination_key_id, "destinationKeyId")?;
        check_algorithm(req.source_encryption_algorithm.as_deref())?;
        check_algorithm(req.destination_encryption_algorithm.as_deref())?;
        let src_ctx = context(req.source_encryption_context)?;
        let dst_ctx = context(req.destination_encryption_context)?;
        let (plaintext, source_key_id) = self
            .open_blob(&blob_bytes, req.source_key_id.as_deref(), &src_ctx)
            .await?;
        let (ciphertext_blob, key_id) = self
            .seal_with(&dest, &dst_ctx, &plaintext, fresh_salt()?)
            .await?;
        check_dry_run(req.dry_run)?;
        Ok(ReEncryptResponse {
            ciphertext_blob,
            source_key_id,
            key_id,
            source_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
            destination_encryption_algorithm: SYMMETRIC_DEFAULT.into(),
        })
    }

    async fn data_key(
        &self,
        req: GenerateDataKeyRequest,
        with_plaintext: bool,
    ) -> Result<GenerateDataKeyResponse> {
        if req.recipient.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "Recipient (Nitro Enclaves attestation) is not supported.".into(),
            ));
        }
        let key_id = required(req.key_id, "keyId")?;
        let len = match (req.key_spec.as_deref(), req.number_of_bytes) {
            (Some(_), Some(_)) => {
                return Err(KmsError::Validation(
                    "Please specify either number of bytes or key spec, not both.".into(),
                ))
            }
            (None, None) => {
                return Err(KmsError::Validation(
                    "Please specify either number of bytes or key spec.".into(),
                ))
            }
            (Some("AES_256"), None) => 32,
            (Some("AES_128"), None) => 16,
            (Some(s), None) => {
                return Err(KmsError::constraint(
                    s,
                    "keySpec",
                    "Member must satisfy enum value set: [AES_256, AES_128]",
                ))
            }
            (None, Some(n)) => {
                check_range(n, 1, 1024, "numberOfBytes")?;
                n as usize
            }
        };
        let ctx = context(req.encryption_context)?;
        // One draw from the CSPRNG for the data key and the blob's salt.
        let mut random = Zeroizing::new(vec![0u8; len + blob::SALT_LEN]);
        material::random_bytes(&mut random)?;
        let mut salt = [0u8; blob::SALT_LEN];
        salt.copy_from_slice(&random[len..]);
        let plaintext = Zeroizing::new(random[..len].to_vec());
        let (ciphertext_blob, key_id) = self.seal_with(&key_id, &ctx, &plaintext, salt).await?;
        check_dry_run(req.dry_run)?;
        Ok(GenerateDataKeyResponse {
            ciphertext_blob,
            plaintext: with_plaintext.then_some(plaintext),
            key_id,
        })
    }

    /// GenerateDataKey: a random data key, in plaintext and encrypted under the KMS key.
    pub async fn generate_data_key(
        &self,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse> {
        self.data_key(req, true).await
    }

    /// GenerateDataKeyWithoutPlaintext.
    pub async fn generate_data_key_without_plaintext(
        &self,
        req: GenerateDataKeyRequest,
    ) -> Result<GenerateDataKeyResponse> {
        self.data_key(req, false).await
    }

    /// GenerateRandom: 1 to 1024 bytes.
    pub async fn generate_random(
        &self,
        req: GenerateRandomRequest,
    ) -> Result<GenerateRandomResponse> {
        if req.recipient.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "Recipient (Nitro Enclaves attestation) is not supported.".into(),
            ));
        }
        let n = required(req.number_of_bytes, "numberOfBytes")?;
        check_range(n, 1, 1024, "numberOfBytes")?;
        if let Some(store_id) = &req.custom_key_store_id {
            let plaintext = self.random_from_store(store_id, n as usize).await?;
            return Ok(GenerateRandomResponse { plaintext });
        }
        let mut plaintext = Zeroizing::new(vec![0u8; n as usize]);
        material::random_bytes(&mut plaintext)?;
        Ok(GenerateRandomResponse { plaintext })
    }

    // ----- rotation -----------------------------------------------------------------------------

    /// EnableKeyRotation: every 90 to 2560 days, 365 by default.
    pub async fn enable_key_rotation(&self, req: EnableKeyRotationRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let days = req.rotation_period_in_days.unwrap_or(365);
        check_range(days, 90, 2560, "rotationPeriodInDays")?;
        let arn = self.arn(&id);
        let now = now_millis();
        self.modify(&id, |k| {
            refuse_for_custom_key_store(k, &arn, "automatic key rotation")?;
            check_usable(k, &arn)?;
            k.rotation_period_days = Some(days);
            k.next_rotation = Some(now + days * DAY_MS);
            Ok(true)
        })
        .await?;
        Ok(Empty {})
    }

    /// DisableKeyRotation.
    pub async fn disable_key_rotation(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let arn = self.arn(&id);
        self.modify(&id, |k| {
            check_usable(k, &arn)?;
            let change = k.rotation_period_days.is_some();
            k.rotation_period_days = None;
            k.next_rotation = None;
            Ok(change)
        })
        .await?;
        Ok(Empty {})
    }

    /// GetKeyRotationStatus.
    pub async fn get_key_rotation_status(
        &self,
        req: KeyIdRequest,
    ) -> Result<KeyRotationStatusResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let k = self.record(&id).await?;
        Ok(KeyRotationStatusResponse {
            key_rotation_enabled: k.rotation_period_days.is_some(),
            key_id: self.arn(&id),
            rotation_period_in_days: k.rotation_period_days,
            next_rotation_date: k.next_rotation.map(secs),
            on_demand_rotation_start_date: None,
        })
    }

    /// Adds a material version. Old versions stay, so every earlier ciphertext still decrypts.
    async fn rotate(&self, id: &Uuid, rotation_type: &str, on_demand: bool) -> Result<()> {
        let arn = self.arn(id);
        for _ in 0..32 {
            let mut rec = self.record(id).await?;
            refuse_for_custom_key_store(&rec, &arn, "key rotation")?;
            check_usable(&rec, &arn)?;
            let rows = self.store.get_materials(id).await?;
            if on_demand {
                let done = rows
                    .iter()
                    .filter(|r| r.rotation_type.as_deref() == Some("ON_DEMAND"))
                    .count();
                if done >= MAX_ON_DEMAND_ROTATIONS {
                    return Err(KmsError::LimitExceeded(format!(
                        "{arn} has reached the limit of {MAX_ON_DEMAND_ROTATIONS} on-demand rotations."
                    )));
                }
            }
            let version = rows.len() as u32 + 1;
            let now = now_millis();
            if !on_demand {
                let period = rec.rotation_period_days.unwrap_or(365);
                rec.next_rotation = Some(now + period * DAY_MS);
            }
            let material = KeyMaterial::generate()?;
            let row = MaterialRow {
                version,
                wrapped: self.wrap_material(id, version, &material).await?,
                created_at: now,
                rotation_type: Some(rotation_type.into()),
            };
            if self.store.add_material(&rec, &row).await? {
                self.invalidate(id);
                return Ok(());
            }
        }
        Err(KmsError::Internal(
            "The key is being changed concurrently; try again.".into(),
        ))
    }

    /// RotateKeyOnDemand.
    pub async fn rotate_key_on_demand(&self, req: KeyIdRequest) -> Result<KeyIdResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        self.rotate(&id, "ON_DEMAND", true).await?;
        Ok(KeyIdResponse {
            key_id: self.arn(&id),
        })
    }

    /// ListKeyRotations: every rotation, oldest first.
    pub async fn list_key_rotations(
        &self,
        req: ListKeyRotationsRequest,
    ) -> Result<ListKeyRotationsResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let limit = page_limit(req.limit, 1000, 100)?;
        let after: u32 = match decode_marker(req.marker.as_deref())? {
            Some(m) => m.parse().map_err(|_| {
                KmsError::InvalidMarker("The marker is not one this service returned.".into())
            })?,
            None => 0,
        };
        self.record(&id).await?;
        let rows: Vec<_> = self
            .store
            .get_materials(&id)
            .await?
            .into_iter()
            .filter(|r| r.version > 1 && r.version > after)
            .collect();
        let truncated = rows.len() as i64 > limit;
        let rows = &rows[..rows.len().min(limit as usize)];
        let arn = self.arn(&id);
        Ok(ListKeyRotationsResponse {
            rotations: rows
                .iter()
                .map(|r| RotationListEntry {
                    key_id: arn.clone(),
                    rotation_date: secs(r.created_at),
                    rotation_type: r
                        .rotation_type
                        .clone()
                        .unwrap_or_else(|| "AUTOMATIC".into()),
                })
                .collect(),
            truncated,
            next_marker: truncated
                .then(|| rows.last().map(|r| encode_marker(&r.version.to_string())))
                .flatten(),
        })
    }

    // ----- tags ---------------------------------------------------------------------------------

    /// TagResource: adds tags or replaces their values.
    pub async fn tag_resource(&self, req: TagResourceRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let tags = validate_tags(&required(req.tags, "tags")?)?;
        let rec = self.record(&id).await?;
        check_not_pending_deletion(&rec, &self.arn(&id))?;
        self.store.put_tags(&id, &tags).await?;
        if self.store.count_tags(&id).await? > 50 {
            let keys: Vec<String> = tags.into_iter().map(|(k, _)| k).collect();
            self.store.delete_tags(&id, &keys).await?;
            return Err(KmsError::Tag("A key can have at most 50 tags.".into()));
        }
        Ok(Empty {})
    }

    /// UntagResource.
    pub async fn untag_resource(&self, req: UntagResourceRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let keys = required(req.tag_keys, "tagKeys")?;
        let rec = self.record(&id).await?;
        check_not_pending_deletion(&rec, &self.arn(&id))?;
        self.store.delete_tags(&id, &keys).await?;
        Ok(Empty {})
    }

    /// ListResourceTags.
    pub async fn list_resource_tags(
        &self,
        req: ListResourceTagsRequest,
    ) -> Result<ListResourceTagsResponse> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let limit = page_limit(req.limit, 50, 50)?;
        self.record(&id).await?;
        let after = decode_marker(req.marker.as_deref())?;
        let mut rows = self
            .store
            .list_tags(&id, after.as_deref(), limit + 1)
            .await?;
        let truncated = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let next_marker = truncated
            .then(|| rows.last().map(|(k, _)| encode_marker(k)))
            .flatten();
        Ok(ListResourceTagsResponse {
            tags: rows
                .into_iter()
                .map(|(k, v)| Tag {
                    tag_key: Some(k),
                    tag_value: Some(v),
                })
                .collect(),
            truncated,
            next_marker,
        })
    }

    // ----- scheduled work -----------------------------------------------------------------------

    /// Destroys keys whose deletion date is at or before `now` (unix millis) and rotates keys whose
    /// automatic rotation is due. Returns (keys destroyed, keys rotated).
    pub async fn run_due_work(&self, now: i64) -> Result<(usize, usize)> {
        let mut destroyed = 0;
        for id in self.store.keys_due_for_deletion(now).await? {
            if let Some(rec) = self.store.get_key(&id).await? {
                if rec.state == KeyState::PendingDeletion
                    && rec.deletion_date.is_some_and(|d| d <= now)
                    && self.store.destroy_key(&rec).await?
                {
                    self.invalidate(&id);
                    self.destroy_in_token(&rec).await;
                    tracing::info!(key = %self.arn(&id), "key deleted: its material is destroyed");
                    destroyed += 1;
                }
            }
        }
        let mut rotated = 0;
        for id in self.store.keys_due_for_rotation(now).await? {
            match self.rotate(&id, "AUTOMATIC", false).await {
                Ok(()) => rotated += 1,
                Err(e) => {
                    tracing::warn!(key = %self.arn(&id), error = %e, "automatic rotation failed")
                }
            }
        }
        Ok((destroyed, rotated))
    }

    /// After a key in a custom key store is deleted, destroys its key in the token, if this node can
    /// reach the token now (best effort, as AWS: otherwise the object stays in the token, labelled
    /// with the deleted key's ARN, for an operator to remove).
    async fn destroy_in_token(&self, rec: &KeyRecord) {
        let Some(store_id) = &rec.custom_key_store_id else {
            return;
        };
        let label = self.arn(&rec.id);
        let loaded = LoadedKey {
            record: rec.clone(),
            arn: label.clone(),
            materials: Vec::new(),
            wrapped: Vec::new(),
            loaded: Instant::now(),
            refreshing: AtomicBool::new(false),
            stale: AtomicBool::new(false),
        };
        let result = match self.token_of(&loaded).await {
            Ok(token) => {
                let l = label.clone();
                in_token(token, move |t| t.destroy_key(&l)).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(key = %label, store = %store_id, error = %e,
                "the deleted key's material is still in the token; remove the object labelled with its ARN");
        }
    }

    /// GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial: refused, with the
    /// reason AWS gives for the key's kind.
    pub async fn import_key_material(&self, req: KeyIdRequest) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOnly, false)
            .await?;
        let rec = self.record(&id).await?;
        let arn = self.arn(&id);
        refuse_for_custom_key_store(&rec, &arn, "imported key material")?;
        Err(KmsError::UnsupportedOperation(format!(
            "{arn} has Origin {}: only keys with Origin EXTERNAL take imported key material, and \
             this server does not create them.",
            rec.origin
        )))
    }

    /// The operations of asymmetric and HMAC keys, and data key pairs, on this server, whose keys
    /// are all symmetric encryption keys: after the key is found, refused as AWS refuses them for
    /// such a key (InvalidKeyUsageException for a key usage that does not fit; UnsupportedOperation
    /// for GetPublicKey, and for data key pairs, which a key in a custom key store cannot make on AWS
    /// either and this server does not make at all).
    pub async fn refuse_on_symmetric_key(
        &self,
        operation: &str,
        req: KeyIdRequest,
    ) -> Result<Empty> {
        let id = self
            .resolve(&required(req.key_id, "keyId")?, Accepts::KeyOrAlias, false)
            .await?;
        let rec = self.record(&id).await?;
        let arn = self.arn(&id);
        match operation {
            "GetPublicKey" => Err(KmsError::UnsupportedOperation(format!(
                "{arn} is a symmetric encryption key: it has no public key."
            ))),
            "GenerateDataKeyPair" | "GenerateDataKeyPairWithoutPlaintext" => {
                refuse_for_custom_key_store(&rec, &arn, "GenerateDataKeyPair")?;
                Err(KmsError::UnsupportedOperation(format!(
                    "{operation} is not supported by this server (it makes no asymmetric keys)."
                )))
            }
            _ => Err(KmsError::InvalidKeyUsage(format!(
                "{arn} has KeyUsage ENCRYPT_DECRYPT and KeySpec SYMMETRIC_DEFAULT: {operation} needs \
                 an asymmetric or HMAC key of another usage."
            ))),
        }
    }

    // ----- principals ---------------------------------------------------------------------------

    /// Creates a principal. With `adopt`, uses that access key id and secret; otherwise generates
    /// both. Returns the principal and, when generated, the secret.
    pub async fn create_principal(
        &self,
        user_name: &str,
        adopt: Option<(String, Zeroizing<String>)>,
    ) -> Result<(PrincipalInfo, Option<Zeroizing<String>>)> {
        if user_name.is_empty()
            || user_name.len() > 64
            || !user_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(KmsError::Validation(format!(
                "User name '{user_name}' is not valid: 1 to 64 of letters, digits and +=,.@_-"
            )));
        }
        let (access_key_id, secret, generated) = match adopt {
            Some((id, secret)) => {
                if id.len() < 16 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(KmsError::Validation(format!(
                        "Access key id '{id}' is not valid: 16 to 128 letters and digits"
                    )));
                }
                if secret.is_empty()
                    || secret.len() > 512
                    || secret.chars().any(char::is_whitespace)
                {
                    return Err(KmsError::Validation(
                        "The secret access key must be 1 to 512 characters without whitespace."
                            .into(),
                    ));
                }
                (id, secret, false)
            }
            None => {
                let (id, secret) = generate_access_key()?;
                (id, secret, true)
            }
        };
        let (aad, plain) = (secret_aad(&access_key_id), secret.clone());
        let wrapped_secret =
            off_runtime(&self.root, move |root| root.wrap(&aad, plain.as_bytes())).await?;
        let row = PrincipalRow {
            user_name: user_name.to_string(),
            wrapped_secret,
            access_key_id,
            created_at: now_millis(),
        };
        self.store.insert_principal(&row).await?;
        Ok((self.principal_info(&row), generated.then_some(secret)))
    }

    fn principal_info(&self, row: &PrincipalRow) -> PrincipalInfo {
        PrincipalInfo {
            user_name: row.user_name.clone(),
            arn: self.config.partition.user_arn(&row.user_name),
            access_key_id: row.access_key_id.clone(),
            create_date: crate::rfc3339(row.created_at),
        }
    }

    /// Every principal.
    pub async fn list_principals(&self) -> Result<Vec<PrincipalInfo>> {
        Ok(self
            .store
            .list_principals()
            .await?
            .iter()
            .map(|r| self.principal_info(r))
            .collect())
    }

    /// Deletes a principal by name.
    pub async fn delete_principal(&self, user_name: &str) -> Result<()> {
        if !self.store.delete_principal(user_name).await? {
            return Err(KmsError::NotFound(format!(
                "No principal named {user_name}."
            )));
        }
        Ok(())
    }

    /// The ARN and secret access key of an access key id, for SigV4 verification. Misses are not
    /// cached, so a new principal works at once; a deleted one stops within the cache TTL.
    pub async fn principal_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(String, Zeroizing<Vec<u8>>)>> {
        let cached = self
            .principals
            .read()
            .ok()
            .and_then(|map| map.get(access_key_id).cloned());
        if let Some(p) = &cached {
            if p.loaded.elapsed() < self.config.cache_ttl {
                return Ok(Some((p.arn.clone(), p.secret.clone())));
            }
        }
        let Some(row) = self.store.principal_by_access_key(access_key_id).await? else {
            if let Ok(mut map) = self.principals.write() {
                map.remove(access_key_id);
            }
            return Ok(None);
        };
        // The same wrapped bytes as cached: the secret is known, the root need not be asked.
        let secret = match cached.filter(|p| p.wrapped == row.wrapped_secret) {
            Some(p) => p.secret.clone(),
            None => {
                let (aad, wrapped) = (secret_aad(access_key_id), row.wrapped_secret.clone());
                off_runtime(&self.root, move |root| root.unwrap(&aad, &wrapped)).await?
            }
        };
        let arn = self.config.partition.user_arn(&row.user_name);
        if let Ok(mut map) = self.principals.write() {
            map.insert(
                access_key_id.to_string(),
                Arc::new(CachedPrincipal {
                    arn: arn.clone(),
                    secret: secret.clone(),
                    wrapped: row.wrapped_secret,
                    loaded: Instant::now(),
                }),
            );
        }
        Ok(Some((arn, secret)))
    }

    // ----- the JSON API -------------------------------------------------------------------------

    /// Runs one operation of the AWS KMS JSON 1.1 API: `operation` is the part of `X-Amz-Target`
    /// after `TrentService.`, `body` the request JSON. Returns the response JSON. Records the call
    /// in the audit log.
    pub async fn execute(&self, caller: &Caller, operation: &str, body: &[u8]) -> Result<Vec<u8>> {
        let mut key_ref: Option<String> = None;
        let result = self.dispatch(operation, body, &mut key_ref).await;
        if let Some(log) = &self.audit {
            log.record(&AuditRecord {
                event_time: crate::rfc3339(now_millis()),
                event_name: operation,
                principal_arn: &caller.principal_arn,
                access_key_id: &caller.access_key_id,
                request_id: &caller.request_id,
                source_ip_address: caller.source_ip.as_deref(),
                key_id: key_ref.as_deref(),
                error_code: result.as_ref().err().map(KmsError::aws_name),
            });
        }
        result
    }

    async fn dispatch(
        &self,
        operation: &str,
        body: &[u8],
        key_ref: &mut Option<String>,
    ) -> Result<Vec<u8>> {
        if ASYMMETRIC_AND_HMAC_OPERATIONS.contains(&operation) {
            let req: KeyIdRequest = parse(operation, body)?;
            key_ref.clone_from(&req.key_id);
            return to_json(&self.refuse_on_symmetric_key(operation, req).await?);
        }
        macro_rules! ops {
            ($($name:literal => $method:ident($req:ty) $(key $field:ident)?),* $(,)?) => {
                match operation {
                    $($name => {
                        let req: $req = parse(operation, body)?;
                        $(*key_ref = req.$field.clone();)?
                        to_json(&self.$method(req).await?)
                    })*
                    _ => Err(KmsError::UnknownOperation(format!("Operation {operation} is not known to this service."))),
                }
            };
        }
        ops! {
            "CreateKey" => create_key(CreateKeyRequest),
            "DescribeKey" => describe_key(KeyIdRequest) key key_id,
            "ListKeys" => list_keys(ListKeysRequest),
            "UpdateKeyDescription" => update_key_description(UpdateKeyDescriptionRequest) key key_id,
            "EnableKey" => enable_key(KeyIdRequest) key key_id,
            "DisableKey" => disable_key(KeyIdRequest) key key_id,
            "ScheduleKeyDeletion" => schedule_key_deletion(ScheduleKeyDeletionRequest) key key_id,
            "CancelKeyDeletion" => cancel_key_deletion(KeyIdRequest) key key_id,
            "CreateAlias" => create_alias(AliasRequest) key target_key_id,
            "UpdateAlias" => update_alias(AliasRequest) key target_key_id,
            "DeleteAlias" => delete_alias(DeleteAliasRequest) key alias_name,
            "ListAliases" => list_aliases(ListAliasesRequest) key key_id,
            "Encrypt" => encrypt(EncryptRequest) key key_id,
            "Decrypt" => decrypt(DecryptRequest) key key_id,
            "ReEncrypt" => re_encrypt(ReEncryptRequest) key destination_key_id,
            "GenerateDataKey" => generate_data_key(GenerateDataKeyRequest) key key_id,
            "GenerateDataKeyWithoutPlaintext" => generate_data_key_without_plaintext(GenerateDataKeyRequest) key key_id,
            "GenerateRandom" => generate_random(GenerateRandomRequest),
            "EnableKeyRotation" => enable_key_rotation(EnableKeyRotationRequest) key key_id,
            "DisableKeyRotation" => disable_key_rotation(KeyIdRequest) key key_id,
            "GetKeyRotationStatus" => get_key_rotation_status(KeyIdRequest) key key_id,
            "RotateKeyOnDemand" => rotate_key_on_demand(KeyIdRequest) key key_id,
            "ListKeyRotations" => list_key_rotations(ListKeyRotationsRequest) key key_id,
            "TagResource" => tag_resource(TagResourceRequest) key key_id,
            "UntagResource" => untag_resource(UntagResourceRequest) key key_id,
            "ListResourceTags" => list_resource_tags(ListResourceTagsRequest) key key_id,
            "GetParametersForImport" => import_key_material(KeyIdRequest) key key_id,
            "ImportKeyMaterial" => import_key_material(KeyIdRequest) key key_id,
            "DeleteImportedKeyMaterial" => import_key_material(KeyIdRequest) key key_id,
            "CreateCustomKeyStore" => create_custom_key_store(CreateCustomKeyStoreRequest),
            "DescribeCustomKeyStores" => describe_custom_key_stores(DescribeCustomKeyStoresRequest) key custom_key_store_id,
            "ConnectCustomKeyStore" => connect_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id,
            "DisconnectCustomKeyStore" => disconnect_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id,
            "UpdateCustomKeyStore" => update_custom_key_store(UpdateCustomKeyStoreRequest) key custom_key_store_id,
            "DeleteCustomKeyStore" => delete_custom_key_store(CustomKeyStoreIdRequest) key custom_key_store_id,
        }
    }
}

/// Operations of key kinds this server does not create ([`Kms::refuse_on_symmetric_key`]).
const ASYMMETRIC_AND_HMAC_OPERATIONS: [&str; 8] = [
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "GetPublicKey",
    "DeriveSharedSecret",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

fn fresh_salt() -> Result<[u8; blob::SALT_LEN]> {
    let mut salt = [0u8; blob::SALT_LEN];
    material::random_bytes(&mut salt)?;
    Ok(salt)
}

/// Parses a request body; an empty body is `{}`. The error never echoes the body (it may hold
/// plaintext).
fn parse<T: serde::de::DeserializeOwned>(operation: &str, body: &[u8]) -> Result<T> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => "a member has the wrong type or an invalid value",
            serde_json::error::Category::Eof => "the body ends early",
            _ => "the body is not valid JSON",
        };
        KmsError::Serialization(format!(
            "Cannot read the {operation} request: {what} (line {}, column {}).",
            e.line(),
            e.column()
        ))
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|_| KmsError::Internal("Cannot encode the response.".into()))
}

/// A new access key id (`AKIA` + 16 base32 characters) and a 40-character secret.
fn generate_access_key() -> Result<(String, Zeroizing<String>)> {
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut r = Zeroizing::new([0u8; 46]);
    material::random_bytes(&mut r[..])?;
    let id: String = std::iter::once("AKIA".to_string())
        .chain(
            r[..16]
                .iter()
                .map(|b| (B32[(b & 31) as usize] as char).to_string()),
        )
        .collect();
    let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&r[16..46]));
    Ok((id, secret))
}
