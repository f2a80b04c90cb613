//! Parsing: the accepted shapes, and every refusal with its exact message.

use super::*;

fn refuse(kind: PolicyType, json: &str) -> String {
    match Policy::parse(json, kind) {
        Ok(_) => panic!("accepted: {json}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn accepts_the_grammar_shapes() {
    // The default key policy (KMS Developer Guide, key-policy-default.html), Sid with spaces.
    let p = parse(
        PolicyType::KeyPolicy,
        r#"{"Version": "2012-10-17", "Id": "key-default-1", "Statement": [
            {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
             "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Sid": "Allow use", "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::111122223333:user/alice", "444455556666", "*"],
                           "Service": "logs.amazonaws.com", "Federated": "cognito-identity.amazonaws.com",
                           "CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"},
             "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"],
             "Resource": ["*"],
             "Condition": {"StringEquals": {"kms:CallerAccount": ["111122223333", 444455556666]},
                           "Bool": {"kms:GrantIsForAWSResource": true}}},
            {"Effect": "Deny", "NotPrincipal": {"AWS": "AIDAEXAMPLEALICE00"}, "NotAction": "kms:Describe*",
             "NotResource": "arn:aws:kms:*:111122223333:key/*"}]}"#,
    );
    assert_eq!(p.version(), Version::V2012_10_17);
    assert_eq!(p.id(), Some("key-default-1"));
    assert_eq!(p.statements().len(), 3);
    assert_eq!(p.statements()[1].sid(), Some("Allow use"));
    assert_eq!(p.statements()[2].effect(), Effect::Deny);
    // One statement as an object, no Version (2008-10-17), Principal "*".
    let p = parse(
        PolicyType::TrustPolicy,
        r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}}"#,
    );
    assert_eq!(p.version(), Version::V2008_10_17);
    assert_eq!(p.statements().len(), 1);
    let p = parse(
        PolicyType::Identity,
        r#"{"Version": "2008-10-17", "Statement": [{"Sid": "A1", "Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
    );
    assert_eq!(p.statements()[0].sid(), Some("A1"));
}

