//! The SQLite database file's mode: owner-only whatever the process umask.

use std::path::Path;

use crate::error::{KmsError, Result};

/// What SQLite keeps beside a database file (WAL mode, and a rollback journal after a crash in the
/// other journal mode).
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// The database file of a SQLite URL (`sqlite://PATH?mode=rwc`) and the files SQLite keeps beside it
/// readable by their owner only, whatever the process umask: the database is created 0600 when the
/// URL lets SQLite create it; it and any `-wal`, `-shm` or `-journal` file already there (left by an
/// earlier run or a crash) are narrowed to 0600 when wider. SQLite gives the companions it creates
/// the database file's mode, so new ones follow.
pub(super) fn restrict_sqlite_file(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return Ok(());
    }
    let create = query.split('&').any(|p| p == "mode=rwc");
    restrict(Path::new(path), create)?;
    for suffix in COMPANIONS {
        let mut companion = path.to_string();
        companion.push_str(suffix);
        restrict(Path::new(&companion), false)?;
    }
    Ok(())
}

/// `path` narrowed to 0600 if it exists and is wider; created 0600 if it does not and `create`.
#[cfg(unix)]
fn restrict(path: &Path, create: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let fail = |e: std::io::Error| {
        KmsError::Internal(format!("Cannot open the key store {}: {e}", path.display()))
    };
    let owner_only = || std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    match std::fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => owner_only().map_err(fail),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(fail)?;
            // Exactly 0600: the umask may have taken the owner's bits too.
            owner_only().map_err(fail)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail(e)),
    }
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _create: bool) -> Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_owner_only_and_narrows_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("envelope.db");
        let wal = dir.path().join("envelope.db-wal");
        std::fs::write(&wal, b"left by a crash").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();

        restrict_sqlite_file(&format!("sqlite://{}?mode=rwc", db.display())).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert!(
            !dir.path().join("envelope.db-shm").exists(),
            "nothing made up"
        );

        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o664)).unwrap();
        restrict_sqlite_file(&format!("sqlite://{}", db.display())).unwrap();
        assert_eq!(mode(&db), 0o600);
    }

    #[test]
    fn creates_nothing_the_url_does_not_let_sqlite_create() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("envelope.db");
        restrict_sqlite_file(&format!("sqlite://{}?mode=rw", db.display())).unwrap();
        assert!(!db.exists());
        restrict_sqlite_file("sqlite::memory:").unwrap();
        restrict_sqlite_file("sqlite://x.db?mode=memory").unwrap();
    }
}
