//! Where the token is, how to log in to it, and what it can do.
//!
//! Tokens differ in ways that matter to AES-GCM (who makes the IV, which return code a bad tag gets);
//! those differences are [`Capabilities`], set per token, never `if vendor == …` in the code.

use std::path::PathBuf;
use std::time::Duration;

use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::error::HsmError;

/// Which token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSelector {
    /// The token whose label is this (trailing blanks of the 32-byte label field ignored).
    Label(String),
    /// The slot with this id.
    Slot(u64),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "token labelled '{l}'"),
            TokenSelector::Slot(s) => write!(f, "token in slot {s}"),
        }
    }
}

/// Where the user PIN comes from. Never the command line, where `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinSource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (one trailing newline ignored).
    File(PathBuf),
    /// Handed over at run time by the key service (a custom key store's password, kept wrapped by
    /// the root of trust); [`PinSource::read`] refuses it.
    KeyStorePassword,
}

impl PinSource {
    /// Reads the PIN. The result is zeroized on drop.
    pub fn read(&self) -> Result<AuthPin, HsmError> {
        let raw =
            match self {
                PinSource::Env(name) => Zeroizing::new(std::env::var(name).map_err(|_| {
                    HsmError::Pin(format!("environment variable {name} is not set"))
                })?),
                PinSource::File(path) => {
                    warn_if_shared(path);
                    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                        HsmError::Pin(format!("cannot read the PIN file {}: {e}", path.display()))
                    })?);
                    Zeroizing::new(
                        std::str::from_utf8(&bytes)
                            .map_err(|_| {
                                HsmError::Pin(format!(
                                    "the PIN file {} is not UTF-8 text",
                                    path.display()
                                ))
                            })?
                            .to_string(),
                    )
                }
                PinSource::KeyStorePassword => return Err(HsmError::Pin(
                    "the PIN is the custom key store's password; it is given at connection time"
                        .into(),
                )),
            };
        let pin = raw.strip_suffix('\n').unwrap_or(&raw);
        let pin = pin.strip_suffix('\r').unwrap_or(pin);
        if pin.is_empty() {
            return Err(HsmError::Pin(format!("the PIN from {self} is empty")));
        }
        Ok(AuthPin::from(pin))
    }
}

/// A PIN file others can read is worth a warning (not a refusal: some deployments use group access).
fn warn_if_shared(path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "the HSM PIN file is readable by other users; chmod 600 it"
                );
            }
        }
    }
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::Env(n) => write!(f, "environment variable {n}"),
            PinSource::File(p) => write!(f, "file {}", p.display()),
            PinSource::KeyStorePassword => f.write_str("the custom key store's password"),
        }
    }
}

/// Who generates the AES-GCM IV on encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IvSource {
    /// We pass a random 96-bit IV (SoftHSMv2: it uses whatever IV it is given).
    Host,
    /// The token writes the IV into the mechanism parameters and refuses one from the host
    /// (AWS CloudHSM). An IV that comes back all zero is refused: the token did not generate it.
    Token,
}

/// A PKCS#11 return code a token may use for an AES-GCM tag mismatch on decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TagMismatchCode {
    /// `CKR_ENCRYPTED_DATA_INVALID`, what the standard asks for.
    EncryptedDataInvalid,
    /// `CKR_GENERAL_ERROR` (SoftHSMv2 2.6).
    GeneralError,
    /// `CKR_FUNCTION_FAILED`.
    FunctionFailed,
    /// `CKR_DATA_INVALID`.
    DataInvalid,
}

impl TagMismatchCode {
    const ALL: [(&'static str, TagMismatchCode); 4] = [
        (
            "encrypted-data-invalid",
            TagMismatchCode::EncryptedDataInvalid,
        ),
        ("general-error", TagMismatchCode::GeneralError),
        ("function-failed", TagMismatchCode::FunctionFailed),
        ("data-invalid", TagMismatchCode::DataInvalid),
    ];

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map_or("?", |(n, _)| n)
    }
}

/// The layout of the `CK_GCM_PARAMS` structure the token's module was built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcmLayout {
    /// `pIv, ulIvLen, ulIvBits, pAAD, ulAADLen, ulTagBits`: PKCS#11 3.0 and the 2.40 errata
    /// (SoftHSMv2, AWS CloudHSM).
    Standard,
    /// `pIv, ulIvLen, pAAD, ulAADLen, ulTagBits`: the PKCS#11 2.40 header as first published, which
    /// some modules still use.
    WithoutIvBits,
}

