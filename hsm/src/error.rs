//! The error type of the HSM backend, and the one place where PKCS#11 return codes become it.

use cryptoki::error::{Error as Pkcs11Error, RvError};

use crate::config::{Capabilities, TagMismatchCode};

/// An error from the HSM backend. Messages never contain the PIN or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The configuration is not usable.
    #[error("HSM configuration: {0}")]
    Config(String),
    /// The PIN could not be read from its source.
    #[error("HSM PIN: {0}")]
    Pin(String),
    /// The PKCS#11 module could not be loaded or initialised.
    #[error("cannot load the PKCS#11 module {module}: {reason}")]
    Module {
        /// The module path.
        module: String,
        /// Why.
        reason: String,
    },
    /// No token matches the selector.
    #[error("no {0} is present")]
    TokenNotFound(String),
    /// The token refused the user PIN.
    #[error("the token refused the user PIN ({0}); check the PIN, nothing was changed")]
    Login(&'static str),
    /// The root key is not in the token and creating it was not asked for.
    #[error("no AES key labelled '{0}' in the token")]
    KeyNotFound(String),
    /// A key with this label is already in the token.
    #[error("an AES key labelled '{0}' is already in the token")]
    KeyExists(String),
    /// The key in the token is not fit to be a root key (extractable, not sensitive, not AES-256,
    /// or more than one object with its label).
    #[error("the key labelled '{label}' is not usable as a root key: {reason}")]
    KeyNotFit {
        /// The key's label.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A wrapped secret is not in the format this crate writes.
    #[error("the wrapped secret is malformed: {0}")]
    Malformed(&'static str),
    /// The GCM tag did not verify: the wrapped secret, its AAD or the key differs.
    #[error("the wrapped secret does not open under the HSM root key (tag mismatch)")]
    TagMismatch,
    /// The token or module failed in a way that needs the module re-initialised (device error,
    /// token removed, session lost). The operation may succeed once the token is back.
    #[error("the HSM is unavailable ({function}: {code}); the module will be re-initialised")]
    Unavailable {
        /// The PKCS#11 function that failed.
        function: String,
        /// The return code, e.g. `CKR_DEVICE_ERROR`.
        code: String,
    },
    /// Every session was in use for longer than the configured wait.
    #[error("all HSM sessions are busy")]
    Busy,
    /// Any other PKCS#11 failure.
    #[error("PKCS#11 {function} failed: {code}")]
    Pkcs11 {
        /// The PKCS#11 function that failed.
        function: String,
        /// The return code or library error.
        code: String,
    },
}

impl HsmError {
    /// True when the module should be finalized and initialised again before the next call.
    pub fn needs_reinit(&self) -> bool {
        matches!(self, HsmError::Unavailable { .. })
    }
}

/// What the failing call was doing: the same return code means different things in different calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// `C_Login`.
    Login,
    /// `C_Decrypt` with AES-GCM: some codes mean a tag mismatch.
    GcmDecrypt,
    /// Anything else.
    Other,
}

fn tag_code(code: TagMismatchCode) -> RvError {
    match code {
        TagMismatchCode::EncryptedDataInvalid => RvError::EncryptedDataInvalid,
        TagMismatchCode::GeneralError => RvError::GeneralError,
        TagMismatchCode::FunctionFailed => RvError::FunctionFailed,
        TagMismatchCode::DataInvalid => RvError::DataInvalid,
    }
}

/// `CKR_DEVICE_ERROR` → `"CKR_DEVICE_ERROR"`.
fn code_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// A short description of a PKCS#11 failure: `C_Initialize: CKR_GENERAL_ERROR`.
pub(crate) fn describe(err: &Pkcs11Error) -> String {
    match err {
        Pkcs11Error::Pkcs11(rv, function) => format!("C_{function:?}: {}", code_name(*rv)),
        other => other.to_string(),
    }
}

/// The one mapping from a PKCS#11 failure to [`HsmError`].
pub(crate) fn classify(err: Pkcs11Error, op: Op, caps: &Capabilities) -> HsmError {
    let (rv, function) = match err {
        Pkcs11Error::Pkcs11(rv, function) => (rv, format!("C_{function:?}")),
        other => {
            return HsmError::Pkcs11 {
                function: "cryptoki".into(),
                code: other.to_string(),
            }
        }
    };
    if op == Op::GcmDecrypt && caps.tag_mismatch.iter().any(|c| tag_code(*c) == rv) {
        return HsmError::TagMismatch;
    }
    let code = code_name(rv);
    match rv {
        RvError::PinIncorrect => HsmError::Login("CKR_PIN_INCORRECT"),
        RvError::PinLocked => HsmError::Login("CKR_PIN_LOCKED"),
        RvError::PinExpired => HsmError::Login("CKR_PIN_EXPIRED"),
        RvError::PinInvalid | RvError::PinLenRange if op == Op::Login => {
            HsmError::Login("CKR_PIN_INVALID")
        }
        RvError::UserPinNotInitialized => HsmError::Login("CKR_USER_PIN_NOT_INITIALIZED"),
        RvError::DeviceError
        | RvError::DeviceRemoved
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::SessionCount
        | RvError::SlotIdInvalid
        | RvError::CryptokiNotInitialized
        | RvError::UserNotLoggedIn
        | RvError::KeyHandleInvalid
        | RvError::ObjectHandleInvalid => HsmError::Unavailable { function, code },
        _ => HsmError::Pkcs11 { function, code },
    }
}

impl From<HsmError> for kms_core::KmsError {
    /// The root of trust fails inside the service, never because of the request:
    /// `KMSInternalException`. The details (module path, return codes) go to the log, not the wire.
    fn from(e: HsmError) -> Self {
        tracing::error!(error = %e, "HSM root of trust failed");
        let message = match e {
            HsmError::TagMismatch | HsmError::Malformed(_) => {
                "A wrapped secret does not open under the HSM root key."
            }
            HsmError::Busy => "Every HSM session is busy; try again.",
            _ => "The HSM holding the root key is unavailable; the request was not carried out.",
        };
        kms_core::KmsError::Internal(message.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn rv(r: RvError, f: Function) -> Pkcs11Error {
        Pkcs11Error::Pkcs11(r, f)
    }

    #[test]
    fn tag_mismatch_code_is_per_token() {
        let soft = Capabilities::softhsm2();
        let cloud = Capabilities::cloudhsm();
        let general = || rv(RvError::GeneralError, Function::Decrypt);
        assert_eq!(
            classify(general(), Op::GcmDecrypt, &soft),
            HsmError::TagMismatch
        );
        // The same code from a token that does not use it for tags is not a tag mismatch.
        assert!(matches!(
            classify(general(), Op::GcmDecrypt, &cloud),
            HsmError::Pkcs11 { .. }
        ));
        // Nor outside a GCM decryption.
        assert!(matches!(
            classify(general(), Op::Other, &soft),
            HsmError::Pkcs11 { .. }
        ));
        assert_eq!(
            classify(
                rv(RvError::EncryptedDataInvalid, Function::Decrypt),
                Op::GcmDecrypt,
                &cloud
            ),
            HsmError::TagMismatch
        );
    }

    #[test]
    fn device_failures_need_reinit() {
        let caps = Capabilities::softhsm2();
        for r in [
            RvError::DeviceError,
            RvError::DeviceRemoved,
            RvError::TokenNotPresent,
            RvError::SessionHandleInvalid,
            RvError::CryptokiNotInitialized,
        ] {
            let e = classify(rv(r, Function::Encrypt), Op::Other, &caps);
            assert!(e.needs_reinit(), "{r:?} → {e:?}");
        }
        let e = classify(
            rv(RvError::DeviceError, Function::Encrypt),
            Op::Other,
            &caps,
        );
        assert_eq!(
            e.to_string(),
            "the HSM is unavailable (C_Encrypt: CKR_DEVICE_ERROR); the module will be re-initialised"
        );
        assert!(!classify(
            rv(RvError::ArgumentsBad, Function::Encrypt),
            Op::Other,
            &caps
        )
        .needs_reinit());
    }

    #[test]
    fn wrong_pin_is_a_login_error() {
        let caps = Capabilities::softhsm2();
        let e = classify(rv(RvError::PinIncorrect, Function::Login), Op::Login, &caps);
        assert_eq!(e, HsmError::Login("CKR_PIN_INCORRECT"));
        assert!(!e.needs_reinit());
        assert!(e.to_string().contains("refused the user PIN"));
    }
}
