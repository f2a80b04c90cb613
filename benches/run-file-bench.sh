#!/usr/bin/env bash
# Whole-file encrypt and decrypt, envelope beside age, openssl enc and aws-encryption-cli, same run.
#
#   benches/run-file-bench.sh                  1 GiB, 5 timed runs per row
#   SIZE=64M RUNS=3 benches/run-file-bench.sh
#
# Creates a file of SIZE random bytes in a temp dir (it stays in the page cache), then times, for each
# tool: encrypt to /dev/null, encrypt to a file, decrypt to /dev/null, decrypt to a file (each decrypt
# reads the message its encrypt-to-a-file run wrote; every round trip is checked with cmp afterwards).
#
#   envelope   `envelope encrypt|decrypt --raw-key-file` (no server), the unsigned committing suite (the
#              default) and the signed one, at 1 and 2 threads (`--threads`; where `decrypt` has no
#              --threads the decrypt rows are pinned to that many CPUs with taskset instead, and say so)
#   age        X25519 recipient, passphrase-less identity file
#   openssl    `openssl enc -aes-256-ctr` with a fixed -K/-iv, -nosalt (no integrity: a speed reference)
#   esdk-cli   aws-encryption-cli with a KMS key of an `envelope serve` this script starts (its only
#              wrapping keys out of the box are KMS keys); skipped with a message when it is not found
#
# Timing: hyperfine (--runs RUNS, --warmup WARMUP, --export-json; median) when installed, else
# /usr/bin/time over RUNS runs (median). Peak memory: /usr/bin/time's maximum resident set size over one
# more run. Prints a markdown table to stdout (progress goes to stderr).
#
# Every timed run writes a new output file: the previous one is removed and `sync` run first (hyperfine
# --prepare), so that no run pays for deleting or writing back another's output.
#
# Scaling: the "2 threads against 1" figure is measured apart, after the table: envelope (unsigned
# suite) encrypt and decrypt to /dev/null and to a file, SCALING_RUNS rounds (default 10) of a
# 1-thread and a 2-thread run back to back, in alternating order, so that a drift of the host (this
# is a VM) hits both alike; it prints the medians and their ratio. SCALING_RUNS=0 skips it.
#
# Knobs (environment): SIZE (bytes, or with K/M/G suffix: powers of 1024; default 1G), RUNS (5),
# WARMUP (1), THREADS ("1 2"), ENVELOPE_SUITES ("unsigned signed"), TOOLS ("envelope age openssl esdk-cli"),
# ENVELOPE_BIN (skip the release build and use this binary), ESDK_CLI (path to aws-encryption-cli;
# default the repo's .venv-esdk-cli, as scripts/test builds it), ESDK_FRAME (65536, envelope's default),
# TIMER=time (time with /usr/bin/time even where hyperfine is installed),
# NO_INSTALL=1 (do not apt-get install age, hyperfine, time), WORK_DIR (parent of the temp dir; needs
# about 3 × SIZE free), RESULTS_DIR (keep the hyperfine JSON and logs there).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

SIZE=${SIZE:-1G}
RUNS=${RUNS:-5}
WARMUP=${WARMUP:-1}
THREADS=${THREADS:-1 2}
ENVELOPE_SUITES=${ENVELOPE_SUITES:-unsigned signed}
TOOLS=${TOOLS:-envelope age openssl esdk-cli}
ESDK_FRAME=${ESDK_FRAME:-65536}
ESDK_CLI=${ESDK_CLI:-}
if [[ -z $ESDK_CLI && -x $repo/.venv-esdk-cli/bin/aws-encryption-cli ]]; then
    ESDK_CLI=$repo/.venv-esdk-cli/bin/aws-encryption-cli
fi

log() { printf '== %s\n' "$*" >&2; }

bytes=$(numfmt --from=iec "$SIZE")
if ((bytes <= 0)); then
    echo "SIZE must be positive" >&2
    exit 2
fi

