//! The policy engine's hot path: one kms:Decrypt decided against the default key policy (account
//! root statement plus a key-administrators and a key-users statement) and one identity policy with
//! a condition, the shape of a typical KMS call.
//!
//! - `authorize`: the decision alone, context built once (what the dispatcher pays per call once the
//!   context exists);
//! - `context+authorize`: building the request context too (principal keys, encryption context);
//! - `parse`: compiling the key policy, paid once per policy change (policies are cached compiled).
//!
//! ```text
//! cargo bench -p kms-core --bench policy
//! ```
//!
//! Measured 2026-12-04 on the shared 2-CPU machine while two other builds ran (load average ~5.6),
//! with kms-core at opt-level 3 and its dependencies at the dev profile's 1
//! (`--profile dev --config 'profile.dev.package.kms-core.opt-level=3'`; no release build yet):
//! `authorize` 2.3 µs, `context+authorize` 6.4 µs, `parse` 25 µs. Unoptimized (plain dev profile):
//! 20 µs, 32 µs, 100 µs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // bench code: a panic is the failure report

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use kms_core::policy::{
    authorize, NamedPolicy, Policies, Policy, PolicyType, Principal, RequestContext,
};

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

const KEY_POLICY: &str = r#"{"Version": "2012-10-17", "Id": "key-default-1", "Statement": [
  {"Sid": "Enable IAM User Permissions", "Effect": "Allow",
   "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
  {"Sid": "Allow access for Key Administrators", "Effect": "Allow",
   "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyAdmin"},
   "Action": ["kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
              "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
              "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion"],
   "Resource": "*"},
  {"Sid": "Allow use of the key", "Effect": "Allow",
   "Principal": {"AWS": "arn:aws:iam::111122223333:role/KeyUser"},
   "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"],
   "Resource": "*"}]}"#;

const IDENTITY_POLICY: &str = r#"{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
   "Resource": "arn:aws:kms:*:111122223333:key/*",
   "Condition": {"StringEquals": {"kms:EncryptionContext:Department": "IT"}}}]}"#;

fn context() -> RequestContext {
    let ec = BTreeMap::from([("Department".to_owned(), "IT".to_owned())]);
    RequestContext::new(
        Principal::user("111122223333", "alice", "AIDAEXAMPLEALICE00"),
        "kms:Decrypt",
    )
    .with_resource(KEY)
    .with_encryption_context(&ec)
}

fn bench(c: &mut Criterion) {
    let key = Policy::parse(KEY_POLICY, PolicyType::KeyPolicy).unwrap();
    let id = Policy::parse(IDENTITY_POLICY, PolicyType::Identity).unwrap();
    let identity = [NamedPolicy {
        name: "user inline policy Decrypt",
        policy: &id,
    }];
    let policies = Policies {
        resource: Some(NamedPolicy {
            name: "key policy",
            policy: &key,
        }),
        identity: &identity,
        grants: &[],
    };
    let ctx = context();
    assert!(authorize(&ctx, &policies).is_allowed());
    c.bench_function("policy/authorize", |b| {
        b.iter(|| authorize(black_box(&ctx), &policies))
    });
    c.bench_function("policy/context+authorize", |b| {
        b.iter(|| authorize(&context(), black_box(&policies)))
    });
    c.bench_function("policy/parse", |b| {
        b.iter(|| Policy::parse(black_box(KEY_POLICY), PolicyType::KeyPolicy).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
