//! Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant and RevokeGrant, as AWS KMS has
//! them ("Grants in AWS KMS"); grant tokens; and the seams with the authorization point: a key's
//! grants as the policy engine weighs them ([`Kms::grants_for_key`], cached), CreateGrant's condition
//! keys ([`CreateGrantRequest::fill_context`]), and RetireGrant's decision, which the grant itself shapes (its
//! retiring principal, its grantee when it allows RetireGrant) and which is made here through
//! [`Kms::authorize`].
//!
//! A grant token is `base64url(version ‖ grant id ‖ key id ‖ nonce ‖ HMAC-SHA-256)`: it names the
//! grant and its key, and its MAC, under a key the root of trust wraps (kept in the metadata table),
//! tells a token this service issued from a forged one. Every CreateGrant gives a new token (the
//! nonce); all of a grant's tokens are interchangeable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_lc_rs::{digest, hmac};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::root::off_runtime;
use super::validate::{check_dry_run, check_length, check_range, decode_marker, page, required};
use super::{secs, Kms};
use crate::api::*;
use crate::audit::Caller;
use crate::error::{KmsError, Result};
use crate::ids::Accepts;
use crate::material::random_bytes;
use crate::now_millis;
use crate::policy::{self, keys, RequestContext, RequestedGrant};
use crate::store::{GrantInsert, GrantRow, KeyRow, StoredKeyState};

/// Grants one key may have (AWS's quota "Grants per KMS key").
pub const MAX_GRANTS_PER_KEY: i64 = 50_000;

/// The operations a grant may allow (AWS's `GrantOperation`), in AWS's order.
pub const GRANT_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
];

/// Of those, the ones a symmetric encryption key supports (the only keys this server makes).
const SYMMETRIC_OPERATIONS: &[&str] = &[
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
];

/// Pairs in one encryption context constraint, and the longest value (AWS's limits).
const MAX_CONSTRAINT_PAIRS: usize = 8;
const MAX_CONSTRAINT_VALUE: usize = 384;

/// What ListGrants and ListRetirableGrants return at most per page, whatever `Limit` says (AWS's
/// documentation: 1 to 100).
const MAX_PAGE: i64 = 100;

/// The metadata row holding the grant token MAC key, wrapped by the root of trust.
pub(super) const GRANT_TOKEN_KEY: &str = "grant_token_key";
/// What the wrapped grant token key is bound to.
pub(super) const GRANT_TOKEN_KEY_AAD: &[u8] = b"envelope/grant-token-key/v1";
const TOKEN_VERSION: u8 = 1;
const TOKEN_MAC_DOMAIN: &[u8] = b"envelope/grant-token/v1";
const TOKEN_BODY: usize = 1 + 32 + 16 + 16;
const TOKEN_LEN: usize = TOKEN_BODY + 32;

/// A principal as CreateGrant and the list filters take it (`PrincipalIdType`): 1 to 256
/// characters of `[\w+=,.@:/-]`.
fn check_principal(v: &str, field: &str) -> Result<()> {
    check_length(v, 1, 256, field)?;
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || "+=,.@:/-".contains(c));
    if !ok {
        return Err(KmsError::constraint(
            v,
            field,
            "Member must satisfy regular expression pattern: ^[\\w+=,.@:/-]+$",
        ));
    }
    Ok(())
}

/// Whether `arn` names an IAM principal a grant can name: an account's root, a user, a role, a
/// federated user or a role session.
fn is_principal_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let path_ok = |rest: &str| !rest.is_empty() && !rest.ends_with('/');
    let resource_ok = match service {
        "iam" => {
            resource == "root"
                || ["user/", "role/", "federated-user/"]
                    .iter()
                    .any(|p| resource.strip_prefix(p).is_some_and(path_ok))
        }
        "sts" => {
            resource
                .strip_prefix("assumed-role/")
                .is_some_and(|rest| rest.split('/').filter(|s| !s.is_empty()).count() >= 2)
                || resource
                    .strip_prefix("federated-user/")
                    .is_some_and(path_ok)
        }
        _ => false,
    };
    prefix == "arn"
        && partition.starts_with("aws")
        && region.is_empty()
        && account_ok
        && resource_ok
}

