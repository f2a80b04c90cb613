//! Principals: the identities SigV4 knows (a user name, an access key id, a secret access key kept
//! wrapped by the root of trust), and the secret lookup the server's authentication asks for.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use zeroize::Zeroizing;

use super::cache::CachedPrincipal;
use super::root::{off_runtime, secret_aad};
use super::Kms;
use crate::error::{KmsError, Result};
use crate::material;
use crate::now_millis;
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
                if secret.is_empty()
                    || secret.len() > 512
                    || secret.chars().any(char::is_whitespace)
                {
                    return Err(KmsError::Validation(
                        "The secret access key must be 1 to 512 characters without whitespace."
                            .into(),
                    ));
                }
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

    /// The ARN and secret access key of an access key id, for SigV4 verification. Misses are not
    /// cached, so a new principal works at once; a deleted one stops within the cache TTL.
    pub async fn principal_secret(
        &self,
        access_key_id: &str,
    ) -> Result<Option<(String, Zeroizing<Vec<u8>>)>> {
        let cached = self
            .cache
            .principals
            .read()
            .ok()
            .and_then(|map| map.get(access_key_id).cloned());
        if let Some(p) = &cached {
            if p.loaded.elapsed() < self.config.cache_ttl {
                return Ok(Some((p.arn.clone(), p.secret.clone())));
            }
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
        let arn = self.config.partition.user_arn(&row.user_name);
        if let Ok(mut map) = self.cache.principals.write() {
            map.insert(
                access_key_id.to_string(),
                Arc::new(CachedPrincipal {
                    arn: arn.clone(),
                    secret: secret.clone(),
                    wrapped: row.wrapped_secret,
                    loaded: Instant::now(),
                }),
            );
        }
        Ok(Some((arn, secret)))
    }
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
