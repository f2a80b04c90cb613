//! KMS, for both formats: the [`KmsKeyring`] (which keys, strict or discovery, and the three calls
//! it makes: GenerateDataKey, Encrypt, Decrypt), the [`KmsArn`] and [`DiscoveryFilter`] of the
//! ESDK's specification (`aws-kms-key-arn.md`), the one place an SDK error becomes an [`Error`],
//! and [`KmsClientBuilder`], which resolves the standard AWS configuration chain for the KMS client
//! and the S3 client alike.
//!
//! What the keyring does with a data key is the format's business: the ESDK side
//! ([`Keyring`](crate::Keyring): one encrypted data key per KMS key, named by its key ARN) is in
//! `esdk/keyring/kms.rs`, the S3 Encryption Client's (`kms+context` and legacy `kms` wrapping) in
//! `s3ec/keyring.rs`.
//!
//! Calls go through the AWS SDK (`aws-sdk-kms`); the client is either handed in already configured
//! ([`KmsKeyring::new`]) or built by [`KmsClientBuilder`] from the standard AWS configuration chain.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::BehaviorVersion;
use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
use aws_sdk_kms::config::{Credentials, Region};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::data_key::{
    DataKey, DecryptionMaterials, EncryptedDataKey, EncryptionMaterials, Keyring, KeyringFuture,
    WrappedDataKey,
};
use crate::encryption_context::EncryptionContext;
use crate::error::{Error, Result};
use crate::s3ec::{ContentAlgorithm, ContentMetadata};

/// The key provider id of every encrypted data key a KMS keyring writes.
pub const KMS_PROVIDER_ID: &str = "aws-kms";

/// The longest provider info quoted in an error message (it comes from the message, so it is
/// attacker-chosen).
const MAX_QUOTED: usize = 256;

// ------------------------------------------------------------------------------------------------
// ARNs

/// A KMS ARN, `arn:<partition>:kms:<region>:<account>:<key|alias>/<id>`, parsed as the ESDK
/// specifies (`aws-kms-key-arn.md`): exactly six `:`-separated parts, service `kms`, every part
/// non-empty, resource type `key` or `alias` before the first `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsArn {
    partition: String,
    region: String,
    account: String,
    resource_type: String,
    resource_id: String,
}

impl KmsArn {
    /// Parses `s`; `None` if it is not a valid KMS ARN.
    pub fn parse(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let [arn, partition, service, region, account, resource] = parts.as_slice() else {
            return None;
        };
        if *arn != "arn"
            || partition.is_empty()
            || *service != "kms"
            || region.is_empty()
            || account.is_empty()
        {
            return None;
        }
        let (resource_type, resource_id) = resource.split_once('/')?;
        if !matches!(resource_type, "key" | "alias") || resource_id.is_empty() {
            return None;
        }
        Some(Self {
            partition: (*partition).to_owned(),
            region: (*region).to_owned(),
            account: (*account).to_owned(),
            resource_type: resource_type.to_owned(),
            resource_id: resource_id.to_owned(),
        })
    }

    /// Parses `s` and requires resource type `key` (a key ARN, not an alias ARN).
    pub fn parse_key_arn(s: &str) -> Option<Self> {
        Self::parse(s).filter(Self::is_key)
    }

    /// The partition (`aws`, `aws-cn`, …).
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// `key` or `alias`.
    pub fn resource_type(&self) -> &str {
        &self.resource_type
    }

    /// The key id or alias name (everything after the first `/`).
    pub fn resource_id(&self) -> &str {
        &self.resource_id
    }

    /// Whether this is a key ARN (resource type `key`).
    pub fn is_key(&self) -> bool {
        self.resource_type == "key"
    }
}

impl std::fmt::Display for KmsArn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "arn:{}:kms:{}:{}:{}/{}",
            self.partition, self.region, self.account, self.resource_type, self.resource_id
        )
    }
}

