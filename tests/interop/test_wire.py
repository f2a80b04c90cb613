"""The wire with raw HTTP (http.client, requests signed with botocore's SigV4Auth): authentication
failures, malformed requests and limits get AWS's 400 errors, never a 5xx."""

import datetime
import http.client
import json
import socket
from xml.etree import ElementTree

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REGION, error_type, unchanged


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def assert_error(result, status, *types):
    code, headers, body = result
    assert code == status, (code, body)
    assert error_type(body) in types, body
    assert isinstance(body.get("message", body.get("Message")), str), body
    return body


def test_signed_request_is_accepted(server):
    code, headers, body = server.raw("TrentService.ListKeys", {})
    assert code == 200, body
    assert "Keys" in body
    assert headers.get("content-type", "").startswith("application/x-amz-json-1.1")
    code, _, body = server.raw("TrentService.GenerateRandom", {"NumberOfBytes": 8})
    assert code == 200, body
    assert body["Plaintext"]


# A refused request is a CreateKey with tags: a refusal that let it through would show as a new key.
CREATE = {"Description": "must not exist", "Tags": [{"TagKey": "t", "TagValue": "v"}]}


def test_wrong_secret(server, kms):
    ak, sk = server.credentials
    wrong = ("X" if sk[0] != "X" else "Y") + sk[1:]
    with unchanged(kms):
        assert_error(server.raw("TrentService.CreateKey", CREATE, secret_key=wrong), 400,
                     "InvalidSignatureException")


def test_unknown_access_key(server, kms):
    with unchanged(kms):
        assert_error(server.raw("TrentService.CreateKey", CREATE, access_key="AKIAUNKNOWNUNKNOWN00",
                                secret_key="x" * 40), 400, "UnrecognizedClientException")


def test_stale_date(server, kms):
    when = utcnow() - datetime.timedelta(minutes=20)
    with unchanged(kms):
        body = assert_error(server.raw("TrentService.CreateKey", CREATE, when=when), 400,
                            "InvalidSignatureException")
    assert "expired" in body["message"].lower(), body


def test_future_date(server, kms):
    when = utcnow() + datetime.timedelta(minutes=20)
    with unchanged(kms):
        assert_error(server.raw("TrentService.CreateKey", CREATE, when=when), 400, "InvalidSignatureException")


def test_date_within_window_is_accepted(server):
    when = utcnow() - datetime.timedelta(minutes=10)
    code, _, body = server.raw("TrentService.ListKeys", {}, when=when)
    assert code == 200, body


def test_body_changed_after_signing(server):
    def tamper(h, b):
        return h, b'{"NumberOfBytes": 9}'
    assert_error(server.raw("TrentService.GenerateRandom", {"NumberOfBytes": 8}, tamper=tamper), 400,
                 "InvalidSignatureException")


def test_target_changed_after_signing(server, kms):
    def tamper(h, b):
        h = dict(h)
        h["X-Amz-Target"] = "TrentService.CreateKey"
        return h, b
    with unchanged(kms):
        assert_error(server.raw("TrentService.ListKeys", {}, tamper=tamper), 400, "InvalidSignatureException")


def test_body_changed_after_signing_to_a_write(server, kms):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]

    def tamper(h, b):
        return h, json.dumps({"KeyId": key_id, "Tags": [{"TagKey": "t", "TagValue": "evil"}]}).encode()
    with unchanged(kms, key_id):
        assert_error(server.raw("TrentService.TagResource", {"KeyId": key_id, "Tags": [{"TagKey": "t",
                                                                                        "TagValue": "v"}]},
                                tamper=tamper), 400, "InvalidSignatureException")


def test_missing_authorization(server, kms):
    with unchanged(kms):
        assert_error(server.raw("TrentService.CreateKey", CREATE, sign=False), 400,
                     "IncompleteSignatureException", "MissingAuthenticationTokenException")


@pytest.mark.parametrize("auth", [
    "AWS4-HMAC-SHA256 garbage",
    "AWS4-HMAC-SHA256 Credential=AKIA/20240101/us-east-1/kms/aws4_request",
    "Basic dXNlcjpwYXNz",
    "",
])
def test_malformed_authorization(server, auth):
    def tamper(h, b):
        h = dict(h)
        h["Authorization"] = auth
        return h, b
    code, _, body = server.raw("TrentService.ListKeys", {}, tamper=tamper)
    assert code == 400, (code, body)
    assert error_type(body) in ("IncompleteSignatureException", "MissingAuthenticationTokenException",
                                "InvalidSignatureException", "UnrecognizedClientException"), body


