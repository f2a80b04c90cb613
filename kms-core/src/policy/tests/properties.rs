//! Properties over random policies, requests and grants: an added Deny never allows what was denied,
//! an added Allow never denies what was allowed, and the order of statements and policies never
//! changes the outcome.

use proptest::prelude::*;

use super::*;

const PRINCIPALS: &[&str] = &[
    r#""*""#,
    r#"{"AWS": "arn:aws:iam::111122223333:user/alice"}"#,
    r#"{"AWS": "arn:aws:iam::111122223333:user/bob"}"#,
    r#"{"AWS": "arn:aws:iam::111122223333:root"}"#,
    r#"{"AWS": "111122223333"}"#,
    r#"{"AWS": ["arn:aws:iam::444455556666:root", "arn:aws:iam::111122223333:user/bob"]}"#,
    r#"{"AWS": "arn:aws:iam::444455556666:user/carol"}"#,
];
const ACTIONS: &[&str] = &[
    r#""Action": "kms:*""#,
    r#""Action": "kms:Decrypt""#,
    r#""Action": ["kms:Encrypt", "kms:Create*"]"#,
    r#""Action": "kms:De*""#,
    r#""Action": "*""#,
    r#""NotAction": "kms:Decrypt""#,
];
const RESOURCES: &[&str] = &[
    r#""Resource": "*""#,
    r#""Resource": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab""#,
    r#""Resource": "arn:aws:kms:*:111122223333:key/*""#,
    r#""Resource": "arn:aws:kms:us-east-1:111122223333:key/other""#,
    r#""NotResource": "arn:aws:kms:us-east-1:111122223333:key/other""#,
];
const CONDITIONS: &[&str] = &[
    "",
    r#", "Condition": {"Bool": {"aws:SecureTransport": "true"}}"#,
    r#", "Condition": {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}"#,
    r#", "Condition": {"StringNotEqualsIfExists": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}"#,
    r#", "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333"}}"#,
];

/// A statement as indexes into the tables above.
#[derive(Debug, Clone)]
struct Gen {
    deny: bool,
    principal: usize,
    action: usize,
    resource: usize,
    condition: usize,
}

impl Gen {
    fn json(&self, with_principal: bool) -> String {
        let effect = if self.deny { "Deny" } else { "Allow" };
        let principal = if with_principal {
            format!(r#""Principal": {}, "#, PRINCIPALS[self.principal])
        } else {
            String::new()
        };
        format!(
            r#"{{"Effect": "{effect}", {principal}{}, {}{}}}"#,
            ACTIONS[self.action], RESOURCES[self.resource], CONDITIONS[self.condition]
        )
    }
}

fn statement() -> impl Strategy<Value = Gen> {
    (
        any::<bool>(),
        0..PRINCIPALS.len(),
        0..ACTIONS.len(),
        0..RESOURCES.len(),
        0..CONDITIONS.len(),
    )
        .prop_map(|(deny, principal, action, resource, condition)| Gen {
            deny,
            principal,
            action,
            resource,
            condition,
        })
}

/// A whole scenario: the key policy (none for account-level actions), identity policies, grants
/// and the request.
#[derive(Debug, Clone)]
struct Scenario {
    key: Vec<Gen>,
    identity: Vec<Vec<Gen>>,
    grants: Vec<(usize, bool)>,
    caller: usize,
    action: usize,
    tls: bool,
    via_s3: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec(statement(), 1..4),
        prop::collection::vec(prop::collection::vec(statement(), 1..3), 0..3),
        prop::collection::vec((0..3usize, any::<bool>()), 0..2),
        0..5usize,
        0..3usize,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(key, identity, grants, caller, action, tls, via_s3)| Scenario {
                key,
                identity,
                grants,
                caller,
                action,
                tls,
                via_s3,
            },
        )
}

fn caller(i: usize) -> Principal {
    match i {
        0 => alice(),
        1 => bob(),
        2 => Principal::root(ACCT),
        3 => Principal::user(OTHER, "carol", "AIDAEXAMPLECAROL00"),
        _ => Principal::root(OTHER),
    }
}

/// What kind of decision, without which statement made it (that may depend on order).
fn class(d: &Decision) -> String {
    match d {
        Decision::Allow(Allowed::ResourcePolicy(_)) => "allow: resource".into(),
        Decision::Allow(Allowed::ResourceAndIdentity { .. }) => "allow: both".into(),
        Decision::Allow(Allowed::IdentityPolicy(_)) => "allow: identity".into(),
        Decision::Allow(Allowed::Grant(_)) => "allow: grant".into(),
        Decision::Deny(Denied::ExplicitDeny(s)) => format!("deny: explicit {:?}", s.kind),
        Decision::Deny(other) => format!("deny: {other:?}"),
    }
}