/// Whether `id` is a valid KMS key identifier for encryption (`aws-kms-key-arn.md`): a KMS ARN, an
/// alias name (`alias/…`), or a bare key id.
fn is_valid_identifier(id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    if id.starts_with("arn:") {
        return KmsArn::parse(id).is_some();
    }
    match id.strip_prefix("alias/") {
        Some(name) => !name.is_empty(),
        None => !id.contains(':') && !id.contains('/'),
    }
}

// ------------------------------------------------------------------------------------------------
// Discovery filter

/// Restricts a discovery keyring to key ARNs of one partition and a set of accounts (the ESDK's
/// `DiscoveryFilter`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryFilter {
    partition: String,
    accounts: BTreeSet<String>,
}

impl DiscoveryFilter {
    /// A filter accepting keys in `partition` (say `aws`) owned by one of `accounts`. Both must be
    /// non-empty.
    pub fn new(
        partition: impl Into<String>,
        accounts: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        let partition = partition.into();
        let accounts: BTreeSet<String> = accounts.into_iter().map(Into::into).collect();
        if partition.is_empty() {
            return Err(Error::InvalidConfiguration(
                "a discovery filter needs a partition".into(),
            ));
        }
        if accounts.is_empty() || accounts.iter().any(String::is_empty) {
            return Err(Error::InvalidConfiguration(
                "a discovery filter needs at least one account id, none empty".into(),
            ));
        }
        Ok(Self {
            partition,
            accounts,
        })
    }

    /// The partition.
    pub fn partition(&self) -> &str {
        &self.partition
    }

    /// The accounts.
    pub fn accounts(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(String::as_str)
    }

    /// Whether a key with this ARN passes the filter.
    pub fn allows(&self, arn: &KmsArn) -> bool {
        arn.partition == self.partition && self.accounts.contains(&arn.account)
    }
}

// ------------------------------------------------------------------------------------------------
// The keyring

#[derive(Clone, Debug)]
pub(crate) enum Mode {
    /// Encrypt with these identifiers (the first generates); decrypt only EDKs naming one of them.
    Strict(Vec<String>),
    /// Decrypt any `aws-kms` EDK (passing the filter, if any); cannot encrypt.
    Discovery(Option<DiscoveryFilter>),
}

/// A keyring backed by a KMS-compatible key service, for both formats.
///
/// On AWS Encryption SDK messages (the [`Keyring`](crate::Keyring) side):
///
/// - **Strict** ([`new`](Self::new)): one or more wrapping keys. On encrypt, the first (the
///   generator) calls `GenerateDataKey` if the materials have no data key yet, and every other key
///   calls `Encrypt` on that data key, one encrypted data key each. On decrypt, only encrypted data
///   keys whose provider info is exactly one of the configured identifiers are tried (so configure
///   key ARNs for decryption: a key id or alias never matches, as the ESDK specifies).
/// - **Discovery** ([`discovery`](Self::discovery)): decrypt only; tries every `aws-kms` encrypted data
///   key, passing the ARN it names as `KeyId`, optionally limited by a [`DiscoveryFilter`].
///
/// The message's encryption context is passed to every KMS call. On decrypt, the `KeyId` KMS returns
/// must equal the ARN the encrypted data key names and the plaintext must have the suite's data key
/// length; on encrypt, the returned `KeyId` must be a key ARN. Failures keep the KMS error name
/// (`KMS refused: InvalidCiphertextException: …`) and never include key material.
///
/// On S3 Encryption Client objects ([`s3ec`](crate::s3ec); one data key per object, wrapped with
/// `kms+context`, and no key ARN stored beside it):
///
/// - **Strict**: the key id (one: an object has one wrapped data key) generates the data key
///   (`GenerateDataKey`, key spec `AES_256`); on decrypt each configured key is tried in turn
///   (`Decrypt` with that `KeyId`; KMS refuses a blob of another key).
/// - **Discovery**: `Decrypt` without a `KeyId` (the blob names its key, as in every KMS
///   ciphertext); the key KMS answers with must be a key ARN the filter, if any, allows.
/// - The legacy `kms` wrapping is read only after
///   [`with_legacy_wrapping`](Self::with_legacy_wrapping).
///
/// The SDK runs on tokio. Inside a tokio runtime (the async API: [`Encryptor::begin`],
/// [`Decryptor::begin`]) calls run on the current runtime. Outside one (the blocking API), they are
/// spawned on the runtime that was current when the keyring was built, or the one given to
/// [`with_runtime`](Self::with_runtime); without either, the keyring fails.
///
/// [`Encryptor::begin`]: crate::Encryptor::begin
/// [`Decryptor::begin`]: crate::Decryptor::begin
#[derive(Clone)]
pub struct KmsKeyring {
    client: aws_sdk_kms::Client,
    mode: Mode,
    grant_tokens: Vec<String>,
    runtime: Option<tokio::runtime::Handle>,
    /// S3 Encryption Client objects: also decrypt the legacy `kms` wrapping.
    pub(crate) legacy_wrapping: bool,
}

