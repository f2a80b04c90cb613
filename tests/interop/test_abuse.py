"""Load and abuse against a real `envelope serve`, over raw sockets where a client library would not
misbehave on purpose: slowloris heads, trickled bodies, idle HTTP/1.1 and HTTP/2 connections by the
thousand, an HTTP/2 client opening more streams than allowed, a connection flood beyond the limit, and
AWS's request quotas (ThrottlingException) as boto3's retry logic sees them, and the growing wait of a
client whose requests keep failing authentication.

Each test checks that the abuse is cut off where the limit says and that a legitimate caller is served
meanwhile. The `limited` server runs with short limits (1 s head and body timeouts, 4 s idle timeout,
64 connections, 8 HTTP/2 streams) so the module takes ~25 s; the bounds asserted are several times the
configured limits, never the default ones, so a missing limit fails the test rather than slowing it.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import REGION, error_code, start_server

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.0
IDLE_TIMEOUT = 4.0
MAX_CONNECTIONS = 64
H2_STREAMS = 8
# botocore's `max_attempts` counts retries (conftest's clients retry once); `total_max_attempts` counts
# every attempt, so 1 is no retry at all.
NO_RETRIES = {"total_max_attempts": 1, "mode": "standard"}
THROTTLED = "You have exceeded the rate at which you may call KMS. Reduce the frequency of your calls."


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    s = start_server(tmp_path_factory, extra_args=[
        "--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
        "--idle-timeout", str(IDLE_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
        "--h2-max-streams", str(H2_STREAMS), "--request-quotas", "aws,DescribeKey=2",
    ])
    yield s
    s.stop()


@pytest.fixture(scope="module")
def default(tmp_path_factory):
    """A server with every limit at its default and no request quotas."""
    s = start_server(tmp_path_factory, auth_failure_delay=None)
    yield s
    s.stop()


# -- raw sockets -------------------------------------------------------------------------------------

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def connect(server, timeout: float = 5.0) -> socket.socket:
    s = socket.create_connection(server.hostport(), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def closed_by_peer(s: socket.socket) -> bool:
    """Whether the server has closed the connection (EOF or reset), without waiting."""
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True
    finally:
        s.setblocking(True)


def wait_closed(socks, within: float) -> float:
    """Waits until every socket is closed by the server; returns the time taken, or fails."""
    started = time.monotonic()
    open_ = list(socks)
    while open_ and time.monotonic() - started < within:
        open_ = [s for s in open_ if not closed_by_peer(s)]
        time.sleep(0.05)
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {within} s"
    return time.monotonic() - started


def read_response(s: socket.socket, timeout: float) -> bytes:
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def h2_literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, new name, no Huffman coding (RFC 7541 6.2.2)."""
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def h2_frames(s: socket.socket, timeout: float):
    """Yields (type, flags, stream, payload) until the timeout or the end of the connection."""
    s.settimeout(timeout)
    buf = b""
    while True:
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
            yield kind, flags, stream, buf[9:9 + length]
            buf = buf[9 + length:]
        try:
            chunk = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            return
        if not chunk:
            return
        buf += chunk


def legit_call_works(server):
    """A legitimate caller (boto3, no retries) is served."""
    assert "Keys" in server.client().list_keys()


# -- HTTP/1.1: slowloris and trickled bodies ----------------------------------------------------------

def test_a_trickled_request_head_is_cut_off_at_the_header_timeout(limited):
    socks = [connect(limited) for _ in range(50)]
    for s in socks:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    # Keep trickling a header line every 200 ms: never idle on the wire, never a complete head.
    while time.monotonic() - started < HEADER_TIMEOUT / 2:
        for s in socks:
            s.sendall(b"X-Slow: a\r\n")
        time.sleep(0.2)
    legit_call_works(limited)
    alive = []
    while time.monotonic() - started < 3 * HEADER_TIMEOUT:
        alive = [s for s in socks if not closed_by_peer(s)]
        if not alive:
            break
        for s in alive:
            try:
                s.sendall(b"X-Slow: a\r\n")
            except OSError:
                pass
        time.sleep(0.2)
    assert not alive, f"{len(alive)} slowloris connections outlived 3 x the header timeout"
    # Well before the idle timeout, so it was the header timeout that closed them.
    assert time.monotonic() - started < IDLE_TIMEOUT
    legit_call_works(limited)


