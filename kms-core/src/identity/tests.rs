//! The identity model against a real SQLite store: schema 1's principals migrated into users of the
//! home account with AdministratorAccess, identity policies from users, groups and roles, caching
//! dropped on local changes, session tokens opened (and refused) by the service.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use zeroize::Zeroizing;

use super::query::{Params, QueryService};
use super::token::{self, SessionClaims};
use crate::audit::Caller;
use crate::policy::Principal;
use crate::{KeyMaterial, Kms, KmsConfig, RootOfTrust, SoftwareRootKey, Store};

fn root() -> Arc<SoftwareRootKey> {
    Arc::new(SoftwareRootKey::new(
        KeyMaterial::from_slice(&[9; 32]).unwrap(),
    ))
}

async fn open(url: &str, account: &str) -> Kms {
    let mut config = KmsConfig::default();
    config.partition.account_id = account.into();
    Kms::open(Store::connect(url).await.unwrap(), root(), config)
        .await
        .unwrap()
}

fn params(pairs: &[(&str, &str)]) -> Params {
    pairs.iter().copied().collect()
}

fn as_user(p: Principal) -> Caller {
    Caller {
        principal: p,
        ..Caller::default()
    }
}

#[tokio::test]
async fn schema_1_principals_become_admin_users_of_the_home_account() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    // A store as schema 2 left it, with two principals (one adopted, not AKIA-shaped).
    {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        sqlx::raw_sql(include_str!("../../migrations/0001_init.sql"))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(include_str!("../../migrations/0002_custom_key_stores.sql"))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::raw_sql(
            "CREATE TABLE envelope_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL); \
             INSERT INTO envelope_schema VALUES (1, 0), (2, 0);",
        )
        .execute(&pool)
        .await
        .unwrap();
        let r = root();
        for (name, id) in [
            ("admin", "AKIAOLDADMIN00000001"),
            ("Admin", "GK0123456789abcdef"),
        ] {
            let mut aad = b"envelope/principal-secret/v1".to_vec();
            aad.extend_from_slice(id.as_bytes());
            let wrapped = r.wrap(&aad, format!("secret-of-{id}").as_bytes()).unwrap();
            sqlx::query("INSERT INTO principals VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(id)
                .bind(wrapped)
                .bind(1_700_000_000_000i64)
                .execute(&pool)
                .await
                .unwrap();
        }
        // The root check value of this root, as a store of schema 1 has one.
        let check = r
            .wrap(b"envelope/root-check/v1", b"envelope root key check value")
            .unwrap();
        sqlx::query("INSERT INTO envelope_meta VALUES ('root_check', $1)")
            .bind(check)
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let kms = open(&url, "123456789012").await;
    let (p, secret) = kms
        .principal_secret("AKIAOLDADMIN00000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(secret.as_slice(), b"secret-of-AKIAOLDADMIN00000001");
    assert_eq!(p.arn, "arn:aws:iam::123456789012:user/admin");
    assert_eq!(p.user_id.as_deref(), Some("AIDAOLDADMIN00000001"));
    let (q, _) = kms
        .principal_secret("GK0123456789abcdef")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.arn, "arn:aws:iam::123456789012:user/Admin");
    for who in [&p, &q] {
        let policies = kms.identity_policies(who).await.unwrap();
        let names: Vec<_> = policies.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["managed policy arn:aws:iam::aws:policy/AdministratorAccess"]
        );
    }
    // Opened again with another configured account, the migrated users stay where they are.
    drop(kms);
    let again = open(&url, "999999999999").await;
    let (p2, _) = again
        .principal_secret("AKIAOLDADMIN00000001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p2.account, "123456789012");
    // And root migration still re-wraps every access key.
    let n = Kms::migrate_root(
        again.store(),
        root(),
        Arc::new(SoftwareRootKey::new(
            KeyMaterial::from_slice(&[8; 32]).unwrap(),
        )),
    )
    .await
    .unwrap();
    assert_eq!(n, 3, "two access keys and the root check value");
}

#[tokio::test]
async fn identity_policies_follow_users_groups_and_roles() {
    let kms = open("sqlite::memory:", "111122223333").await;
    let admin = Caller::default();
    let run = |action: &'static str, pairs: Vec<(&'static str, String)>| {
        let kms = &kms;
        let admin = &admin;
        async move {
            let p: Params = pairs.into_iter().collect();
            kms.execute_query(admin, QueryService::Iam, action, &p)
                .await
        }
    };
    let doc = |action: &str| {
        format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":"{action}","Resource":"*"}}]}}"#
        )
    };
    run("CreateUser", vec![("UserName", "bob".into())])
        .await
        .unwrap();
    let bob = kms
        .store()
        .user_by_name("111122223333", "bob")
        .await
        .unwrap()
        .unwrap();
    let bob_p = super::user_principal(&bob);
    assert!(kms.identity_policies(&bob_p).await.unwrap().is_empty());
    run(
        "PutUserPolicy",
        vec![
            ("UserName", "bob".into()),
            ("PolicyName", "mine".into()),
            ("PolicyDocument", doc("kms:Encrypt")),
        ],
    )
    .await
    .unwrap();
    run("CreateGroup", vec![("GroupName", "ops".into())])
        .await
        .unwrap();
    run(
        "PutGroupPolicy",
        vec![
            ("GroupName", "ops".into()),
            ("PolicyName", "g".into()),
            ("PolicyDocument", doc("kms:Decrypt")),
        ],
    )
    .await
    .unwrap();
    run(
        "AttachGroupPolicy",
        vec![
            ("GroupName", "ops".into()),
            ("PolicyArn", super::ADMINISTRATOR_ACCESS.into()),
        ],
    )
    .await
    .unwrap();
    // Cached: not a member yet, so the group's policies are not bob's.
    assert_eq!(kms.identity_policies(&bob_p).await.unwrap().len(), 1);
    run(
        "AddUserToGroup",
        vec![("GroupName", "ops".into()), ("UserName", "bob".into())],
    )
    .await
    .unwrap();
    let mut names: Vec<String> = kms
        .identity_policies(&bob_p)
        .await
        .unwrap()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "group inline policy g",
            "managed policy arn:aws:iam::aws:policy/AdministratorAccess",
            "user inline policy mine",
        ]
    );
    // A user's authority is decided by these through the one authorization point.
    let denied = kms
        .execute_query(
            &as_user(super::user_principal(&bob)),
            QueryService::Iam,
            "ListUsers",
            &params(&[]),
        )
        .await;
    assert!(
        denied.is_ok(),
        "AdministratorAccess through the group: {denied:?}"
    );
    run(
        "RemoveUserFromGroup",
        vec![("GroupName", "ops".into()), ("UserName", "bob".into())],
    )
    .await
    .unwrap();
    let denied = kms
        .execute_query(
            &as_user(super::user_principal(&bob)),
            QueryService::Iam,
            "ListUsers",
            &params(&[]),
        )
        .await;
    assert_eq!(denied.unwrap_err().code(), "AccessDenied");
    // A role session gets the role's policies, found by the role's unique id.
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}]}"#;
    run(
        "CreateRole",
        vec![
            ("RoleName", "app".into()),
            ("AssumeRolePolicyDocument", trust.into()),
        ],
    )
    .await
    .unwrap();
    run(
        "PutRolePolicy",
        vec![
            ("RoleName", "app".into()),
            ("PolicyName", "r".into()),
            ("PolicyDocument", doc("kms:GenerateDataKey")),
        ],
    )
    .await
    .unwrap();
    let role = kms
        .store()
        .role_by_name("111122223333", "app")
        .await
        .unwrap()
        .unwrap();
    let session = Principal::assumed_role("111122223333", "app", "s1", &role.role_id);
    let names: Vec<String> = kms
        .identity_policies(&session)
        .await
        .unwrap()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["role inline policy r"]);
    let stranger = Principal::assumed_role("111122223333", "app", "s1", "AROANOSUCHROLE000001");
    assert!(kms.identity_policies(&stranger).await.unwrap().is_empty());
}

