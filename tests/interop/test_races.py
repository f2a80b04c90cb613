"""Calls that race: each pair is released at once, many times, on both stores, and every outcome must be
one that running the two calls one after the other could give, with nothing left behind and never a
500. Before the store locked what it checks (`kms-core/src/store/serial.rs`), a delete racing a write
that needs what it deletes answered both "ok" (an attachment of a deleted policy, in force again once a
policy of that name was made; an inline policy of a deleted user) or a foreign-key violation as a 500,
and on SQLite deletes failed with a 500 whenever anything else wrote. And the caches: a call that read a
key just before DisableKey committed put the enabled key back in this node's cache, where it served for
the whole TTL after DisableKey had answered."""

import json
import random
import threading
import time

import pytest

from conftest import STORES, error_code, iam_client, race, start_server, unique

TRIALS = 12
DOC = json.dumps({"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": "kms:DescribeKey", "Resource": "*"}]})
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}]})
# The two serial orders of (delete, write): the delete first, then the write finds nothing; or the write
# first, then the delete is refused for what the write added.
SERIAL = {("ok", "NoSuchEntity"), ("DeleteConflict", "ok")}


@pytest.fixture(scope="module", params=STORES)
def srv(request, tmp_path_factory):
    s = start_server(tmp_path_factory, request.param)
    yield s
    s.stop()


def new_policy(iam) -> str:
    return iam.create_policy(PolicyName=unique("p"), PolicyDocument=DOC)["Policy"]["Arn"]


# Each case: (make the entity the delete removes and the write needs -> context,
#             the delete, the write, what must hold after the delete won).
CASES = {
    "DeletePolicy-AttachUserPolicy": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"], "arn": new_policy(iam)},
        lambda c, x: c.delete_policy(PolicyArn=x["arn"]),
        lambda c, x: c.attach_user_policy(UserName=x["user"], PolicyArn=x["arn"]),
        lambda iam, x: iam.list_attached_user_policies(UserName=x["user"])["AttachedPolicies"] == [],
    ),
    # A path may hold what an AWS managed policy's ARN holds; the policy is still the customer's.
    "DeletePolicy-AttachUserPolicy-colon-path": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"],
                     "arn": iam.create_policy(PolicyName=unique("p"), Path="/x:iam::aws:policy/",
                                              PolicyDocument=DOC)["Policy"]["Arn"]},
        lambda c, x: c.delete_policy(PolicyArn=x["arn"]),
        lambda c, x: c.attach_user_policy(UserName=x["user"], PolicyArn=x["arn"]),
        lambda iam, x: iam.list_attached_user_policies(UserName=x["user"])["AttachedPolicies"] == [],
    ),
    "DeleteUser-AttachUserPolicy": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"], "arn": new_policy(iam)},
        lambda c, x: c.delete_user(UserName=x["user"]),
        lambda c, x: c.attach_user_policy(UserName=x["user"], PolicyArn=x["arn"]),
        lambda iam, x: iam.get_policy(PolicyArn=x["arn"])["Policy"]["AttachmentCount"] == 0,
    ),
    "DeleteUser-PutUserPolicy": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"]},
        lambda c, x: c.delete_user(UserName=x["user"]),
        lambda c, x: c.put_user_policy(UserName=x["user"], PolicyName="p", PolicyDocument=DOC),
        # A user made again under the name has no policy of the deleted one.
        lambda iam, x: (iam.create_user(UserName=x["user"]) and
                        iam.list_user_policies(UserName=x["user"])["PolicyNames"] == []),
    ),
    "DeleteUser-CreateAccessKey": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"]},
        lambda c, x: c.delete_user(UserName=x["user"]),
        lambda c, x: c.create_access_key(UserName=x["user"]),
        lambda iam, x: (iam.create_user(UserName=x["user"]) and
                        iam.list_access_keys(UserName=x["user"])["AccessKeyMetadata"] == []),
    ),
    "DeleteUser-AddUserToGroup": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"],
                     "group": iam.create_group(GroupName=unique("g"))["Group"]["GroupName"]},
        lambda c, x: c.delete_user(UserName=x["user"]),
        lambda c, x: c.add_user_to_group(GroupName=x["group"], UserName=x["user"]),
        lambda iam, x: iam.get_group(GroupName=x["group"])["Users"] == [],
    ),
    "DeleteGroup-AddUserToGroup": (
        lambda iam: {"user": iam.create_user(UserName=unique("u"))["User"]["UserName"],
                     "group": iam.create_group(GroupName=unique("g"))["Group"]["GroupName"]},
        lambda c, x: c.delete_group(GroupName=x["group"]),
        lambda c, x: c.add_user_to_group(GroupName=x["group"], UserName=x["user"]),
        lambda iam, x: iam.list_groups_for_user(UserName=x["user"])["Groups"] == [],
    ),
    "DeleteRole-AttachRolePolicy": (
        lambda iam: {"role": iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=TRUST)["Role"]["RoleName"],
                     "arn": new_policy(iam)},
        lambda c, x: c.delete_role(RoleName=x["role"]),
        lambda c, x: c.attach_role_policy(RoleName=x["role"], PolicyArn=x["arn"]),
        lambda iam, x: iam.get_policy(PolicyArn=x["arn"])["Policy"]["AttachmentCount"] == 0,
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_delete_racing_a_write_that_needs_what_it_deletes(srv, case):
    make, delete, write, clean = CASES[case]
    iam, a, b = iam_client(srv), iam_client(srv), iam_client(srv)
    seen = set()
    for _ in range(TRIALS):
        x = make(iam)
        got = tuple(race([lambda: delete(a, x), lambda: write(b, x)]))
        seen.add(got)
        assert got in SERIAL, (case, got)
        if got[0] == "ok":
            assert clean(iam, x), (case, "left behind after the delete")
    # Not a proof that both orders were taken, but a race that never raced tests nothing.
    print(f"{case}: {sorted(seen)}")


