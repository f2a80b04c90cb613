//! The request context a policy is evaluated against: who calls (the [`Principal`]), the action, the
//! resource, and the condition keys with their values. Keys are case-insensitive, as IAM's are (so
//! the key part of `kms:EncryptionContext:<key>` is too); values keep their case. The builder fills
//! the keys AWS derives from the principal, the time and the encryption context, so every operation
//! fills them the same way; operation-specific keys (`kms:GrantOperations`, `kms:KeySpec`, …) are set
//! with [`RequestContext::set`] using the names in [`keys`].

use std::collections::{BTreeMap, HashMap};

use super::evaluate::RequestedGrant;

/// A time as condition keys hold it: ISO 8601 in UTC.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Condition key names, as the AWS documentation spells them (comparison ignores case).
pub mod keys {
    /// `aws:PrincipalArn`: the caller's ARN (for a role session, the role's ARN).
    pub const PRINCIPAL_ARN: &str = "aws:PrincipalArn";
    /// `aws:PrincipalAccount`: the caller's account id.
    pub const PRINCIPAL_ACCOUNT: &str = "aws:PrincipalAccount";
    /// `aws:PrincipalType`: `Account`, `User`, `AssumedRole`, `FederatedUser` or `Anonymous`.
    pub const PRINCIPAL_TYPE: &str = "aws:PrincipalType";
    /// `aws:PrincipalTag/<tag-key>`: prefix of the caller's tags.
    pub const PRINCIPAL_TAG_PREFIX: &str = "aws:PrincipalTag/";
    /// `aws:username`: an IAM user's name (users only).
    pub const USERNAME: &str = "aws:username";
    /// `aws:userid`: the caller's unique id (`AIDA…`, or `AROA…:session` for a role session).
    pub const USERID: &str = "aws:userid";
    /// `aws:SourceIp`: the client's address.
    pub const SOURCE_IP: &str = "aws:SourceIp";
    /// `aws:SecureTransport`: whether the request came over TLS.
    pub const SECURE_TRANSPORT: &str = "aws:SecureTransport";
    /// `aws:TokenIssueTime`: when the temporary credentials of a role session were issued,
    /// ISO 8601 (role sessions only; AWS's way to revoke older sessions denies on it).
    pub const TOKEN_ISSUE_TIME: &str = "aws:TokenIssueTime";
    /// `aws:CurrentTime`: the request time, ISO 8601.
    pub const CURRENT_TIME: &str = "aws:CurrentTime";
    /// `aws:EpochTime`: the request time, seconds since 1970.
    pub const EPOCH_TIME: &str = "aws:EpochTime";
    /// `aws:RequestTag/<tag-key>`: prefix of the tags a request sets.
    pub const REQUEST_TAG_PREFIX: &str = "aws:RequestTag/";
    /// `aws:ResourceTag/<tag-key>`: prefix of the resource's tags.
    pub const RESOURCE_TAG_PREFIX: &str = "aws:ResourceTag/";
    /// `aws:TagKeys`: the tag keys of a request (multivalued).
    pub const TAG_KEYS: &str = "aws:TagKeys";
    /// `kms:EncryptionContext:<key>`: prefix of the request's encryption context pairs.
    pub const ENCRYPTION_CONTEXT_PREFIX: &str = "kms:EncryptionContext:";
    /// `kms:EncryptionContextKeys`: the encryption context's keys (multivalued).
    pub const ENCRYPTION_CONTEXT_KEYS: &str = "kms:EncryptionContextKeys";
    /// `kms:EncryptionAlgorithm`: the algorithm of Encrypt, Decrypt, ReEncrypt and the data key
    /// operations (`SYMMETRIC_DEFAULT` for a symmetric key when the request names none).
    pub const ENCRYPTION_ALGORITHM: &str = "kms:EncryptionAlgorithm";
    /// `kms:ReEncryptOnSameKey`: whether a ReEncrypt's source and destination key are one key.
    pub const REENCRYPT_ON_SAME_KEY: &str = "kms:ReEncryptOnSameKey";
    /// `kms:RotationPeriodInDays`: EnableKeyRotation's `RotationPeriodInDays`.
    pub const ROTATION_PERIOD_IN_DAYS: &str = "kms:RotationPeriodInDays";
    /// `kms:ScheduleKeyDeletionPendingWindowInDays`: ScheduleKeyDeletion's `PendingWindowInDays`.
    pub const SCHEDULE_KEY_DELETION_PENDING_WINDOW_IN_DAYS: &str =
        "kms:ScheduleKeyDeletionPendingWindowInDays";
    /// `kms:CallerAccount`: the caller's account id.
    pub const CALLER_ACCOUNT: &str = "kms:CallerAccount";
    /// `kms:RequestAlias`: the alias named in the request.
    pub const REQUEST_ALIAS: &str = "kms:RequestAlias";
    /// `kms:ResourceAliases`: the aliases of the key (multivalued).
    pub const RESOURCE_ALIASES: &str = "kms:ResourceAliases";
    /// `kms:GrantOperations`: the operations of a grant being created (multivalued).
    pub const GRANT_OPERATIONS: &str = "kms:GrantOperations";
    /// `kms:GranteePrincipal`: the grantee of a grant being created.
    pub const GRANTEE_PRINCIPAL: &str = "kms:GranteePrincipal";
    /// `kms:RetiringPrincipal`: the retiring principal of a grant being created.
    pub const RETIRING_PRINCIPAL: &str = "kms:RetiringPrincipal";
    /// `kms:GrantIsForAWSResource`: whether an AWS service creates the grant for the caller.
    pub const GRANT_IS_FOR_AWS_RESOURCE: &str = "kms:GrantIsForAWSResource";
    /// `kms:GrantConstraintType`: the constraint types of a grant being created
    /// (`EncryptionContextEquals`, `EncryptionContextSubset`; multivalued).
    pub const GRANT_CONSTRAINT_TYPE: &str = "kms:GrantConstraintType";
    /// `kms:KeySpec`: the key's spec (`SYMMETRIC_DEFAULT`, …).
    pub const KEY_SPEC: &str = "kms:KeySpec";
    /// `kms:KeyUsage`: the key's usage (`ENCRYPT_DECRYPT`, …).
    pub const KEY_USAGE: &str = "kms:KeyUsage";
    /// `kms:KeyOrigin`: the key material's origin (`AWS_KMS`, `EXTERNAL`, `AWS_CLOUDHSM`).
    pub const KEY_ORIGIN: &str = "kms:KeyOrigin";
    /// `kms:BypassPolicyLockoutSafetyCheck`: the request's flag of that name.
    pub const BYPASS_POLICY_LOCKOUT_SAFETY_CHECK: &str = "kms:BypassPolicyLockoutSafetyCheck";
    /// `kms:ViaService`: the AWS service that made the request for the caller.
    pub const VIA_SERVICE: &str = "kms:ViaService";
}

