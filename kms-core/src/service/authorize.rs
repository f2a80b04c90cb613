//! The one authorization point: every request the service answers (KMS, and IAM and STS once they
//! are served) is decided here, by the policy engine, over the caller's identity policies, the
//! resource's policy and its grants. No handler decides access on its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{Kms, SYMMETRIC_DEFAULT};
use crate::api::*;
use crate::audit::Caller;
use crate::error::{KmsError, Result};
use crate::identity::request_context;
use crate::ids::{Accepts, KeyRef};
use crate::policy::{
    self, access_denied_message, keys, Decision, Denied, Grant, NamedPolicy, Policies, Policy,
    PolicyType, RequestContext,
};

impl Kms {
    /// The decision for `ctx`: the caller's identity-based policies (none for the root user) are
    /// looked up here; `resource` is the resource's own policy (a key policy, a role's trust
    /// policy) and `grants` the grants on it.
    pub(crate) async fn decide(
        &self,
        ctx: &RequestContext,
        resource: Option<NamedPolicy<'_>>,
        grants: &[Grant],
    ) -> Result<Decision> {
        let identity = if ctx.principal().is_root() {
            None
        } else {
            Some(self.identity_policies(ctx.principal()).await?)
        };
        let named: Vec<NamedPolicy<'_>> = identity
            .iter()
            .flat_map(|ps| ps.iter())
            .map(|p| NamedPolicy {
                name: &p.name,
                policy: &p.policy,
            })
            .collect();
        Ok(policy::authorize(
            ctx,
            &Policies {
                resource,
                identity: &named,
                grants,
            },
        ))
    }

    /// [`decide`](Self::decide), as an error when denied: AccessDeniedException with AWS's message.
    pub(crate) async fn authorize(
        &self,
        ctx: &RequestContext,
        resource: Option<NamedPolicy<'_>>,
        grants: &[Grant],
    ) -> Result<Decision> {
        let decision = self.decide(ctx, resource, grants).await?;
        let _ = super::DECISIONS.try_with(|d| d.borrow_mut().push(audit_decision(ctx, &decision)));
        match decision.denial_message(ctx) {
            None => Ok(decision),
            Some(message) => Err(KmsError::AccessDenied(message)),
        }
    }
}

/// How the audit log records a decision.
pub(super) fn audit_decision(
    ctx: &RequestContext,
    decision: &Decision,
) -> crate::audit::AuditDecision {
    use crate::policy::{Allowed, StatementRef};
    let statement = |s: &StatementRef| match &s.sid {
        Some(sid) => format!("{} statement {} (Sid \"{sid}\")", s.policy, s.index),
        None => format!("{} statement {}", s.policy, s.index),
    };
    let (verdict, reason) = match decision {
        Decision::Allow(Allowed::ResourcePolicy(s)) => ("Allow", statement(s)),
        Decision::Allow(Allowed::ResourceAndIdentity { resource, identity }) => (
            "Allow",
            match identity {
                Some(i) => format!("{} and {}", statement(resource), statement(i)),
                None => format!("{} (the account's root user)", statement(resource)),
            },
        ),
        Decision::Allow(Allowed::IdentityPolicy(Some(s))) => ("Allow", statement(s)),
        Decision::Allow(Allowed::IdentityPolicy(None)) => {
            ("Allow", "the account's root user".into())
        }
        Decision::Allow(Allowed::Grant(id)) => ("Allow", format!("grant {id}")),
        Decision::Deny(Denied::ExplicitDeny(s)) => {
            ("Deny", format!("explicit deny in {}", statement(s)))
        }
        Decision::Deny(Denied::NoResourcePolicyAllows) => {
            ("Deny", "no resource-based policy allows".into())
        }
        Decision::Deny(Denied::NoIdentityPolicyAllows) => {
            ("Deny", "no identity-based policy allows".into())
        }
    };
    crate::audit::AuditDecision {
        action: ctx.action().to_string(),
        resource: ctx.resource().map(str::to_string),
        decision: verdict,
        reason,
    }
}

