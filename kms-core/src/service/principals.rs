//! Principals: the identities SigV4 knows. Each is an access key of an IAM user (`identity/`),
//! its secret wrapped by the root of trust; this file answers the secret lookup the server's
//! authentication asks for (with the negative cache of unknown access keys), and keeps the
//! command line's `principal` operations: a user with one access key, made in one step.
//!
//! It also lends the identity module the service's parts it needs (store, root of trust, caches).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use zeroize::Zeroizing;

use super::cache::{CachedPrincipal, KnownAccessKeys};
use super::root::{off_runtime, secret_aad};
use super::Kms;
use crate::audit::AuditLog;
use crate::error::{KmsError, Result};
use crate::identity::{IdentityState, ADMINISTRATOR_ACCESS};
use crate::material;
use crate::now_millis;
use crate::policy::{check_size, Policy, PolicyType, Principal, SizeLimit};
use crate::store::{AccessKeyRow, Checked, UserRow};

/// A principal as `principal list` shows it: a user and one of its access keys.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrincipalInfo {
    /// Name.
    pub user_name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// The user's account.
    pub account: String,
    /// Access key id.
    pub access_key_id: String,
    /// Creation time, RFC 3339.
    pub create_date: String,
}

/// The policy a principal made by the command line starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitialPolicy {
    /// None: the user can authenticate, and every action is denied until a policy allows it.
    None,
    /// `arn:aws:iam::aws:policy/AdministratorAccess` attached.
    Admin,
    /// This identity policy document, as the user's inline policy `initial`.
    Document(String),
}

impl Kms {
    /// Creates a principal of the home account with `AdministratorAccess`, as every principal had
    /// before access control. With `adopt`, uses that access key id and secret; otherwise generates
    /// both. Returns the principal and, when generated, the secret.
    pub async fn create_principal(
        &self,
        user_name: &str,
        adopt: Option<(String, Zeroizing<String>)>,
    ) -> Result<(PrincipalInfo, Option<Zeroizing<String>>)> {
        let home = self.config.partition.account_id.clone();
        self.create_principal_in(&home, user_name, adopt, InitialPolicy::Admin)
            .await
    }

