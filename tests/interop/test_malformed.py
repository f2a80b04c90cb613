"""The malformed-request corpus (tests/interop/malformed/*.jsonl) against one `envelope serve`.

Each corpus line is one case: an id, a one-line "why", the request (target, headers, body, how to sign
it, how to put it on the wire) and what AWS KMS answers (HTTP status, `__type`, optionally a message
substring). Every case is its own test. A case marked `known_deviation` is one where envelope answers
differently from AWS today: the test then asserts what envelope does today (`today`), so that fixing
envelope fails the test until the marker is removed. After all cases the server must still be healthy.

Corpus format (one JSON object per line; lines starting with `#` are comments, blank lines are skipped):

  id            unique case id
  why           one line: what is wrong with the request
  target        X-Amz-Target value, or null to send none (default TrentService.ListKeys)
  content_type  Content-Type value, or null to send none (default application/x-amz-json-1.1)
  headers       extra headers {name: value}, added before signing (signed when the name is signable)
  repeat_headers  [[name, value], ...]: more headers added after `headers`, before signing, a name
                that is already there included (SigV4 signs a repeated header's values joined by commas)
  body          request body as text, after placeholder expansion (see expand()); default "{}"
  body_b64      request body as base64 (for bytes that are not UTF-8); placeholders not expanded
  sign          how to sign (see sign_request()); default: a correct SigV4 signature of all headers
  wire          how to put it on the wire (see send()); default: one request with a correct Content-Length
  expect        {"status": 400, "type": "ValidationException", "message": "substring"}; "type": null
                means the answer comes from the HTTP layer and need not be a JSON error
  known_deviation   what envelope does today (text), with
  today         {"status": ..., "type": ...}: envelope's answer today, asserted instead of expect

Placeholders in `body`: ${key_id} ${key_arn} ${alias} ${alias_arn} ${ciphertext} (a valid CiphertextBlob
of ${key_id}, empty encryption context), ${ciphertext_cut} (it without its last 5 bytes), ${rep:X:N} (X repeated N times), ${b64:N} (base64 of N bytes),
${uniq} (a fresh token, for names that must not collide), ${account} ${region}.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import uuid
from pathlib import Path

import pytest

from conftest import ACCOUNT, REGION, account_state, error_type

CORPUS_DIR = Path(__file__).resolve().parent / "malformed"
DEFAULT_CT = "application/x-amz-json-1.1"
MIN_CASES = 300


# -- the corpus -------------------------------------------------------------------------------------

def load_corpus() -> list[dict]:
    cases, seen = [], set()
    for path in sorted(CORPUS_DIR.glob("*.jsonl")):
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                case = json.loads(line)
            except ValueError as e:
                raise AssertionError(f"{path.name}:{n}: not JSON: {e}") from None
            assert isinstance(case.get("id"), str) and case["id"], f"{path.name}:{n}: no id"
            assert case["id"] not in seen, f"{path.name}:{n}: duplicate id {case['id']}"
            assert isinstance(case.get("why"), str) and case["why"], f"{path.name}:{n}: no why"
            exp = case.get("expect")
            assert isinstance(exp, dict) and isinstance(exp.get("status"), int), f"{path.name}:{n}: no expect"
            if "known_deviation" in case:
                assert isinstance(case.get("today"), dict), f"{path.name}:{n}: known_deviation without today"
            seen.add(case["id"])
            case["_family"] = path.stem
            cases.append(case)
    return cases


CASES = load_corpus()


def test_corpus_is_large_enough():
    assert len(CASES) >= MIN_CASES, len(CASES)
    for c in CASES:
        exp = c["expect"]
        # AWS never answers these requests with a 5xx; a 200 only where the corpus says the limit value
        # itself is valid.
        assert exp["status"] < 500, c["id"]


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(server):
    """A key, an alias of it and a ciphertext under it, for the cases that need real identifiers."""
    kms = server.client()
    md = kms.create_key(Description="malformed-corpus")["KeyMetadata"]
    alias = "alias/malformed-corpus"
    kms.create_alias(AliasName=alias, TargetKeyId=md["KeyId"])
    blob = kms.encrypt(KeyId=md["KeyId"], Plaintext=b"corpus")["CiphertextBlob"]
    return {
        "key_id": md["KeyId"],
        "key_arn": md["Arn"],
        "alias": alias,
        "alias_arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}",
        "ciphertext": base64.b64encode(blob).decode(),
        "ciphertext_cut": base64.b64encode(blob[:-5]).decode(),
        "account": ACCOUNT,
        "region": REGION,
    }


PLACEHOLDER = re.compile(r"\$\{([a-z_0-9]+)(?::([^:}]*))?(?::(\d+))?\}")


def expand(text: str, env: dict) -> str:
    def one(m):
        name, arg, count = m.group(1), m.group(2), m.group(3)
        if name == "rep":
            return arg * int(count)
        if name == "b64":
            return base64.b64encode(b"\x01" * int(arg)).decode()
        if name == "uniq":
            return uuid.uuid4().hex[:12]
        return env[name]
    return PLACEHOLDER.sub(one, text)


# -- SigV4, with every knob a malformed request needs ------------------------------------------------

def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def amz_date(t: datetime.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


def sign_request(headers: list[tuple[str, str]], body: bytes, spec: dict, creds: tuple[str, str]):
    """Adds X-Amz-Date and Authorization to `headers` (a list of (name, value)) as `spec` says.

    spec keys: none (send no Authorization and no X-Amz-Date), date_offset_s, amz_date (literal
    X-Amz-Date), scope_date, region, service, terminator, algorithm, access_key ("unknown", a literal, or
    "lowercase"), wrong_secret, session_token (added as X-Amz-Security-Token and signed), signed_headers (list: exactly
    these names are listed and signed), unsigned (list of header names present but left out of
    SignedHeaders), signature (upper|short|long|nonhex|zeros|empty|flip), authorization (a literal
    Authorization value; {ak} {scope} {signed} {sig} are filled in), drop_after (header names removed after
    signing), set_after ({name: value} set after signing), body_after (text: body sent instead), query
    (the canonical query string signed; the case's wire path must carry it).
    Returns (headers, body)."""
    if spec.get("none"):
        return headers, body
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    when = now + datetime.timedelta(seconds=spec.get("date_offset_s", 0))
    date_value = spec.get("amz_date", amz_date(when))
    headers = headers + [("X-Amz-Date", date_value)]
    if "session_token" in spec:
        headers.append(("X-Amz-Security-Token", spec["session_token"]))
    ak, sk = creds
    if spec.get("access_key") == "unknown":
        ak, sk = "AKIAUNKNOWNUNKNOWN00", "x" * 40
    elif spec.get("access_key") == "lowercase":
        ak = ak.lower()
    elif "access_key" in spec:
        ak = spec["access_key"]
    if spec.get("wrong_secret"):
        sk = ("X" if sk[0] != "X" else "Y") + sk[1:]
    scope_date = spec.get("scope_date", when.strftime("%Y%m%d"))
    region = spec.get("region", REGION)
    service = spec.get("service", "kms")
    terminator = spec.get("terminator", "aws4_request")
    scope = f"{scope_date}/{region}/{service}/{terminator}"
    unsigned = {n.lower() for n in spec.get("unsigned", [])}
    if "signed_headers" in spec:
        signed = [n.lower() for n in spec["signed_headers"]]
    else:
        names = {n.lower() for n, _ in headers}
        signed = sorted(n for n in names if (n in ("host", "content-type") or n.startswith("x-amz-"))
                        and n not in unsigned)
    canon_headers = ""
    for name in signed:
        vals = [" ".join(v.split()) for n, v in headers if n.lower() == name]
        canon_headers += f"{name}:{','.join(vals)}\n"
    creq = "\n".join(["POST", "/", spec.get("query", ""), canon_headers, ";".join(signed),
                      hashlib.sha256(body).hexdigest()])
    sts = "\n".join(["AWS4-HMAC-SHA256", date_value, scope, hashlib.sha256(creq.encode()).hexdigest()])
    key = ("AWS4" + sk).encode()
    for part in (scope_date, region, service, terminator):
        key = _hmac(key, part)
    sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
    sig = {
        None: sig,
        "upper": sig.upper(),
        "short": sig[:-2],
        "long": sig + "00",
        "nonhex": "g" + sig[1:],
        "zeros": "0" * 64,
        "empty": "",
        "flip": ("1" if sig[0] != "1" else "2") + sig[1:],
    }[spec.get("signature")]
    algorithm = spec.get("algorithm", "AWS4-HMAC-SHA256")
    auth = spec.get("authorization")
    fill = {"ak": ak, "scope": scope, "signed": ";".join(signed), "sig": sig}
    if auth is None:
        auth = f"{algorithm} Credential={ak}/{scope}, SignedHeaders={';'.join(signed)}, Signature={sig}"
    else:
        auth = auth.format(**fill)
    headers.append(("Authorization", auth))
    drop = {n.lower() for n in spec.get("drop_after", [])}
    headers = [(n, v) for n, v in headers if n.lower() not in drop]
    for n, v in spec.get("set_after", {}).items():
        headers = [(hn, hv) for hn, hv in headers if hn.lower() != n.lower()] + [(n, v)]
    if "body_after" in spec:
        body = spec["body_after"].encode()
    return headers, body


# -- the wire ---------------------------------------------------------------------------------------

def send(host: str, port: int, headers: list[tuple[str, str]], body: bytes, wire: dict, timeout=30.0):
    """Writes one request on a fresh socket and reads one response: (status, parsed body or bytes).

    wire keys: content_length (a number to claim instead of the true length, or null for no header),
    half_close (shut down our side after sending, so a short body ends at EOF), flood (that many extra
    `X-Flood-<n>: v` headers), huge_header (one header of that many bytes), method, path, version
    (the HTTP version of the request line), raw_head_lines (extra raw header lines)."""
    method = wire.get("method", "POST")
    path = wire.get("path", "/")
    lines = [f"{method} {path} {wire.get('version', 'HTTP/1.1')}"]
    lines += [f"{n}: {v}" for n, v in headers]
    lines += wire.get("raw_head_lines", [])
    for i in range(wire.get("flood", 0)):
        lines.append(f"X-Flood-{i}: v")
    if wire.get("huge_header"):
        lines.append("X-Huge: " + "h" * wire["huge_header"])
    if "content_length" not in wire:
        lines.append(f"Content-Length: {len(body)}")
    elif wire["content_length"] is not None:
        lines.append(f"Content-Length: {wire['content_length']}")
    lines.append("Connection: close")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
            if wire.get("half_close"):
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading everything
        resp = http.client.HTTPResponse(sock)
        try:
            resp.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            return None, b""
        try:
            raw = resp.read()
        except (http.client.IncompleteRead, ConnectionResetError) as e:
            raw = getattr(e, "partial", b"")
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw
        return resp.status, parsed
    finally:
        sock.close()


def run_case(server, env, case):
    host, port = server.hostport()
    target = case.get("target", "TrentService.ListKeys")
    ct = case.get("content_type", DEFAULT_CT)
    headers = [("Host", f"{host}:{port}")]
    if ct is not None:
        headers.append(("Content-Type", ct))
    if target is not None:
        headers.append(("X-Amz-Target", target))
    for n, v in case.get("headers", {}).items():
        headers.append((n, v))
    for n, v in case.get("repeat_headers", []):
        headers.append((n, v))
    if "body_b64" in case:
        body = base64.b64decode(case["body_b64"])
    else:
        body = expand(case.get("body", "{}"), env).encode("utf-8")
    headers, body = sign_request(headers, body, case.get("sign", {}), server.credentials)
    return send(host, port, headers, body, case.get("wire", {}))


# -- the tests --------------------------------------------------------------------------------------

DEVIATIONS = [c["id"] for c in CASES if "known_deviation" in c]


def check(case, status, parsed, want) -> str | None:
    """None when (status, parsed) is `want`, else what differs."""
    if status != want["status"]:
        return f"status {status}, want {want['status']}: {parsed!r:.300}"
    if want.get("type") is not None:
        got = error_type(parsed)
        if got != want.get("type"):
            return f"__type {got!r}, want {want.get('type')!r}: {parsed!r:.300}"
        msg = parsed.get("message", parsed.get("Message")) if isinstance(parsed, dict) else None
        if not isinstance(msg, str):
            return f"no message: {parsed!r:.300}"
        if want.get("message") and want["message"].lower() not in msg.lower():
            return f"message {msg!r} lacks {want['message']!r}"
    return None


# Operations that change state: after a refused one the account must be as it was (keys, aliases, the
# corpus key's metadata, tags and rotations).
WRITES = {f"TrentService.{op}" for op in (
    "CreateKey", "CreateAlias", "UpdateAlias", "DeleteAlias", "TagResource", "UntagResource",
    "UpdateKeyDescription", "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion",
    "EnableKeyRotation", "DisableKeyRotation", "RotateKeyOnDemand", "CreateCustomKeyStore",
    "UpdateCustomKeyStore", "DeleteCustomKeyStore", "ConnectCustomKeyStore", "DisconnectCustomKeyStore")}
# The state after the last case that checked it (a snapshot per write case, not two).
_last_state: dict = {}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(server, kms, env, case):
    writes = case.get("target", "TrentService.ListKeys") in WRITES
    if writes:
        before = _last_state.get("state") or account_state(kms, [env["key_id"]])
    status, parsed = run_case(server, env, case)
    if writes:
        after = _last_state["state"] = account_state(kms, [env["key_id"]])
        if status is not None and status >= 400:
            assert after == before, f"a refused {case['target']} changed the account"
    if os.environ.get("MALFORMED_RECORD"):  # a JSON line per case: what envelope answered (for triage)
        with open(os.environ["MALFORMED_RECORD"], "a", encoding="utf-8") as fh:
            msg = parsed.get("message") if isinstance(parsed, dict) else None
            fh.write(json.dumps({"id": case["id"], "status": status, "type": error_type(parsed),
                                 "message": msg}) + "\n")
    assert status is not None, "the server closed the connection without an answer"
    if "known_deviation" in case:
        # What envelope answers today (a 5xx included, when that is the recorded deviation).
        today = case["today"]
        err = check(case, status, parsed, today)
        assert err is None, (
            f"known deviation no longer reproduces ({err}); if envelope now answers as AWS does "
            f"({case['expect']}), remove known_deviation/today from the corpus line")
        assert check(case, status, parsed, case["expect"]) is not None, (
            "answers as AWS does: remove known_deviation/today from the corpus line")
    else:
        assert status < 500, f"5xx: {status} {parsed!r:.300}"
        err = check(case, status, parsed, case["expect"])
        assert err is None, err


def test_server_still_healthy(server, env, request):
    """Runs after every case (pytest keeps file order): /health answers, and a signed call works."""
    host, port = server.hostport()
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    finally:
        conn.close()
    assert server.proc.poll() is None, "envelope serve exited"
    kms = server.client()
    assert kms.decrypt(CiphertextBlob=base64.b64decode(env["ciphertext"]))["Plaintext"] == b"corpus"
    assert kms.generate_random(NumberOfBytes=16)["Plaintext"]
    status, _, parsed = server.raw("TrentService.ListKeys", {})
    assert status == 200, parsed
    assert "panicked" not in server.stderr_text(), server.stderr_text()[-2000:]
    line = f"malformed corpus: {len(CASES)} cases, {len(DEVIATIONS)} known deviations from AWS remain"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capman is not None:
        with capman.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)