impl std::fmt::Debug for KmsKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKeyring")
            .field("mode", &self.mode)
            .field("grant_tokens", &self.grant_tokens.len())
            .field("legacy_wrapping", &self.legacy_wrapping)
            .finish_non_exhaustive()
    }
}

impl KmsKeyring {
    /// A strict keyring for `key_ids` (at least one; the first is the generator). Each is a key ARN,
    /// an alias ARN, `alias/<name>` or a key id; only key ARNs can match on decrypt.
    pub fn new(
        client: aws_sdk_kms::Client,
        key_ids: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        let key_ids: Vec<String> = key_ids.into_iter().map(Into::into).collect();
        if key_ids.is_empty() {
            return Err(Error::InvalidConfiguration(
                "a KMS keyring needs at least one key id".into(),
            ));
        }
        if let Some(bad) = key_ids.iter().find(|k| !is_valid_identifier(k)) {
            return Err(Error::InvalidConfiguration(format!(
                "{} is not a KMS key id, key ARN, alias or alias ARN",
                quote(bad.as_bytes())
            )));
        }
        Ok(Self::with_mode(client, Mode::Strict(key_ids)))
    }

    /// A strict keyring on the key ARNs of `key_ids`: a key ARN as given, any other identifier
    /// (key id, `alias/<name>`, alias ARN) resolved to its key's ARN with `DescribeKey`. For
    /// decryption, where only a key ARN pins the key: an alias would otherwise match nothing in
    /// an AWS Encryption SDK message, and say nothing about which key opened an S3 Encryption
    /// Client object.
    pub async fn with_key_arns(
        client: aws_sdk_kms::Client,
        key_ids: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self> {
        // Validates the identifiers before any call.
        let given = Self::new(client.clone(), key_ids)?;
        let mut arns = Vec::with_capacity(given.key_ids().len());
        for id in given.key_ids() {
            if KmsArn::parse_key_arn(id).is_some() {
                arns.push(id.clone());
                continue;
            }
            let request = client.describe_key().key_id(id);
            let op = Op::new("DescribeKey", id);
            let out = run_on_runtime(given.runtime.as_ref(), async move {
                request.send().await.map_err(|e| op.sdk_error(e))
            })
            .await?;
            let op = Op::new("DescribeKey", id);
            let arn = out
                .key_metadata
                .and_then(|m| m.arn)
                .ok_or_else(|| op.bad_response("no key ARN"))?;
            if KmsArn::parse_key_arn(&arn).is_none() {
                return Err(op.bad_response(&format!("{} as the key ARN", quote(arn.as_bytes()))));
            }
            arns.push(arn);
        }
        Ok(Self {
            mode: Mode::Strict(arns),
            ..given
        })
    }

    /// A discovery keyring (decrypt only): tries every KMS key that the message's encrypted data keys
    /// name, limited to `filter`'s partition and accounts if given.
    pub fn discovery(client: aws_sdk_kms::Client, filter: Option<DiscoveryFilter>) -> Self {
        Self::with_mode(client, Mode::Discovery(filter))
    }

    fn with_mode(client: aws_sdk_kms::Client, mode: Mode) -> Self {
        Self {
            client,
            mode,
            grant_tokens: Vec::new(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            legacy_wrapping: false,
        }
    }

    /// Grant tokens to pass with every call.
    pub fn with_grant_tokens(
        mut self,
        tokens: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.grant_tokens = tokens.into_iter().map(Into::into).collect();
        self
    }

    /// The tokio runtime to run calls on when the keyring is used outside one (the blocking API).
    pub fn with_runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The configured key identifiers (empty for a discovery keyring).
    pub fn key_ids(&self) -> &[String] {
        match &self.mode {
            Mode::Strict(keys) => keys,
            Mode::Discovery(_) => &[],
        }
    }

    /// Whether this is a discovery keyring.
    pub fn is_discovery(&self) -> bool {
        matches!(self.mode, Mode::Discovery(_))
    }

    /// The SDK client.
    pub fn client(&self) -> &aws_sdk_kms::Client {
        &self.client
    }

    fn grant_tokens(&self) -> Option<Vec<String>> {
        (!self.grant_tokens.is_empty()).then(|| self.grant_tokens.clone())
    }

    /// Runs an SDK call on the current tokio runtime, or spawned on the configured one.
    async fn run<T, F>(&self, call: F) -> Result<T>
    where
        F: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        run_on_runtime(self.runtime.as_ref(), call).await
    }

    /// GenerateDataKey with `key_id`: a data key of `size`, its `CiphertextBlob`, and the
    /// `KeyId` KMS names (the key ARN). The one call both formats make on encrypt.
    pub(crate) async fn generate_data_key(
        &self,
        key_id: &str,
        size: DataKeySize,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Option<String>, Vec<u8>)> {
        let request = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .set_encryption_context(kms_context(context))
            .set_grant_tokens(self.grant_tokens());
        let (request, len) = match size {
            DataKeySize::Bytes(len) => {
                let number_of_bytes = i32::try_from(len).map_err(|_| {
                    Error::InvalidConfiguration("data key length out of range".into())
                })?;
                (request.number_of_bytes(number_of_bytes), len)
            }
            DataKeySize::Aes256 => (request.key_spec(DataKeySpec::Aes256), 32),
        };
        let op = Op::new("GenerateDataKey", key_id);
        let out = self
            .run(async move { request.send().await.map_err(|e| op.sdk_error(e)) })
            .await?;
        let op = Op::new("GenerateDataKey", key_id);
        let data_key = op.data_key(out.plaintext, len)?;
        let ciphertext = out
            .ciphertext_blob
            .ok_or_else(|| op.bad_response("no CiphertextBlob"))?
            .into_inner();
        Ok((data_key, out.key_id, ciphertext))
    }

    /// Encrypt of `data_key` with `key_id`: the `KeyId` KMS names and the `CiphertextBlob`.
    pub(crate) async fn encrypt(
        &self,
        key_id: &str,
        data_key: &DataKey,
        context: &EncryptionContext,
    ) -> Result<(Option<String>, Option<Blob>)> {
        let request = self
            .client
            .encrypt()
            .key_id(key_id)
            // The SDK owns this copy and the JSON body it writes from it; neither is zeroized.
            .plaintext(Blob::new(data_key.as_bytes().to_vec()))
            .set_encryption_context(kms_context(context))
            .set_grant_tokens(self.grant_tokens());
        let op = Op::new("Encrypt", key_id);
        let out = self
            .run(async move { request.send().await.map_err(|e| op.sdk_error(e)) })
            .await?;
        Ok((out.key_id, out.ciphertext_blob))
    }

    /// Decrypt of `ciphertext` (a data key of `len` bytes): with `key_id`, or, when it is `None`,
    /// with whichever key the ciphertext names (KMS reads it from the blob). Returns the data key
    /// and the `KeyId` KMS names.
    pub(crate) async fn decrypt(
        &self,
        key_id: Option<&str>,
        ciphertext: &[u8],
        len: usize,
        context: &EncryptionContext,
    ) -> Result<(DataKey, String)> {
        let request = self
            .client
            .decrypt()
            .set_key_id(key_id.map(str::to_owned))
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .set_encryption_context(kms_context(context))
            .set_grant_tokens(self.grant_tokens());
        let named = key_id.unwrap_or("the key its ciphertext names");
        let op = Op::new("Decrypt", named);
        let out = self
            .run(async move { request.send().await.map_err(|e| op.sdk_error(e)) })
            .await?;
        let op = Op::new("Decrypt", named);
        let data_key = op.data_key(out.plaintext, len)?;
        let key_id = out.key_id.ok_or_else(|| op.bad_response("no KeyId"))?;
        Ok((data_key, key_id))
    }

    /// Whether this keyring may use the key KMS named (`KeyId`) in discovery: always in strict
    /// mode (the caller chose the key), else when it is a key ARN the filter (if any) allows.
    pub(crate) fn discovery_allows(&self, key_id: &str) -> bool {
        match &self.mode {
            Mode::Strict(_) => true,
            Mode::Discovery(None) => KmsArn::parse_key_arn(key_id).is_some(),
            Mode::Discovery(Some(filter)) => {
                KmsArn::parse_key_arn(key_id).is_some_and(|arn| filter.allows(&arn))
            }
        }
    }

    /// The configuration (strict key ids, or discovery with its filter).
    pub(crate) fn mode(&self) -> &Mode {
        &self.mode
    }
}

/// Each format's half is in its folder: `esdk/keyring/kms.rs` and `s3ec/keyring.rs`.
impl Keyring for KmsKeyring {
    fn on_encrypt<'a>(
        &'a self,
        materials: EncryptionMaterials,
    ) -> KeyringFuture<'a, EncryptionMaterials> {
        Box::pin(self.wrap(materials))
    }

    fn on_decrypt<'a>(
        &'a self,
        materials: DecryptionMaterials,
        encrypted_data_keys: &'a [EncryptedDataKey],
    ) -> KeyringFuture<'a, DecryptionMaterials> {
        Box::pin(self.unwrap_key(materials, encrypted_data_keys))
    }

    fn on_encrypt_object<'a>(
        &'a self,
        algorithm: ContentAlgorithm,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, WrappedDataKey> {
        Box::pin(self.generate_object_key(algorithm, encryption_context))
    }

    fn on_decrypt_object<'a>(
        &'a self,
        metadata: &'a ContentMetadata,
        encryption_context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        Box::pin(self.decrypt_object_key(metadata, encryption_context))
    }
}

