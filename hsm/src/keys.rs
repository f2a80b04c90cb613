//! KMS keys that live in the token (the custom key store case): one persistent, non-extractable
//! AES-256 key per KMS key, found by its label (the key ARN), used with AES-GCM inside the token.
//!
//! Sealed data has the same layout as the root key's (`0x02 | IV | ciphertext | tag`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::config::{Capabilities, HsmConfig};
use crate::error::{classify, HsmError, Op};
use crate::pool::Pool;
use crate::root::{
    check_sealed, find_keys, gcm_open, gcm_seal, generate_key, read_attributes, KeyAttributes,
};

/// Label → handle, valid for one initialisation of the module (setup makes a new, empty one).
type HandleCache = Arc<Mutex<HashMap<String, ObjectHandle>>>;

/// AES-256 keys held in a token, addressed by label.
pub struct TokenKeys {
    pool: Pool<HandleCache>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("config", self.pool.config())
            .finish_non_exhaustive()
    }
}

fn handle(
    session: &Session,
    cache: &HandleCache,
    caps: &Capabilities,
    label: &str,
) -> Result<ObjectHandle, HsmError> {
    if let Some(h) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(label) {
        return Ok(*h);
    }
    let h = match find_keys(session, label, caps)?.as_slice() {
        [one] => *one,
        [] => return Err(HsmError::KeyNotFound(label.into())),
        many => {
            return Err(HsmError::KeyNotFit {
                label: label.into(),
                reason: format!("{} AES keys carry this label", many.len()),
            })
        }
    };
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(label.into(), h);
    Ok(h)
}

impl TokenKeys {
    /// Loads the module and logs in to the token (`config.key_label` is not used here).
    pub fn open(config: HsmConfig) -> Result<Self, HsmError> {
        config.validate()?;
        let pin = config.pin.read()?;
        Self::open_with_pin(config, pin)
    }

    /// [`TokenKeys::open`] with a PIN the caller holds (a custom key store's password).
    pub fn open_with_pin(config: HsmConfig, pin: AuthPin) -> Result<Self, HsmError> {
        config.validate()?;
        let pool = Pool::open(config, pin, Box::new(|_| Ok(HandleCache::default())))?;
        Ok(Self { pool })
    }

    /// `n` random bytes from the token's generator.
    pub fn generate_random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        let caps = self.caps();
        self.pool.run(|session, _| {
            let mut out = Zeroizing::new(vec![0u8; n]);
            session
                .generate_random_slice(&mut out)
                .map_err(|e| classify(e, Op::Other, caps))?;
            Ok(out)
        })
    }

    /// Sessions open now, and how many times the module was re-initialised after a failure.
    pub fn session_stats(&self) -> (usize, u64) {
        self.pool.stats()
    }

    fn caps(&self) -> &Capabilities {
        &self.pool.config().capabilities
    }

    /// Creates a persistent, sensitive, non-extractable AES-256 key labelled `label`; refuses a
    /// label already in use.
    pub fn create_key(&self, label: &str) -> Result<(), HsmError> {
        let caps = self.caps();
        self.pool.run(|session, cache| {
            if !find_keys(session, label, caps)?.is_empty() {
                return Err(HsmError::KeyExists(label.into()));
            }
            let h = generate_key(session, label, caps)?;
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(label.into(), h);
            Ok(())
        })
    }

    /// Whether a key labelled `label` is in the token.
    pub fn contains(&self, label: &str) -> Result<bool, HsmError> {
        let caps = self.caps();
        self.pool
            .run(|session, _| Ok(!find_keys(session, label, caps)?.is_empty()))
    }

    /// Encrypts `plaintext` with the key `label` inside the token, binding `aad`.
    pub fn encrypt(&self, label: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, HsmError> {
        let caps = self.caps();
        self.pool.run(|session, cache| {
            let key = handle(session, cache, caps, label)?;
            gcm_seal(session, key, caps, aad, plaintext)
        })
    }

    /// Decrypts what [`TokenKeys::encrypt`] returned for the same key and `aad`.
    pub fn decrypt(
        &self,
        label: &str,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        check_sealed(sealed)?;
        let caps = self.caps();
        self.pool.run(|session, cache| {
            let key = handle(session, cache, caps, label)?;
            gcm_open(session, key, caps, aad, sealed)
        })
    }

    /// The key's security attributes as the token reports them.
    pub fn key_attributes(&self, label: &str) -> Result<KeyAttributes, HsmError> {
        let caps = self.caps();
        self.pool.run(|session, cache| {
            let key = handle(session, cache, caps, label)?;
            read_attributes(session, key, caps)
        })
    }

    /// Destroys the key labelled `label` (its data can never be decrypted again).
    pub fn destroy_key(&self, label: &str) -> Result<(), HsmError> {
        let caps = self.caps();
        self.pool.run(|session, cache| {
            let key = handle(session, cache, caps, label)?;
            session
                .destroy_object(key)
                .map_err(|e| classify(e, Op::Other, caps))?;
            cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(label);
            Ok(())
        })
    }
}
