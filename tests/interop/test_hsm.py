"""The root of trust in a PKCS#11 token (SoftHSMv2): boto3 against `envelope serve --hsm-*`,
wrong PIN, PIN from the environment, restart, and `envelope root migrate-to-hsm`.

Each test gets a fresh token from scripts/softhsm.sh. Without SoftHSMv2 the tests skip, except under CI
(`CI` set), where they fail.
"""

import base64
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Server, envelope_bin, error_code
from softhsm import Token, token  # noqa: F401  (the fixture)


def data_dir(tmp_path) -> Path:
    d = tmp_path / "envelope-data"
    d.mkdir()
    return d


def db_dump(d: Path):
    con = sqlite3.connect(f"file:{d / 'envelope.db'}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def hsm_server(d: Path, token: Token, **kw) -> Server:
    extra = [*token.args(kw.pop("pin_file", None)), *kw.pop("extra_args", ())]
    return Server(d, extra_args=extra, env={**token.env(), **kw.pop("env", {})}, **kw)


def round_trip(kms, key_id):
    ctx = {"purpose": "hsm-test", "tenant": "a"}
    ct = kms.encrypt(KeyId=key_id, Plaintext=b"hello from the token", EncryptionContext=ctx)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")
    assert len(dk["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
    return ct, ctx


def test_boto3_round_trip_on_an_hsm_root_and_restart(tmp_path, token):
    d = data_dir(tmp_path)
    s = hsm_server(d, token).start()
    try:
        assert not (d / "root.key").exists(), "a software root key was created in HSM mode"
        kms = s.client()
        key_id = kms.create_key(Description="under an HSM root")["KeyMetadata"]["KeyId"]
        ct, ctx = round_trip(kms, key_id)
        bad = bytearray(ct)
        bad[-1] ^= 1
        with pytest.raises(Exception) as e:
            kms.decrypt(CiphertextBlob=bytes(bad), EncryptionContext=ctx)
        assert error_code(e.value) == "InvalidCiphertextException"
        with pytest.raises(Exception) as e:
            kms.decrypt(CiphertextBlob=ct, EncryptionContext={"purpose": "other"})
        assert error_code(e.value) == "InvalidCiphertextException"
        kms.rotate_key_on_demand(KeyId=key_id)
        round_trip(kms, key_id)
    finally:
        s.stop()
    assert "PKCS#11 key" in s.stderr_text()
    # A new process (a new module instance) finds the same key in the token; the principal's secret,
    # wrapped by the token, still verifies requests.
    s2 = hsm_server(d, token).start()
    try:
        kms = s2.client()
        assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
        round_trip(kms, key_id)
    finally:
        s2.stop()
    assert not (d / "root.key").exists()


def test_wrong_pin_refuses_to_start_and_touches_nothing(tmp_path, token):
    d = data_dir(tmp_path)
    s = hsm_server(d, token).start()
    s.client().create_key()
    s.stop()
    before = db_dump(d)
    files = sorted(p.name for p in d.iterdir())
    bad_pin = tmp_path / "bad.pin"
    bad_pin.write_text("not-the-pin\n")
    s2 = hsm_server(d, token, pin_file=bad_pin)
    s2.spawn()
    assert s2.wait_exit() != 0
    err = s2.stderr_text()
    assert "refused the user PIN" in err and "CKR_PIN_INCORRECT" in err, err
    assert "not-the-pin" not in err
    assert db_dump(d) == before
    assert sorted(p.name for p in d.iterdir()) == files
    # A brand-new data directory is not even created.
    fresh = tmp_path / "never-created"
    s3 = Server(fresh, extra_args=token.args(bad_pin), env=token.env())
    s3.spawn()
    assert s3.wait_exit() != 0
    assert not fresh.exists()


def test_capabilities_the_token_lacks_fail_the_start_clearly(tmp_path, token):
    d = data_dir(tmp_path)
    # A malformed capabilities string is a usage error naming the bad part.
    s = hsm_server(d, token, extra_args=["--hsm-capabilities", "softhsm2,gcm=v2"])
    s.spawn()
    assert s.wait_exit() != 0
    assert "gcm=v2: expected standard or no-iv-bits" in s.stderr_text()
    # Well-formed, but not what SoftHSMv2 does: the start-up self-test in the token says so.
    for spec, why in (("gcm=no-iv-bits", "C_EncryptInit"), ("cloudhsm", "did not generate a GCM IV")):
        s = hsm_server(d, token, extra_args=["--hsm-capabilities", spec])
        s.spawn()
        assert s.wait_exit() != 0
        err = s.stderr_text()
        assert "--hsm-capabilities" in err and why in err, err
    # The token's own capabilities, spelled out, start normally.
    s = hsm_server(d, token, extra_args=["--hsm-capabilities",
                                         "iv=host,tag-mismatch=general-error+encrypted-data-invalid"]).start()
    try:
        round_trip(s.client(), s.client().create_key()["KeyMetadata"]["KeyId"])
    finally:
        s.stop()


def test_pin_from_the_environment_never_on_the_command_line(tmp_path, token):
    d = data_dir(tmp_path)
    s = Server(d, extra_args=token.args(pin_file=False), env={**token.env(), "ENVELOPE_HSM_PIN": token.pin}).start()
    try:
        cmdline = Path(f"/proc/{s.proc.pid}/cmdline").read_bytes()
        assert token.pin.encode() not in cmdline
        kms = s.client()
        round_trip(kms, kms.create_key()["KeyMetadata"]["KeyId"])
    finally:
        s.stop()
    # No PIN at all: a clear start-up error.
    s2 = Server(d, extra_args=token.args(pin_file=False), env=token.env())
    s2.spawn()
    assert s2.wait_exit() != 0
    assert "ENVELOPE_HSM_PIN is not set" in s2.stderr_text()


def migrate(d: Path, token: Token, env=None) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.pop("ENVELOPE_ROOT_KEY", None)
    full.update(token.env())
    full.update(env or {})
    return subprocess.run([envelope_bin(), "root", "migrate-to-hsm", "--data-dir", str(d), *token.args()],
                          capture_output=True, text=True, env=full, timeout=120)


def test_migrate_a_software_data_directory_to_the_hsm(tmp_path, token):
    d = data_dir(tmp_path)
    s = Server(d).start()
    kms = s.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.rotate_key_on_demand(KeyId=key_id)
    ct, ctx = round_trip(kms, key_id)
    s.stop()
    assert (d / "root.key").exists()

    # With the wrong software root key nothing opens: the migration fails and changes nothing.
    before = db_dump(d)
    wrong = base64.b64encode(b"\x01" * 32).decode()
    r = migrate(d, token, env={"ENVELOPE_ROOT_KEY": wrong})
    assert r.returncode != 0
    assert "nothing was changed" in r.stderr, r.stderr
    assert db_dump(d) == before
    assert (d / "root.key").exists()

    r = migrate(d, token)
    assert r.returncode == 0, r.stderr
    assert '"Rewrapped": 4' in r.stdout, r.stdout  # 2 material versions, 1 principal, the check value
    assert not (d / "root.key").exists()
    assert (d / "root.key.pre-hsm").exists()
    after = db_dump(d)
    assert after != before

    # The software root alone no longer opens the store…
    s2 = Server(d, extra_args=["--root-key-file", str(d / "root.key.pre-hsm")])
    s2.spawn()
    assert s2.wait_exit() != 0
    assert "does not match" in s2.stderr_text()
    # …the HSM does: old ciphertexts decrypt, old credentials still sign.
    s3 = hsm_server(d, token).start()
    try:
        kms = s3.client()
        assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
        round_trip(kms, key_id)
    finally:
        s3.stop()


def test_token_unavailable_mid_run_then_recovery(tmp_path, token):
    d = data_dir(tmp_path)
    # A short cache lifetime, so the outage outlasts every cache entry.
    s = hsm_server(d, token, extra_args=["--cache-ttl", "1"]).start()
    try:
        kms = s.client()
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        ct, ctx = round_trip(kms, key_id)
        tokens = Path(token.conf).parent / "tokens"
        away = tokens.with_name("tokens.away")
        tokens.rename(away)
        try:
            # New key material cannot be wrapped while the token is gone: KMSInternalException
            # (HTTP 500), with nothing about the module on the wire.
            with pytest.raises(Exception) as e:
                kms.create_key()
            assert error_code(e.value) == "KMSInternalException"
            assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
            assert "softhsm" not in str(e.value).lower()
            # Material already unwrapped stays usable from the cache (within --cache-ttl).
            assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
            # And after it: a reload takes the key's state from the database and reuses material
            # (and the caller's SigV4 secret) whose wrapped bytes did not change, so nothing
            # already in use needs the token. The key's state is read again: disabling it bites.
            time.sleep(2.5)
            assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
            assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"] is True
            kms.disable_key(KeyId=key_id)
            with pytest.raises(Exception) as e:
                kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)
            assert error_code(e.value) == "DisabledException"
            kms.enable_key(KeyId=key_id)
            assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
        finally:
            away.rename(tokens)
        # The token is back: the module is initialised again and everything works, no restart needed.
        new_id = kms.create_key()["KeyMetadata"]["KeyId"]
        round_trip(kms, new_id)
        assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"hello from the token"
    finally:
        s.stop()
    assert "HSM root of trust failed" in s.stderr_text()
