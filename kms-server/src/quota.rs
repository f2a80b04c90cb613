//! Request quotas as AWS KMS has them: a rate per account and per operation family, with
//! `ThrottlingException` beyond it, so that clients' retry logic can be tested against envelope.
//! Off unless configured ([`crate::App::with_request_quotas`], `envelope serve --request-quotas`).
//!
//! The families and default rates are those of AWS's "Request quotas" table (KMS Developer Guide,
//! read 2026-12): the cryptographic operations share one rate per key type (`symmetric`: Encrypt,
//! Decrypt, ReEncrypt, GenerateDataKey, GenerateDataKeyWithoutPlaintext, GenerateMac, VerifyMac,
//! GenerateRandom; `rsa`; `ecc`), GenerateDataKeyPair has one rate per key pair spec, and every
//! other listed operation has its own. An operation AWS lists no quota for is never throttled.
//!
//! Each (account, family) has a token bucket that holds one second of its rate (at least one
//! request) and refills continuously: a burst of one second's worth passes, then the rate.
//! Buckets exist only for authenticated accounts, so their number is bounded by the accounts the
//! key service knows, never by what a client sends.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use kms_core::Caller;
use serde::Deserialize;

/// AWS's message for a throttled request.
pub(crate) const THROTTLED: &str =
    "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls.";

/// The families and AWS's default rates (requests per second). The symmetric rate is AWS's base
/// default (5,500; some regions have 10,000 to 50,000).
const AWS_DEFAULTS: &[(&str, f64)] = &[
    ("symmetric", 5500.0),
    ("rsa", 500.0),
    ("ecc", 300.0),
    ("GenerateDataKeyPair:ECC_NIST_P256", 25.0),
    ("GenerateDataKeyPair:ECC_NIST_P384", 10.0),
    ("GenerateDataKeyPair:ECC_NIST_P521", 5.0),
    ("GenerateDataKeyPair:ECC_SECG_P256K1", 25.0),
    ("GenerateDataKeyPair:RSA_2048", 1.0),
    ("GenerateDataKeyPair:RSA_3072", 0.5),
    ("GenerateDataKeyPair:RSA_4096", 0.1),
    ("CancelKeyDeletion", 5.0),
    ("ConnectCustomKeyStore", 5.0),
    ("CreateAlias", 5.0),
    ("CreateCustomKeyStore", 5.0),
    ("CreateGrant", 50.0),
    ("CreateKey", 5.0),
    ("DeleteAlias", 15.0),
    ("DeleteCustomKeyStore", 5.0),
    ("DeleteImportedKeyMaterial", 5.0),
    ("DescribeCustomKeyStores", 5.0),
    ("DescribeKey", 2000.0),
    ("DisableKey", 5.0),
    ("DisableKeyRotation", 5.0),
    ("DisconnectCustomKeyStore", 5.0),
    ("EnableKey", 5.0),
    ("EnableKeyRotation", 15.0),
    ("GetKeyPolicy", 1000.0),
    ("GetKeyRotationStatus", 1000.0),
    ("GetParametersForImport", 0.25),
    ("GetPublicKey", 2000.0),
    ("ImportKeyMaterial", 5.0),
    ("ListAliases", 500.0),
    ("ListGrants", 100.0),
    ("ListKeyPolicies", 100.0),
    ("ListKeys", 500.0),
    ("ListResourceTags", 2000.0),
    ("ListRetirableGrants", 100.0),
    ("PutKeyPolicy", 15.0),
    ("ReplicateKey", 5.0),
    ("RetireGrant", 30.0),
    ("RevokeGrant", 30.0),
    ("ScheduleKeyDeletion", 15.0),
    ("TagResource", 10.0),
    ("UntagResource", 5.0),
    ("UpdateAlias", 5.0),
    ("UpdateCustomKeyStore", 5.0),
    ("UpdateKeyDescription", 5.0),
    ("UpdatePrimaryRegion", 5.0),
];

/// Which families are limited, and at what rate (requests per second).
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    /// Indexed like [`AWS_DEFAULTS`]; `None`: not limited.
    rates: Vec<Option<f64>>,
}

impl QuotaConfig {
    /// Every family at AWS's default rate.
    pub fn aws_defaults() -> Self {
        Self {
            rates: AWS_DEFAULTS.iter().map(|(_, r)| Some(*r)).collect(),
        }
    }

    /// The rate of `family` (a name from the table in the module docs), if it is limited.
    pub fn rate(&self, family: &str) -> Option<f64> {
        let i = AWS_DEFAULTS.iter().position(|(f, _)| *f == family)?;
        self.rates[i]
    }

    /// The family names, as `--request-quotas` takes them.
    pub fn families() -> impl Iterator<Item = &'static str> {
        AWS_DEFAULTS.iter().map(|(f, _)| *f)
    }
}

