"""The scan of the session's end (conftest.pytest_sessionfinish, secrets_scan.py) can fail: it finds a
secret planted in a log in every form a log could print it, the boto3 hook registers what a real call
hands over and gets back, and the servers really log at debug level."""

from __future__ import annotations

import base64
import json
import os
import shutil

import secrets_scan
from conftest import start_server


def test_every_form_of_a_planted_secret_is_found(tmp_path):
    secret = os.urandom(32)
    registry = {secret: "planted data key"}
    lines = {
        "base64 in JSON": b'{"Plaintext":"' + base64.b64encode(secret) + b'"}',
        "base64 inside a longer blob, offset 1": base64.b64encode(b"x" + secret + b"tail"),
        "base64 inside a longer blob, offset 2": base64.b64encode(b"xy" + secret + b"tail"),
        "URL-safe base64": base64.urlsafe_b64encode(secret),
        "hex": b"key=" + secret.hex().encode(),
        "Debug of a Vec<u8>": b"plaintext: [" + ", ".join(map(str, secret)).encode() + b"]",
        "Debug of Bytes": b'body=b"' + secrets_scan._debug_bytes(secret) + b'"',
        "raw": b"raw " + secret,
    }
    for what, line in lines.items():
        log = tmp_path / "planted.log"
        log.write_bytes(b"2026-01-01T00:00:00Z DEBUG nothing here\n" + line + b"\nafter\n")
        hits = secrets_scan.scan([log], registry)
        assert [h.line_no for h in hits][:1] == [2], what
    # Clean lines and other secrets are not hits; short and uniform values are not registered.
    log = tmp_path / "clean.log"
    log.write_bytes(base64.b64encode(os.urandom(64)) + b"\n" + os.urandom(32).hex().encode() + b"\n")
    assert secrets_scan.scan([log], registry) == []
    before = secrets_scan.secrets()
    secrets_scan.add(b"short", "too short")
    secrets_scan.add(bytes(32), "all zero")
    assert secrets_scan.secrets() == before


def test_a_real_call_registers_its_secrets_and_a_planted_log_line_fails_the_scan(tmp_path_factory, tmp_path):
    s = start_server(tmp_path_factory)
    try:
        kms = s.client()
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        plaintext = os.urandom(24)
        kms.encrypt(KeyId=key, Plaintext=plaintext)
        data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")["Plaintext"]
        random = kms.generate_random(NumberOfBytes=16)["Plaintext"]
    finally:
        s.stop()
    registry = secrets_scan.secrets()
    _, secret_key = s.credentials
    for value in (plaintext, data_key, random, secret_key.encode()):
        assert value in registry, registry.get(value)
    logs = [s._log_path, s.data_dir / "audit.log"]
    assert all(p in secrets_scan.logs() for p in logs)
    server_log = s._log_path.read_text()
    assert " DEBUG " in server_log, "the server did not log at debug level"
    assert secrets_scan.scan(logs, registry) == []
    # The same logs with one line that a careless `tracing::debug!(?response)` would write.
    planted = tmp_path / "planted.log"
    shutil.copy(s._log_path, planted)
    with planted.open("a") as f:
        f.write("DEBUG kms_server: response " + json.dumps({"Plaintext": base64.b64encode(data_key).decode()}) + "\n")
    hits = secrets_scan.scan([planted, s.data_dir / "audit.log"], registry)
    assert len(hits) == 1 and "GenerateDataKey response Plaintext" in hits[0].what, hits