# ---------------------------------------------------------------- tools
need_pkgs=()
command -v age >/dev/null && command -v age-keygen >/dev/null || need_pkgs+=(age)
command -v hyperfine >/dev/null || need_pkgs+=(hyperfine)
[[ -x /usr/bin/time ]] || need_pkgs+=(time)
if ((${#need_pkgs[@]})) && [[ ${NO_INSTALL:-} != 1 && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${need_pkgs[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2; then
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2 || true
    fi
fi
if [[ ! -x /usr/bin/time ]]; then
    echo "/usr/bin/time (Debian package time) is needed for peak memory" >&2
    exit 1
fi
have_hyperfine=0
[[ ${TIMER:-} != time ]] && command -v hyperfine >/dev/null && have_hyperfine=1

if [[ -n ${ENVELOPE_BIN:-} ]]; then
    envelope_bin=$ENVELOPE_BIN
else
    log "building (release)"
    cargo build --release -p envelope >&2
    envelope_bin=${CARGO_TARGET_DIR:-$repo/target}/release/envelope
fi

# ---------------------------------------------------------------- work dir and cleanup
work=$(mktemp -d "${WORK_DIR:-${TMPDIR:-/tmp}}/envelope-file-bench.XXXXXX")
results=${RESULTS_DIR:-$work/results}
mkdir -p "$results"
server_pid=
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

plain=$work/plain
ct=$work/ct
out=$work/out
log "creating $bytes bytes of random plaintext in $work"
head -c "$bytes" /dev/urandom >"$plain"
cat "$plain" >/dev/null # in the page cache

rows=$work/rows.tsv
: >"$rows"

# measure NAME OP SINK THREADS_LABEL COMMAND — COMMAND is a shell string; its output file (if any) is $out.
measure() {
    local name=$1 op=$2 sink=$3 threads=$4 cmd=$5
    local slug median rss
    slug=$(printf '%s-%s-%s-%s' "$name" "$op" "$sink" "$threads" | tr -c 'A-Za-z0-9.-' '_')
    log "$name $op -> $sink (threads $threads)"
    if ((have_hyperfine)); then
        hyperfine --style basic --runs "$RUNS" --warmup "$WARMUP" --prepare "rm -f '$out'; sync" \
            --export-json "$results/$slug.json" --command-name "$slug" "$cmd" >&2
        median=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["median"])' \
            "$results/$slug.json")
    else
        local i times=()
        for ((i = 0; i < WARMUP + RUNS; i++)); do
            rm -f "$out"
            sync
            /usr/bin/time -f '%e' -o "$results/$slug.time" sh -c "$cmd"
            ((i >= WARMUP)) && times+=("$(tail -n1 "$results/$slug.time")")
        done
        median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
    fi
    rm -f "$out"
    /usr/bin/time -f '%M' -o "$results/$slug.rss" sh -c "$cmd"
    rss=$(tail -n1 "$results/$slug.rss")
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$op" "$sink" "$threads" "$median" "$rss" >>"$rows"
}

# check_round_trip NAME — sanity: the decrypt-to-a-file run gave back the plaintext.
check_round_trip() {
    if ! cmp -s "$plain" "$out"; then
        echo "$1: decrypt did not give back the plaintext" >&2
        exit 1
    fi
}

# bench NAME ENC_THREADS DEC_THREADS ENC_NULL ENC_FILE DEC_NULL DEC_FILE — commands as shell strings;
# ENC_FILE writes $out, which becomes $ct for the decrypt rows; DEC_FILE writes $out.
bench() {
    local name=$1
    measure "$name" encrypt /dev/null "$2" "$4"
    measure "$name" encrypt file "$2" "$5"
    mv "$out" "$ct"
    measure "$name" decrypt /dev/null "$3" "$6"
    measure "$name" decrypt file "$3" "$7"
    check_round_trip "$name"
    rm -f "$ct" "$out"
}

want() { [[ " $TOOLS " == *" $1 "* ]]; }
skipped=()

# ---------------------------------------------------------------- envelope (raw AES key, no server)
if want envelope; then
    head -c 32 /dev/urandom >"$work/raw.key"
    raw=(--raw-key-file "$work/raw.key" --key-name bench -q)
    dec_has_threads=0
    "$envelope_bin" decrypt --help | grep -q -- '--threads' && dec_has_threads=1
    nprocs=$(nproc)
    for suite in $ENVELOPE_SUITES; do
        case $suite in
            unsigned) suite_name=AES_256_GCM_HKDF_SHA512_COMMIT_KEY ;;
            signed) suite_name=AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384 ;;
            *) echo "ENVELOPE_SUITES: unknown suite $suite" >&2; exit 2 ;;
        esac
        for t in $THREADS; do
            enc="$envelope_bin encrypt ${raw[*]} --suite $suite_name --threads $t $plain"
            if ((dec_has_threads)); then
                dec="$envelope_bin decrypt ${raw[*]} --threads $t $ct"
                dec_label=$t
            else
                # No --threads on decrypt: give it that many CPUs instead.
                cpus=$(seq -s, 0 $(((t < nprocs ? t : nprocs) - 1)))
                dec="taskset -c $cpus $envelope_bin decrypt ${raw[*]} $ct"
                dec_label="$t (taskset)"
            fi
            bench "envelope-$suite" "$t" "$dec_label" \
                "$enc -o - >/dev/null" "$enc -o $out --force" \
                "$dec -o - >/dev/null" "$dec -o $out --force"
        done
    done
