//! `envelope authz explain`: what the endpoint would decide for a principal, an action and a key,
//! and which statements decide it, read from the data directory (IAM's policy simulator, offline).

use clap::{Args, Subcommand};
use kms_core::policy::Principal;

use crate::{open, CliError, StoreArgs, PRINCIPAL_CACHE};

#[derive(Subcommand)]
pub(crate) enum AuthzCommand {
    /// Explain the decision on one request: Allow or Deny, and the policy statement, grant or
    /// absence that decides it. Exit status 0 either way; the answer is the JSON printed.
    Explain(ExplainArgs),
}

#[derive(Args)]
pub(crate) struct ExplainArgs {
    /// Who asks: an IAM user ARN, a role session ARN (arn:aws:sts::ACCT:assumed-role/ROLE/SESSION),
    /// an account root ARN or a 12-digit account id.
    #[arg(long)]
    principal: String,
    /// The action, e.g. kms:Decrypt.
    #[arg(long)]
    action: String,
    /// The key: key id, key ARN, alias name or alias ARN (omit for account-level actions such as
    /// kms:CreateKey).
    #[arg(long)]
    resource: Option<String>,
    /// A condition key and its value, e.g. kms:EncryptionContext:dept=IT or aws:SourceIp=10.0.0.1;
    /// repeatable.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    context: Vec<String>,
    #[command(flatten)]
    store: StoreArgs,
}

pub(crate) async fn authz(cmd: AuthzCommand) -> Result<(), CliError> {
    let AuthzCommand::Explain(args) = cmd;
    let principal = Principal::from_arn(&args.principal, None).ok_or_else(|| {
        CliError::Usage(format!(
            "--principal {}: not an IAM user, role session or account root ARN, nor an account id",
            args.principal
        ))
    })?;
    if !args.action.contains(':') {
        return Err(CliError::Usage(format!(
            "--action {}: give the service prefix, e.g. kms:Decrypt",
            args.action
        )));
    }
    let context = args
        .context
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--context {kv}: expected KEY=VALUE")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opened = open(&args.store, false, PRINCIPAL_CACHE).await?;
    let explanation = opened
        .kms
        .explain(principal, &args.action, args.resource.as_deref(), &context)
        .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&explanation).unwrap_or_default()
    );
    Ok(())
}
