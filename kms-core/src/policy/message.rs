//! AWS's AccessDeniedException messages, in the words of the IAM User Guide "Troubleshoot access
//! denied error messages" (troubleshoot_access-denied): the caller, the action, the resource when
//! there is one, then why — an explicit deny in a resource- or identity-based policy, or no
//! resource- or identity-based policy that allows the action.

use super::context::RequestContext;
use super::evaluate::{Decision, Denied, PolicyKind};

/// The message for a denial: `User: ARN is not authorized to perform: ACTION on resource: RESOURCE
/// because no resource-based policy allows the ACTION action` and its variants. `resource` is omitted
/// for account-level actions (`kms:CreateKey`); KMS's Decrypt without a key id shows `the resource
/// associated with this ciphertext` there, which the caller passes as-is.
pub fn access_denied_message(
    principal_arn: &str,
    action: &str,
    resource: Option<&str>,
    why: &Denied,
) -> String {
    let on = match resource {
        Some(r) if r.starts_with("the ") => format!(" on {r}"),
        Some(r) => format!(" on resource: {r}"),
        None => String::new(),
    };
    let reason = match why {
        Denied::ExplicitDeny(s) => match s.kind {
            PolicyKind::ResourceBased => {
                "with an explicit deny in a resource-based policy".to_owned()
            }
            PolicyKind::IdentityBased => {
                "with an explicit deny in an identity-based policy".to_owned()
            }
        },
        Denied::NoResourcePolicyAllows => {
            format!("because no resource-based policy allows the {action} action")
        }
        Denied::NoIdentityPolicyAllows => {
            format!("because no identity-based policy allows the {action} action")
        }
    };
    format!("User: {principal_arn} is not authorized to perform: {action}{on} {reason}")
}

impl Decision {
    /// The AccessDeniedException message for a denial of `ctx`, or `None` when allowed.
    pub fn denial_message(&self, ctx: &RequestContext) -> Option<String> {
        match self {
            Decision::Allow(_) => None,
            Decision::Deny(why) => Some(access_denied_message(
                &ctx.principal().arn,
                ctx.action(),
                ctx.resource(),
                why,
            )),
        }
    }
}