    /// Creates an IAM user in `account` (recording the account on first use) with one access key
    /// and `policy`. With `adopt`, uses that access key id and secret; otherwise generates both.
    pub async fn create_principal_in(
        &self,
        account: &str,
        user_name: &str,
        adopt: Option<(String, Zeroizing<String>)>,
        policy: InitialPolicy,
    ) -> Result<(PrincipalInfo, Option<Zeroizing<String>>)> {
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(KmsError::Validation(format!(
                "Account id '{account}' is not valid: 12 digits"
            )));
        }
        if user_name.is_empty()
            || user_name.len() > 64
            || !user_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
        {
            return Err(KmsError::Validation(format!(
                "User name '{user_name}' is not valid: 1 to 64 of letters, digits and +=,.@_-"
            )));
        }
        if let InitialPolicy::Document(doc) = &policy {
            crate::policy::check_characters(doc)
                .and_then(|()| check_size(doc, SizeLimit::UserInlinePolicies))
                .and_then(|()| Policy::parse(doc, PolicyType::Identity).map(|_| ()))
                .map_err(|e| KmsError::Validation(format!("The policy is not valid: {e}")))?;
        }
        let user = UserRow {
            user_id: crate::identity::new_id("AIDA")?,
            account_id: account.to_string(),
            user_name: user_name.to_string(),
            path: "/".into(),
            tags: Default::default(),
            created_at: now_millis(),
        };
        let (key, secret) = self.new_access_key(&user.user_id, adopt).await?;
        self.store.ensure_account(account).await?;
        self.store.insert_user(&user, Some(&key)).await?;
        // A new user has no policy: either fits (the document's size was checked above).
        let done = match &policy {
            InitialPolicy::None => Checked::Written,
            InitialPolicy::Admin => {
                self.store
                    .attach_policy(&user.user_id, ADMINISTRATOR_ACCESS, 1)
                    .await?
            }
            InitialPolicy::Document(doc) => {
                self.store
                    .put_inline_policy(&user.user_id, "initial", doc, SizeLimit::UserInlinePolicies)
                    .await?
            }
        };
        if done != Checked::Written {
            // Only if the user was deleted meanwhile; leave nothing of it behind either way.
            let _ = self.store.delete_user(&user.user_id, true).await;
            return Err(KmsError::Internal(format!(
                "The initial policy was not stored ({done:?})."
            )));
        }
        self.access_key_created(&key.access_key_id).await;
        Ok((principal_info(&user, &key), secret))
    }

    /// A new access key for `user_id` (generated, or `adopt`ed after checking it), its secret
    /// wrapped; and the secret when generated.
    pub(crate) async fn new_access_key(
        &self,
        user_id: &str,
        adopt: Option<(String, Zeroizing<String>)>,
    ) -> Result<(AccessKeyRow, Option<Zeroizing<String>>)> {
        let (access_key_id, secret, generated) = match adopt {
            Some((id, secret)) => {
                if id.len() < 16 || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric())
                {
                    return Err(KmsError::Validation(format!(
                        "Access key id '{id}' is not valid: 16 to 128 letters and digits"
                    )));
                }
                check_adopted_secret(&secret)?;
                (id, secret, false)
            }
            None => {
                let (id, secret) = generate_access_key("AKIA")?;
                (id, secret, true)
            }
        };
        let wrapped_secret = self
            .wrap_secret(&secret_aad(&access_key_id), secret.as_bytes().to_vec())
            .await?;
        let row = AccessKeyRow {
            access_key_id,
            user_id: user_id.to_string(),
            wrapped_secret,
            active: true,
            created_at: now_millis(),
        };
        Ok((row, generated.then_some(secret)))
    }

    /// Every principal: each user's access keys, by account and name.
    pub async fn list_principals(&self) -> Result<Vec<PrincipalInfo>> {
        let mut out = Vec::new();
        for u in self.store.list_users().await? {
            for k in self.store.list_access_keys(&u.user_id).await? {
                out.push(principal_info(&u, &k));
            }
        }
        Ok(out)
    }

    /// Deletes a principal of the home account by name: the user with its access keys, policies
    /// and group memberships.
    pub async fn delete_principal(&self, user_name: &str) -> Result<()> {
        let home = self.config.partition.account_id.clone();
        self.delete_principal_in(&home, user_name).await
    }

    /// Deletes the user `user_name` of `account` with its access keys, policies and memberships.
    pub async fn delete_principal_in(&self, account: &str, user_name: &str) -> Result<()> {
        let Some(user) = self.store.user_by_name(account, user_name).await? else {
            return Err(KmsError::NotFound(format!(
                "No principal named {user_name}."
            )));
        };
        let keys = self.store.list_access_keys(&user.user_id).await?;
        let _ = self.store.delete_user(&user.user_id, true).await?;
        for k in keys {
            self.forget_access_key(&k.access_key_id);
        }
        self.identities_changed();
        Ok(())
    }

    // ----- what the identity module borrows ------------------------------------------------------

    pub(crate) fn identity_state(&self) -> &IdentityState {
        &self.identities
    }

    pub(crate) fn cache_ttl(&self) -> Duration {
        self.config.cache_ttl
    }

    pub(crate) fn audit_log(&self) -> Option<&AuditLog> {
        self.audit.as_ref()
    }

    /// Wraps `secret` under the root of trust, bound to `aad`, off the async runtime.
    pub(crate) async fn wrap_secret(&self, aad: &[u8], secret: Vec<u8>) -> Result<Vec<u8>> {
        let (aad, secret) = (aad.to_vec(), Zeroizing::new(secret));
        off_runtime(&self.root, move |root| root.wrap(&aad, &secret)).await
    }

    /// Unwraps what [`wrap_secret`](Self::wrap_secret) returned.
    pub(crate) async fn unwrap_secret(
        &self,
        aad: &[u8],
        wrapped: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let aad = aad.to_vec();
        off_runtime(&self.root, move |root| root.unwrap(&aad, &wrapped)).await
    }

    /// Makes a new access key known to this node at once.
    pub(crate) async fn access_key_created(&self, access_key_id: &str) {
        self.cache
            .known_access_keys
            .lock()
            .await
            .ids
            .insert(access_key_id.to_string());
    }

    /// Forgets a cached access key after a local change (deleted, deactivated): the next request
    /// signed with it asks the store.
    pub(crate) fn forget_access_key(&self, access_key_id: &str) {
        if let Ok(mut map) = self.cache.principals.write() {
            self.cache.principals_changed.count(access_key_id);
            map.remove(access_key_id);
        }
    }

    // ----- authentication ------------------------------------------------------------------------

    /// Whether the store may hold `access_key_id`, answered from the set of known access key ids
    /// without a query when it can: an id the set lacks is unknown if the set was read after the
    /// question was asked; otherwise the caller waits for the next read (at most one per
    /// [`KnownAccessKeys::MIN_RELOAD`], shared by every caller waiting), so a flood of unknown
    /// access keys never costs one store query each, and a principal created elsewhere is known
    /// within that interval.
    async fn may_hold_access_key(&self, access_key_id: &str) -> Result<bool> {
        let asked = Instant::now();
        let mut known = self.cache.known_access_keys.lock().await;
        if known.ids.contains(access_key_id) {
            return Ok(true);
        }
        if known.loaded.is_some_and(|t| t >= asked) {
            return Ok(false);
        }
        if let Some(t) = known.loaded {
            // Holding the lock: the callers behind it are answered by this read.
            tokio::time::sleep_until((t + KnownAccessKeys::MIN_RELOAD).into()).await;
        }
        known.ids = self.store.access_key_ids().await?.into_iter().collect();
        known.loaded = Some(Instant::now());
        known.loads += 1;
        Ok(known.ids.contains(access_key_id))
    }

    /// Who owns an access key id (the user as the policy engine sees it: ARN, unique id, account,
    /// tags), and its secret access key, for SigV4 verification. An unknown access key is answered
    /// from the known ids (see `may_hold_access_key`); a new access key works at once on this node
    /// and within 100 ms elsewhere; a deleted or inactive one stops at once on this node and within
    /// the cache TTL elsewhere.
    pub async fn principal_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(Principal, Zeroizing<Vec<u8>>)>> {
        let cached = self
            .cache
            .principals
            .read()
            .ok()
            .and_then(|map| map.get(access_key_id).cloned());
        if let Some(p) = &cached {
            if p.loaded.elapsed() < self.config.cache_ttl {
                return Ok(Some((p.principal.clone(), p.secret.clone())));
            }
        }
        if cached.is_none() && !self.may_hold_access_key(access_key_id).await? {
            return Ok(None);
        }
        let ticket = self.cache.principals_changed.ticket(access_key_id);
        let found = self.store.access_key(access_key_id).await?;
        let Some((key, user)) = found.filter(|(k, _)| k.active) else {
            // What the store says now: nothing changed here, so no change is counted (a client
            // signing with an inactive key must not keep others' loads from being cached).
            if let Ok(mut map) = self.cache.principals.write() {
                map.remove(access_key_id);
            }
            return Ok(None);
        };
        // The same wrapped bytes as cached: the secret is known, the root need not be asked.
        let secret = match cached.filter(|p| p.wrapped == key.wrapped_secret) {
            Some(p) => p.secret.clone(),
            None => {
                self.unwrap_secret(&secret_aad(access_key_id), key.wrapped_secret.clone())
                    .await?
            }
        };
        let principal = crate::identity::user_principal(&user);
        if let Ok(mut map) = self.cache.principals.write() {
            // Not if the key was deactivated or deleted on this node since the read above.
            if self.cache.principals_changed.none_since(ticket) {
                map.insert(
                    access_key_id.to_string(),
                    Arc::new(CachedPrincipal {
                        principal: principal.clone(),
                        secret: secret.clone(),
                        wrapped: key.wrapped_secret,
                        loaded: Instant::now(),
                    }),
                );
            }
        }
        Ok(Some((principal, secret)))
    }
}

