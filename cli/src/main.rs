//! `envelope`: the command-line front end. Argument parsing and printing only; the work is done by
//! `kms-core`, `kms-server` and `s3-crypto`.

mod authz;
mod crypt;
mod hsm_root;
mod s3;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use kms_core::{
    AuditLog, InitialPolicy, KeyMaterial, Kms, KmsConfig, Partition, RootOfTrust, SoftwareRootKey,
    Store,
};
use zeroize::Zeroizing;

/// mimalloc rather than glibc malloc: the request path allocates many small, short-lived buffers
/// across two worker threads; measured +5-8% GenerateDataKey/s at concurrency 32 (README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The home account when none is configured.
const DEFAULT_ACCOUNT_ID: &str = "111122223333";

/// Commands other than `serve` run briefly; they cache nothing.
pub(crate) const PRINCIPAL_CACHE: Duration = Duration::ZERO;

#[derive(Parser)]
#[command(
    name = "envelope",
    version,
    about = "Envelope encryption toolkit and AWS KMS-compatible key service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the KMS-compatible endpoint (first start initialises the data directory).
    Serve(ServeArgs),
    /// Manage the principals (access keys) the endpoint accepts.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Encrypt a file or stream (AWS Encryption SDK message format).
    Encrypt(crypt::EncryptArgs),
    /// Decrypt a file or stream; output appears only once the whole message has verified.
    Decrypt(crypt::DecryptArgs),
    /// Manage the root of trust.
    #[command(subcommand)]
    Root(hsm_root::RootCommand),
    /// Copy encrypted objects to and from S3-compatible stores; show their encryption metadata.
    #[command(subcommand)]
    S3(s3::S3Command),
    /// Access control, offline: explain what the endpoint would decide for a request.
    #[command(subcommand)]
    Authz(authz::AuthzCommand),
}

#[derive(Args, Clone)]
pub(crate) struct StoreArgs {
    /// Data directory: SQLite store, root key, credentials, audit log.
    #[arg(long, env = "ENVELOPE_DATA_DIR", default_value = "envelope-data")]
    data_dir: PathBuf,
    /// Database URL (postgres://...); default: SQLite in the data directory.
    #[arg(long, env = "ENVELOPE_DATABASE_URL")]
    database_url: Option<String>,
    /// File holding the root key (base64 of 32 bytes, or 32 raw bytes). Else ENVELOPE_ROOT_KEY, else
    /// root.key in the data directory.
    #[arg(long)]
    root_key_file: Option<PathBuf>,
    /// Region in ARNs and SigV4 scopes.
    #[arg(long, env = "ENVELOPE_REGION", default_value = "us-east-1")]
    region: String,
    /// Account id in ARNs (`serve`: the home account, default 111122223333, recorded at the first
    /// start; `principal`: the user's account, default the store's home account).
    #[arg(long, env = "ENVELOPE_ACCOUNT_ID")]
    account_id: Option<String>,
    #[command(flatten)]
    hsm: hsm_root::HsmArgs,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4599")]
    listen: SocketAddr,
    /// PEM certificate chain for TLS.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address.
    #[arg(long)]
    allow_plaintext: bool,
    /// Seconds between runs of the deletion and automatic-rotation sweeper.
    #[arg(long, default_value_t = 60)]
    sweep_interval: u64,
    /// Seconds that key material, aliases and principals stay cached (bounds how fast a change made
    /// on another node is seen).
    #[arg(long, default_value_t = 5)]
    cache_ttl: u64,
    /// A CloudHSM cluster for custom key stores: a PKCS#11 token named by an id
    /// (cluster-ID=MODULE_PATH:TOKEN_LABEL); repeatable. A store's KeyStorePassword is the token's
    /// user PIN.
    #[arg(long = "hsm-cluster", value_name = "cluster-ID=MODULE:LABEL")]
    hsm_clusters: Vec<String>,
    /// Raise or lower one of AWS's resource quotas (LimitExceededException beyond it), as AWS
    /// adjusts them on request: keys=N (customer managed keys per account, 100000),
    /// aliases-per-key=N (50), custom-key-stores=N (per account, 10); repeatable.
    #[arg(long = "resource-quota", value_name = "NAME=N", value_parser = resource_quota)]
    resource_quotas: Vec<(String, i64)>,
    #[command(flatten)]
    limits: LimitArgs,
}

