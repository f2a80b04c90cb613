//! Request and response shapes of the AWS KMS API (JSON 1.1: PascalCase members, blobs as base64,
//! timestamps as epoch seconds). Every request member is optional here so that a missing one is
//! answered with `ValidationException`, as AWS does, rather than a parse error.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::secret::SecretBytes;

/// Base64 blobs in JSON.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes bytes as standard base64.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    /// Deserializes an optional base64 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| {
            STANDARD
                .decode(s.as_bytes())
                .map_err(|_| serde::de::Error::custom("blob is not valid base64"))
        })
        .transpose()
    }
}

/// AWS's `Integer` members: 32-bit. A value beyond `i32` is a `SerializationException`, as AWS
/// answers; `-0` is 0. Held as `i64` so the range checks stay one type.
pub mod int32 {
    use serde::de::{Error, Visitor};
    use serde::Deserializer;

    struct Int32;

    impl Visitor<'_> for Int32 {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a 32-bit integer")
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(|v| Some(i64::from(v)))
                .map_err(|_| E::custom("integer out of 32-bit range"))
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
            i32::try_from(v)
                .map(|v| Some(i64::from(v)))
                .map_err(|_| E::custom("integer out of 32-bit range"))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
            // serde_json reads the literal `-0` as the float -0.0; every other float is refused.
            if v == 0.0 && v.is_sign_negative() {
                Ok(Some(0))
            } else {
                Err(E::custom("not an integer"))
            }
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// Deserializes an optional 32-bit integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        d.deserialize_any(Int32)
    }
}

/// A map member (`EncryptionContext` and the like): a JSON object whose keys are unique. A repeated
/// key is a `SerializationException`, as AWS answers, never last-wins.
pub mod unique_map {
    use std::collections::BTreeMap;

    use serde::de::{Error, MapAccess, Visitor};
    use serde::Deserializer;

    struct UniqueMap;

    impl<'de> Visitor<'de> for UniqueMap {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object of strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.insert(k, v).is_some() {
                    return Err(A::Error::custom("duplicate key in a map"));
                }
            }
            Ok(Some(out))
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    /// Deserializes an optional map with unique keys.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<BTreeMap<String, String>>, D::Error> {
        d.deserialize_any(UniqueMap)
    }
}

/// Deserializes a structure from a JSON object only. serde's derived `Deserialize` also reads a
/// struct from a JSON array (by position); AWS refuses that with a `SerializationException`.
pub fn map_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct MapOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for MapOnly<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(MapOnly(std::marker::PhantomData))
}

/// A tag on a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Tag {
    /// Tag key.
    pub tag_key: Option<String>,
    /// Tag value.
    pub tag_value: Option<String>,
}

/// A tag as read from a request: the same members, read from a JSON object only.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagMembers {
    #[serde(default)]
    tag_key: Option<String>,
    #[serde(default)]
    tag_value: Option<String>,
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t: TagMembers = map_only(d)?;
        Ok(Tag {
            tag_key: t.tag_key,
            tag_value: t.tag_value,
        })
    }
}

/// The state of a KMS key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyState {
    /// Usable.
    Enabled,
    /// Not usable until enabled.
    Disabled,
    /// Scheduled for deletion; not usable; cancellable.
    PendingDeletion,
    /// In a custom key store that is not connected (shown, never stored): not usable until the
    /// store is connected again.
    Unavailable,
}

impl KeyState {
    /// The name AWS uses.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::Unavailable => "Unavailable",
        }
    }
}

/// DescribeKey's view of a key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    /// Owning account.
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    /// Key id (UUID).
    pub key_id: String,
    /// Key ARN.
    pub arn: String,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// True when the state is Enabled.
    pub enabled: bool,
    /// Description.
    pub description: String,
    /// Always `ENCRYPT_DECRYPT` for now.
    pub key_usage: String,
    /// The state.
    pub key_state: KeyState,
    /// When a key pending deletion will be deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<f64>,
    /// `AWS_KMS`.
    pub origin: String,
    /// `CUSTOMER`.
    pub key_manager: String,
    /// Deprecated twin of `KeySpec`.
    pub customer_master_key_spec: String,
    /// `SYMMETRIC_DEFAULT`.
    pub key_spec: String,
    /// `["SYMMETRIC_DEFAULT"]`.
    pub encryption_algorithms: Vec<String>,
    /// Always false.
    pub multi_region: bool,
    /// Days of the deletion window while pending deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_deletion_window_in_days: Option<i64>,
    /// The custom key store holding the key (origin `AWS_CLOUDHSM`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_key_store_id: Option<String>,
    /// The cluster of that custom key store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cloud_hsm_cluster_id: Option<String>,
}

