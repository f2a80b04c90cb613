//! The root of trust in a token: a non-extractable AES-256 key, used with AES-GCM inside the token.
//!
//! Wrapped format (version 2; version 1 is `kms-core`'s software root key):
//!
//! ```text
//! 0x02 | IV (12 bytes) | ciphertext (len of the secret) | GCM tag (16 bytes)
//! ```
//!
//! The caller's AAD is bound through the GCM parameters and never stored.

use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::vendor_defined::VendorDefinedMechanism;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use kms_core::material::wrapped;
use kms_core::RootOfTrust;
use zeroize::Zeroizing;

use crate::config::{Capabilities, GcmLayout, HsmConfig, IvSource};
use crate::error::{classify, HsmError, Op};
use crate::pool::Pool;

/// The version byte of an HSM-wrapped secret.
pub const WRAP_FORMAT: u8 = 2;
/// IV length: 96 bits.
pub const IV_LEN: usize = kms_core::material::NONCE_LEN;
/// GCM tag length: 128 bits.
pub const TAG_LEN: usize = kms_core::material::TAG_LEN;

/// The security attributes of the root key as the token reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyAttributes {
    /// `CKA_EXTRACTABLE`.
    pub extractable: bool,
    /// `CKA_SENSITIVE`.
    pub sensitive: bool,
    /// `CKA_NEVER_EXTRACTABLE`.
    pub never_extractable: bool,
    /// `CKA_ALWAYS_SENSITIVE`.
    pub always_sensitive: bool,
    /// `CKA_TOKEN` (persistent).
    pub token: bool,
    /// `CKA_VALUE_LEN` in bytes.
    pub value_len: u64,
    /// Whether the token handed out `CKA_VALUE` when asked (it must not).
    pub value_readable: bool,
}

/// A root of trust whose key never leaves a PKCS#11 token.
pub struct HsmRootKey {
    pool: Pool<ObjectHandle>,
    description: String,
}

impl std::fmt::Debug for HsmRootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmRootKey")
            .field("config", self.pool.config())
            .finish_non_exhaustive()
    }
}

fn label_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

/// Finds the root key by label, or creates it; refuses one that is not AES-256, non-extractable
/// and sensitive.
fn find_or_create_key(session: &Session, config: &HsmConfig) -> Result<ObjectHandle, HsmError> {
    let caps = &config.capabilities;
    let label = &config.key_label;
    let found = find_keys(session, label, caps)?;
    let key = match found.as_slice() {
        [one] => *one,
        [] if config.create_key => {
            let key = generate_key(session, label, caps)?;
            tracing::info!(label = %label, "created the root key in the token");
            key
        }
        [] => return Err(HsmError::KeyNotFound(label.clone())),
        many => {
            return Err(HsmError::KeyNotFit {
                label: label.clone(),
                reason: format!("{} AES keys carry this label", many.len()),
            })
        }
    };
    let attrs = read_attributes(session, key, caps)?;
    let unfit = if attrs.extractable {
        Some("it is extractable (CKA_EXTRACTABLE true)")
    } else if !attrs.sensitive {
        Some("it is not sensitive (CKA_SENSITIVE false)")
    } else if attrs.value_len != 32 {
        Some("it is not a 256-bit key")
    } else if attrs.value_readable {
        Some("the token hands out its value")
    } else {
        None
    };
    if let Some(reason) = unfit {
        return Err(HsmError::KeyNotFit {
            label: label.clone(),
            reason: reason.into(),
        });
    }
    Ok(key)
}

/// Generates a persistent, private, sensitive, non-extractable AES-256 key for encryption and
/// decryption only.
pub(crate) fn generate_key(
    session: &Session,
    label: &str,
    caps: &Capabilities,
) -> Result<ObjectHandle, HsmError> {
    let mut template = label_template(label);
    template.extend([
        Attribute::ValueLen(32.into()),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Sign(false),
        Attribute::Verify(false),
    ]);
    session
        .generate_key(&Mechanism::AesKeyGen, &template)
        .map_err(|e| classify(e, Op::Other, caps))
}

