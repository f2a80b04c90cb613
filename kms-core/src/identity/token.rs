//! STS session tokens, stateless: everything a session is (account, role, session name, expiry, and
//! the session's secret access key) sealed with AES-256-GCM under the store's session token key, a
//! random 256-bit key kept in the metadata table wrapped by the root of trust. Any node of the store
//! opens any node's tokens; nothing is written per session.
//!
//! Layout (version 1), then standard base64 with padding:
//!
//! ```text
//! 0x01 | nonce (12) | AES-256-GCM(key, nonce, aad = "envelope/session-token/v1", payload) | tag (16)
//! payload = expires (i64 BE, unix seconds) | issued (i64 BE, unix seconds)
//!         | access key id | secret access key | account | role id | role ARN | session name
//!   where each string is a u16 BE length and its UTF-8 bytes
//! ```
//!
//! The golden vector in the tests pins the layout.

use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{KmsError, Result};
use crate::material::{self, NONCE_LEN};

const VERSION: u8 = 1;
const AAD: &[u8] = b"envelope/session-token/v1";
const TAG_LEN: usize = 16;

/// What a session token carries.
#[derive(Clone)]
#[cfg_attr(test, derive(PartialEq, Eq))] // compared only by tests: a comparison of secrets would not be constant-time
pub struct SessionClaims {
    /// Unix seconds after which the token is refused (ExpiredToken).
    pub expires: i64,
    /// Unix seconds when it was issued.
    pub issued: i64,
    /// The session's access key id (`ASIA…`); a request must be signed with it.
    pub access_key_id: String,
    /// The session's secret access key.
    pub secret: Zeroizing<String>,
    /// The role's account.
    pub account: String,
    /// The role's unique id (`AROA…`): a role deleted and made again is another role.
    pub role_id: String,
    /// The role's ARN (with its path).
    pub role_arn: String,
    /// `RoleSessionName`.
    pub session_name: String,
}

impl std::fmt::Debug for SessionClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionClaims")
            .field("expires", &self.expires)
            .field("access_key_id", &self.access_key_id)
            .field("role_arn", &self.role_arn)
            .field("session_name", &self.session_name)
            .finish_non_exhaustive()
    }
}

fn put(out: &mut Vec<u8>, s: &str) -> Result<()> {
    let len = u16::try_from(s.len())
        .map_err(|_| KmsError::Internal("A session token field is too long.".into()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Seals `claims` under `key` with a fresh nonce.
pub fn seal(key: &[u8; 32], claims: &SessionClaims) -> Result<String> {
    let mut nonce = [0u8; NONCE_LEN];
    material::random_bytes(&mut nonce)?;
    seal_with_nonce(key, nonce, claims)
}

pub(crate) fn seal_with_nonce(
    key: &[u8; 32],
    nonce: [u8; NONCE_LEN],
    c: &SessionClaims,
) -> Result<String> {
    let mut payload = Zeroizing::new(Vec::with_capacity(256));
    payload.extend_from_slice(&c.expires.to_be_bytes());
    payload.extend_from_slice(&c.issued.to_be_bytes());
    for s in [
        c.access_key_id.as_str(),
        c.secret.as_str(),
        &c.account,
        &c.role_id,
        &c.role_arn,
        &c.session_name,
    ] {
        put(&mut payload, s)?;
    }
    let mut sealed = payload.to_vec();
    material::seal(key, nonce, AAD, &mut sealed)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(base64::engine::general_purpose::STANDARD.encode(out))
}

/// Opens a token; `None` for anything not sealed under `key` in this layout (forged, altered,
/// truncated, another store's).
pub fn open(key: &[u8; 32], token: &str) -> Option<SessionClaims> {
    if token.len() > 4096 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token.as_bytes())
        .ok()?;
    if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != VERSION {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = raw[1..1 + NONCE_LEN].try_into().ok()?;
    let payload = material::open(key, nonce, AAD, &raw[1 + NONCE_LEN..])?;
    let mut r = Reader(&payload);
    let expires = i64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let issued = i64::from_be_bytes(r.take(8)?.try_into().ok()?);
    let claims = SessionClaims {
        expires,
        issued,
        access_key_id: r.string()?,
        secret: Zeroizing::new(r.string()?),
        account: r.string()?,
        role_id: r.string()?,
        role_arn: r.string()?,
        session_name: r.string()?,
    };
    r.0.is_empty().then_some(claims)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        String::from_utf8(self.take(usize::from(len))?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn claims() -> SessionClaims {
        SessionClaims {
            expires: 1_767_326_645,
            issued: 1_767_323_045,
            access_key_id: "ASIAEXAMPLE000000001".into(),
            secret: Zeroizing::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into()),
            account: "111122223333".into(),
            role_id: "AROAEXAMPLE000000001".into(),
            role_arn: "arn:aws:iam::111122223333:role/app".into(),
            session_name: "s1".into(),
        }
    }

    /// The layout never changes by accident: this token, sealed with a fixed key and nonce, opens
    /// with every field, and its bytes are these.
    #[test]
    fn golden_vector() {
        let key = [0x42u8; 32];
        let token = seal_with_nonce(&key, [7u8; NONCE_LEN], &claims()).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap();
        assert_eq!(raw[0], 1);
        assert_eq!(&raw[1..13], &[7u8; 12]);
        // Version, nonce, 8 + 8 + six strings (2 + 20, 2 + 40, 2 + 12, 2 + 20, 2 + 34, 2 + 2), tag.
        assert_eq!(raw.len(), 1 + 12 + 16 + 140 + 16);
        assert_eq!(token, GOLDEN);
        assert_eq!(open(&key, GOLDEN).unwrap(), claims());
    }

    /// Checked independently: Python's `cryptography` AESGCM opens bytes 13.. with key 0x42 * 32,
    /// nonce 0x07 * 12 and the AAD into the payload the module comment describes.
    const GOLDEN: &str = "AQcHBwcHBwcHBwcHB3jiXazcpjFOI1TsMLQME9n1Tk5utJQNHSE5bx9fHShEH9gq4ESCdWUwvCTkqMc1\
                          Iegp+mRl9rZ2zUEQYFU3R5gYx8u3+4DLf/iYLRjfRxNMJzEBYmVJa8idRSz1o1P7Qrbj2JE0QKvDDvzS\
                          4SXCkQaJxzjWRL26FRI2EOeci8EgWsHyJ+SRx6aNxAXhRc7UhcgA+vbVtsoWQcwmYf+I23ekczvAgnjwejvtj2E=";

    #[test]
    fn forged_altered_or_foreign_tokens_do_not_open() {
        let key = [0x42u8; 32];
        let token = seal(&key, &claims()).unwrap();
        assert_eq!(open(&key, &token).unwrap(), claims());
        assert!(open(&[0x43u8; 32], &token).is_none(), "another store's key");
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap();
        for i in [0, 5, 20, raw.len() - 1] {
            raw[i] ^= 1;
            let t = base64::engine::general_purpose::STANDARD.encode(&raw);
            assert!(open(&key, &t).is_none(), "byte {i} flipped");
            raw[i] ^= 1;
        }
        let short = base64::engine::general_purpose::STANDARD.encode(&raw[..raw.len() - 1]);
        assert!(open(&key, &short).is_none());
        assert!(open(&key, "not base64!").is_none());
        assert!(open(&key, "").is_none());
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", claims());
        assert!(!text.contains("EXAMPLEKEY"), "{text}");
    }
}
