#!/usr/bin/env bash
# A throwaway Garage (S3-compatible object store, https://garagehq.deuxfleurs.fr) on loopback, for tests.
# Garage checks Content-MD5 (a wrong one is answered 400 BadDigest), which moto's server does not.
#
#   scripts/garage.sh install        build Garage $GARAGE_VERSION with `cargo install --locked` into
#                                    $ENVELOPE_CACHE/garage-$GARAGE_VERSION (default cache: ~/.cache/envelope)
#                                    unless the binary is already there; prints the binary's path
#   scripts/garage.sh start DIR      start one node in DIR (created if missing): SQLite metadata, replication
#                                    factor 1, a fresh layout, a key and a bucket; write DIR/env and print it:
#                                        ENVELOPE_TEST_S3_ENDPOINT=http://127.0.0.1:PORT
#                                        ENVELOPE_TEST_S3_REGION=garage
#                                        ENVELOPE_TEST_S3_ACCESS_KEY_ID=GK...
#                                        ENVELOPE_TEST_S3_SECRET_ACCESS_KEY=...
#                                        ENVELOPE_TEST_S3_BUCKET=envelope-test
#   scripts/garage.sh stop DIR       stop the node started in DIR
#
# Environment: GARAGE_BIN (use this binary instead of building one), ENVELOPE_CACHE.
# The first install takes about 11 minutes of 2 cores; later runs reuse the cached binary, so CI machines
# that keep $HOME (or ENVELOPE_CACHE) pay it once per Garage version.
set -euo pipefail

GARAGE_VERSION=2.5.0
CACHE=${ENVELOPE_CACHE:-$HOME/.cache/envelope}
ROOT_DIR=$CACHE/garage-$GARAGE_VERSION

log() { echo "garage.sh: $*" >&2; }

garage_bin() {
    if [[ -n ${GARAGE_BIN:-} ]]; then
        echo "$GARAGE_BIN"
    else
        echo "$ROOT_DIR/bin/garage"
    fi
}

install_garage() {
    local bin
    bin=$(garage_bin)
    if [[ -x $bin ]]; then
        echo "$bin"
        return 0
    fi
    if [[ -n ${GARAGE_BIN:-} ]]; then
        log "GARAGE_BIN=$GARAGE_BIN is not an executable"
        exit 1
    fi
    command -v cargo >/dev/null || { log "cargo not found: install Rust to build Garage"; exit 1; }
    mkdir -p "$CACHE"
    # Build into a scratch root and move it into place, so an interrupted build never leaves a
    # half-written binary that a later run would trust.
    local tmp
    tmp=$(mktemp -d "$CACHE/garage-build.XXXXXX")
    chmod 0755 "$tmp"
    log "building Garage $GARAGE_VERSION (cargo install --locked; about 11 minutes on 2 cores)"
    local start=$SECONDS
    if ! cargo install garage --version "=$GARAGE_VERSION" --locked --root "$tmp" --quiet; then
        rm -rf "$tmp"
        log "cargo install garage failed"
        exit 1
    fi
    rm -rf "$ROOT_DIR"
    mv "$tmp" "$ROOT_DIR"
    log "built in $((SECONDS - start))s: $ROOT_DIR/bin/garage"
    echo "$ROOT_DIR/bin/garage"
}

free_port() {
    python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

rand_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

start() {
    local dir=$1
    local bin
    bin=$(install_garage)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/garage.pid ]] && kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; then
        log "a node already runs in $dir; stop it first"
        exit 1
    fi
    rm -rf "$dir/meta" "$dir/data" "$dir/env" "$dir/garage.pid"
    mkdir -p "$dir/meta" "$dir/data"
    local rpc_port s3_port admin_port
    rpc_port=$(free_port)
    s3_port=$(free_port)
    admin_port=$(free_port)
    local conf=$dir/garage.toml
    (
        umask 077
        cat >"$conf" <<EOF
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(rand_hex 32)"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
admin_token = "$(rand_hex 32)"
EOF
    )
    RUST_LOG=${GARAGE_LOG:-garage=warn} "$bin" -c "$conf" server >"$dir/garage.log" 2>&1 &
    echo $! >"$dir/garage.pid"
    local g=("$bin" -c "$conf")
    local i node=""
    for i in $(seq 1 100); do
        if ! kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; then
            cat "$dir/garage.log" >&2
            log "garage server exited"
            exit 1
        fi
        # `status` goes through RPC, so it answers only once the node listens.
        if "${g[@]}" status >/dev/null 2>&1; then
            node=$("${g[@]}" node id -q 2>/dev/null) && break
        fi
        sleep 0.1
    done
    [[ -n $node ]] || { cat "$dir/garage.log" >&2; log "garage did not come up"; stop "$dir"; exit 1; }
    # One node, one zone, all the capacity: a fresh layout, version 1.
    "${g[@]}" layout assign -z dc1 -c 1G "${node%%@*}" >/dev/null
    "${g[@]}" layout apply --version 1 >/dev/null
    local key_id secret bucket=envelope-test
    key_id=GK$(rand_hex 12)
    secret=$(rand_hex 32)
    "${g[@]}" key import --yes -n envelope-test "$key_id" "$secret" >/dev/null
    "${g[@]}" bucket create "$bucket" >/dev/null
    "${g[@]}" bucket allow --read --write --owner "$bucket" --key "$key_id" >/dev/null
    # The S3 API answers once the layout has propagated; wait until it does (any HTTP status).
    for i in $(seq 1 100); do
        if curl -s -o /dev/null "http://127.0.0.1:$s3_port/" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    cat >"$dir/env" <<EOF
ENVELOPE_TEST_S3_ENDPOINT=http://127.0.0.1:$s3_port
ENVELOPE_TEST_S3_REGION=garage
ENVELOPE_TEST_S3_ACCESS_KEY_ID=$key_id
ENVELOPE_TEST_S3_SECRET_ACCESS_KEY=$secret
ENVELOPE_TEST_S3_BUCKET=$bucket
EOF
    chmod 0600 "$dir/env"
    cat "$dir/env"
}

stop() {
    local dir=$1
    [[ -f $dir/garage.pid ]] || return 0
    local pid
    pid=$(cat "$dir/garage.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        local i
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/garage.pid"
}

case ${1:-} in
    install) install_garage ;;
    start) [[ $# -eq 2 ]] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
    stop) [[ $# -eq 2 ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
    *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
