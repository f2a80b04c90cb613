//! Every condition operator, `…IfExists`, the set qualifiers with their empty-set rules, and
//! variables in condition values. Cases marked "AWS" are the documented examples of the IAM User
//! Guide pages reference_policies_elements_condition_operators.html and
//! reference_policies_condition-single-vs-multi-valued-context-keys.html, or of the KMS Developer
//! Guide page conditions-kms.html (condition keys for AWS KMS).

use std::collections::BTreeMap;

use super::*;

/// Whether an identity policy allowing kms:Decrypt under `condition` allows the request.
fn holds(condition: &str, ctx: &RequestContext) -> bool {
    let p = identity(&format!(
        r#"{{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*", "Condition": {condition}}}"#
    ));
    decide(ctx, None, &[&p]).is_allowed()
}

/// alice calling kms:Decrypt with these keys set (a key with no values is the empty set).
fn ctx(keys: &[(&str, &[&str])]) -> RequestContext {
    let mut c = RequestContext::new(alice(), "kms:Decrypt");
    for (k, v) in keys {
        c.set_values(k, v.iter().copied());
    }
    c
}

fn ec(pairs: &[(&str, &str)]) -> RequestContext {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    RequestContext::new(alice(), "kms:Decrypt").with_encryption_context(&map)
}

/// (condition, context keys, expected)
type Case<'a> = (&'a str, &'a [(&'a str, &'a [&'a str])], bool);

