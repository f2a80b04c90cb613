//! The audit log: one JSON line per API call, in the spirit of CloudTrail, never a secret in it.
//!
//! Records are handed to a writer thread through a channel and appended to the file in batches, so
//! logging costs the request path one channel send. The file is flushed after every batch.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Who made a call, as the endpoint authenticated it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated principal: user, role session or account root, with its account, ids and
    /// tags, as the policy engine sees it.
    pub principal: crate::policy::Principal,
    /// The access key id the request was signed with.
    pub access_key_id: String,
    /// The request id returned to the caller (`x-amzn-RequestId`).
    pub request_id: String,
    /// The client's address.
    pub source_ip: Option<String>,
    /// Whether the request came over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
}

impl Default for Caller {
    /// The root user of the default account (`111122223333`, [`crate::KmsConfig`]'s default), as
    /// in-process callers and tests act.
    fn default() -> Self {
        Caller {
            principal: crate::policy::Principal::root("111122223333"),
            access_key_id: String::new(),
            request_id: String::new(),
            source_ip: None,
            secure_transport: false,
        }
    }
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
    /// Every authorization decision the call took, in order (none for a call refused before
    /// authorization, such as a malformed request).
    #[serde(skip_serializing_if = "<[AuditDecision]>::is_empty")]
    pub authorization: &'a [AuditDecision],
}

/// One authorization decision, as the audit log records it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditDecision {
    /// The action decided (`kms:Decrypt`).
    pub action: String,
    /// The resource (a key ARN, an alias ARN); absent for account-level actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// `Allow` or `Deny`.
    pub decision: &'static str,
    /// What decided: the policy and statement that allowed or explicitly denied (`key policy of
    /// arn:… statement 1 (Sid "Root")`), the grant that allowed, or that no policy allowed.
    pub reason: String,
}

/// Where audit records go.
///
/// A record is serialized into a shared buffer under a short lock; a writer thread swaps the buffer
/// out every few milliseconds and appends it to the file, so a busy server writes and flushes a few
/// hundred times a second rather than once per call, and no call waits for the disk.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: std::sync::Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    buf: std::sync::Mutex<Vec<u8>>,
    file: std::sync::Mutex<std::fs::File>,
}

impl Shared {
    fn drain(&self) {
        let mut pending = match self.buf.lock() {
            Ok(mut b) if !b.is_empty() => std::mem::take(&mut *b),
            _ => return,
        };
        let Ok(mut f) = self.file.lock() else { return };
        let end = f.metadata().map(|m| m.len());
        if let Err(e) = f.write_all(&pending).and_then(|()| f.flush()) {
            // A full disk takes part of a batch: cut the file back to its last whole record, so the
            // log never holds half a line, and keep the batch for the next round (bounded).
            let cut = end.and_then(|end| f.set_len(end));
            let Ok(mut b) = self.buf.lock() else { return };
            if cut.is_ok() && pending.len() + b.len() <= MAX_UNWRITTEN {
                pending.extend_from_slice(&b);
                *b = pending;
                tracing::error!(error = %e, "cannot write the audit log; records kept to retry");
            } else {
                tracing::error!(error = %e, "cannot write the audit log; records lost");
            }
        }
    }
}

/// At most this many bytes of records wait in memory while the audit log cannot be written.
const MAX_UNWRITTEN: usize = 16 << 20;

/// How often the writer thread appends what has been recorded.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(5);

impl AuditLog {
    /// Appends to `path` from a background thread. The file is owner-only (0600) whatever the
    /// umask: created so, or narrowed when an earlier file is wider.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
        }
        let inner = std::sync::Arc::new(Shared {
            buf: std::sync::Mutex::new(Vec::with_capacity(64 * 1024)),
            file: std::sync::Mutex::new(file),
        });
        let weak = std::sync::Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("audit-log".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.drain();
                    drop(shared);
                    std::thread::sleep(FLUSH_EVERY);
                }
            })?;
        Ok(Self { inner })
    }

    /// Records one call.
    pub fn record(&self, rec: &AuditRecord<'_>) {
        if let Ok(mut buf) = self.inner.buf.lock() {
            if serde_json::to_writer(&mut *buf, rec).is_ok() {
                buf.push(b'\n');
            }
        }
    }

    /// Writes out everything recorded so far (called on shutdown).
    pub fn flush(&self) {
        self.inner.drain();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_reach_the_file_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for op in ["Encrypt", "Decrypt"] {
            log.record(&AuditRecord {
                event_time: "2026-01-01T00:00:00Z".into(),
                event_name: op,
                principal_arn: "arn:aws:iam::111122223333:user/a",
                access_key_id: "AKIA",
                request_id: "r",
                source_ip_address: None,
                key_id: Some("alias/x"),
                error_code: None,
                authorization: &[],
            });
        }
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1]["eventName"], "Decrypt");
        assert_eq!(lines[0]["keyId"], "alias/x");
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_owner_only_even_when_it_was_wider() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _log = AuditLog::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let fresh = dir.path().join("fresh.log");
        let _log = AuditLog::open(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
