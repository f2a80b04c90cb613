//! Identity-based policies: inline policies of users, groups and roles (Put/Get/List/Delete),
//! customer managed policies (one version, `v1`) and the AWS managed `AdministratorAccess`, and
//! their attachments.

use super::entity::Entity;
use super::query::{listing, page, Params, Value};
use super::roles::url_encoded;
use super::users::{check_name, conflict, path_of};
use super::{iam_arn, new_id, IamError, ADMINISTRATOR_ACCESS, ADMINISTRATOR_ACCESS_DOCUMENT};
use crate::audit::Caller;
use crate::policy::{check_characters, check_size, Policy, PolicyType, SizeLimit};
use crate::store::{Checked, GroupRow, ManagedPolicyRow, RoleRow, UserRow};
use crate::Kms;

/// IAM's quota of managed policies attached to one user, group or role.
pub(crate) const ATTACHED_PER_ENTITY: usize = 10;

/// Whose policies: a user's, a group's or a role's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
    Role,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
            Kind::Role => "Role",
        }
    }

    fn param(self) -> &'static str {
        match self {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            Kind::Role => "RoleName",
        }
    }

    fn limit(self) -> SizeLimit {
        match self {
            Kind::User => SizeLimit::UserInlinePolicies,
            Kind::Group => SizeLimit::GroupInlinePolicies,
            Kind::Role => SizeLimit::RoleInlinePolicies,
        }
    }
}

/// The owner of policies: its unique id and name.
struct Owner {
    id: String,
    name: String,
}

fn owner(e: impl Entity) -> Owner {
    Owner {
        id: e.id().to_owned(),
        name: e.name().to_owned(),
    }
}

/// Checks an identity policy document as IAM does (characters, grammar; sizes are the caller's).
fn check_identity_policy(text: &str) -> Result<Policy, IamError> {
    check_characters(text)?;
    Ok(Policy::parse(text, PolicyType::Identity)?)
}

/// NoSuchEntity for an owner deleted between its lookup and the write.
fn owner_gone(kind: Kind, owner: &Owner) -> IamError {
    IamError::NoSuchEntity(format!(
        "The {} with name {} cannot be found.",
        kind.name().to_ascii_lowercase(),
        owner.name
    ))
}

fn no_such_policy(arn: &str) -> IamError {
    IamError::NoSuchEntity(format!("Policy {arn} does not exist or is not attachable."))
}

