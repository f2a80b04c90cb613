//! Key policies: GetKeyPolicy, PutKeyPolicy, ListKeyPolicies, and the checks CreateKey shares: the
//! grammar (MalformedPolicyDocumentException), the key policy size quota (32 KiB,
//! LimitExceededException) and the lockout safety check. A key without a policy of its own has AWS's
//! default key policy.

use super::authorize::{default_key_policy, Conditions, NoConditions};
use super::keys::check_not_pending_deletion;
use super::validate::{page_limit, required};
use super::Kms;
use crate::api::*;
use crate::error::{KmsError, Result};
use crate::policy::{NamedPolicy, Policy, PolicyType};

/// The one policy name a KMS key has.
const DEFAULT: &str = "default";
/// The API's length constraint on `Policy`.
const MAX_POLICY_MEMBER: usize = 131_072;
/// AWS's quota on a key policy document.
const MAX_KEY_POLICY_BYTES: usize = 32_768;

/// `PolicyName`: optional, `default` when absent. AWS's other value, `AWS_RAM` (a policy AWS RAM
/// attaches), cannot be set (ValidationException) and no key here has one (NotFoundException).
fn check_policy_name(name: Option<&str>, put: bool) -> Result<()> {
    match name {
        None => Ok(()),
        Some(DEFAULT) => Ok(()),
        Some("AWS_RAM") if put => Err(KmsError::Validation(
            "PolicyName AWS_RAM cannot be set: only the default key policy can be.".into(),
        )),
        Some("AWS_RAM") => Err(KmsError::NotFound(
            "The key has no AWS_RAM key policy.".into(),
        )),
        Some(n) if n.is_empty() || n.len() > 128 => Err(KmsError::constraint(
            n,
            "policyName",
            "Member must have length between 1 and 128",
        )),
        Some(n) if !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
            Err(KmsError::constraint(
                n,
                "policyName",
                "Member must satisfy regular expression pattern: [\\w]+",
            ))
        }
        Some(_) => Err(KmsError::NotFound(
            "Invalid policy name. Only \"default\" is allowed.".into(),
        )),
    }
}

impl Kms {
    /// Checks a key policy: length, quota, grammar, then (unless bypassed) that it lets the caller
    /// change it again: `later` is that later PutKeyPolicy request, with everything the real one
    /// would carry (the caller's address and transport, the time, the key's ARN, tags and
    /// aliases), so a policy with conditions on them is judged as it will decide. Returns it as
    /// given.
    pub(super) async fn checked_key_policy(
        &self,
        text: String,
        later: crate::policy::RequestContext,
        bypass: bool,
    ) -> Result<String> {
        let chars = text.chars().count();
        if chars == 0 {
            return Err(KmsError::constraint(
                "",
                "policy",
                "Member must have length greater than or equal to 1",
            ));
        }
        // The API's pattern: tab, line feed, carriage return, printable ASCII and Latin-1.
        if let Some(c) = text
            .chars()
            .find(|c| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
        {
            tracing::debug!(character = %c.escape_unicode(), "a key policy character outside the pattern");
            return Err(KmsError::constraint(
                "...",
                "policy",
                "Member must satisfy regular expression pattern: [\\u0009\\u000A\\u000D\\u0020-\\u00FF]+",
            ));
        }
        if chars > MAX_POLICY_MEMBER {
            return Err(KmsError::constraint(
                "...",
                "policy",
                &format!("Member must have length between 1 and {MAX_POLICY_MEMBER}"),
            ));
        }
        if text.len() > MAX_KEY_POLICY_BYTES {
            return Err(KmsError::LimitExceeded(format!(
                "The key policy is {} bytes; a key policy may be at most {MAX_KEY_POLICY_BYTES} bytes.",
                text.len()
            )));
        }
        let policy = Policy::parse(&text, PolicyType::KeyPolicy)
            .map_err(|e| KmsError::MalformedPolicyDocument(e.to_string()))?;
        if self.missing_identity(&policy).await?.is_some() {
            return Err(KmsError::MalformedPolicyDocument(
                "Policy contains a statement with one or more invalid principals.".into(),
            ));
        }
        if !bypass {
            let ctx = NoConditions.conditions(later);
            let named = NamedPolicy {
                name: "the new key policy",
                policy: &policy,
            };
            if !self.decide(&ctx, Some(named), &[]).await?.is_allowed() {
                return Err(KmsError::MalformedPolicyDocument(
                    "The new key policy will not allow you to update the key policy in the future."
                        .into(),
                ));
            }
        }
        Ok(text)
    }

    /// GetKeyPolicy.
    pub async fn get_key_policy(&self, req: GetKeyPolicyRequest) -> Result<GetKeyPolicyResponse> {
        let id = self.key_named(req.key_id).await?;
        check_policy_name(req.policy_name.as_deref(), false)?;
        let k = self.record(&id).await?;
        Ok(GetKeyPolicyResponse {
            policy: if k.policy.is_empty() {
                default_key_policy(&k.account_id)
            } else {
                k.policy
            },
            policy_name: DEFAULT.into(),
        })
    }

    /// ListKeyPolicies: `default`, the only one.
    pub async fn list_key_policies(
        &self,
        req: ListKeyPoliciesRequest,
    ) -> Result<ListKeyPoliciesResponse> {
        let id = self.key_named(req.key_id).await?;
        page_limit(req.limit, 1000, 100)?;
        self.record(&id).await?;
        Ok(ListKeyPoliciesResponse {
            policy_names: vec![DEFAULT.into()],
            truncated: false,
        })
    }

    /// PutKeyPolicy.
    pub async fn put_key_policy(&self, req: PutKeyPolicyRequest) -> Result<Empty> {
        let id = self.key_named(req.key_id).await?;
        check_policy_name(req.policy_name.as_deref(), true)?;
        let text = required(req.policy, "policy")?;
        let bypass = req.bypass_policy_lockout_safety_check == Some(true);
        let auth = self
            .key_auth(&id)
            .await?
            .ok_or_else(|| self.not_found(&id))?;
        let later = self.key_context(
            crate::identity::request_context(&self.caller(), "kms:PutKeyPolicy"),
            &auth,
        );
        let text = self.checked_key_policy(text, later, bypass).await?;
        let r = self
            .change_key(&id, check_not_pending_deletion, |k| {
                k.policy = text.clone();
                true
            })
            .await;
        self.cache.key_auth.forget(&id.to_string());
        r
    }
}