#[tokio::test]
async fn session_tokens_open_only_here_and_expire() {
    let kms = open("sqlite::memory:", "111122223333").await;
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}]}"#;
    let role = |action: &str, pairs: &[(&str, &str)]| {
        let p = params(pairs);
        let (kms, action) = (&kms, action.to_string());
        async move {
            kms.execute_query(&Caller::default(), QueryService::Iam, &action, &p)
                .await
                .unwrap()
        }
    };
    role(
        "CreateRole",
        &[
            ("RoleName", "app"),
            ("Path", "/ops/"),
            ("AssumeRolePolicyDocument", trust),
            ("Tags.member.1.Key", "team"),
            ("Tags.member.1.Value", "red"),
        ],
    )
    .await;
    let role_id = kms
        .store()
        .role_by_name("111122223333", "app")
        .await
        .unwrap()
        .unwrap()
        .role_id;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |expires: i64| SessionClaims {
        expires,
        issued: now - 10,
        access_key_id: "ASIAEXAMPLE000000001".into(),
        secret: Zeroizing::new("s".repeat(40)),
        account: "111122223333".into(),
        role_id: role_id.clone(),
        role_arn: "arn:aws:iam::111122223333:role/ops/app".into(),
        session_name: "s1".into(),
    };
    let key = *kms.token_key().await.unwrap();
    let live = token::seal(&key, &claims(now + 60)).unwrap();
    let s = kms
        .session("ASIAEXAMPLE000000001", &live)
        .await
        .unwrap()
        .unwrap();
    assert!(!s.expired);
    assert_eq!(
        s.principal.arn,
        "arn:aws:sts::111122223333:assumed-role/app/s1"
    );
    assert_eq!(
        s.principal.role_arn.as_deref(),
        Some("arn:aws:iam::111122223333:role/ops/app")
    );
    assert_eq!(
        s.principal.user_id.as_deref(),
        Some(format!("{role_id}:s1").as_str())
    );
    assert_eq!(s.secret.as_slice(), "s".repeat(40).as_bytes());
    // The role's tags are the session's (aws:PrincipalTag/…), and it knows when it was issued.
    assert_eq!(
        s.principal.tags.get("team").map(String::as_str),
        Some("red")
    );
    assert_eq!(s.principal.token_issue_time, Some(now - 10));
    // Another access key id with this token: not this session.
    assert!(kms
        .session("ASIAEXAMPLE000000002", &live)
        .await
        .unwrap()
        .is_none());
    let old = token::seal(&key, &claims(now - 1)).unwrap();
    assert!(
        kms.session("ASIAEXAMPLE000000001", &old)
            .await
            .unwrap()
            .unwrap()
            .expired
    );
    // Sealed under another key (another store): unknown.
    let foreign = token::seal(&[1u8; 32], &claims(now + 60)).unwrap();
    assert!(kms
        .session("ASIAEXAMPLE000000001", &foreign)
        .await
        .unwrap()
        .is_none());
    // Once the role is deleted, its sessions are no one's.
    role("DeleteRole", &[("RoleName", "app")]).await;
    assert!(kms
        .session("ASIAEXAMPLE000000001", &live)
        .await
        .unwrap()
        .is_none());
}