/// The AES keys labelled `label`.
pub(crate) fn find_keys(
    session: &Session,
    label: &str,
    caps: &Capabilities,
) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&label_template(label))
        .map_err(|e| classify(e, Op::Other, caps))
}

/// `CK_GCM_PARAMS` as the PKCS#11 2.40 header first published it, without `ulIvBits`
/// ([`GcmLayout::WithoutIvBits`]); cryptoki's `GcmParams` is the later layout.
#[repr(C)]
pub(crate) struct GcmParamsV240 {
    iv: *mut u8,
    iv_len: std::os::raw::c_ulong,
    aad: *mut u8,
    aad_len: std::os::raw::c_ulong,
    tag_bits: std::os::raw::c_ulong,
}

/// The AES-GCM mechanism in the layout the token expects. `iv` is where a token that generates
/// the IV writes it; `v240` holds the older structure while the mechanism is in use.
pub(crate) fn gcm_mechanism<'a>(
    caps: &Capabilities,
    iv: &'a mut [u8; IV_LEN],
    aad: &'a [u8],
    v240: &'a mut Option<GcmParamsV240>,
) -> Result<Mechanism<'a>, HsmError> {
    let tag_bits = (TAG_LEN * 8) as u64;
    match caps.gcm_layout {
        GcmLayout::Standard => Ok(Mechanism::AesGcm(
            GcmParams::new(iv, aad, tag_bits.into()).map_err(|e| classify(e, Op::Other, caps))?,
        )),
        GcmLayout::WithoutIvBits => {
            let too_long = || HsmError::Config("AES-GCM additional data too long".into());
            let params = v240.insert(GcmParamsV240 {
                iv: iv.as_mut_ptr(),
                iv_len: IV_LEN as std::os::raw::c_ulong,
                // The token only reads the AAD; the C type is not const.
                aad: aad.as_ptr().cast_mut(),
                aad_len: aad.len().try_into().map_err(|_| too_long())?,
                tag_bits: tag_bits as std::os::raw::c_ulong,
            });
            Ok(Mechanism::VendorDefined(VendorDefinedMechanism::new(
                MechanismType::AES_GCM,
                Some(&*params),
            )))
        }
    }
}

/// AES-GCM inside the token: `WRAP_FORMAT | IV | ciphertext | tag`.
pub(crate) fn gcm_seal(
    session: &Session,
    key: ObjectHandle,
    caps: &Capabilities,
    aad: &[u8],
    secret: &[u8],
) -> Result<Vec<u8>, HsmError> {
    let mut iv = [0u8; IV_LEN];
    if caps.iv_source == IvSource::Host {
        session
            .generate_random_slice(&mut iv)
            .map_err(|e| classify(e, Op::Other, caps))?;
    }
    let body = {
        let mut v240 = None;
        let mechanism = gcm_mechanism(caps, &mut iv, aad, &mut v240)?;
        session
            .encrypt(&mechanism, key, secret)
            .map_err(|e| classify(e, Op::Other, caps))?
    };
    if caps.iv_source == IvSource::Token && iv == [0u8; IV_LEN] {
        return Err(HsmError::Config(
            "the token did not generate a GCM IV (it returned zeros); configure this token \
             with a host-generated IV"
                .into(),
        ));
    }
    if body.len() != secret.len() + TAG_LEN {
        return Err(HsmError::Malformed(
            "the token returned a GCM ciphertext of unexpected length",
        ));
    }
    Ok(wrapped::encode(WRAP_FORMAT, &iv, &body))
}

/// Checks the layout of what [`gcm_seal`] returned, before any session is borrowed.
pub(crate) fn check_sealed(wrapped: &[u8]) -> Result<(), HsmError> {
    parse_sealed(wrapped).map(|_| ())
}

