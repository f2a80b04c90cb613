//! `envelope authz explain`: IAM's policy simulator, offline, over the data directory. The decision
//! is the one the endpoint would take, by the same code ([`Kms::decide`]), for a principal, an action
//! and a resource given by hand, with the condition keys the caller names.

use serde::Serialize;

use super::Kms;
use crate::error::{KmsError, Result};
use crate::ids::{Accepts, KeyRef};
use crate::policy::{NamedPolicy, Principal, PrincipalType, RequestContext};

/// What `authz explain` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Explanation {
    /// `Allow` or `Deny`.
    pub decision: &'static str,
    /// The statement, grant or absence that decided, as the audit log words it.
    pub decided_by: String,
    /// AWS's AccessDeniedException message, when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The principal's ARN.
    pub principal: String,
    /// The action.
    pub action: String,
    /// The resource's ARN, for an action on a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The policies weighed, by name.
    pub policies_evaluated: Vec<String>,
}

impl Kms {
    /// The principal an ARN names, as the endpoint would authenticate it: an IAM user of the store
    /// (with its unique id and tags), a session of a role of the store, or an account's root user.
    pub async fn principal_named(&self, arn: &str) -> Result<Principal> {
        let unknown = || KmsError::NotFound(format!("No principal {arn} is known to this server."));
        let p = Principal::from_arn(arn, None).ok_or_else(unknown)?;
        match p.kind {
            PrincipalType::User => {
                let name = p.username.clone().unwrap_or_default();
                let u = self
                    .store
                    .user_by_name(&p.account, &name)
                    .await?
                    .ok_or_else(unknown)?;
                Ok(crate::identity::user_principal(&u))
            }
            PrincipalType::AssumedRole => {
                let role_arn = p.role_arn.clone().unwrap_or_default();
                let role = role_arn.rsplit('/').next().unwrap_or_default();
                let session = p.arn.rsplit('/').next().unwrap_or_default();
                let r = self
                    .store
                    .role_by_name(&p.account, role)
                    .await?
                    .ok_or_else(unknown)?;
                // As its sessions are: with the role's tags (aws:PrincipalTag/…).
                let mut session = Principal::assumed_role(&p.account, role, session, &r.role_id);
                session.tags = r.tags;
                Ok(session)
            }
            _ => Ok(p),
        }
    }

    /// Explains the decision on `action` by `principal` on `resource` (a key id, key ARN, alias name
    /// or alias ARN; `None` for an account-level action), with extra condition keys `context`
    /// (`kms:EncryptionContext:dept=IT`, `aws:SourceIp=10.0.0.1`, …).
    pub async fn explain(
        &self,
        principal: Principal,
        action: &str,
        resource: Option<&str>,
        context: &[(String, String)],
    ) -> Result<Explanation> {
        let mut ctx = RequestContext::new(principal.clone(), action)
            .with_time(time::OffsetDateTime::now_utc());
        let mut key = None;
        if let Some(raw) = resource {
            let named = self
                .config
                .partition
                .parse_key_name(raw, Accepts::KeyOrAlias)?;
            let account = named.account.unwrap_or_else(|| principal.account.clone());
            let id = match named.key {
                KeyRef::Key(id) => id,
                KeyRef::Alias(name) => {
                    ctx.set(crate::policy::keys::REQUEST_ALIAS, &name);
                    self.alias_key(&account, &name, false).await?
                }
            };
            let auth = self
                .key_auth(&id)
                .await?
                .filter(|a| a.account == account)
                .ok_or_else(|| self.not_found(&id))?;
            ctx = self.key_context(ctx, &auth);
            key = Some(auth);
        }
        let mut ec = std::collections::BTreeMap::new();
        for (k, v) in context {
            match k
                .to_ascii_lowercase()
                .strip_prefix("kms:encryptioncontext:")
                .map(|_| &k["kms:EncryptionContext:".len()..])
            {
                Some(ec_key) => {
                    ec.insert(ec_key.to_string(), v.clone());
                }
                None => ctx.set(k, v),
            }
        }
        if !ec.is_empty() {
            ctx = ctx.with_encryption_context(&ec);
        }
        let name = key.as_ref().map(|k| format!("key policy of {}", k.arn));
        let resource_policy = key
            .as_ref()
            .zip(name.as_deref())
            .map(|(k, name)| NamedPolicy {
                name,
                policy: &k.policy,
            });
        let grants = match &key {
            Some(k) => self.grants_for_key(&k.id).await?,
            None => std::sync::Arc::from(Vec::new()),
        };
        let mut evaluated: Vec<String> = name.iter().cloned().collect();
        if !principal.is_root() {
            evaluated.extend(
                self.identity_policies(&principal)
                    .await?
                    .iter()
                    .map(|p| p.name.clone()),
            );
        }
        evaluated.extend(grants.iter().map(|g| format!("grant {}", g.grant_id)));
        let decision = self.decide(&ctx, resource_policy, &grants).await?;
        if let Some(k) = key.as_ref().filter(|k| {
            k.account != principal.account && !super::authorize::cross_account_action(action)
        }) {
            // As the endpoint decides: managing another account's key is refused before any policy.
            return Ok(Explanation {
                decision: "Deny",
                decided_by: format!(
                    "{action} is not a cross-account action: only the key's account may"
                ),
                message: Some(crate::policy::access_denied_message(
                    &principal.arn,
                    action,
                    Some(&k.arn),
                    &crate::policy::Denied::NoResourcePolicyAllows,
                )),
                principal: principal.arn,
                action: action.to_string(),
                resource: Some(k.arn.clone()),
                policies_evaluated: Vec::new(),
            });
        }
        let audited = super::authorize::audit_decision(&ctx, &decision);
        Ok(Explanation {
            decision: audited.decision,
            decided_by: audited.reason,
            message: decision.denial_message(&ctx),
            principal: principal.arn,
            action: action.to_string(),
            resource: key.map(|k| k.arn.clone()),
            policies_evaluated: evaluated,
        })
    }
}