fn run(cases: &[Case<'_>]) {
    for (i, (condition, keys, want)) in cases.iter().enumerate() {
        assert_eq!(
            holds(condition, &ctx(keys)),
            *want,
            "case {i}: {condition} with {keys:?}"
        );
    }
}

#[test]
#[rustfmt::skip]
fn string_operators() {
    const K: &str = "kms:ViaService";
    run(&[
        // AWS (conditions-kms): kms:ViaService with StringEquals.
        (r#"{"StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}"#, &[(K, &["ec2.us-west-2.amazonaws.com"])], true),
        (r#"{"StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}"#, &[(K, &["EC2.us-west-2.amazonaws.com"])], false),
        (r#"{"StringEquals": {"kms:ViaService": "ec2.us-west-2.amazonaws.com"}}"#, &[], false),
        // Key names ignore case.
        (r#"{"StringEquals": {"KMS:VIASERVICE": "s3"}}"#, &[(K, &["s3"])], true),
        // Several policy values are OR'ed.
        (r#"{"StringEquals": {"kms:ViaService": ["a", "s3"]}}"#, &[(K, &["s3"])], true),
        // No wildcards in StringEquals.
        (r#"{"StringEquals": {"kms:ViaService": "s*"}}"#, &[(K, &["s3"])], false),
        (r#"{"StringEquals": {"kms:ViaService": "s*"}}"#, &[(K, &["s*"])], true),
        // Negated: true for a value matching none of the policy's, and for a missing key.
        (r#"{"StringNotEquals": {"kms:ViaService": ["a", "b"]}}"#, &[(K, &["c"])], true),
        (r#"{"StringNotEquals": {"kms:ViaService": ["a", "b"]}}"#, &[(K, &["b"])], false),
        (r#"{"StringNotEquals": {"kms:ViaService": "a"}}"#, &[], true),
        (r#"{"StringEqualsIgnoreCase": {"kms:ViaService": "S3"}}"#, &[(K, &["s3"])], true),
        (r#"{"StringEqualsIgnoreCase": {"kms:ViaService": "S3"}}"#, &[(K, &["s4"])], false),
        (r#"{"StringNotEqualsIgnoreCase": {"kms:ViaService": "S3"}}"#, &[(K, &["s3"])], false),
        (r#"{"StringNotEqualsIgnoreCase": {"kms:ViaService": "S3"}}"#, &[(K, &["ec2"])], true),
        (r#"{"StringLike": {"kms:ViaService": "*.us-west-2.amazonaws.com"}}"#, &[(K, &["ec2.us-west-2.amazonaws.com"])], true),
        (r#"{"StringLike": {"kms:ViaService": "*.us-west-2.amazonaws.com"}}"#, &[(K, &["ec2.us-east-1.amazonaws.com"])], false),
        (r#"{"StringLike": {"kms:ViaService": "ec?.*"}}"#, &[(K, &["ec2.x"])], true),
        (r#"{"StringLike": {"kms:ViaService": "EC?.*"}}"#, &[(K, &["ec2.x"])], false),
        (r#"{"StringNotLike": {"kms:ViaService": "ec2.*"}}"#, &[(K, &["s3.x"])], true),
        (r#"{"StringNotLike": {"kms:ViaService": "ec2.*"}}"#, &[(K, &["ec2.x"])], false),
        (r#"{"StringNotLike": {"kms:ViaService": "ec2.*"}}"#, &[], true),
    ]);
}

#[test]
#[rustfmt::skip]
fn numeric_operators() {
    const K: &str = "kms:X";
    run(&[
        (r#"{"NumericLessThan": {"kms:X": "10"}}"#, &[(K, &["9"])], true),
        (r#"{"NumericLessThan": {"kms:X": "10"}}"#, &[(K, &["10"])], false),
        (r#"{"NumericLessThanEquals": {"kms:X": "10"}}"#, &[(K, &["10"])], true),
        (r#"{"NumericLessThanEquals": {"kms:X": 10}}"#, &[(K, &["10.5"])], false),
        (r#"{"NumericGreaterThan": {"kms:X": 10}}"#, &[(K, &["10.5"])], true),
        (r#"{"NumericGreaterThan": {"kms:X": 10}}"#, &[(K, &["-11"])], false),
        (r#"{"NumericGreaterThanEquals": {"kms:X": -1}}"#, &[(K, &["-1"])], true),
        (r#"{"NumericEquals": {"kms:X": 10}}"#, &[(K, &["10.0"])], true),
        (r#"{"NumericEquals": {"kms:X": [1, 2]}}"#, &[(K, &["2"])], true),
        (r#"{"NumericEquals": {"kms:X": 10}}"#, &[(K, &["ten"])], false),
        (r#"{"NumericNotEquals": {"kms:X": 10}}"#, &[(K, &["11"])], true),
        (r#"{"NumericNotEquals": {"kms:X": 10}}"#, &[(K, &["10"])], false),
        (r#"{"NumericNotEquals": {"kms:X": 10}}"#, &[], true),
        (r#"{"NumericLessThan": {"kms:X": 10}}"#, &[], false),
    ]);
}

#[test]
#[rustfmt::skip]
fn date_operators() {
    const K: &str = "aws:CurrentTime";
    const NOW: &[&str] = &["2026-01-02T03:04:05Z"];
    run(&[
        // AWS (condition operators): a date as ISO 8601 or epoch seconds.
        (r#"{"DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"}}"#, &[(K, NOW)], true),
        (r#"{"DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"}}"#, &[(K, NOW)], false),
        (r#"{"DateLessThan": {"aws:CurrentTime": "2027-01-01"}}"#, &[(K, NOW)], true),
        (r#"{"DateEquals": {"aws:CurrentTime": 1767323045}}"#, &[(K, NOW)], true),
        (r#"{"DateEquals": {"aws:CurrentTime": "2026-01-02T04:04:05+01:00"}}"#, &[(K, NOW)], true),
        (r#"{"DateNotEquals": {"aws:CurrentTime": "2026-01-02T03:04:05Z"}}"#, &[(K, NOW)], false),
        (r#"{"DateNotEquals": {"aws:CurrentTime": "2026-01-02"}}"#, &[(K, NOW)], true),
        (r#"{"DateLessThanEquals": {"aws:CurrentTime": "1767323045"}}"#, &[(K, NOW)], true),
        (r#"{"DateGreaterThanEquals": {"aws:CurrentTime": "2026-01-02T03:04:06Z"}}"#, &[(K, NOW)], false),
        (r#"{"DateGreaterThan": {"aws:EpochTime": "2026-01-01"}}"#, &[("aws:EpochTime", &["1767323045"])], true),
        (r#"{"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}"#, &[(K, &["yesterday"])], false),
    ]);
    let c = RequestContext::new(alice(), "kms:Decrypt")
        .with_time(time::macros::datetime!(2026-01-02 03:04:05 UTC));
    assert!(holds(
        r#"{"DateGreaterThan": {"aws:EpochTime": 1767323044}}"#,
        &c
    ));
    assert!(!holds(
        r#"{"DateLessThan": {"aws:CurrentTime": "2026-01-02T03:04:05Z"}}"#,
        &c
    ));
}

#[test]
#[rustfmt::skip]
fn bool_binary_ip_operators() {
    const TLS: &str = "aws:SecureTransport";
    const IP: &str = "aws:SourceIp";
    run(&[
        // AWS (condition operators): deny plain HTTP with Bool aws:SecureTransport false.
        (r#"{"Bool": {"aws:SecureTransport": "false"}}"#, &[(TLS, &["false"])], true),
        (r#"{"Bool": {"aws:SecureTransport": "false"}}"#, &[(TLS, &["true"])], false),
        (r#"{"Bool": {"aws:SecureTransport": true}}"#, &[(TLS, &["TRUE"])], true),
        (r#"{"Bool": {"aws:SecureTransport": true}}"#, &[], false),
        (r#"{"Bool": {"aws:SecureTransport": true}}"#, &[(TLS, &["yes"])], false),
        // AWS (condition operators): BinaryEquals with a base64 value.
        (r#"{"BinaryEquals": {"kms:B": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}}"#, &[("kms:B", &["QmluYXJ5VmFsdWVJbkJhc2U2NA=="])], true),
        (r#"{"BinaryEquals": {"kms:B": "QmluYXJ5VmFsdWVJbkJhc2U2NA=="}}"#, &[("kms:B", &["QQ=="])], false),
        // AWS (condition operators): 203.0.113.0/24 and 2001:DB8:1234:5678::/64.
        (r#"{"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}"#, &[(IP, &["203.0.113.7"])], true),
        (r#"{"IpAddress": {"aws:SourceIp": "203.0.113.0/24"}}"#, &[(IP, &["203.0.114.7"])], false),
        (r#"{"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}}"#, &[(IP, &["2001:db8:1234:5678::1"])], true),
        (r#"{"IpAddress": {"aws:SourceIp": "2001:DB8:1234:5678::/64"}}"#, &[(IP, &["2001:db8:1234:5679::1"])], false),
        (r#"{"IpAddress": {"aws:SourceIp": "2001:DB8:1234:5678::/64"}}"#, &[(IP, &["203.0.113.7"])], false),
        (r#"{"IpAddress": {"aws:SourceIp": "203.0.113.7"}}"#, &[(IP, &["203.0.113.7"])], true),
        (r#"{"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}"#, &[(IP, &["198.51.100.1"])], true),
        (r#"{"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}"#, &[(IP, &["198.51.100.1"])], true),
        (r#"{"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}"#, &[(IP, &["203.0.113.1"])], false),
        (r#"{"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}"#, &[], true),
    ]);
}

#[test]
#[rustfmt::skip]
fn arn_and_null_operators() {
    const PA: &str = "aws:PrincipalArn";
    run(&[
        (r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Ops*"}}"#, &[(PA, &["arn:aws:iam::111122223333:role/OpsAdmin"])], true),
        (r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Ops"}}"#, &[(PA, &["arn:aws:iam::444455556666:role/Ops"])], true),
        (r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/Ops"}}"#, &[(PA, &["arn:aws:iam::444455556666:user/Ops"])], false),
        (r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Ops"}}"#, &[(PA, &["arn:aws:iam::111122223333:role/Ops"])], true),
        (r#"{"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Ops"}}"#, &[(PA, &["arn:aws:iam::111122223333:role/ops"])], false),
        (r#"{"ArnLike": {"aws:PrincipalArn": "*"}}"#, &[(PA, &["not-an-arn"])], false),
        (r#"{"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/Ops"}}"#, &[(PA, &["arn:aws:iam::111122223333:role/Dev"])], true),
        (r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}}"#, &[(PA, &["arn:aws:iam::111122223333:role/Dev"])], false),
        (r#"{"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::111122223333:role/*"}}"#, &[(PA, &["not-an-arn"])], true),
        // AWS (condition operators): Null true means "the key is absent".
        (r#"{"Null": {"aws:TokenIssueTime": "true"}}"#, &[], true),
        (r#"{"Null": {"aws:TokenIssueTime": "true"}}"#, &[("aws:TokenIssueTime", &["2026-01-01T00:00:00Z"])], false),
        (r#"{"Null": {"aws:TokenIssueTime": false}}"#, &[("aws:TokenIssueTime", &["2026-01-01T00:00:00Z"])], true),
        (r#"{"Null": {"aws:TokenIssueTime": false}}"#, &[], false),
        (r#"{"Null": {"aws:TagKeys": "true"}}"#, &[("aws:TagKeys", &[])], true),
    ]);
}

#[test]
#[rustfmt::skip]
fn if_exists() {
    const K: &str = "kms:KeySpec";
    run(&[
        (r#"{"StringEqualsIfExists": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}"#, &[], true),
        (r#"{"StringEqualsIfExists": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}"#, &[(K, &["SYMMETRIC_DEFAULT"])], true),
        (r#"{"StringEqualsIfExists": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}"#, &[(K, &["RSA_2048"])], false),
        (r#"{"StringNotEqualsIfExists": {"kms:KeySpec": "RSA_2048"}}"#, &[(K, &["RSA_2048"])], false),
        (r#"{"StringNotEqualsIfExists": {"kms:KeySpec": "RSA_2048"}}"#, &[], true),
        (r#"{"StringLikeIfExists": {"kms:KeySpec": "RSA_*"}}"#, &[(K, &["RSA_4096"])], true),
        (r#"{"NumericLessThanIfExists": {"kms:N": 3}}"#, &[], true),
        (r#"{"NumericLessThanIfExists": {"kms:N": 3}}"#, &[("kms:N", &["4"])], false),
        (r#"{"DateLessThanIfExists": {"aws:CurrentTime": "2020-01-01"}}"#, &[], true),
        (r#"{"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}"#, &[], true),
        (r#"{"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}"#, &[("aws:MultiFactorAuthPresent", &["false"])], false),
        (r#"{"IpAddressIfExists": {"aws:SourceIp": "10.0.0.0/8"}}"#, &[], true),
        (r#"{"ArnLikeIfExists": {"aws:SourceArn": "arn:aws:s3:::b"}}"#, &[], true),
        (r#"{"BinaryEqualsIfExists": {"kms:B": "QQ=="}}"#, &[], true),
        (r#"{"ForAnyValue:StringEqualsIfExists": {"aws:TagKeys": "a"}}"#, &[], true),
    ]);
}

#[test]
#[rustfmt::skip]
fn set_qualifiers_and_empty_sets() {
    const KEYS: &str = "kms:EncryptionContextKeys";
    const OPS: &str = "kms:GrantOperations";
    run(&[
        // AWS (single- vs multivalued): ForAllValues is true when every request value is in the
        // policy's set — and when the key is missing or empty.
        (r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}"#, &[(KEYS, &["Dept"])], true),
        (r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}"#, &[(KEYS, &["Dept", "Project"])], true),
        (r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}"#, &[(KEYS, &["Dept", "Other"])], false),
        (r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}"#, &[], true),
        (r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}"#, &[(KEYS, &[])], true),
        // ForAnyValue: at least one request value in the set; false when missing or empty.
        (r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Dept"}}"#, &[(KEYS, &["Other", "Dept"])], true),
        (r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Dept"}}"#, &[(KEYS, &["Other"])], false),
        (r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Dept"}}"#, &[], false),
        (r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Dept"}}"#, &[(KEYS, &[])], false),
        // Negated operators under a qualifier: a request value "matches" when it equals none of the
        // policy's values.
        (r#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}"#, &[("aws:TagKeys", &["c", "d"])], true),
        (r#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}"#, &[("aws:TagKeys", &["c", "a"])], false),
        (r#"{"ForAllValues:StringNotEquals": {"aws:TagKeys": ["a", "b"]}}"#, &[], true),
        (r#"{"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}}"#, &[("aws:TagKeys", &["a", "c"])], true),
        (r#"{"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}}"#, &[("aws:TagKeys", &["a"])], false),
        (r#"{"ForAnyValue:StringNotEquals": {"aws:TagKeys": "a"}}"#, &[], false),
        // AWS (conditions-kms, kms:GrantOperations): allow CreateGrant only for these operations.
        (r#"{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}}"#, &[(OPS, &["Decrypt"])], true),
        (r#"{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt"]}}"#, &[(OPS, &["Decrypt", "CreateGrant"])], false),
        (r#"{"ForAllValues:StringLike": {"kms:GrantOperations": ["Decrypt", "GenerateDataKey*"]}}"#, &[(OPS, &["GenerateDataKeyWithoutPlaintext", "Decrypt"])], true),
        (r#"{"ForAnyValue:StringLike": {"kms:ResourceAliases": "alias/finance-*"}}"#, &[("kms:ResourceAliases", &["alias/x", "alias/finance-key"])], true),
        // Without a qualifier on a multivalued key: positive operators need one value to match,
        // negated ones need every value to match none.
        (r#"{"StringEquals": {"aws:TagKeys": "a"}}"#, &[("aws:TagKeys", &["b", "a"])], true),
        (r#"{"StringNotEquals": {"aws:TagKeys": "a"}}"#, &[("aws:TagKeys", &["b", "a"])], false),
        (r#"{"StringNotEquals": {"aws:TagKeys": "a"}}"#, &[("aws:TagKeys", &["b", "c"])], true),
        (r#"{"ForAllValues:NumericLessThan": {"kms:N": 5}}"#, &[("kms:N", &["1", "4"])], true),
        (r#"{"ForAllValues:NumericLessThan": {"kms:N": 5}}"#, &[("kms:N", &["1", "6"])], false),
    ]);
}

#[test]
#[rustfmt::skip]
fn blocks_and_or() {
    const A: &str = "kms:A";
    const B: &str = "kms:B";
    // Two keys under one operator, and two operators, are AND'ed.
    let two_keys = r#"{"StringEquals": {"kms:A": "1", "kms:B": "2"}}"#;
    let two_ops = r#"{"StringEquals": {"kms:A": "1"}, "StringLike": {"kms:B": "2*"}}"#;
    run(&[
        (two_keys, &[(A, &["1"]), (B, &["2"])], true),
        (two_keys, &[(A, &["1"]), (B, &["3"])], false),
        (two_keys, &[(A, &["1"])], false),
        (two_ops, &[(A, &["1"]), (B, &["22"])], true),
        (two_ops, &[(A, &["0"]), (B, &["22"])], false),
    ]);
}

#[test]
fn encryption_context_keys_ignore_case_values_do_not() {
    // AWS (conditions-kms, kms:EncryptionContext:context-key).
    let c = r#"{"StringEquals": {"kms:EncryptionContext:AppName": "ExampleApp"}}"#;
    assert!(holds(c, &ec(&[("AppName", "ExampleApp")])));
    assert!(holds(c, &ec(&[("appname", "ExampleApp")])));
    assert!(holds(c, &ec(&[("APPNAME", "ExampleApp"), ("Other", "x")])));
    assert!(!holds(c, &ec(&[("AppName", "exampleapp")])));
    assert!(!holds(c, &ec(&[])));
    // Require an encryption context with exactly these keys (conditions-kms, kms:EncryptionContextKeys).
    let keys = r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["AppName"]},
                   "Null": {"kms:EncryptionContextKeys": "false"}}"#;
    assert!(holds(keys, &ec(&[("AppName", "x")])));
    assert!(!holds(keys, &ec(&[])));
    assert!(!holds(keys, &ec(&[("AppName", "x"), ("Extra", "y")])));
}

#[test]
fn variables_in_condition_values() {
    let p = alice().with_tag("Project", "Blue");
    let c = |k: &str, v: &str| RequestContext::new(p.clone(), "kms:Decrypt").with(k, v);
    let tag = r#"{"StringEquals": {"aws:ResourceTag/Project": "${aws:PrincipalTag/Project}"}}"#;
    assert!(holds(tag, &c("aws:ResourceTag/Project", "Blue")));
    assert!(!holds(tag, &c("aws:ResourceTag/Project", "Red")));
    // A variable without a value: that policy value matches nothing.
    let missing = r#"{"StringEquals": {"aws:ResourceTag/Project": "${aws:PrincipalTag/Nope}"}}"#;
    assert!(!holds(missing, &c("aws:ResourceTag/Project", "")));
    let with_default =
        r#"{"StringEquals": {"aws:ResourceTag/Project": "${aws:PrincipalTag/Nope, 'Blue'}"}}"#;
    assert!(holds(with_default, &c("aws:ResourceTag/Project", "Blue")));
    let like = r#"{"StringLike": {"kms:RequestAlias": "alias/${aws:username}-*"}}"#;
    assert!(holds(like, &c("kms:RequestAlias", "alias/alice-data")));
    assert!(!holds(like, &c("kms:RequestAlias", "alias/bob-data")));
    let escaped = r#"{"StringEquals": {"kms:RequestAlias": "alias/${*}${?}${$}"}}"#;
    assert!(holds(escaped, &c("kms:RequestAlias", "alias/*?$")));
    let arn = r#"{"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::${aws:username}"}}"#;
    assert!(holds(arn, &c("aws:SourceArn", "arn:aws:s3:::alice")));
    let flag = r#"{"Bool": {"kms:Flag": "${aws:PrincipalTag/Flag, 'true'}"}}"#;
    assert!(holds(flag, &c("kms:Flag", "true")));
    // In a 2008-10-17 document `${…}` is literal text.
    let old = parse(
        PolicyType::Identity,
        r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"StringEquals": {"kms:RequestAlias": "${aws:username}"}}}}"#,
    );
    assert!(decide(&c("kms:RequestAlias", "${aws:username}"), None, &[&old]).is_allowed());
    assert!(!decide(&c("kms:RequestAlias", "alice"), None, &[&old]).is_allowed());
}
