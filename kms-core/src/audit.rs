//! The audit log: one JSON line per API call, in the spirit of CloudTrail, never a secret in it.
//!
//! Records are handed to a writer thread through a channel and appended to the file in batches, so
//! logging costs the request path one channel send. The file is flushed after every batch.

use std::io::Write;
use std::path::Path;
use std::sync::mpsc;

use serde::Serialize;

/// Who made a call, as the endpoint authenticated it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The principal's ARN, `arn:aws:iam::<account>:user/<name>`.
    pub principal_arn: String,
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The request id returned to the caller (`x-amzn-RequestId`).
    pub request_id: String,
    /// The client's address.
    pub source_ip: Option<String>,
}

/// One audit record.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord<'a> {
    /// RFC 3339 UTC.
    pub event_time: String,
    /// The operation, e.g. `GenerateDataKey`.
    pub event_name: &'a str,
    /// The caller's principal ARN.
    pub principal_arn: &'a str,
    /// The access key id used.
    pub access_key_id: &'a str,
    /// Request id.
    pub request_id: &'a str,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip_address: Option<&'a str>,
    /// The key identifier as the request gave it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<&'a str>,
    /// The AWS error name when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'a str>,
}

/// Where audit records go.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<String>,
}

impl AuditLog {
    /// Appends to `path` (created 0600 if missing) from a background thread.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path)?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::new(file);
                while let Ok(line) = rx.recv() {
                    let mut ok = writeln!(out, "{line}").is_ok();
                    while let Ok(more) = rx.try_recv() {
                        ok &= writeln!(out, "{more}").is_ok();
                    }
                    if !ok || out.flush().is_err() {
                        tracing::error!("cannot write the audit log");
                    }
                }
                let _ = out.flush();
            })?;
        Ok(Self { tx })
    }

    /// Queues one record.
    pub fn record(&self, rec: &AuditRecord<'_>) {
        if let Ok(line) = serde_json::to_string(rec) {
            let _ = self.tx.send(line);
        }
    }
}