/// What kind of identity calls, with AWS's `aws:PrincipalType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// The account's root user (`arn:aws:iam::<account>:root`).
    Account,
    /// An IAM user.
    User,
    /// A role session (`arn:aws:sts::<account>:assumed-role/<role>/<session>`).
    AssumedRole,
    /// A federated user session.
    FederatedUser,
    /// An AWS service principal (`logs.amazonaws.com`); matched by `{"Service": …}` only.
    Service,
    /// An unauthenticated caller.
    Anonymous,
}

impl PrincipalType {
    /// The `aws:PrincipalType` value, if AWS defines one.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            PrincipalType::Account => Some("Account"),
            PrincipalType::User => Some("User"),
            PrincipalType::AssumedRole => Some("AssumedRole"),
            PrincipalType::FederatedUser => Some("FederatedUser"),
            PrincipalType::Anonymous => Some("Anonymous"),
            PrincipalType::Service => None,
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The caller's ARN (for a service principal, its name, `logs.amazonaws.com`).
    pub arn: String,
    /// The caller's account id (empty for services and anonymous callers).
    pub account: String,
    /// What kind of identity this is.
    pub kind: PrincipalType,
    /// The unique id (`aws:userid`).
    pub user_id: Option<String>,
    /// The IAM user name (`aws:username`), users only.
    pub username: Option<String>,
    /// For a role session, the role's ARN: `aws:PrincipalArn`, and what a policy naming the role matches.
    pub role_arn: Option<String>,
    /// The principal's tags (`aws:PrincipalTag/<key>`); for a role session, the role's.
    pub tags: BTreeMap<String, String>,
    /// For a role session, when its credentials were issued (unix seconds): `aws:TokenIssueTime`.
    pub token_issue_time: Option<i64>,
}