/// `NAME=N` of `--resource-quota`.
fn resource_quota(s: &str) -> Result<(String, i64), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=N"))?;
    if !["keys", "aliases-per-key", "custom-key-stores"].contains(&name) {
        return Err(format!(
            "no resource quota '{name}' (keys, aliases-per-key, custom-key-stores)"
        ));
    }
    let n = n
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| format!("'{n}' is not a count"))?;
    Ok((name.to_string(), n))
}

/// AWS's default resource quotas with `--resource-quota`'s changes.
fn resource_quotas(changes: &[(String, i64)]) -> kms_core::ResourceQuotas {
    let mut q = kms_core::ResourceQuotas::default();
    for (name, n) in changes {
        match name.as_str() {
            "keys" => q.keys_per_account = *n,
            "aliases-per-key" => q.aliases_per_key = *n,
            _ => q.custom_key_stores_per_account = *n,
        }
    }
    q
}

/// `serve`'s limits on connections and requests (kms_server::Limits documents each).
#[derive(clap::Args)]
struct LimitArgs {
    /// Most connections open at once; at the limit the idlest connection is closed to make room.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds a connection may stay open with no request in flight (HTTP/1.1 and HTTP/2).
    #[arg(long, default_value_t = 60.0, value_parser = seconds)]
    idle_timeout: f64,
    /// Seconds to receive a request head once it has begun, and to finish a TLS handshake.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    header_timeout: f64,
    /// Seconds to receive a request body.
    #[arg(long, default_value_t = 10.0, value_parser = seconds)]
    body_timeout: f64,
    /// Most concurrent requests a client may have on one HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    h2_max_streams: u32,
    /// Throttle with ThrottlingException as AWS KMS does, per account and operation family:
    /// `aws` (AWS's default rates), FAMILY=RATE (requests per second), or both, comma-separated
    /// (e.g. `aws,CreateKey=50`). Off by default.
    #[arg(long, value_name = "SPEC")]
    request_quotas: Option<kms_server::QuotaConfig>,
    /// Longest wait, in seconds, before answering a request that fails authentication: once a
    /// client address has failed 10 times within a minute, each further failure waits twice as
    /// long as the one before (from 25 ms) up to this. 0 answers every failure at once.
    #[arg(long, default_value_t = 1.0, value_parser = delay_seconds)]
    auth_failure_delay: f64,
}

impl LimitArgs {
    fn limits(&self) -> kms_server::Limits {
        kms_server::Limits {
            max_connections: self.max_connections,
            idle_timeout: Duration::from_secs_f64(self.idle_timeout),
            header_timeout: Duration::from_secs_f64(self.header_timeout),
            body_timeout: Duration::from_secs_f64(self.body_timeout),
            h2_max_concurrent_streams: self.h2_max_streams,
            auth_failure_delay: Duration::from_secs_f64(self.auth_failure_delay),
            ..kms_server::Limits::default()
        }
    }
}

/// A positive number of seconds, below a day.
fn seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0 && *v < 86_400.0)
        .ok_or_else(|| format!("'{s}' is not a number of seconds between 0 and 86400"))
}

/// Zero to ten seconds (a longer wait would run into the request timeout).
fn delay_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=10.0).contains(v))
        .ok_or_else(|| format!("'{s}' is not a number of seconds from 0 to 10"))
}

