//! The one authorization point: every request the service answers (KMS, and IAM and STS once they
//! are served) is decided here, by the policy engine, over the caller's identity policies, the
//! resource's policy and its grants. No handler decides access on its own.

use crate::error::{KmsError, Result};
use crate::policy::{self, Decision, Grant, NamedPolicy, Policies, RequestContext};

use super::Kms;

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
        match decision.denial_message(ctx) {
            None => Ok(decision),
            Some(message) => Err(KmsError::AccessDenied(message)),
        }
    }
}