/// The size of a data key to generate: a number of bytes (as the ESDK asks), or the `AES_256` key
/// spec (as the S3 Encryption Client asks); both give 32 bytes for AES-256.
#[derive(Clone, Copy, Debug)]
pub(crate) enum DataKeySize {
    /// `NumberOfBytes`.
    Bytes(usize),
    /// `KeySpec` `AES_256`.
    Aes256,
}

/// The encryption context as KMS takes it; absent when empty.
pub(crate) fn kms_context(context: &EncryptionContext) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| {
        context
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    })
}

/// Error messages of one KMS call: the one place an SDK error becomes [`Error::Keyring`].
pub(crate) struct Op {
    name: &'static str,
    key: String,
}

impl Op {
    pub(crate) fn new(name: &'static str, key: &str) -> Self {
        Self {
            name,
            key: key.to_owned(),
        }
    }

    fn sdk_error<E, R>(&self, err: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                let code = e.code().unwrap_or("UnknownError");
                let message = e.message().unwrap_or("(no message)");
                Error::Keyring(format!(
                    "KMS refused: {code}: {message} ({} with {})",
                    self.name, self.key
                ))
            }
            _ => Error::Keyring(format!(
                "KMS {} with {} failed: {}",
                self.name,
                self.key,
                DisplayErrorContext(&err)
            )),
        }
    }

    /// The plaintext data key of a response, which must be `len` bytes. The SDK's buffer moves into
    /// the zeroizing `DataKey` (no copy); the HTTP body it was decoded from is the SDK's, freed
    /// without zeroing (SECURITY.md).
    fn data_key(&self, plaintext: Option<Blob>, len: usize) -> Result<DataKey> {
        let data_key = DataKey::new(
            plaintext
                .ok_or_else(|| self.bad_response("no Plaintext"))?
                .into_inner(),
        );
        if data_key.as_bytes().len() != len {
            return Err(self.bad_response(&format!(
                "a data key of {} bytes where the algorithm suite needs {len}",
                data_key.as_bytes().len()
            )));
        }
        Ok(data_key)
    }

    pub(crate) fn bad_response(&self, what: &str) -> Error {
        Error::Keyring(format!(
            "KMS {} with {} returned {what}",
            self.name, self.key
        ))
    }
}

