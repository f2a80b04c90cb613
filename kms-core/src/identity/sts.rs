//! STS: GetCallerIdentity, AssumeRole (the role's trust policy decided by the one authorization
//! point, with `sts:ExternalId` in the request context), and the session behind a session token.

use zeroize::Zeroizing;

use super::entity::Entity;
use super::query::{request_context, Params, Value};
use super::token::{self, SessionClaims};
use super::IamError;
use crate::audit::Caller;
use crate::error::{KmsError, Result};
use crate::policy::{access_denied_message, Denied, NamedPolicy, Principal, PrincipalType};
use crate::Kms;

/// The default session, and the longest a role chained from another role's session may have.
const ONE_HOUR: i64 = 3600;

/// A session a request's `X-Amz-Security-Token` stands for.
#[derive(Debug)]
pub struct Session {
    /// The role session (`arn:aws:sts::ACCT:assumed-role/ROLE/SESSION`).
    pub principal: Principal,
    /// The session's secret access key, to verify the request's signature with.
    pub secret: Zeroizing<Vec<u8>>,
    /// Whether the session has expired (the request is refused with ExpiredToken once its
    /// signature is verified).
    pub expired: bool,
}

fn session_principal(c: &SessionClaims) -> Principal {
    let role_name = c.role_arn.rsplit('/').next().unwrap_or_default();
    let mut p = Principal::assumed_role(&c.account, role_name, &c.session_name, &c.role_id);
    p.role_arn = Some(c.role_arn.clone());
    p
}