fi

# ---------------------------------------------------------------- age
if want age; then
    if command -v age >/dev/null && command -v age-keygen >/dev/null; then
        age-keygen -o "$work/age.id" 2>/dev/null
        recipient=$(age-keygen -y "$work/age.id")
        bench age 1 1 \
            "age -r $recipient $plain >/dev/null" "age -r $recipient -o $out $plain" \
            "age -d -i $work/age.id $ct >/dev/null" "age -d -i $work/age.id -o $out $ct"
    else
        skipped+=("age: not installed (Debian package age)")
    fi
fi

# ---------------------------------------------------------------- openssl enc
if want openssl; then
    key=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    iv=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    ossl="openssl enc -aes-256-ctr -K $key -iv $iv -nosalt"
    bench openssl-aes-256-ctr 1 1 \
        "$ossl -in $plain -out /dev/null" "$ossl -in $plain -out $out" \
        "$ossl -d -in $ct -out /dev/null" "$ossl -d -in $ct -out $out"
fi

# ---------------------------------------------------------------- aws-encryption-cli (KMS key on envelope serve)
if want esdk-cli; then
    if [[ -z $ESDK_CLI || ! -x $ESDK_CLI ]]; then
        skipped+=("aws-encryption-cli: ESDK_CLI not set and no .venv-esdk-cli (scripts/test builds it)")
    else
        data=$work/envelope-data
        mkdir -p "$data"
        "$envelope_bin" serve --data-dir "$data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$results/serve.log" &
        server_pid=$!
        endpoint=
        for _ in $(seq 1 150); do
            endpoint=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/serve.out" | head -n1)
            [[ -n $endpoint ]] && break
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.2
        done
        if [[ -z $endpoint ]]; then
            echo "envelope serve did not start; log:" >&2
            cat "$results/serve.log" >&2
            exit 1
        fi
        esdk_python=$(dirname "$ESDK_CLI")/python
        export AWS_SHARED_CREDENTIALS_FILE=$data/credentials AWS_PROFILE=envelope AWS_CONFIG_FILE=$work/no-config
        export AWS_DEFAULT_REGION=us-east-1 AWS_ENDPOINT_URL_KMS=$endpoint AWS_EC2_METADATA_DISABLED=true
        arn=$("$esdk_python" -c 'import boto3; print(boto3.client("kms").create_key()["KeyMetadata"]["Arn"])')
        log "aws-encryption-cli against $endpoint, key $arn"
        esdk="$ESDK_CLI -S -w key=$arn"
        enc="$esdk -e --algorithm AES_256_GCM_HKDF_SHA512_COMMIT_KEY --frame-length $ESDK_FRAME -i $plain"
        dec="$esdk -d -i $ct"
        bench "esdk-cli" 1 1 "$enc -o - >/dev/null" "$enc -o $out" "$dec -o - >/dev/null" "$dec -o $out"
        kill -TERM "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