/// A custom key store's password (the token's user PIN): zeroized on drop, never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct KeyStorePassword(String);

impl Drop for KeyStorePassword {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl KeyStorePassword {
    /// The password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeyStorePassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyStorePassword(<redacted>)")
    }
}

macro_rules! request {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, Deserialize)]
        #[serde(rename_all = "PascalCase")]
        #[allow(missing_docs)]
        pub struct $name { $($(#[$fm])* #[serde(default)] pub $field: Option<$ty>,)* }
    };
}

request!(
    /// CreateKey.
    CreateKeyRequest {
        description: String,
        key_usage: String,
        customer_master_key_spec: String,
        key_spec: String,
        origin: String,
        policy: String,
        bypass_policy_lockout_safety_check: bool,
        tags: Vec<Tag>,
        multi_region: bool,
        custom_key_store_id: String,
        xks_key_id: String,
    }
);
request!(
    /// GetKeyPolicy.
    GetKeyPolicyRequest { key_id: String, policy_name: String }
);
request!(
    /// PutKeyPolicy.
    PutKeyPolicyRequest {
        key_id: String,
        policy_name: String,
        policy: String,
        bypass_policy_lockout_safety_check: bool,
    }
);
request!(
    /// ListKeyPolicies.
    ListKeyPoliciesRequest { key_id: String, #[serde(with = "int32")] limit: i64, marker: String }
);
request!(
    /// Operations that take only a key identifier.
    KeyIdRequest { key_id: String }
);
request!(
    /// ListKeys.
    ListKeysRequest { #[serde(with = "int32")] limit: i64, marker: String }
);
request!(
    /// UpdateKeyDescription.
    UpdateKeyDescriptionRequest { key_id: String, description: String }
);
request!(
    /// ScheduleKeyDeletion.
    ScheduleKeyDeletionRequest { key_id: String, #[serde(with = "int32")] pending_window_in_days: i64 }
);
request!(
    /// CreateAlias and UpdateAlias.
    AliasRequest { alias_name: String, target_key_id: String }
);
request!(
    /// DeleteAlias.
    DeleteAliasRequest { alias_name: String }
);
request!(
    /// ListAliases.
    ListAliasesRequest { key_id: String, #[serde(with = "int32")] limit: i64, marker: String }
);
request!(
    /// Encrypt.
    EncryptRequest {
        key_id: String,
        plaintext: SecretBytes,
        #[serde(with = "unique_map")]
        encryption_context: BTreeMap<String, String>,
        grant_tokens: Vec<String>,
        encryption_algorithm: String,
        dry_run: bool,
    }
);
request!(
    /// Decrypt.
    DecryptRequest {
        #[serde(with = "b64")]
        ciphertext_blob: Vec<u8>,
        key_id: String,
        #[serde(with = "unique_map")]
        encryption_context: BTreeMap<String, String>,
        grant_tokens: Vec<String>,
        encryption_algorithm: String,
        dry_run: bool,
        recipient: serde_json::Value,
    }
);
request!(
    /// ReEncrypt.
    ReEncryptRequest {
        #[serde(with = "b64")]
        ciphertext_blob: Vec<u8>,
        #[serde(with = "unique_map")]
        source_encryption_context: BTreeMap<String, String>,
        source_key_id: String,
        destination_key_id: String,
        #[serde(with = "unique_map")]
        destination_encryption_context: BTreeMap<String, String>,
        source_encryption_algorithm: String,
        destination_encryption_algorithm: String,
        grant_tokens: Vec<String>,
        dry_run: bool,
    }
);
request!(
    /// GenerateDataKey and GenerateDataKeyWithoutPlaintext.
    GenerateDataKeyRequest {
        key_id: String,
        key_spec: String,
        #[serde(with = "int32")] number_of_bytes: i64,
        #[serde(with = "unique_map")]
        encryption_context: BTreeMap<String, String>,
        grant_tokens: Vec<String>,
        dry_run: bool,
        recipient: serde_json::Value,
    }
);
request!(
    /// GenerateRandom.
    GenerateRandomRequest {
        #[serde(with = "int32")] number_of_bytes: i64,
        custom_key_store_id: String,
        recipient: serde_json::Value,
    }
);
request!(
    /// CreateCustomKeyStore.
    CreateCustomKeyStoreRequest {
        custom_key_store_name: String,
        cloud_hsm_cluster_id: String,
        trust_anchor_certificate: String,
        key_store_password: KeyStorePassword,
        custom_key_store_type: String,
        xks_proxy_uri_endpoint: String,
        xks_proxy_uri_path: String,
        xks_proxy_vpc_endpoint_service_name: String,
        xks_proxy_connectivity: String,
    }
);
request!(
    /// DescribeCustomKeyStores.
    DescribeCustomKeyStoresRequest {
        custom_key_store_id: String,
        custom_key_store_name: String,
        #[serde(with = "int32")] limit: i64,
        marker: String,
    }
);
request!(
    /// ConnectCustomKeyStore, DisconnectCustomKeyStore and DeleteCustomKeyStore.
    CustomKeyStoreIdRequest { custom_key_store_id: String }
);
request!(
    /// UpdateCustomKeyStore.
    UpdateCustomKeyStoreRequest {
        custom_key_store_id: String,
        new_custom_key_store_name: String,
        key_store_password: KeyStorePassword,
        cloud_hsm_cluster_id: String,
        xks_proxy_uri_endpoint: String,
        xks_proxy_uri_path: String,
        xks_proxy_vpc_endpoint_service_name: String,
        xks_proxy_connectivity: String,
    }
);
request!(
    /// EnableKeyRotation.
    EnableKeyRotationRequest { key_id: String, #[serde(with = "int32")] rotation_period_in_days: i64 }
);
request!(
    /// ListKeyRotations.
    ListKeyRotationsRequest { key_id: String, #[serde(with = "int32")] limit: i64, marker: String }
);
request!(
    /// TagResource.
    TagResourceRequest { key_id: String, tags: Vec<Tag> }
);
request!(
    /// UntagResource.
    UntagResourceRequest { key_id: String, tag_keys: Vec<String> }
);
request!(
    /// ListResourceTags.
    ListResourceTagsRequest { key_id: String, #[serde(with = "int32")] limit: i64, marker: String }
);

/// A response that only carries key metadata (CreateKey, DescribeKey).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadataResponse {
    /// The key.
    pub key_metadata: KeyMetadata,
}

/// ListKeys entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct KeyListEntry {
    pub key_id: String,
    pub key_arn: String,
}

/// ListKeys.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ListKeysResponse {
    pub keys: Vec<KeyListEntry>,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// ScheduleKeyDeletion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ScheduleKeyDeletionResponse {
    pub key_id: String,
    pub deletion_date: f64,
    pub key_state: KeyState,
    pub pending_window_in_days: i64,
}

/// CancelKeyDeletion.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct KeyIdResponse {
    pub key_id: String,
}

/// GetKeyPolicy.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct GetKeyPolicyResponse {
    pub policy: String,
    pub policy_name: String,
}

/// ListKeyPolicies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ListKeyPoliciesResponse {
    pub policy_names: Vec<String>,
    pub truncated: bool,
}

/// ListAliases entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: String,
    pub creation_date: f64,
    pub last_updated_date: f64,
}

/// ListAliases.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ListAliasesResponse {
    pub aliases: Vec<AliasListEntry>,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// Encrypt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct EncryptResponse {
    #[serde(serialize_with = "b64::serialize")]
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
    pub encryption_algorithm: String,
}