/// `aws` (every family at AWS's default rate) and `FAMILY=RATE` pairs, comma-separated: `aws`,
/// `aws,CreateKey=50`, or `symmetric=100,DescribeKey=10` (only those two limited).
impl FromStr for QuotaConfig {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let mut config = Self {
            rates: vec![None; AWS_DEFAULTS.len()],
        };
        for item in spec.split(',').map(str::trim) {
            if item == "aws" {
                for (slot, (_, rate)) in config.rates.iter_mut().zip(AWS_DEFAULTS) {
                    slot.get_or_insert(*rate);
                }
                continue;
            }
            let Some((family, rate)) = item.split_once('=') else {
                return Err(format!(
                    "request quota '{item}' is neither 'aws' nor FAMILY=RATE"
                ));
            };
            let Some(i) = AWS_DEFAULTS.iter().position(|(f, _)| *f == family.trim()) else {
                return Err(format!(
                    "unknown request quota family '{}'; the families are: {}",
                    family.trim(),
                    Self::families().collect::<Vec<_>>().join(", ")
                ));
            };
            let rate: f64 = rate
                .trim()
                .parse()
                .ok()
                .filter(|r: &f64| r.is_finite() && *r > 0.0)
                .ok_or_else(|| {
                    format!("request quota '{item}': the rate must be a positive number per second")
                })?;
            config.rates[i] = Some(rate);
        }
        Ok(config)
    }
}

/// The account a request counts against: the caller's own (AWS throttles the account that makes
/// a request, not the key's owner).
pub(crate) fn caller_account(caller: &Caller) -> &str {
    &caller.principal.account
}

/// The family of a request, or `None` for an operation AWS sets no quota for. Cryptographic
/// operations are told apart by the algorithm the request names: a request for an RSA or ECC key
/// must name its algorithm, and one that names none is symmetric.
fn family(operation: &str, body: &[u8]) -> Option<usize> {
    let name: Cow<'_, str> = match operation {
        "Encrypt"
        | "Decrypt"
        | "ReEncrypt"
        | "Sign"
        | "Verify"
        | "GenerateDataKeyPair"
        | "GenerateDataKeyPairWithoutPlaintext" => algorithm_family(operation, body),
        "GenerateDataKey"
        | "GenerateDataKeyWithoutPlaintext"
        | "GenerateMac"
        | "VerifyMac"
        | "GenerateRandom" => Cow::Borrowed("symmetric"),
        "DeriveSharedSecret" => Cow::Borrowed("ecc"),
        other => Cow::Borrowed(other),
    };
    AWS_DEFAULTS.iter().position(|(f, _)| *f == name)
}

/// The algorithm members of a request body that decide its family.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Algorithms<'a> {
    #[serde(borrow)]
    encryption_algorithm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    destination_encryption_algorithm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    source_encryption_algorithm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    signing_algorithm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key_pair_spec: Option<Cow<'a, str>>,
}

fn algorithm_family(operation: &str, body: &[u8]) -> Cow<'static, str> {
    let named = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    // Most requests are symmetric and name no algorithm: no parse for them. A body that does not
    // parse is refused by the operation; it counts as symmetric here.
    let a: Algorithms = if named(b"Algorithm") || named(b"KeyPairSpec") {
        serde_json::from_slice(body).unwrap_or_default()
    } else {
        Algorithms::default()
    };
    if operation.starts_with("GenerateDataKeyPair") {
        let spec = a.key_pair_spec.as_deref().unwrap_or("");
        return Cow::Owned(format!("GenerateDataKeyPair:{spec}"));
    }
    let algorithms = [
        &a.encryption_algorithm,
        &a.destination_encryption_algorithm,
        &a.source_encryption_algorithm,
        &a.signing_algorithm,
    ];
    let mut names = algorithms.iter().filter_map(|a| a.as_deref());
    if names.clone().any(|n| n.starts_with("RSA")) {
        Cow::Borrowed("rsa")
    } else if names.any(|n| n != "SYMMETRIC_DEFAULT") {
        // ECDSA_*, SM2DSA, SM2PKE and the other asymmetric algorithms.
        Cow::Borrowed("ecc")
    } else {
        Cow::Borrowed("symmetric")
    }
}