/// What authorizing a call on one key needs, cached per key for the cache TTL and dropped when this
/// node changes the key's policy, tags or aliases.
pub(crate) struct KeyAuth {
    pub(super) id: Uuid,
    pub(super) account: String,
    pub(super) arn: String,
    /// The key policy, compiled (the default key policy when none was set).
    pub(super) policy: Policy,
    key_spec: String,
    key_usage: String,
    origin: String,
    tags: BTreeMap<String, String>,
    aliases: Vec<String>,
}

/// The condition keys a request sets beyond the caller's and the key's: its encryption context,
/// the tags it sets, the lockout check's bypass. Most requests set none.
pub(super) trait Conditions {
    /// Adds this request's keys to `ctx`.
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        ctx
    }

    /// The request's `GrantTokens`: the grants they name count at once, even before this node's
    /// cache of the key's grants shows them.
    fn grant_tokens(&self) -> Option<&[String]> {
        None
    }
}

macro_rules! no_conditions {
    ($($t:ty),* $(,)?) => { $(impl Conditions for $t {})* };
}
no_conditions!(
    KeyIdRequest,
    ListKeysRequest,
    UpdateKeyDescriptionRequest,
    AliasRequest,
    DeleteAliasRequest,
    ListAliasesRequest,
    GenerateRandomRequest,
    CreateCustomKeyStoreRequest,
    DescribeCustomKeyStoresRequest,
    CustomKeyStoreIdRequest,
    UpdateCustomKeyStoreRequest,
    ListKeyRotationsRequest,
    ListResourceTagsRequest,
    GetKeyPolicyRequest,
    ListKeyPoliciesRequest,
    ListGrantsRequest,
    ListRetirableGrantsRequest,
    RevokeGrantRequest,
);

impl Conditions for CreateGrantRequest {
    fn conditions(&self, mut ctx: RequestContext) -> RequestContext {
        self.fill_context(&mut ctx);
        ctx
    }

    fn grant_tokens(&self) -> Option<&[String]> {
        self.grant_tokens.as_deref()
    }
}

fn with_context(ctx: RequestContext, ec: Option<&BTreeMap<String, String>>) -> RequestContext {
    ctx.with_encryption_context(ec.unwrap_or(&BTreeMap::new()))
}

/// `kms:EncryptionAlgorithm`: the request's, or `SYMMETRIC_DEFAULT` (the only algorithm of this
/// server's keys) when it names none.
fn with_algorithm(ctx: RequestContext, algorithm: Option<&String>) -> RequestContext {
    ctx.with(
        keys::ENCRYPTION_ALGORITHM,
        algorithm.map_or(SYMMETRIC_DEFAULT, String::as_str),
    )
}

impl Conditions for EncryptRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        let ctx = with_algorithm(ctx, self.encryption_algorithm.as_ref());
        with_context(ctx, self.encryption_context.as_ref())
    }

    fn grant_tokens(&self) -> Option<&[String]> {
        self.grant_tokens.as_deref()
    }
}

impl Conditions for DecryptRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        let ctx = with_algorithm(ctx, self.encryption_algorithm.as_ref());
        with_context(ctx, self.encryption_context.as_ref())
    }

    fn grant_tokens(&self) -> Option<&[String]> {
        self.grant_tokens.as_deref()
    }
}

impl Conditions for GenerateDataKeyRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        let ctx = with_algorithm(ctx, None);
        with_context(ctx, self.encryption_context.as_ref())
    }

    fn grant_tokens(&self) -> Option<&[String]> {
        self.grant_tokens.as_deref()
    }
}

fn request_tags(tags: Option<&Vec<Tag>>) -> BTreeMap<String, String> {
    tags.into_iter()
        .flatten()
        .filter_map(|t| Some((t.tag_key.clone()?, t.tag_value.clone().unwrap_or_default())))
        .collect()
}