fn check_pattern(
    value: &str,
    field: &str,
    range: std::ops::RangeInclusive<usize>,
    extra: &[u8],
) -> Result<(), IamError> {
    if !range.contains(&value.len()) {
        return Err(IamError::constraint(
            value,
            field,
            &format!(
                "Member must have length greater than or equal to {} and less than or equal to {}",
                range.start(),
                range.end()
            ),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b) || extra.contains(&b))
    {
        let pattern = if extra.is_empty() {
            "[\\w+=,.@-]*"
        } else {
            "[\\w+=,.@:/-]*"
        };
        return Err(IamError::constraint(
            value,
            field,
            &format!("Member must satisfy regular expression pattern: {pattern}"),
        ));
    }
    Ok(())
}

impl Kms {
    /// The session token key: read from the store and unwrapped by the root of trust, or made on
    /// first use (one node wins; the others read its key).
    pub(super) async fn token_key(&self) -> Result<&[u8; 32]> {
        let key = self
            .identity_state()
            .token_key
            .get_or_try_init(|| async {
                loop {
                    if let Some(wrapped) = self
                        .store()
                        .meta_get(crate::service::SESSION_TOKEN_KEY)
                        .await?
                    {
                        let raw = self
                            .unwrap_secret(crate::service::SESSION_TOKEN_KEY_AAD, wrapped)
                            .await?;
                        let key: [u8; 32] = raw.as_slice().try_into().map_err(|_| {
                            KmsError::Internal("The session token key is malformed.".into())
                        })?;
                        return Ok::<_, KmsError>(Zeroizing::new(key));
                    }
                    let mut key = Zeroizing::new([0u8; 32]);
                    crate::material::random_bytes(&mut key[..])?;
                    let wrapped = self
                        .wrap_secret(crate::service::SESSION_TOKEN_KEY_AAD, key.to_vec())
                        .await?;
                    if self
                        .store()
                        .meta_put_new(crate::service::SESSION_TOKEN_KEY, &wrapped)
                        .await?
                    {
                        return Ok(key);
                    }
                }
            })
            .await?;
        Ok(key)
    }

    /// The session a session token stands for, if this store issued it, `access_key_id` is the
    /// session's and its role still exists; `None` for any other token (forged, altered, another
    /// store's, another key's, a deleted role's). The session carries the role's tags
    /// (`aws:PrincipalTag/…`) and its issue time (`aws:TokenIssueTime`).
    pub async fn session(
        &self,
        access_key_id: &str,
        session_token: &str,
    ) -> Result<Option<Session>> {
        let key = self.token_key().await?;
        let Some(claims) = token::open(key, session_token) else {
            return Ok(None);
        };
        if claims.access_key_id != access_key_id {
            return Ok(None);
        }
        let Some(tags) = self.live_role(&claims.role_id).await? else {
            return Ok(None);
        };
        let mut principal = session_principal(&claims);
        principal.tags = (*tags).clone();
        principal.token_issue_time = Some(claims.issued);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Ok(Some(Session {
            principal,
            secret: Zeroizing::new(claims.secret.as_bytes().to_vec()),
            expired: now >= claims.expires,
        }))
    }

    pub(super) fn get_caller_identity(&self, caller: &Caller) -> Result<Option<Value>, IamError> {
        // Always allowed, as in AWS: no policy can deny it.
        let p = &caller.principal;
        Ok(Some(Value::Struct(vec![
            ("UserId", Value::text(p.user_id.clone().unwrap_or_default())),
            ("Account", Value::text(&p.account)),
            ("Arn", Value::text(&p.arn)),
        ])))
    }

    pub(super) async fn assume_role(
        &self,
        caller: &Caller,
        p: &Params,
    ) -> Result<Option<Value>, IamError> {
        let role_arn_param = p.required("RoleArn")?;
        let session_name = p.required("RoleSessionName")?;
        check_pattern(session_name, "roleSessionName", 2..=64, b"")?;
        if role_arn_param.len() < 20 || role_arn_param.len() > 2048 {
            return Err(IamError::constraint(
                role_arn_param,
                "roleArn",
                "Member must have length greater than or equal to 20",
            ));
        }
        let external_id = p.get("ExternalId");
        if let Some(e) = external_id {
            check_pattern(e, "externalId", 2..=1224, b":/")?;
        }
        if p.get("Policy").is_some() || p.get("PolicyArns.member.1.arn").is_some() {
            return Err(IamError::InvalidInput(
                "Session policies (Policy, PolicyArns) are not supported by this endpoint.".into(),
            ));
        }
        let duration = match p.get("DurationSeconds") {
            None => None,
            Some(s) => match s.parse::<i64>() {
                Ok(n) if (900..=43200).contains(&n) => Some(n),
                _ => {
                    return Err(IamError::constraint(
                        s,
                        "durationSeconds",
                        "Member must have value less than or equal to 43200 and greater than or equal to 900",
                    ))
                }
            },
        };
        // arn:aws:iam::ACCOUNT:role/PATH/NAME
        let role = match crate::policy::split_arn(role_arn_param) {
            Some([_, "aws", "iam", "", account, resource]) if resource.starts_with("role/") => {
                let name = resource.rsplit('/').next().unwrap_or_default();
                self.store().role_by_name(account, name).await?
            }
            _ => return Err(IamError::Validation(format!("{role_arn_param} is invalid"))),
        };
        let mut ctx = request_context(caller, "sts:AssumeRole").with_resource(role_arn_param);
        if let Some(e) = external_id {
            ctx.set("sts:ExternalId", e);
        }
        ctx.set("sts:RoleSessionName", session_name);
        let Some(role) = role.filter(|r| r.arn() == role_arn_param) else {
            // No such role: the same answer as a trust policy that does not name the caller.
            return Err(IamError::AccessDenied(access_denied_message(
                &caller.principal.arn,
                "sts:AssumeRole",
                Some(role_arn_param),
                &Denied::NoResourcePolicyAllows,
            )));
        };
        let trust = super::roles::check_trust_policy(&role.trust_policy)?;
        let name = format!("trust policy of {role_arn_param}");
        self.authorize(
            &ctx,
            Some(NamedPolicy {
                name: &name,
                policy: &trust,
            }),
            &[],
        )
        .await?;
        let chained = caller.principal.kind == PrincipalType::AssumedRole;
        let longest = if chained {
            ONE_HOUR
        } else {
            role.max_session_duration
        };
        let duration = duration.unwrap_or(ONE_HOUR);
        if duration > longest {
            return Err(IamError::Validation(format!(
                "The requested DurationSeconds exceeds the {} set for this role.",
                if chained {
                    "1 hour session limit for roles assumed by role chaining"
                } else {
                    "MaxSessionDuration"
                }
            )));
        }
        let (access_key_id, secret) = crate::service::generate_access_key("ASIA")?;
        let issued = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = SessionClaims {
            expires: issued + duration,
            issued,
            access_key_id: access_key_id.clone(),
            secret: secret.clone(),
            account: role.account_id.clone(),
            role_id: role.role_id.clone(),
            role_arn: role.arn(),
            session_name: session_name.to_string(),
        };
        let token = Zeroizing::new(token::seal(self.token_key().await?, &claims)?);
        let session = session_principal(&claims);
        Ok(Some(Value::Struct(vec![
            (
                "Credentials",
                Value::Struct(vec![
                    ("AccessKeyId", Value::text(access_key_id)),
                    ("SecretAccessKey", Value::secret(secret.as_str())),
                    ("SessionToken", Value::secret(&token)),
                    ("Expiration", Value::time(claims.expires * 1000)),
                ]),
            ),
            (
                "AssumedRoleUser",
                Value::Struct(vec![
                    (
                        "AssumedRoleId",
                        Value::text(session.user_id.unwrap_or_default()),
                    ),
                    ("Arn", Value::text(session.arn)),
                ]),
            ),
        ])))
    }
}
