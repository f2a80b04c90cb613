//! The policy engine: IAM JSON policies (identity policies, KMS key policies, role trust policies)
//! parsed once into a compiled form, and AWS's evaluation logic over them plus KMS grants, with the
//! reason for every decision and AWS's AccessDeniedException wording.
//!
//! **Why our own grammar.** We judged `scratchstack-aspen` 0.3.1 (MIT; five releases from 2021-05 to
//! its last on 2023-01-10) first. It parses the grammar, NotPrincipal and the `…IfExists` operators,
//! but it pulls in chrono, regex, derive_builder, lazy_static, log, ipnet, base64 0.13 (beside our
//! 0.22) and its own scratchstack-arn and scratchstack-aws-principal types — the tree we already
//! declined for SigV4 — and builds a regex per wildcard per evaluation. It has no `ForAnyValue:`/
//! `ForAllValues:`, no `${key, 'default'}`, replaces a variable without a value by the empty string
//! (AWS: that value matches nothing), knows nothing of key policies, account-root delegation or
//! grants, and has `panic!` in library code. What KMS needs is a few files without a
//! new dependency, so the grammar, the matchers and the evaluation are ours.
//!
//! ```
//! use kms_core::policy::{authorize, NamedPolicy, Policies, Policy, PolicyType, Principal, RequestContext};
//!
//! let key_arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
//! let key_policy = Policy::parse(r#"{"Version": "2012-10-17", "Statement": [{
//!     "Sid": "Enable IAM User Permissions", "Effect": "Allow",
//!     "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]}"#,
//!     PolicyType::KeyPolicy)?;
//! let alice = Principal::user("111122223333", "alice", "AIDAEXAMPLEALICE00");
//! let ctx = RequestContext::new(alice, "kms:Decrypt").with_resource(key_arn);
//! let key = NamedPolicy { name: "key policy", policy: &key_policy };
//! let decision = authorize(&ctx, &Policies { resource: Some(key), ..Default::default() });
//! assert_eq!(
//!     decision.denial_message(&ctx).as_deref(),
//!     Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt \
//!           on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab \
//!           because no identity-based policy allows the kms:Decrypt action")
//! );
//! # Ok::<(), kms_core::policy::PolicyError>(())
//! ```

mod condition;
mod context;
mod document;
mod evaluate;
mod json;
mod matcher;
mod message;
mod principal;
mod variables;

#[cfg(test)]
mod tests;

pub use context::{keys, Principal, PrincipalType, RequestContext};
pub use document::{Effect, Policy, PolicyType, Statement, Version};
pub use evaluate::{
    authorize, Allowed, Decision, Denied, Grant, GrantConstraints, NamedPolicy, Policies,
    PolicyKind, RequestedGrant, StatementRef,
};
pub use matcher::split_arn;
pub use message::access_denied_message;
pub use principal::NamedIdentity;

/// Why a policy document is refused. The messages are meant for MalformedPolicyDocumentException
/// (KMS) and MalformedPolicyDocument (IAM); paths name the place, as `Statement[1].Condition`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not JSON, or an object names a member twice.
    #[error("The policy is not valid JSON: {0}")]
    Json(String),
    /// `Version` is neither `2012-10-17` nor `2008-10-17`.
    #[error("The policy version {0} is not supported; use \"2012-10-17\" or \"2008-10-17\".")]
    UnsupportedVersion(String),
    /// An object has a member the grammar does not know.
    #[error("{path} has an unknown member \"{name}\".")]
    UnknownMember {
        /// Where.
        path: String,
        /// The member.
        name: String,
    },
    /// A required member is missing.
    #[error("{path} is missing \"{name}\".")]
    MissingMember {
        /// Where.
        path: String,
        /// The member.
        name: String,
    },
    /// Two members that exclude each other (`Action` and `NotAction`, …).
    #[error("{path} has both \"{first}\" and \"{second}\"; use one of them.")]
    Conflict {
        /// Where.
        path: String,
        /// One member.
        first: String,
        /// The other.
        second: String,
    },
    /// A member's value is not valid.
    #[error("{path}: {message}.")]
    InvalidValue {
        /// Where.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// `Statement` is an empty list.
    #[error("The policy has no statements.")]
    EmptyStatement,
    /// Two statements share a `Sid`.
    #[error("The statement id \"{0}\" is used more than once; statement ids must be unique.")]
    DuplicateSid(String),
    /// An identity policy names a principal (IAM: "Policy document should not specify a principal").
    #[error("{0}: an identity-based policy should not specify a principal.")]
    PrincipalInIdentityPolicy(String),
    /// A trust policy names a resource (IAM: "Has prohibited field Resource").
    #[error("{0}: a trust policy has prohibited field Resource.")]
    ResourceInTrustPolicy(String),
    /// A character outside what IAM and KMS accept in a policy document.
    #[error(
        "The policy contains the character U+{code:04X} at byte {offset}; a policy may hold only \
         tab, line feed, carriage return and U+0020 to U+00FF."
    )]
    InvalidCharacter {
        /// The character's code point.
        code: u32,
        /// Its byte offset in the text.
        offset: usize,
    },
    /// The document is larger than where it goes allows.
    #[error("The policy is {size} {unit}; a {limit} may have at most {max}.")]
    TooLarge {
        /// The measured size.
        size: usize,
        /// The limit.
        max: usize,
        /// `bytes` or `characters (without whitespace)`.
        unit: &'static str,
        /// What the limit is for.
        limit: &'static str,
    },
}