fn check_principal_arn(v: &str) -> Result<()> {
    if is_principal_arn(v) {
        Ok(())
    } else {
        Err(KmsError::InvalidArn(format!(
            "{v} is not a valid principal: use the ARN of an account (arn:aws:iam::ACCOUNT:root), an \
             IAM user, an IAM role or an assumed-role session."
        )))
    }
}

/// A grant id as requests name it: 1 to 128 characters (the model), then 64 hex digits (every id
/// this service gives out).
fn check_grant_id(id: &str) -> Result<()> {
    check_length(id, 1, 128, "grantId")?;
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KmsError::InvalidGrantId(format!(
            "Grant ID {id} is not valid: a grant id is 64 hexadecimal digits."
        )));
    }
    Ok(())
}

fn check_constraint(pairs: &BTreeMap<String, String>, field: &str) -> Result<()> {
    if pairs.len() > MAX_CONSTRAINT_PAIRS {
        return Err(KmsError::Validation(format!(
            "The {field} grant constraint has {} encryption context pairs; at most \
             {MAX_CONSTRAINT_PAIRS} are allowed.",
            pairs.len()
        )));
    }
    if let Some((k, _)) = pairs
        .iter()
        .find(|(_, v)| v.chars().count() > MAX_CONSTRAINT_VALUE)
    {
        return Err(KmsError::Validation(format!(
            "The value of {k} in the {field} grant constraint is longer than \
             {MAX_CONSTRAINT_VALUE} characters."
        )));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `arn:aws:iam::ACCOUNT:root`, as ListGrants shows the issuing account.
fn account_root(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

/// The engine's view of a grant row.
pub(crate) fn engine_grant(g: &GrantRow) -> policy::Grant {
    let constrained =
        g.encryption_context_subset.is_some() || g.encryption_context_equals.is_some();
    policy::Grant {
        grant_id: g.grant_id.clone(),
        grantee_principal: g.grantee_principal.clone(),
        operations: g.operations.clone(),
        constraints: constrained.then(|| policy::GrantConstraints {
            encryption_context_subset: g.encryption_context_subset.clone(),
            encryption_context_equals: g.encryption_context_equals.clone(),
        }),
    }
}

/// What may retire `g`, as grants the engine weighs for `kms:RetireGrant`: the grant itself (its
/// grantee, when its operations include RetireGrant) and its retiring principal. Beside them the
/// key policy (and the identity policies it delegates to) decides, as for any key action, so the
/// key's account can retire every grant on its keys.
fn retirement_grants(g: &GrantRow) -> Vec<policy::Grant> {
    let mut grants = vec![engine_grant(g)];
    if let Some(retiring) = &g.retiring_principal {
        grants.push(policy::Grant {
            grant_id: g.grant_id.clone(),
            grantee_principal: retiring.clone(),
            operations: vec!["RetireGrant".into()],
            constraints: None,
        });
    }
    grants
}

impl CreateGrantRequest {
    /// Fills `ctx` with CreateGrant's condition keys: `kms:GrantOperations`, `kms:GranteePrincipal`,
    /// `kms:RetiringPrincipal` (when given), `kms:GrantIsForAWSResource` (always false: no AWS service
    /// calls through this server), `kms:GrantConstraintType` (when constrained), and the requested grant
    /// itself, so that a grant allowing CreateGrant allows only grants within it.
    pub fn fill_context(&self, ctx: &mut RequestContext) {
        let req = self;
        let operations = req.operations.clone().unwrap_or_default();
        ctx.set_values(keys::GRANT_OPERATIONS, operations.iter().cloned());
        if let Some(g) = &req.grantee_principal {
            ctx.set(keys::GRANTEE_PRINCIPAL, g);
        }
        if let Some(r) = &req.retiring_principal {
            ctx.set(keys::RETIRING_PRINCIPAL, r);
        }
        ctx.set(keys::GRANT_IS_FOR_AWS_RESOURCE, "false");
        let c = req.constraints.as_ref();
        let subset = c.and_then(|c| c.encryption_context_subset.clone());
        let equals = c.and_then(|c| c.encryption_context_equals.clone());
        let types: Vec<&str> = [
            ("EncryptionContextEquals", equals.is_some()),
            ("EncryptionContextSubset", subset.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(t, _)| *t)
        .collect();
        if !types.is_empty() {
            ctx.set_values(keys::GRANT_CONSTRAINT_TYPE, types);
        }
        ctx.set_requested_grant(RequestedGrant {
            operations,
            constraints: (subset.is_some() || equals.is_some()).then_some(
                policy::GrantConstraints {
                    encryption_context_subset: subset,
                    encryption_context_equals: equals,
                },
            ),
        });
    }
}

impl Kms {
    // ----- the seams ----------------------------------------------------------------------------

    /// The grants on a key as the policy engine weighs them, cached for the configured TTL and
    /// forgotten when this node creates, retires or revokes one of them (another node's change
    /// shows within the TTL; a grant token makes a new grant count at once, see
    /// [`Kms::grants_for_request`]).
    pub async fn grants_for_key(&self, key_id: &Uuid) -> Result<Arc<[policy::Grant]>> {
        let name = key_id.to_string();
        if let Some(g) = self.cache.grants.fresh(&name, self.config.cache_ttl) {
            return Ok(g);
        }
        let ticket = self.cache.grants.ticket(&name);
        let rows = self.store.grants_of_key(key_id).await?;
        let grants: Arc<[policy::Grant]> = rows.iter().map(engine_grant).collect();
        self.cache.grants.put(name, grants.clone(), ticket);
        Ok(grants)
    }

    /// A key's grants for a request that names `tokens` (`GrantTokens`, already checked with
    /// [`Kms::check_grant_tokens`]): the cached grants, plus each grant a token names on this key
    /// that the cache does not hold yet (read from the store: a grant created on another node
    /// counts at once, as AWS's grant tokens make a grant count before it is consistent).
    pub async fn grants_for_request(
        &self,
        key_id: &Uuid,
        tokens: &[(Uuid, String)],
    ) -> Result<Arc<[policy::Grant]>> {
        let cached = self.grants_for_key(key_id).await?;
        let mut extra = Vec::new();
        for (key, grant_id) in tokens.iter().filter(|(k, _)| k == key_id) {
            if cached.iter().any(|g| &g.grant_id == grant_id) {
                continue;
            }
            if let Some(row) = self.store.get_grant(grant_id).await? {
                if row.key_id == *key {
                    extra.push(engine_grant(&row));
                }
            }
        }
        if extra.is_empty() {
            return Ok(cached);
        }
        Ok(cached.iter().cloned().chain(extra).collect())
    }

    /// Checks a request's `GrantTokens`: at most 10, each 1 to 8192 characters
    /// (`ValidationException`), each a token this service issued (`InvalidGrantTokenException`).
    /// Returns the key and grant each names.
    pub async fn check_grant_tokens(
        &self,
        tokens: Option<&[String]>,
    ) -> Result<Vec<(Uuid, String)>> {
        super::validate::check_grant_tokens(tokens)?;
        let mut named = Vec::new();
        for t in tokens.unwrap_or_default() {
            named.push(self.open_grant_token(t).await?);
        }
        Ok(named)
    }

    // ----- grant tokens -------------------------------------------------------------------------

    /// The grant token MAC key: made on first use (32 random bytes, wrapped by the root of trust,
    /// in the metadata table; the first node to write it wins), then kept in memory.
    async fn grant_token_key(&self) -> Result<hmac::Key> {
        let raw = self
            .cache
            .grant_token_key
            .get_or_try_init(|| async {
                let wrapped = match self.store.meta_get(GRANT_TOKEN_KEY).await? {
                    Some(w) => w,
                    None => {
                        let mut fresh = Zeroizing::new(vec![0u8; 32]);
                        random_bytes(&mut fresh)?;
                        let w =
                            off_runtime(&self.root, move |r| r.wrap(GRANT_TOKEN_KEY_AAD, &fresh))
                                .await?;
                        if self.store.meta_put_new(GRANT_TOKEN_KEY, &w).await? {
                            w
                        } else {
                            self.store.meta_get(GRANT_TOKEN_KEY).await?.ok_or_else(|| {
                                KmsError::Internal("The grant token key went missing.".into())
                            })?
                        }
                    }
                };
                let raw = off_runtime(&self.root, move |r| r.unwrap(GRANT_TOKEN_KEY_AAD, &wrapped))
                    .await?;
                Ok::<_, KmsError>(Arc::new(Zeroizing::new(raw.to_vec())))
            })
            .await?;
        Ok(hmac::Key::new(hmac::HMAC_SHA256, raw))
    }

    async fn grant_token(&self, key_id: &Uuid, grant_id: &str) -> Result<String> {
        let id = unhex(grant_id)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| KmsError::Internal("A stored grant id is malformed.".into()))?;
        let mut body = Vec::with_capacity(TOKEN_LEN);
        body.push(TOKEN_VERSION);
        body.extend_from_slice(&id);
        body.extend_from_slice(key_id.as_bytes());
        let mut nonce = [0u8; 16];
        random_bytes(&mut nonce)?;
        body.extend_from_slice(&nonce);
        let key = self.grant_token_key().await?;
        let mut mac = hmac::Context::with_key(&key);
        mac.update(TOKEN_MAC_DOMAIN);
        mac.update(&body);
        body.extend_from_slice(mac.sign().as_ref());
        Ok(URL_SAFE_NO_PAD.encode(body))
    }

    /// The key and grant a token names; `InvalidGrantTokenException` when it is malformed or its
    /// MAC does not verify.
    async fn open_grant_token(&self, token: &str) -> Result<(Uuid, String)> {
        let invalid = || KmsError::InvalidGrantToken("The grant token is not valid.".to_string());
        let bytes = URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .map_err(|_| invalid())?;
        if bytes.len() != TOKEN_LEN || bytes[0] != TOKEN_VERSION {
            return Err(invalid());
        }
        let (body, tag) = bytes.split_at(TOKEN_BODY);
        let key = self.grant_token_key().await?;
        let mut signed = Vec::with_capacity(TOKEN_MAC_DOMAIN.len() + body.len());
        signed.extend_from_slice(TOKEN_MAC_DOMAIN);
        signed.extend_from_slice(body);
        hmac::verify(&key, &signed, tag).map_err(|_| invalid())?;
        let key_id = Uuid::from_slice(&body[33..49]).map_err(|_| invalid())?;
        Ok((key_id, hex(&body[1..33])))
    }

    // ----- helpers ------------------------------------------------------------------------------

    /// The account a key belongs to.
    fn key_account(&self, k: &KeyRow) -> String {
        k.account_id.clone()
    }

    fn grant_key_arn(&self, g: &GrantRow) -> String {
        format!(
            "arn:aws:kms:{}:{}:key/{}",
            self.config.partition.region, g.account_id, g.key_id
        )
    }

    fn grant_entry(&self, g: GrantRow) -> GrantListEntry {
        let constrained =
            g.encryption_context_subset.is_some() || g.encryption_context_equals.is_some();
        GrantListEntry {
            key_id: self.grant_key_arn(&g),
            grant_id: g.grant_id,
            name: g.name,
            creation_date: secs(g.created_at),
            grantee_principal: g.grantee_principal,
            retiring_principal: g.retiring_principal,
            issuing_account: account_root(&g.issuing_account),
            operations: g.operations,
            constraints: constrained.then_some(GrantConstraints {
                encryption_context_subset: g.encryption_context_subset,
                encryption_context_equals: g.encryption_context_equals,
                source_arn: None,
            }),
        }
    }

    fn forget_grants(&self, key_id: &Uuid) {
        self.cache.grants.forget(&key_id.to_string());
    }

    /// A key's grant by id; NotFoundException when the key has none of that id.
    async fn grant_on_key(&self, key_id: &Uuid, grant_id: &str) -> Result<GrantRow> {
        match self.store.get_grant(grant_id).await? {
            Some(g) if g.key_id == *key_id => Ok(g),
            _ => Err(self.grant_not_found(key_id, grant_id)),
        }
    }

    fn grant_not_found(&self, key_id: &Uuid, grant_id: &str) -> KmsError {
        KmsError::NotFound(format!(
            "Grant ID {grant_id} not found on key '{}'.",
            self.arn(key_id)
        ))
    }
}

mod ops;