fn principal_info(user: &UserRow, key: &AccessKeyRow) -> PrincipalInfo {
    PrincipalInfo {
        user_name: user.user_name.clone(),
        arn: crate::identity::user_principal(user).arn,
        account: user.account_id.clone(),
        access_key_id: key.access_key_id.clone(),
        create_date: crate::rfc3339(key.created_at),
    }
}

/// An adopted secret access key is as strong as one AWS issues: at least 40 characters (AWS's are
/// 40; other S3-compatible stores issue longer ones), at most 128, all of AWS's secret-key
/// alphabet (letters, digits, `+` and `/`).
fn check_adopted_secret(secret: &str) -> Result<()> {
    let n = secret.chars().count();
    if !(40..=128).contains(&n)
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    {
        return Err(KmsError::Validation(
            "The secret access key must be 40 to 128 letters, digits, '+' and '/' (an AWS secret \
             access key is 40)."
                .into(),
        ));
    }
    Ok(())
}

/// A new access key id (`prefix`, `AKIA` or `ASIA`, and 16 base32 characters) and a 40-character
/// secret.
pub(crate) fn generate_access_key(prefix: &str) -> Result<(String, Zeroizing<String>)> {
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut r = Zeroizing::new([0u8; 46]);
    material::random_bytes(&mut r[..])?;
    let id: String = std::iter::once(prefix.to_string())
        .chain(
            r[..16]
                .iter()
                .map(|b| (B32[(b & 31) as usize] as char).to_string()),
        )
        .collect();
    let secret = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&r[16..46]));
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::Arc;

    use super::*;
    use crate::{KeyMaterial, KmsConfig, SoftwareRootKey, Store};

    async fn open(dir: &tempfile::TempDir) -> Kms {
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let root = SoftwareRootKey::new(KeyMaterial::from_slice(&[7; 32]).unwrap());
        Kms::open(
            Store::connect(&url).await.unwrap(),
            Arc::new(root),
            KmsConfig::default(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_flood_of_unknown_access_keys_makes_no_query_each() {
        let dir = tempfile::tempdir().unwrap();
        let kms = Arc::new(open(&dir).await);
        let (info, secret) = kms.create_principal("alice", None).await.unwrap();
        let started = Instant::now();
        let flood: Vec<_> = (0..2000)
            .map(|i| {
                let kms = kms.clone();
                tokio::spawn(async move {
                    kms.principal_secret(&format!("AKIAUNKNOWN{i:09}"))
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in flood {
            assert!(t.await.unwrap().is_none());
        }
        let loads = kms.cache.known_access_keys.lock().await.loads;
        // One read of the known ids per MIN_RELOAD at most, however many unknown keys.
        let bound = 1 + started.elapsed().as_millis() / KnownAccessKeys::MIN_RELOAD.as_millis();
        assert!(
            u128::from(loads) <= bound,
            "{loads} reads for 2000 unknown keys"
        );
        assert!(loads <= 20, "{loads} reads for 2000 unknown keys");
        // The known principal still works, and one created by another process (straight into
        // the store) is found by the next read.
        let (_, s) = kms
            .principal_secret(&info.access_key_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.as_slice(), secret.unwrap().as_bytes());
        let other = open(&dir).await;
        let adopted = (
            "AKIAOTHERPROCESS0001".to_string(),
            Zeroizing::new("a".repeat(40)),
        );
        other.create_principal("bob", Some(adopted)).await.unwrap();
        assert!(kms
            .principal_secret("AKIAOTHERPROCESS0001")
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn an_adopted_secret_is_as_strong_as_aws_issues() {
        let dir = tempfile::tempdir().unwrap();
        let kms = open(&dir).await;
        let adopt = |s: &str| Some(("AKIAADOPTED000000001".to_string(), Zeroizing::new(s.into())));
        for weak in [
            "x",
            &"a".repeat(39),
            &format!("{}-", "a".repeat(39)),
            &"a".repeat(129),
        ] {
            let r = kms.create_principal("weak", adopt(weak)).await;
            assert!(matches!(r, Err(KmsError::Validation(_))), "{weak}: {r:?}");
        }
        assert!(kms.list_principals().await.unwrap().is_empty());
        let aws_like = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        kms.create_principal("strong", adopt(aws_like))
            .await
            .unwrap();
    }
}
