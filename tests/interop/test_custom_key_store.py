"""Custom key stores (AWS CloudHSM key stores) on SoftHSMv2 tokens, driven by boto3 against the real
`envelope serve --hsm-cluster cluster-ID=MODULE:LABEL`: the six store operations and their states, keys
whose material lives in the token, AWS's refusals, disconnect and reconnect, restart.

Each test gets fresh tokens from scripts/softhsm.sh; without SoftHSMv2 the tests skip (fail under CI).
"""

from pathlib import Path

import pytest

from conftest import (STORES, Server, audit_records, create_principal, error_code, fresh_postgres_database, kms_client,
                      race, unchanged, unique)
from softhsm import Token, token  # noqa: F401  (the fixture)

CLUSTER = "cluster-envelopetok1"
ALIAS_OF_CLUSTER = "cluster-envelopetok2"  # the same token under another id
OTHER_CLUSTER = "cluster-othertoken3"  # another token
MISSING_CLUSTER = "cluster-missingtok4"  # configured, but no token has its label
OTHER_PIN = "other-token-pin-1"
TRUST_ANCHOR = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"


def cks_server(tmp_path: Path, token: Token, **kw) -> Server:
    d = tmp_path / "envelope-data"
    d.mkdir(exist_ok=True)
    args = (token.cluster_arg(CLUSTER) + token.cluster_arg(ALIAS_OF_CLUSTER)
            + token.cluster_arg(OTHER_CLUSTER, "other-token") + token.cluster_arg(MISSING_CLUSTER, "no-such-token"))
    return Server(d, extra_args=args + kw.pop("extra_args", []), env=token.env(), **kw)


@pytest.fixture
def tokens(token):
    token.add_token("other-token", OTHER_PIN)
    return token


def expect(code, fn, *args, **kw):
    """`fn` (a client's method, or a helper taking the client first) is refused with `code`, a 400,
    and changes nothing (keys, aliases, custom key stores and their connection states)."""
    client = getattr(fn, "__self__", None) or args[0]
    with unchanged(client), pytest.raises(Exception) as e:
        fn(*args, **kw)
    assert error_code(e.value) == code, (code, e.value)
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400, e.value
    return e.value


def store_of(kms, store_id):
    return kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0]


def new_store(kms, token, name="store-a", cluster=CLUSTER, password=None):
    return kms.create_custom_key_store(CustomKeyStoreName=name, CloudHsmClusterId=cluster,
                                       TrustAnchorCertificate=TRUST_ANCHOR,
                                       KeyStorePassword=password or token.pin)["CustomKeyStoreId"]


def hsm_key(kms, store_id, **kw):
    return kms.create_key(Origin="AWS_CLOUDHSM", CustomKeyStoreId=store_id, **kw)["KeyMetadata"]


def round_trip(kms, key_id, software_key):
    ctx = {"purpose": "cks-test"}
    ct = kms.encrypt(KeyId=key_id, Plaintext=b"inside the token", EncryptionContext=ctx)["CiphertextBlob"]
    out = kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)
    assert out["Plaintext"] == b"inside the token"
    assert out["KeyId"].endswith(key_id)
    dk = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=ctx)
    assert len(dk["Plaintext"]) == 32
    assert kms.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"]
    wp = kms.generate_data_key_without_plaintext(KeyId=key_id, NumberOfBytes=24)
    assert "Plaintext" not in wp
    assert len(kms.decrypt(CiphertextBlob=wp["CiphertextBlob"])["Plaintext"]) == 24
    # ReEncrypt between a token key and a software key, both ways.
    to_soft = kms.re_encrypt(CiphertextBlob=ct, SourceEncryptionContext=ctx, DestinationKeyId=software_key)
    assert kms.decrypt(CiphertextBlob=to_soft["CiphertextBlob"])["Plaintext"] == b"inside the token"
    back = kms.re_encrypt(CiphertextBlob=to_soft["CiphertextBlob"], DestinationKeyId=key_id,
                          DestinationEncryptionContext={"again": "1"})
    assert back["KeyId"].endswith(key_id)
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"],
                       EncryptionContext={"again": "1"})["Plaintext"] == b"inside the token"
    return ct, ctx