fn run(s: &Scenario) -> Decision {
    let (action, account_level) = [
        ("kms:Decrypt", false),
        ("kms:Encrypt", false),
        ("kms:CreateKey", true),
    ][s.action];
    let mut ctx =
        RequestContext::new(caller(s.caller), action).with_bool(keys::SECURE_TRANSPORT, s.tls);
    if !account_level {
        ctx = ctx.with_resource(KEY);
    }
    if s.via_s3 {
        ctx.set(keys::VIA_SERVICE, "s3.us-east-1.amazonaws.com");
    }
    let key_json: Vec<String> = s.key.iter().map(|g| g.json(true)).collect();
    let kp = key_policy(&key_json.join(", "));
    let ids: Vec<Policy> = s
        .identity
        .iter()
        .map(|stmts| {
            let json: Vec<String> = stmts.iter().map(|g| g.json(false)).collect();
            parse(
                PolicyType::Identity,
                &format!(
                    r#"{{"Version": "2012-10-17", "Statement": [{}]}}"#,
                    json.join(", ")
                ),
            )
        })
        .collect();
    let id_refs: Vec<&Policy> = ids.iter().collect();
    let grants: Vec<Grant> = s
        .grants
        .iter()
        .enumerate()
        .map(|(i, (who, decrypt))| Grant {
            grant_id: format!("g{i}"),
            grantee_principal: caller(*who).arn,
            operations: vec![if *decrypt { "Decrypt" } else { "Encrypt" }.into()],
            constraints: None,
        })
        .collect();
    decide_with_grants(&ctx, (!account_level).then_some(&kp), &id_refs, &grants)
}

/// A deterministic shuffle driven by `seed`.
fn shuffle<T>(v: &mut [T], seed: &mut u64) {
    for i in (1..v.len()).rev() {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = (*seed >> 33) as usize % (i + 1);
        v.swap(i, j);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn an_added_deny_never_allows(s in scenario(), extra in statement(), into in 0..4usize, at in 0..4usize) {
        let before = run(&s);
        let mut t = s.clone();
        let deny = Gen { deny: true, ..extra };
        match into {
            0 => { let at = at.min(t.key.len()); t.key.insert(at, deny) }
            1 => t.identity.push(vec![deny]),
            _ => match t.identity.first_mut() {
                Some(first) => { let at = at.min(first.len()); first.insert(at, deny) }
                None => t.identity.push(vec![deny]),
            },
        }
        let after = run(&t);
        prop_assert!(before.is_allowed() || !after.is_allowed(), "{before:?} -> {after:?}");
    }

    #[test]
    fn an_added_allow_never_denies(s in scenario(), extra in statement(), into in 0..3usize, at in 0..4usize) {
        let before = run(&s);
        let mut t = s.clone();
        let allow = Gen { deny: false, ..extra };
        match into {
            0 => { let at = at.min(t.key.len()); t.key.insert(at, allow) }
            1 => t.identity.push(vec![allow]),
            _ => match t.identity.last_mut() {
                Some(last) => { let at = at.min(last.len()); last.insert(at, allow) }
                None => t.identity.push(vec![allow]),
            },
        }
        let after = run(&t);
        prop_assert!(!before.is_allowed() || after.is_allowed(), "{before:?} -> {after:?}");
    }

    #[test]
    fn order_never_matters(s in scenario(), mut seed in any::<u64>()) {
        let before = run(&s);
        let mut t = s.clone();
        shuffle(&mut t.key, &mut seed);
        for p in &mut t.identity {
            shuffle(p, &mut seed);
        }
        shuffle(&mut t.identity, &mut seed);
        shuffle(&mut t.grants, &mut seed);
        let after = run(&t);
        prop_assert_eq!(class(&before), class(&after));
    }
}

#[test]
fn scenarios_reach_every_outcome() {
    // The generators are only useful if they produce each kind of decision.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let s = scenario().new_tree(&mut runner).unwrap().current();
        seen.insert(class(&run(&s)));
    }
    for want in [
        "allow: resource",
        "allow: both",
        "allow: identity",
        "allow: grant",
        "deny: explicit ResourceBased",
        "deny: explicit IdentityBased",
        "deny: NoResourcePolicyAllows",
        "deny: NoIdentityPolicyAllows",
    ] {
        assert!(seen.contains(want), "never saw {want}: {seen:?}");
    }
}