impl Conditions for UntagResourceRequest {
    fn conditions(&self, mut ctx: RequestContext) -> RequestContext {
        ctx.set_values(keys::TAG_KEYS, self.tag_keys.iter().flatten().cloned());
        ctx
    }
}

impl Conditions for ScheduleKeyDeletionRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        match self.pending_window_in_days {
            Some(days) => ctx.with(
                keys::SCHEDULE_KEY_DELETION_PENDING_WINDOW_IN_DAYS,
                &days.to_string(),
            ),
            None => ctx,
        }
    }
}

impl Conditions for EnableKeyRotationRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        match self.rotation_period_in_days {
            Some(days) => ctx.with(keys::ROTATION_PERIOD_IN_DAYS, &days.to_string()),
            None => ctx,
        }
    }
}

impl Conditions for TagResourceRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        ctx.with_request_tags(&request_tags(self.tags.as_ref()))
    }
}

impl Conditions for CreateKeyRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        let mut ctx = ctx
            .with_request_tags(&request_tags(self.tags.as_ref()))
            .with_bool(
                keys::BYPASS_POLICY_LOCKOUT_SAFETY_CHECK,
                self.bypass_policy_lockout_safety_check == Some(true),
            )
            .with(
                keys::KEY_SPEC,
                self.key_spec
                    .as_deref()
                    .or(self.customer_master_key_spec.as_deref())
                    .unwrap_or(SYMMETRIC_DEFAULT),
            )
            .with(
                keys::KEY_USAGE,
                self.key_usage.as_deref().unwrap_or("ENCRYPT_DECRYPT"),
            );
        let origin = match (&self.origin, &self.custom_key_store_id) {
            (Some(o), _) => o.as_str(),
            (None, Some(_)) => "AWS_CLOUDHSM",
            (None, None) => "AWS_KMS",
        };
        ctx.set(keys::KEY_ORIGIN, origin);
        ctx
    }
}

impl Conditions for PutKeyPolicyRequest {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        ctx.with_bool(
            keys::BYPASS_POLICY_LOCKOUT_SAFETY_CHECK,
            self.bypass_policy_lockout_safety_check == Some(true),
        )
    }
}

/// ReEncrypt's two halves: the source side sees the source context and algorithm, the destination
/// side the destination's; both see whether the two keys are one (`kms:ReEncryptOnSameKey`).
struct ReEncryptSide<'a> {
    context: Option<&'a BTreeMap<String, String>>,
    algorithm: Option<&'a String>,
    same_key: bool,
    grant_tokens: Option<&'a [String]>,
}

impl Conditions for ReEncryptSide<'_> {
    fn conditions(&self, ctx: RequestContext) -> RequestContext {
        let ctx = with_algorithm(ctx, self.algorithm)
            .with_bool(keys::REENCRYPT_ON_SAME_KEY, self.same_key);
        with_context(ctx, self.context)
    }

    fn grant_tokens(&self) -> Option<&[String]> {
        self.grant_tokens
    }
}

/// AWS's default key policy: the key's account may do everything, through IAM policies.
pub(super) fn default_key_policy(account: &str) -> String {
    format!(
        "{{\n  \"Version\" : \"2012-10-17\",\n  \"Id\" : \"key-default-1\",\n  \"Statement\" : [ {{\n    \
         \"Sid\" : \"Enable IAM User Permissions\",\n    \"Effect\" : \"Allow\",\n    \"Principal\" : {{\n      \
         \"AWS\" : \"arn:aws:iam::{account}:root\"\n    }},\n    \"Action\" : \"kms:*\",\n    \
         \"Resource\" : \"*\"\n  }} ]\n}}"
    )
}