fi

# ---------------------------------------------------------------- 2 threads against 1, interleaved
SCALING_RUNS=${SCALING_RUNS:-10}
scaling=$work/scaling.md
: >"$scaling"
if want envelope && ((SCALING_RUNS > 0)); then
    log "scaling: $SCALING_RUNS interleaved rounds of 1 and 2 threads"
    "$envelope_bin" encrypt --raw-key-file "$work/raw.key" --key-name bench -q -o "$ct" "$plain"
    python3 - "$envelope_bin" "$work/raw.key" "$plain" "$ct" "$out" "$bytes" "$SCALING_RUNS" >"$scaling" <<'EOF'
import os, statistics, subprocess, sys, time
exe, key, plain, ct, out, size, rounds = sys.argv[1:6] + [int(a) for a in sys.argv[6:8]]
print("| envelope | to | 1 thread GB/s | 2 threads GB/s | 2 threads / 1 |")
print("| --- | --- | ---: | ---: | ---: |")
for sink in ("/dev/null", out):
    for op, src in (("encrypt", plain), ("decrypt", ct)):
        times = {1: [], 2: []}
        for r in range(rounds + 1):
            for t in ((1, 2) if r % 2 == 0 else (2, 1)):
                if sink == out:  # a new file each time, nothing left to write back from the last run
                    if os.path.exists(out):
                        os.unlink(out)
                    subprocess.run(["sync"], check=True)
                cmd = [exe, op, "--raw-key-file", key, "--key-name", "bench", "-q", "--threads", str(t), "-o", sink, src]
                start = time.perf_counter()
                subprocess.run(cmd, check=True)
                if r > 0:  # round 0 is the warm-up
                    times[t].append(time.perf_counter() - start)
        m1, m2 = statistics.median(times[1]), statistics.median(times[2])
        to = "/dev/null" if sink == "/dev/null" else "file"
        print(f"| {op} | {to} | {size / 1e9 / m1:.2f} | {size / 1e9 / m2:.2f} | {m1 / m2:.2f}× |")
EOF
    rm -f "$ct" "$out"
fi

# ---------------------------------------------------------------- table
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
timer=/usr/bin/time
((have_hyperfine)) && timer="hyperfine $(hyperfine --version | cut -d' ' -f2)"
echo "Whole-file encrypt/decrypt of $(numfmt --to=iec-i "$bytes")B ($bytes bytes) from the page cache;" \
    "$(nproc) CPUs ($cpu); median of $RUNS runs ($timer), peak RSS of one more run (/usr/bin/time)."
if grep -q '^envelope' "$rows"; then
    echo "envelope: --raw-key-file, frame 65536 (its default)."
fi
if grep -q '^esdk-cli' "$rows"; then
    echo "esdk-cli: AES_256_GCM_HKDF_SHA512_COMMIT_KEY, frame $ESDK_FRAME, KMS key on an envelope serve on loopback."
fi
echo
python3 - "$rows" "$bytes" <<'EOF'
import sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
size = int(sys.argv[2])
print("| tool | op | to | threads | median s | GB/s | peak RSS MiB |")
print("| --- | --- | --- | --- | ---: | ---: | ---: |")
for name, op, sink, threads, median, rss in rows:
    s = float(median)
    gbs = size / 1e9 / s if s > 0 else float("inf")
    print(f"| {name} | {op} | {sink} | {threads} | {s:.3f} | {gbs:.2f} | {int(rss) / 1024:.1f} |")
EOF
if [[ -s $scaling ]]; then
    echo
    echo "2 threads against 1, $SCALING_RUNS interleaved rounds (medians):"
    echo
    cat "$scaling"
fi
for s in "${skipped[@]}"; do
    echo
    echo "skipped: $s"
done
if [[ -n ${RESULTS_DIR:-} ]]; then
    log "hyperfine JSON and logs in $results"
fi
