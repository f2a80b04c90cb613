//! The grant operations: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant.
//! Each checks its request in AWS's order (the members' shapes, then the key, then the grant) and
//! answers with AWS's exception names.

use super::*;
use crate::policy::NamedIdentity;

/// `Limit` of the grant lists: AWS's model allows 1 to 1000; a page holds at most [`MAX_PAGE`].
fn grant_page_limit(limit: Option<i64>) -> Result<i64> {
    let l = limit.unwrap_or(50);
    check_range(l, 1, 1000, "limit")?;
    Ok(l.min(MAX_PAGE))
}

/// The idempotency digest of a named CreateGrant: the key, the name, the issuing account, the
/// grantee, the retiring principal, the set of operations and the constraints, unambiguously
/// encoded (JSON of a fixed structure).
fn idempotency_digest(g: &GrantRow) -> Result<String> {
    let ops: BTreeSet<&String> = g.operations.iter().collect();
    let canonical = serde_json::to_vec(&(
        "envelope/grant-name/v1",
        g.key_id.to_string(),
        &g.name,
        &g.issuing_account,
        &g.grantee_principal,
        &g.retiring_principal,
        ops,
        &g.encryption_context_subset,
        &g.encryption_context_equals,
    ))
    .map_err(|_| KmsError::Internal("Cannot encode the grant.".into()))?;
    Ok(hex(digest::digest(&digest::SHA256, &canonical).as_ref()))
}

