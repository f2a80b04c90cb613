//! IAM policy documents (`kms_core::policy`): any text, parsed as each kind of policy (identity, key
//! policy, trust policy), must parse or be refused with a `PolicyError`, never panic; and a parsed
//! policy, evaluated by `authorize` for a fuzzed request, must decide without panicking:
//!
//! - as the key policy, as an identity policy, and as both;
//! - with a deny-everything identity policy added, nothing is allowed (an explicit deny wins);
//! - a denial has AWS's AccessDeniedException message.
//!
//! Input: the first byte picks the policy type (mod 3) and the principal kind (/3 mod 4: root,
//! user, role session, service); then fields split at 0xff: the policy text, the action, the
//! resource ARN, then condition keys as `key=value` (a key given twice is multivalued).
//! Seed corpus: the documents of `kms-core/src/policy/tests` (`fuzz/seeds.py`).
#![no_main]

use envelope_fuzz::{fields, text};
use kms_core::policy::{
    authorize, NamedPolicy, Policies, Policy, PolicyType, Principal, RequestContext,
};
use libfuzzer_sys::fuzz_target;

const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}"#;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let f = fields(rest);
    let doc = text(&f, 0);
    let kind = [
        PolicyType::Identity,
        PolicyType::KeyPolicy,
        PolicyType::TrustPolicy,
    ][usize::from(pick % 3)];
    // Every kind reads the same text (each has its own required and forbidden members).
    for k in [
        PolicyType::Identity,
        PolicyType::KeyPolicy,
        PolicyType::TrustPolicy,
    ] {
        let _ = Policy::parse(&doc, k);
    }
    let policy = match Policy::parse(&doc, kind) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };

    let account = "111122223333";
    let principal = match (pick / 3) % 4 {
        0 => Principal::root(account),
        1 => Principal::user(account, "alice", "AIDAEXAMPLE").with_tag("team", "blue"),
        2 => Principal::assumed_role(account, "admin", "session", "AROAEXAMPLE"),
        _ => Principal::service("logs.amazonaws.com"),
    };
    let action = text(&f, 1);
    let resource = text(&f, 2);
    let mut ctx = RequestContext::new(principal, &action);
    if !resource.is_empty() {
        ctx = ctx.with_resource(&resource);
    }
    let mut multi: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for pair in f.iter().skip(3) {
        let pair = String::from_utf8_lossy(pair);
        let (k, v) = pair.split_once('=').unwrap_or((&pair, ""));
        multi.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    for (k, vs) in &multi {
        ctx.set_values(k, vs);
    }

    let named = NamedPolicy {
        name: "fuzzed policy",
        policy: &policy,
    };
    let deny = Policy::parse(DENY_ALL, PolicyType::Identity).unwrap();
    let deny = NamedPolicy {
        name: "deny all",
        policy: &deny,
    };
    let cases = [
        Policies {
            resource: Some(named),
            identity: &[],
            grants: &[],
        },
        Policies {
            resource: None,
            identity: &[named],
            grants: &[],
        },
        Policies {
            resource: Some(named),
            identity: &[named],
            grants: &[],
        },
    ];
    for policies in &cases {
        let d = authorize(&ctx, policies);
        if !d.is_allowed() {
            let m = d.denial_message(&ctx).unwrap();
            assert!(m.contains(&action), "{m}");
        }
        let identity = [policies.identity, &[deny]].concat();
        let denied = authorize(
            &ctx,
            &Policies {
                identity: &identity,
                ..*policies
            },
        );
        assert!(!denied.is_allowed(), "{denied:?}");
    }
});