def test_missing_date_header(server):
    def tamper(h, b):
        return {k: v for k, v in h.items() if k.lower() != "x-amz-date"}, b
    code, _, body = server.raw("TrentService.ListKeys", {}, tamper=tamper)
    assert code == 400, (code, body)
    assert error_type(body) in ("IncompleteSignatureException", "InvalidSignatureException",
                                "MissingAuthenticationTokenException"), body


def test_malformed_json(server):
    for raw in (b"{not json", b"[1,2,3]", b"\xff\xfe\x00", b'{"Limit": 10'):
        assert_error(server.raw("TrentService.ListKeys", raw), 400, "SerializationException")


@pytest.mark.parametrize("op,body", [
    ("GenerateRandom", {"NumberOfBytes": "abc"}),
    ("GenerateRandom", {"NumberOfBytes": 1.5}),
    ("ListKeys", {"Limit": "ten"}),
    ("Encrypt", {"KeyId": 12, "Plaintext": "eA=="}),
    ("CreateKey", {"Tags": {"TagKey": "a"}}),
    ("Encrypt", {"KeyId": "alias/x", "Plaintext": "eA==", "EncryptionContext": {"a": 1}}),
])
def test_wrong_json_type(server, kms, op, body):
    with unchanged(kms):
        assert_error(server.raw("TrentService." + op, body), 400, "SerializationException")


def test_invalid_base64_blob(server):
    code, _, body = server.raw("TrentService.Encrypt", {"KeyId": "alias/x", "Plaintext": "not base64 !!!"})
    assert code == 400, (code, body)
    assert error_type(body) in ("SerializationException", "ValidationException"), body


@pytest.mark.parametrize("target", ["TrentService.NoSuchOperation", "TrentService.", "Foo.ListKeys",
                                    "TrentService.listkeys"])
def test_unknown_operation(server, target):
    code, _, body = server.raw(target, {})
    assert code == 400, (code, body)
    assert error_type(body) == "UnknownOperationException", body


def test_missing_target(server):
    code, _, body = server.raw(None, {})
    assert 400 <= code < 500, (code, body)


def test_missing_required_field_is_validation_error(server):
    assert_error(server.raw("TrentService.Encrypt", {"Plaintext": "eA=="}), 400, "ValidationException")
    assert_error(server.raw("TrentService.Decrypt", {}), 400, "ValidationException")


def test_huge_body(server):
    big = json.dumps({"KeyId": "alias/x", "Plaintext": "A" * (2 * 1024 * 1024)})
    code, _, body = server.raw("TrentService.Encrypt", big, timeout=60)
    assert 400 <= code < 500, (code, body)


def test_huge_body_unsigned(server):
    big = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    code, _, body = server.raw("TrentService.ListKeys", big, sign=False, timeout=60)
    assert 400 <= code < 500, (code, body)


def test_server_still_healthy_after_bad_requests(server):
    code, _, body = server.raw("TrentService.ListKeys", {})
    assert code == 200, body


def test_error_shape_via_boto3(kms):
    with pytest.raises(kms.exceptions.NotFoundException) as e:
        kms.describe_key(KeyId="0b7fa5ab-0000-4000-8000-0000000000e1")
    err = e.value.response
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert err["Error"]["Message"]