@pytest.mark.parametrize("protocol", ["kms", "iam"])
def test_a_trickled_body_is_answered_408_at_the_body_timeout(limited, protocol):
    """In the protocol the request speaks, known from its head: KMS's JSON, or IAM's XML for a form."""
    s = connect(limited)
    head = (b"Content-Type: application/x-amz-json-1.1\r\nX-Amz-Target: TrentService.ListKeys\r\n"
            if protocol == "kms" else b"Content-Type: application/x-www-form-urlencoded\r\n")
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n" + head + b"Content-Length: 100\r\n\r\n{")
    started = time.monotonic()
    s.settimeout(0.2)
    reply = b""
    while b"\r\n\r\n" not in reply and time.monotonic() - started < 3 * BODY_TIMEOUT:
        try:
            s.sendall(b" ")
            reply += s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    end = b"}" if protocol == "kms" else b"</ErrorResponse>"
    body = reply.split(b"\r\n\r\n", 1)[1] + (read_response(s, 2) if end not in reply else b"")
    if protocol == "kms":
        assert json.loads(body[:body.rindex(b"}") + 1])["__type"] == "RequestTimeoutException"
    else:
        assert b"<Code>RequestTimeout</Code>" in body, body
    s.close()
    legit_call_works(limited)


# -- idle connections ------------------------------------------------------------------------------

def test_idle_connections_of_every_kind_are_closed_at_the_idle_timeout(limited):
    silent = [connect(limited) for _ in range(10)]          # never send a byte
    h2 = [connect(limited) for _ in range(10)]              # HTTP/2 preface and SETTINGS, then nothing
    for s in h2:
        s.sendall(H2_PREFACE + h2_frame(4, 0, 0))
    partial_h2 = [connect(limited) for _ in range(10)]      # half a preface
    for s in partial_h2:
        s.sendall(H2_PREFACE[:10])
    socks = silent + h2 + partial_h2
    time.sleep(IDLE_TIMEOUT / 2)
    assert not any(closed_by_peer(s) for s in socks), "closed before the idle timeout"
    legit_call_works(limited)
    took = wait_closed(socks, within=3 * IDLE_TIMEOUT)
    assert took < 2 * IDLE_TIMEOUT


def test_an_idle_http1_keep_alive_connection_is_closed_at_the_header_timeout(limited):
    # hyper times the next request's head from the moment it waits for it.
    socks = [connect(limited) for _ in range(10)]
    for s in socks:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(s, 5).startswith(b"HTTP/1.1 200")
    took = wait_closed(socks, within=3 * HEADER_TIMEOUT)
    assert took < IDLE_TIMEOUT


def test_at_the_connection_limit_the_idlest_connection_makes_room(limited):
    # Twice the limit of idle connections: the server accepts each by closing the idlest one.
    socks = [connect(limited) for _ in range(2 * MAX_CONNECTIONS)]
    started = time.monotonic()
    legit_call_works(limited)
    # Served long before the idle timeout would have freed a slot.
    assert time.monotonic() - started < IDLE_TIMEOUT / 2
    time.sleep(0.5)
    closed = [s for s in socks if closed_by_peer(s)]
    assert len(closed) >= MAX_CONNECTIONS, f"only {len(closed)} idle connections were closed"
    # The oldest went first.
    assert closed_by_peer(socks[0])
    for s in socks:
        s.close()


# -- HTTP/2 --------------------------------------------------------------------------------------------

def test_h2_streams_beyond_the_limit_are_refused_and_others_are_served(limited):
    s = connect(limited)
    s.sendall(H2_PREFACE + h2_frame(4, 0, 0))
    host = "%s:%d" % limited.hostport()
    n = 5 * H2_STREAMS
    headers = b"".join(h2_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", "/"), (":authority", host),
        ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", "TrentService.ListKeys"),
    ])
    # END_HEADERS but not END_STREAM: every stream waits for a body that never comes.
    s.sendall(b"".join(h2_frame(1, 0x4, 2 * i + 1, headers) for i in range(n)))
    max_streams, refused, answered = None, set(), set()
    for kind, flags, stream, payload in h2_frames(s, timeout=3 * BODY_TIMEOUT):
        if kind == 4 and not flags & 1:  # SETTINGS
            for i in range(0, len(payload), 6):
                ident, value = struct.unpack(">HI", payload[i:i + 6])
                if ident == 3:
                    max_streams = value
            s.sendall(h2_frame(4, 1, 0))
        elif kind == 3 and struct.unpack(">I", payload)[0] == 7:  # RST_STREAM(REFUSED_STREAM)
            refused.add(stream)
        elif kind == 1:  # a response (the body timeout's 408)
            answered.add(stream)
        if len(refused) + len(answered) >= n:
            break
    s.close()
    assert max_streams == H2_STREAMS
    assert len(refused) >= n - H2_STREAMS, f"{len(refused)} of {n} streams refused"
    assert answered, "the admitted streams were never answered"
    legit_call_works(limited)


def test_thousands_of_idle_h2_connections_leave_the_server_serving(default):
    pid = default.proc.pid
    def rss_kib():
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    n = 2000
    before = rss_kib()
    socks = []
    for _ in range(n):
        s = connect(default)
        s.sendall(H2_PREFACE + h2_frame(4, 0, 0))
        socks.append(s)
    time.sleep(1)
    legit_call_works(default)
    grown = rss_kib() - before
    print(f"\n{n} idle HTTP/2 connections: server RSS grew by {grown} KiB ({grown / n:.1f} KiB each)")
    assert not any(closed_by_peer(s) for s in socks[-100:]), "within the limits: not closed"
    for s in socks:
        s.close()
    legit_call_works(default)
    assert grown < n * 256, "more than 256 KiB per idle connection"


