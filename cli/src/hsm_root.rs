//! `--hsm-*` options (the root of trust in a PKCS#11 token) and `envelope root migrate-to-hsm`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand, ValueEnum};
use hsm::{
    Capabilities, HsmCluster, HsmConfig, HsmRootKey, IvSource, PinSource, TokenClusters,
    TokenSelector,
};
use kms_core::{Kms, RootOfTrust, SoftwareRootKey, Store};

use crate::{CliError, StoreArgs};

/// The environment variable that may hold the user PIN (never a command-line argument).
pub(crate) const PIN_ENV: &str = "ENVELOPE_HSM_PIN";

#[derive(Args, Clone, Debug)]
pub(crate) struct HsmArgs {
    /// PKCS#11 module: keep the root of trust in this token (a non-extractable AES-256 key); no
    /// software root key is created or read.
    #[arg(long, env = "ENVELOPE_HSM_MODULE")]
    hsm_module: Option<PathBuf>,
    /// Label of the token to use.
    #[arg(long, env = "ENVELOPE_HSM_TOKEN_LABEL", conflicts_with = "hsm_slot")]
    hsm_token_label: Option<String>,
    /// Slot id of the token to use (instead of its label).
    #[arg(long, env = "ENVELOPE_HSM_SLOT")]
    hsm_slot: Option<u64>,
    /// File holding the token's user PIN. Else the environment variable ENVELOPE_HSM_PIN.
    #[arg(long, env = "ENVELOPE_HSM_PIN_FILE")]
    hsm_pin_file: Option<PathBuf>,
    /// Label of the root key object in the token (created on first start when missing).
    #[arg(long, env = "ENVELOPE_HSM_KEY_LABEL", default_value = hsm::DEFAULT_ROOT_KEY_LABEL)]
    hsm_key_label: String,
    /// PKCS#11 sessions kept open at most.
    #[arg(long, default_value_t = 4)]
    hsm_sessions: usize,
    /// What the token does its own way: a preset (softhsm2, cloudhsm) and settings, comma-separated:
    /// iv=host|token, tag-mismatch=CODE+… (encrypted-data-invalid, general-error, function-failed,
    /// data-invalid), gcm=standard|no-iv-bits. Default: softhsm2. Also the default of every
    /// --hsm-cluster without capabilities of its own.
    #[arg(long, env = "ENVELOPE_HSM_CAPABILITIES", value_name = "SPEC")]
    hsm_capabilities: Option<String>,
    /// Who generates AES-GCM IVs: the host (SoftHSMv2) or the token (AWS CloudHSM, whose preset
    /// this selects unless --hsm-capabilities is given).
    #[arg(long, value_enum)]
    hsm_iv: Option<IvArg>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IvArg {
    Host,
    Token,
}

#[derive(Subcommand)]
pub(crate) enum RootCommand {
    /// Re-wrap a data directory's key material and principals' secrets under the HSM root key, all
    /// or nothing. Stop the server first. The software root key file is renamed to root.key.pre-hsm.
    MigrateToHsm {
        #[command(flatten)]
        store: StoreArgs,
    },
}

impl HsmArgs {
    /// The HSM configuration, or `None` when no module is given (software root key).
    pub(crate) fn config(&self) -> Result<Option<HsmConfig>, CliError> {
        let Some(module) = &self.hsm_module else {
            if self.hsm_token_label.is_some() || self.hsm_slot.is_some() {
                return Err(CliError::Usage(
                    "--hsm-token-label/--hsm-slot need --hsm-module".into(),
                ));
            }
            return Ok(None);
        };
        let token = match (&self.hsm_token_label, self.hsm_slot) {
            (Some(label), _) => TokenSelector::Label(label.clone()),
            (None, Some(slot)) => TokenSelector::Slot(slot),
            (None, None) => {
                return Err(CliError::Usage(
                    "--hsm-module needs --hsm-token-label or --hsm-slot".into(),
                ))
            }
        };
        let pin = match &self.hsm_pin_file {
            Some(file) => PinSource::File(file.clone()),
            None => PinSource::Env(PIN_ENV.into()),
        };
        let capabilities = self.capabilities()?;
        Ok(Some(
            HsmConfig::new(module, token, pin)
                .with_key_label(self.hsm_key_label.clone())
                .with_max_sessions(self.hsm_sessions)
                .with_capabilities(capabilities),
        ))
    }
}

impl HsmArgs {
    /// `--hsm-capabilities` (else the preset `--hsm-iv` implies), with `--hsm-iv` on top.
    fn capabilities(&self) -> Result<Capabilities, CliError> {
        let preset = match self.hsm_iv {
            Some(IvArg::Token) => Capabilities::cloudhsm(),
            _ => Capabilities::softhsm2(),
        };
        let Some(spec) = &self.hsm_capabilities else {
            return Ok(preset);
        };
        let caps: Capabilities = spec.parse()?;
        Ok(match self.hsm_iv {
            Some(IvArg::Host) => caps.with_iv_source(IvSource::Host),
            Some(IvArg::Token) => caps.with_iv_source(IvSource::Token),
            None => caps,
        })
    }