/// A string from the message or a response, quoted and cut to a sane length.
pub(crate) fn quote(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED)]);
    let ellipsis = if bytes.len() > MAX_QUOTED { "…" } else { "" };
    format!("{s:?}{ellipsis}")
}

// ------------------------------------------------------------------------------------------------
// Client construction

/// Builds an `aws_sdk_kms::Client` from the standard AWS configuration chain, with the overrides a
/// command line offers (`--endpoint-url`, `--profile`, `--region`).
///
/// Resolution, highest first:
/// - **endpoint:** [`endpoint_url`](Self::endpoint_url); `AWS_ENDPOINT_URL_KMS`; `AWS_ENDPOINT_URL`;
///   the profile's `services` section or `endpoint_url`; otherwise AWS KMS for the region.
///   (`AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` turns off the environment and profile ones.)
/// - **region:** [`region`](Self::region); `AWS_REGION` / `AWS_DEFAULT_REGION`; the profile;
///   instance metadata. No region is an error.
/// - **credentials:** [`static_credentials`](Self::static_credentials); with
///   [`profile`](Self::profile), that profile of the shared files only (as the AWS CLI: an explicit
///   profile wins over environment credentials); otherwise the default chain: environment
///   (`AWS_ACCESS_KEY_ID`, …), the shared credentials and config files (`AWS_PROFILE` or
///   `default`; static keys, `role_arn`, `credential_process`), web identity, the ECS container
///   endpoint, instance metadata (IMDSv2). SSO profiles are not supported (the `sso` feature of
///   `aws-config` is left out to keep the build lean).
///
/// A request whose answer has not begun [`DEFAULT_READ_TIMEOUT`] after it was sent fails as a
/// timeout (the AWS CLI's default); [`read_timeout`](Self::read_timeout) changes that.
#[derive(Clone, Default)]
pub struct KmsClientBuilder {
    endpoint_url: Option<String>,
    profile: Option<String>,
    region: Option<String>,
    credentials: Option<(String, Zeroizing<String>, Option<Zeroizing<String>>)>,
    config_file: Option<PathBuf>,
    credentials_file: Option<PathBuf>,
    read_timeout: ReadTimeout,
}