/// A KMS key policy's largest size: 32 KiB, counted in bytes (AWS KMS Developer Guide, "Quotas":
/// "Key policy document size").
pub const KEY_POLICY_MAX_BYTES: usize = 32_768;
/// All inline policies of one IAM user together: 2,048 characters without whitespace (IAM User
/// Guide, "IAM and AWS STS quotas", IAM and STS character limits).
pub const USER_INLINE_POLICIES_MAX_CHARS: usize = 2_048;
/// All inline policies of one IAM group together: 5,120 characters (same page).
pub const GROUP_INLINE_POLICIES_MAX_CHARS: usize = 5_120;
/// All inline policies of one IAM role together: 10,240 characters (same page).
pub const ROLE_INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// One managed policy: 6,144 characters (same page).
pub const MANAGED_POLICY_MAX_CHARS: usize = 6_144;
/// A role trust policy: 2,048 characters, the default `AssumeRolePolicySizeQuota` (same page).
pub const ROLE_TRUST_POLICY_MAX_CHARS: usize = 2_048;

/// Where a policy goes, for [`check_size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// [`KEY_POLICY_MAX_BYTES`].
    KeyPolicy,
    /// [`USER_INLINE_POLICIES_MAX_CHARS`] (pass all of the user's inline policies' texts together).
    UserInlinePolicies,
    /// [`GROUP_INLINE_POLICIES_MAX_CHARS`].
    GroupInlinePolicies,
    /// [`ROLE_INLINE_POLICIES_MAX_CHARS`].
    RoleInlinePolicies,
    /// [`MANAGED_POLICY_MAX_CHARS`].
    ManagedPolicy,
    /// [`ROLE_TRUST_POLICY_MAX_CHARS`].
    RoleTrustPolicy,
}

impl SizeLimit {
    /// The limit and how it is counted.
    fn spec(self) -> (usize, &'static str, &'static str) {
        const CHARS: &str = "characters (without whitespace)";
        match self {
            SizeLimit::KeyPolicy => (KEY_POLICY_MAX_BYTES, "bytes", "key policy"),
            SizeLimit::UserInlinePolicies => (
                USER_INLINE_POLICIES_MAX_CHARS,
                CHARS,
                "user's inline policies",
            ),
            SizeLimit::GroupInlinePolicies => (
                GROUP_INLINE_POLICIES_MAX_CHARS,
                CHARS,
                "group's inline policies",
            ),
            SizeLimit::RoleInlinePolicies => (
                ROLE_INLINE_POLICIES_MAX_CHARS,
                CHARS,
                "role's inline policies",
            ),
            SizeLimit::ManagedPolicy => (MANAGED_POLICY_MAX_CHARS, CHARS, "managed policy"),
            SizeLimit::RoleTrustPolicy => (ROLE_TRUST_POLICY_MAX_CHARS, CHARS, "role trust policy"),
        }
    }

    /// The size of `text` as this limit counts it: bytes for key policies; for IAM, characters
    /// other than whitespace ("IAM doesn't count white space").
    pub fn measure(self, text: &str) -> usize {
        match self {
            SizeLimit::KeyPolicy => text.len(),
            _ => text.chars().filter(|c| !c.is_whitespace()).count(),
        }
    }

    /// The largest size allowed.
    pub fn max(self) -> usize {
        self.spec().0
    }
}

/// Refuses `text` if it is larger than `limit` allows.
pub fn check_size(text: &str, limit: SizeLimit) -> Result<(), PolicyError> {
    let (max, unit, what) = limit.spec();
    let size = limit.measure(text);
    if size > max {
        return Err(PolicyError::TooLarge {
            size,
            max,
            unit,
            limit: what,
        });
    }
    Ok(())
}

/// Refuses characters other than tab, line feed, carriage return and U+0020 to U+00FF, the set the
/// IAM User Guide ("IAM and AWS STS quotas", IAM name requirements) allows in policy documents and
/// the pattern of KMS's `Policy` parameters (`[\u0009\u000A\u000D\u0020-\u00FF]+`).
pub fn check_characters(text: &str) -> Result<(), PolicyError> {
    match text
        .char_indices()
        .find(|(_, c)| !matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{ff}'))
    {
        Some((offset, c)) => Err(PolicyError::InvalidCharacter {
            code: u32::from(c),
            offset,
        }),
        None => Ok(()),
    }
}
