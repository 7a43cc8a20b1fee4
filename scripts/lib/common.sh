# shellcheck shell=bash
# Helper functions for scripts/*.sh. Source it; do not execute it.
#
#   log / warn / die        messages on stderr, prefixed with "stack: "
#   add_cleanup CMD...      run CMD at exit (one EXIT trap for everything)
#   is_loopback_ip ADDR     127.0.0.0/8 or ::1
#   port_in_use HOST PORT   something accepts TCP connections there
#   wait_for SECONDS CMD... retry CMD every 0.2 s until it succeeds or time runs out
#   apt_install PKG...      install Debian packages without starting their services (xtask)

# Prefix for messages; scripts may override before sourcing.
: "${LOG_PREFIX:=stack}"

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}


# --- cleanup at exit ---------------------------------------------------------
_CLEANUP=()
add_cleanup() { _CLEANUP+=("$*"); }
_run_cleanup() {
    local cmd
    for cmd in "${_CLEANUP[@]}"; do
        eval "$cmd" || true
    done
}
trap _run_cleanup EXIT
# With set -e, say where an unexpected failure stopped the script.
set -E
trap 'log "error: unexpected failure (exit $?) at ${BASH_SOURCE[0]:-$0}:$LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

# --- addresses and ports -----------------------------------------------------
is_loopback_ip() {
    local a=$1 o
    [[ $a == "::1" ]] && return 0
    [[ $a =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    for o in "${BASH_REMATCH[@]:1}"; do
        ((10#$o <= 255)) || return 1
    done
}

port_in_use() {
    # bash's /dev/tcp: a successful connect means something listens there.
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# --- Debian packages ---------------------------------------------------------
# One implementation for the stack and the scripts: `cargo xtask install` (xtask/src/apt.rs), which
# keeps the packages' maintainer scripts from starting system-wide services while it runs.
apt_install() {
    (($# > 0)) || return 0
    (cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && cargo xtask install "$@") ||
        die "installing $* failed (see above)."
}
