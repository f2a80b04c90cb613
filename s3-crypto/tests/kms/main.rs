//! The KMS keyring against envelope's own KMS endpoint, started in-process on loopback.
//!
//! Most tests hand the keyring an SDK client configured with explicit credentials. The credential
//! chain tests (environment, shared files with a profile) run in a child process of this test
//! binary with a cleared environment, so nothing here mutates the process environment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use s3_crypto::{
    Decryptor, DiscoveryFilter, EncryptedDataKey, EncryptionContext, Encryptor, Error, Header,
    Keyring, KmsClientBuilder, KmsKeyring, MultiKeyring, RawAesKeyring, KMS_PROVIDER_ID,
};

const ACCOUNT: &str = "111122223333";

struct Server {
    endpoint: String,
    akid: String,
    secret: String,
    _local: kms_server::LocalEndpoint,
}

/// envelope's endpoint, in this process.
async fn start() -> Server {
    let local = kms_server::LocalEndpoint::start().await.unwrap();
    Server {
        endpoint: local.url(),
        akid: local.access_key_id().to_string(),
        secret: local.secret_access_key().to_string(),
        _local: local,
    }
}

impl Server {
    /// What a library user hands in: a client configured in code, with explicit credentials.
    fn client(&self) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new(
                &self.akid,
                &self.secret,
                None,
                None,
                "test",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    async fn create_key(&self) -> String {
        let out = self.client().create_key().send().await.unwrap();
        out.key_metadata().unwrap().arn().unwrap().to_owned()
    }
}

fn context() -> EncryptionContext {
    [("purpose", "kms-keyring-test"), ("tenant", "alpha")]
        .into_iter()
        .collect()
}

async fn encrypt(keyring: &dyn Keyring, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let encryptor = Encryptor::new(keyring)
        .frame_length(1024)
        .encryption_context(context())
        .begin()
        .await?;
    let mut out = Vec::new();
    encryptor.encrypt_stream(plaintext, &mut out)?;
    Ok(out)
}

async fn decrypt(keyring: &dyn Keyring, message: &[u8]) -> Result<(Vec<u8>, Header), Error> {
    let decryptor = Decryptor::new(keyring)
        .required_context(context())
        .begin(message)
        .await?;
    let mut out = Vec::new();
    let header = decryptor.decrypt_to(&mut out)?;
    Ok((out, header))
}

fn plaintext() -> Vec<u8> {
    (0..5000u32).map(|i| (i % 251) as u8).collect()
}

fn kms_edk_arns(header: &Header) -> Vec<String> {
    header
        .encrypted_data_keys()
        .iter()
        .map(|e| {
            assert_eq!(e.provider_id, KMS_PROVIDER_ID);
            String::from_utf8(e.provider_info.clone()).unwrap()
        })
        .collect()
}

fn assert_keyring_error(result: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match result {
        Err(Error::Keyring(m)) if m.contains(needle) => {}
        other => panic!("expected a keyring error naming {needle}, got {other:?}"),
    }
}

fn assert_no_data_key(result: Result<impl std::fmt::Debug, Error>) {
    match result {
        Err(Error::NoDataKeyDecrypted { .. }) => {}
        other => panic!("expected NoDataKeyDecrypted, got {other:?}"),
    }
}

#[tokio::test]
async fn one_key_round_trip_writes_the_esdk_layout() {
    let s = start().await;
    let arn = s.create_key().await;
    let keyring = KmsKeyring::new(s.client(), [arn.clone()]).unwrap();
    let message = encrypt(&keyring, &plaintext()).await.unwrap();
    let (out, header) = decrypt(&keyring, &message).await.unwrap();
    assert_eq!(out, plaintext());
    assert_eq!(kms_edk_arns(&header), vec![arn.clone()]);
    // The EDK ciphertext is the KMS ciphertext blob: KMS decrypts it directly, under the context.
    let edk = &header.encrypted_data_keys()[0];
    let kms_context = header
        .encryption_context()
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let direct = s
        .client()
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(edk.ciphertext.clone()))
        .set_encryption_context(Some(kms_context))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.key_id(), Some(arn.as_str()));
    assert_eq!(direct.plaintext().unwrap().as_ref().len(), 32);

    // A key given by id (not ARN) encrypts, and the EDK still names the key ARN KMS returned.
    let key_id = arn.rsplit_once('/').unwrap().1.to_owned();
    let by_id = KmsKeyring::new(s.client(), [key_id]).unwrap();
    let message = encrypt(&by_id, b"by id").await.unwrap();
    let (out, header) = decrypt(&keyring, &message).await.unwrap();
    assert_eq!(out, b"by id");
    assert_eq!(kms_edk_arns(&header), vec![arn]);
    // … but strict decrypt matches configured ARNs only (as the ESDK specifies).
    assert_no_data_key(decrypt(&by_id, &message).await);
}