#[test]
fn refuses_malformed_documents() {
    use PolicyType::{Identity, KeyPolicy, TrustPolicy};
    const ALLOW: &str = r#""Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*""#;
    let key = |s: &str| format!(r#"{{"Version": "2012-10-17", "Statement": [{s}]}}"#);
    let cases: Vec<(PolicyType, String, &str)> = vec![
        (Identity, "not json".into(), "The policy is not valid JSON: expected ident at line 1 column 2"),
        (Identity, "[]".into(), "policy: must be a JSON object, not an array."),
        (Identity, r#"{"Version": "2012-10-17"}"#.into(), "policy is missing \"Statement\"."),
        (Identity, r#"{"Version": "2012-10-17", "Statement": []}"#.into(), "The policy has no statements."),
        (Identity, r#"{"Version": "2012-10-17", "Statement": "x"}"#.into(), "Statement: must be an object or a list of objects, not a string."),
        (Identity, r#"{"Version": "2012-10-17", "Statement": ["x"]}"#.into(), "Statement[0]: must be an object, not a string."),
        (Identity, r#"{"Version": "2012-10-18", "Statement": {}}"#.into(), "The policy version \"2012-10-18\" is not supported; use \"2012-10-17\" or \"2008-10-17\"."),
        (Identity, r#"{"Version": 2012, "Statement": {}}"#.into(), "The policy version a number is not supported; use \"2012-10-17\" or \"2008-10-17\"."),
        (Identity, r#"{"Version": "2012-10-17", "Statment": []}"#.into(), "policy has an unknown member \"Statment\"."),
        (Identity, r#"{"Id": 1, "Statement": []}"#.into(), "Id: must be a string, not a number."),
        (Identity, format!(r#"{{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": {{{ALLOW}}}}}"#), "The policy is not valid JSON: duplicate member \"Version\" at line 1 column 35"),
        (Identity, key(r#"{"Effect": "Allow", "Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}"#), "The policy is not valid JSON: duplicate member \"Effect\" at line 1 column 68"),
        (Identity, key(&format!(r#"{{{ALLOW}, "Principals": "*"}}"#)), "Statement[0] has an unknown member \"Principals\"."),
        (Identity, key(r#"{"Action": "kms:Decrypt", "Resource": "*"}"#), "Statement[0] is missing \"Effect\"."),
        (Identity, key(r#"{"Effect": "allow", "Action": "kms:Decrypt", "Resource": "*"}"#), "Statement[0].Effect: must be \"Allow\" or \"Deny\", not \"allow\"."),
        (Identity, key(r#"{"Effect": "Allow", "Resource": "*"}"#), "Statement[0] is missing \"Action\"."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:Decrypt", "NotAction": "kms:Encrypt", "Resource": "*"}"#), "Statement[0] has both \"Action\" and \"NotAction\"; use one of them."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*", "NotResource": "*"}"#), "Statement[0] has both \"Resource\" and \"NotResource\"; use one of them."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:Decrypt"}"#), "Statement[0] is missing \"Resource\"."),
        (Identity, key(r#"{"Effect": "Allow", "Action": [], "Resource": "*"}"#), "Statement[0].Action: must not be an empty list."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "Decrypt", "Resource": "*"}"#), "Statement[0].Action: \"Decrypt\" is not an action (service:Action or *)."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:", "Resource": "*"}"#), "Statement[0].Action: \"kms:\" is not an action (service:Action or *)."),
        (Identity, key(r#"{"Effect": "Allow", "Action": 7, "Resource": "*"}"#), "Statement[0].Action: must be a string or a list of strings, not a number."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "key/1"}"#), "Statement[0].Resource: \"key/1\" must be an ARN or \"*\"."),
        (Identity, key(r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:s3:::${aws:username"}"#), "Statement[0].Resource: unterminated policy variable in \"arn:aws:s3:::${aws:username\"."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Sid": "has space"}}"#)), "Statement[0].Sid: \"has space\" may hold only letters A-Z, a-z and digits 0-9."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Sid": "A"}}, {{{ALLOW}, "Sid": "A"}}"#)), "The statement id \"A\" is used more than once; statement ids must be unique."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Principal": "*"}}"#)), "Statement[0]: an identity-based policy should not specify a principal."),
        (KeyPolicy, key(ALLOW_NO_PRINCIPAL), "Statement[0] is missing \"Principal\"."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": "*", "NotPrincipal": "*"}}"#)), "Statement[0] has both \"Principal\" and \"NotPrincipal\"; use one of them."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": "alice"}}"#)), "Statement[0].Principal: must be \"*\" or an object such as {\"AWS\": …}, not \"alice\"."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{}}}}"#)), "Statement[0].Principal: must be \"*\" or an object such as {\"AWS\": …}, not an object."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"IAM": "*"}}}}"#)), "Statement[0].Principal has an unknown member \"IAM\"."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"AWS": "arn:aws:iam::111122223333:user/*"}}}}"#)), "Statement[0].Principal.AWS: invalid principal \"arn:aws:iam::111122223333:user/*\": wildcards are allowed only as the whole principal \"*\"."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"AWS": "arn:aws:s3:::bucket"}}}}"#)), "Statement[0].Principal.AWS: invalid principal \"arn:aws:s3:::bucket\": not an IAM or STS ARN."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"AWS": "arn:aws:iam::1234:root"}}}}"#)), "Statement[0].Principal.AWS: invalid principal \"arn:aws:iam::1234:root\": the account is not a 12-digit account id."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"AWS": "alice"}}}}"#)), "Statement[0].Principal.AWS: invalid principal \"alice\": not \"*\", an account id, an ARN or a unique id."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "Principal": {{"AWS": [""]}}}}"#)), "Statement[0].Principal.AWS: must not hold an empty string."),
        (TrustPolicy, key(r#"{"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole", "Resource": "*"}"#), "Statement[0]: a trust policy has prohibited field Resource."),
        (TrustPolicy, key(r#"{"Effect": "Deny", "NotPrincipal": "*", "Action": "sts:AssumeRole"}"#), "Statement[0].NotPrincipal: a role trust policy cannot use NotPrincipal."),
        (KeyPolicy, key(&format!(r#"{{{ALLOW}, "NotPrincipal": {{"AWS": "111122223333"}}}}"#)), "Statement[0].NotPrincipal: NotPrincipal can be used only with \"Effect\": \"Deny\"."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": []}}"#)), "Statement[0].Condition: must be an object, not an array."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEquals": "x"}}}}"#)), "Statement[0].Condition.StringEquals: must be an object of condition keys, not a string."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEquals": {{}}}}}}"#)), "Statement[0].Condition.StringEquals: must name at least one condition key."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEqual": {{"kms:A": "x"}}}}}}"#)), "Statement[0].Condition.StringEqual: unknown condition operator \"StringEqual\"."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"ForSomeValues:StringEquals": {{"kms:A": "x"}}}}}}"#)), "Statement[0].Condition.ForSomeValues:StringEquals: unknown condition operator \"ForSomeValues:StringEquals\"."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"NullIfExists": {{"kms:A": "true"}}}}}}"#)), "Statement[0].Condition.NullIfExists: condition operator \"NullIfExists\": Null takes neither IfExists nor a set qualifier."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEquals": {{"kms:A": []}}}}}}"#)), "Statement[0].Condition.StringEquals: StringEquals: condition key \"kms:A\" has no values."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEquals": {{"kms:A": {{"x": 1}}}}}}}}"#)), "Statement[0].Condition.StringEquals.kms:A: values must be strings, numbers or booleans, not an object."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringEquals": {{"kms:A": null}}}}}}"#)), "Statement[0].Condition.StringEquals.kms:A: values must be strings, numbers or booleans, not null."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"NumericLessThan": {{"kms:A": "ten"}}}}}}"#)), "Statement[0].Condition.NumericLessThan: NumericLessThan: \"ten\" for \"kms:A\" is not a number."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"DateLessThan": {{"aws:CurrentTime": "tomorrow"}}}}}}"#)), "Statement[0].Condition.DateLessThan: DateLessThan: \"tomorrow\" for \"aws:CurrentTime\" is not an ISO 8601 date or epoch seconds."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"Bool": {{"aws:SecureTransport": "yes"}}}}}}"#)), "Statement[0].Condition.Bool: Bool: \"yes\" for \"aws:SecureTransport\" is not true or false."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"BinaryEquals": {{"kms:B": "!!"}}}}}}"#)), "Statement[0].Condition.BinaryEquals: BinaryEquals: \"!!\" for \"kms:B\" is not base64."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"IpAddress": {{"aws:SourceIp": "10.0.0.0/33"}}}}}}"#)), "Statement[0].Condition.IpAddress: IpAddress: \"10.0.0.0/33\" for \"aws:SourceIp\" is not an IP address or CIDR block."),
        (Identity, key(&format!(r#"{{{ALLOW}, "Condition": {{"StringLike": {{"kms:A": "${{aws:username, nobody}}"}}}}}}"#)), "Statement[0].Condition.StringLike: StringLike: the default value of policy variable \"${aws:username, nobody}\" in \"${aws:username, nobody}\" must be in single quotes."),
    ];
    let wrong: Vec<String> = cases
        .into_iter()
        .filter_map(|(kind, json, want)| {
            let got = refuse(kind, &json);
            (got != want).then(|| format!("{json}\n  got:  {got}\n  want: {want}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

const ALLOW_NO_PRINCIPAL: &str = r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}"#;

#[test]
fn operator_names_and_qualifiers_ignore_case() {
    let p = identity(
        r#"{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
            "Condition": {"forallvalues:stringequalsifexists": {"kms:EncryptionContextKeys": "a"}}}"#,
    );
    assert_eq!(p.statements().len(), 1);
}

#[test]
fn characters() {
    assert_eq!(check_characters("{\"Sid\": \"Café\"}\t\r\n"), Ok(()));
    assert_eq!(
        check_characters("{\"Sid\": \"☃\"}").map_err(|e| e.to_string()),
        Err("The policy contains the character U+2603 at byte 9; a policy may hold only tab, line feed, carriage return and U+0020 to U+00FF.".into())
    );
    assert_eq!(
        check_characters("a\u{1}"),
        Err(PolicyError::InvalidCharacter { code: 1, offset: 1 })
    );
}

#[test]
fn size_limits() {
    assert_eq!(
        check_size(&"x".repeat(KEY_POLICY_MAX_BYTES), SizeLimit::KeyPolicy),
        Ok(())
    );
    assert_eq!(
        check_size(&"x".repeat(KEY_POLICY_MAX_BYTES + 1), SizeLimit::KeyPolicy)
            .map_err(|e| e.to_string()),
        Err("The policy is 32769 bytes; a key policy may have at most 32768.".into())
    );
    // IAM does not count whitespace.
    let spaced = format!("{}{}", "x".repeat(2048), " \n\t".repeat(100));
    assert_eq!(SizeLimit::UserInlinePolicies.measure(&spaced), 2048);
    assert_eq!(check_size(&spaced, SizeLimit::UserInlinePolicies), Ok(()));
    assert_eq!(
        check_size(&"é".repeat(6145), SizeLimit::ManagedPolicy).map_err(|e| e.to_string()),
        Err("The policy is 6145 characters (without whitespace); a managed policy may have at most 6144.".into())
    );
    assert_eq!(SizeLimit::GroupInlinePolicies.max(), 5120);
    assert_eq!(SizeLimit::RoleInlinePolicies.max(), 10240);
    assert_eq!(SizeLimit::RoleTrustPolicy.max(), 2048);
}