impl Principal {
    fn new(arn: String, account: &str, kind: PrincipalType) -> Principal {
        Principal {
            arn,
            account: account.to_owned(),
            kind,
            user_id: None,
            username: None,
            role_arn: None,
            tags: BTreeMap::new(),
            token_issue_time: None,
        }
    }

    /// The root user of `account` in partition `aws`.
    pub fn root(account: &str) -> Principal {
        let mut p = Principal::new(
            format!("arn:aws:iam::{account}:root"),
            account,
            PrincipalType::Account,
        );
        p.user_id = Some(account.to_owned());
        p
    }

    /// The IAM user `name` (path `/`) of `account`, with unique id `user_id`.
    pub fn user(account: &str, name: &str, user_id: &str) -> Principal {
        let mut p = Principal::new(
            format!("arn:aws:iam::{account}:user/{name}"),
            account,
            PrincipalType::User,
        );
        p.username = Some(name.to_owned());
        p.user_id = Some(user_id.to_owned());
        p
    }

    /// A session `session` of role `role` (path `/`) of `account`; `role_id` is the role's `AROA…` id.
    pub fn assumed_role(account: &str, role: &str, session: &str, role_id: &str) -> Principal {
        let mut p = Principal::new(
            format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"),
            account,
            PrincipalType::AssumedRole,
        );
        p.role_arn = Some(format!("arn:aws:iam::{account}:role/{role}"));
        p.user_id = Some(format!("{role_id}:{session}"));
        p
    }

    /// An AWS service principal such as `logs.amazonaws.com`.
    pub fn service(name: &str) -> Principal {
        Principal::new(name.to_owned(), "", PrincipalType::Service)
    }

    /// The principal an ARN names: an account root (`arn:aws:iam::ACCT:root`, or a bare account id),
    /// an IAM user (`arn:aws:iam::ACCT:user/NAME`, unique id `user_id` when known) or a role session
    /// (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`, `role_id` when known). `None` for anything else.
    pub fn from_arn(arn: &str, unique_id: Option<&str>) -> Option<Principal> {
        if arn.len() == 12 && arn.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Principal::root(arn));
        }
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [_, partition, service, "", account, resource] = parts[..] else {
            return None;
        };
        if partition != "aws" || account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let id = unique_id.unwrap_or("");
        match (service, resource.split_once('/')) {
            ("iam", None) if resource == "root" => Some(Principal::root(account)),
            ("iam", Some(("user", path_name))) => {
                let name = path_name.rsplit('/').next().filter(|n| !n.is_empty())?;
                let mut p = Principal::user(account, name, id);
                p.arn = arn.to_owned();
                Some(p)
            }
            ("sts", Some(("assumed-role", rest))) => {
                let (role, session) = rest.split_once('/')?;
                (!role.is_empty() && !session.is_empty() && !session.contains('/'))
                    .then(|| Principal::assumed_role(account, role, session, id))
            }
            _ => None,
        }
    }

    /// Adds a tag.
    pub fn with_tag(mut self, key: &str, value: &str) -> Principal {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The value of `aws:PrincipalArn`: the role's ARN for a role session, else the caller's ARN.
    pub fn principal_arn(&self) -> &str {
        self.role_arn.as_deref().unwrap_or(&self.arn)
    }

    /// Whether this is the root user of its account (identity policies do not restrict it).
    pub fn is_root(&self) -> bool {
        self.kind == PrincipalType::Account
    }
}

/// One request as the policy engine sees it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub(crate) principal: Principal,
    action: String,
    pub(crate) action_lower: String,
    resource: Option<String>,
    /// Condition keys, lowercased, to their values (several for a multivalued key).
    values: HashMap<String, Vec<String>>,
    encryption_context: Option<BTreeMap<String, String>>,
    requested_grant: Option<RequestedGrant>,
}