impl Kms {
    /// What authorizing a call on key `id` needs; `None` when there is no such key.
    pub(super) async fn key_auth(&self, id: &Uuid) -> Result<Option<Arc<KeyAuth>>> {
        let slot = id.to_string();
        if let Some(a) = self.cache.key_auth.fresh(&slot, self.config.cache_ttl) {
            return Ok(Some(a));
        }
        let ticket = self.cache.key_auth.ticket(&slot);
        let Some(row) = self.store.get_key(id).await? else {
            return Ok(None);
        };
        self.learn_account(&row);
        let text = if row.policy.is_empty() {
            default_key_policy(&row.account_id)
        } else {
            row.policy.clone()
        };
        let policy = Policy::parse(&text, PolicyType::KeyPolicy).map_err(|e| {
            tracing::error!(key = %id, error = %e, "a stored key policy does not parse");
            KmsError::Internal("The key's stored policy cannot be read.".into())
        })?;
        let tags = self
            .store
            .list_tags(id, None, i64::MAX)
            .await?
            .into_iter()
            .collect();
        let auth = Arc::new(KeyAuth {
            id: *id,
            arn: self.config.partition.key_arn_in(&row.account_id, id),
            account: row.account_id,
            policy,
            key_spec: row.key_spec,
            key_usage: row.key_usage,
            origin: row.origin,
            tags,
            aliases: self.store.aliases_of_key(id).await?,
        });
        self.cache.key_auth.put(slot, auth.clone(), ticket);
        Ok(Some(auth))
    }

    /// Authorizes `action` on the key `raw` names (key id, key ARN, alias name or alias ARN, as
    /// `accepts` allows). A key of the caller's account that does not exist is NotFoundException; one
    /// of another account is AccessDeniedException, so nobody learns which keys another account has.
    /// `None`: a key id of the caller's account that names no key, left to the operation.
    pub(super) async fn authorize_on_key(
        &self,
        action: &str,
        raw: &str,
        accepts: Accepts,
        req: &impl Conditions,
    ) -> Result<Option<Arc<KeyAuth>>> {
        let caller = self.caller();
        let named = self.config.partition.parse_key_name(raw, accepts)?;
        let own = caller.principal.account.clone();
        let account = named.account.clone().unwrap_or_else(|| own.clone());
        let denied = |arn: String| {
            KmsError::AccessDenied(access_denied_message(
                &caller.principal.arn,
                action,
                Some(&arn),
                &Denied::NoResourcePolicyAllows,
            ))
        };
        if account != own && !cross_account_action(action) {
            // Managing another account's key is refused whatever its key policy says, before
            // anything is looked up.
            return Err(denied(match &named.key {
                KeyRef::Key(id) => self.config.partition.key_arn_in(&account, id),
                KeyRef::Alias(name) => self.config.partition.alias_arn_in(&account, name),
            }));
        }
        let (id, alias) = match &named.key {
            KeyRef::Key(id) => (*id, None),
            KeyRef::Alias(name) => match self.alias_key(&account, name, true).await {
                Ok(id) => (id, Some(name.as_str())),
                Err(KmsError::NotFound(_)) if account != own => {
                    return Err(denied(self.config.partition.alias_arn_in(&account, name)))
                }
                Err(e) => return Err(e),
            },
        };
        let auth = match self.key_auth(&id).await? {
            Some(a) if a.account == account => a,
            // A key id that names no key names none later (the server draws key ids at random),
            // so the operation may answer: its request checks first, then NotFoundException, as
            // AWS orders them. An alias or another account's key is answered here.
            None if alias.is_none() && account == own => return Ok(None),
            _ if account == own => {
                return Err(KmsError::NotFound(format!(
                    "Key '{}' does not exist",
                    self.config.partition.key_arn_in(&account, &id)
                )))
            }
            _ => return Err(denied(self.config.partition.key_arn_in(&account, &id))),
        };
        self.authorize_with_key(&caller, action, &auth, alias, req)
            .await?;
        Ok(Some(auth))
    }

    /// Authorizes `action` on the key a ciphertext blob names. A blob that does not parse, or names
    /// no key, is left to the operation (InvalidCiphertextException).
    pub(super) async fn authorize_on_blob(
        &self,
        action: &str,
        blob_bytes: &[u8],
        req: &impl Conditions,
    ) -> Result<()> {
        let Ok(header) = crate::blob::parse_header(blob_bytes) else {
            return Ok(());
        };
        let Some(auth) = self.key_auth(&header.key_id).await? else {
            return Ok(());
        };
        self.authorize_with_key(&self.caller(), action, &auth, None, req)
            .await
    }