# -- request quotas ----------------------------------------------------------------------------------

def test_request_quotas_are_off_by_default(default):
    kms = default.client(retries=NO_RETRIES)
    # Twice AWS's CreateKey rate (5/s) at once, no retries: nothing is throttled.
    for _ in range(10):
        kms.create_key()
    with urllib.request.urlopen(default.endpoint + "/metrics", timeout=5) as r:
        assert "envelope_throttled_total 0\n" in r.read().decode()


def test_beyond_the_quota_boto3_gets_throttling_exception_and_its_retries_get_through(limited):
    key = limited.client().create_key()["KeyMetadata"]["KeyId"]
    no_retries = limited.client(retries=NO_RETRIES)
    throttled = []
    for _ in range(10):
        try:
            no_retries.describe_key(KeyId=key)
        except ClientError as e:
            throttled.append(e)
    assert throttled, "10 DescribeKey at once under a 2/s quota: none throttled"
    e = throttled[0]
    assert error_code(e) == "ThrottlingException"
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert e.response["Error"]["Message"] == THROTTLED
    # Other families have their own quotas.
    no_retries.list_keys()
    no_retries.generate_data_key(KeyId=key, KeySpec="AES_256")

    # boto3's standard retry mode retries ThrottlingException with backoff: every call succeeds.
    retrying = limited.client(retries={"total_max_attempts": 10, "mode": "standard"})
    retries = 0
    for _ in range(8):
        r = retrying.describe_key(KeyId=key)
        assert r["KeyMetadata"]["KeyId"] == key
        retries += r["ResponseMetadata"]["RetryAttempts"]
    assert retries > 0, "no call needed a retry: the quota did not hold"
    with urllib.request.urlopen(limited.endpoint + "/metrics", timeout=5) as r:
        metrics = r.read().decode()
    count = next(int(l.split()[1]) for l in metrics.splitlines() if l.startswith("envelope_throttled_total "))
    assert count >= len(throttled) + retries


# -- failed authentication -----------------------------------------------------------------------------

FREE_FAILURES = 10  # kms-server/src/tarpit.rs: FREE


def timed(call):
    t0 = time.monotonic()
    try:
        call()
    except ClientError as e:
        return time.monotonic() - t0, e
    return time.monotonic() - t0, None


def test_a_client_that_keeps_failing_authentication_waits_longer_each_time_and_others_do_not(
        tmp_path_factory):
    longest = 3.0
    s = start_server(tmp_path_factory, auth_failure_delay=longest)
    try:
        ak, sk = s.credentials
        good = s.client(retries=NO_RETRIES)
        key = good.create_key()["KeyMetadata"]["KeyId"]
        forged = s.client(ak, "x" * len(sk), retries=NO_RETRIES)
        # The first failures are answered at once (a mistyped secret costs nothing), each with its error.
        for _ in range(FREE_FAILURES):
            took, e = timed(lambda: forged.describe_key(KeyId=key))
            assert e is not None and error_code(e) == "InvalidSignatureException"
        # Then each waits twice as long as the one before: 25, 50, 100, 200, 400, 800, 1600 ms …
        waits = []
        for _ in range(7):
            took, e = timed(lambda: forged.describe_key(KeyId=key))
            assert e is not None and error_code(e) == "InvalidSignatureException"
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
            waits.append(took)
        assert waits[-1] >= 1.6 and waits[-2] >= 0.8 and waits[-3] >= 0.4, waits
        # The next failures wait the longest (3 s); meanwhile a caller whose requests authenticate is
        # answered at once, from the same address.
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=timed(lambda: forged.describe_key(KeyId=key))))
        t.start()
        time.sleep(0.2)
        took, e = timed(lambda: good.describe_key(KeyId=key))
        assert e is None and took < longest / 2, took
        t.join()
        assert slow["r"][0] >= longest and error_code(slow["r"][1]) == "InvalidSignatureException"
        # IAM and STS failures count and wait the same way.
        iam = client_as(s, "iam", ak, "y" * len(sk))
        took, e = timed(lambda: iam.list_users())
        assert e is not None and error_code(e) == "SignatureDoesNotMatch" and took >= longest, (took, e)
        with urllib.request.urlopen(s.endpoint + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert f"envelope_auth_failures_total {FREE_FAILURES + 9}\n" in metrics
    finally:
        s.stop()


def client_as(server, service, ak, sk):
    return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ak,
                        aws_secret_access_key=sk, config=Config(retries=NO_RETRIES))