@pytest.mark.parametrize("store", STORES)
def test_custom_key_store_lifecycle_and_keys(tmp_path, tokens, store):
    database_url = fresh_postgres_database() if store == "postgres" else None
    s = cks_server(tmp_path, tokens, database_url=database_url).start()
    try:
        kms = s.client()
        soft = kms.create_key()["KeyMetadata"]["KeyId"]
        sid = new_store(kms, tokens)
        assert sid.startswith("cks-") and len(sid) == 21
        st = store_of(kms, sid)
        assert st["ConnectionState"] == "DISCONNECTED" and "ConnectionErrorCode" not in st
        assert st["CloudHsmClusterId"] == CLUSTER and st["CustomKeyStoreName"] == "store-a"
        assert st["CustomKeyStoreType"] == "AWS_CLOUDHSM" and st["TrustAnchorCertificate"] == TRUST_ANCHOR
        assert kms.describe_custom_key_stores(CustomKeyStoreName="store-a")["CustomKeyStores"][0]["CustomKeyStoreId"] == sid

        # Creation refusals.
        expect("CustomKeyStoreNameInUseException", new_store, kms, tokens, "store-a", OTHER_CLUSTER, OTHER_PIN)
        expect("CloudHsmClusterInUseException", new_store, kms, tokens, "store-b", CLUSTER)
        expect("CloudHsmClusterInUseException", new_store, kms, tokens, "store-b", ALIAS_OF_CLUSTER)
        expect("CloudHsmClusterNotFoundException", new_store, kms, tokens, "store-b", "cluster-unknowntok9")
        expect("ValidationException", new_store, kms, tokens, "store-b", OTHER_CLUSTER, "short")
        expect("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores, CustomKeyStoreId="cks-0000000000000000a")
        expect("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores, CustomKeyStoreName="nope")
        expect("CustomKeyStoreNotFoundException", kms.connect_custom_key_store, CustomKeyStoreId="cks-0000000000000000a")

        # Not connected: no keys, no disconnect.
        expect("CustomKeyStoreInvalidStateException", hsm_key, kms, sid)
        expect("CustomKeyStoreInvalidStateException", kms.disconnect_custom_key_store, CustomKeyStoreId=sid)
        expect("CustomKeyStoreInvalidStateException", kms.generate_random, NumberOfBytes=8, CustomKeyStoreId=sid)

        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        assert store_of(kms, sid)["ConnectionState"] == "CONNECTED"
        kms.connect_custom_key_store(CustomKeyStoreId=sid)  # connecting a connected store is fine
        assert len(kms.generate_random(NumberOfBytes=40, CustomKeyStoreId=sid)["Plaintext"]) == 40

        meta = hsm_key(kms, sid, Description="in the token")
        key_id = meta["KeyId"]
        assert meta["Origin"] == "AWS_CLOUDHSM" and meta["CustomKeyStoreId"] == sid
        assert meta["CloudHsmClusterId"] == CLUSTER and meta["KeyState"] == "Enabled"
        d = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert (d["Origin"], d["CustomKeyStoreId"], d["CloudHsmClusterId"]) == ("AWS_CLOUDHSM", sid, CLUSTER)
        assert key_id in [k["KeyId"] for k in kms.list_keys()["Keys"]]
        assert "CustomKeyStoreId" not in kms.describe_key(KeyId=soft)["KeyMetadata"]

        ct, ctx = round_trip(kms, key_id, soft)
        bad = bytearray(ct)
        bad[-1] ^= 1
        expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=bytes(bad), EncryptionContext=ctx)
        expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct, EncryptionContext={"purpose": "other"})
        expect("InvalidCiphertextException", kms.decrypt, CiphertextBlob=ct[:30])

        # What AWS refuses for keys in a CloudHSM key store.
        for spec in ("RSA_2048", "ECC_NIST_P256", "HMAC_256"):
            expect("UnsupportedOperationException", hsm_key, kms, sid, KeySpec=spec)
        expect("UnsupportedOperationException", kms.create_key, Origin="EXTERNAL", CustomKeyStoreId=sid)
        expect("UnsupportedOperationException", kms.enable_key_rotation, KeyId=key_id)
        expect("UnsupportedOperationException", kms.rotate_key_on_demand, KeyId=key_id)
        expect("UnsupportedOperationException", kms.get_parameters_for_import, KeyId=key_id,
               WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048")
        expect("UnsupportedOperationException", kms.generate_data_key_pair, KeyId=key_id, KeyPairSpec="RSA_2048")
        expect("InvalidKeyUsageException", kms.generate_mac, KeyId=key_id, Message=b"m",
               MacAlgorithm="HMAC_SHA_256")
        assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False
        expect("ValidationException", kms.create_key, Origin="AWS_CLOUDHSM")

        # A connected store: rename yes; password, cluster, delete no.
        kms.update_custom_key_store(CustomKeyStoreId=sid, NewCustomKeyStoreName="store-renamed")
        assert store_of(kms, sid)["CustomKeyStoreName"] == "store-renamed"
        expect("CustomKeyStoreInvalidStateException", kms.update_custom_key_store, CustomKeyStoreId=sid,
               KeyStorePassword=tokens.pin)
        expect("CustomKeyStoreInvalidStateException", kms.delete_custom_key_store, CustomKeyStoreId=sid)

        # Disconnected: the keys are Unavailable and refuse every cryptographic call.
        kms.disconnect_custom_key_store(CustomKeyStoreId=sid)
        assert store_of(kms, sid)["ConnectionState"] == "DISCONNECTED"
        d = kms.describe_key(KeyId=key_id)["KeyMetadata"]
        assert d["KeyState"] == "Unavailable" and d["Enabled"] is False
        expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=ct, EncryptionContext=ctx)
        expect("KMSInvalidStateException", kms.encrypt, KeyId=key_id, Plaintext=b"x")
        expect("KMSInvalidStateException", kms.generate_data_key, KeyId=key_id, KeySpec="AES_256")
        expect("KMSInvalidStateException", kms.re_encrypt, CiphertextBlob=ct, SourceEncryptionContext=ctx,
               DestinationKeyId=soft)
        expect("CustomKeyStoreInvalidStateException", kms.disconnect_custom_key_store, CustomKeyStoreId=sid)
        expect("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store, CustomKeyStoreId=sid)
        # Software keys are untouched.
        assert kms.generate_data_key(KeyId=soft, KeySpec="AES_256")["KeyId"].endswith(soft)

        # Disconnected: the password and (to the same token) the cluster may change.
        kms.update_custom_key_store(CustomKeyStoreId=sid, KeyStorePassword=tokens.pin)
        expect("CloudHsmClusterNotRelatedException", kms.update_custom_key_store, CustomKeyStoreId=sid,
               CloudHsmClusterId=OTHER_CLUSTER)
        kms.update_custom_key_store(CustomKeyStoreId=sid, CloudHsmClusterId=ALIAS_OF_CLUSTER)
        assert store_of(kms, sid)["CloudHsmClusterId"] == ALIAS_OF_CLUSTER

        # Reconnected: every earlier ciphertext decrypts again.
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"inside the token"
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"

        # A second store on the other token; an empty, disconnected store can be deleted.
        other = new_store(kms, tokens, "store-other", OTHER_CLUSTER, OTHER_PIN)
        listed = kms.describe_custom_key_stores()["CustomKeyStores"]
        assert sorted(x["CustomKeyStoreId"] for x in listed) == sorted([sid, other])
        page = kms.describe_custom_key_stores(Limit=1)
        assert page["Truncated"] is True and len(page["CustomKeyStores"]) == 1
        rest = kms.describe_custom_key_stores(Limit=1, Marker=page["NextMarker"])
        assert {page["CustomKeyStores"][0]["CustomKeyStoreId"], rest["CustomKeyStores"][0]["CustomKeyStoreId"]} == {sid, other}
        kms.delete_custom_key_store(CustomKeyStoreId=other)
        expect("CustomKeyStoreNotFoundException", kms.describe_custom_key_stores, CustomKeyStoreId=other)
        expect("CustomKeyStoreNotFoundException", kms.delete_custom_key_store, CustomKeyStoreId=other)

        # A key scheduled for deletion still counts against deleting its store.
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
        kms.disconnect_custom_key_store(CustomKeyStoreId=sid)
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
        expect("CustomKeyStoreHasCMKsException", kms.delete_custom_key_store, CustomKeyStoreId=sid)
    finally:
        s.stop()
    err = s.stderr_text()
    assert tokens.pin not in err and OTHER_PIN not in err
    audit = audit_records(s.data_dir)
    names = {r["eventName"] for r in audit}
    for op in ("CreateCustomKeyStore", "DescribeCustomKeyStores", "ConnectCustomKeyStore",
               "DisconnectCustomKeyStore", "UpdateCustomKeyStore", "DeleteCustomKeyStore"):
        assert op in names, op
    assert any(r["eventName"] == "DeleteCustomKeyStore" and r.get("errorCode") == "CustomKeyStoreHasCMKsException"
               for r in audit)
    text = (s.data_dir / "audit.log").read_text()
    assert tokens.pin not in text and OTHER_PIN not in text
    if store == "sqlite":
        db = (s.data_dir / "envelope.db").read_bytes()
        assert tokens.pin.encode() not in db and OTHER_PIN.encode() not in db


def test_wrong_password_and_missing_token_fail_the_connection(tmp_path, tokens):
    s = cks_server(tmp_path, tokens).start()
    try:
        kms = s.client()
        sid = new_store(kms, tokens, password="not-the-pin")
        kms.connect_custom_key_store(CustomKeyStoreId=sid)  # as AWS: the call succeeds, the state says why not
        st = store_of(kms, sid)
        assert (st["ConnectionState"], st["ConnectionErrorCode"]) == ("FAILED", "INVALID_CREDENTIALS")
        expect("CustomKeyStoreInvalidStateException", kms.connect_custom_key_store, CustomKeyStoreId=sid)
        expect("CustomKeyStoreInvalidStateException", hsm_key, kms, sid)
        expect("CustomKeyStoreInvalidStateException", kms.update_custom_key_store, CustomKeyStoreId=sid,
               KeyStorePassword=tokens.pin)
        # As AWS: a FAILED store cannot even be renamed (only CONNECTED or DISCONNECTED ones can).
        expect("CustomKeyStoreInvalidStateException", kms.update_custom_key_store, CustomKeyStoreId=sid,
               NewCustomKeyStoreName="renamed-while-failed")
        kms.disconnect_custom_key_store(CustomKeyStoreId=sid)
        kms.update_custom_key_store(CustomKeyStoreId=sid, KeyStorePassword=tokens.pin)
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        st = store_of(kms, sid)
        assert st["ConnectionState"] == "CONNECTED" and "ConnectionErrorCode" not in st
        assert hsm_key(kms, sid)["KeyState"] == "Enabled"

        gone = new_store(kms, tokens, "store-missing", MISSING_CLUSTER, "whatever-pin")
        kms.connect_custom_key_store(CustomKeyStoreId=gone)
        st = store_of(kms, gone)
        assert (st["ConnectionState"], st["ConnectionErrorCode"]) == ("FAILED", "CLUSTER_NOT_FOUND")
    finally:
        s.stop()
    assert "not-the-pin" not in s.stderr_text()
    assert "custom key store connection failed" in s.stderr_text()


def test_custom_key_stores_per_account_quota(tmp_path, tokens):
    """AWS's resource quota (10 per account, lowered here to 2): the third is LimitExceededException."""
    s = cks_server(tmp_path, tokens, extra_args=["--resource-quota", "custom-key-stores=2"]).start()
    try:
        kms = s.client()
        new_store(kms, tokens)
        new_store(kms, tokens, "store-b", OTHER_CLUSTER, OTHER_PIN)
        expect("LimitExceededException", new_store, kms, tokens, "store-c", MISSING_CLUSTER, "whatever-pin")
        assert len(kms.describe_custom_key_stores()["CustomKeyStores"]) == 2
    finally:
        s.stop()


@pytest.mark.parametrize("store", STORES)
def test_custom_key_stores_belong_to_an_account(tmp_path, tokens, store):
    """Another account neither sees nor touches a store: every operation on it is
    CustomKeyStoreNotFoundException, as for a store that does not exist; store names are per account;
    a cluster that backs another account's store is in use, without naming that store."""
    db = fresh_postgres_database() if store == "postgres" else None
    s = cks_server(tmp_path, tokens, database_url=db).start()
    try:
        kms = s.client()
        sid = new_store(kms, tokens)
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        key = hsm_key(kms, sid)["KeyId"]
        other = create_principal(s, "cks-admin", "444455556666", admin=True)
        theirs = kms_client(s.endpoint, other["AccessKeyId"], other["SecretAccessKey"])
        assert theirs.describe_custom_key_stores()["CustomKeyStores"] == []
        with unchanged(kms, key):
            for call, kw in [
                (theirs.describe_custom_key_stores, {"CustomKeyStoreId": sid}),
                (theirs.describe_custom_key_stores, {"CustomKeyStoreName": "store-a"}),
                (theirs.disconnect_custom_key_store, {"CustomKeyStoreId": sid}),
                (theirs.connect_custom_key_store, {"CustomKeyStoreId": sid}),
                (theirs.update_custom_key_store, {"CustomKeyStoreId": sid, "NewCustomKeyStoreName": "mine"}),
                (theirs.delete_custom_key_store, {"CustomKeyStoreId": sid}),
                (hsm_key, {"store_id": sid}),
                (theirs.generate_random, {"NumberOfBytes": 8, "CustomKeyStoreId": sid}),
            ]:
                with pytest.raises(Exception) as e:
                    call(theirs, **kw) if call is hsm_key else call(**kw)
                assert error_code(e.value) == "CustomKeyStoreNotFoundException", (call, e.value)
            # The same name in the other account is free; the same cluster is not, and its store is not named.
            e = expect("CloudHsmClusterInUseException", new_store, theirs, tokens)
            assert sid not in str(e)
        mine = new_store(theirs, tokens, "store-a", OTHER_CLUSTER, OTHER_PIN)
        assert [c["CustomKeyStoreId"] for c in theirs.describe_custom_key_stores()["CustomKeyStores"]] == [mine]
        assert [c["CustomKeyStoreId"] for c in kms.describe_custom_key_stores()["CustomKeyStores"]] == [sid]
        # A second store of that name in one account is still refused.
        expect("CustomKeyStoreNameInUseException", new_store, theirs, tokens, "store-a", MISSING_CLUSTER, "x-pin-1")
    finally:
        s.stop()


def test_restart_keeps_every_key_and_the_connection(tmp_path, tokens):
    s = cks_server(tmp_path, tokens).start()
    try:
        kms = s.client()
        soft = kms.create_key()["KeyMetadata"]["KeyId"]
        sid = new_store(kms, tokens)
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        keys = [hsm_key(kms, sid)["KeyId"] for _ in range(3)]
        sealed = {k: round_trip(kms, k, soft) for k in keys}
    finally:
        s.stop()
    s2 = cks_server(tmp_path, tokens).start()
    try:
        kms = s2.client()
        # Still connected: this process logs in on first use, with the password kept wrapped in the store.
        assert store_of(kms, sid)["ConnectionState"] == "CONNECTED"
        for k, (ct, ctx) in sealed.items():
            assert kms.decrypt(CiphertextBlob=ct, EncryptionContext=ctx)["Plaintext"] == b"inside the token"
            assert kms.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "Enabled"
            round_trip(kms, k, soft)
    finally:
        s2.stop()
    # Without the cluster configured, the keys are unusable but nothing is lost.
    s3 = Server(tmp_path / "envelope-data", env=tokens.env()).start()
    try:
        kms = s3.client()
        ct, ctx = sealed[keys[0]]
        expect("KMSInvalidStateException", kms.decrypt, CiphertextBlob=ct, EncryptionContext=ctx)
        expect("CloudHsmClusterNotFoundException", new_store, kms, tokens, "store-z", CLUSTER)
    finally:
        s3.stop()


def test_custom_key_store_beside_an_hsm_root_of_trust(tmp_path, tokens):
    # The root of trust in one token, a custom key store on another; the root's token may not be a cluster.
    s = cks_server(tmp_path, tokens, extra_args=["--hsm-module", tokens.module, "--hsm-token-label", "other-token"],
                   )
    pin_file = tmp_path / "other.pin"
    pin_file.write_text(OTHER_PIN + "\n")
    pin_file.chmod(0o600)
    s.extra_args += ["--hsm-pin-file", str(pin_file)]
    s.spawn()
    assert s.wait_exit() != 0
    assert "root of trust's token" in s.stderr_text()
    d = tmp_path / "envelope-data"
    s = Server(d, extra_args=["--hsm-module", tokens.module, "--hsm-token-label", "other-token", "--hsm-pin-file",
                              str(pin_file)] + tokens.cluster_arg(CLUSTER), env=tokens.env()).start()
    try:
        kms = s.client()
        soft = kms.create_key()["KeyMetadata"]["KeyId"]
        sid = new_store(kms, tokens)
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        key_id = hsm_key(kms, sid)["KeyId"]
        round_trip(kms, key_id, soft)
        kms.disconnect_custom_key_store(CustomKeyStoreId=sid)
        # Disconnecting the store leaves the root of trust (same module) working.
        assert kms.generate_data_key(KeyId=soft, KeySpec="AES_256")["KeyId"].endswith(soft)
        kms.create_key()
        kms.connect_custom_key_store(CustomKeyStoreId=sid)
        round_trip(kms, key_id, soft)
    finally:
        s.stop()


@pytest.mark.parametrize("store", STORES)
def test_stores_racing_for_one_cluster_leave_one(tmp_path, tokens, store):
    """Eight CreateCustomKeyStore calls with one cluster (two of them by its other name) at once: one
    store is made, the rest are CloudHsmClusterInUseException. The cluster is checked again where the
    row is written; a read, then a write, let several through."""
    db = fresh_postgres_database() if store == "postgres" else None
    s = cks_server(tmp_path, tokens, database_url=db).start()
    try:
        kms = s.client()
        clients = [s.client() for _ in range(8)]
        for _ in range(4):
            clusters = [CLUSTER] * 6 + [ALIAS_OF_CLUSTER] * 2
            got = race([lambda c=c, k=k: new_store(c, tokens, unique("race"), k)
                        for c, k in zip(clients, clusters)])
            assert sorted(got) == ["CloudHsmClusterInUseException"] * 7 + ["ok"], got
            made = kms.describe_custom_key_stores()["CustomKeyStores"]
            assert len(made) == 1
            kms.delete_custom_key_store(CustomKeyStoreId=made[0]["CustomKeyStoreId"])
    finally:
        s.stop()


@pytest.mark.parametrize("store", STORES)
def test_a_key_made_while_its_store_is_deleted_is_refused_not_a_500(tmp_path, tokens, store):
    """CreateKey in a store racing DisconnectCustomKeyStore + DeleteCustomKeyStore: either the key is
    made (and the delete refused, CustomKeyStoreHasCMKsException) or the key is refused as the store's
    state then says; never a foreign-key violation answered as KMSInternalException."""
    db = fresh_postgres_database() if store == "postgres" else None
    s = cks_server(tmp_path, tokens, database_url=db).start()
    try:
        kms, a, b = s.client(), s.client(), s.client()
        for _ in range(8):
            sid = new_store(kms, tokens, unique("race"))
            kms.connect_custom_key_store(CustomKeyStoreId=sid)
            assert store_of(kms, sid)["ConnectionState"] == "CONNECTED"

            def drop():
                b.disconnect_custom_key_store(CustomKeyStoreId=sid)
                b.delete_custom_key_store(CustomKeyStoreId=sid)

            made, dropped = race([lambda: hsm_key(a, sid), drop])
            assert made in ("ok", "CustomKeyStoreInvalidStateException", "CustomKeyStoreNotFoundException"), made
            assert dropped in ("ok", "CustomKeyStoreHasCMKsException"), dropped
            assert (made == "ok") == (dropped != "ok"), (made, dropped)
            if made == "ok":
                key = [k for k in kms.list_keys()["Keys"]
                       if kms.describe_key(KeyId=k["KeyId"])["KeyMetadata"].get("CustomKeyStoreId") == sid]
                assert len(key) == 1
                break  # the store stays, with its key, on the only cluster
    finally:
        s.stop()