    /// The decision on one key: its policy, the caller's identity policies and the key's grants.
    async fn authorize_with_key(
        &self,
        caller: &Caller,
        action: &str,
        auth: &KeyAuth,
        request_alias: Option<&str>,
        req: &impl Conditions,
    ) -> Result<()> {
        let mut ctx = self.key_context(request_context(caller, action), auth);
        if let Some(alias) = request_alias {
            ctx.set(keys::REQUEST_ALIAS, alias);
        }
        let ctx = req.conditions(ctx);
        let name = format!("key policy of {}", auth.arn);
        // A malformed or forged token is the operation's to refuse (InvalidGrantTokenException);
        // here it only adds no grant.
        let tokens = match req.grant_tokens() {
            Some(t) => self.check_grant_tokens(Some(t)).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let grants = self.grants_for_request(&auth.id, &tokens).await?;
        self.authorize(
            &ctx,
            Some(NamedPolicy {
                name: &name,
                policy: &auth.policy,
            }),
            &grants,
        )
        .await
        .map(drop)
    }

    /// Authorizes an action that needs an identity policy only: account-level actions (`resource`
    /// `None`: CreateKey, ListKeys, …) and actions on an alias.
    pub(super) async fn authorize_identity(
        &self,
        action: &str,
        resource: Option<&str>,
        req: &impl Conditions,
    ) -> Result<()> {
        let caller = self.caller();
        let mut ctx = request_context(&caller, action);
        if let Some(r) = resource {
            ctx = ctx.with_resource(r);
        }
        let ctx = req.conditions(ctx);
        self.authorize(&ctx, None, &[]).await.map(drop)
    }

    /// The key's condition keys: its ARN as the resource, its tags, spec, usage, origin and aliases.
    pub(super) fn key_context(&self, ctx: RequestContext, auth: &KeyAuth) -> RequestContext {
        let mut ctx = ctx
            .with_resource(&auth.arn)
            .with_resource_tags(&auth.tags)
            .with(keys::KEY_SPEC, &auth.key_spec)
            .with(keys::KEY_USAGE, &auth.key_usage)
            .with(keys::KEY_ORIGIN, &auth.origin);
        ctx.set_values(keys::RESOURCE_ALIASES, auth.aliases.iter().cloned());
        ctx
    }

    /// Authorizes one request before it runs: its action on its resource, as the `ops!` table
    /// declares. ReEncrypt is two decisions (`kms:ReEncryptFrom` on the source key, `kms:ReEncryptTo`
    /// on the destination); an alias operation needs the action on the alias and on each key.
    pub(super) async fn authorize_re_encrypt(&self, req: &ReEncryptRequest) -> Result<()> {
        // One key on both sides: the blob's key and the key the destination names (resolved as the
        // operation will; a name that resolves to nothing is the operation's to refuse).
        let source = req
            .ciphertext_blob
            .as_deref()
            .and_then(|b| crate::blob::parse_header(b).ok())
            .map(|h| h.key_id);
        let destination = match &req.destination_key_id {
            Some(d) => self.resolve(d, Accepts::KeyOrAlias, true).await.ok(),
            None => None,
        };
        let same_key = source.is_some() && source == destination;
        if let Some(blob) = &req.ciphertext_blob {
            let src = ReEncryptSide {
                context: req.source_encryption_context.as_ref(),
                algorithm: req.source_encryption_algorithm.as_ref(),
                same_key,
                grant_tokens: req.grant_tokens.as_deref(),
            };
            self.authorize_on_blob("kms:ReEncryptFrom", blob, &src)
                .await?;
        }
        if let Some(dest) = &req.destination_key_id {
            let dst = ReEncryptSide {
                context: req.destination_encryption_context.as_ref(),
                algorithm: req.destination_encryption_algorithm.as_ref(),
                same_key,
                grant_tokens: req.grant_tokens.as_deref(),
            };
            self.authorize_on_key("kms:ReEncryptTo", dest, Accepts::KeyOrAlias, &dst)
                .await?;
        }
        Ok(())
    }

    /// ListRetirableGrants: authorized on the retiring principal it names (identity policies),
    /// which must be of the caller's account, as in AWS ("You must specify a principal in your
    /// AWS account"): nobody lists the grants another account's principals may retire. A name
    /// that is no ARN is the operation's to refuse.
    pub(super) async fn authorize_retiring(&self, req: &ListRetirableGrantsRequest) -> Result<()> {
        const ACTION: &str = "kms:ListRetirableGrants";
        let caller = self.caller();
        let Some(principal) = req.retiring_principal.as_deref() else {
            return self.authorize_identity(ACTION, None, &NoConditions).await;
        };
        match crate::policy::split_arn(principal) {
            Some([.., account, _]) if account != caller.principal.account => {
                Err(KmsError::AccessDenied(access_denied_message(
                    &caller.principal.arn,
                    ACTION,
                    Some(principal),
                    &Denied::NoIdentityPolicyAllows,
                )))
            }
            Some(_) => {
                self.authorize_identity(ACTION, Some(principal), &NoConditions)
                    .await
            }
            None => self.authorize_identity(ACTION, None, &NoConditions).await,
        }
    }

    /// CreateAlias, UpdateAlias, DeleteAlias: the action on the alias (identity policies) and on the
    /// key it names now and the key it will name (key policies).
    pub(super) async fn authorize_alias(
        &self,
        action: &str,
        alias_name: Option<&str>,
        target: Option<&str>,
    ) -> Result<()> {
        let account = self.account();
        if let Some(name) = alias_name.filter(|n| n.starts_with("alias/")) {
            let arn = self.config.partition.alias_arn_in(&account, name);
            self.authorize_identity(action, Some(&arn), &NoConditions)
                .await?;
            if action != "kms:CreateAlias" {
                if let Ok(current) = self.alias_key(&account, name, false).await {
                    // An alias an earlier version let point at another account's key is its own
                    // account's to repoint or delete: that key's policy is not asked.
                    let foreign = self
                        .key_auth(&current)
                        .await?
                        .is_some_and(|a| a.account != account);
                    if !foreign {
                        self.authorize_on_key(
                            action,
                            &current.to_string(),
                            Accepts::KeyOnly,
                            &NoConditions,
                        )
                        .await?;
                    }
                }
            }
        }
        if let Some(target) = target {
            match self
                .authorize_on_key(action, target, Accepts::KeyOnly, &NoConditions)
                .await
            {
                // A target that is no key is the operation's to refuse, with its own message.
                Err(KmsError::NotFound(_)) => {}
                r => {
                    r?;
                }
            }
        }
        Ok(())
    }
}

/// The actions a principal of another account may be allowed on a key (the operations AWS marks
/// "Cross-account use: Yes"). A key policy that allows another account anything else allows
/// nothing: managing a key (its policy, tags, aliases, state, rotation, deletion) stays with its
/// own account.
pub(super) const CROSS_ACCOUNT_ACTIONS: &[&str] = &[
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:DeriveSharedSecret",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateMac",
    "kms:GetKeyRotationStatus",
    "kms:GetPublicKey",
    "kms:ListGrants",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:RetireGrant",
    "kms:RevokeGrant",
    "kms:Sign",
    "kms:Verify",
    "kms:VerifyMac",
];

/// Whether a key policy may let another account do `action` (IAM compares actions whatever their case).
pub(super) fn cross_account_action(action: &str) -> bool {
    CROSS_ACCOUNT_ACTIONS
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action))
}

/// A request that sets no condition keys of its own.
pub(super) struct NoConditions;

impl Conditions for NoConditions {}
