"""`envelope encrypt|decrypt` with KMS keys on a running `envelope serve` (the KMS keyring end to end)."""

import os
import subprocess

from conftest import envelope_bin


def run(args, env, ok=True):
    p = subprocess.run([envelope_bin(), *args], env=env, capture_output=True, text=True, timeout=60)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_kms_keys_strict_and_discovery(server, kms, tmp_path):
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/cli-files", TargetKeyId=arn)
    ak, sk = server.credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        env.pop(var, None)
    plain = tmp_path / "p"
    plain.write_bytes(os.urandom(300_000))
    msg = tmp_path / "p.env"
    run(["encrypt", str(plain), "-o", str(msg), "--key", "alias/cli-files", "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    out = tmp_path / "strict.out"
    run(["decrypt", str(msg), "-o", str(out), "--key", arn, "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    assert out.read_bytes() == plain.read_bytes()
    # An alias names the key too: resolved to its key ARN, it decrypts; another key's alias or ARN does not.
    out_alias = tmp_path / "alias.out"
    run(["decrypt", str(msg), "-o", str(out_alias), "--key", "alias/cli-files", "--endpoint-url", server.endpoint,
         "--context", "app=cli", "-q"], env)
    assert out_alias.read_bytes() == plain.read_bytes()
    other = kms.create_key()["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName="alias/cli-other", TargetKeyId=other)
    for bad in (other, "alias/cli-other"):
        refused = tmp_path / "other.out"
        p = run(["decrypt", str(msg), "-o", str(refused), "--key", bad, "--endpoint-url", server.endpoint,
                 "--context", "app=cli"], env, ok=False)
        assert p.returncode == 1 and "no keyring could decrypt" in p.stderr, (bad, p.stderr)
        assert not refused.exists()
    # Discovery, with the endpoint from the AWS SDK's service-specific variable.
    out2 = tmp_path / "discovery.out"
    run(["decrypt", str(msg), "-o", str(out2), "--discovery", "-q"], dict(env, AWS_ENDPOINT_URL_KMS=server.endpoint))
    assert out2.read_bytes() == plain.read_bytes()
    # A discovery filter for another account decrypts nothing and leaves no file.
    out3 = tmp_path / "refused.out"
    p = run(["decrypt", str(msg), "-o", str(out3), "--discovery", "--discovery-account", "999999999999",
             "--endpoint-url", server.endpoint], env, ok=False)
    assert p.returncode == 1 and "no keyring could decrypt" in p.stderr, p.stderr
    assert not out3.exists()
    # A disabled key: the KMS error is named, no output.
    kms.disable_key(KeyId=arn)
    try:
        p = run(["decrypt", str(msg), "-o", str(out3), "--key", arn, "--endpoint-url", server.endpoint],
                env, ok=False)
        assert p.returncode == 1 and "DisabledException" in p.stderr, p.stderr
        assert not out3.exists()
    finally:
        kms.enable_key(KeyId=arn)


def test_trace_logging_prints_no_data_key_or_secret(server, kms, tmp_path):
    """At ENVELOPE_LOG=trace the CLI logs the AWS SDK's work. The SDK's request and response log prints
    bodies at trace (Decrypt's response carries the data key once LOG_SENSITIVE_BODIES is set; an
    Encrypt for a second --key carries it in the request), so the CLI caps that log at debug: neither
    the data key (no `Plaintext` member anywhere) nor the secret access key is in stderr."""
    first = kms.create_key()["KeyMetadata"]["Arn"]
    second = kms.create_key()["KeyMetadata"]["Arn"]
    ak, sk = server.credentials
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ak, AWS_SECRET_ACCESS_KEY=sk, AWS_REGION="us-east-1",
               AWS_EC2_METADATA_DISABLED="true", ENVELOPE_LOG="trace", LOG_SENSITIVE_BODIES="true")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        env.pop(var, None)
    plain = tmp_path / "p"
    plain.write_bytes(os.urandom(1000))
    msg = tmp_path / "p.env"
    enc = run(["encrypt", str(plain), "-o", str(msg), "--key", first, "--key", second, "--endpoint-url",
               server.endpoint, "-q"], env)
    out = tmp_path / "out"
    dec = run(["decrypt", str(msg), "-o", str(out), "--key", second, "--endpoint-url", server.endpoint, "-q"],
              env)
    assert out.read_bytes() == plain.read_bytes()
    for what, p in (("encrypt", enc), ("decrypt", dec)):
        assert "TRACE" in p.stderr, f"{what} did not log at trace level"
        assert "Plaintext" not in p.stderr, f"{what} logged a data key"
        assert sk not in p.stderr, f"{what} logged the secret access key"