impl Kms {
    /// CreateGrant: adds a grant to a key (Enabled or Disabled; not pending deletion). With a
    /// `Name`, a retry with the same parameters answers the grant the first call created (a new
    /// token each time).
    pub async fn create_grant(
        &self,
        req: CreateGrantRequest,
        caller: &Caller,
    ) -> Result<CreateGrantResponse> {
        let key_ref = required(req.key_id, "keyId")?;
        check_length(&key_ref, 1, 2048, "keyId")?;
        if req.grantee_service_principal.is_some() || req.retiring_service_principal.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "Service principals are not supported: this server has no AWS services.".into(),
            ));
        }
        let grantee = required(req.grantee_principal, "granteePrincipal")?;
        check_principal(&grantee, "granteePrincipal")?;
        if let Some(r) = &req.retiring_principal {
            check_principal(r, "retiringPrincipal")?;
        }
        let operations = required(req.operations, "operations")?;
        if let Some(bad) = operations
            .iter()
            .find(|o| !GRANT_OPERATIONS.contains(&o.as_str()))
        {
            return Err(KmsError::constraint(
                bad,
                "operations",
                &format!(
                    "Member must satisfy constraint: [Member must satisfy enum value set: [{}]]",
                    GRANT_OPERATIONS.join(", ")
                ),
            ));
        }
        if let Some(name) = &req.name {
            check_length(name, 1, 256, "name")?;
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":/_-".contains(&b))
            {
                return Err(KmsError::constraint(
                    name,
                    "name",
                    "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
                ));
            }
        }
        let constraints = req.constraints.unwrap_or_default();
        if constraints.source_arn.is_some() {
            return Err(KmsError::UnsupportedOperation(
                "The SourceArn grant constraint is not supported: this server has no AWS services."
                    .into(),
            ));
        }
        let key_id = self.resolve(&key_ref, Accepts::KeyOnly, false).await?;
        let key = self.record(&key_id).await?;
        if key.state == StoredKeyState::PendingDeletion {
            return Err(KmsError::InvalidState(format!(
                "{} is pending deletion.",
                self.arn(&key_id)
            )));
        }
        self.check_grant_tokens(req.grant_tokens.as_deref()).await?;
        if operations.is_empty() {
            return Err(KmsError::Validation(
                "A grant must allow at least one operation.".into(),
            ));
        }
        if let Some(bad) = operations
            .iter()
            .find(|o| !SYMMETRIC_OPERATIONS.contains(&o.as_str()))
        {
            return Err(KmsError::Validation(format!(
                "Grant operation {bad} is not supported for a KMS key with key spec {} and key \
                 usage {}.",
                key.key_spec, key.key_usage
            )));
        }
        if operations.iter().all(|o| o == "CreateGrant") {
            return Err(KmsError::Validation(
                "Grants must not contain only the CreateGrant operation.".into(),
            ));
        }
        for (pairs, field) in [
            (
                &constraints.encryption_context_subset,
                "EncryptionContextSubset",
            ),
            (
                &constraints.encryption_context_equals,
                "EncryptionContextEquals",
            ),
        ] {
            if let Some(pairs) = pairs {
                check_constraint(pairs, field)?;
            }
        }
        check_principal_arn(&grantee)?;
        if let Some(r) = &req.retiring_principal {
            check_principal_arn(r)?;
        }
        for arn in std::iter::once(&grantee).chain(&req.retiring_principal) {
            if !self.identity_exists(NamedIdentity::Arn(arn)).await? {
                return Err(KmsError::InvalidArn(format!(
                    "ARN does not refer to a valid principal: {arn}"
                )));
            }
        }
        check_dry_run(req.dry_run)?;
        let mut unique = Vec::with_capacity(operations.len());
        for o in operations {
            if !unique.contains(&o) {
                unique.push(o);
            }
        }
        let mut grant_id = [0u8; 32];
        random_bytes(&mut grant_id)?;
        let mut row = GrantRow {
            grant_id: hex(&grant_id),
            key_id,
            account_id: self.key_account(&key),
            name: req.name,
            grantee_principal: grantee,
            retiring_principal: req.retiring_principal,
            operations: unique,
            encryption_context_subset: constraints.encryption_context_subset,
            encryption_context_equals: constraints.encryption_context_equals,
            issuing_account: caller.principal.account.clone(),
            created_at: now_millis(),
            idempotency: None,
        };
        if row.name.is_some() {
            row.idempotency = Some(idempotency_digest(&row)?);
        }
        let grant_id = match self.store.insert_grant(&row, MAX_GRANTS_PER_KEY).await? {
            GrantInsert::Created => row.grant_id,
            GrantInsert::Existing(id) => id,
            GrantInsert::LimitReached => {
                return Err(KmsError::LimitExceeded(format!(
                "The request would exceed the limit of {MAX_GRANTS_PER_KEY} grants on key '{}'.",
                self.arn(&key_id)
            )))
            }
        };
        self.forget_grants(&key_id);
        Ok(CreateGrantResponse {
            grant_token: self.grant_token(&key_id, &grant_id).await?,
            grant_id,
        })
    }

    /// ListGrants: a key's grants (in any key state), optionally one grant or one grantee's.
    pub async fn list_grants(&self, req: ListGrantsRequest) -> Result<ListGrantsResponse> {
        let key_ref = required(req.key_id, "keyId")?;
        check_length(&key_ref, 1, 2048, "keyId")?;
        if let Some(id) = &req.grant_id {
            check_grant_id(id)?;
        }
        if let Some(g) = &req.grantee_principal {
            check_principal(g, "granteePrincipal")?;
        }
        let limit = grant_page_limit(req.limit)?;
        let after = decode_marker(req.marker.as_deref())?;
        let key_id = self.resolve(&key_ref, Accepts::KeyOnly, false).await?;
        self.record(&key_id).await?;
        // No grant has an AWS service as its grantee here.
        let mut rows = if req.grantee_service_principal.is_some() {
            Vec::new()
        } else {
            self.store
                .list_grants(
                    &key_id,
                    req.grant_id.as_deref(),
                    req.grantee_principal.as_deref(),
                    after.as_deref(),
                    limit + 1,
                )
                .await?
        };
        let (truncated, next_marker) = page(&mut rows, limit, |g| g.grant_id.clone());
        Ok(ListGrantsResponse {
            grants: rows.into_iter().map(|g| self.grant_entry(g)).collect(),
            truncated,
            next_marker,
        })
    }

    /// ListRetirableGrants: the grants, on any key, whose retiring principal is the one named.
    pub async fn list_retirable_grants(
        &self,
        req: ListRetirableGrantsRequest,
    ) -> Result<ListGrantsResponse> {
        let limit = grant_page_limit(req.limit)?;
        let after = decode_marker(req.marker.as_deref())?;
        let mut rows = match (req.retiring_principal, req.retiring_service_principal) {
            // No grant has an AWS service as its retiring principal here.
            (None, Some(_)) => Vec::new(),
            (retiring, _) => {
                let retiring = required(retiring, "retiringPrincipal")?;
                check_principal(&retiring, "retiringPrincipal")?;
                self.store
                    .list_retirable_grants(&retiring, after.as_deref(), limit + 1)
                    .await?
            }
        };
        let (truncated, next_marker) = page(&mut rows, limit, |g| g.grant_id.clone());
        Ok(ListGrantsResponse {
            grants: rows.into_iter().map(|g| self.grant_entry(g)).collect(),
            truncated,
            next_marker,
        })
    }

    /// RetireGrant: deletes a grant named by a grant token, or by key and grant id. Who may is
    /// decided here by the policy engine over the key policy, the caller's identity policies and
    /// the grant's retirement rights ([`retirement_grants`]): the authorization point leaves
    /// `kms:RetireGrant` to this operation, since the grant shapes the decision.
    pub async fn retire_grant(&self, req: RetireGrantRequest, caller: &Caller) -> Result<Empty> {
        let (key_id, grant_id) = match &req.grant_token {
            Some(token) => {
                check_length(token, 1, 8192, "grantToken")?;
                if let Some(k) = &req.key_id {
                    check_length(k, 1, 2048, "keyId")?;
                }
                if let Some(id) = &req.grant_id {
                    check_grant_id(id)?;
                }
                let (key_id, grant_id) = self.open_grant_token(token).await?;
                if req.grant_id.as_ref().is_some_and(|id| *id != grant_id) {
                    return Err(KmsError::InvalidGrantId(
                        "The grant ID is not the grant the grant token names.".into(),
                    ));
                }
                if let Some(k) = &req.key_id {
                    if self.resolve(k, Accepts::KeyOnly, false).await? != key_id {
                        return Err(KmsError::InvalidGrantToken(
                            "The grant token names a grant on another key.".into(),
                        ));
                    }
                }
                (key_id, grant_id)
            }
            None => {
                let grant_id = required(req.grant_id.clone(), "grantId")?;
                check_grant_id(&grant_id)?;
                let key_ref = required(req.key_id.clone(), "keyId")?;
                check_length(&key_ref, 1, 2048, "keyId")?;
                (
                    self.resolve(&key_ref, Accepts::KeyOnly, false).await?,
                    grant_id,
                )
            }
        };
        let denied = |arn: &str| {
            KmsError::AccessDenied(policy::access_denied_message(
                &caller.principal.arn,
                "kms:RetireGrant",
                Some(arn),
                &policy::Denied::NoResourcePolicyAllows,
            ))
        };
        // The key's policy (compiled, cached; the default key policy when none was set), its ARN in
        // its own account, its tags and aliases, as every key action sees them. A key of another
        // account that does not exist is refused as one that does (nobody learns which keys
        // another account has).
        let Some(auth) = self.key_auth(&key_id).await? else {
            let named = req
                .key_id
                .as_deref()
                .and_then(|k| {
                    self.config
                        .partition
                        .parse_key_name(k, Accepts::KeyOnly)
                        .ok()
                })
                .and_then(|n| n.account);
            return Err(match named {
                Some(account) if account != caller.principal.account => {
                    denied(&self.config.partition.key_arn_in(&account, &key_id))
                }
                _ => self.not_found(&key_id),
            });
        };
        // Decided before the grant is looked up, so a caller who may not retire it does not learn
        // whether it exists: without the grant, only the key policy and identity policies count.
        let grant = match self.grant_on_key(&key_id, &grant_id).await {
            Ok(g) => Some(g),
            // In the key's own account a missing grant is NotFoundException, as before (a retry
            // of a retirement that went through must see that); only another account learns nothing.
            Err(e @ KmsError::NotFound(_)) if auth.account == caller.principal.account => {
                return Err(e)
            }
            Err(KmsError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let ctx = self.key_context(
            crate::identity::request_context(caller, "kms:RetireGrant"),
            &auth,
        );
        let name = format!("key policy of {}", auth.arn);
        self.authorize(
            &ctx,
            Some(policy::NamedPolicy {
                name: &name,
                policy: &auth.policy,
            }),
            &grant.as_ref().map(retirement_grants).unwrap_or_default(),
        )
        .await?;
        if grant.is_none() {
            return Err(self.grant_not_found(&key_id, &grant_id));
        }
        check_dry_run(req.dry_run)?;
        if !self.store.delete_grant(&key_id, &grant_id).await? {
            // Retired or revoked meanwhile.
            return Err(self.grant_not_found(&key_id, &grant_id));
        }
        self.forget_grants(&key_id);
        Ok(Empty {})
    }

    /// RevokeGrant: deletes a grant of a key (in any key state). Who may is the authorization
    /// point's to decide (`kms:RevokeGrant` on the key, as for any key action).
    pub async fn revoke_grant(&self, req: RevokeGrantRequest) -> Result<Empty> {
        let key_ref = required(req.key_id, "keyId")?;
        check_length(&key_ref, 1, 2048, "keyId")?;
        let grant_id = required(req.grant_id, "grantId")?;
        check_grant_id(&grant_id)?;
        let key_id = self.resolve(&key_ref, Accepts::KeyOnly, false).await?;
        self.record(&key_id).await?;
        self.grant_on_key(&key_id, &grant_id).await?;
        check_dry_run(req.dry_run)?;
        if !self.store.delete_grant(&key_id, &grant_id).await? {
            // Retired or revoked meanwhile.
            return Err(self.grant_not_found(&key_id, &grant_id));
        }
        self.forget_grants(&key_id);
        Ok(Empty {})
    }
}