/// What a token does differently from the next one.
///
/// As a string (`--hsm-capabilities`, the `;…` suffix of `--hsm-cluster`, and [`Display`]):
/// comma-separated items, applied in order: a preset (`softhsm2`, `cloudhsm`), `iv=host|token`,
/// `tag-mismatch=CODE+CODE…` (codes `encrypted-data-invalid`, `general-error`, `function-failed`,
/// `data-invalid`), `gcm=standard|no-iv-bits`. For example `cloudhsm,gcm=no-iv-bits`.
///
/// [`Display`]: std::fmt::Display
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Who generates the GCM IV.
    pub iv_source: IvSource,
    /// Return codes that mean "the tag did not verify" on GCM decryption (so not a device failure).
    pub tag_mismatch: Vec<TagMismatchCode>,
    /// The GCM parameter structure the module expects.
    pub gcm_layout: GcmLayout,
}

impl Capabilities {
    /// SoftHSMv2 2.6: host-generated IVs; a bad tag is `CKR_GENERAL_ERROR`.
    pub fn softhsm2() -> Self {
        Self {
            iv_source: IvSource::Host,
            tag_mismatch: vec![
                TagMismatchCode::GeneralError,
                TagMismatchCode::EncryptedDataInvalid,
            ],
            gcm_layout: GcmLayout::Standard,
        }
    }

    /// AWS CloudHSM: the token generates the IV; a bad tag is `CKR_ENCRYPTED_DATA_INVALID`.
    pub fn cloudhsm() -> Self {
        Self {
            iv_source: IvSource::Token,
            tag_mismatch: vec![TagMismatchCode::EncryptedDataInvalid],
            gcm_layout: GcmLayout::Standard,
        }
    }

    /// Sets who generates the IV.
    pub fn with_iv_source(mut self, iv_source: IvSource) -> Self {
        self.iv_source = iv_source;
        self
    }

    /// Applies a capabilities string (see the type's documentation) on top of `self`.
    pub fn apply(mut self, spec: &str) -> Result<Self, HsmError> {
        let bad = |why: String| HsmError::Config(format!("HSM capabilities '{spec}': {why}"));
        for item in spec.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                None => {
                    self = match item {
                        "softhsm2" => Self::softhsm2(),
                        "cloudhsm" => Self::cloudhsm(),
                        _ => {
                            return Err(bad(format!(
                                "unknown preset '{item}' (softhsm2, cloudhsm)"
                            )))
                        }
                    }
                }
                Some(("iv", v)) => {
                    self.iv_source = match v {
                        "host" => IvSource::Host,
                        "token" => IvSource::Token,
                        _ => return Err(bad(format!("iv={v}: expected host or token"))),
                    }
                }
                Some(("tag-mismatch", v)) => {
                    self.tag_mismatch = v
                        .split('+')
                        .map(|code| {
                            TagMismatchCode::ALL
                                .iter()
                                .find(|(n, _)| *n == code)
                                .map(|(_, c)| *c)
                                .ok_or_else(|| {
                                    bad(format!(
                                        "tag-mismatch: unknown code '{code}' (encrypted-data-invalid, \
                                         general-error, function-failed, data-invalid)"
                                    ))
                                })
                        })
                        .collect::<Result<_, _>>()?;
                }
                Some(("gcm", v)) => {
                    self.gcm_layout = match v {
                        "standard" => GcmLayout::Standard,
                        "no-iv-bits" => GcmLayout::WithoutIvBits,
                        _ => return Err(bad(format!("gcm={v}: expected standard or no-iv-bits"))),
                    }
                }
                Some((k, _)) => {
                    return Err(bad(format!(
                        "unknown setting '{k}' (iv, tag-mismatch, gcm)"
                    )))
                }
            }
        }
        Ok(self)
    }
}

impl std::str::FromStr for Capabilities {
    type Err = HsmError;

    /// A capabilities string on top of the SoftHSMv2 preset.
    fn from_str(spec: &str) -> Result<Self, HsmError> {
        Self::softhsm2().apply(spec)
    }
}

impl std::fmt::Display for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let iv = match self.iv_source {
            IvSource::Host => "host",
            IvSource::Token => "token",
        };
        let tags: Vec<&str> = self.tag_mismatch.iter().map(|c| c.name()).collect();
        let gcm = match self.gcm_layout {
            GcmLayout::Standard => "standard",
            GcmLayout::WithoutIvBits => "no-iv-bits",
        };
        write!(f, "iv={iv},tag-mismatch={},gcm={gcm}", tags.join("+"))
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::softhsm2()
    }
}

