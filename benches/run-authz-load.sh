#!/usr/bin/env bash
# What authorization costs on the hot path (issue 13): GenerateDataKey and Decrypt by three callers
# of one key with AWS's default key policy, measured in the same run, interleaved round by round:
#
#   admin     the first start's administrator (an attached `*` identity policy);
#   policy    an IAM user whose only access is an inline identity policy allowing the two actions
#             on the key with a `kms:EncryptionContext:purpose` condition;
#   grantee   an IAM user with no policy at all, allowed by a grant on the key.
#
# and moto's KMS server beside them (same driver, same encryption context).
#
#   benches/run-authz-load.sh
#
# Knobs (environment): CONCURRENCY (default 32), DURATION (8), WARMUP (2), ROUNDS (3),
# OPS (GenerateDataKey,Decrypt), VENV (.venv: python with boto3, and moto_server), SKIP_MOTO=1,
# RESULTS_DIR (keep the JSON lines and logs there).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# shellcheck source=benches/lib.sh
. "$repo/benches/lib.sh"

CONCURRENCY=${CONCURRENCY:-32}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
OPS=${OPS:-GenerateDataKey,Decrypt}
VENV=${VENV:-$repo/.venv}
SKIP_MOTO=${SKIP_MOTO:-0}
python=$VENV/bin/python

if [[ ! -x $python ]] || ! "$python" -c 'import boto3' 2>/dev/null; then
    echo "no python with boto3 at $python: create the test venv first" >&2
    echo "(python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt), or set VENV" >&2
    exit 1
fi

bench_setup

echo "== building (release)" >&2
cargo build --release -p envelope -p benches >&2
target_dir=${CARGO_TARGET_DIR:-$repo/target}
envelope_bin=$target_dir/release/envelope
load_bin=$target_dir/release/kms-load

data=$work/envelope-data
start_envelope "$envelope_bin" "$data" "$work/envelope.out" "$results/envelope.log"
echo "== envelope at $endpoint" >&2

# The three callers, set up through the IAM and KMS APIs with boto3 as the admin. Writes the
# callers' profiles into $work/credentials and prints the key id.
creds=$work/credentials
key_id=$("$python" - "$endpoint" "$data/credentials" "$creds" <<'EOF'
import configparser, json, sys
import boto3

endpoint, admin_file, out = sys.argv[1:4]
admin = configparser.ConfigParser()
admin.read(admin_file)
a = admin["envelope"]
session = boto3.Session(aws_access_key_id=a["aws_access_key_id"],
                        aws_secret_access_key=a["aws_secret_access_key"], region_name="us-east-1")
kms = session.client("kms", endpoint_url=endpoint)
iam = session.client("iam", endpoint_url=endpoint)

key = kms.create_key(Description="authz bench key")["KeyMetadata"]  # AWS's default key policy
iam.create_user(UserName="bench-policy")
iam.put_user_policy(UserName="bench-policy", PolicyName="encrypt-bench", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{
        "Sid": "DataKeysForBench",
        "Effect": "Allow",
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": key["Arn"],
        "Condition": {"StringEquals": {"kms:EncryptionContext:purpose": "bench"}},
    }],
}))
iam.create_user(UserName="bench-grantee")
grantee_arn = iam.get_user(UserName="bench-grantee")["User"]["Arn"]
kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee_arn,
                 Operations=["GenerateDataKey", "Decrypt"], Name="bench")

profiles = configparser.ConfigParser()
profiles["admin"] = {"aws_access_key_id": a["aws_access_key_id"],
                     "aws_secret_access_key": a["aws_secret_access_key"]}
for name in ("policy", "grantee"):
    k = iam.create_access_key(UserName=f"bench-{name}")["AccessKey"]
    profiles[name] = {"aws_access_key_id": k["AccessKeyId"],
                      "aws_secret_access_key": k["SecretAccessKey"]}
    # The caller is really restricted: without the context the policy user is refused.
    c = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
    try:
        c.create_key()
        sys.exit(f"bench-{name} may CreateKey: not a restricted caller")
    except c.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "AccessDeniedException", e
with open(out, "w") as f:
    profiles.write(f)
print(key["KeyId"])
EOF
)
echo "== key $key_id; callers admin, policy, grantee" >&2

driver_args=(--concurrency "$CONCURRENCY" --duration "$DURATION" --warmup "$WARMUP"
    --threads 1 --ops "$OPS" --encryption-context purpose=bench --json)
for round in $(seq 1 "$ROUNDS"); do
    for caller in admin policy grantee; do
        echo "== round $round: $caller" >&2
        "$load_bin" --endpoint "$endpoint" --credentials-file "$creds" --profile "$caller" \
            --key-id "$key_id" --label "envelope-$caller" "${driver_args[@]}" |
            tee -a "$results/envelope.jsonl" >&2
    done
done
kill -TERM "$envelope_pid"
wait "$envelope_pid" || true
envelope_pid=

if [[ $SKIP_MOTO != 1 ]]; then
    port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$results/moto.log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
    echo "== moto at http://127.0.0.1:$port" >&2
    "$load_bin" --endpoint "http://127.0.0.1:$port" --access-key-id AKIAIOSFODNN7EXAMPLE \
        --secret-access-key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY \
        --label moto "${driver_args[@]}" | tee -a "$results/moto.jsonl" >&2
    kill -TERM "$moto_pid"
    wait "$moto_pid" 2>/dev/null || true
    moto_pid=
fi

echo
echo "authz load: $(nproc) CPUs, ${DURATION}s measured after ${WARMUP}s warm-up, $ROUNDS interleaved rounds;"
echo "medians over the rounds; 'vs admin' is the median of each round's ratio to that round's admin"
"$python" - "$results"/*.jsonl <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.strip()]
by = {}
for r in rows:
    by.setdefault((r["target"], r["op"], r["concurrency"]), []).append(r)
order = ["envelope-admin", "envelope-policy", "envelope-grantee", "moto"]
print(f'{"caller":<18} {"op":<16} {"conc":>5} {"req/s":>9} {"p50 ms":>8} {"p99 ms":>8} {"errors":>7} {"vs admin":>9}')
for (target, op, conc), rs in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][2], order.index(kv[0][0]))):
    admin = by.get(("envelope-admin", op, conc), [])
    ratio = "-"
    if target != "envelope-admin" and len(admin) == len(rs):
        ratio = f'{statistics.median(r["rps"] / a["rps"] for r, a in zip(rs, admin)):.1%}'
    med = lambda k: statistics.median(r[k] for r in rs)
    print(f'{target:<18} {op:<16} {conc:>5} {med("rps"):>9.0f} {med("p50_us")/1000:>8.3f} '
          f'{med("p99_us")/1000:>8.3f} {sum(r["errors"] for r in rs):>7} {ratio:>9}')
EOF
[[ -n ${RESULTS_DIR:-} ]] && echo "JSON lines and server logs in $results" >&2
exit 0