/// Decrypt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct DecryptResponse {
    pub key_id: String,
    pub plaintext: SecretBytes,
    pub encryption_algorithm: String,
}

/// ReEncrypt.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ReEncryptResponse {
    #[serde(serialize_with = "b64::serialize")]
    pub ciphertext_blob: Vec<u8>,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: String,
    pub destination_encryption_algorithm: String,
}

/// GenerateDataKey (with `plaintext`) and GenerateDataKeyWithoutPlaintext (without).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct GenerateDataKeyResponse {
    #[serde(serialize_with = "b64::serialize")]
    pub ciphertext_blob: Vec<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<SecretBytes>,
    pub key_id: String,
}

/// GenerateRandom.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct GenerateRandomResponse {
    pub plaintext: SecretBytes,
}

/// GetKeyRotationStatus.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct KeyRotationStatusResponse {
    pub key_rotation_enabled: bool,
    pub key_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_period_in_days: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_rotation_date: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand_rotation_start_date: Option<f64>,
}

/// ListKeyRotations entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct RotationListEntry {
    pub key_id: String,
    pub rotation_date: f64,
    pub rotation_type: String,
}

/// ListKeyRotations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ListKeyRotationsResponse {
    pub rotations: Vec<RotationListEntry>,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// ListResourceTags.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct ListResourceTagsResponse {
    pub tags: Vec<Tag>,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// CreateCustomKeyStore.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct CreateCustomKeyStoreResponse {
    pub custom_key_store_id: String,
}