def test_oversized_headers_are_refused_not_crashing(server):
    """Request heads are bounded (64 KiB): a 200 KiB header is refused with a 4xx, and the server lives on."""
    import socket

    host, port = server.hostport()
    head = (f"POST / HTTP/1.1\r\nHost: {host}:{port}\r\nX-Amz-Target: TrentService.ListKeys\r\n"
            f"X-Filler: {'a' * 200 * 1024}\r\nContent-Length: 2\r\n\r\n{{}}")
    with socket.create_connection((host, port), timeout=10) as sock:
        try:
            sock.sendall(head.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before reading everything: that is a refusal too
        reply = b""
        try:
            while chunk := sock.recv(65536):
                reply += chunk
        except ConnectionResetError:
            pass
    if reply:
        status = int(reply.split(b" ", 2)[1])
        assert 400 <= status < 500, reply[:200]
    status, _, _ = server.raw("TrentService.ListKeys", {})
    assert status == 200


# -- IAM and STS (the Query protocol) on the same endpoint ------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
LIST_USERS = "Action=ListUsers&Version=2010-05-08"


def query_code(body: bytes) -> str:
    """The error code of a Query `<ErrorResponse>` (the body must be well-formed XML)."""
    ns = "{https://iam.amazonaws.com/doc/2010-05-08/}"
    return ElementTree.fromstring(body).find(f"{ns}Error/{ns}Code").text


def signed_iam(server, method: str, query: str, body: bytes = b"", headers=None):
    """A request signed by botocore for IAM with this query string and body: (status, body bytes)."""
    req = AWSRequest(method=method, url=f"{server.endpoint}/?{query}" if query else server.endpoint + "/",
                     data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(*server.credentials), "iam", REGION).add_auth(req)
    conn = http.client.HTTPConnection(*server.hostport(), timeout=30)
    try:
        conn.request(method, req.url[len(server.endpoint):], body=body or None, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_query_requests_are_served_on_get_and_from_the_query_string(server):
    """IAM takes its parameters from the query string too, on GET and on POST: answered as IAM does,
    in XML (a signed GET used to get a JSON 404)."""
    for method, headers in [("GET", {}), ("POST", FORM)]:
        status, body = signed_iam(server, method, LIST_USERS, headers=headers)
        assert status == 200, body
        assert ElementTree.fromstring(body).tag.endswith("ListUsersResponse"), body
    # Both at once: one list of parameters, each at most once.
    status, body = signed_iam(server, "POST", "Action=ListUsers", b"Version=2010-05-08", FORM)
    assert status == 200, body
    status, body = signed_iam(server, "POST", LIST_USERS, b"Action=ListUsers", FORM)
    assert status == 400 and query_code(body) == "InvalidInput", body
    # Unsigned, it is still a Query request: MissingAuthenticationToken in XML.
    conn = http.client.HTTPConnection(*server.hostport(), timeout=30)
    conn.request("GET", "/?" + LIST_USERS)
    resp = conn.getresponse()
    assert resp.status == 403 and query_code(resp.read()) == "MissingAuthenticationToken"
    conn.close()


def test_query_body_failures_are_answered_in_xml(server):
    """A body refused before it is parsed (too large, unreadable) is answered in the protocol the
    request's head names: IAM's XML, not KMS's JSON."""
    big = (LIST_USERS + "&X=" + "a" * 70_000).encode()
    status, _, body = server.raw(None, big, service="iam", headers=FORM)
    assert status == 413 and query_code(body) == "ValidationError", body
    status, _, body = server.raw(None, big, sign=False, headers=FORM)
    assert status == 413 and query_code(body) == "ValidationError", body
    # A chunked body that is not chunked: unreadable.
    s = socket.create_connection(server.hostport(), timeout=10)
    s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    s.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply[:300]
    assert query_code(body) == "InvalidQueryParameter", body


def test_query_authentication_errors_carry_iams_statuses(server):
    """IAM's common errors: IncompleteSignature is 400; a missing, unknown or wrong credential 403."""
    ak, sk = server.credentials
    incomplete = lambda h, b: ({**h, "Authorization": h["Authorization"].split(", Signature=")[0]}, b)  # noqa: E731
    for kw, status, code in [
        ({"tamper": incomplete}, 400, "IncompleteSignature"),
        ({"secret_key": ("X" if sk[0] != "X" else "Y") + sk[1:]}, 403, "SignatureDoesNotMatch"),
        ({"access_key": "AKIAUNKNOWNUNKNOWN00"}, 403, "InvalidClientTokenId"),
        ({"sign": False}, 403, "MissingAuthenticationToken"),
    ]:
        got, _, body = server.raw(None, LIST_USERS, service="iam", headers=FORM, **kw)
        assert (got, query_code(body)) == (status, code), (kw, body)


def test_query_request_authenticated_two_ways_is_refused(server):
    """A header-signed IAM request whose (signed) query string also carries presigned-URL parameters:
    AWS refuses two authentication mechanisms rather than pick one; for IAM, SignatureDoesNotMatch."""
    presign = "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=00"
    for method, headers in [("GET", {}), ("POST", FORM)]:
        status, body = signed_iam(server, method, LIST_USERS + presign, headers=headers)
        assert (status, query_code(body)) == (403, "SignatureDoesNotMatch"), body
        assert b"Found both" in body