def test_tag_changes_of_one_key_in_opposite_orders_are_never_a_500(srv):
    """PostgreSQL: TagResource and UntagResource writing the same tags in opposite orders deadlocked
    (40P01, answered KMSInternalException) until both ran under the key's tag lock."""
    kms, a, b = srv.client(), srv.client(), srv.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    names = [f"t{i}" for i in range(10)]
    for _ in range(3 * TRIALS):
        got = race([lambda: a.tag_resource(KeyId=key, Tags=[{"TagKey": n, "TagValue": "v"} for n in names]),
                    lambda: b.untag_resource(KeyId=key, TagKeys=names[::-1])])
        assert got == ["ok", "ok"], got
        got = race([lambda: a.untag_resource(KeyId=key, TagKeys=names),
                    lambda: b.untag_resource(KeyId=key, TagKeys=names[::-1])])
        assert got == ["ok", "ok"], got


def test_deletes_of_different_entities_at_once_all_succeed(srv):
    """SQLite: a transaction that read, then wrote, failed with SQLITE_BUSY while another wrote."""
    iam = iam_client(srv)
    clients = [iam_client(srv) for _ in range(8)]
    for _ in range(3):
        groups = [iam.create_group(GroupName=unique("g"))["Group"]["GroupName"] for _ in clients]
        roles = [iam.create_role(RoleName=unique("r"), AssumeRolePolicyDocument=TRUST)["Role"]["RoleName"]
                 for _ in clients]
        arns = [new_policy(iam) for _ in clients]
        assert race([lambda c=c, g=g: c.delete_group(GroupName=g) for c, g in zip(clients, groups)]) == ["ok"] * 8
        assert race([lambda c=c, r=r: c.delete_role(RoleName=r) for c, r in zip(clients, roles)]) == ["ok"] * 8
        assert race([lambda c=c, p=p: c.delete_policy(PolicyArn=p) for c, p in zip(clients, arns)]) == ["ok"] * 8


def hammering(call, threads: int = 6):
    """Runs `call` in a loop on `threads` threads until the returned event is set (errors ignored)."""
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                call()
            except Exception:  # noqa: BLE001 - the load only keeps the cache busy
                pass

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return stop, workers


ROUNDS = 150


def test_a_key_disabled_on_this_node_is_refused_at_once(srv):
    """While others keep loading the key into the cache, each GenerateDataKey sent after DisableKey
    answered is DisabledException, every time."""
    kms = srv.client()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    others = [srv.client() for _ in range(6)]
    stop, workers = hammering(lambda: random.choice(others).generate_data_key(KeyId=key, NumberOfBytes=16))
    probe = srv.client()
    try:
        for i in range(ROUNDS):
            kms.enable_key(KeyId=key)
            time.sleep(random.random() * 0.004)
            kms.disable_key(KeyId=key)
            with pytest.raises(probe.exceptions.DisabledException):
                probe.generate_data_key(KeyId=key, NumberOfBytes=16)
    finally:
        stop.set()
        for w in workers:
            w.join()


def test_an_access_key_deactivated_on_this_node_is_refused_at_once(srv):
    iam = iam_client(srv)
    user = unique("u")
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:ListKeys", "Resource": "*"}]}))
    k = iam.create_access_key(UserName=user)["AccessKey"]
    as_user = [srv.client(k["AccessKeyId"], k["SecretAccessKey"]) for _ in range(7)]
    stop, workers = hammering(lambda: random.choice(as_user[1:]).list_keys())
    try:
        for _ in range(ROUNDS):
            iam.update_access_key(UserName=user, AccessKeyId=k["AccessKeyId"], Status="Active")
            time.sleep(random.random() * 0.004)
            iam.update_access_key(UserName=user, AccessKeyId=k["AccessKeyId"], Status="Inactive")
            with pytest.raises(as_user[0].exceptions.ClientError) as e:
                as_user[0].list_keys()
            assert error_code(e.value) == "UnrecognizedClientException"
    finally:
        stop.set()
        for w in workers:
            w.join()
