//! Decisions: key policy, identity policies, both, explicit denies, cross-account, NotPrincipal/
//! NotAction/NotResource, grants, role trust policies, and the AccessDeniedException message shapes.

use std::collections::BTreeMap;

use super::*;

fn decrypt(p: Principal) -> RequestContext {
    RequestContext::new(p, "kms:Decrypt").with_resource(KEY)
}

fn sref(policy: &str, kind: PolicyKind, index: usize, sid: Option<&str>) -> StatementRef {
    StatementRef {
        policy: policy.into(),
        kind,
        index,
        sid: sid.map(Into::into),
    }
}

const ALLOW_DECRYPT: &str =
    r#"{"Sid": "UseKey", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}"#;

fn allow_alice_in_key_policy() -> Policy {
    key_policy(
        r#"{"Sid": "Alice", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"},
            "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}"#,
    )
}

#[test]
fn key_policy_alone_allows_the_named_principal() {
    let kp = allow_alice_in_key_policy();
    let d = decide(&decrypt(alice()), Some(&kp), &[]);
    assert_eq!(
        d,
        Decision::Allow(Allowed::ResourcePolicy(sref(
            "key policy",
            PolicyKind::ResourceBased,
            0,
            Some("Alice")
        )))
    );
    let ctx = decrypt(bob());
    let d = decide(&ctx, Some(&kp), &[]);
    assert_eq!(d, Decision::Deny(Denied::NoResourcePolicyAllows));
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/bob is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no resource-based policy allows the kms:Decrypt action")
    );
    // Actions match ignoring case; kms:GenerateDataKey is not allowed.
    let kp2 = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/alice"}, "Action": "KMS:decrypt", "Resource": "*"}"#,
    );
    assert!(decide(&decrypt(alice()), Some(&kp2), &[]).is_allowed());
    let gdk = RequestContext::new(alice(), "kms:GenerateDataKey").with_resource(KEY);
    assert!(!decide(&gdk, Some(&kp2), &[]).is_allowed());
}

#[test]
fn account_root_statement_delegates_to_identity_policies() {
    let kp = key_policy(ROOT_STATEMENT);
    let ip = identity(ALLOW_DECRYPT);
    let ctx = decrypt(alice());
    assert_eq!(
        decide(&ctx, Some(&kp), &[&ip]),
        Decision::Allow(Allowed::ResourceAndIdentity {
            resource: sref(
                "key policy",
                PolicyKind::ResourceBased,
                0,
                Some("Enable IAM User Permissions")
            ),
            identity: Some(sref(
                "identity policy 0",
                PolicyKind::IdentityBased,
                0,
                Some("UseKey")
            )),
        })
    );
    let d = decide(&ctx, Some(&kp), &[]);
    assert_eq!(d, Decision::Deny(Denied::NoIdentityPolicyAllows));
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:Decrypt action")
    );
    // The bare account id works like the root ARN.
    let kp_id = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "111122223333"}, "Action": "kms:*", "Resource": "*"}"#,
    );
    assert!(decide(&ctx, Some(&kp_id), &[&ip]).is_allowed());
    // An identity policy for another key does not help.
    let other_key = identity(
        r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:111122223333:key/other"}"#,
    );
    assert!(!decide(&ctx, Some(&kp), &[&other_key]).is_allowed());
    let this_key = identity(
        r#"{"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:*:111122223333:key/*"}"#,
    );
    assert!(decide(&ctx, Some(&kp), &[&other_key, &this_key]).is_allowed());
}

#[test]
fn key_policy_without_the_root_statement_ignores_iam_policies() {
    let kp = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "kms:*", "Resource": "*"}"#,
    );
    let admin = identity(r#"{"Effect": "Allow", "Action": "*", "Resource": "*"}"#);
    let ctx = decrypt(alice());
    assert_eq!(
        decide(&ctx, Some(&kp), &[&admin]),
        Decision::Deny(Denied::NoResourcePolicyAllows)
    );
    // Not even the root user gets in.
    assert!(!decide(&decrypt(Principal::root(ACCT)), Some(&kp), &[]).is_allowed());
}

#[test]
fn root_user_needs_the_key_policy_but_no_identity_policy() {
    let kp = key_policy(ROOT_STATEMENT);
    assert_eq!(
        decide(&decrypt(Principal::root(ACCT)), Some(&kp), &[]),
        Decision::Allow(Allowed::ResourcePolicy(sref(
            "key policy",
            PolicyKind::ResourceBased,
            0,
            Some("Enable IAM User Permissions")
        )))
    );
    let create = RequestContext::new(Principal::root(ACCT), "kms:CreateKey");
    assert_eq!(
        decide(&create, None, &[]),
        Decision::Allow(Allowed::IdentityPolicy(None))
    );
}

