# shellcheck shell=bash
# Helper functions for scripts/*.sh. Source it; do not execute it.
#
#   log / warn / die        messages on stderr, prefixed with "stack: "
#   is_root                 true when running as uid 0
#   add_cleanup CMD...      run CMD at exit (one EXIT trap for everything)
#   url_encode STRING       percent-encode for use inside a URL
#   conf_quote STRING       single-quote a value for postgresql.conf
#   is_loopback_ip ADDR     127.0.0.0/8 or ::1
#   url_host ADDR           ADDR, or [ADDR] for IPv6 literals
#   is_port NUMBER          1..65535
#   port_in_use HOST PORT   something accepts TCP connections there
#   wait_for SECONDS CMD... retry CMD every 0.2 s until it succeeds or time runs out
#   apt_install PKG...      install Debian packages without starting their services

# Prefix for messages; scripts may override before sourcing.
: "${LOG_PREFIX:=stack}"

log() { printf '%s: %s\n' "$LOG_PREFIX" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$LOG_PREFIX" "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$LOG_PREFIX" "$*" >&2
    exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

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

# --- strings -----------------------------------------------------------------
url_encode() {
    local s=$1 out='' c i
    local LC_ALL=C
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case $c in
        [A-Za-z0-9._~-]) out+=$c ;;
        *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

conf_quote() { printf "'%s'" "${1//\'/\'\'}"; }

# --- addresses and ports -----------------------------------------------------
is_loopback_ip() {
    local a=$1 o
    [[ $a == "::1" ]] && return 0
    [[ $a =~ ^127\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
    for o in "${BASH_REMATCH[@]:1}"; do
        ((10#$o <= 255)) || return 1
    done
}

url_host() {
    if [[ $1 == *:* ]]; then printf '[%s]' "$1"; else printf '%s' "$1"; fi
}

is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

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
# Installs PKG... with apt-get (update once first). While it runs, a temporary
# /usr/sbin/policy-rc.d (exit 101) stops the packages' maintainer scripts from
# starting system-wide services; an existing policy-rc.d is left untouched.
POLICY_RC_D=${POLICY_RC_D:-/usr/sbin/policy-rc.d}
_POLICY_RC_D_MARK='# temporary: created by scripts/stack.sh during apt-get install'
_APT_UPDATED=0

_remove_policy_rc_d() {
    if [[ -f $POLICY_RC_D ]] && grep -qxF "$_POLICY_RC_D_MARK" "$POLICY_RC_D"; then
        rm -f -- "$POLICY_RC_D"
    fi
}

apt_install() {
    (($# > 0)) || return 0
    if ! is_root; then
        die "missing packages: $*. Install them first (sudo apt-get install -y $*) or run this script as root."
    fi
    local created_policy=0
    if [[ ! -e $POLICY_RC_D ]]; then
        printf '#!/bin/sh\n%s\nexit 101\n' "$_POLICY_RC_D_MARK" >"$POLICY_RC_D"
        chmod 0755 "$POLICY_RC_D"
        created_policy=1
        add_cleanup _remove_policy_rc_d
        log "created temporary $POLICY_RC_D so package scripts do not start system services"
    else
        log "$POLICY_RC_D already exists; leaving it as it is"
    fi
    local rc=0
    export DEBIAN_FRONTEND=noninteractive
    if ((_APT_UPDATED == 0)); then
        log "apt-get update"
        apt-get update -q >&2 || rc=$?
        _APT_UPDATED=1
    fi
    if ((rc == 0)); then
        log "apt-get install $*"
        apt-get install -y -q --no-install-recommends "$@" >&2 || rc=$?
    fi
    if ((created_policy)); then
        _remove_policy_rc_d
    fi
    ((rc == 0)) || die "apt-get failed (exit $rc) installing: $*. Read the apt output above, fix it, and run again."
}