/// Everything needed to reach a token and the root key in it.
#[derive(Clone)]
#[non_exhaustive]
pub struct HsmConfig {
    /// Path of the PKCS#11 module (`libsofthsm2.so`, `libcloudhsm_pkcs11.so`).
    pub module: PathBuf,
    /// Which token.
    pub token: TokenSelector,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Label of the root key object in the token.
    pub key_label: String,
    /// Create the root key when no object has `key_label` (first start). When false, a missing key
    /// is an error.
    pub create_key: bool,
    /// The token's quirks.
    pub capabilities: Capabilities,
    /// Sessions kept open at most (a `Session` serves one thread at a time).
    pub max_sessions: usize,
    /// How long a caller waits for a free session before [`HsmError::Busy`].
    pub session_wait: Duration,
}

/// The label of the root key when none is configured.
pub const DEFAULT_ROOT_KEY_LABEL: &str = "envelope-root-key";

impl HsmConfig {
    /// A configuration with the defaults: key label [`DEFAULT_ROOT_KEY_LABEL`], created on first
    /// start, SoftHSMv2 capabilities, 4 sessions, a 30 s wait for one.
    pub fn new(module: impl Into<PathBuf>, token: TokenSelector, pin: PinSource) -> Self {
        Self {
            module: module.into(),
            token,
            pin,
            key_label: DEFAULT_ROOT_KEY_LABEL.into(),
            create_key: true,
            capabilities: Capabilities::default(),
            max_sessions: 4,
            session_wait: Duration::from_secs(30),
        }
    }

    /// Sets the root key's label.
    pub fn with_key_label(mut self, label: impl Into<String>) -> Self {
        self.key_label = label.into();
        self
    }

    /// Whether a missing root key is created.
    pub fn with_create_key(mut self, create: bool) -> Self {
        self.create_key = create;
        self
    }

    /// Sets the token's capabilities.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.capabilities = capabilities;
        self
    }

    /// Sets the session pool's bound (at least 1).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    pub(crate) fn validate(&self) -> Result<(), HsmError> {
        if self.key_label.is_empty() {
            return Err(HsmError::Config("the root key label is empty".into()));
        }
        if self.max_sessions == 0 {
            return Err(HsmError::Config("max_sessions must be at least 1".into()));
        }
        if let TokenSelector::Label(l) = &self.token {
            if l.is_empty() || l.len() > 32 {
                return Err(HsmError::Config(format!(
                    "token label '{l}' must be 1 to 32 bytes"
                )));
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for HsmConfig {
    // The PIN itself is never held here, only where it comes from; still, show nothing secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmConfig")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &format_args!("<from {}>", self.pin))
            .field("key_label", &self.key_label)
            .field("create_key", &self.create_key)
            .field("capabilities", &self.capabilities)
            .field("max_sessions", &self.max_sessions)
            .field("session_wait", &self.session_wait)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_strings_parse_apply_in_order_and_print_back() {
        let c: Capabilities = "cloudhsm,gcm=no-iv-bits".parse().unwrap();
        assert_eq!(c.iv_source, IvSource::Token);
        assert_eq!(c.tag_mismatch, vec![TagMismatchCode::EncryptedDataInvalid]);
        assert_eq!(c.gcm_layout, GcmLayout::WithoutIvBits);
        assert_eq!(
            c.to_string(),
            "iv=token,tag-mismatch=encrypted-data-invalid,gcm=no-iv-bits"
        );
        assert_eq!(c.to_string().parse::<Capabilities>().unwrap(), c);
        // A preset resets what came before it; settings after it override it.
        let c: Capabilities = "iv=token,softhsm2,tag-mismatch=function-failed+data-invalid"
            .parse()
            .unwrap();
        assert_eq!(c.iv_source, IvSource::Host);
        assert_eq!(
            c.tag_mismatch,
            vec![
                TagMismatchCode::FunctionFailed,
                TagMismatchCode::DataInvalid
            ]
        );
        assert_eq!(
            "".parse::<Capabilities>().unwrap(),
            Capabilities::softhsm2()
        );
        assert_eq!(
            Capabilities::softhsm2().to_string(),
            "iv=host,tag-mismatch=general-error+encrypted-data-invalid,gcm=standard"
        );
    }

    #[test]
    fn bad_capability_strings_say_what_is_wrong() {
        for (spec, why) in [
            ("luna", "unknown preset 'luna'"),
            ("iv=hsm", "iv=hsm: expected host or token"),
            (
                "tag-mismatch=general-error+bad-tag",
                "unknown code 'bad-tag'",
            ),
            ("gcm=v2", "gcm=v2: expected standard or no-iv-bits"),
            ("ivs=host", "unknown setting 'ivs'"),
        ] {
            let e = spec.parse::<Capabilities>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(spec), "{spec}: {e}");
        }
    }
}
