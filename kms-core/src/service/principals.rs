//! Principals: the identities SigV4 knows (a user name, an access key id, a secret access key kept
//! wrapped by the root of trust), and the secret lookup the server's authentication asks for.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use zeroize::Zeroizing;

use super::cache::{CachedPrincipal, KnownAccessKeys};
use super::root::{off_runtime, secret_aad};
use super::Kms;
use crate::error::{KmsError, Result};
use crate::material;
use crate::now_millis;
use crate::policy::Principal;
use crate::store::PrincipalRow;

/// A principal as `principal list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PrincipalInfo {
    /// Name.
    pub user_name: String,
    /// `arn:aws:iam::<account>:user/<name>`.
    pub arn: String,
    /// Access key id.
    pub access_key_id: String,
    /// Creation time, RFC 3339.
    pub create_date: String,
}

impl Kms {
    /// Creates a principal. With `adopt`, uses that access key id and secret; otherwise generates
    /// both. Returns the principal and, when generated, the secret.
    pub async fn create_principal(
        &self,
        user_name: &str,
        adopt: Option<(String, Zeroizing<String>)>,
    ) -> Result<(PrincipalInfo, Option<Zeroizing<String>>)> {
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
                let (id, secret) = generate_access_key()?;
                (id, secret, true)
            }
        };
        let (aad, plain) = (secret_aad(&access_key_id), secret.clone());
        let wrapped_secret =
            off_runtime(&self.root, move |root| root.wrap(&aad, plain.as_bytes())).await?;
        let row = PrincipalRow {
            user_name: user_name.to_string(),
            wrapped_secret,
            access_key_id,
            created_at: now_millis(),
        };
        self.store.insert_principal(&row).await?;
        self.cache
            .known_access_keys
            .lock()
            .await
            .ids
            .insert(row.access_key_id.clone());
        Ok((self.principal_info(&row), generated.then_some(secret)))
    }

    fn principal_info(&self, row: &PrincipalRow) -> PrincipalInfo {
        PrincipalInfo {
            user_name: row.user_name.clone(),
            arn: self.config.partition.user_arn(&row.user_name),
            access_key_id: row.access_key_id.clone(),
            create_date: crate::rfc3339(row.created_at),
        }
    }

    /// Every principal.
    pub async fn list_principals(&self) -> Result<Vec<PrincipalInfo>> {
        Ok(self
            .store
            .list_principals()
            .await?
            .iter()
            .map(|r| self.principal_info(r))
            .collect())
    }

    /// Deletes a principal by name.
    pub async fn delete_principal(&self, user_name: &str) -> Result<()> {
        if !self.store.delete_principal(user_name).await? {
            return Err(KmsError::NotFound(format!(
                "No principal named {user_name}."
            )));
        }
        Ok(())
    }

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

    /// Who owns an access key id, and its secret access key, for SigV4 verification. An unknown
    /// access key is answered from the known ids (see `may_hold_access_key`); a new principal
    /// works at once on this node and within 100 ms elsewhere; a deleted one stops within the
    /// cache TTL.
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
        let Some(row) = self.store.principal_by_access_key(access_key_id).await? else {
            if let Ok(mut map) = self.cache.principals.write() {
                map.remove(access_key_id);
            }
            return Ok(None);
        };
        // The same wrapped bytes as cached: the secret is known, the root need not be asked.
        let secret = match cached.filter(|p| p.wrapped == row.wrapped_secret) {
            Some(p) => p.secret.clone(),
            None => {
                let (aad, wrapped) = (secret_aad(access_key_id), row.wrapped_secret.clone());
                off_runtime(&self.root, move |root| root.unwrap(&aad, &wrapped)).await?
            }
        };
        // Until identities are stored (issue 13), a user's unique id is derived from its access key.
        let principal = Principal::user(
            &self.config.partition.account_id,
            &row.user_name,
            &format!("AIDA{}", access_key_id.get(4..).unwrap_or(access_key_id)),
        );
        if let Ok(mut map) = self.cache.principals.write() {
            map.insert(
                access_key_id.to_string(),
                Arc::new(CachedPrincipal {
                    principal: principal.clone(),
                    secret: secret.clone(),
                    wrapped: row.wrapped_secret,
                    loaded: Instant::now(),
                }),
            );
        }
        Ok(Some((principal, secret)))
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

/// A new access key id (`AKIA` + 16 base32 characters) and a 40-character secret.
fn generate_access_key() -> Result<(String, Zeroizing<String>)> {
    const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut r = Zeroizing::new([0u8; 46]);
    material::random_bytes(&mut r[..])?;
    let id: String = std::iter::once("AKIA".to_string())
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