/// The IV and `ciphertext || tag` of what [`gcm_seal`] returned.
fn parse_sealed(wrapped: &[u8]) -> Result<([u8; IV_LEN], &[u8]), HsmError> {
    wrapped::decode(WRAP_FORMAT, wrapped).map_err(|e| match e {
        wrapped::LayoutError::TooShort => HsmError::Malformed("too short"),
        wrapped::LayoutError::OtherVersion => {
            HsmError::Malformed("unknown version byte (not sealed by an HSM key)")
        }
    })
}

/// Opens what [`gcm_seal`] returned (layout checked by [`check_sealed`]).
pub(crate) fn gcm_open(
    session: &Session,
    key: ObjectHandle,
    caps: &Capabilities,
    aad: &[u8],
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, HsmError> {
    let (mut iv, sealed) = parse_sealed(wrapped)?;
    let mut v240 = None;
    let mechanism = gcm_mechanism(caps, &mut iv, aad, &mut v240)?;
    session
        .decrypt(&mechanism, key, sealed)
        .map(Zeroizing::new)
        .map_err(|e| classify(e, Op::GcmDecrypt, caps))
}

pub(crate) fn read_attributes(
    session: &Session,
    key: ObjectHandle,
    caps: &Capabilities,
) -> Result<KeyAttributes, HsmError> {
    let mut out = KeyAttributes {
        extractable: true,
        sensitive: false,
        never_extractable: false,
        always_sensitive: false,
        token: false,
        value_len: 0,
        value_readable: true,
    };
    let attrs = session
        .get_attributes(
            key,
            &[
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Token,
                AttributeType::ValueLen,
            ],
        )
        .map_err(|e| classify(e, Op::Other, caps))?;
    for a in attrs {
        match a {
            Attribute::Extractable(v) => out.extractable = v,
            Attribute::Sensitive(v) => out.sensitive = v,
            Attribute::NeverExtractable(v) => out.never_extractable = v,
            Attribute::AlwaysSensitive(v) => out.always_sensitive = v,
            Attribute::Token(v) => out.token = v,
            Attribute::ValueLen(v) => out.value_len = u64::from(v),
            _ => {}
        }
    }
    // Ask for the value itself: the token must answer "sensitive", never with bytes.
    let info = session
        .get_attribute_info(key, &[AttributeType::Value])
        .map_err(|e| classify(e, Op::Other, caps))?;
    out.value_readable = matches!(info.first(), Some(AttributeInfo::Available(_)));
    Ok(out)
}

impl HsmRootKey {
    /// Loads the module, logs in to the token, and finds the root key (creating it on first start
    /// when the configuration says so). A wrong PIN, a missing token or an unfit key fails here.
    pub fn open(config: HsmConfig) -> Result<Self, HsmError> {
        config.validate()?;
        let pin = config.pin.read()?;
        let description = format!(
            "PKCS#11 key '{}' in {} ({})",
            config.key_label,
            config.token,
            config.module.display()
        );
        let setup_config = config.clone();
        let pool = Pool::open(
            config,
            pin,
            Box::new(move |session| find_or_create_key(session, &setup_config)),
        )?;
        let root = Self { pool, description };
        root.self_test()?;
        tracing::info!(root = %root.description, "HSM root of trust ready");
        Ok(root)
    }

    /// Seals and opens a probe, so that capabilities the token does not have (who makes the IV,
    /// the GCM structure) fail at start-up with a message saying so, not on the first request.
    fn self_test(&self) -> Result<(), HsmError> {
        let caps = &self.pool.config().capabilities;
        let aad = b"envelope:hsm-self-test";
        let probe = self
            .seal(aad, b"probe")
            .and_then(|sealed| self.open_sealed(aad, &sealed));
        match probe {
            Ok(p) if p.as_slice() == b"probe" => Ok(()),
            Ok(_) => Err(HsmError::Config(format!(
                "AES-GCM in the token gave back other bytes than it sealed (capabilities {caps})"
            ))),
            Err(e @ (HsmError::Unavailable { .. } | HsmError::Login(_))) => Err(e),
            Err(e) => Err(HsmError::Config(format!(
                "AES-GCM in the token failed with capabilities {caps}: {e}; check --hsm-capabilities"
            ))),
        }
    }

    /// The key's security attributes, read from the token now.
    pub fn key_attributes(&self) -> Result<KeyAttributes, HsmError> {
        let caps = self.pool.config().capabilities.clone();
        self.pool
            .run(|session, key| read_attributes(session, *key, &caps))
    }

    /// Sessions open now, and how many times the module was re-initialised after a failure.
    pub fn session_stats(&self) -> (usize, u64) {
        self.pool.stats()
    }

    /// Encrypts `secret` under the root key inside the token, binding `aad`.
    pub fn seal(&self, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, HsmError> {
        let caps = &self.pool.config().capabilities;
        self.pool
            .run(|session, key| gcm_seal(session, *key, caps, aad, secret))
    }

    /// Decrypts what [`HsmRootKey::seal`] returned, inside the token; fails when `aad` differs or
    /// anything was changed.
    pub fn open_sealed(&self, aad: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, HsmError> {
        check_sealed(wrapped)?;
        let caps = &self.pool.config().capabilities;
        self.pool
            .run(|session, key| gcm_open(session, *key, caps, aad, wrapped))
    }
}

impl RootOfTrust for HsmRootKey {
    fn wrap(&self, aad: &[u8], secret: &[u8]) -> kms_core::Result<Vec<u8>> {
        Ok(self.seal(aad, secret)?)
    }

    fn unwrap(&self, aad: &[u8], wrapped: &[u8]) -> kms_core::Result<Zeroizing<Vec<u8>>> {
        Ok(self.open_sealed(aad, wrapped)?)
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn try_unwrap(
        &self,
        aad: &[u8],
        wrapped: &[u8],
    ) -> kms_core::Result<Option<Zeroizing<Vec<u8>>>> {
        match self.open_sealed(aad, wrapped) {
            Ok(v) => Ok(Some(v)),
            Err(HsmError::TagMismatch | HsmError::Malformed(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::os::raw::c_ulong;

    #[test]
    fn the_older_gcm_structure_has_no_iv_bits_field() {
        let word = size_of::<c_ulong>();
        assert_eq!(
            size_of::<*mut u8>(),
            word,
            "pointers and CK_ULONG differ in size"
        );
        assert_eq!(offset_of!(GcmParamsV240, iv), 0);
        assert_eq!(offset_of!(GcmParamsV240, iv_len), word);
        assert_eq!(offset_of!(GcmParamsV240, aad), 2 * word);
        assert_eq!(offset_of!(GcmParamsV240, aad_len), 3 * word);
        assert_eq!(offset_of!(GcmParamsV240, tag_bits), 4 * word);
        assert_eq!(size_of::<GcmParamsV240>(), 5 * word);

        let caps = Capabilities::softhsm2().apply("gcm=no-iv-bits").unwrap();
        let (mut iv, aad, mut v240) = ([7u8; IV_LEN], *b"some aad", None);
        let iv_at = iv.as_ptr();
        let m = gcm_mechanism(&caps, &mut iv, &aad, &mut v240).unwrap();
        assert_eq!(m.mechanism_type(), MechanismType::AES_GCM);
        drop(m);
        let p = v240.unwrap();
        assert_eq!((p.iv.cast_const(), p.iv_len), (iv_at, IV_LEN as c_ulong));
        assert_eq!((p.aad.cast_const(), p.aad_len), (aad.as_ptr(), 8));
        assert_eq!(p.tag_bits, 128);
    }
}