    /// The clusters custom key stores may use (`--hsm-cluster`, repeatable), with this token's
    /// capabilities and session bound. A cluster may not be the root of trust's token: one process
    /// has one login per token, so the store's password would never be checked.
    pub(crate) fn clusters(&self, specs: &[String]) -> Result<Option<TokenClusters>, CliError> {
        if specs.is_empty() {
            return Ok(None);
        }
        let root = self.config()?;
        let default_caps = self.capabilities()?;
        let mut clusters = TokenClusters::new();
        for spec in specs {
            let (id, cluster) = HsmCluster::parse(spec, &default_caps)?;
            if let Some(root) = &root {
                if root.module == cluster.module && root.token == cluster.token {
                    return Err(CliError::Usage(format!(
                        "--hsm-cluster {id}: the cluster's token is the root of trust's token; give \
                         custom key stores a token of their own"
                    )));
                }
            }
            if clusters.clusters().contains_key(&id) {
                return Err(CliError::Usage(format!(
                    "--hsm-cluster {id} is given twice"
                )));
            }
            clusters = clusters.with_cluster(id, cluster.with_max_sessions(self.hsm_sessions));
        }
        Ok(Some(clusters))
    }
}

/// Loads the module and logs in (blocking work, off the async runtime).
pub(crate) async fn open_root(config: HsmConfig) -> Result<Arc<dyn RootOfTrust>, CliError> {
    let root = tokio::task::spawn_blocking(move || HsmRootKey::open(config))
        .await
        .map_err(|_| CliError::Usage("the HSM start-up task failed".into()))??;
    Ok(Arc::new(root))
}

pub(crate) async fn root(cmd: RootCommand) -> Result<(), CliError> {
    match cmd {
        RootCommand::MigrateToHsm { store } => migrate_to_hsm(store).await,
    }
}

async fn migrate_to_hsm(args: StoreArgs) -> Result<(), CliError> {
    let config = args.hsm.config()?.ok_or_else(|| {
        CliError::Usage("migrate-to-hsm needs --hsm-module and --hsm-token-label".into())
    })?;
    let data_dir = crate::existing_data_dir(&args)?;
    let store = Store::connect(&crate::store_url(&args, &data_dir)).await?;
    if store.meta_get("root_check").await?.is_none() {
        return Err(CliError::Usage(format!(
            "{} holds no initialised key store: nothing to migrate",
            data_dir.display()
        )));
    }
    let (material, _) = crate::software_root_material(&args, &data_dir, true, false)?;
    let software: Arc<dyn RootOfTrust> = Arc::new(SoftwareRootKey::new(material));
    let hsm_root = open_root(config).await?;
    let described = hsm_root.describe();
    let n = Kms::migrate_root(&store, software, hsm_root)
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "migration failed, nothing was changed: {e} (is this the data directory's root key, \
                 and is the store not already on the HSM?)"
            ))
        })?;
    store.close().await;
    let key_file = data_dir.join("root.key");
    let mut moved = serde_json::Value::Null;
    if key_file.exists() {
        let to = data_dir.join("root.key.pre-hsm");
        std::fs::rename(&key_file, &to).map_err(crate::io_err(format!(
            "migrated, but cannot rename {}",
            key_file.display()
        )))?;
        eprintln!(
            "envelope: the software root key is no longer used; it was moved to {} (destroy it once \
             no backup made before the migration is needed)",
            to.display()
        );
        moved = serde_json::Value::String(to.display().to_string());
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "Rewrapped": n,
            "Root": described,
            "OldRootKeyFile": moved,
        }))
        .unwrap_or_default()
    );
    Ok(())
}