/// A token bucket: up to one second of `rate` (at least one token), refilled continuously.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, rate: f64, now: Instant) -> bool {
        let capacity = rate.max(1.0);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The buckets of every (account, family) seen, under one lock (held for a few arithmetic
/// operations per request).
#[derive(Debug)]
pub(crate) struct RequestQuotas {
    config: QuotaConfig,
    buckets: Mutex<HashMap<String, Vec<Option<Bucket>>>>,
}

impl RequestQuotas {
    pub(crate) fn new(config: QuotaConfig) -> Self {
        Self {
            config,
            buckets: Mutex::default(),
        }
    }

    /// Whether `account` may make one more `operation` request now; takes a token if so.
    pub(crate) fn admit(&self, account: &str, operation: &str, body: &[u8]) -> bool {
        self.admit_at(account, operation, body, Instant::now())
    }

    fn admit_at(&self, account: &str, operation: &str, body: &[u8], now: Instant) -> bool {
        let Some(i) = family(operation, body) else {
            return true;
        };
        let Some(rate) = self.config.rates[i] else {
            return true;
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !buckets.contains_key(account) {
            buckets.insert(account.to_string(), Vec::new());
        }
        let Some(families) = buckets.get_mut(account) else {
            return true;
        };
        if families.len() <= i {
            families.resize_with(AWS_DEFAULTS.len(), || None);
        }
        families[i]
            .get_or_insert(Bucket {
                tokens: rate.max(1.0),
                last: now,
            })
            .take(rate, now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    fn family_name(op: &str, body: &str) -> Option<&'static str> {
        family(op, body.as_bytes()).map(|i| AWS_DEFAULTS[i].0)
    }

    #[test]
    fn operations_fall_into_aws_families() {
        assert_eq!(family_name("GenerateDataKey", "{}"), Some("symmetric"));
        assert_eq!(family_name("GenerateRandom", "{}"), Some("symmetric"));
        assert_eq!(
            family_name("Decrypt", r#"{"CiphertextBlob":"AA=="}"#),
            Some("symmetric")
        );
        let rsa = r#"{"KeyId":"k","EncryptionAlgorithm":"RSAES_OAEP_SHA_256"}"#;
        assert_eq!(family_name("Decrypt", rsa), Some("rsa"));
        let ecc = r#"{"KeyId":"k","SigningAlgorithm":"ECDSA_SHA_256"}"#;
        assert_eq!(family_name("Sign", ecc), Some("ecc"));
        let sym = r#"{"KeyId":"k","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#;
        assert_eq!(family_name("Encrypt", sym), Some("symmetric"));
        let pair = r#"{"KeyId":"k","KeyPairSpec":"RSA_2048"}"#;
        assert_eq!(
            family_name("GenerateDataKeyPair", pair),
            Some("GenerateDataKeyPair:RSA_2048")
        );
        assert_eq!(family_name("CreateKey", "{}"), Some("CreateKey"));
        assert_eq!(family_name("ListKeyRotations", "{}"), None);
        assert_eq!(family_name("NoSuchOperation", "{}"), None);
    }

    #[test]
    fn specs_parse_and_bad_ones_are_refused() {
        let c: QuotaConfig = "aws,CreateKey=2".parse().unwrap();
        assert_eq!(c.rate("CreateKey"), Some(2.0));
        assert_eq!(c.rate("symmetric"), Some(5500.0));
        let c: QuotaConfig = "DescribeKey=0.5".parse().unwrap();
        assert_eq!(c.rate("DescribeKey"), Some(0.5));
        assert_eq!(c.rate("symmetric"), None);
        assert_eq!(QuotaConfig::aws_defaults(), "aws".parse().unwrap());
        for bad in [
            "",
            "nope=1",
            "CreateKey=0",
            "CreateKey=-1",
            "CreateKey=x",
            "CreateKey",
        ] {
            assert!(bad.parse::<QuotaConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bucket_passes_a_second_of_burst_then_the_rate_per_account_and_family() {
        let q = RequestQuotas::new("CreateKey=5,DescribeKey=0.5".parse().unwrap());
        let t0 = Instant::now();
        let admitted = (0..10)
            .filter(|_| q.admit_at("111122223333", "CreateKey", b"{}", t0))
            .count();
        assert_eq!(admitted, 5);
        // Another account and another family have their own buckets; unlimited ones pass.
        assert!(q.admit_at("444455556666", "CreateKey", b"{}", t0));
        assert!(q.admit_at("111122223333", "DescribeKey", b"{}", t0));
        assert!(q.admit_at("111122223333", "GenerateDataKey", b"{}", t0));
        // 200 ms later one token (5/s) has come back, and only one.
        let t1 = t0 + Duration::from_millis(200);
        assert!(q.admit_at("111122223333", "CreateKey", b"{}", t1));
        assert!(!q.admit_at("111122223333", "CreateKey", b"{}", t1));
        // A rate below one per second: one request, then one per 1/rate seconds.
        assert!(!q.admit_at(
            "111122223333",
            "DescribeKey",
            b"{}",
            t0 + Duration::from_secs(1)
        ));
        assert!(q.admit_at(
            "111122223333",
            "DescribeKey",
            b"{}",
            t0 + Duration::from_secs(2)
        ));
    }

    #[test]
    fn the_account_is_the_callers() {
        let caller = |p| Caller {
            principal: p,
            ..Caller::default()
        };
        let user = kms_core::policy::Principal::user("111122223333", "alice", "AIDA1");
        assert_eq!(caller_account(&caller(user)), "111122223333");
        let session = kms_core::policy::Principal::assumed_role("444455556666", "r", "s", "AROA1");
        assert_eq!(caller_account(&caller(session)), "444455556666");
    }
}
