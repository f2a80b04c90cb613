//! Every IAM and STS Query body through the endpoint's own reader and writer: the first input byte
//! picks the service (IAM or STS) and the caller (the home account's root, or a user with no policy),
//! the rest is the form body, read by `kms_server::read_form` (parameters at most once, `Action`,
//! `Version`), run by the real dispatcher `Kms::execute_query` (authorization, every action's
//! parameter checks, the policy documents it parses) and written by `kms_server::render`. Any body
//! must be answered with a response or an IAM/STS error, never a panic and never a 5xx
//! (ServiceFailure); the XML written must begin with its element and escape what it echoes.
//!
//! One tokio runtime and one `Kms` per process, over an in-memory SQLite store, with a user
//! `fuzz-user` (no policy), a role `fuzz-role` trusting the account and a group `fuzz-group` for
//! the bodies to name. What earlier inputs made stays, as on a long-lived server.
//!
//! Seed corpus: a valid body for every action (`fuzz/corpus/iam_query`, written by `fuzz/seeds.py`).
#![no_main]

use std::sync::OnceLock;

use kms_core::identity::{Params, QueryService};
use kms_core::policy::Principal;
use kms_core::{Caller, Kms};
use libfuzzer_sys::fuzz_target;

const ACCOUNT: &str = "111122223333";

struct Fixture {
    rt: tokio::runtime::Runtime,
    kms: Kms,
    root: Caller,
    user: Caller,
}

fn caller(principal: Principal) -> Caller {
    Caller {
        principal,
        access_key_id: "AKIAFUZZFUZZFUZZFUZZ".into(),
        request_id: "00000000-0000-4000-8000-000000000000".into(),
        ..Caller::default()
    }
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (rt, kms) = envelope_fuzz::kms_in_memory();
        let root = caller(Principal::root(ACCOUNT));
        let user = rt.block_on(async {
            let trust = format!(
                r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{ACCOUNT}"}},"Action":"sts:AssumeRole"}}]}}"#
            );
            for (action, params) in [
                ("CreateUser", vec![("UserName", "fuzz-user")]),
                ("CreateGroup", vec![("GroupName", "fuzz-group")]),
                (
                    "CreateRole",
                    vec![
                        ("RoleName", "fuzz-role"),
                        ("AssumeRolePolicyDocument", trust.as_str()),
                    ],
                ),
            ] {
                kms.execute_query(&root, QueryService::Iam, action, &params.iter().copied().collect::<Params>())
                    .await
                    .unwrap();
            }
            let user = kms
                .principal_named(&format!("arn:aws:iam::{ACCOUNT}:user/fuzz-user"))
                .await
                .unwrap();
            caller(user)
        });
        Fixture {
            rt,
            kms,
            root,
            user,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let service = if pick & 1 == 0 {
        QueryService::Iam
    } else {
        QueryService::Sts
    };
    let who = if pick & 2 == 0 { &f.root } else { &f.user };
    let request_id = "00000000-0000-4000-8000-000000000000";
    let (action, params) = match kms_server::read_form(body, service) {
        Ok(read) => read,
        Err((code, message)) => {
            assert!(!code.is_empty() && !message.is_empty());
            return;
        }
    };
    let outcome =
        f.rt.block_on(f.kms.execute_query(who, service, &action, &params));
    if let Err(e) = &outcome {
        assert!(e.status() < 500, "{action}: {e:?}");
    }
    let (status, xml) = kms_server::render(service, &action, &outcome, request_id);
    assert!(
        status == 200 || (400..500).contains(&status),
        "{action}: {status}"
    );
    if status != 200 {
        // An error document echoes the caller's input only escaped.
        let message = xml
            .split("<Message>")
            .nth(1)
            .and_then(|m| m.split("</Message>").next())
            .unwrap_or_default();
        assert!(
            !message.contains('<'),
            "{action}: unescaped message {message:?}"
        );
    }
});
