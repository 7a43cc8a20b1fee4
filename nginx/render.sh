#!/bin/sh
# nginx/render.sh - render nginx/nginx.conf.template (the edge's one configuration) to stdout.
#
# Usage: NGINX_UPSTREAMS="127.0.0.1:8081 127.0.0.1:8082" NGINX_DIR=/path nginx/render.sh [TEMPLATE] >nginx.conf
#
# POSIX sh + envsubst (gettext-base), so it runs in the native stack and in an nginx container.
# Variables (default in brackets); each is a placeholder documented at the top of the template:
#   NGINX_UPSTREAMS      [127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8083]  replicas, space/comma separated
#   NGINX_DIR            [/var/cache/nginx-edge]  pid file, temp paths
#   NGINX_CACHE_DIR      [$NGINX_DIR/cache]  the micro-cache's files: put it on tmpfs
#   NGINX_ERROR_LOG      [$NGINX_DIR/error.log]   (use stderr in a container)
#   NGINX_USER           [nobody nogroup, or nobody nobody; empty when not root]  workers' user
#   NGINX_LISTEN         [127.0.0.1:8080]
#   NGINX_STATUS_LISTEN  [127.0.0.1:8089]
#   NGINX_MICROCACHE     [off]   on | off
#   NGINX_RATE_LIMIT     [on]    on | off (compose and k8s: off; sizes in docs/edge.md)
#   NGINX_RATE           [50]    lookups per second per client address
#   NGINX_BURST          [2 x NGINX_RATE]
#   NGINX_CONN_LIMIT     [100]   requests in progress per client address (with the rate limit)
#   NGINX_REAL_IP_FROM   []      trusted balancer ranges (CIDR), space separated; empty: none
#   NGINX_WEB_ROOT       [the web/ folder beside this script's folder]  the students' page
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template=${1:-$here/nginx.conf.template}
[ -r "$template" ] || { echo "render.sh: error: no template $template" >&2; exit 1; }
command -v envsubst >/dev/null 2>&1 ||
    { echo "render.sh: error: envsubst not found (Debian: gettext-base, Alpine: gettext)" >&2; exit 1; }

: "${NGINX_UPSTREAMS:=127.0.0.1:8081 127.0.0.1:8082 127.0.0.1:8083}"
: "${NGINX_DIR:=/var/cache/nginx-edge}"
: "${NGINX_ERROR_LOG:=$NGINX_DIR/error.log}"
: "${NGINX_CACHE_DIR:=$NGINX_DIR/cache}"
: "${NGINX_LISTEN:=127.0.0.1:8080}"
: "${NGINX_STATUS_LISTEN:=127.0.0.1:8089}"
: "${NGINX_MICROCACHE:=off}"
: "${NGINX_RATE_LIMIT:=on}"
: "${NGINX_RATE:=50}"
: "${NGINX_BURST:=$((NGINX_RATE * 2))}"
: "${NGINX_CONN_LIMIT:=100}"
: "${NGINX_REAL_IP_FROM:=}"
: "${NGINX_WEB_ROOT:=$(dirname "$here")/web}"
if [ -z "${NGINX_USER+set}" ]; then
    if [ "$(id -u)" = 0 ]; then
        if getent group nogroup >/dev/null 2>&1; then NGINX_USER='nobody nogroup'; else NGINX_USER='nobody nobody'; fi
    else
        NGINX_USER=''
    fi
fi

die() { echo "render.sh: error: $*" >&2; exit 1; }
case $NGINX_MICROCACHE in on | off) ;; *) die "NGINX_MICROCACHE='$NGINX_MICROCACHE' must be on or off" ;; esac
case $NGINX_RATE_LIMIT in on | off) ;; *) die "NGINX_RATE_LIMIT='$NGINX_RATE_LIMIT' must be on or off" ;; esac
case $NGINX_RATE in '' | *[!0-9]* | 0) die "NGINX_RATE='$NGINX_RATE' must be a positive integer" ;; esac
case $NGINX_BURST in '' | *[!0-9]*) die "NGINX_BURST='$NGINX_BURST' must be a non-negative integer" ;; esac
case $NGINX_CONN_LIMIT in '' | *[!0-9]* | 0) die "NGINX_CONN_LIMIT='$NGINX_CONN_LIMIT' must be a positive integer" ;; esac
NGINX_REAL_IP_LINES='# set_real_ip_from: no trusted balancer (NGINX_REAL_IP_FROM is empty)'
[ -z "$NGINX_REAL_IP_FROM" ] || NGINX_REAL_IP_LINES=''
for r in $(printf '%s' "$NGINX_REAL_IP_FROM" | tr ',' ' '); do
    case $r in *[!0-9A-Fa-f.:/]*) die "NGINX_REAL_IP_FROM: '$r' is not an address or CIDR range" ;; esac
    NGINX_REAL_IP_LINES="$NGINX_REAL_IP_LINES set_real_ip_from $r;"
done

servers=''
for s in $(printf '%s' "$NGINX_UPSTREAMS" | tr ',' ' '); do
    servers="${servers:+$servers
        }server $s max_fails=3 fail_timeout=2s;"
done
[ -n "$servers" ] || die "NGINX_UPSTREAMS is empty"
# The root goes into the configuration unquoted, like NGINX_DIR: a space, ;, brace, quote or $
# would break the directive or be read as a variable.
case $NGINX_WEB_ROOT in
    /*) ;;
    *) die "NGINX_WEB_ROOT='$NGINX_WEB_ROOT' must be an absolute path" ;;
esac
case $NGINX_WEB_ROOT in
    *[[:space:]]* | *[\;{}\'\"\$]*) die "NGINX_WEB_ROOT='$NGINX_WEB_ROOT' must not contain spaces, ; { } quotes or \$" ;;
esac
NGINX_UPSTREAM_SERVERS=$servers
if [ -n "$NGINX_USER" ]; then
    NGINX_USER_LINE="user $NGINX_USER;"
else
    NGINX_USER_LINE='# user: the master does not run as root'
fi

export NGINX_DIR NGINX_CACHE_DIR NGINX_ERROR_LOG NGINX_USER_LINE NGINX_LISTEN NGINX_STATUS_LISTEN \
    NGINX_UPSTREAM_SERVERS NGINX_MICROCACHE NGINX_RATE_LIMIT NGINX_RATE NGINX_BURST NGINX_WEB_ROOT \
    NGINX_CONN_LIMIT NGINX_REAL_IP_LINES
# shellcheck disable=SC2016 # the list of placeholders, for envsubst
envsubst '${NGINX_DIR} ${NGINX_CACHE_DIR} ${NGINX_ERROR_LOG} ${NGINX_USER_LINE} ${NGINX_LISTEN} ${NGINX_STATUS_LISTEN} ${NGINX_UPSTREAM_SERVERS} ${NGINX_MICROCACHE} ${NGINX_RATE_LIMIT} ${NGINX_RATE} ${NGINX_BURST} ${NGINX_WEB_ROOT} ${NGINX_CONN_LIMIT} ${NGINX_REAL_IP_LINES}' <"$template"