#[derive(Subcommand)]
enum PrincipalCommand {
    /// Create a principal: an IAM user of --account-id (the account is created on first use) with
    /// one access key; prints the access key (and the secret, when generated) as JSON. Without
    /// --admin or --policy-file the user has no policy: it authenticates, and every action is
    /// denied until a policy allows it (`aws iam put-user-policy`, `attach-user-policy`).
    Create {
        /// User name (1-64 of letters, digits, +=,.@_-).
        name: String,
        /// Attach the AWS managed policy AdministratorAccess (every action on every resource).
        #[arg(long, conflicts_with = "policy_file")]
        admin: bool,
        /// An identity policy document (JSON) to give the user, as its inline policy `initial`.
        #[arg(long)]
        policy_file: Option<PathBuf>,
        /// Adopt this access key id instead of generating one (needs --secret-key-file).
        #[arg(long, requires = "secret_key_file")]
        access_key_id: Option<String>,
        /// File holding the secret access key to adopt, or - for standard input.
        #[arg(long, requires = "access_key_id")]
        secret_key_file: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List principals as JSON.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete a principal of --account-id: the user with its access keys and policies.
    Delete {
        /// User name.
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Errors of the command line, with the message shown to the user.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    #[error("{0}")]
    Kms(#[from] kms_core::KmsError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Hsm(#[from] hsm::HsmError),
    /// Ctrl-C or SIGTERM stopped the command (exit status 130).
    #[error("interrupted: {0}")]
    Interrupted(&'static str),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

/// The AWS SDK's request log, capped below trace (where it prints request bodies).
/// The AWS SDK's targets that print requests at trace: the orchestrator (bodies: an Encrypt carries
/// the data key) and the SigV4 signer (headers: an SSE-C request carries the customer key).
const SDK_REQUEST_LOGS: [&str; 2] = [
    "aws_smithy_runtime::client::orchestrator=debug",
    "aws_sigv4=debug",
];

/// Whether `filter` can let a trace event through (so the AWS SDK's request log must be capped).
fn reaches_trace(filter: &tracing_subscriber::EnvFilter) -> bool {
    filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing_subscriber::filter::LevelFilter::TRACE)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENVELOPE_LOG")
        .unwrap_or_else(|_| "info".into());
    // At trace level the AWS SDK logs every request it sends with its body and headers: an Encrypt
    // carries the data key, an SSE-C request the customer key. Whatever ENVELOPE_LOG asks, those
    // targets stop at debug. (Only when the filter can
    // reach trace, however it says so: `trace`, `5`, a target with no level. A directive sets its
    // target's level, so added always it would raise the SDK's request log to debug under `info`.)
    let asks_trace = reaches_trace(&filter);
    let mut filter = filter;
    if asks_trace {
        for cap in SDK_REQUEST_LOGS.iter().filter_map(|d| d.parse().ok()) {
            filter = filter.add_directive(cap);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // When stderr cannot be written (its disk is full), tracing reports that with eprintln!,
        // which panics: a call would fail with a 500 and the sweeper would stop for good. A log
        // line that cannot be written is dropped instead.
        .log_internal_errors(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("envelope: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let s3 = matches!(cli.command, Command::S3(_));
    let result = runtime.block_on(run(cli));
    if s3 {
        // Do not wait for blocking-pool work that cannot finish: after an interrupted `s3 cp -`, a
        // read of standard input may be blocked until the producer closes the pipe.
        runtime.shutdown_background();
    } else {
        // Everything else waits for its blocking work: `serve` runs PKCS#11 calls there, and a
        // token module must not be finalized under a call still running (that crashed `serve` at
        // SIGTERM, or hung it).
        drop(runtime);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ CliError::Interrupted(_)) => {
            eprintln!("envelope: {e}");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("envelope: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Principal(cmd) => principal(cmd).await,
        Command::Encrypt(args) => crypt::encrypt(args).await,
        Command::Decrypt(args) => crypt::decrypt(args).await,
        Command::Root(cmd) => hsm_root::root(cmd).await,
        Command::S3(cmd) => s3::s3(cmd).await,
        Command::Authz(cmd) => authz::authz(cmd).await,
    }
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(io_err(format!("cannot create {}", path.display())))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err(format!("cannot write {}", path.display())))
}

/// A data directory file (the root key, the credentials) that others may read is narrowed to its
/// owner (0600), with a warning, as the store and the audit log are.
fn narrow_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::warn!(file = %path.display(), mode = format!("{mode:o}"), "the file was readable by others; narrowed to 0600")
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "the file is readable by others and cannot be narrowed")
                }
            }
        }
    }
}

/// Key bytes as a key file or variable holds them: base64 text (surrounding whitespace ignored) or
/// raw, of one of the `allowed` lengths. Base64 is tried first: the base64 text of a 16-byte key is
/// 24 bytes long and would otherwise be taken as a raw 24-byte key.
pub(crate) fn decode_key(bytes: &[u8], allowed: &[usize]) -> Option<Zeroizing<Vec<u8>>> {
    let from_text = std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| STANDARD.decode(text.trim()).ok())
        .map(Zeroizing::new)
        .filter(|decoded| allowed.contains(&decoded.len()));
    from_text.or_else(|| {
        allowed
            .contains(&bytes.len())
            .then(|| Zeroizing::new(bytes.to_vec()))
    })
}

fn parse_root_key(bytes: &[u8], source: &str) -> Result<KeyMaterial, CliError> {
    let key = decode_key(bytes, &[32]).ok_or_else(|| {
        CliError::Usage(format!(
            "the root key from {source} is not 32 bytes (raw, or base64-encoded)"
        ))
    })?;
    Ok(KeyMaterial::from_slice(&key)?)
}

/// The metadata entry holding the store's home account.
const HOME_ACCOUNT: &str = "home_account";

pub(crate) struct Opened {
    pub(crate) kms: Kms,
    data_dir: PathBuf,
    created_root: bool,
    /// The home account the store was opened as.
    home: String,
}

/// Opens the store and the root key. With `may_create`, a brand-new store gets a new root key
/// (unless the root of trust is an HSM token: `--hsm-module`).
pub(crate) async fn open(
    args: &StoreArgs,
    may_create: bool,
    cache_ttl: Duration,
) -> Result<Opened, CliError> {
    // The token first: a wrong PIN stops here, before any data is touched.
    let hsm = match args.hsm.config()? {
        Some(config) => Some(hsm_root::open_root(config).await?),
        None => None,
    };
    let data_dir = if may_create {
        let data_dir = &args.data_dir;
        std::fs::create_dir_all(data_dir)
            .map_err(io_err(format!("cannot create {}", data_dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
        }
        data_dir
            .canonicalize()
            .map_err(io_err(format!("cannot open {}", data_dir.display())))?
    } else {
        existing_data_dir(args)?
    };
    let store = Store::connect(&store_url(args, &data_dir)).await?;
    let initialised = store.meta_get("root_check").await?.is_some();
    let (root, created_root): (Arc<dyn RootOfTrust>, bool) = match hsm {
        Some(root) => (root, false),
        None => {
            let (material, created) =
                software_root_material(args, &data_dir, initialised, may_create)?;
            (Arc::new(SoftwareRootKey::new(material)), created)
        }
    };
    // The home account is the store's: recorded at the first `serve` (`may_create`), which every
    // later `serve` must name again; the other commands act in it whatever they were given.
    let stored_home = store
        .meta_get(HOME_ACCOUNT)
        .await?
        .map(|h| String::from_utf8_lossy(&h).into_owned());
    let wanted = args
        .account_id
        .clone()
        .unwrap_or_else(|| DEFAULT_ACCOUNT_ID.into());
    let home = match stored_home {
        Some(h) if may_create && h != wanted => {
            return Err(CliError::Usage(format!(
                "the store's home account is {h} (set when it was first served); serve it with \
                 --account-id {h} (or ENVELOPE_ACCOUNT_ID={h})"
            )))
        }
        Some(h) => h,
        None => {
            let recorded =
                !may_create || store.meta_put_new(HOME_ACCOUNT, wanted.as_bytes()).await?;
            if !recorded {
                // Another node recorded one at the same moment: start again to compare with it.
                return Box::pin(open(args, may_create, cache_ttl)).await;
            }
            wanted
        }
    };
    let config = KmsConfig {
        partition: Partition {
            region: args.region.clone(),
            account_id: home.clone(),
        },
        cache_ttl,
        quotas: kms_core::ResourceQuotas::default(),
    };
    let kms = Kms::open(store, root, config).await.map_err(|e| match e {
        kms_core::KmsError::InvalidState(m) => CliError::Usage(format!(
            "root key does not match the data in {}: {m}",
            data_dir.display()
        )),
        other => other.into(),
    })?;
    Ok(Opened {
        kms,
        data_dir,
        created_root,
        home,
    })
}

/// The data directory, which must exist (unless the store is a database URL).
pub(crate) fn existing_data_dir(args: &StoreArgs) -> Result<PathBuf, CliError> {
    let data_dir = &args.data_dir;
    if !data_dir.is_dir() && args.database_url.is_none() {
        return Err(CliError::Usage(format!(
            "data directory {} does not exist; start `envelope serve` once to create it",
            data_dir.display()
        )));
    }
    data_dir
        .canonicalize()
        .map_err(io_err(format!("cannot open {}", data_dir.display())))
}

/// The store's URL: `--database-url`, else SQLite in the data directory.
pub(crate) fn store_url(args: &StoreArgs, data_dir: &Path) -> String {
    match &args.database_url {
        Some(u) => u.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("envelope.db").display()
        ),
    }
}

/// The software root key: `--root-key-file`, else ENVELOPE_ROOT_KEY, else `<data-dir>/root.key`,
/// else (with `may_create`, for a store not yet `initialised`) a new one written there. The flag
/// says whether it was created.
pub(crate) fn software_root_material(
    args: &StoreArgs,
    data_dir: &Path,
    initialised: bool,
    may_create: bool,
) -> Result<(KeyMaterial, bool), CliError> {
    let root_file = data_dir.join("root.key");
    let mut created_root = false;
    let material = if let Some(path) = &args.root_key_file {
        let bytes = Zeroizing::new(
            std::fs::read(path).map_err(io_err(format!("cannot read {}", path.display())))?,
        );
        parse_root_key(&bytes, &path.display().to_string())?
    } else if let Ok(v) = std::env::var("ENVELOPE_ROOT_KEY") {
        let v = Zeroizing::new(v);
        parse_root_key(v.as_bytes(), "ENVELOPE_ROOT_KEY")?
    } else if root_file.exists() {
        let bytes = Zeroizing::new(
            std::fs::read(&root_file)
                .map_err(io_err(format!("cannot read {}", root_file.display())))?,
        );
        parse_root_key(&bytes, &root_file.display().to_string())?
    } else if initialised {
        return Err(CliError::Usage(format!(
            "the key store is initialised but no root key was given: {} is missing and neither \
             --root-key-file nor ENVELOPE_ROOT_KEY is set. Refusing to create a new root key for existing data.",
            root_file.display()
        )));
    } else if may_create {
        let m = KeyMaterial::generate()?;
        write_private(
            &root_file,
            format!("{}\n", STANDARD.encode(m.expose())).as_bytes(),
        )?;
        created_root = true;
        tracing::info!(path = %root_file.display(), "created a new root key (keep it: without it the data cannot be read)");
        m
    } else {
        return Err(CliError::Usage(
            "no root key: give --root-key-file or set ENVELOPE_ROOT_KEY".into(),
        ));
    };
    Ok((material, created_root))
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(kms_server::load_tls_config(c, k).map_err(CliError::Usage)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() && !args.allow_plaintext {
        return Err(CliError::Usage(format!(
            "refusing to serve plain HTTP on non-loopback address {}: give --tls-cert and --tls-key, or \
             --allow-plaintext if something in front of envelope terminates TLS",
            args.listen
        )));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(io_err(format!("cannot listen on {}", args.listen)))?;
    let clusters = args.store.hsm.clusters(&args.hsm_clusters)?;
    let Opened {
        kms,
        data_dir,
        created_root,
        ..
    } = open(&args.store, true, Duration::from_secs(args.cache_ttl)).await?;
    for name in ["root.key", "credentials", "config"] {
        narrow_to_owner(&data_dir.join(name));
    }
    let log =
        AuditLog::open(&data_dir.join("audit.log")).map_err(io_err("cannot open the audit log"))?;
    let mut kms = kms
        .with_audit_log(log)
        .with_resource_quotas(resource_quotas(&args.resource_quotas));
    if let Some(clusters) = clusters {
        tracing::info!(clusters = ?clusters.clusters().keys().collect::<Vec<_>>(), "CloudHSM clusters for custom key stores");
        kms = kms.with_hsm_clusters(Arc::new(clusters));
    }
    // First start: no user at all (users whose access keys were all deleted keep their names).
    if !kms.store().has_users().await? {
        let (info, secret) = kms.create_principal("admin", None).await?;
        let secret = secret.ok_or_else(|| CliError::Usage("no secret generated".into()))?;
        let creds = data_dir.join("credentials");
        let _ = std::fs::remove_file(&creds);
        write_private(
            &creds,
            format!(
                "[envelope]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                info.access_key_id,
                secret.as_str()
            )
            .as_bytes(),
        )?;
        let config = data_dir.join("config");
        let _ = std::fs::remove_file(&config);
        write_private(
            &config,
            format!("[profile envelope]\nregion = {}\n", args.store.region).as_bytes(),
        )?;
        eprintln!(
            "envelope: created principal {} (access key {}); credentials written to {} (profile 'envelope'), \
             region in {}",
            info.arn,
            info.access_key_id,
            creds.display(),
            config.display()
        );
    }
    if created_root {
        eprintln!(
            "envelope: new root key in {}; back it up",
            data_dir.join("root.key").display()
        );
    }
    let kms = Arc::new(kms);
    let sweeper = {
        let kms = kms.clone();
        let every = Duration::from_secs(args.sweep_interval.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match kms.run_due_work(kms_core::now_millis()).await {
                    Ok((0, 0)) => {}
                    Ok((d, r)) => tracing::info!(deleted = d, rotated = r, "sweeper"),
                    Err(e) => tracing::warn!(error = %e, "sweeper failed"),
                }
            }
        })
    };
    let addr = listener
        .local_addr()
        .map_err(io_err("cannot read the listening address"))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shutdown = shutdown_signal()?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {scheme}://{addr}");
        let _ = out.flush();
    }
    let mut app = kms_server::App::new(kms.clone(), args.limits.limits());
    if let Some(quotas) = args.limits.request_quotas.clone() {
        app = app.with_request_quotas(quotas);
    }
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    kms_server::serve(listener, app, acceptor, shutdown)
        .await
        .map_err(io_err("server failed"))?;
    sweeper.abort();
    kms.flush_audit_log();
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now (before "listening on" is printed, so a signal in
/// the server's first instants is a clean stop, not death by the signal) and returns the future that
/// completes on the first of them. (Elsewhere than Unix: Ctrl-C, whose handler tokio installs when
/// the future is first polled.)
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, CliError> {
    #[cfg(unix)]
    let wait = {
        use tokio::signal::unix::{signal, SignalKind};
        let install = || io_err("cannot install the signal handlers");
        let mut term = signal(SignalKind::terminate()).map_err(install())?;
        let mut int = signal(SignalKind::interrupt()).map_err(install())?;
        async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
    };
    #[cfg(not(unix))]
    let wait = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    Ok(async move {
        wait.await;
        tracing::info!("shutting down: draining in-flight requests");
    })
}

/// The store arguments with the server's home account (ENVELOPE_ACCOUNT_ID, else the default):
/// `principal`'s --account-id names the user's account, which must not become the home account
/// the store's first opening gives to the identities it migrates. A store that has recorded its
/// home account (at its first `serve`) uses that one instead (`open`).
fn as_home(store: &StoreArgs) -> StoreArgs {
    let mut home = store.clone();
    home.account_id = std::env::var("ENVELOPE_ACCOUNT_ID").ok();
    home
}

async fn principal(cmd: PrincipalCommand) -> Result<(), CliError> {
    let print = |v: serde_json::Value| {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    };
    match cmd {
        PrincipalCommand::Create {
            name,
            admin,
            policy_file,
            access_key_id,
            secret_key_file,
            store,
        } => {
            let policy = match (admin, policy_file) {
                (true, _) => InitialPolicy::Admin,
                (false, Some(f)) => InitialPolicy::Document(
                    std::fs::read_to_string(&f)
                        .map_err(io_err(format!("cannot read {}", f.display())))?,
                ),
                (false, None) => InitialPolicy::None,
            };
            let opened = open(&as_home(&store), false, PRINCIPAL_CACHE).await?;
            let adopt = match (access_key_id, secret_key_file) {
                (Some(id), Some(file)) => {
                    let mut raw = Zeroizing::new(String::new());
                    if file.as_os_str() == "-" {
                        std::io::stdin()
                            .read_to_string(&mut raw)
                            .map_err(io_err("cannot read the secret from stdin"))?;
                    } else {
                        std::fs::File::open(&file)
                            .and_then(|mut f| f.read_to_string(&mut raw))
                            .map_err(io_err(format!("cannot read {}", file.display())))?;
                    }
                    Some((id, Zeroizing::new(raw.trim().to_string())))
                }
                _ => None,
            };
            let none = policy == InitialPolicy::None;
            let (info, secret) = opened
                .kms
                .create_principal_in(
                    store.account_id.as_deref().unwrap_or(&opened.home),
                    &name,
                    adopt,
                    policy,
                )
                .await?;
            if none {
                eprintln!(
                    "envelope: {} has no policy: every action is denied until one allows it \
                     (--admin, --policy-file, or aws iam put-user-policy)",
                    info.arn
                );
            }
            let mut v = serde_json::json!({
                "UserName": info.user_name,
                "Arn": info.arn,
                "Account": info.account,
                "AccessKeyId": info.access_key_id,
                "CreateDate": info.create_date,
            });
            if let Some(s) = secret {
                v["SecretAccessKey"] = serde_json::Value::String(s.to_string());
            }
            print(v);
        }
        PrincipalCommand::List { store } => {
            let opened = open(&as_home(&store), false, PRINCIPAL_CACHE).await?;
            let list = opened.kms.list_principals().await?;
            print(serde_json::json!({ "Principals": list }));
        }
        PrincipalCommand::Delete { name, store } => {
            let opened = open(&as_home(&store), false, PRINCIPAL_CACHE).await?;
            opened
                .kms
                .delete_principal_in(store.account_id.as_deref().unwrap_or(&opened.home), &name)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_sdk_request_log_is_capped_however_trace_is_asked_for() {
        let reaches = |f: &str| super::reaches_trace(&tracing_subscriber::EnvFilter::new(f));
        for f in [
            "trace",
            "TRACE",
            "5",
            "aws_smithy_runtime",
            "info,aws_smithy_runtime=trace",
        ] {
            assert!(reaches(f), "{f}");
        }
        for f in ["info", "debug", "warn,envelope=debug", "4"] {
            assert!(!reaches(f), "{f}");
        }
    }

    use super::*;

    #[test]
    fn key_files_are_base64_before_raw() {
        let aes128 = [7u8; 16];
        let text = STANDARD.encode(aes128); // 24 bytes: also a raw AES-192 length
        let key = decode_key(text.as_bytes(), &[16, 24, 32]).unwrap();
        assert_eq!(&key[..], &aes128);
        let raw = [0xffu8; 32]; // not UTF-8, so raw
        assert_eq!(&decode_key(&raw, &[16, 24, 32]).unwrap()[..], &raw);
        let newline = format!("{}\n", STANDARD.encode([1u8; 32]));
        assert_eq!(
            &decode_key(newline.as_bytes(), &[32]).unwrap()[..],
            &[1u8; 32]
        );
        assert!(decode_key(b"short", &[32]).is_none());
    }
}