fn policy_name_of(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

impl Kms {
    async fn owner_for(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
        verb: &str,
        object: &str,
        key: Option<(&str, &str)>,
    ) -> Result<Owner, IamError> {
        let name = p.required(kind.param())?;
        let action = format!("iam:{verb}{}{object}", kind.name());
        Ok(match kind {
            Kind::User => owner(self.entity::<UserRow>(caller, name, &action, key).await?),
            Kind::Group => owner(self.entity::<GroupRow>(caller, name, &action, key).await?),
            Kind::Role => owner(self.entity::<RoleRow>(caller, name, &action, key).await?),
        })
    }

    // ----- inline policies -----------------------------------------------------------------------

    async fn put_inline(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let policy_name = p.required("PolicyName")?;
        check_name(policy_name, "policyName", 128)?;
        let document = p.required("PolicyDocument")?;
        let owner = self
            .owner_for(caller, p, kind, "Put", "Policy", None)
            .await?;
        check_identity_policy(document)?;
        let limit = kind.limit();
        match self
            .store()
            .put_inline_policy(&owner.id, policy_name, document, limit)
            .await?
        {
            Checked::Written => {}
            Checked::Full => {
                return Err(IamError::LimitExceeded(format!(
                    "Maximum policy size of {} bytes exceeded for {} {}",
                    limit.max(),
                    kind.name().to_ascii_lowercase(),
                    owner.name
                )))
            }
            Checked::NoOwner | Checked::NoTarget => return Err(owner_gone(kind, &owner)),
        }
        self.identities_changed();
        Ok(None)
    }

    async fn get_inline(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let policy_name = p.required("PolicyName")?;
        check_name(policy_name, "policyName", 128)?;
        let owner = self
            .owner_for(caller, p, kind, "Get", "Policy", None)
            .await?;
        let all = self.store().inline_policies(&owner.id).await?;
        let Some((name, doc)) = all.into_iter().find(|(n, _)| n == policy_name) else {
            return Err(IamError::NoSuchEntity(format!(
                "The {} policy with name {policy_name} cannot be found.",
                kind.name().to_ascii_lowercase()
            )));
        };
        Ok(Some(Value::Struct(vec![
            (kind.param(), Value::text(owner.name)),
            ("PolicyName", Value::text(name)),
            ("PolicyDocument", Value::text(url_encoded(&doc))),
        ])))
    }

    async fn list_inline(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let owner = self
            .owner_for(caller, p, kind, "List", "Policies", None)
            .await?;
        let names: Vec<String> = self
            .store()
            .inline_policies(&owner.id)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let (names, next) = page(names, String::clone, p)?;
        Ok(listing(
            "PolicyNames",
            names.into_iter().map(Value::Text).collect(),
            next,
        ))
    }

    async fn delete_inline(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let policy_name = p.required("PolicyName")?;
        check_name(policy_name, "policyName", 128)?;
        let owner = self
            .owner_for(caller, p, kind, "Delete", "Policy", None)
            .await?;
        if !self
            .store()
            .delete_inline_policy(&owner.id, policy_name)
            .await?
        {
            return Err(IamError::NoSuchEntity(format!(
                "The {} policy with name {policy_name} cannot be found.",
                kind.name().to_ascii_lowercase()
            )));
        }
        self.identities_changed();
        Ok(None)
    }

    // ----- managed policies ----------------------------------------------------------------------

    /// A managed policy by ARN: AWS managed (AdministratorAccess) or customer managed of the caller's
    /// account; NoSuchEntity otherwise.
    async fn managed_policy(
        &self,
        caller: &Caller,
        arn: &str,
    ) -> Result<ManagedPolicyRow, IamError> {
        if arn == ADMINISTRATOR_ACCESS {
            return Ok(ManagedPolicyRow {
                policy_id: "ANPAIWMBCKSKIEE64ZLYK".into(),
                account_id: "aws".into(),
                policy_name: "AdministratorAccess".into(),
                path: "/".into(),
                arn: arn.into(),
                document: ADMINISTRATOR_ACCESS_DOCUMENT.into(),
                description: Some("Provides full access to AWS services and resources.".into()),
                created_at: 1_423_241_727_000,
            });
        }
        let own = arn.starts_with(&format!(
            "arn:aws:iam::{}:policy/",
            caller.principal.account
        ));
        let found = if own {
            self.store().managed_policy(arn).await?
        } else {
            None
        };
        found.ok_or_else(|| no_such_policy(arn))
    }

    async fn policy_value(&self, p: &ManagedPolicyRow) -> Result<Value, IamError> {
        let count = self.store().attachment_count(&p.arn).await?;
        let mut m = vec![
            ("PolicyName", Value::text(&p.policy_name)),
            ("PolicyId", Value::text(&p.policy_id)),
            ("Arn", Value::text(&p.arn)),
            ("Path", Value::text(&p.path)),
            ("DefaultVersionId", Value::text("v1")),
            ("AttachmentCount", Value::text(count.to_string())),
            ("PermissionsBoundaryUsageCount", Value::text("0")),
            ("IsAttachable", Value::bool(true)),
        ];
        if let Some(d) = &p.description {
            m.push(("Description", Value::text(d)));
        }
        m.push(("CreateDate", Value::time(p.created_at)));
        m.push(("UpdateDate", Value::time(p.created_at)));
        Ok(Value::Struct(m))
    }

    pub(super) async fn create_policy(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let name = p.required("PolicyName")?;
        check_name(name, "policyName", 128)?;
        let path = path_of(p)?;
        let document = p.required("PolicyDocument")?;
        let description = p.policy_description()?;
        let account = &caller.principal.account;
        let arn = iam_arn(account, "policy", &path, name);
        self.authorize_iam(caller, "iam:CreatePolicy", &arn, None, None)
            .await?;
        check_identity_policy(document)?;
        check_size(document, SizeLimit::ManagedPolicy)?;
        let row = ManagedPolicyRow {
            policy_id: new_id("ANPA")?,
            account_id: account.clone(),
            policy_name: name.to_string(),
            path,
            arn,
            document: document.to_string(),
            description,
            created_at: crate::now_millis(),
        };
        self.store().insert_managed_policy(&row).await?;
        Ok(Some(Value::Struct(vec![(
            "Policy",
            self.policy_value(&row).await?,
        )])))
    }

    pub(super) async fn get_policy(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let arn = p.required("PolicyArn")?;
        self.authorize_iam(caller, "iam:GetPolicy", arn, None, None)
            .await?;
        let row = self.managed_policy(caller, arn).await?;
        Ok(Some(Value::Struct(vec![(
            "Policy",
            self.policy_value(&row).await?,
        )])))
    }

    pub(super) async fn get_policy_version(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let arn = p.required("PolicyArn")?;
        let version = p.required("VersionId")?;
        self.authorize_iam(caller, "iam:GetPolicyVersion", arn, None, None)
            .await?;
        let row = self.managed_policy(caller, arn).await?;
        if version != "v1" {
            return Err(IamError::NoSuchEntity(format!(
                "Policy {arn} version {version} does not exist or is not attachable."
            )));
        }
        Ok(Some(Value::Struct(vec![(
            "PolicyVersion",
            Value::Struct(vec![
                ("Document", Value::text(url_encoded(&row.document))),
                ("VersionId", Value::text("v1")),
                ("IsDefaultVersion", Value::bool(true)),
                ("CreateDate", Value::time(row.created_at)),
            ]),
        )])))
    }

    pub(super) async fn list_policies(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let account = &caller.principal.account;
        self.authorize_iam(
            caller,
            "iam:ListPolicies",
            &iam_arn(account, "policy", "/", ""),
            None,
            None,
        )
        .await?;
        let scope = p.get("Scope").unwrap_or("All");
        let mut rows = Vec::new();
        if scope == "All" || scope == "AWS" {
            rows.push(self.managed_policy(caller, ADMINISTRATOR_ACCESS).await?);
        }
        if scope == "All" || scope == "Local" {
            rows.extend(self.store().list_managed_policies(account).await?);
        }
        let only_attached = p.get("OnlyAttached") == Some("true");
        let prefix = p.get("PathPrefix").unwrap_or("/");
        let mut items = Vec::new();
        for r in rows.iter().filter(|r| r.path.starts_with(prefix)) {
            if only_attached && self.store().attachment_count(&r.arn).await? == 0 {
                continue;
            }
            items.push(r.clone());
        }
        let (items, next) = page(items, |r| r.arn.clone(), p)?;
        let mut values = Vec::with_capacity(items.len());
        for r in &items {
            values.push(self.policy_value(r).await?);
        }
        Ok(listing("Policies", values, next))
    }

    pub(super) async fn delete_policy(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let arn = p.required("PolicyArn")?;
        self.authorize_iam(caller, "iam:DeletePolicy", arn, None, None)
            .await?;
        if arn == ADMINISTRATOR_ACCESS {
            return Err(IamError::InvalidInput(format!(
                "Policy {arn} is an AWS managed policy and cannot be deleted."
            )));
        }
        let row = self.managed_policy(caller, arn).await?;
        match self.store().delete_managed_policy(&row.arn).await? {
            Ok(_) => Ok(None),
            Err(b) => Err(conflict(b)),
        }
    }

    // ----- attachments ---------------------------------------------------------------------------

    async fn attach(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let arn = p.required("PolicyArn")?;
        let owner = self
            .owner_for(
                caller,
                p,
                kind,
                "Attach",
                "Policy",
                Some(("iam:PolicyARN", arn)),
            )
            .await?;
        self.managed_policy(caller, arn).await?;
        match self
            .store()
            .attach_policy(&owner.id, arn, ATTACHED_PER_ENTITY)
            .await?
        {
            Checked::Written => {}
            Checked::Full => {
                return Err(IamError::LimitExceeded(format!(
                    "Cannot exceed quota for PoliciesPer{}: {ATTACHED_PER_ENTITY}",
                    kind.name()
                )))
            }
            // Deleted since they were looked up.
            Checked::NoOwner => return Err(owner_gone(kind, &owner)),
            Checked::NoTarget => return Err(no_such_policy(arn)),
        }
        self.identities_changed();
        Ok(None)
    }

    async fn detach(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let arn = p.required("PolicyArn")?;
        let owner = self
            .owner_for(
                caller,
                p,
                kind,
                "Detach",
                "Policy",
                Some(("iam:PolicyARN", arn)),
            )
            .await?;
        if !self.store().detach_policy(&owner.id, arn).await? {
            return Err(IamError::NoSuchEntity(format!(
                "Policy {arn} was not found."
            )));
        }
        self.identities_changed();
        Ok(None)
    }

    async fn list_attached(
        &self,
        caller: &Caller,
        p: &Params,
        kind: Kind,
    ) -> Result<Option<Value>, IamError> {
        let owner = self
            .owner_for(caller, p, kind, "ListAttached", "Policies", None)
            .await?;
        let arns = self.store().attached_policies(&owner.id).await?;
        let (arns, next) = page(arns, String::clone, p)?;
        let items = arns
            .iter()
            .map(|a| {
                Value::Struct(vec![
                    ("PolicyName", Value::text(policy_name_of(a))),
                    ("PolicyArn", Value::text(a)),
                ])
            })
            .collect();
        Ok(listing("AttachedPolicies", items, next))
    }
}

/// The Query actions, one line each, over the generic forms above.
macro_rules! per_kind {
    ($($method:ident => $generic:ident($kind:expr)),* $(,)?) => {
        impl Kms {
            $(pub(super) async fn $method(&self, caller: &Caller, p: &Params) -> Result<Option<Value>, IamError> {
                self.$generic(caller, p, $kind).await
            })*
        }
    };
}

per_kind! {
    put_user_policy => put_inline(Kind::User),
    get_user_policy => get_inline(Kind::User),
    list_user_policies => list_inline(Kind::User),
    delete_user_policy => delete_inline(Kind::User),
    put_group_policy => put_inline(Kind::Group),
    get_group_policy => get_inline(Kind::Group),
    list_group_policies => list_inline(Kind::Group),
    delete_group_policy => delete_inline(Kind::Group),
    put_role_policy => put_inline(Kind::Role),
    get_role_policy => get_inline(Kind::Role),
    list_role_policies => list_inline(Kind::Role),
    delete_role_policy => delete_inline(Kind::Role),
    attach_user_policy => attach(Kind::User),
    detach_user_policy => detach(Kind::User),
    list_attached_user_policies => list_attached(Kind::User),
    attach_group_policy => attach(Kind::Group),
    detach_group_policy => detach(Kind::Group),
    list_attached_group_policies => list_attached(Kind::Group),
    attach_role_policy => attach(Kind::Role),
    detach_role_policy => detach(Kind::Role),
    list_attached_role_policies => list_attached(Kind::Role),
}
