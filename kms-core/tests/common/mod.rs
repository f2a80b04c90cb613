//! What the integration tests share: a fresh, empty store on either backend.

#![allow(dead_code, clippy::unwrap_used)] // each test crate uses part of it; a panic is the failure report

pub mod calls;

/// A fresh, empty store: a SQLite file in a temporary directory, or a new PostgreSQL database.
pub struct Fixture {
    _dir: Option<tempfile::TempDir>,
    pub url: String,
}

/// A store on `backend` (`sqlite`, or anything else for PostgreSQL). `None` when PostgreSQL is asked
/// for and ENVELOPE_TEST_POSTGRES_URL is not set, which fails the test under CI.
pub async fn fixture(backend: &str) -> Option<Fixture> {
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
            Some(Fixture {
                _dir: Some(dir),
                url,
            })
        }
        _ => {
            let Ok(admin) = std::env::var("ENVELOPE_TEST_POSTGRES_URL") else {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI is set but ENVELOPE_TEST_POSTGRES_URL is not"
                );
                eprintln!("ENVELOPE_TEST_POSTGRES_URL not set: skipping the PostgreSQL run");
                return None;
            };
            sqlx::any::install_default_drivers();
            use sqlx::Connection;
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            let name = format!("envelope_t_{}", uuid::Uuid::new_v4().simple());
            sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            Some(Fixture {
                _dir: None,
                url: format!("{base}/{name}"),
            })
        }
    }
}