/// How long a client waits for the first byte of an answer, by default: 60 s, as the AWS CLI.
/// (An upload waits longer, by its size: see [`crate::s3`].)
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug)]
struct ReadTimeout(Option<Duration>);

impl Default for ReadTimeout {
    fn default() -> Self {
        Self(Some(DEFAULT_READ_TIMEOUT))
    }
}

impl std::fmt::Debug for KmsClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsClientBuilder")
            .field("endpoint_url", &self.endpoint_url)
            .field("profile", &self.profile)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.credentials.as_ref().map(|(id, _, _)| id),
            )
            .field("config_file", &self.config_file)
            .field("credentials_file", &self.credentials_file)
            .field("read_timeout", &self.read_timeout.0)
            .finish_non_exhaustive()
    }
}

impl KmsClientBuilder {
    /// Everything from the environment and the shared files.
    pub fn new() -> Self {
        Self::default()
    }

    /// The KMS endpoint (`http://127.0.0.1:8443` for a local `envelope serve`); wins over every
    /// configured one.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// The profile of the shared config and credentials files to use (instead of `AWS_PROFILE` or
    /// `default`).
    pub fn profile(mut self, name: impl Into<String>) -> Self {
        self.profile = Some(name.into());
        self
    }

    /// The region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Explicit credentials (access key id, secret access key, optional session token).
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.credentials = Some((
            access_key_id.into(),
            Zeroizing::new(secret_access_key.into()),
            session_token.map(Zeroizing::new),
        ));
        self
    }

    /// How long to wait for the first byte of an answer once a request is sent (`None`: for ever).
    /// A store or key service that takes a request and never answers then fails the call as a
    /// timeout, which the callers retry as a transient failure, instead of hanging it. It is also
    /// the grace period of the SDK's stalled-stream protection: a body that stops (under 1 B/s)
    /// for that long fails; `None` turns that protection off.
    pub fn read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.read_timeout = ReadTimeout(timeout);
        self
    }

    /// The shared config file to read instead of `~/.aws/config` (`AWS_CONFIG_FILE`).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The shared credentials file to read instead of `~/.aws/credentials`
    /// (`AWS_SHARED_CREDENTIALS_FILE`).
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    fn profile_files(&self) -> Option<EnvConfigFiles> {
        if self.config_file.is_none() && self.credentials_file.is_none() {
            return None;
        }
        let mut files = EnvConfigFiles::builder();
        match &self.config_file {
            Some(p) => files = files.with_file(EnvConfigFileKind::Config, p),
            None => files = files.include_default_config_file(true),
        }
        match &self.credentials_file {
            Some(p) => files = files.with_file(EnvConfigFileKind::Credentials, p),
            None => files = files.include_default_credentials_file(true),
        }
        Some(files.build())
    }

    /// Resolves the configuration and builds the client. Reads files and may query instance
    /// metadata for the region; credentials are resolved lazily, on the first call.
    pub async fn build(self) -> Result<aws_sdk_kms::Client> {
        let sdk = self.sdk_config().await?;
        // Set here, not on the loader: the SDK lets `AWS_ENDPOINT_URL_KMS` override a loader-level
        // endpoint, and an explicit endpoint must win.
        let mut config = aws_sdk_kms::config::Builder::from(&sdk);
        if let Some(url) = self.endpoint_url {
            config = config.endpoint_url(url);
        }
        Ok(aws_sdk_kms::Client::from_conf(config.build()))
    }

    /// The shared AWS configuration (region, credentials, profile; not the endpoint), also used
    /// for the S3 client.
    pub(crate) async fn sdk_config(&self) -> Result<aws_config::SdkConfig> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        let mut timeouts = aws_config::timeout::TimeoutConfig::builder();
        timeouts.set_read_timeout(self.read_timeout.0);
        loader = loader.timeout_config(timeouts.build());
        // A body (an answer's, or an upload's) that stops for the read timeout fails too: the
        // SDK's stalled-stream protection, whose grace period is otherwise 5 s whatever was asked.
        use aws_config::stalled_stream_protection::StalledStreamProtectionConfig as Stalled;
        loader = loader.stalled_stream_protection(match self.read_timeout.0 {
            Some(timeout) => Stalled::enabled().grace_period(timeout).build(),
            None => Stalled::disabled(),
        });
        let files = self.profile_files();
        if let Some(files) = &files {
            loader = loader.profile_files(files.clone());
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        match (&self.credentials, &self.profile) {
            (Some((id, secret, token)), _) => {
                loader = loader.credentials_provider(Credentials::new(
                    id.clone(),
                    secret.as_str(),
                    token.as_ref().map(|t| t.to_string()),
                    None,
                    "envelope-static",
                ));
            }
            (None, Some(profile)) => {
                let mut provider = ProfileFileCredentialsProvider::builder().profile_name(profile);
                if let Some(files) = &files {
                    provider = provider.profile_files(files.clone());
                }
                loader = loader.credentials_provider(provider.build());
            }
            (None, None) => {}
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(Error::InvalidConfiguration(
                "no AWS region: give one (--region, AWS_REGION, or `region` in the profile)".into(),
            ));
        }
        Ok(sdk)
    }
}

