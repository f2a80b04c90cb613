//! ListUsers, ListGroups and ListRoles a page at a time: `PathPrefix`, `MaxItems` and `Marker` as IAM
//! takes them, names in bytewise order of their lower-cased form on both databases, so a marker
//! means the same on either. On PostgreSQL the name columns are first given a linguistic (ICU)
//! collation, under which `a_1` sorts before `a1`: the pages must not follow it.

use kms_core::identity::{Params, QueryService, Value};
use kms_core::policy::Principal;
use kms_core::{Caller, Kms};

use super::common::Fixture;

const ACCOUNT: &str = "111122223333";

async fn iam(kms: &Kms, action: &str, pairs: &[(&str, &str)]) -> Value {
    let root = Caller {
        principal: Principal::root(ACCOUNT),
        ..Caller::default()
    };
    let params: Params = pairs.iter().copied().collect();
    kms.execute_query(&root, QueryService::Iam, action, &params)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e:?}"))
        .unwrap_or_else(|| panic!("{action}: no result"))
}

fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Struct(members) => members.iter().find(|(k, _)| *k == name).map(|(_, v)| v),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => panic!("not text: {other:?}"),
    }
}

/// The names a listing returned (`list` of `field`) and its marker.
fn names_and_marker(v: &Value, list: &str, field: &str) -> (Vec<String>, Option<String>) {
    let Some(Value::List(items)) = member(v, list) else {
        panic!("no {list} in {v:?}");
    };
    let names = items
        .iter()
        .map(|e| text(member(e, field).unwrap()))
        .collect();
    (names, member(v, "Marker").map(text))
}

/// Gives the name columns PostgreSQL's ICU `en-US` collation (Debian's server has ICU).
async fn linguistic_names(url: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for table in ["iam_users", "iam_groups", "iam_roles"] {
        sqlx::raw_sql(&format!(
            r#"ALTER TABLE {table} ALTER COLUMN name_key TYPE TEXT COLLATE "en-US-x-icu""#
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
}

pub async fn iam_listings_page_bytewise(f: &Fixture, postgres: bool) {
    let kms = super::kms_on(f).await;
    if postgres {
        linguistic_names(&f.url).await;
    }
    // Lower-cased, bytewise: a-1 < a.1 < a1 < a_1 < ab < ac < b < zed.
    let in_t = ["Zed", "a_1", "a1", "a-1", "a.1", "ab", "AC", "b"];
    for n in in_t {
        iam(&kms, "CreateUser", &[("UserName", n), ("Path", "/t/")]).await;
    }
    // Not under /t/: another path, and one that /t/ is only a string prefix of.
    iam(
        &kms,
        "CreateUser",
        &[("UserName", "a0"), ("Path", "/other/")],
    )
    .await;
    iam(&kms, "CreateUser", &[("UserName", "a2"), ("Path", "/t2/")]).await;

    let page = |marker: Option<&'static str>| {
        let kms = &kms;
        async move {
            let mut p = vec![("PathPrefix", "/t/"), ("MaxItems", "3")];
            p.extend(marker.map(|m| ("Marker", m)));
            names_and_marker(&iam(kms, "ListUsers", &p).await, "Users", "UserName")
        }
    };
    assert_eq!(
        page(None).await,
        (
            vec!["a-1".into(), "a.1".into(), "a1".into()],
            Some("a_1".into())
        )
    );
    assert_eq!(
        page(Some("a_1")).await,
        (
            vec!["a_1".into(), "ab".into(), "AC".into()],
            Some("b".into())
        )
    );
    assert_eq!(
        page(Some("b")).await,
        (vec!["b".into(), "Zed".into()], None)
    );
    // A marker that is no name starts at the first name after it ("a2" < "a_1").
    assert_eq!(
        page(Some("a2")).await,
        (
            vec!["a_1".into(), "ab".into(), "AC".into()],
            Some("b".into())
        )
    );
    assert_eq!(page(Some("zz")).await, (vec![], None));
    // Every path, default MaxItems: all ten, in the same order.
    let (all, marker) = names_and_marker(&iam(&kms, "ListUsers", &[]).await, "Users", "UserName");
    assert_eq!(
        all,
        ["a-1", "a.1", "a0", "a1", "a2", "a_1", "ab", "AC", "b", "Zed"]
    );
    assert_eq!(marker, None);

    // Groups and roles take the same path.
    for n in ["g_1", "G1"] {
        iam(&kms, "CreateGroup", &[("GroupName", n)]).await;
    }
    let groups = iam(&kms, "ListGroups", &[("MaxItems", "1")]).await;
    assert_eq!(
        names_and_marker(&groups, "Groups", "GroupName"),
        (vec!["G1".into()], Some("g_1".into()))
    );
    let trust = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"sts:AssumeRole"}}]}}"#
    );
    for n in ["r_1", "R1"] {
        iam(
            &kms,
            "CreateRole",
            &[("RoleName", n), ("AssumeRolePolicyDocument", &trust)],
        )
        .await;
    }
    let roles = iam(&kms, "ListRoles", &[("MaxItems", "1"), ("Marker", "r_1")]).await;
    assert_eq!(
        names_and_marker(&roles, "Roles", "RoleName"),
        (vec!["r_1".into()], None)
    );
}