#[test]
fn explicit_deny_beats_allow() {
    let ctx = decrypt(alice());
    let kp = key_policy(&format!(
        r#"{ROOT_STATEMENT}, {{"Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}}"#
    ));
    let ip = identity(ALLOW_DECRYPT);
    let d = decide(&ctx, Some(&kp), &[&ip]);
    assert_eq!(
        d,
        Decision::Deny(Denied::ExplicitDeny(sref(
            "key policy",
            PolicyKind::ResourceBased,
            1,
            Some("NoDecrypt")
        )))
    );
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab with an explicit deny in a resource-based policy")
    );
    let kp = allow_alice_in_key_policy();
    let deny = identity(r#"{"Effect": "Deny", "Action": "kms:*", "Resource": "*"}"#);
    let d = decide(&ctx, Some(&kp), &[&ip, &deny]);
    assert_eq!(
        d,
        Decision::Deny(Denied::ExplicitDeny(sref(
            "identity policy 1",
            PolicyKind::IdentityBased,
            0,
            None
        )))
    );
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab with an explicit deny in an identity-based policy")
    );
    // A Deny whose condition does not hold does not apply.
    let deny_http = identity(
        r#"{"Effect": "Deny", "Action": "kms:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}"#,
    );
    assert!(decide(
        &ctx.clone().with_bool(keys::SECURE_TRANSPORT, true),
        Some(&kp),
        &[&deny_http]
    )
    .is_allowed());
    assert!(!decide(
        &ctx.with_bool(keys::SECURE_TRANSPORT, false),
        Some(&kp),
        &[&deny_http]
    )
    .is_allowed());
}

#[test]
fn account_level_actions_need_an_identity_policy() {
    let ctx = RequestContext::new(alice(), "kms:CreateKey");
    let d = decide(&ctx, None, &[]);
    assert_eq!(d, Decision::Deny(Denied::NoIdentityPolicyAllows));
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:CreateKey because no identity-based policy allows the kms:CreateKey action")
    );
    let ip = identity(
        r#"{"Sid": "Create", "Effect": "Allow", "Action": "kms:Create*", "Resource": "*"}"#,
    );
    assert_eq!(
        decide(&ctx, None, &[&ip]),
        Decision::Allow(Allowed::IdentityPolicy(Some(sref(
            "identity policy 0",
            PolicyKind::IdentityBased,
            0,
            Some("Create")
        ))))
    );
    // A key ARN resource does not cover an account-level action.
    let keys_only = identity(
        r#"{"Effect": "Allow", "Action": "kms:*", "Resource": "arn:aws:kms:*:111122223333:key/*"}"#,
    );
    assert!(!decide(&ctx, None, &[&keys_only]).is_allowed());
    let deny = identity(r#"{"Effect": "Deny", "Action": "kms:CreateKey", "Resource": "*"}"#);
    let d = decide(&ctx, None, &[&ip, &deny]);
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:CreateKey with an explicit deny in an identity-based policy")
    );
}

