#!/usr/bin/env bash
# A throwaway SoftHSMv2 token, for tests.
#
#   scripts/softhsm.sh install            install Debian's `softhsm2` if softhsm2-util or the module is missing
#   scripts/softhsm.sh module             print the PKCS#11 module path
#   scripts/softhsm.sh init DIR [LABEL]   make a fresh token (label LABEL, default envelope-test) whose files
#                                         live in DIR/tokens, with its own DIR/softhsm2.conf; write the user
#                                         PIN to DIR/user.pin (0600), write DIR/env and print it:
#                                             SOFTHSM2_CONF=DIR/softhsm2.conf
#                                             ENVELOPE_TEST_HSM_MODULE=/usr/lib/softhsm/libsofthsm2.so
#                                             ENVELOPE_TEST_HSM_TOKEN_LABEL=LABEL
#                                             ENVELOPE_TEST_HSM_PIN_FILE=DIR/user.pin
#
# SoftHSM reads SOFTHSM2_CONF when a process initialises the module, so every process that should see
# this token needs that variable. The PINs are random; the SO PIN is kept in DIR/so.pin (0600).
set -euo pipefail

log() { echo "softhsm.sh: $*" >&2; }

find_module() {
    local m
    for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
        /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
        if [[ -f $m ]]; then
            echo "$m"
            return 0
        fi
    done
    return 1
}

install_softhsm() {
    if command -v softhsm2-util >/dev/null && find_module >/dev/null; then
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        log "SoftHSMv2 not found (softhsm2-util, libsofthsm2.so) and not root: install softhsm2"
        exit 1
    fi
    log "installing SoftHSMv2 with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq softhsm2 >/dev/null 2>&1 || {
        apt-get update -qq
        apt-get install -y -qq softhsm2 >/dev/null
    }
    find_module >/dev/null || { log "softhsm2 installed but libsofthsm2.so not found"; exit 1; }
}

random_pin() {
    od -An -N12 -tx1 /dev/urandom | tr -d ' \n'
}

init() {
    local dir=$1 label=${2:-envelope-test}
    install_softhsm
    local module
    module=$(find_module)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    rm -rf "$dir/tokens"
    mkdir -p "$dir/tokens"
    chmod 0700 "$dir/tokens"
    cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
    local pin so_pin
    pin=$(random_pin)
    so_pin=$(random_pin)
    (umask 077 && printf '%s\n' "$pin" >"$dir/user.pin" && printf '%s\n' "$so_pin" >"$dir/so.pin")
    SOFTHSM2_CONF=$dir/softhsm2.conf softhsm2-util --init-token --free --label "$label" \
        --so-pin "$so_pin" --pin "$pin" >"$dir/init.log" 2>&1 || {
        cat "$dir/init.log" >&2
        log "softhsm2-util --init-token failed"
        exit 1
    }
    cat >"$dir/env" <<ENV
SOFTHSM2_CONF=$dir/softhsm2.conf
ENVELOPE_TEST_HSM_MODULE=$module
ENVELOPE_TEST_HSM_TOKEN_LABEL=$label
ENVELOPE_TEST_HSM_PIN_FILE=$dir/user.pin
ENV
    cat "$dir/env"
}

case ${1:-} in
    install) install_softhsm ;;
    module) install_softhsm; find_module ;;
    init) [[ $# -ge 2 && $# -le 3 ]] || { echo "usage: $0 init DIR [LABEL]" >&2; exit 2; }; init "$2" "${3:-envelope-test}" ;;
    *) echo "usage: $0 install | module | init DIR [LABEL]" >&2; exit 2 ;;
esac