impl RequestContext {
    /// A context for `action` (`kms:Decrypt`) by `principal`, with the principal's keys filled:
    /// `aws:PrincipalArn`, `aws:PrincipalAccount`, `aws:PrincipalType`, `aws:username`, `aws:userid`,
    /// `aws:PrincipalTag/…` and `kms:CallerAccount`.
    pub fn new(principal: Principal, action: &str) -> RequestContext {
        let mut ctx = RequestContext {
            action: action.to_owned(),
            action_lower: action.to_ascii_lowercase(),
            resource: None,
            values: HashMap::new(),
            encryption_context: None,
            requested_grant: None,
            principal,
        };
        let p = ctx.principal.clone();
        if p.kind != PrincipalType::Service && p.kind != PrincipalType::Anonymous {
            ctx.set(keys::PRINCIPAL_ARN, p.principal_arn());
            ctx.set(keys::PRINCIPAL_ACCOUNT, &p.account);
            ctx.set(keys::CALLER_ACCOUNT, &p.account);
        }
        if let Some(t) = p.kind.as_str() {
            ctx.set(keys::PRINCIPAL_TYPE, t);
        }
        if let Some(u) = &p.username {
            ctx.set(keys::USERNAME, u);
        }
        if let Some(u) = &p.user_id {
            ctx.set(keys::USERID, u);
        }
        for (k, v) in &p.tags {
            ctx.set(&format!("{}{k}", keys::PRINCIPAL_TAG_PREFIX), v);
        }
        let issued = p
            .token_issue_time
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok());
        if let Some(issued) = issued {
            ctx.set(keys::TOKEN_ISSUE_TIME, &rfc3339(issued));
        }
        ctx
    }

    /// Sets the resource ARN (a KMS key's ARN, a role's ARN); without one the action is account-level.
    pub fn with_resource(mut self, arn: &str) -> RequestContext {
        self.resource = Some(arn.to_owned());
        self
    }

    /// Sets a single-valued key (replacing earlier values).
    pub fn set(&mut self, key: &str, value: &str) {
        self.values
            .insert(key.to_ascii_lowercase(), vec![value.to_owned()]);
    }

    /// Sets a key with several values (an empty list is the empty set, which conditions treat as absent).
    pub fn set_values<I, S>(&mut self, key: &str, values: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.values.insert(
            key.to_ascii_lowercase(),
            values.into_iter().map(Into::into).collect(),
        );
    }

    /// [`set`](Self::set), builder style.
    pub fn with(mut self, key: &str, value: &str) -> RequestContext {
        self.set(key, value);
        self
    }

    /// Sets a boolean key (`"true"`/`"false"`).
    pub fn with_bool(self, key: &str, value: bool) -> RequestContext {
        self.with(key, if value { "true" } else { "false" })
    }

    /// The request's encryption context: `kms:EncryptionContext:<key>` for each pair,
    /// `kms:EncryptionContextKeys`, and the pairs themselves for grant constraints.
    pub fn with_encryption_context(mut self, pairs: &BTreeMap<String, String>) -> RequestContext {
        for (k, v) in pairs {
            self.set(&format!("{}{k}", keys::ENCRYPTION_CONTEXT_PREFIX), v);
        }
        self.set_values(keys::ENCRYPTION_CONTEXT_KEYS, pairs.keys().cloned());
        self.encryption_context = Some(pairs.clone());
        self
    }

    /// The grant a CreateGrant request would create: a grant that allows CreateGrant allows only
    /// grants within it (its operations, constraints as strict). Set it for every CreateGrant; the
    /// condition keys (`kms:GrantOperations`, …) are the caller's to set.
    pub fn set_requested_grant(&mut self, grant: RequestedGrant) {
        self.requested_grant = Some(grant);
    }

    /// The grant a CreateGrant request would create, if set.
    pub fn requested_grant(&self) -> Option<&RequestedGrant> {
        self.requested_grant.as_ref()
    }

    /// The request time: `aws:CurrentTime` (RFC 3339, UTC) and `aws:EpochTime`.
    pub fn with_time(mut self, now: time::OffsetDateTime) -> RequestContext {
        let now = now.to_offset(time::UtcOffset::UTC);
        self.set(keys::CURRENT_TIME, &rfc3339(now));
        self.set(keys::EPOCH_TIME, &now.unix_timestamp().to_string());
        self
    }

    /// The tags a request sets: `aws:RequestTag/<key>` and `aws:TagKeys`.
    pub fn with_request_tags(mut self, tags: &BTreeMap<String, String>) -> RequestContext {
        for (k, v) in tags {
            self.set(&format!("{}{k}", keys::REQUEST_TAG_PREFIX), v);
        }
        self.set_values(keys::TAG_KEYS, tags.keys().cloned());
        self
    }

    /// The resource's tags: `aws:ResourceTag/<key>`.
    pub fn with_resource_tags(mut self, tags: &BTreeMap<String, String>) -> RequestContext {
        for (k, v) in tags {
            self.set(&format!("{}{k}", keys::RESOURCE_TAG_PREFIX), v);
        }
        self
    }

    /// The values of a key (any case), if set.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_lower(&key.to_ascii_lowercase())
    }

    /// The values of a key already lowercased.
    pub(crate) fn get_lower(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// The caller.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The action as given (`kms:Decrypt`).
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The resource ARN, if the action has one.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The encryption context pairs, if the request has an encryption context.
    pub fn encryption_context(&self) -> Option<&BTreeMap<String, String>> {
        self.encryption_context.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_principal_and_request_keys() {
        let p = Principal::assumed_role("111122223333", "Ops", "s1", "AROAEXAMPLE")
            .with_tag("Team", "red");
        let ec = BTreeMap::from([("Dept".to_owned(), "IT".to_owned())]);
        let ctx = RequestContext::new(p, "kms:Decrypt")
            .with_encryption_context(&ec)
            .with_time(time::macros::datetime!(2026-01-02 03:04:05 UTC));
        let one = |k: &str| ctx.get(k).map(|v| v.to_vec());
        let v = |s: &str| Some(vec![s.to_owned()]);
        assert_eq!(
            one("aws:principalarn"),
            v("arn:aws:iam::111122223333:role/Ops")
        );
        assert_eq!(one(keys::PRINCIPAL_TYPE), v("AssumedRole"));
        assert_eq!(one(keys::USERID), v("AROAEXAMPLE:s1"));
        assert_eq!(one(keys::USERNAME), None);
        assert_eq!(one("aws:PrincipalTag/team"), v("red"));
        assert_eq!(one(keys::CALLER_ACCOUNT), v("111122223333"));
        assert_eq!(one("KMS:ENCRYPTIONCONTEXT:dept"), v("IT"));
        assert_eq!(one(keys::ENCRYPTION_CONTEXT_KEYS), v("Dept"));
        assert_eq!(one(keys::CURRENT_TIME), v("2026-01-02T03:04:05Z"));
        assert_eq!(one(keys::EPOCH_TIME), v("1767323045"));
        assert_eq!(ctx.resource(), None);
        assert_eq!(ctx.action(), "kms:Decrypt");
    }

    #[test]
    fn principals_from_arns() {
        let u =
            Principal::from_arn("arn:aws:iam::111122223333:user/ops/alice", Some("AIDA1")).unwrap();
        assert_eq!(
            (u.kind, u.username.as_deref()),
            (PrincipalType::User, Some("alice"))
        );
        assert_eq!(u.arn, "arn:aws:iam::111122223333:user/ops/alice");
        assert!(Principal::from_arn("111122223333", None).unwrap().is_root());
        assert!(Principal::from_arn("arn:aws:iam::111122223333:root", None)
            .unwrap()
            .is_root());
        let r = Principal::from_arn("arn:aws:sts::111122223333:assumed-role/Ops/s1", None).unwrap();
        assert_eq!(
            r.role_arn.as_deref(),
            Some("arn:aws:iam::111122223333:role/Ops")
        );
        for bad in [
            "arn:aws:iam::1111:user/a",
            "arn:aws:iam::111122223333:user/",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::111122223333:role/Ops",
            "arn:aws:sts::111122223333:assumed-role/Ops",
            "*",
        ] {
            assert!(Principal::from_arn(bad, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn root_user_service_keys() {
        let ctx = RequestContext::new(Principal::root("111122223333"), "kms:CreateKey");
        assert!(ctx.principal().is_root());
        assert_eq!(
            ctx.get(keys::PRINCIPAL_TYPE),
            Some(&["Account".to_owned()][..])
        );
        let svc = RequestContext::new(Principal::service("logs.amazonaws.com"), "kms:Decrypt");
        assert_eq!(svc.get(keys::PRINCIPAL_ARN), None);
        assert_eq!(svc.get(keys::PRINCIPAL_TYPE), None);
    }
}