#[test]
fn cross_account_needs_both_sides() {
    let carol = Principal::user(OTHER, "carol", "AIDAEXAMPLECAROL00");
    let ctx = decrypt(carol.clone());
    let ip = identity(
        r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:111122223333:key/*"}"#,
    );
    let trusts_other = key_policy(&format!(
        r#"{ROOT_STATEMENT}, {{"Sid": "Other", "Effect": "Allow", "Principal": {{"AWS": "arn:aws:iam::444455556666:root"}}, "Action": "kms:Decrypt", "Resource": "*"}}"#
    ));
    assert!(matches!(
        decide(&ctx, Some(&trusts_other), &[&ip]),
        Decision::Allow(Allowed::ResourceAndIdentity { .. })
    ));
    assert_eq!(
        decide(&ctx, Some(&trusts_other), &[]),
        Decision::Deny(Denied::NoIdentityPolicyAllows)
    );
    // The key policy does not name the other account.
    let own_only = key_policy(ROOT_STATEMENT);
    assert_eq!(
        decide(&ctx, Some(&own_only), &[&ip]),
        Decision::Deny(Denied::NoResourcePolicyAllows)
    );
    // Naming the principal itself still needs its account's identity policy.
    let names_carol = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::444455556666:user/carol"}, "Action": "kms:Decrypt", "Resource": "*"}"#,
    );
    assert_eq!(
        decide(&ctx, Some(&names_carol), &[]),
        Decision::Deny(Denied::NoIdentityPolicyAllows)
    );
    assert!(decide(&ctx, Some(&names_carol), &[&ip]).is_allowed());
    // The other account's root user needs no identity policy.
    assert!(decide(&decrypt(Principal::root(OTHER)), Some(&trusts_other), &[]).is_allowed());
    // kms:CallerAccount limits a statement to callers of one account.
    let only_own_callers = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333"}}}"#,
    );
    assert!(decide(&decrypt(alice()), Some(&only_own_callers), &[]).is_allowed());
    assert!(!decide(&ctx, Some(&only_own_callers), &[&ip]).is_allowed());
}

#[test]
fn not_principal_not_action_not_resource() {
    // Deny everyone but alice (NotPrincipal), beside the root statement.
    let kp = key_policy(&format!(
        r#"{ROOT_STATEMENT}, {{"Effect": "Deny", "NotPrincipal": {{"AWS": ["arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:root"]}}, "Action": "kms:*", "Resource": "*"}}"#
    ));
    let ip = identity(ALLOW_DECRYPT);
    assert!(decide(&decrypt(alice()), Some(&kp), &[&ip]).is_allowed());
    assert!(matches!(
        decide(&decrypt(bob()), Some(&kp), &[&ip]),
        Decision::Deny(Denied::ExplicitDeny(_))
    ));
    // AWS (reference_policies_elements_notprincipal): the account must be named too, and a role
    // session needs its session ARN, its role ARN and its account.
    let not_principal = |names: &str| {
        key_policy(&format!(
            r#"{ROOT_STATEMENT}, {{"Effect": "Deny", "NotPrincipal": {{"AWS": [{names}]}}, "Action": "kms:*", "Resource": "*"}}"#
        ))
    };
    let user_only = not_principal(r#""arn:aws:iam::111122223333:user/alice""#);
    assert!(!decide(&decrypt(alice()), Some(&user_only), &[&ip]).is_allowed());
    let session = Principal::assumed_role(ACCT, "Ops", "s1", "AROAEXAMPLEOPS0000");
    let all_three = not_principal(
        r#""arn:aws:sts::111122223333:assumed-role/Ops/s1", "arn:aws:iam::111122223333:role/Ops", "111122223333""#,
    );
    assert!(decide(&decrypt(session.clone()), Some(&all_three), &[&ip]).is_allowed());
    let no_role =
        not_principal(r#""arn:aws:sts::111122223333:assumed-role/Ops/s1", "111122223333""#);
    assert!(!decide(&decrypt(session), Some(&no_role), &[&ip]).is_allowed());
    let account_only = not_principal(r#""111122223333""#);
    assert!(decide(&decrypt(Principal::root(ACCT)), Some(&account_only), &[]).is_allowed());
    assert!(!decide(&decrypt(alice()), Some(&account_only), &[&ip]).is_allowed());
    // NotAction: everything but key deletion.
    let not_action = identity(
        r#"{"Effect": "Allow", "NotAction": ["kms:ScheduleKeyDeletion", "kms:Delete*"], "Resource": "*"}"#,
    );
    let root = key_policy(ROOT_STATEMENT);
    assert!(decide(&decrypt(alice()), Some(&root), &[&not_action]).is_allowed());
    let delete = RequestContext::new(alice(), "kms:ScheduleKeyDeletion").with_resource(KEY);
    assert!(!decide(&delete, Some(&root), &[&not_action]).is_allowed());
    // NotResource: every key but this one.
    let not_resource = identity(&format!(
        r#"{{"Effect": "Allow", "Action": "kms:*", "NotResource": "{KEY}"}}"#
    ));
    assert!(!decide(&decrypt(alice()), Some(&root), &[&not_resource]).is_allowed());
    let other = RequestContext::new(alice(), "kms:Decrypt")
        .with_resource("arn:aws:kms:us-east-1:111122223333:key/other");
    assert!(decide(&other, Some(&root), &[&not_resource]).is_allowed());
}

#[test]
fn principals_by_role_session_service_and_unique_id() {
    let session = Principal::assumed_role(ACCT, "Ops", "s1", "AROAEXAMPLEOPS0000");
    let by_role = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/Ops"}, "Action": "kms:*", "Resource": "*"}"#,
    );
    assert!(decide(&decrypt(session.clone()), Some(&by_role), &[]).is_allowed());
    let by_session = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "arn:aws:sts::111122223333:assumed-role/Ops/s1"}, "Action": "kms:*", "Resource": "*"}"#,
    );
    assert!(decide(&decrypt(session.clone()), Some(&by_session), &[]).is_allowed());
    let by_id = key_policy(
        r#"{"Effect": "Allow", "Principal": {"AWS": "AROAEXAMPLEOPS0000"}, "Action": "kms:*", "Resource": "*"}"#,
    );
    assert!(decide(&decrypt(session), Some(&by_id), &[]).is_allowed());
    let svc = key_policy(
        r#"{"Effect": "Allow", "Principal": {"Service": "logs.amazonaws.com"}, "Action": "kms:Decrypt", "Resource": "*"}"#,
    );
    assert!(decide(
        &decrypt(Principal::service("logs.amazonaws.com")),
        Some(&svc),
        &[]
    )
    .is_allowed());
    assert!(!decide(
        &decrypt(Principal::service("s3.amazonaws.com")),
        Some(&svc),
        &[]
    )
    .is_allowed());
    assert!(!decide(&decrypt(alice()), Some(&svc), &[]).is_allowed());
}

#[test]
fn resource_variables() {
    let root = key_policy(ROOT_STATEMENT);
    let ip = identity(
        r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:*:111122223333:key/${aws:PrincipalTag/KeyId}"}"#,
    );
    let tagged = |id: &str| decrypt(alice().with_tag("KeyId", id));
    assert!(decide(
        &tagged("1234abcd-12ab-34cd-56ef-1234567890ab"),
        Some(&root),
        &[&ip]
    )
    .is_allowed());
    assert!(!decide(&tagged("other"), Some(&root), &[&ip]).is_allowed());
    assert!(
        !decide(&decrypt(alice()), Some(&root), &[&ip]).is_allowed(),
        "no tag: no match"
    );
}

fn ec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn grants_with_constraints() {
    let kp = key_policy(ROOT_STATEMENT);
    let grant = |constraints| Grant {
        grant_id: "g-1".into(),
        grantee_principal: "arn:aws:iam::111122223333:user/alice".into(),
        operations: vec!["Decrypt".into(), "GenerateDataKey".into()],
        constraints,
    };
    let with = |pairs: &[(&str, &str)]| decrypt(alice()).with_encryption_context(&ec(pairs));
    let plain = grant(None);
    assert_eq!(
        decide_with_grants(&with(&[]), Some(&kp), &[], std::slice::from_ref(&plain)),
        Decision::Allow(Allowed::Grant("g-1".into()))
    );
    // Another operation, another grantee: no.
    let encrypt = RequestContext::new(alice(), "kms:Encrypt").with_resource(KEY);
    assert!(
        !decide_with_grants(&encrypt, Some(&kp), &[], std::slice::from_ref(&plain)).is_allowed()
    );
    assert!(!decide_with_grants(
        &decrypt(bob()),
        Some(&kp),
        &[],
        std::slice::from_ref(&plain)
    )
    .is_allowed());
    let subset = grant(Some(GrantConstraints {
        encryption_context_subset: Some(ec(&[("Dept", "IT")])),
        encryption_context_equals: None,
    }));
    let g = std::slice::from_ref(&subset);
    assert!(decide_with_grants(&with(&[("Dept", "IT")]), Some(&kp), &[], g).is_allowed());
    assert!(
        decide_with_grants(&with(&[("Dept", "IT"), ("Extra", "1")]), Some(&kp), &[], g)
            .is_allowed()
    );
    assert!(!decide_with_grants(&with(&[("Dept", "HR")]), Some(&kp), &[], g).is_allowed());
    // The key of a constraint pair matches whatever its case; the value must match exactly
    // (KMS API reference, GrantConstraints).
    assert!(decide_with_grants(&with(&[("dept", "IT")]), Some(&kp), &[], g).is_allowed());
    assert!(!decide_with_grants(&with(&[("Dept", "it")]), Some(&kp), &[], g).is_allowed());
    assert!(!decide_with_grants(&with(&[]), Some(&kp), &[], g).is_allowed());
    let equals = grant(Some(GrantConstraints {
        encryption_context_subset: None,
        encryption_context_equals: Some(ec(&[("Dept", "IT")])),
    }));
    let g = std::slice::from_ref(&equals);
    assert!(decide_with_grants(&with(&[("Dept", "IT")]), Some(&kp), &[], g).is_allowed());
    assert!(decide_with_grants(&with(&[("DEPT", "IT")]), Some(&kp), &[], g).is_allowed());
    // Keys that differ only in case cannot both be matched by one pair of the request.
    let twice = grant(Some(GrantConstraints {
        encryption_context_subset: None,
        encryption_context_equals: Some(ec(&[("Dept", "IT"), ("dept", "IT")])),
    }));
    let t = std::slice::from_ref(&twice);
    assert!(
        !decide_with_grants(&with(&[("Dept", "IT"), ("Other", "x")]), Some(&kp), &[], t)
            .is_allowed()
    );
    assert!(!decide_with_grants(&with(&[("Dept", "It")]), Some(&kp), &[], g).is_allowed());
    assert!(
        !decide_with_grants(&with(&[("Dept", "IT"), ("Extra", "1")]), Some(&kp), &[], g)
            .is_allowed()
    );
    // An operation without an encryption context: constraints are not checked.
    assert!(decide_with_grants(&decrypt(alice()), Some(&kp), &[], g).is_allowed());
    // A grant to a role covers its sessions.
    let role_grant = Grant {
        grantee_principal: "arn:aws:iam::111122223333:role/Ops".into(),
        ..plain.clone()
    };
    let session = Principal::assumed_role(ACCT, "Ops", "s1", "AROAEXAMPLEOPS0000");
    assert!(decide_with_grants(&decrypt(session), Some(&kp), &[], &[role_grant]).is_allowed());
    // An explicit deny beats a grant.
    let deny = identity(r#"{"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}"#);
    assert!(!decide_with_grants(&with(&[]), Some(&kp), &[&deny], &[plain]).is_allowed());
}

#[test]
fn role_trust_policies() {
    let role = "arn:aws:iam::111122223333:role/Ops";
    let assume = |p: Principal| RequestContext::new(p, "sts:AssumeRole").with_resource(role);
    let trust = |principal: &str| {
        parse(
            PolicyType::TrustPolicy,
            &format!(
                r#"{{"Version": "2012-10-17", "Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{principal}"}}, "Action": "sts:AssumeRole"}}}}"#
            ),
        )
    };
    let may_assume = identity(&format!(
        r#"{{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "{role}"}}"#
    ));
    // Same account, trust policy names the user: enough on its own.
    let names_alice = trust("arn:aws:iam::111122223333:user/alice");
    assert!(decide(&assume(alice()), Some(&names_alice), &[]).is_allowed());
    assert!(!decide(&assume(bob()), Some(&names_alice), &[&may_assume]).is_allowed());
    // Trust policy names the account: an identity policy must allow too.
    let names_account = trust("arn:aws:iam::111122223333:root");
    assert_eq!(
        decide(&assume(alice()), Some(&names_account), &[]),
        Decision::Deny(Denied::NoIdentityPolicyAllows)
    );
    assert!(decide(&assume(alice()), Some(&names_account), &[&may_assume]).is_allowed());
    // Another account: both sides, whatever the trust policy names.
    let carol = Principal::user(OTHER, "carol", "AIDAEXAMPLECAROL00");
    let names_carol = trust("arn:aws:iam::444455556666:user/carol");
    assert_eq!(
        decide(&assume(carol.clone()), Some(&names_carol), &[]),
        Decision::Deny(Denied::NoIdentityPolicyAllows)
    );
    assert!(decide(&assume(carol.clone()), Some(&names_carol), &[&may_assume]).is_allowed());
    let ctx = assume(carol);
    let d = decide(&ctx, Some(&names_account), &[&may_assume]);
    assert_eq!(
        d.denial_message(&ctx).as_deref(),
        Some("User: arn:aws:iam::444455556666:user/carol is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111122223333:role/Ops because no resource-based policy allows the sts:AssumeRole action")
    );
}

#[test]
fn message_shapes() {
    let s = sref("p", PolicyKind::ResourceBased, 0, None);
    let u = "arn:aws:iam::111122223333:user/alice";
    assert_eq!(
        access_denied_message(u, "kms:Decrypt", Some("the resource associated with this ciphertext"), &Denied::NoIdentityPolicyAllows),
        "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:Decrypt on the resource associated with this ciphertext because no identity-based policy allows the kms:Decrypt action"
    );
    assert_eq!(
        access_denied_message(u, "kms:ListKeys", None, &Denied::ExplicitDeny(s)),
        "User: arn:aws:iam::111122223333:user/alice is not authorized to perform: kms:ListKeys with an explicit deny in a resource-based policy"
    );
    assert_eq!(
        Decision::Allow(Allowed::Grant("g".into())).denial_message(&decrypt(alice())),
        None
    );
}

#[test]
fn default_key_policy_with_administrators_and_users() {
    // The console's default key policy (KMS Developer Guide, key-policy-default.html): the account
    // statement, key administrators, key users.
    let kp = key_policy(&format!(
        r#"{ROOT_STATEMENT},
        {{"Sid": "Allow access for Key Administrators", "Effect": "Allow",
          "Principal": {{"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"}},
          "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
                     "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
                     "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
          "Resource": "*"}},
        {{"Sid": "Allow use of the key", "Effect": "Allow",
          "Principal": {{"AWS": "arn:aws:iam::111122223333:role/KeyUser"}},
          "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
          "Resource": "*"}},
        {{"Sid": "Allow attachment of persistent resources", "Effect": "Allow",
          "Principal": {{"AWS": "arn:aws:iam::111122223333:role/KeyUser"}},
          "Action": ["kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"], "Resource": "*",
          "Condition": {{"Bool": {{"kms:GrantIsForAWSResource": "true"}}}}}}"#
    ));
    let admin = Principal::assumed_role(ACCT, "KeyAdmin", "a", "AROAEXAMPLEADMIN00");
    let user = Principal::assumed_role(ACCT, "KeyUser", "u", "AROAEXAMPLEUSER000");
    let on_key =
        |p: &Principal, action: &str| RequestContext::new(p.clone(), action).with_resource(KEY);
    let allowed = |ctx: &RequestContext| decide(ctx, Some(&kp), &[]).is_allowed();
    assert!(allowed(&on_key(&admin, "kms:ScheduleKeyDeletion")));
    assert!(allowed(&on_key(&admin, "kms:PutKeyPolicy")));
    assert!(!allowed(&on_key(&admin, "kms:Decrypt")));
    assert!(allowed(&on_key(&user, "kms:Decrypt")));
    assert!(allowed(&on_key(&user, "kms:ReEncryptFrom")));
    assert!(!allowed(&on_key(&user, "kms:ScheduleKeyDeletion")));
    // CreateGrant only for an AWS service acting for the user.
    let grant = |for_aws: bool| {
        on_key(&user, "kms:CreateGrant").with_bool(keys::GRANT_IS_FOR_AWS_RESOURCE, for_aws)
    };
    assert_eq!(
        decide(&grant(true), Some(&kp), &[]),
        Decision::Allow(Allowed::ResourcePolicy(sref(
            "key policy",
            PolicyKind::ResourceBased,
            3,
            Some("Allow attachment of persistent resources")
        )))
    );
    let ctx = grant(false);
    assert_eq!(
        decide(&ctx, Some(&kp), &[]).denial_message(&ctx).as_deref(),
        Some("User: arn:aws:sts::111122223333:assumed-role/KeyUser/u is not authorized to perform: kms:CreateGrant on resource: arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab because no identity-based policy allows the kms:CreateGrant action")
    );
}

#[test]
fn a_key_policy_statement_without_action_or_resource_is_accepted_and_has_no_effect() {
    // AWS: "If either of the required Resource or Action elements are missing from a key policy
    // statement, the policy statement has no effect", and CreateKey/PutKeyPolicy succeed.
    let alice_arn = "arn:aws:iam::111122223333:user/alice";
    for statement in [
        format!(
            r#"{{"Effect": "Allow", "Principal": {{"AWS": "{alice_arn}"}}, "Action": "kms:Decrypt"}}"#
        ),
        format!(r#"{{"Effect": "Allow", "Principal": {{"AWS": "{alice_arn}"}}, "Resource": "*"}}"#),
    ] {
        let key = key_policy(&statement);
        assert!(
            !decide(&decrypt(alice()), Some(&key), &[]).is_allowed(),
            "{statement}"
        );
    }
    // A Deny without Resource denies nothing either.
    let key = key_policy(&format!(
        r#"{ROOT_STATEMENT}, {{"Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt"}}"#
    ));
    assert!(decide(
        &decrypt(alice()),
        Some(&key),
        &[&identity(
            r#"{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}"#
        )]
    )
    .is_allowed());
    // Identity policies still need both.
    assert!(Policy::parse(
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt"}]}"#,
        PolicyType::Identity
    )
    .is_err());
}