/// One custom key store as DescribeCustomKeyStores shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct CustomKeyStoreEntry {
    pub custom_key_store_id: String,
    pub custom_key_store_name: String,
    pub cloud_hsm_cluster_id: String,
    pub trust_anchor_certificate: String,
    pub connection_state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_error_code: Option<String>,
    pub creation_date: f64,
    pub custom_key_store_type: String,
}

/// DescribeCustomKeyStores.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct DescribeCustomKeyStoresResponse {
    pub custom_key_stores: Vec<CustomKeyStoreEntry>,
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}

/// An empty JSON object, the answer of operations that return nothing.
#[derive(Debug, Serialize)]
pub struct Empty {}

// ----- grants -----------------------------------------------------------------------------------

/// A grant's constraints (`GrantConstraints`): encryption context pairs a request must include
/// (`EncryptionContextSubset`) or equal (`EncryptionContextEquals`). `SourceArn` is read so that it
/// can be refused (this server has no AWS service principals).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    /// Pairs the request's encryption context must include.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<BTreeMap<String, String>>,
    /// Pairs the request's encryption context must equal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<BTreeMap<String, String>>,
    /// An AWS resource on whose behalf a service calls; refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_arn: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GrantConstraintsMembers {
    #[serde(default, with = "unique_map")]
    encryption_context_subset: Option<BTreeMap<String, String>>,
    #[serde(default, with = "unique_map")]
    encryption_context_equals: Option<BTreeMap<String, String>>,
    #[serde(default)]
    source_arn: Option<String>,
}

impl<'de> Deserialize<'de> for GrantConstraints {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let c: GrantConstraintsMembers = map_only(d)?;
        Ok(GrantConstraints {
            encryption_context_subset: c.encryption_context_subset,
            encryption_context_equals: c.encryption_context_equals,
            source_arn: c.source_arn,
        })
    }
}

request!(
    /// CreateGrant.
    CreateGrantRequest {
        key_id: String,
        grantee_principal: String,
        retiring_principal: String,
        operations: Vec<String>,
        constraints: GrantConstraints,
        grant_tokens: Vec<String>,
        name: String,
        dry_run: bool,
        grantee_service_principal: String,
        retiring_service_principal: String,
    }
);
request!(
    /// ListGrants.
    ListGrantsRequest {
        key_id: String,
        grant_id: String,
        grantee_principal: String,
        grantee_service_principal: String,
        #[serde(with = "int32")] limit: i64,
        marker: String,
    }
);
request!(
    /// ListRetirableGrants.
    ListRetirableGrantsRequest {
        retiring_principal: String,
        retiring_service_principal: String,
        #[serde(with = "int32")] limit: i64,
        marker: String,
    }
);
request!(
    /// RetireGrant: a grant token, or a key and a grant id.
    RetireGrantRequest { grant_token: String, key_id: String, grant_id: String, dry_run: bool }
);
request!(
    /// RevokeGrant.
    RevokeGrantRequest { key_id: String, grant_id: String, dry_run: bool }
);

/// CreateGrant.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateGrantResponse {
    /// A token naming the grant, usable at once in `GrantTokens` and RetireGrant.
    pub grant_token: String,
    /// 64 hex digits.
    pub grant_id: String,
}

/// One grant as ListGrants and ListRetirableGrants show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantListEntry {
    /// The key's ARN.
    pub key_id: String,
    /// The grant id.
    pub grant_id: String,
    /// The grant's name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Creation time, epoch seconds.
    pub creation_date: f64,
    /// Who the grant gives permissions to.
    pub grantee_principal: String,
    /// Who may retire the grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// The account that created the grant, as `arn:aws:iam::ACCOUNT:root`.
    pub issuing_account: String,
    /// The grant operations.
    pub operations: Vec<String>,
    /// The encryption context constraints, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

/// ListGrants and ListRetirableGrants.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListGrantsResponse {
    /// The page's grants.
    pub grants: Vec<GrantListEntry>,
    /// Whether more follow.
    pub truncated: bool,
    /// Where the next page starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_marker: Option<String>,
}