/// Runs an AWS SDK call on the current tokio runtime, or spawned on `runtime` when called outside
/// one (the blocking API); fails when there is neither. Shared by the KMS keyrings.
pub(crate) async fn run_on_runtime<T, F>(
    runtime: Option<&tokio::runtime::Handle>,
    call: F,
) -> Result<T>
where
    F: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        return call.await;
    }
    match runtime {
        Some(rt) => rt
            .spawn(call)
            .await
            .map_err(|e| Error::Keyring(format!("the KMS call did not complete: {e}")))?,
        None => Err(Error::InvalidConfiguration(
            "the KMS keyring needs a tokio runtime: use the async API from one, or build the \
             keyring inside one, or give it one with `with_runtime`"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_as_the_spec_says() {
        let a = KmsArn::parse("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab").unwrap();
        assert_eq!(
            (a.partition(), a.region(), a.account(), a.resource_type()),
            ("aws", "us-east-1", "111122223333", "key")
        );
        assert_eq!(a.resource_id(), "1234abcd-12ab");
        assert_eq!(
            a.to_string(),
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab"
        );
        let alias = KmsArn::parse("arn:aws-cn:kms:cn-north-1:1:alias/a/b").unwrap();
        assert_eq!(alias.resource_id(), "a/b");
        assert!(!alias.is_key());
        assert!(KmsArn::parse_key_arn("arn:aws-cn:kms:cn-north-1:1:alias/a").is_none());
        for bad in [
            "",
            "arn:aws:kms:us-east-1:111122223333",
            "arn:aws:kms:us-east-1:111122223333:key",
            "arn:aws:kms:us-east-1:111122223333:key/",
            "arn:aws:kms:us-east-1:111122223333:grant/x",
            "arn:aws:s3:us-east-1:111122223333:key/x",
            "arn::kms:us-east-1:111122223333:key/x",
            "arn:aws:kms::111122223333:key/x",
            "arn:aws:kms:us-east-1::key/x",
            "arn:aws:kms:us-east-1:111122223333:key/x:y",
            "nra:aws:kms:us-east-1:111122223333:key/x",
        ] {
            assert!(KmsArn::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        for ok in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "mrk-4321abcd",
            "alias/test-key",
            "arn:aws:kms:us-west-2:111122223333:alias/test-key",
            "arn:aws:kms:us-east-1:2222222222222:key/1234abcd",
        ] {
            assert!(is_valid_identifier(ok), "{ok}");
        }
        for bad in ["", "alias/", "arn:aws:kms:us-west-2:1:key/", "a:b", "x/y"] {
            assert!(!is_valid_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn discovery_filter() {
        let f = DiscoveryFilter::new("aws", ["111122223333"]).unwrap();
        let mine = KmsArn::parse("arn:aws:kms:eu-west-1:111122223333:key/k").unwrap();
        let other_account = KmsArn::parse("arn:aws:kms:eu-west-1:444455556666:key/k").unwrap();
        let other_partition = KmsArn::parse("arn:aws-cn:kms:eu-west-1:111122223333:key/k").unwrap();
        assert!(f.allows(&mine));
        assert!(!f.allows(&other_account));
        assert!(!f.allows(&other_partition));
        assert!(DiscoveryFilter::new("", ["1"]).is_err());
        assert!(DiscoveryFilter::new("aws", Vec::<String>::new()).is_err());
    }

    #[test]
    fn quoting_cuts_long_input() {
        let q = quote(&[b'a'; 1000]);
        assert!(q.len() < 300 && q.ends_with('…'));
    }
}