#[tokio::test]
async fn signed_suite_passes_the_public_key_context_to_kms() {
    let s = start().await;
    let arn = s.create_key().await;
    let keyring = KmsKeyring::new(s.client(), [arn]).unwrap();
    let encryptor = Encryptor::new(&keyring)
        .suite(s3_crypto::AlgorithmSuite::Aes256GcmHkdfSha512CommitKeyEcdsaP384)
        .encryption_context(context())
        .begin()
        .await
        .unwrap();
    let mut message = Vec::new();
    encryptor
        .encrypt_stream(&b"signed"[..], &mut message)
        .unwrap();
    let (out, header) = decrypt(&keyring, &message).await.unwrap();
    assert_eq!(out, b"signed");
    assert!(header
        .encryption_context()
        .get(s3_crypto::PUBLIC_KEY_CONTEXT_KEY)
        .is_some());
}

#[tokio::test]
async fn two_keys_give_two_edks_and_either_key_decrypts() {
    let s = start().await;
    let (k1, k2) = (s.create_key().await, s.create_key().await);
    let keyring = KmsKeyring::new(s.client(), [k1.clone(), k2.clone()]).unwrap();
    let message = encrypt(&keyring, &plaintext()).await.unwrap();
    let (_, header) = decrypt(&keyring, &message).await.unwrap();
    assert_eq!(kms_edk_arns(&header), vec![k1.clone(), k2.clone()]);
    for only in [k2, k1] {
        let single = KmsKeyring::new(s.client(), [only]).unwrap();
        let (out, _) = decrypt(&single, &message).await.unwrap();
        assert_eq!(out, plaintext());
    }
}

#[tokio::test]
async fn discovery_decrypts_any_named_key_within_its_filter() {
    let s = start().await;
    let (k1, k2) = (s.create_key().await, s.create_key().await);
    let message = encrypt(
        &KmsKeyring::new(s.client(), [k1, k2]).unwrap(),
        &plaintext(),
    )
    .await
    .unwrap();

    let open = KmsKeyring::discovery(s.client(), None);
    assert_eq!(decrypt(&open, &message).await.unwrap().0, plaintext());
    let mine = DiscoveryFilter::new("aws", ["444455556666", ACCOUNT]).unwrap();
    let filtered = KmsKeyring::discovery(s.client(), Some(mine));
    assert_eq!(decrypt(&filtered, &message).await.unwrap().0, plaintext());

    let foreign = DiscoveryFilter::new("aws", ["444455556666"]).unwrap();
    assert_no_data_key(decrypt(&KmsKeyring::discovery(s.client(), Some(foreign)), &message).await);
    let other_partition = DiscoveryFilter::new("aws-cn", [ACCOUNT]).unwrap();
    assert_no_data_key(
        decrypt(
            &KmsKeyring::discovery(s.client(), Some(other_partition)),
            &message,
        )
        .await,
    );

    // Discovery keyrings cannot encrypt.
    assert!(matches!(
        encrypt(&open, b"x").await,
        Err(Error::InvalidConfiguration(_))
    ));
}

#[tokio::test]
async fn strict_keyring_ignores_edks_of_other_keys() {
    let s = start().await;
    let (k1, k2) = (s.create_key().await, s.create_key().await);
    let message = encrypt(&KmsKeyring::new(s.client(), [k1]).unwrap(), &plaintext())
        .await
        .unwrap();
    assert_no_data_key(decrypt(&KmsKeyring::new(s.client(), [k2]).unwrap(), &message).await);
}

#[tokio::test]
async fn malformed_provider_info_fails_the_keyring() {
    let s = start().await;
    let keyring = KmsKeyring::discovery(s.client(), None);
    let bad = EncryptedDataKey {
        provider_id: KMS_PROVIDER_ID.into(),
        provider_info: b"arn:aws:kms:us-east-1:111122223333:alias/not-a-key".to_vec(),
        ciphertext: vec![1, 2, 3],
    };
    let materials = s3_crypto::DecryptionMaterials::new(
        s3_crypto::AlgorithmSuite::Aes256GcmHkdfSha512CommitKey,
        EncryptionContext::new(),
    );
    assert_keyring_error(
        keyring.on_decrypt(materials, &[bad]).await,
        "not a KMS key ARN",
    );
}

