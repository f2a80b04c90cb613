#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for tests.
#
#   scripts/postgres.sh install        install the server (Debian's `postgresql`) if no initdb/pg_ctl is found
#   scripts/postgres.sh start DIR      initdb in DIR (created if missing), start on 127.0.0.1:<free port>,
#                                      create database `envelope_test`, write DIR/env and print it:
#                                          ENVELOPE_TEST_POSTGRES_URL=postgres://envelope@127.0.0.1:PORT/envelope_test
#                                          ENVELOPE_TEST_PG_BINDIR=/usr/lib/postgresql/NN/bin
#   scripts/postgres.sh stop DIR       stop the server started in DIR (fast shutdown)
#   scripts/postgres.sh resume DIR     start the stopped server of DIR again, same port and data (for
#                                      tests of a database outage: stop, then resume)
#
# PostgreSQL refuses to run as root, so when run as root the cluster belongs to an unprivileged user:
# `postgres` if it exists, else `envelope-pg` (created with useradd). Auth is `trust`, on loopback only;
# the Unix socket lives in DIR, not in /var/run. fsync is off: this server holds only test data.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    # Debian's layout first (newest major version), then whatever is on PATH.
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k4 -V -r); do
        if [[ -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
            echo "$d"
            return 0
        fi
    done
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null && command -v postgres >/dev/null; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

install_server() {
    if find_bindir >/dev/null; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "no PostgreSQL server binaries found (initdb, pg_ctl, postgres) and not root: install PostgreSQL"
        exit 1
    fi
    log "installing PostgreSQL with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    find_bindir >/dev/null || { log "PostgreSQL installed but initdb not found"; exit 1; }
}

free_port() {
    python3 - <<'EOF'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# Run a command as the cluster's owner.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$OWNER" -- "$@"
    else
        "$@"
    fi
}

pick_owner() {
    if [[ $(id -u) -ne 0 ]]; then
        OWNER=$(id -un)
    elif id postgres >/dev/null 2>&1; then
        OWNER=postgres
    else
        OWNER=envelope-pg
        if ! id "$OWNER" >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
        fi
    fi
}

# pg_start BINDIR DIR PORT: start the cluster in DIR/data on 127.0.0.1:PORT.
pg_start() {
    local bindir=$1 dir=$2 port=$3
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null
}

start() {
    local dir=$1
    install_server
    local bindir port
    bindir=$(find_bindir)
    pick_owner
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f $dir/data/postmaster.pid ]]; then
        log "a server already runs in $dir; stop it first"
        exit 1
    fi
    rm -rf "$dir/data" "$dir/log"
    mkdir -p "$dir/data" "$dir/sock" "$dir/log"
    chmod 0755 "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        # DIR (0755 above; a mktemp -d directory is 0700) and its parents must be reachable by the owner.
        chown "$OWNER" "$dir/data" "$dir/sock" "$dir/log"
    fi
    chmod 0700 "$dir/data"
    as_owner "$bindir/initdb" -D "$dir/data" -U envelope --auth=trust -E UTF8 --no-sync \
        >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; log "initdb failed"; exit 1; }
    local tries=0
    while :; do
        port=$(free_port)
        if pg_start "$bindir" "$dir" "$port"; then
            echo "$port" >"$dir/port"
            break
        fi
        tries=$((tries + 1))
        if [[ $tries -ge 3 ]]; then
            cat "$dir/log/server.log" >&2 || true
            log "could not start PostgreSQL"
            exit 1
        fi
    done
    as_owner "$bindir/createdb" -h 127.0.0.1 -p "$port" -U envelope envelope_test
    cat >"$dir/env" <<EOF
ENVELOPE_TEST_POSTGRES_URL=postgres://envelope@127.0.0.1:$port/envelope_test
ENVELOPE_TEST_PG_BINDIR=$bindir
EOF
    cat "$dir/env"
}

stop() {
    local dir=$1
    [[ -f $dir/data/postmaster.pid ]] || return 0
    local bindir
    bindir=$(find_bindir)
    pick_owner
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null || {
        log "pg_ctl stop failed; killing the postmaster"
        kill -9 "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null || true
    }
}

resume() {
    local dir=$1
    [[ -f $dir/port && -d $dir/data ]] || { log "no stopped server in $dir"; exit 1; }
    if [[ -f $dir/data/postmaster.pid ]]; then
        log "the server in $dir is running"
        exit 1
    fi
    local bindir
    bindir=$(find_bindir)
    pick_owner
    pg_start "$bindir" "$dir" "$(cat "$dir/port")" || {
        cat "$dir/log/server.log" >&2 || true
        log "could not start PostgreSQL again"
        exit 1
    }
}

case ${1:-} in
    install) install_server ;;
    start) [[ $# -eq 2 ]] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
    stop) [[ $# -eq 2 ]] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
    resume) [[ $# -eq 2 ]] || { echo "usage: $0 resume DIR" >&2; exit 2; }; resume "$2" ;;
    *) echo "usage: $0 install | start DIR | stop DIR | resume DIR" >&2; exit 2 ;;
esac