#[tokio::test]
async fn wrong_encryption_context_is_refused_by_kms() {
    let s = start().await;
    let arn = s.create_key().await;
    let keyring = KmsKeyring::new(s.client(), [arn]).unwrap();
    let mut message = encrypt(&keyring, &plaintext()).await.unwrap();
    // Change a context value in the header (same length): KMS refuses before the header check runs.
    let at = message
        .windows(5)
        .position(|w| w == b"alpha")
        .expect("context value in header");
    message[at..at + 5].copy_from_slice(b"bravo");
    let err = Decryptor::new(&keyring).begin(&message[..]).await;
    assert_keyring_error(err, "InvalidCiphertextException");
}

#[tokio::test]
async fn disabled_key_is_refused_by_kms() {
    let s = start().await;
    let arn = s.create_key().await;
    let keyring = KmsKeyring::new(s.client(), [arn.clone()]).unwrap();
    let message = encrypt(&keyring, &plaintext()).await.unwrap();
    s.client().disable_key().key_id(&arn).send().await.unwrap();
    let err = decrypt(&keyring, &message).await;
    assert_keyring_error(err, "KMS refused: DisabledException");
    assert_keyring_error(encrypt(&keyring, b"x").await, "DisabledException");
}

#[tokio::test]
async fn multi_keyring_of_kms_and_raw_aes() {
    let s = start().await;
    let arn = s.create_key().await;
    let kms = KmsKeyring::new(s.client(), [arn.clone()]).unwrap();
    let raw = || RawAesKeyring::new("envelope-test", "raw-1", &[9u8; 32]).unwrap();
    let multi = MultiKeyring::new(Some(Box::new(kms.clone())), vec![Box::new(raw())]).unwrap();
    let message = encrypt(&multi, &plaintext()).await.unwrap();
    let (_, header) = decrypt(&multi, &message).await.unwrap();
    let ids: Vec<_> = header
        .encrypted_data_keys()
        .iter()
        .map(|e| e.provider_id.as_str())
        .collect();
    assert_eq!(ids, ["aws-kms", "envelope-test"]);
    assert_eq!(decrypt(&raw(), &message).await.unwrap().0, plaintext());
    assert_eq!(decrypt(&kms, &message).await.unwrap().0, plaintext());

    // Raw AES generates, KMS wraps the same data key with Encrypt.
    let multi = MultiKeyring::new(Some(Box::new(raw())), vec![Box::new(kms.clone())]).unwrap();
    let message = encrypt(&multi, &plaintext()).await.unwrap();
    assert_eq!(decrypt(&kms, &message).await.unwrap().0, plaintext());
    assert_eq!(decrypt(&raw(), &message).await.unwrap().0, plaintext());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_api_runs_calls_on_the_keyrings_runtime() {
    let s = start().await;
    let arn = s.create_key().await;
    // Built inside the runtime: remembers it.
    let keyring = KmsKeyring::new(s.client(), [arn]).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let message = Encryptor::new(&keyring)
            .encryption_context(context())
            .encrypt_to_vec(b"blocking")?;
        Decryptor::new(&keyring).decrypt_to_vec(&message)
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(out.0, b"blocking");

    // Built outside any runtime and used outside one: a clear error, no panic.
    let client = s.client();
    let result = std::thread::spawn(move || {
        let keyring = KmsKeyring::new(client, ["alias/x"]).unwrap();
        Encryptor::new(&keyring).encrypt_to_vec(b"x")
    })
    .join()
    .unwrap();
    assert!(
        matches!(&result, Err(Error::InvalidConfiguration(m)) if m.contains("tokio runtime")),
        "{result:?}"
    );
}

#[tokio::test]
async fn configuration_errors() {
    let s = start().await;
    assert!(KmsKeyring::new(s.client(), Vec::<String>::new()).is_err());
    for bad in ["", "arn:aws:kms:us-east-1:1:key/", "arn:aws:s3:::bucket/x"] {
        assert!(KmsKeyring::new(s.client(), [bad]).is_err(), "{bad:?}");
    }
    // An unreachable endpoint: the error says which call failed, not a panic.
    let client = KmsClientBuilder::new()
        .endpoint_url("http://127.0.0.1:9")
        .region("us-east-1")
        .static_credentials("AKIDEXAMPLE", "secret", None)
        .build()
        .await
        .unwrap();
    let keyring = KmsKeyring::new(client, ["alias/x"]).unwrap();
    assert_keyring_error(encrypt(&keyring, b"x").await, "GenerateDataKey");
}

// ------------------------------------------------------------------------------------------------
// Credential chain: a child process with a cleared environment runs `chain_child` below.

const CHILD_MARKER: &str = "S3_CRYPTO_KMS_CHAIN_CHILD";

/// Runs one ignored test of this binary in a child process with only `env` (and `HOME`) set. The
/// server keeps running on this test's runtime meanwhile (hence multi-threaded test runtimes and a
/// blocking wait off the runtime); a child that hangs is killed after two minutes.
async fn run_child(test: &str, env: &[(&str, &str)], home: &std::path::Path) {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--include-ignored", "--nocapture"])
        .env_clear()
        .env("HOME", home)
        // No instance metadata lookups from a test machine.
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(CHILD_MARKER, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let test = test.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child {test} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .unwrap();
}

/// The client every chain child builds from its environment, then a round trip with a new key.
async fn child_round_trip(builder: KmsClientBuilder) {
    let client = builder.build().await.unwrap();
    let arn = client
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let keyring = KmsKeyring::new(client, [arn]).unwrap();
    let message = encrypt(&keyring, &plaintext()).await.unwrap();
    assert_eq!(decrypt(&keyring, &message).await.unwrap().0, plaintext());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_credentials_and_endpoint() {
    let s = start().await;
    let home = tempfile::tempdir().unwrap();
    run_child(
        "environment_child",
        &[
            ("AWS_ACCESS_KEY_ID", &s.akid),
            ("AWS_SECRET_ACCESS_KEY", &s.secret),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL_KMS", &s.endpoint),
            // The service-specific variable wins over the general one.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("TEST_ENDPOINT", &s.endpoint),
        ],
        home.path(),
    )
    .await;
}

#[tokio::test]
#[ignore = "run by environment_credentials_and_endpoint in a child process"]
async fn environment_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    child_round_trip(KmsClientBuilder::new()).await;
    // An explicit endpoint wins over AWS_ENDPOINT_URL_KMS.
    let endpoint = std::env::var("TEST_ENDPOINT").unwrap();
    let client = KmsClientBuilder::new()
        .endpoint_url("http://127.0.0.1:9")
        .build()
        .await
        .unwrap();
    assert!(client.list_keys().send().await.is_err());
    child_round_trip(KmsClientBuilder::new().endpoint_url(endpoint)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_files_with_a_profile() {
    let s = start().await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &credentials,
        format!(
            "[default]\naws_access_key_id = AKIDWRONGDEFAULT000\naws_secret_access_key = wrong\n\n\
             [envelope-test]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s.akid, s.secret
        ),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[profile envelope-test]\nregion = us-east-1\nservices = local\n\n\
             [services local]\nkms =\n  endpoint_url = {}\n",
            s.endpoint
        ),
    )
    .unwrap();
    run_child(
        "profile_child",
        &[
            // Environment credentials lose to an explicit profile (as with the AWS CLI).
            ("AWS_ACCESS_KEY_ID", "AKIDWRONGENV0000000"),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
            ("TEST_CONFIG", config.to_str().unwrap()),
            ("TEST_CREDENTIALS", credentials.to_str().unwrap()),
        ],
        home.path(),
    )
    .await;
    // The same files through AWS_PROFILE / AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE.
    run_child(
        "profile_from_env_child",
        &[
            ("AWS_PROFILE", "envelope-test"),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_SHARED_CREDENTIALS_FILE", credentials.to_str().unwrap()),
        ],
        home.path(),
    )
    .await;
}

#[tokio::test]
#[ignore = "run by shared_files_with_a_profile in a child process"]
async fn profile_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    let builder = KmsClientBuilder::new()
        .profile("envelope-test")
        .config_file(std::env::var("TEST_CONFIG").unwrap())
        .credentials_file(std::env::var("TEST_CREDENTIALS").unwrap());
    child_round_trip(builder).await;
    // Without a region anywhere, building fails clearly.
    let err = KmsClientBuilder::new()
        .config_file(std::env::var("TEST_CONFIG").unwrap())
        .credentials_file(std::env::var("TEST_CREDENTIALS").unwrap())
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no AWS region"), "{err}");
}

#[tokio::test]
#[ignore = "run by shared_files_with_a_profile in a child process"]
async fn profile_from_env_child() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        return;
    }
    child_round_trip(KmsClientBuilder::new()).await;
}
