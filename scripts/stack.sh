#!/usr/bin/env bash
# scripts/stack.sh - run the project's local service stack natively (no
# containers, no systemd): our own PostgreSQL cluster, our own Redis, the
# API replicas and NGINX in front of them (the edge), with all data, logs,
# sockets and pid files under $STACK_DIR.
#
# Usage: scripts/stack.sh up | down [--purge] | stop SERVICE... | status | env | help
#
# Configuration (environment variables; defaults in brackets):
#   STACK_DIR           [<repo>/.stack]  data, logs, sockets and pid files
#                       ($STACK_DIR/postgres/data, $STACK_DIR/redis,
#                       $STACK_DIR/log, $STACK_DIR/run). Git-ignored.
#   STACK_HOST          [127.0.0.1]      address both services listen on; must
#                       be a loopback address (127.0.0.0/8 or ::1).
#   STACK_PG_PORT       [55432]          PostgreSQL TCP port (not 5432, so a
#                       system PostgreSQL can run beside it).
#   STACK_REDIS_PORT    [56379]          Redis TCP port (not 6379, likewise).
#   STACK_PG_REPLICA_PORT [55433]        port of the opt-in PostgreSQL read
#                       replica (pg_replica in STACK_SERVICES).
#   STACK_REDIS_CLUSTER_PORT [56401]     service redis_cluster (opt-in): six
#                       nodes (three masters, three replicas) on this port
#                       and the five after it.
#   STACK_REDIS_CLUSTER_BUS_PORT [56411] their cluster bus ports (this one and
#                       the five after it; Redis' default, port+10000, would
#                       be past 65535 or in the ephemeral range).
#   STACK_REDIS_CLUSTER_NODE_TIMEOUT [2000] cluster-node-timeout, ms: how long a
#                       master may be unreachable before its replica takes over.
#   STACK_PG_USER       [results]        application role (LOGIN CREATEDB).
#   STACK_PG_PASSWORD   [results-local-only]  its password. This default is
#                       a LOCAL-ONLY development value, NOT a secret: the
#                       services only listen on loopback.
#   STACK_PG_DB         [results]        application database, owned by
#                       STACK_PG_USER.
#   STACK_TIMEOUT       [30]             seconds to wait for a service to
#                       start or stop.
#   STACK_PG_BIN        [highest /usr/lib/postgresql/*/bin]  PostgreSQL server
#                       binaries; an existing cluster always uses the
#                       binaries of its own major version.
#   STACK_SERVICES      [pg redis api nginx exporters prometheus]  services
#                       'up' starts (always in the order pg, pg_replica,
#                       redis, redis_cluster, api1..apiN, nginx, the
#                       exporters, prometheus): pg, pg_replica (opt-in: a
#                       streaming read replica of pg), redis, redis_cluster
#                       (the replicas then use it: REDIS_URL=redis-cluster://...),
#                       api (all STACK_API_REPLICAS replicas), apiN
#                       (one replica), nginx, exporters (all four) or one of
#                       node_exporter, nginx_exporter, redis_exporter,
#                       pg_exporter, and prometheus.
#                       'down' stops everything of ours that runs; 'status'
#                       shows all.
#   STACK_API_BIN       [<repo>/target/release/api]  the API binary (build it
#                       with: cargo build --release -p api).
#   STACK_API_REPLICAS  [3]              number of API replicas, 1-9.
#   STACK_API_PORT      [8081]           public port of replica 1; replica N
#                       listens on STACK_API_PORT+N-1.
#   STACK_API_ADMIN_PORT [8181]          admin port (/metrics, /debug/pprof) of
#                       replica 1; replica N uses STACK_API_ADMIN_PORT+N-1.
#   STACK_KEY_PREFIX    [results]        Redis key prefix the replicas read
#                       (their API_KEY_PREFIX), as given to the seeder.
#   STACK_NGINX_PORT    [8080]           NGINX's public port (the edge).
#   STACK_NGINX_STATUS_PORT [8089]       NGINX's internal stub_status port.
#   STACK_NGINX_MICROCACHE [off]         on|off: NGINX's 1 s micro-cache.
#   STACK_NGINX_CACHE_DIR [$STACK_DIR/nginx/cache]  its files (use tmpfs).
#   STACK_NGINX_RATE_LIMIT [off]         on|off: per-client rate limit (429).
#   STACK_NGINX_RATE    [20]             requests/s per client when it is on.
#   STACK_NGINX_BURST   [2 x RATE]       burst allowed above the rate.
#   STACK_PROMETHEUS_PORT [9090]         Prometheus (web UI and API).
#   STACK_NODE_EXPORTER_PORT [9100], STACK_NGINX_EXPORTER_PORT [9113],
#   STACK_REDIS_EXPORTER_PORT [9121], STACK_PG_EXPORTER_PORT [9187]
#                                        the exporters Prometheus scrapes.
#   STACK_LOADGEN_METRICS_PORT [9400]    where Prometheus looks for the load
#                                        generator's /metrics (during a test).
#   STACK_PROMETHEUS_INTERVAL [5s]       scrape and rule evaluation interval.
#
# Services are managed one function set per service (<svc>_preflight,
# <svc>_up, <svc>_down, <svc>_status) and listed in SERVICES; add new ones
# there. The API replicas api1..api9 share one set (api_up N, ...), called
# through svc_call.
# Only processes found through our own pid files / data directory are ever
# stopped: system-wide services (e.g. a system Redis on 6379 or PostgreSQL on
# 5432) are never touched.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname -- "$SCRIPT_DIR")
SELF=scripts/stack.sh
LOG_PREFIX=stack
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

# --- configuration -----------------------------------------------------------
DEFAULT_STACK_DIR=$REPO_DIR/.stack
DEFAULT_STACK_HOST=127.0.0.1
DEFAULT_STACK_PG_PORT=55432
DEFAULT_STACK_REDIS_PORT=56379
DEFAULT_STACK_PG_REPLICA_PORT=55433
DEFAULT_STACK_REDIS_CLUSTER_PORT=56401
DEFAULT_STACK_REDIS_CLUSTER_BUS_PORT=56411
DEFAULT_STACK_REDIS_CLUSTER_NODE_TIMEOUT=2000
DEFAULT_STACK_PG_USER=results
DEFAULT_STACK_PG_PASSWORD=results-local-only # LOCAL-ONLY default, not a secret
DEFAULT_STACK_PG_DB=results
DEFAULT_STACK_TIMEOUT=30
DEFAULT_STACK_SERVICES='pg redis api nginx exporters prometheus'
DEFAULT_STACK_API_BIN=$REPO_DIR/target/release/api
DEFAULT_STACK_API_REPLICAS=3
DEFAULT_STACK_API_PORT=8081
DEFAULT_STACK_API_ADMIN_PORT=8181
DEFAULT_STACK_KEY_PREFIX=results
DEFAULT_STACK_NGINX_PORT=8080
DEFAULT_STACK_NGINX_STATUS_PORT=8089
DEFAULT_STACK_NGINX_MICROCACHE=off
DEFAULT_STACK_NGINX_RATE_LIMIT=off
DEFAULT_STACK_NGINX_RATE=20
DEFAULT_STACK_PROMETHEUS_PORT=9090
DEFAULT_STACK_NODE_EXPORTER_PORT=9100
DEFAULT_STACK_NGINX_EXPORTER_PORT=9113
DEFAULT_STACK_REDIS_EXPORTER_PORT=9121
DEFAULT_STACK_PG_EXPORTER_PORT=9187
DEFAULT_STACK_LOADGEN_METRICS_PORT=9400
DEFAULT_STACK_PROMETHEUS_INTERVAL=5s

# Started in this order by `up` (those chosen by STACK_SERVICES), stopped in
# reverse order by `down`. load_config appends api1..api$STACK_API_REPLICAS,
# nginx, then MONITORING.
SERVICES=(pg pg_replica redis redis_cluster)
# On SIGTERM a replica reports not-ready this long before closing its
# listener, so a load balancer notices it is draining.
API_DRAIN_DELAY_MS=1000
# One runtime worker thread per replica unless API_WORKER_THREADS says otherwise:
# three replicas share this host's cores, and one thread each spent ~20% less CPU
# per request than one per core (scripts/bench_stack.sh, BENCH_API_THREADS).
API_WORKER_THREADS=${API_WORKER_THREADS:-1}

# Prometheus and the exporters it scrapes (Debian's packages), in start order.
MONITORING=(node_exporter nginx_exporter redis_exporter pg_exporter prometheus)
PROMETHEUS_REPO_DIR=$REPO_DIR/prometheus

REDIS_CONF=$REPO_DIR/redis/redis.conf
PG_PROJECT_CONF=$REPO_DIR/postgres/postgresql.conf
PG_SUPERUSER=postgres
NGINX_TEMPLATE=$REPO_DIR/nginx/nginx.conf.template
NGINX_RENDER=$REPO_DIR/nginx/render.sh
NGINX_WEB_ROOT=$REPO_DIR/web # the students' page, served at / (nginx.conf.template)

usage() {
    cat <<EOF
Usage: $SELF COMMAND

Runs the project's local service stack natively: our own PostgreSQL cluster,
our own Redis, the API replicas (api1..api3) and NGINX in front of them,
listening on loopback only,
with all data, logs, unix sockets and pid files under \$STACK_DIR.
System-wide services are never touched.

Commands:
  up            Start the services chosen by STACK_SERVICES (default: all).
                Installs missing Debian packages (postgresql, redis-server,
                redis-tools, nginx, prometheus, and curl for the API; needs
                root), creates the PostgreSQL cluster on first use, starts
                PostgreSQL and Redis, creates the application role and
                database, starts the API replicas in the background (after
                PostgreSQL and Redis), waits until everything answers
                (/healthz for the API, then shows its /readyz), and prints
                where it runs. Idempotent: whatever already runs is left
                alone.
  down          Stop everything of ours that runs, in reverse order: NGINX
                (graceful quit: open requests finish), the API
                replicas (SIGTERM, they drain; SIGKILL after STACK_TIMEOUT),
                Redis (it saves its snapshot) and PostgreSQL (fast shutdown).
                Data is kept. Ignores STACK_SERVICES. Idempotent.
  down --purge  As down, then delete \$STACK_DIR entirely.
  stop SERVICE...  Stop only these services (names as in STACK_SERVICES:
                pg, redis, api, apiN, nginx, exporters, prometheus ...), the
                same way as down, in reverse start order; the rest keeps
                running. 'up' with STACK_SERVICES=SERVICE starts one again
                (scripts/drill.sh restarts Redis, PostgreSQL and replicas so).
  status        One line per service: running/stopped, pid, address, Redis
                memory, number of PostgreSQL databases, API admin address
                and ready/not ready. Exit status 0 if all services chosen by
                STACK_SERVICES run, 3 otherwise.
  env           Print export lines for DATABASE_URL, REDIS_URL, API_URLS
                (the replicas' base URLs, comma-separated) and PUBLIC_URL
                (NGINX, the edge), and DATABASE_REPLICA_URLS while the
                PostgreSQL read replica runs; works whether or
                not the stack is up, for
                  eval "\$($SELF env)"
  help          This text (also -h, --help).

Environment variables (default in brackets):
  STACK_DIR          [$DEFAULT_STACK_DIR]
                     Data (\$STACK_DIR/postgres/data, \$STACK_DIR/redis), logs
                     (\$STACK_DIR/log) and sockets/pid files (\$STACK_DIR/run).
  STACK_HOST         [$DEFAULT_STACK_HOST]
                     Address both services listen on. Must be a loopback
                     address (127.0.0.0/8 or ::1).
  STACK_PG_PORT      [$DEFAULT_STACK_PG_PORT]  PostgreSQL TCP port.
  STACK_REDIS_PORT   [$DEFAULT_STACK_REDIS_PORT]  Redis TCP port.
  STACK_PG_REPLICA_PORT [$DEFAULT_STACK_PG_REPLICA_PORT]  Port of the PostgreSQL read replica
                     (pg_replica): a streaming standby cloned from the primary
                     with pg_basebackup -R into \$STACK_DIR/postgres/replica,
                     replicating as role $PG_REPLICATION_USER (LOCAL-ONLY
                     password $PG_REPLICATION_PASSWORD). 'up' waits until it is in
                     recovery and streaming; the API replicas started with it
                     read it first (DATABASE_REPLICA_URLS).
  STACK_REDIS_CLUSTER_PORT [$DEFAULT_STACK_REDIS_CLUSTER_PORT]  Service redis_cluster (opt-in): a Redis
                     Cluster of six nodes, three masters with a replica each, on
                     this port and the five after it.
  STACK_REDIS_CLUSTER_BUS_PORT [$DEFAULT_STACK_REDIS_CLUSTER_BUS_PORT]  Their cluster bus ports (this one
                     and the five after it).
  STACK_REDIS_CLUSTER_NODE_TIMEOUT [$DEFAULT_STACK_REDIS_CLUSTER_NODE_TIMEOUT]  cluster-node-timeout in ms: a
                     master unreachable this long is failed over to its replica.
  STACK_PG_USER      [$DEFAULT_STACK_PG_USER]  Application role (LOGIN CREATEDB;
                     tests create and drop their own databases).
  STACK_PG_PASSWORD  [$DEFAULT_STACK_PG_PASSWORD]  Its password: a LOCAL-ONLY
                     default, not a secret. Re-applied on every 'up'.
  STACK_PG_DB        [$DEFAULT_STACK_PG_DB]  Application database, owned by
                     STACK_PG_USER.
  STACK_TIMEOUT      [$DEFAULT_STACK_TIMEOUT]  Seconds to wait for a service to
                     start or stop.
  STACK_PG_BIN       [highest /usr/lib/postgresql/*/bin]  PostgreSQL server
                     binaries (an existing cluster uses its own version's).
  STACK_SERVICES     [$DEFAULT_STACK_SERVICES]  Services 'up' starts, separated by
                     spaces or commas, always started in the order pg,
                     pg_replica, redis, redis_cluster, api1..apiN, nginx: pg,
                     pg_replica (opt-in, never in the default), redis,
                     redis_cluster (instead of redis: the replicas, 'env' and
                     the redis exporter then use REDIS_URL=redis-cluster://...;
                     also when STACK_SERVICES names no Redis and only the
                     cluster runs), api (all
                     STACK_API_REPLICAS replicas), apiN (replica N alone) or
                     nginx. E.g.
                     STACK_SERVICES="pg redis" for the stores only.
  STACK_API_BIN      [$DEFAULT_STACK_API_BIN]
                     The API binary. Build it first: cargo build --release -p
                     api (scripts/up.sh does this).
  STACK_API_REPLICAS [$DEFAULT_STACK_API_REPLICAS]  Number of API replicas, 1-9.
  STACK_API_PORT     [$DEFAULT_STACK_API_PORT]  Public port of replica 1; replica N
                     listens on STACK_API_PORT+N-1 (8081, 8082, 8083).
  STACK_API_ADMIN_PORT [$DEFAULT_STACK_API_ADMIN_PORT]  Admin port (/metrics,
                     /debug/pprof) of replica 1; replica N uses
                     STACK_API_ADMIN_PORT+N-1 (8181, 8182, 8183).
  STACK_KEY_PREFIX   [$DEFAULT_STACK_KEY_PREFIX]  Redis key prefix the replicas read
                     (their API_KEY_PREFIX): the seeder's SEEDER_KEY_PREFIX.
  STACK_NGINX_PORT   [$DEFAULT_STACK_NGINX_PORT]  NGINX's public port: /v1/results/{id},
                     /student/{id}, /readyz proxied to the replicas, /healthz;
                     everything else (admin routes too) a JSON 404.
  STACK_NGINX_STATUS_PORT [$DEFAULT_STACK_NGINX_STATUS_PORT]  NGINX's internal-only
                     listener: /stub_status (for the exporter).
  STACK_NGINX_MICROCACHE [$DEFAULT_STACK_NGINX_MICROCACHE]  on|off: 1 s micro-cache of
                     results (X-Cache-Status: HIT/MISS/..., BYPASS when off).
                     Off by default: it rarely hits on result-day traffic and
                     costs throughput on a small host (see nginx.conf.template).
  STACK_NGINX_CACHE_DIR [\$STACK_DIR/nginx/cache]  Where the micro-cache keeps its
                     files; a tmpfs folder (e.g. under /dev/shm) is far cheaper.
  STACK_NGINX_RATE_LIMIT [$DEFAULT_STACK_NGINX_RATE_LIMIT]  on|off: per-client-address
                     rate limit; beyond it a JSON 429 with Retry-After: 1.
  STACK_NGINX_RATE   [$DEFAULT_STACK_NGINX_RATE]  Requests per second per client (when on).
  STACK_NGINX_BURST  [2 x STACK_NGINX_RATE]  Requests above the rate let through
                     at once before the 429s start.
  STACK_PROMETHEUS_PORT [$DEFAULT_STACK_PROMETHEUS_PORT]  Prometheus: web UI and query API.
  STACK_NODE_EXPORTER_PORT [$DEFAULT_STACK_NODE_EXPORTER_PORT], STACK_NGINX_EXPORTER_PORT [$DEFAULT_STACK_NGINX_EXPORTER_PORT],
  STACK_REDIS_EXPORTER_PORT [$DEFAULT_STACK_REDIS_EXPORTER_PORT], STACK_PG_EXPORTER_PORT [$DEFAULT_STACK_PG_EXPORTER_PORT]
                     The exporters (Debian's prometheus-*-exporter packages).
  STACK_LOADGEN_METRICS_PORT [$DEFAULT_STACK_LOADGEN_METRICS_PORT]  Where Prometheus scrapes the load
                     generator's /metrics while a load test runs.
  STACK_PROMETHEUS_INTERVAL [$DEFAULT_STACK_PROMETHEUS_INTERVAL]  Scrape and rule evaluation
                     interval (tests use 1s).
  Prometheus runs on prometheus/prometheus.yml and prometheus/rules/ of the
  repository (linked from \$STACK_DIR/prometheus), with target files written
  there from the ports above; its data lives in \$STACK_DIR/prometheus/data.
  'up' with nginx already running re-renders its configuration and reloads
  it (no dropped connections) when the NGINX settings changed, e.g.
    STACK_SERVICES=nginx STACK_NGINX_RATE_LIMIT=on $SELF up

Each API replica gets DATABASE_URL and REDIS_URL as printed by 'env' (and
DATABASE_REPLICA_URLS when the PostgreSQL read replica runs),
API_LISTEN and API_ADMIN_LISTEN on STACK_HOST, API_KEY_PREFIX,
API_DRAIN_DELAY_MS=$API_DRAIN_DELAY_MS and API_WORKER_THREADS (1 unless set:
the replicas share the host's cores); other API_* variables of the
environment of 'up' (API_LOG, API_PG_POOL_SIZE, ...; see 'api --help') pass
through to it.

Ports default to 55432/56379 so a system PostgreSQL (5432) or Redis (6379)
can run beside the stack. To run a second stack side by side, give it its
own STACK_DIR and ports, and pass the same variables to its 'down'.

Files: Redis settings in redis/redis.conf, PostgreSQL settings in
postgres/postgresql.conf (copied into the cluster at each start). Logs:
\$STACK_DIR/log/postgres.log (the replica's: postgres-replica.log),
\$STACK_DIR/log/redis.log,
\$STACK_DIR/log/redis-cluster-PORT.log (each cluster node's data and
nodes.conf: \$STACK_DIR/redis-cluster/PORT) and
\$STACK_DIR/log/apiN.log (pid files: \$STACK_DIR/run/apiN.pid) and
\$STACK_DIR/log/nginx.log (NGINX's error log; its rendered configuration,
pid file, temp files and micro-cache are in \$STACK_DIR/nginx; the template
is nginx/nginx.conf.template, rendered by nginx/render.sh).
As root, PostgreSQL runs as the 'postgres' system user (initdb refuses root).
EOF
}

load_config() {
    STACK_DIR=${STACK_DIR:-$DEFAULT_STACK_DIR}
    STACK_HOST=${STACK_HOST:-$DEFAULT_STACK_HOST}
    STACK_PG_PORT=${STACK_PG_PORT:-$DEFAULT_STACK_PG_PORT}
    STACK_REDIS_PORT=${STACK_REDIS_PORT:-$DEFAULT_STACK_REDIS_PORT}
    load_pg_replica_config
    STACK_PG_USER=${STACK_PG_USER:-$DEFAULT_STACK_PG_USER}
    STACK_PG_PASSWORD=${STACK_PG_PASSWORD:-$DEFAULT_STACK_PG_PASSWORD}
    STACK_PG_DB=${STACK_PG_DB:-$DEFAULT_STACK_PG_DB}
    STACK_TIMEOUT=${STACK_TIMEOUT:-$DEFAULT_STACK_TIMEOUT}
    STACK_PG_BIN=${STACK_PG_BIN:-}
    STACK_SERVICES=${STACK_SERVICES:-$DEFAULT_STACK_SERVICES}
    STACK_API_BIN=${STACK_API_BIN:-$DEFAULT_STACK_API_BIN}
    STACK_API_REPLICAS=${STACK_API_REPLICAS:-$DEFAULT_STACK_API_REPLICAS}
    STACK_API_PORT=${STACK_API_PORT:-$DEFAULT_STACK_API_PORT}
    STACK_API_ADMIN_PORT=${STACK_API_ADMIN_PORT:-$DEFAULT_STACK_API_ADMIN_PORT}
    STACK_KEY_PREFIX=${STACK_KEY_PREFIX:-$DEFAULT_STACK_KEY_PREFIX}
    STACK_NGINX_PORT=${STACK_NGINX_PORT:-$DEFAULT_STACK_NGINX_PORT}
    STACK_NGINX_STATUS_PORT=${STACK_NGINX_STATUS_PORT:-$DEFAULT_STACK_NGINX_STATUS_PORT}
    STACK_NGINX_MICROCACHE=${STACK_NGINX_MICROCACHE:-$DEFAULT_STACK_NGINX_MICROCACHE}
    STACK_NGINX_CACHE_DIR=${STACK_NGINX_CACHE_DIR:-}
    STACK_NGINX_RATE_LIMIT=${STACK_NGINX_RATE_LIMIT:-$DEFAULT_STACK_NGINX_RATE_LIMIT}
    STACK_NGINX_RATE=${STACK_NGINX_RATE:-$DEFAULT_STACK_NGINX_RATE}
    STACK_PROMETHEUS_PORT=${STACK_PROMETHEUS_PORT:-$DEFAULT_STACK_PROMETHEUS_PORT}
    STACK_NODE_EXPORTER_PORT=${STACK_NODE_EXPORTER_PORT:-$DEFAULT_STACK_NODE_EXPORTER_PORT}
    STACK_NGINX_EXPORTER_PORT=${STACK_NGINX_EXPORTER_PORT:-$DEFAULT_STACK_NGINX_EXPORTER_PORT}
    STACK_REDIS_EXPORTER_PORT=${STACK_REDIS_EXPORTER_PORT:-$DEFAULT_STACK_REDIS_EXPORTER_PORT}
    STACK_PG_EXPORTER_PORT=${STACK_PG_EXPORTER_PORT:-$DEFAULT_STACK_PG_EXPORTER_PORT}
    STACK_LOADGEN_METRICS_PORT=${STACK_LOADGEN_METRICS_PORT:-$DEFAULT_STACK_LOADGEN_METRICS_PORT}
    STACK_PROMETHEUS_INTERVAL=${STACK_PROMETHEUS_INTERVAL:-$DEFAULT_STACK_PROMETHEUS_INTERVAL}

    # Absolute paths (STACK_DIR without trailing slashes), so they work from any directory.
    [[ $STACK_API_BIN == /* ]] || STACK_API_BIN=${PWD%/}/$STACK_API_BIN
    [[ $STACK_DIR == /* ]] || STACK_DIR=${PWD%/}/$STACK_DIR
    while [[ $STACK_DIR == */ && $STACK_DIR != / ]]; do STACK_DIR=${STACK_DIR%/}; done
    [[ $STACK_DIR != / ]] || die "STACK_DIR must not be /. Set STACK_DIR to a dedicated directory."

    is_loopback_ip "$STACK_HOST" ||
        die "STACK_HOST='$STACK_HOST' is not a loopback address. The stack has no real passwords and must only listen on loopback: set STACK_HOST to 127.0.0.1 (or another 127.x.y.z, or ::1)."
    is_port "$STACK_PG_PORT" || die "STACK_PG_PORT='$STACK_PG_PORT' is not a TCP port number (1-65535)."
    is_port "$STACK_REDIS_PORT" || die "STACK_REDIS_PORT='$STACK_REDIS_PORT' is not a TCP port number (1-65535)."
    ((10#$STACK_PG_PORT != 10#$STACK_REDIS_PORT)) ||
        die "STACK_PG_PORT and STACK_REDIS_PORT are both $STACK_PG_PORT. Give them different values."
    [[ $STACK_TIMEOUT =~ ^[1-9][0-9]*$ ]] || die "STACK_TIMEOUT='$STACK_TIMEOUT' must be a positive number of seconds."
    [[ -n $STACK_PG_USER && -n $STACK_PG_DB ]] || die "STACK_PG_USER and STACK_PG_DB must not be empty."
    load_api_config
    load_nginx_config
    redis_cluster_load_config

    LOG_DIR=$STACK_DIR/log
    RUN_DIR=$STACK_DIR/run
    MARKER=$STACK_DIR/.results-stack
    PG_DATA=$STACK_DIR/postgres/data
    PG_LOG=$LOG_DIR/postgres.log
    REDIS_DIR=$STACK_DIR/redis
    REDIS_LOG=$LOG_DIR/redis.log
    REDIS_PIDFILE=$RUN_DIR/redis.pid
    NGINX_DIR=$STACK_DIR/nginx
    NGINX_CONF=$NGINX_DIR/nginx.conf
    NGINX_PIDFILE=$NGINX_DIR/nginx.pid
    NGINX_LOG=$LOG_DIR/nginx.log
    NGINX_CACHE_DIR=${STACK_NGINX_CACHE_DIR:-$NGINX_DIR/cache}
    PROMETHEUS_DIR=$STACK_DIR/prometheus

    local socket=$RUN_DIR/.s.PGSQL.$STACK_PG_PORT
    ((${#socket} <= 107)) ||
        die "STACK_DIR is too long for a unix socket path ($socket, max 107 bytes). Set STACK_DIR to a shorter path."
}

# Validates the API variables, appends api1..api$STACK_API_REPLICAS to
# SERVICES and sets SELECTED: the services `up` starts, in SERVICES order.
load_api_config() {
    [[ $STACK_API_REPLICAS =~ ^[1-9]$ ]] ||
        die "STACK_API_REPLICAS='$STACK_API_REPLICAS' must be a number of replicas from 1 to 9."
    local var n port
    local -A owner=([$((10#$STACK_PG_PORT))]=STACK_PG_PORT [$((10#$STACK_REDIS_PORT))]=STACK_REDIS_PORT)
    [[ -z ${owner[$((10#$STACK_PG_REPLICA_PORT))]:-} ]] ||
        die "port $STACK_PG_REPLICA_PORT is wanted by both ${owner[$((10#$STACK_PG_REPLICA_PORT))]} and STACK_PG_REPLICA_PORT. Give every service its own port."
    owner[$((10#$STACK_PG_REPLICA_PORT))]=STACK_PG_REPLICA_PORT
    # NGINX's ports take part in the overlap check.
    is_port "$STACK_NGINX_PORT" || die "STACK_NGINX_PORT='$STACK_NGINX_PORT' is not a TCP port number (1-65535)."
    is_port "$STACK_NGINX_STATUS_PORT" || die "STACK_NGINX_STATUS_PORT='$STACK_NGINX_STATUS_PORT' is not a TCP port number (1-65535)."
    [[ $STACK_PROMETHEUS_INTERVAL =~ ^[1-9][0-9]*(ms|s|m)$ ]] ||
        die "STACK_PROMETHEUS_INTERVAL='$STACK_PROMETHEUS_INTERVAL' must be a duration such as 1s, 5s or 1m."
    for var in STACK_PROMETHEUS_PORT STACK_NODE_EXPORTER_PORT STACK_NGINX_EXPORTER_PORT STACK_REDIS_EXPORTER_PORT \
        STACK_PG_EXPORTER_PORT STACK_LOADGEN_METRICS_PORT; do
        is_port "${!var}" || die "$var='${!var}' is not a TCP port number (1-65535)."
    done
    for var in STACK_NGINX_PORT STACK_NGINX_STATUS_PORT STACK_PROMETHEUS_PORT STACK_NODE_EXPORTER_PORT \
        STACK_NGINX_EXPORTER_PORT STACK_REDIS_EXPORTER_PORT STACK_PG_EXPORTER_PORT STACK_LOADGEN_METRICS_PORT; do
        port=$((10#${!var}))
        [[ -z ${owner[$port]:-} ]] ||
            die "port $port is wanted by both ${owner[$port]} and $var. Give every service its own port."
        owner[$port]=$var
    done
    for var in STACK_API_PORT STACK_API_ADMIN_PORT; do
        is_port "${!var}" || die "$var='${!var}' is not a TCP port number (1-65535)."
        for ((n = 1; n <= STACK_API_REPLICAS; n++)); do
            port=$((10#${!var} + n - 1))
            ((port <= 65535)) ||
                die "$var=${!var} with STACK_API_REPLICAS=$STACK_API_REPLICAS needs ports up to $((10#${!var} + STACK_API_REPLICAS - 1)), beyond 65535. Lower $var."
            [[ -z ${owner[$port]:-} ]] ||
                die "port $port is wanted by both ${owner[$port]} and $var (replica api$n listens on $var+$((n - 1))). Choose STACK_PG_PORT, STACK_REDIS_PORT, STACK_API_PORT and STACK_API_ADMIN_PORT so that no ports overlap (each API variable takes STACK_API_REPLICAS consecutive ports)."
            owner[$port]="$var (api$n)"
        done
    done
    [[ -n $STACK_KEY_PREFIX ]] || die "STACK_KEY_PREFIX must not be empty."

    for ((n = 1; n <= STACK_API_REPLICAS; n++)); do SERVICES+=("api$n"); done
    SERVICES+=(nginx "${MONITORING[@]}")

    local -A want=()
    local name names
    read -ra names <<<"${STACK_SERVICES//,/ }"
    for name in "${names[@]}"; do
        case $name in
        pg | pg_replica | redis | redis_cluster | nginx | node_exporter | nginx_exporter | redis_exporter | pg_exporter | prometheus) want[$name]=1 ;;
        exporters) for n in "${MONITORING[@]}"; do [[ $n == prometheus ]] || want[$n]=1; done ;;
        api) for ((n = 1; n <= STACK_API_REPLICAS; n++)); do want[api$n]=1; done ;;
        api[1-9])
            ((${name#api} <= STACK_API_REPLICAS)) ||
                die "STACK_SERVICES names $name, but STACK_API_REPLICAS=$STACK_API_REPLICAS. Raise STACK_API_REPLICAS or drop $name."
            want[$name]=1
            ;;
        *) die "STACK_SERVICES='$STACK_SERVICES': unknown service '$name'. Known: pg, pg_replica, redis, redis_cluster, api (all STACK_API_REPLICAS replicas), api1..api$STACK_API_REPLICAS, nginx, exporters (${MONITORING[*]:0:4}), prometheus." ;;
        esac
    done
    SELECTED=()
    for name in "${SERVICES[@]}"; do
        [[ -z ${want[$name]:-} ]] || SELECTED+=("$name")
    done
    ((${#SELECTED[@]})) || die "STACK_SERVICES='$STACK_SERVICES' names no service. Known: pg, redis, redis_cluster, api, api1..api$STACK_API_REPLICAS, nginx."
}

load_nginx_config() {
    local var
    for var in STACK_NGINX_MICROCACHE STACK_NGINX_RATE_LIMIT; do
        [[ ${!var} == on || ${!var} == off ]] || die "$var='${!var}' must be on or off."
    done
    [[ $STACK_NGINX_RATE =~ ^[1-9][0-9]*$ ]] ||
        die "STACK_NGINX_RATE='$STACK_NGINX_RATE' must be a positive number of requests per second."
    STACK_NGINX_BURST=${STACK_NGINX_BURST:-$((10#$STACK_NGINX_RATE * 2))}
    [[ $STACK_NGINX_BURST =~ ^[0-9]+$ ]] ||
        die "STACK_NGINX_BURST='$STACK_NGINX_BURST' must be a number of requests (0 or more)."
}

database_url() {
    printf 'postgres://%s:%s@%s:%s/%s' "$(url_encode "$STACK_PG_USER")" \
        "$(url_encode "$STACK_PG_PASSWORD")" "$(url_host "$STACK_HOST")" \
        "$STACK_PG_PORT" "$(url_encode "$STACK_PG_DB")"
}

redis_url() { printf 'redis://%s:%s' "$(url_host "$STACK_HOST")" "$STACK_REDIS_PORT"; }

# --- shared helpers ------------------------------------------------------------
have_cmd() { command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/bin/$1 ]]; }

# Debian packages that `up` needs, missing ones printed one per line.
missing_packages() {
    pg_installed_bins >/dev/null || echo postgresql
    have_cmd redis-server || echo redis-server
    have_cmd redis-cli || echo redis-tools
    have_cmd nginx || echo nginx
    have_cmd prometheus || echo prometheus
    local svc
    for svc in "${SELECTED[@]}"; do
        case $svc in
        *_exporter) have_cmd "$(mon_bin "$svc")" || mon_bin "$svc" ;;
        esac
    done
    if api_selected && ! have_cmd curl; then echo curl; fi
}

ensure_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]})); then
        apt_install "${missing[@]}"
        mapfile -t missing < <(missing_packages)
        ((${#missing[@]} == 0)) || die "still missing after apt-get install: ${missing[*]}"
    fi
}

prepare_stack_dir() {
    install -d -m 0755 "$STACK_DIR" "$LOG_DIR" "$RUN_DIR"
    [[ -e $MARKER ]] || printf 'Created by %s. Delete with: %s down --purge\n' "$SELF" "$SELF" >"$MARKER"
}

# Serialise concurrent up/down on the same STACK_DIR. Started services must not
# inherit fd 9 (see 9>&- below) or they would hold the lock forever.
lock_stack_dir() {
    exec 9>"$STACK_DIR/.lock"
    flock -w "$STACK_TIMEOUT" 9 || die "another $SELF is working on $STACK_DIR; wait for it to finish and retry."
}

# Runs <svc>_ACTION for a service name; apiN runs api_ACTION N.
svc_call() {
    local action=$1 svc=$2
    if [[ $svc =~ ^api([1-9])$ ]]; then
        "api_$action" "${BASH_REMATCH[1]}"
    elif [[ " ${MONITORING[*]} " == *" $svc "* ]]; then
        "mon_$action" "$svc"
    else
        "${svc}_$action"
    fi
}

# SERVICES, plus replicas beyond STACK_API_REPLICAS that still have a pid
# file (started with a higher STACK_API_REPLICAS): `down` must stop them too.
known_services() {
    local n
    printf '%s\n' "${SERVICES[@]}"
    for ((n = STACK_API_REPLICAS + 1; n <= 9; n++)); do
        if [[ -e $(api_pidfile "$n") ]]; then echo "api$n"; fi
    done
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# Gone or a zombie (nobody may reap a daemon whose parent has exited).
pid_dead() { ! pid_alive "$1"; }

not_zombie() { [[ $(proc_state "$1") != Z ]]; }

# State letter from /proc/PID/stat (R, S, Z, ...), empty if there is no such process.
proc_state() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) }
    printf '%s' "${stat%% *}"
}

# Alive and not a zombie (a killed daemon stays a zombie until init reaps it).
pid_alive() {
    local state
    [[ $1 =~ ^[0-9]+$ ]] || return 1
    state=$(proc_state "$1")
    [[ -n $state && $state != Z ]]
}

show_log_tail() {
    [[ -s $1 ]] || return 0
    log "last lines of $1:"
    tail -n 15 "$1" | sed 's/^/    /' >&2
}

# launch NAME PIDFILE LOGFILE [VAR=VALUE...] -- COMMAND...: starts COMMAND
# detached with those variables. setsid: its own session, no controlling
# terminal, so it outlives this script and the terminal. The launcher writes
# its own pid, then execs COMMAND in place: the pid file names the process
# itself. Sets LAUNCHED_PID.
launch() {
    local name=$1 pidfile=$2 logfile=$3 vars=()
    shift 3
    while (($#)) && [[ $1 != -- ]]; do
        vars+=("$1")
        shift
    done
    shift
    # shellcheck disable=SC2016 # expanded by the inner bash
    env "${vars[@]}" setsid bash -c 'cd / && echo "$$" >"$1" && shift && exec "$@"' "$name-launcher" "$pidfile" "$@" \
        </dev/null >>"$logfile" 2>&1 9>&- &
    if ! wait_for 10 test -s "$pidfile"; then
        show_log_tail "$logfile"
        die "$name did not start (no pid in $pidfile after 10s). Read $logfile."
    fi
    LAUNCHED_PID=$(<"$pidfile")
}

# await_healthy NAME PID LOGFILE URL CHECK...: waits until CHECK succeeds (URL
# names what it asks); dies when the process exits or STACK_TIMEOUT passes.
await_healthy() {
    local name=$1 pid=$2 logfile=$3 url=$4 deadline=$((SECONDS + STACK_TIMEOUT))
    shift 4
    until "$@"; do
        if pid_dead "$pid"; then
            show_log_tail "$logfile"
            die "$name exited during start-up. Read $logfile."
        fi
        if ((SECONDS >= deadline)); then
            show_log_tail "$logfile"
            die "$name (pid $pid) does not answer $url after ${STACK_TIMEOUT}s. Read $logfile; '$SELF down' stops it."
        fi
        sleep 0.2
    done
}

# terminate NAME PID LOGFILE [WHAT]: SIGTERM, SIGKILL after STACK_TIMEOUT. WHAT
# says what SIGTERM makes it do, for the log line.
terminate() {
    local name=$1 pid=$2 logfile=$3 what=${4:-}
    log "$name: stopping (pid $pid${what:+; $what})"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$STACK_TIMEOUT" pid_dead "$pid"; then
        warn "$name (pid $pid) did not exit within ${STACK_TIMEOUT}s of SIGTERM; sending SIGKILL. Read $logfile."
        kill -KILL "$pid" 2>/dev/null || true
        wait_for 5 pid_dead "$pid" || die "$name (pid $pid) survived SIGKILL; is it stuck in the kernel? Retry '$SELF down'."
    fi
}

# --- PostgreSQL --------------------------------------------------------------
# All installed server bin dirs, highest version last.
pg_installed_bins() {
    local d found=()
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb && -x $d/pg_ctl ]] && found+=("$d")
    done
    ((${#found[@]})) || return 1
    printf '%s\n' "${found[@]}" | sort -V
}

# Sets PG_BIN. An existing cluster needs the binaries of its own major version.
pg_resolve_bin() {
    if [[ -f $PG_DATA/PG_VERSION ]]; then
        local v
        v=$(<"$PG_DATA/PG_VERSION")
        if [[ -n $STACK_PG_BIN && -x $STACK_PG_BIN/pg_ctl ]] &&
            [[ $("$STACK_PG_BIN/pg_ctl" --version) =~ \ $v(\.|$) ]]; then
            PG_BIN=$STACK_PG_BIN
        elif [[ -x /usr/lib/postgresql/$v/bin/pg_ctl ]]; then
            PG_BIN=/usr/lib/postgresql/$v/bin
        else
            log "the cluster in $PG_DATA is PostgreSQL $v, but its binaries (/usr/lib/postgresql/$v/bin) are not installed. Install postgresql-$v, or '$SELF down --purge' to start afresh."
            return 1
        fi
    elif [[ -n $STACK_PG_BIN ]]; then
        [[ -x $STACK_PG_BIN/initdb ]] || {
            log "STACK_PG_BIN=$STACK_PG_BIN has no initdb; point it at a PostgreSQL bin directory."
            return 1
        }
        PG_BIN=$STACK_PG_BIN
    else
        PG_BIN=$(pg_installed_bins | tail -n 1) || {
            log "no PostgreSQL server found in /usr/lib/postgresql/*/bin; run '$SELF up' as root to install it."
            return 1
        }
    fi
}

# Runs a PostgreSQL server program as the cluster owner: the 'postgres'
# system user when we are root (initdb and pg_ctl refuse root), else ourselves.
pg_run() {
    if is_root; then
        (cd / && runuser -u "$PG_SUPERUSER" -- "$@")
    else
        "$@"
    fi
}

pg_initialised() { [[ -f $PG_DATA/PG_VERSION ]]; }

pg_running() {
    pg_initialised && pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1 &&
        pid_alive "$(pg_pid)"
}

# Line 1 of postmaster.pid is the pid, line 4 the port.
# Both print nothing if there is no postmaster.pid.
pg_pid() { sed -n 1p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

pg_ready() { "$PG_BIN/pg_isready" -q -h "$STACK_HOST" -p "$STACK_PG_PORT" -d postgres; }

pg_psql() {
    "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$STACK_PG_PORT" \
        -U "$PG_SUPERUSER" -d postgres "$@"
}

pg_prepare_dirs() {
    install -d -m 0700 "$STACK_DIR/postgres"
    touch "$PG_LOG"
    if is_root; then
        id -u "$PG_SUPERUSER" >/dev/null 2>&1 ||
            die "system user '$PG_SUPERUSER' does not exist; it comes with the Debian postgresql package (apt-get install postgresql)."
        # The server creates its socket and lock file in $RUN_DIR and appends to its log.
        chown "$PG_SUPERUSER:" "$STACK_DIR/postgres" "$RUN_DIR" "$PG_LOG"
        pg_run test -w "$STACK_DIR/postgres" -a -w "$RUN_DIR" -a -w "$PG_LOG" ||
            die "the '$PG_SUPERUSER' system user cannot write under $STACK_DIR (a parent directory is probably not searchable by others). Set STACK_DIR to a directory it can reach, e.g. /var/tmp/results-stack."
    fi
}

pg_initdb() {
    if [[ -d $PG_DATA ]] && [[ -n $(ls -A "$PG_DATA") ]]; then
        die "$PG_DATA is not empty but holds no PostgreSQL cluster (no PG_VERSION). Move it away or run '$SELF down --purge'."
    fi
    local initlog=$LOG_DIR/initdb.log
    log "postgres: creating cluster in $PG_DATA with $PG_BIN/initdb (output: $initlog)"
    local args=(-D "$PG_DATA" -U "$PG_SUPERUSER" --auth-local=trust --auth-host=scram-sha-256 -E UTF8)
    if ! pg_run "$PG_BIN/initdb" "${args[@]}" --locale=C.UTF-8 >>"$initlog" 2>&1; then
        warn "initdb --locale=C.UTF-8 failed (see $initlog); retrying with --no-locale"
        rm -rf -- "$PG_DATA"
        pg_run "$PG_BIN/initdb" "${args[@]}" --no-locale >>"$initlog" 2>&1 ||
            die "initdb failed; read $initlog"
    fi
    cat >>"$PG_DATA/postgresql.conf" <<'EOF'

# Added by scripts/stack.sh: project settings (from postgres/postgresql.conf)
# and per-instance settings (from the STACK_* variables), rewritten at every
# start of the cluster.
include 'stack.conf'
EOF
}

# (Re)written before every start, so changes to postgres/postgresql.conf or
# the STACK_* variables apply at the next `down` + `up`.
pg_write_config() {
    local conf=$PG_DATA/stack.conf hba=$PG_DATA/pg_hba.conf
    {
        echo "# Generated by $SELF at every start. Do not edit: change"
        echo "# postgres/postgresql.conf or the STACK_* variables instead."
        echo
        echo "# ---- project settings: $PG_PROJECT_CONF"
        cat "$PG_PROJECT_CONF"
        echo
        echo "# ---- per-instance settings (STACK_HOST, STACK_PG_PORT, STACK_DIR)"
        echo "listen_addresses = $(conf_quote "$STACK_HOST")"
        echo "port = $STACK_PG_PORT"
        echo "unix_socket_directories = $(conf_quote "$RUN_DIR")"
        echo "# The log goes to stderr, which pg_ctl -l sends to $PG_LOG."
        echo "logging_collector = off"
    } >"$conf"
    {
        echo "# Generated by $SELF at every start. Do not edit."
        echo "# Unix socket (only in $RUN_DIR): trusted. TCP (loopback only): SCRAM password."
        echo "# TYPE  DATABASE     USER  ADDRESS        METHOD"
        echo "local   all          all                  trust"
        echo "local   replication  all                  trust"
        echo "host    all          all   127.0.0.1/32   scram-sha-256"
        echo "host    all          all   ::1/128        scram-sha-256"
        if [[ $STACK_HOST != 127.0.0.1 && $STACK_HOST != ::1 ]]; then
            echo "host    all          all   $STACK_HOST/32   scram-sha-256"
        fi
        echo "# TCP replication (the read replica, pg_replica): its own role, SCRAM password."
        pg_replica_hba
    } >"$hba"
    chmod 0600 "$conf" "$hba"
    if is_root; then chown "$PG_SUPERUSER:" "$conf" "$hba"; fi
}

# Idempotent: creates the role and database if missing; (re)applies the
# password, LOGIN CREATEDB and the database owner every time.
pg_ensure_role_db() {
    local esc_u esc_pw esc_db out
    esc_u=$(psql_meta_quote "$STACK_PG_USER")
    esc_pw=$(psql_meta_quote "$STACK_PG_PASSWORD")
    esc_db=$(psql_meta_quote "$STACK_PG_DB")
    # Values go in via stdin (\set), so the password never shows up in `ps`.
    out=$(pg_psql 9>&- <<SQL
\\set u $esc_u
\\set pw $esc_pw
\\set db $esc_db
SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u'),
       EXISTS (SELECT FROM pg_database WHERE datname = :'db');
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', :'u')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN CREATEDB PASSWORD %L', :'u', :'pw') \\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'u')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'u') \\gexec
SQL
    ) || die "could not create role '$STACK_PG_USER' / database '$STACK_PG_DB'; see the psql error above and $PG_LOG."
    case $out in
    t\|t) log "postgres: role '$STACK_PG_USER' and database '$STACK_PG_DB' exist (password re-applied)" ;;
    t\|f) log "postgres: created database '$STACK_PG_DB' owned by existing role '$STACK_PG_USER'" ;;
    f\|t) log "postgres: created role '$STACK_PG_USER' (LOGIN CREATEDB); database '$STACK_PG_DB' existed, now owned by it" ;;
    *) log "postgres: created role '$STACK_PG_USER' (LOGIN CREATEDB) and database '$STACK_PG_DB'" ;;
    esac
}

# Single-quoted argument for a psql meta-command such as \set.
psql_meta_quote() {
    local s=${1//\\/\\\\}
    printf "'%s'" "${s//\'/\'\'}"
}

# Fails if our port is taken by something that is not our running cluster.
pg_check_port() {
    pg_running && return 0
    if port_in_use "$STACK_HOST" "$STACK_PG_PORT"; then
        die "port $STACK_PG_PORT on $STACK_HOST is already in use by another process (not this stack's PostgreSQL in $PG_DATA). Set STACK_PG_PORT to a free port."
    fi
}

pg_preflight() {
    pg_resolve_bin || die "cannot find the PostgreSQL binaries (see above)."
    pg_check_port
}

pg_up() {
    pg_resolve_bin || die "cannot find the PostgreSQL binaries (see above)."
    if pg_running; then
        local port
        port=$(pg_running_port)
        [[ $port == "$STACK_PG_PORT" ]] ||
            die "our PostgreSQL ($PG_DATA) already runs on port $port, not STACK_PG_PORT=$STACK_PG_PORT. Run '$SELF down' first, or set STACK_PG_PORT=$port."
        log "postgres: already running (pid $(pg_pid), $(url_host "$STACK_HOST"):$port)"
    else
        pg_check_port
        pg_prepare_dirs
        # After a crash: let init reap a zombie postmaster, or the new one
        # refuses to start because postmaster.pid names a "live" process.
        local old
        old=$(pg_pid)
        if [[ -n $old ]] && ! wait_for "$STACK_TIMEOUT" not_zombie "$old"; then
            die "a dead PostgreSQL (pid $old) still holds $PG_DATA/postmaster.pid; wait a moment and retry."
        fi
        pg_initialised || pg_initdb
        pg_write_config
        log "postgres: starting $PG_BIN/postgres on $(url_host "$STACK_HOST"):$STACK_PG_PORT (log: $PG_LOG)"
        if ! pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$STACK_TIMEOUT" start >/dev/null 9>&-; then
            show_log_tail "$PG_LOG"
            die "PostgreSQL did not start within ${STACK_TIMEOUT}s. Read $PG_LOG."
        fi
    fi
    if ! wait_for "$STACK_TIMEOUT" pg_ready; then
        show_log_tail "$PG_LOG"
        die "PostgreSQL does not accept TCP connections on $(url_host "$STACK_HOST"):$STACK_PG_PORT after ${STACK_TIMEOUT}s. Read $PG_LOG."
    fi
    pg_ensure_role_db
}

pg_down() {
    if ! pg_initialised; then
        log "postgres: no cluster in $PG_DATA; nothing to stop"
        return 0
    fi
    pg_resolve_bin || die "cannot find the PostgreSQL binaries to stop $PG_DATA (see above)."
    if ! pg_running; then
        log "postgres: already stopped"
        return 0
    fi
    log "postgres: stopping (pid $(pg_pid))"
    pg_run "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t "$STACK_TIMEOUT" stop >/dev/null ||
        die "PostgreSQL did not stop within ${STACK_TIMEOUT}s. Read $PG_LOG; retry '$SELF down'."
    log "postgres: stopped"
}

pg_status() {
    local state=stopped pid=- port=$STACK_PG_PORT extra='' rc=1
    if pg_initialised && pg_resolve_bin 2>/dev/null && pg_running; then
        pid=$(pg_pid)
        port=$(pg_running_port)
        if [[ $port == "$STACK_PG_PORT" ]] && pg_ready; then
            state=running rc=0
            extra="databases=$(pg_psql -c 'SELECT count(*) FROM pg_database WHERE NOT datistemplate' 2>/dev/null || echo '?')"
        elif [[ $port != "$STACK_PG_PORT" ]]; then
            state=not-ready extra="(running on port $port, not STACK_PG_PORT=$STACK_PG_PORT)"
        else
            state=not-ready extra="(not accepting TCP connections; read $PG_LOG)"
        fi
    elif ! pg_initialised; then
        extra='(no cluster yet)'
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' postgres "$state" "$pid" "$(url_host "$STACK_HOST")" "$port" "$extra"
    return "$rc"
}

# --- PostgreSQL read replica (opt-in: pg_replica in STACK_SERVICES) -------------
# A real streaming standby of our PostgreSQL ("the primary"): cloned with
# pg_basebackup -R into $PG_REPLICA_DATA over a TCP replication connection
# (role $PG_REPLICATION_USER, SCRAM, its password in a 0600 passfile), then
# started on STACK_PG_REPLICA_PORT with the primary's binaries, the project
# settings and the same socket directory. Read-only: roles, databases and data
# all come from the primary. The API replicas read it first when it runs
# (DATABASE_REPLICA_URLS). No replication slot: a replica stopped for long can
# fall behind the WAL the primary keeps; then delete $PG_REPLICA_DATA (or
# 'down --purge') and 'up' clones it afresh.
PG_REPLICATION_USER=results_replicator
PG_REPLICATION_PASSWORD=replication-local-only # LOCAL-ONLY default, not a secret

# Port and paths; called by load_config before the port overlap checks.
load_pg_replica_config() {
    STACK_PG_REPLICA_PORT=${STACK_PG_REPLICA_PORT:-$DEFAULT_STACK_PG_REPLICA_PORT}
    is_port "$STACK_PG_REPLICA_PORT" ||
        die "STACK_PG_REPLICA_PORT='$STACK_PG_REPLICA_PORT' is not a TCP port number (1-65535)."
    PG_REPLICA_DATA=$STACK_DIR/postgres/replica
    PG_REPLICA_LOG=$STACK_DIR/log/postgres-replica.log
    PG_REPLICA_PASSFILE=$STACK_DIR/postgres/replication.pgpass
}

# The primary's pg_hba.conf lines that let the replica stream (pg_write_config).
pg_replica_hba() {
    local addr
    for addr in 127.0.0.1/32 ::1/128; do
        printf 'host    replication  %s  %s  scram-sha-256\n' "$PG_REPLICATION_USER" "$addr"
    done
    if [[ $STACK_HOST != 127.0.0.1 && $STACK_HOST != ::1 ]]; then
        printf 'host    replication  %s  %s/32  scram-sha-256\n' "$PG_REPLICATION_USER" "$STACK_HOST"
    fi
}

pg_replica_url() {
    printf 'postgres://%s:%s@%s:%s/%s' "$(url_encode "$STACK_PG_USER")" \
        "$(url_encode "$STACK_PG_PASSWORD")" "$(url_host "$STACK_HOST")" \
        "$STACK_PG_REPLICA_PORT" "$(url_encode "$STACK_PG_DB")"
}

pg_replica_initialised() { [[ -f $PG_REPLICA_DATA/PG_VERSION ]]; }
pg_replica_pid() { sed -n 1p "$PG_REPLICA_DATA/postmaster.pid" 2>/dev/null || true; }
pg_replica_running_port() { sed -n 4p "$PG_REPLICA_DATA/postmaster.pid" 2>/dev/null || true; }

pg_replica_running() {
    pg_replica_initialised && pg_run "$PG_BIN/pg_ctl" -D "$PG_REPLICA_DATA" status >/dev/null 2>&1 &&
        pid_alive "$(pg_replica_pid)"
}

pg_replica_psql() {
    "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$RUN_DIR" -p "$STACK_PG_REPLICA_PORT" \
        -U "$PG_SUPERUSER" -d postgres "$@"
}

# In recovery (a standby) and its WAL receiver streams from the primary.
pg_replica_streaming() {
    [[ $(pg_replica_psql -c "SELECT pg_is_in_recovery() AND EXISTS
        (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')" 2>/dev/null) == t ]]
}

# The running primary, ready to serve a replica: wal_level, the replication
# role (password re-applied) and its pg_hba.conf lines (added and reloaded if
# the primary was started before they existed).
pg_replica_prepare_primary() {
    if ! { pg_running && [[ $(pg_running_port) == "$STACK_PG_PORT" ]] && pg_ready; }; then
        die "pg_replica streams from this stack's PostgreSQL, which does not run on port $STACK_PG_PORT: start it too (STACK_SERVICES=\"pg pg_replica ...\")."
    fi
    local level
    level=$(pg_psql -c 'SHOW wal_level')
    [[ $level == replica || $level == logical ]] ||
        die "the primary runs with wal_level=$level, too little for a streaming replica: set wal_level = replica in postgres/postgresql.conf, then '$SELF down' and '$SELF up'."
    pg_psql 9>&- <<SQL || die "could not create the replication role '$PG_REPLICATION_USER'; read $PG_LOG."
\\set u $(psql_meta_quote "$PG_REPLICATION_USER")
\\set pw $(psql_meta_quote "$PG_REPLICATION_PASSWORD")
SET password_encryption = 'scram-sha-256';
SELECT format('CREATE ROLE %I', :'u')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN REPLICATION PASSWORD %L', :'u', :'pw') \\gexec
SQL
    if ! grep -q "replication  $PG_REPLICATION_USER " "$PG_DATA/pg_hba.conf"; then
        log "pg_replica: allowing replication connections on the primary (pg_hba.conf, reload)"
        pg_replica_hba >>"$PG_DATA/pg_hba.conf"
        pg_psql -c 'SELECT pg_reload_conf()' >/dev/null
    fi
}

# Clones the primary into $PG_REPLICA_DATA (pg_basebackup -R: standby.signal
# and primary_conninfo), then gives it its own per-instance settings.
pg_replica_clone() {
    local clonelog=$LOG_DIR/pg_basebackup.log
    (umask 077 && printf '*:*:*:%s:%s\n' "$PG_REPLICATION_USER" "$PG_REPLICATION_PASSWORD" >"$PG_REPLICA_PASSFILE")
    if is_root; then chown "$PG_SUPERUSER:" "$PG_REPLICA_PASSFILE"; fi
    log "pg_replica: cloning the primary into $PG_REPLICA_DATA (pg_basebackup -R; output: $clonelog)"
    if ! pg_run "$PG_BIN/pg_basebackup" -D "$PG_REPLICA_DATA" -R -X stream -c fast \
        -d "host=$STACK_HOST port=$STACK_PG_PORT user=$PG_REPLICATION_USER passfile=$PG_REPLICA_PASSFILE application_name=stack_pg_replica" \
        >>"$clonelog" 2>&1 9>&-; then
        show_log_tail "$clonelog"
        rm -rf -- "$PG_REPLICA_DATA"
        die "pg_basebackup failed; read $clonelog and $PG_LOG."
    fi
    pg_replica_write_config
}

# The replica's stack.conf and pg_hba.conf: pg_write_config's, with the
# replica's data directory and port (the clone carries the primary's).
pg_replica_write_config() {
    local PG_DATA=$PG_REPLICA_DATA STACK_PG_PORT=$STACK_PG_REPLICA_PORT
    pg_write_config
}

# A replica cloned from another cluster (the primary was purged and created
# anew) can never stream from this one: its data directory is ours to redo.
pg_replica_matches_primary() {
    local ours theirs
    ours=$(pg_run "$PG_BIN/pg_controldata" -D "$PG_REPLICA_DATA" 2>/dev/null |
        sed -n 's/^Database system identifier: *//p')
    theirs=$(pg_psql -c 'SELECT system_identifier FROM pg_control_system()')
    [[ -n $ours && $ours == "$theirs" ]]
}

pg_replica_check_port() {
    pg_replica_running && return 0
    if port_in_use "$STACK_HOST" "$STACK_PG_REPLICA_PORT"; then
        die "port $STACK_PG_REPLICA_PORT on $STACK_HOST is already in use by another process (not this stack's replica in $PG_REPLICA_DATA). Set STACK_PG_REPLICA_PORT to a free port."
    fi
}

pg_replica_preflight() {
    pg_resolve_bin || die "cannot find the PostgreSQL binaries (see above)."
    [[ -x $PG_BIN/pg_basebackup ]] || die "$PG_BIN/pg_basebackup is missing (it comes with the postgresql package)."
    if [[ " ${SELECTED[*]} " != *" pg "* ]] && ! pg_running; then
        die "pg_replica streams from this stack's PostgreSQL, which does not run: add pg to STACK_SERVICES (STACK_SERVICES=\"pg pg_replica ...\")."
    fi
    pg_replica_check_port
}

pg_replica_up() {
    pg_resolve_bin || die "cannot find the PostgreSQL binaries (see above)."
    if pg_replica_running; then
        local port
        port=$(pg_replica_running_port)
        [[ $port == "$STACK_PG_REPLICA_PORT" ]] ||
            die "our PostgreSQL replica ($PG_REPLICA_DATA) already runs on port $port, not STACK_PG_REPLICA_PORT=$STACK_PG_REPLICA_PORT. Run '$SELF down' first, or set STACK_PG_REPLICA_PORT=$port."
        log "pg_replica: already running (pid $(pg_replica_pid), $(url_host "$STACK_HOST"):$port)"
    else
        pg_replica_check_port
        pg_replica_prepare_primary
        touch "$PG_REPLICA_LOG"
        if is_root; then chown "$PG_SUPERUSER:" "$PG_REPLICA_LOG"; fi
        if pg_replica_initialised && ! pg_replica_matches_primary; then
            log "pg_replica: $PG_REPLICA_DATA was cloned from another cluster; cloning afresh"
            rm -rf -- "$PG_REPLICA_DATA"
        fi
        if pg_replica_initialised; then
            pg_replica_write_config
        else
            pg_replica_clone
        fi
        log "pg_replica: starting a streaming replica on $(url_host "$STACK_HOST"):$STACK_PG_REPLICA_PORT (log: $PG_REPLICA_LOG)"
        if ! pg_run "$PG_BIN/pg_ctl" -D "$PG_REPLICA_DATA" -l "$PG_REPLICA_LOG" -w -t "$STACK_TIMEOUT" start >/dev/null 9>&-; then
            show_log_tail "$PG_REPLICA_LOG"
            die "the PostgreSQL replica did not start within ${STACK_TIMEOUT}s. Read $PG_REPLICA_LOG."
        fi
    fi
    if ! wait_for "$STACK_TIMEOUT" pg_replica_streaming; then
        show_log_tail "$PG_REPLICA_LOG"
        die "the PostgreSQL replica is not streaming from the primary after ${STACK_TIMEOUT}s. Read $PG_REPLICA_LOG; if it fell behind the primary's WAL, '$SELF down', delete $PG_REPLICA_DATA and '$SELF up' again."
    fi
    log "pg_replica: in recovery and streaming from $(url_host "$STACK_HOST"):$STACK_PG_PORT"
}

pg_replica_down() {
    if ! pg_replica_initialised; then
        return 0 # opt-in: nothing to say when there never was one
    fi
    pg_resolve_bin || die "cannot find the PostgreSQL binaries to stop $PG_REPLICA_DATA (see above)."
    if ! pg_replica_running; then
        log "pg_replica: already stopped"
        return 0
    fi
    log "pg_replica: stopping (pid $(pg_replica_pid))"
    pg_run "$PG_BIN/pg_ctl" -D "$PG_REPLICA_DATA" -m fast -w -t "$STACK_TIMEOUT" stop >/dev/null ||
        die "the PostgreSQL replica did not stop within ${STACK_TIMEOUT}s. Read $PG_REPLICA_LOG; retry '$SELF down'."
    log "pg_replica: stopped"
}

pg_replica_status() {
    local state=stopped pid=- port=$STACK_PG_REPLICA_PORT extra='' rc=1
    if pg_replica_initialised && pg_resolve_bin 2>/dev/null && pg_replica_running; then
        pid=$(pg_replica_pid)
        port=$(pg_replica_running_port)
        if [[ $port != "$STACK_PG_REPLICA_PORT" ]]; then
            state=not-ready extra="(running on port $port, not STACK_PG_REPLICA_PORT=$STACK_PG_REPLICA_PORT)"
        elif pg_replica_streaming; then
            state=running rc=0 extra="streaming from :$STACK_PG_PORT"
        else
            state=not-ready extra="(not streaming from the primary; read $PG_REPLICA_LOG)"
        fi
    elif ! pg_replica_initialised; then
        extra='(opt-in: STACK_SERVICES="pg pg_replica ...")'
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' pg_replica "$state" "$pid" "$(url_host "$STACK_HOST")" "$port" "$extra"
    return "$rc"
}

# DATABASE_REPLICA_URLS for the API when our replica runs (else nothing).
pg_replica_urls() {
    if pg_replica_initialised && pg_resolve_bin 2>/dev/null && pg_replica_running; then pg_replica_url; fi
}

# --- Redis -------------------------------------------------------------------
redis_cli() { redis-cli -h "$STACK_HOST" -p "$STACK_REDIS_PORT" "$@"; }

redis_ping() { [[ $(redis_cli ping 2>/dev/null) == PONG ]]; }

redis_info_field() { redis_cli info "$1" 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

# Pid of OUR redis-server: from our pid file, alive, a redis-server, and
# working in our $REDIS_DIR (it chdirs to --dir). Fails otherwise.
redis_pid() {
    local pid
    [[ -f $REDIS_PIDFILE ]] || return 1
    pid=$(<"$REDIS_PIDFILE")
    pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    [[ /proc/$pid/cwd -ef $REDIS_DIR ]] || return 1
    echo "$pid"
}

# Our redis answers on the configured port (and not some other redis).
redis_ours_ready() {
    local pid=$1
    redis_ping && [[ $(redis_info_field server process_id) == "$pid" ]]
}

# Fails if our port is taken by something that is not our running Redis.
redis_check_port() {
    redis_pid >/dev/null && return 0
    if port_in_use "$STACK_HOST" "$STACK_REDIS_PORT"; then
        die "port $STACK_REDIS_PORT on $STACK_HOST is already in use by another process (not this stack's Redis). Set STACK_REDIS_PORT to a free port."
    fi
}

redis_preflight() { redis_check_port; }

redis_up() {
    local pid out
    if pid=$(redis_pid); then
        redis_ours_ready "$pid" ||
            die "our Redis (pid $pid, $REDIS_DIR) runs but does not answer on $(url_host "$STACK_HOST"):$STACK_REDIS_PORT; was it started with another STACK_REDIS_PORT/STACK_HOST? Run '$SELF down' and '$SELF up' again (read $REDIS_LOG)."
        log "redis: already running (pid $pid, $(url_host "$STACK_HOST"):$STACK_REDIS_PORT)"
        return 0
    fi
    rm -f -- "$REDIS_PIDFILE" # stale, if any
    redis_check_port
    install -d -m 0755 "$REDIS_DIR"
    log "redis: starting on $(url_host "$STACK_HOST"):$STACK_REDIS_PORT with $REDIS_CONF (log: $REDIS_LOG)"
    out=$(redis-server "$REDIS_CONF" --port "$STACK_REDIS_PORT" --bind "$STACK_HOST" \
        --dir "$REDIS_DIR" --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" \
        --daemonize yes 2>&1 9>&-) || {
        printf '%s\n' "$out" >&2
        show_log_tail "$REDIS_LOG"
        die "redis-server failed to start (see above). Read $REDIS_LOG and check $REDIS_CONF."
    }
    if ! wait_for "$STACK_TIMEOUT" redis_ping || ! wait_for 5 redis_pid; then
        show_log_tail "$REDIS_LOG"
        die "Redis did not answer on $(url_host "$STACK_HOST"):$STACK_REDIS_PORT within ${STACK_TIMEOUT}s. Read $REDIS_LOG."
    fi
}

redis_down() {
    local pid out=''
    if ! pid=$(redis_pid); then
        rm -f -- "$REDIS_PIDFILE" 2>/dev/null || true
        log "redis: already stopped"
        return 0
    fi
    log "redis: stopping (pid $pid; saving snapshot to $REDIS_DIR/dump.rdb)"
    if redis_ours_ready "$pid"; then
        out=$(redis_cli shutdown 2>&1) || true
    else
        # Not answering on the configured port: SIGTERM also saves the snapshot.
        kill -TERM "$pid"
    fi
    if ! wait_for "$STACK_TIMEOUT" pid_gone "$pid"; then
        [[ -z $out ]] || printf '%s\n' "$out" >&2
        show_log_tail "$REDIS_LOG"
        die "Redis (pid $pid) did not stop within ${STACK_TIMEOUT}s. Read $REDIS_LOG; if the snapshot cannot be saved, stop it without saving: redis-cli -h $STACK_HOST -p $STACK_REDIS_PORT shutdown nosave"
    fi
    log "redis: stopped"
}

redis_status() {
    local state=stopped pid=- extra='' rc=1
    if pid=$(redis_pid); then
        if redis_ours_ready "$pid"; then
            state=running rc=0
            extra="used_memory=$(redis_info_field memory used_memory_human)"
        else
            state=not-ready extra="(not answering on this port: started with another STACK_HOST/STACK_REDIS_PORT?)"
        fi
    else
        pid=-
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' redis "$state" "$pid" "$(url_host "$STACK_HOST")" "$STACK_REDIS_PORT" "$extra"
    return "$rc"
}

# --- Redis Cluster (opt-in service redis_cluster) ---------------------------------
# Six redis-server nodes, three masters and a replica of each, on STACK_REDIS_CLUSTER_PORT..+5
# with their cluster bus on STACK_REDIS_CLUSTER_BUS_PORT..+5. Each runs redis/redis.conf plus
# the cluster settings below, with its data and nodes.conf in $REDIS_CLUSTER_DIR/PORT, its pid
# file $RUN_DIR/redis-cluster-PORT.pid and its log $LOG_DIR/redis-cluster-PORT.log. The first
# 'up' creates the cluster (redis-cli --cluster create); later ones restart the nodes, which
# rejoin from their nodes.conf (roles as the last failover left them). The stack's clients (API
# replicas, 'env', the redis exporter) use it instead of the single Redis when STACK_SERVICES
# names redis_cluster, or names no Redis while only the cluster runs (see clients_redis_url).
REDIS_CLUSTER_NODES=6

redis_cluster_load_config() {
    STACK_REDIS_CLUSTER_PORT=${STACK_REDIS_CLUSTER_PORT:-$DEFAULT_STACK_REDIS_CLUSTER_PORT}
    STACK_REDIS_CLUSTER_BUS_PORT=${STACK_REDIS_CLUSTER_BUS_PORT:-$DEFAULT_STACK_REDIS_CLUSTER_BUS_PORT}
    STACK_REDIS_CLUSTER_NODE_TIMEOUT=${STACK_REDIS_CLUSTER_NODE_TIMEOUT:-$DEFAULT_STACK_REDIS_CLUSTER_NODE_TIMEOUT}
    local var port i
    for var in STACK_REDIS_CLUSTER_PORT STACK_REDIS_CLUSTER_BUS_PORT; do
        if ! is_port "${!var}" || ((10#${!var} + REDIS_CLUSTER_NODES - 1 > 65535)); then
            die "$var='${!var}' must be a TCP port number with the $((REDIS_CLUSTER_NODES - 1)) after it free for the other nodes (at most $((65536 - REDIS_CLUSTER_NODES)))."
        fi
    done
    [[ $STACK_REDIS_CLUSTER_NODE_TIMEOUT =~ ^[1-9][0-9]{2,}$ ]] ||
        die "STACK_REDIS_CLUSTER_NODE_TIMEOUT='$STACK_REDIS_CLUSTER_NODE_TIMEOUT' must be a number of milliseconds, at least 100."
    # The nodes' and bus ports must not overlap each other or the single services' ports.
    local -A owner=([$((10#$STACK_PG_PORT))]=STACK_PG_PORT [$((10#$STACK_REDIS_PORT))]=STACK_REDIS_PORT)
    for var in STACK_REDIS_CLUSTER_PORT STACK_REDIS_CLUSTER_BUS_PORT; do
        for ((i = 0; i < REDIS_CLUSTER_NODES; i++)); do
            port=$((10#${!var} + i))
            [[ -z ${owner[$port]:-} ]] ||
                die "port $port is wanted by both ${owner[$port]} and $var (+$i). Choose STACK_REDIS_CLUSTER_PORT and STACK_REDIS_CLUSTER_BUS_PORT so that each has $REDIS_CLUSTER_NODES free ports of its own."
            owner[$port]=$var
        done
    done
    if [[ " ${SELECTED[*]} " == *" redis "* && " ${SELECTED[*]} " == *" redis_cluster "* ]]; then
        die "STACK_SERVICES names both redis and redis_cluster, but the API replicas use one Redis. Name one of them."
    fi
    REDIS_CLUSTER_DIR=$STACK_DIR/redis-cluster
}

# The URL the stack's clients use: the cluster's when STACK_SERVICES names redis_cluster, or
# names no Redis (e.g. STACK_SERVICES=api2) while our cluster runs and our single Redis does
# not; the single Redis' otherwise.
clients_redis_url() {
    if redis_cluster_in_use; then
        printf 'redis-cluster://%s:%s' "$(url_host "$STACK_HOST")" "$STACK_REDIS_CLUSTER_PORT"
    else
        redis_url
    fi
}

redis_cluster_in_use() {
    case " ${SELECTED[*]} " in
    *" redis_cluster "*) return 0 ;;
    *" redis "*) return 1 ;;
    esac
    ! redis_pid >/dev/null && (($(redis_cluster_running_count) > 0))
}

# The exporter reads one node: the cluster's first (its own metrics), else the single Redis.
exporter_redis_url() {
    if redis_cluster_in_use; then
        printf 'redis://%s:%s' "$(url_host "$STACK_HOST")" "$STACK_REDIS_CLUSTER_PORT"
    else
        redis_url
    fi
}

redis_cluster_ports() {
    local i
    for ((i = 0; i < REDIS_CLUSTER_NODES; i++)); do echo $((10#$STACK_REDIS_CLUSTER_PORT + i)); done
}
redis_cluster_bus_port() { echo $((10#$STACK_REDIS_CLUSTER_BUS_PORT + $1 - 10#$STACK_REDIS_CLUSTER_PORT)); }
redis_cluster_node_dir() { printf '%s/%s' "$REDIS_CLUSTER_DIR" "$1"; }
redis_cluster_pidfile() { printf '%s/redis-cluster-%s.pid' "$RUN_DIR" "$1"; }
redis_cluster_logfile() { printf '%s/redis-cluster-%s.log' "$LOG_DIR" "$1"; }
redis_cluster_cli() {
    local port=$1
    shift
    redis-cli -h "$STACK_HOST" -p "$port" "$@"
}
# Field $2 of node $1's CLUSTER INFO (empty when it does not answer).
redis_cluster_info_field() { redis_cluster_cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

# Pid of OUR node on port $1: from its pid file, alive, a redis-server working in the node's
# folder (it chdirs to --dir). Fails otherwise.
redis_cluster_pid() {
    local pidfile pid
    pidfile=$(redis_cluster_pidfile "$1")
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server* ]] || return 1
    [[ /proc/$pid/cwd -ef $(redis_cluster_node_dir "$1") ]] || return 1
    echo "$pid"
}

redis_cluster_running_count() {
    local port n=0
    for port in $(redis_cluster_ports); do
        if redis_cluster_pid "$port" >/dev/null; then n=$((n + 1)); fi
    done
    echo "$n"
}

# Node $1 answers on its port as the process of its pid file.
redis_cluster_node_ready() {
    local pid
    pid=$(redis_cluster_pid "$1") || return 1
    [[ $(redis_cluster_cli "$1" info server 2>/dev/null | tr -d '\r' | sed -n 's/^process_id://p') == "$pid" ]]
}

# Every node sees every slot served (cluster_state:ok, 16384 slots assigned) and the whole
# topology: as many masters as replicas, none failing. Right after `--cluster create` a node can
# still see a replica as a master without slots (a test once read four masters there).
redis_cluster_healthy() {
    local port roles half=$((REDIS_CLUSTER_NODES / 2))
    for port in $(redis_cluster_ports); do
        [[ $(redis_cluster_info_field "$port" cluster_state) == ok &&
            $(redis_cluster_info_field "$port" cluster_slots_assigned) == 16384 ]] || return 1
        roles=$(redis_cluster_cli "$port" cluster nodes 2>/dev/null | awk '
            $3 ~ /fail/ { failing++; next } $3 ~ /master/ { m++ } $3 ~ /slave/ { r++ }
            END { printf "%d %d %d", m, r, failing }')
        [[ $roles == "$half $half 0" ]] || return 1
    done
}

redis_cluster_check_ports() {
    local port bus
    for port in $(redis_cluster_ports); do
        redis_cluster_pid "$port" >/dev/null && continue
        bus=$(redis_cluster_bus_port "$port")
        if port_in_use "$STACK_HOST" "$port"; then
            die "port $port on $STACK_HOST (a Redis Cluster node, STACK_REDIS_CLUSTER_PORT..+$((REDIS_CLUSTER_NODES - 1))) is already in use by another process. Set STACK_REDIS_CLUSTER_PORT to the first of $REDIS_CLUSTER_NODES free ports."
        fi
        if port_in_use "$STACK_HOST" "$bus"; then
            die "port $bus on $STACK_HOST (a Redis Cluster bus port, STACK_REDIS_CLUSTER_BUS_PORT..+$((REDIS_CLUSTER_NODES - 1))) is already in use by another process. Set STACK_REDIS_CLUSTER_BUS_PORT to the first of $REDIS_CLUSTER_NODES free ports."
        fi
    done
}

redis_cluster_preflight() {
    redis_cluster_check_ports
    redis_cluster_check_layout
}

# A cluster once created keeps its nodes' addresses in their nodes.conf: refuse other ports.
redis_cluster_check_layout() {
    local want have
    want="$STACK_HOST $STACK_REDIS_CLUSTER_PORT $STACK_REDIS_CLUSTER_BUS_PORT"
    [[ -f $REDIS_CLUSTER_DIR/layout ]] || return 0
    have=$(<"$REDIS_CLUSTER_DIR/layout")
    [[ $have == "$want" ]] ||
        die "the Redis Cluster in $REDIS_CLUSTER_DIR was created as '$have' (STACK_HOST, STACK_REDIS_CLUSTER_PORT, STACK_REDIS_CLUSTER_BUS_PORT), not '$want'. Set them back, or '$SELF down --purge' to start afresh."
}

redis_cluster_start_node() {
    local port=$1 dir pidfile logfile out
    dir=$(redis_cluster_node_dir "$port")
    pidfile=$(redis_cluster_pidfile "$port")
    logfile=$(redis_cluster_logfile "$port")
    rm -f -- "$pidfile" # stale, if any
    install -d -m 0755 "$dir"
    out=$(redis-server "$REDIS_CONF" --port "$port" --bind "$STACK_HOST" --dir "$dir" \
        --pidfile "$pidfile" --logfile "$logfile" --daemonize yes \
        --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port "$(redis_cluster_bus_port "$port")" \
        --cluster-node-timeout "$STACK_REDIS_CLUSTER_NODE_TIMEOUT" 2>&1 9>&-) || {
        printf '%s\n' "$out" >&2
        show_log_tail "$logfile"
        die "redis-server (cluster node $port) failed to start (see above). Read $logfile."
    }
}

redis_cluster_up() {
    local port started=() addrs=() assigned known out
    redis_cluster_check_layout
    redis_cluster_check_ports
    for port in $(redis_cluster_ports); do
        if redis_cluster_pid "$port" >/dev/null; then continue; fi
        redis_cluster_start_node "$port"
        started+=("$port")
    done
    for port in $(redis_cluster_ports); do
        if ! wait_for "$STACK_TIMEOUT" redis_cluster_node_ready "$port"; then
            show_log_tail "$(redis_cluster_logfile "$port")"
            die "Redis Cluster node $port did not answer on $(url_host "$STACK_HOST"):$port within ${STACK_TIMEOUT}s. Read $(redis_cluster_logfile "$port")."
        fi
        addrs+=("$(url_host "$STACK_HOST"):$port")
    done
    ((${#started[@]} == 0)) || log "redis_cluster: started node(s) ${started[*]} (node timeout ${STACK_REDIS_CLUSTER_NODE_TIMEOUT} ms; logs: $LOG_DIR/redis-cluster-PORT.log)"
    assigned=$(redis_cluster_info_field "$STACK_REDIS_CLUSTER_PORT" cluster_slots_assigned)
    known=$(redis_cluster_info_field "$STACK_REDIS_CLUSTER_PORT" cluster_known_nodes)
    if [[ ! -f $REDIS_CLUSTER_DIR/layout ]]; then
        [[ $assigned == 0 && $known == 1 ]] ||
            die "the Redis Cluster nodes in $REDIS_CLUSTER_DIR hold a cluster this script did not finish creating (slots assigned: ${assigned:-?}, nodes known: ${known:-?}). '$SELF down --purge' and 'up' again."
        log "redis_cluster: creating the cluster: three masters with a replica each (redis-cli --cluster create)"
        out=$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes 2>&1 9>&-) || {
            printf '%s\n' "$out" | tail -n 15 >&2
            die "redis-cli --cluster create failed (see above)."
        }
        printf '%s %s %s\n' "$STACK_HOST" "$STACK_REDIS_CLUSTER_PORT" "$STACK_REDIS_CLUSTER_BUS_PORT" >"$REDIS_CLUSTER_DIR/layout"
    fi
    if ! wait_for "$STACK_TIMEOUT" redis_cluster_healthy; then
        redis_cluster_cli "$STACK_REDIS_CLUSTER_PORT" cluster nodes >&2 2>&1 || true
        die "the Redis Cluster is not cluster_state:ok with all 16384 slots on every node after ${STACK_TIMEOUT}s (CLUSTER NODES above). Read $LOG_DIR/redis-cluster-*.log."
    fi
    log "redis_cluster: up ($(redis_cluster_summary)); clients use $(clients_redis_url)"
}

# "masters=3 replicas=3 state=ok" as node STACK_REDIS_CLUSTER_PORT (or the first that answers) sees it.
redis_cluster_summary() {
    local port nodes
    for port in $(redis_cluster_ports); do
        nodes=$(redis_cluster_cli "$port" cluster nodes 2>/dev/null) || continue
        [[ -n $nodes ]] || continue
        awk -v state="$(redis_cluster_info_field "$port" cluster_state)" '
            $3 ~ /master/ && $3 !~ /fail/ && $8 == "connected" { m++ }
            $3 ~ /slave/ && $3 !~ /fail/ && $8 == "connected" { r++ }
            END { printf "masters=%d replicas=%d state=%s", m, r, state }' <<<"$nodes"
        return 0
    done
    printf 'no node answers'
}

redis_cluster_down() {
    local port pid role replicas=() masters=()
    for port in $(redis_cluster_ports); do
        pid=$(redis_cluster_pid "$port") || {
            rm -f -- "$(redis_cluster_pidfile "$port")" 2>/dev/null || true
            continue
        }
        role=$(redis_cluster_cli "$port" role 2>/dev/null | head -n 1)
        if [[ $role == slave ]]; then replicas+=("$port:$pid"); else masters+=("$port:$pid"); fi
    done
    if ((${#replicas[@]} + ${#masters[@]} == 0)); then
        log "redis_cluster: already stopped"
        return 0
    fi
    # Replicas first: a master stopped while its replica runs would be failed over to it.
    local entry
    for entry in "${replicas[@]}" "${masters[@]}"; do
        port=${entry%%:*} pid=${entry#*:}
        redis_cluster_cli "$port" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        if ! wait_for "$STACK_TIMEOUT" pid_gone "$pid"; then
            show_log_tail "$(redis_cluster_logfile "$port")"
            die "Redis Cluster node $port (pid $pid) did not stop within ${STACK_TIMEOUT}s. Read $(redis_cluster_logfile "$port"); stop it without saving: redis-cli -h $STACK_HOST -p $port shutdown nosave"
        fi
        rm -f -- "$(redis_cluster_pidfile "$port")"
    done
    log "redis_cluster: stopped ${#replicas[@]} replica(s), then ${#masters[@]} master(s)"
}

redis_cluster_status() {
    local state=stopped running rc=1 extra=''
    running=$(redis_cluster_running_count)
    if ((running == REDIS_CLUSTER_NODES)) && redis_cluster_healthy; then
        state=running rc=0
    elif ((running > 0)); then
        state=degraded
    fi
    ((running == 0)) || extra="nodes=$running/$REDIS_CLUSTER_NODES $(redis_cluster_summary)"
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' redis_cluster "$state" - "$(url_host "$STACK_HOST")" \
        "$STACK_REDIS_CLUSTER_PORT" "$extra"
    return "$rc"
}

# --- API replicas ------------------------------------------------------------
# api1..api$STACK_API_REPLICAS share these functions; $1 is the replica number N.
# Replica N listens on STACK_API_PORT+N-1 (public) and STACK_API_ADMIN_PORT+N-1
# (admin), runs detached (setsid) with its pid in $RUN_DIR/apiN.pid and its
# output in $LOG_DIR/apiN.log.
api_selected() { [[ " ${SELECTED[*]} " == *" api"[1-9]" "* ]]; }

api_port() { echo $((10#$STACK_API_PORT + $1 - 1)); }
api_admin_port() { echo $((10#$STACK_API_ADMIN_PORT + $1 - 1)); }
api_addr() { printf '%s:%s' "$(url_host "$STACK_HOST")" "$(api_port "$1")"; }
api_admin_addr() { printf '%s:%s' "$(url_host "$STACK_HOST")" "$(api_admin_port "$1")"; }
api_url() { printf 'http://%s' "$(api_addr "$1")"; }
api_pidfile() { printf '%s/api%s.pid' "$RUN_DIR" "$1"; }
api_logfile() { printf '%s/api%s.log' "$LOG_DIR" "$1"; }

# All replicas' base URLs, comma-separated.
api_urls() {
    local n urls=()
    for ((n = 1; n <= STACK_API_REPLICAS; n++)); do urls+=("$(api_url "$n")"); done
    local IFS=,
    printf '%s' "${urls[*]}"
}

# Value of variable $2 in the environment of process $1 (empty if unset or unreadable).
proc_env() {
    local kv
    while IFS= read -r -d '' kv; do
        if [[ $kv == "$2="* ]]; then
            printf '%s' "${kv#*=}"
            return 0
        fi
    done 2>/dev/null <"/proc/$1/environ"
    return 0
}

# our_pid PIDFILE VAR: the pid in PIDFILE when that process is alive and
# carries PIDFILE's path in its environment variable VAR (set at start), so a
# recycled pid is never taken for ours. Fails otherwise.
our_pid() {
    local pidfile=$1 pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    pid_alive "$pid" || return 1
    [[ $(proc_env "$pid" "$2") == "$pidfile" ]] || return 1
    echo "$pid"
}

# Pid of OUR replica N.
api_pid() { our_pid "$(api_pidfile "$1")" STACK_API_PIDFILE; }

api_get() { curl -fs -o /dev/null --max-time 2 "$1"; }
api_healthy() { api_get "$(api_url "$1")/healthz"; }
api_ready() { api_get "$(api_url "$1")/readyz"; }
# The /readyz JSON (its body comes with the 503 too), or nothing.
api_readyz_json() { curl -s --max-time 2 "$(api_url "$1")/readyz" 2>/dev/null || true; }

api_check_bin() {
    [[ -f $STACK_API_BIN && -x $STACK_API_BIN ]] ||
        die "the API binary STACK_API_BIN=$STACK_API_BIN does not exist (or is not executable); build it first: cargo build --release -p api (scripts/up.sh does this)."
}

# Fails if replica N's ports are taken by something that is not our running replica N.
api_check_ports() {
    local n=$1
    api_pid "$n" >/dev/null && return 0
    if port_in_use "$STACK_HOST" "$(api_port "$n")"; then
        die "port $(api_port "$n") on $STACK_HOST (public port of api$n = STACK_API_PORT+$((n - 1))) is already in use by another process (not this stack's api$n). Set STACK_API_PORT to the first of $STACK_API_REPLICAS free ports."
    fi
    if port_in_use "$STACK_HOST" "$(api_admin_port "$n")"; then
        die "port $(api_admin_port "$n") on $STACK_HOST (admin port of api$n = STACK_API_ADMIN_PORT+$((n - 1))) is already in use by another process (not this stack's api$n). Set STACK_API_ADMIN_PORT to the first of $STACK_API_REPLICAS free ports."
    fi
}

api_preflight() {
    api_pid "$1" >/dev/null && return 0
    api_check_bin
    api_check_ports "$1"
}

api_up() {
    local n=$1 name=api$1 pid pidfile logfile listen
    pidfile=$(api_pidfile "$n")
    logfile=$(api_logfile "$n")
    if pid=$(api_pid "$n"); then
        listen=$(proc_env "$pid" API_LISTEN)
        [[ $listen == "$(api_addr "$n")" ]] ||
            die "our $name (pid $pid) already runs on ${listen:-an unknown address}, not $(api_addr "$n") (STACK_API_PORT=$STACK_API_PORT). Run '$SELF down' first, or set STACK_API_PORT to match."
        log "$name: already running (pid $pid, $(api_addr "$n"))"
        api_healthy "$n" || warn "$name (pid $pid) does not answer $(api_url "$n")/healthz; read $logfile, or restart it with '$SELF down' and '$SELF up'."
        return 0
    fi
    rm -f -- "$pidfile" # stale, if any
    api_check_bin
    api_check_ports "$n"
    log "$name: starting $STACK_API_BIN on $(api_addr "$n"), admin $(api_admin_addr "$n") (log: $logfile)"
    launch "$name" "$pidfile" "$logfile" API_LISTEN="$(api_addr "$n")" API_ADMIN_LISTEN="$(api_admin_addr "$n")" \
        DATABASE_URL="$(database_url)" REDIS_URL="$(clients_redis_url)" \
        DATABASE_REPLICA_URLS="$(pg_replica_urls)" API_KEY_PREFIX="$STACK_KEY_PREFIX" API_DRAIN_DELAY_MS="$API_DRAIN_DELAY_MS" \
        API_WORKER_THREADS="$API_WORKER_THREADS" STACK_API_PIDFILE="$pidfile" -- "$STACK_API_BIN"
    pid=$LAUNCHED_PID
    await_healthy "$name" "$pid" "$logfile" "$(api_url "$n")/healthz" api_healthy "$n"
    if api_ready "$n"; then
        log "$name: up (pid $pid, $(api_addr "$n")): /readyz $(api_readyz_json "$n")"
    else
        warn "$name: up (pid $pid, $(api_addr "$n")) but not ready: /readyz $(api_readyz_json "$n"). Are PostgreSQL and Redis up? Read $logfile."
    fi
}

api_down() {
    local n=$1 name=api$1 pid pidfile logfile
    pidfile=$(api_pidfile "$n")
    logfile=$(api_logfile "$n")
    if ! pid=$(api_pid "$n"); then
        rm -f -- "$pidfile" 2>/dev/null || true
        log "$name: already stopped"
        return 0
    fi
    terminate "$name" "$pid" "$logfile" "SIGTERM: not ready for ${API_DRAIN_DELAY_MS} ms, then drains its requests"
    rm -f -- "$pidfile"
    log "$name: stopped"
}

api_status() {
    local n=$1 state=stopped pid=- port extra rc=1 listen
    port=$(api_port "$n")
    extra="admin=$(api_admin_addr "$n")"
    if pid=$(api_pid "$n"); then
        listen=$(proc_env "$pid" API_LISTEN)
        if [[ $listen != "$(api_addr "$n")" ]]; then
            state=not-ready extra="(running on ${listen:-an unknown address}, not STACK_API_PORT+$((n - 1)))"
        elif ! have_cmd curl; then
            state=running rc=0 extra+=" (install curl to see /readyz)"
        elif api_ready "$n"; then
            state=running rc=0 extra+=" ready"
        elif api_healthy "$n"; then
            state=running rc=0 extra+=" not ready ($(api_readyz_json "$n"))"
        else
            state=not-ready extra+=" (not answering /healthz; read $(api_logfile "$n"))"
        fi
    else
        pid=-
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' "api$n" "$state" "$pid" "$(url_host "$STACK_HOST")" "$port" "$extra"
    return "$rc"
}

# --- NGINX (the edge) ----------------------------------------------------------
# Our own NGINX master (never the system one): configuration rendered from
# nginx/nginx.conf.template into $NGINX_DIR/nginx.conf, prefix, pid file, temp
# paths and micro-cache under $NGINX_DIR, error log $NGINX_LOG. It proxies to
# the replicas api1..api$STACK_API_REPLICAS on STACK_HOST.
nginx_url() { printf 'http://%s:%s' "$(url_host "$STACK_HOST")" "$STACK_NGINX_PORT"; }
nginx_status_url() { printf 'http://%s:%s/stub_status' "$(url_host "$STACK_HOST")" "$STACK_NGINX_STATUS_PORT"; }

# Renders the configuration for the current settings to stdout.
nginx_render() {
    local n upstreams=()
    for ((n = 1; n <= STACK_API_REPLICAS; n++)); do upstreams+=("$(api_addr "$n")"); done
    NGINX_UPSTREAMS="${upstreams[*]}" NGINX_DIR=$NGINX_DIR NGINX_CACHE_DIR=$NGINX_CACHE_DIR NGINX_ERROR_LOG=$NGINX_LOG \
        NGINX_LISTEN="$(url_host "$STACK_HOST"):$STACK_NGINX_PORT" \
        NGINX_STATUS_LISTEN="$(url_host "$STACK_HOST"):$STACK_NGINX_STATUS_PORT" \
        NGINX_MICROCACHE=$STACK_NGINX_MICROCACHE NGINX_RATE_LIMIT=$STACK_NGINX_RATE_LIMIT \
        NGINX_RATE=$STACK_NGINX_RATE NGINX_BURST=$STACK_NGINX_BURST NGINX_WEB_ROOT=$NGINX_WEB_ROOT \
        sh "$NGINX_RENDER" "$NGINX_TEMPLATE"
}

nginx_cmd() { nginx -p "$NGINX_DIR/" -e "$NGINX_LOG" "$@"; }

# `nginx -t` of configuration file $1; prints nginx's complaint on failure.
nginx_test() {
    local out
    out=$(nginx_cmd -t -q -c "$1" 2>&1 9>&-) || {
        printf '%s\n' "$out" >&2
        return 1
    }
}

# Pid of OUR NGINX master: from our pid file, alive, an nginx whose command
# line names our configuration file. Fails otherwise.
nginx_pid() {
    local pid cmdline
    [[ -f $NGINX_PIDFILE ]] || return 1
    pid=$(<"$NGINX_PIDFILE")
    pid_alive "$pid" || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == nginx ]] || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$NGINX_CONF"* ]] || return 1
    echo "$pid"
}

nginx_healthy() { curl -fs -o /dev/null --max-time 2 "$(nginx_url)/healthz"; }

nginx_check_ports() {
    nginx_pid >/dev/null && return 0
    local var
    for var in STACK_NGINX_PORT STACK_NGINX_STATUS_PORT; do
        if port_in_use "$STACK_HOST" "${!var}"; then
            die "port ${!var} on $STACK_HOST ($var) is already in use by another process (not this stack's NGINX). Set $var to a free port."
        fi
    done
}

nginx_preflight() {
    [[ -r $NGINX_TEMPLATE && -r $NGINX_RENDER ]] || die "missing $NGINX_TEMPLATE or $NGINX_RENDER; is the checkout complete?"
    have_cmd envsubst || apt_install gettext-base
    nginx_check_ports
    # Workers run as nobody when we are root: a checkout under a private home folder (e.g.
    # /root, mode 700) would leave the students' page a 404 while the API works.
    if is_root && have_cmd runuser && ! runuser -u nobody -- test -r "$NGINX_WEB_ROOT/index.html" 2>/dev/null; then
        warn "NGINX's workers (user nobody) cannot read $NGINX_WEB_ROOT/index.html: the students' page at / will answer 404. Make the checkout readable by others (chmod o+rx on its folders)."
    fi
}

nginx_up() {
    local pid new
    install -d -m 0755 "$NGINX_DIR" "$NGINX_DIR/tmp"
    new=$NGINX_DIR/nginx.conf.new
    nginx_render >"$new" || die "nginx/render.sh failed (see above)."
    if pid=$(nginx_pid); then
        if cmp -s "$new" "$NGINX_CONF"; then
            rm -f -- "$new"
            log "nginx: already running (pid $pid, $(nginx_url))"
        else
            nginx_test "$new" || die "the new NGINX configuration ($new) is rejected by nginx -t (see above); the running one is kept."
            mv -f -- "$new" "$NGINX_CONF"
            log "nginx: settings changed; reloading (pid $pid, $(nginx_url); microcache=$STACK_NGINX_MICROCACHE rate_limit=$STACK_NGINX_RATE_LIMIT rate=${STACK_NGINX_RATE}r/s burst=$STACK_NGINX_BURST)"
            nginx_cmd -c "$NGINX_CONF" -s reload 9>&- || die "nginx -s reload failed. Read $NGINX_LOG."
            # The master re-reads the configuration; give the new workers a moment.
            sleep 0.5
        fi
        wait_for "$STACK_TIMEOUT" nginx_healthy ||
            die "our nginx (pid $pid) does not answer $(nginx_url)/healthz. Read $NGINX_LOG."
        return 0
    fi
    rm -f -- "$NGINX_PIDFILE" # stale, if any
    nginx_check_ports
    mv -f -- "$new" "$NGINX_CONF"
    nginx_test "$NGINX_CONF" || {
        show_log_tail "$NGINX_LOG"
        die "nginx -t rejects $NGINX_CONF (rendered from $NGINX_TEMPLATE; see above)."
    }
    log "nginx: starting on $(nginx_url) (status $(nginx_status_url); microcache=$STACK_NGINX_MICROCACHE rate_limit=$STACK_NGINX_RATE_LIMIT) in front of $(api_urls) (log: $NGINX_LOG)"
    # The master daemonises itself (its own session) and writes $NGINX_PIDFILE.
    nginx_cmd -c "$NGINX_CONF" </dev/null >>"$NGINX_LOG" 2>&1 9>&- || {
        show_log_tail "$NGINX_LOG"
        die "nginx failed to start. Read $NGINX_LOG."
    }
    if ! wait_for "$STACK_TIMEOUT" nginx_pid || ! wait_for "$STACK_TIMEOUT" nginx_healthy; then
        show_log_tail "$NGINX_LOG"
        die "nginx does not answer $(nginx_url)/healthz after ${STACK_TIMEOUT}s. Read $NGINX_LOG."
    fi
    pid=$(nginx_pid)
    if curl -fs -o /dev/null --max-time 2 "$(nginx_url)/readyz"; then
        log "nginx: up (pid $pid, $(nginx_url)); a replica behind it is ready"
    else
        warn "nginx: up (pid $pid, $(nginx_url)) but no replica behind it is ready yet ($(nginx_url)/readyz)."
    fi
}

nginx_down() {
    local pid
    if ! pid=$(nginx_pid); then
        rm -f -- "$NGINX_PIDFILE" 2>/dev/null || true
        log "nginx: already stopped"
        return 0
    fi
    log "nginx: stopping (pid $pid; graceful quit: open requests finish)"
    kill -QUIT "$pid" 2>/dev/null || true
    if ! wait_for "$STACK_TIMEOUT" pid_dead "$pid"; then
        warn "nginx (pid $pid) did not exit within ${STACK_TIMEOUT}s of SIGQUIT; sending SIGTERM (fast shutdown). Read $NGINX_LOG."
        kill -TERM "$pid" 2>/dev/null || true
        wait_for 5 pid_dead "$pid" || die "nginx (pid $pid) did not stop; retry '$SELF down'."
    fi
    rm -f -- "$NGINX_PIDFILE"
    log "nginx: stopped"
}

nginx_status() {
    local state=stopped pid=- extra rc=1 active mc rl
    extra="status=$(url_host "$STACK_HOST"):$STACK_NGINX_STATUS_PORT"
    if pid=$(nginx_pid); then
        if ! have_cmd curl; then
            state=running rc=0
        elif nginx_healthy; then
            state=running rc=0
            active=$(curl -fs --max-time 2 "$(nginx_status_url)" 2>/dev/null | sed -n 's/^Active connections: *\([0-9]*\).*/\1/p')
            # The settings of the running configuration, not of this environment.
            # shellcheck disable=SC2016 # a literal $ in the pattern
            mc=$(sed -n 's/^ *map "\(on\|off\)" \$microcache_skip.*/\1/p' "$NGINX_CONF" 2>/dev/null)
            # shellcheck disable=SC2016 # a literal $ in the pattern
            rl=$(sed -n 's/^ *map "\(on\|off\)" \$ratelimit_key.*/\1/p' "$NGINX_CONF" 2>/dev/null)
            extra+=" connections=${active:-?} microcache=${mc:-?} rate_limit=${rl:-?}"
        else
            state=not-ready extra+=" (not answering /healthz; read $NGINX_LOG)"
        fi
    else
        pid=-
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' nginx "$state" "$pid" "$(url_host "$STACK_HOST")" "$STACK_NGINX_PORT" "$extra"
    return "$rc"
}

# --- monitoring: the exporters and Prometheus -----------------------------------
# Debian's prometheus-*-exporter packages and prometheus, run as our own
# processes (never the system services those packages install), listening on
# STACK_HOST only. Each runs detached (setsid) with its pid in $RUN_DIR/NAME.pid
# and that path in its environment (STACK_MON_PIDFILE), so a recycled pid is
# never taken for ours, and logs to $LOG_DIR/NAME.log. Prometheus reads
# $PROMETHEUS_DIR/prometheus.yml: the repository's file (scrape and evaluation
# intervals set to STACK_PROMETHEUS_INTERVAL), rules/ linked from the
# repository, and targets/*.json written from this stack's ports on every 'up'
# (Prometheus re-reads them by itself). cAdvisor runs only under compose.
mon_port() {
    case $1 in
    node_exporter) echo "$STACK_NODE_EXPORTER_PORT" ;;
    nginx_exporter) echo "$STACK_NGINX_EXPORTER_PORT" ;;
    redis_exporter) echo "$STACK_REDIS_EXPORTER_PORT" ;;
    pg_exporter) echo "$STACK_PG_EXPORTER_PORT" ;;
    prometheus) echo "$STACK_PROMETHEUS_PORT" ;;
    esac
}
mon_bin() {
    case $1 in
    node_exporter) echo prometheus-node-exporter ;;
    nginx_exporter) echo prometheus-nginx-exporter ;;
    redis_exporter) echo prometheus-redis-exporter ;;
    pg_exporter) echo prometheus-postgres-exporter ;;
    prometheus) echo prometheus ;;
    esac
}
mon_addr() { printf '%s:%s' "$(url_host "$STACK_HOST")" "$(mon_port "$1")"; }
mon_health_url() {
    if [[ $1 == prometheus ]]; then
        printf 'http://%s/-/ready' "$(mon_addr "$1")"
    else
        printf 'http://%s/metrics' "$(mon_addr "$1")"
    fi
}
mon_pidfile() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
mon_logfile() { printf '%s/%s.log' "$LOG_DIR" "$1"; }
mon_healthy() { curl -fs -o /dev/null --max-time 2 "$(mon_health_url "$1")"; }
prometheus_url() { printf 'http://%s' "$(mon_addr prometheus)"; }

mon_pid() { our_pid "$(mon_pidfile "$1")" STACK_MON_PIDFILE; }

# Writes $PROMETHEUS_DIR: the configuration with this stack's intervals, the
# rules linked, and one target file per job from the stack's ports.
prometheus_write_config() {
    local dir=$PROMETHEUS_DIR targets=$PROMETHEUS_DIR/targets host n entries=()
    host=$(url_host "$STACK_HOST")
    install -d -m 0755 "$dir" "$targets" "$dir/data"
    sed -e "s/^  scrape_interval: .*/  scrape_interval: $STACK_PROMETHEUS_INTERVAL/" \
        -e "s/^  evaluation_interval: .*/  evaluation_interval: $STACK_PROMETHEUS_INTERVAL/" \
        -e "s/^  scrape_timeout: .*/  scrape_timeout: $STACK_PROMETHEUS_INTERVAL/" \
        "$PROMETHEUS_REPO_DIR/prometheus.yml" >"$dir/prometheus.yml.new"
    mv -f -- "$dir/prometheus.yml.new" "$dir/prometheus.yml"
    ln -sfn -- "$PROMETHEUS_REPO_DIR/rules" "$dir/rules"
    for ((n = 1; n <= STACK_API_REPLICAS; n++)); do
        entries+=("  {\"targets\": [\"$(api_admin_addr "$n")\"], \"labels\": {\"replica\": \"api$n\"}}")
    done
    write_targets "$targets/api.json" "${entries[@]}"
    write_targets "$targets/nginx.json" "  {\"targets\": [\"$(mon_addr nginx_exporter)\"]}"
    write_targets "$targets/redis.json" "  {\"targets\": [\"$(mon_addr redis_exporter)\"]}"
    write_targets "$targets/postgres.json" "  {\"targets\": [\"$(mon_addr pg_exporter)\"]}"
    write_targets "$targets/node.json" "  {\"targets\": [\"$(mon_addr node_exporter)\"]}"
    write_targets "$targets/loadgen.json" "  {\"targets\": [\"$host:$STACK_LOADGEN_METRICS_PORT\"]}"
}

# write_targets FILE ENTRY...: a file_sd JSON list, replaced atomically (Prometheus watches it).
write_targets() {
    local file=$1
    shift
    {
        echo "["
        local IFS=$'\n'
        sed '$!s/$/,/' <<<"$*"
        echo "]"
    } >"$file.new"
    mv -f -- "$file.new" "$file"
}

# mon_command NAME: sets MON_CMD (the command line) and MON_ENV (extra environment).
mon_command() {
    local addr
    addr=$(mon_addr "$1")
    MON_ENV=()
    case $1 in
    node_exporter)
        # Only what the dashboard shows and a host needs: the systemd, hwmon, ... collectors
        # have nothing to read here.
        MON_CMD=(prometheus-node-exporter "--web.listen-address=$addr" --collector.disable-defaults
            --collector.cpu --collector.meminfo --collector.loadavg --collector.netdev
            --collector.diskstats --collector.filesystem --collector.stat --collector.uname)
        ;;
    nginx_exporter)
        # It retries until NGINX answers, so it may start before (or without) NGINX.
        MON_CMD=(prometheus-nginx-exporter "-nginx.scrape-uri=$(nginx_status_url)" "-web.listen-address=$addr"
            -nginx.retries=100000 -nginx.retry-interval=2s -nginx.timeout=2s)
        ;;
    redis_exporter)
        MON_CMD=(prometheus-redis-exporter "-redis.addr=$(exporter_redis_url)" "-web.listen-address=$addr")
        ;;
    pg_exporter)
        # The application role: it sees pg_stat_database and pg_up, all the dashboard needs.
        MON_ENV=("DATA_SOURCE_NAME=$(database_url)?sslmode=disable")
        MON_CMD=(prometheus-postgres-exporter "--web.listen-address=$addr" --disable-settings-metrics)
        ;;
    prometheus)
        MON_CMD=(prometheus "--config.file=$PROMETHEUS_DIR/prometheus.yml" "--storage.tsdb.path=$PROMETHEUS_DIR/data"
            --storage.tsdb.retention.time=7d "--web.listen-address=$addr" --web.enable-lifecycle)
        ;;
    esac
}

mon_check_port() {
    mon_pid "$1" >/dev/null && return 0
    if port_in_use "$STACK_HOST" "$(mon_port "$1")"; then
        local var
        case $1 in
        prometheus) var=STACK_PROMETHEUS_PORT ;;
        pg_exporter) var=STACK_PG_EXPORTER_PORT ;;
        *) var=STACK_$(tr '[:lower:]' '[:upper:]' <<<"$1")_PORT ;;
        esac
        die "port $(mon_port "$1") on $STACK_HOST ($var, for $1) is already in use by another process (not this stack's $1; a system $(mon_bin "$1") perhaps). Set $var to a free port."
    fi
}

mon_preflight() { mon_check_port "$1"; }

mon_up() {
    local name=$1 pid pidfile logfile
    pidfile=$(mon_pidfile "$name")
    logfile=$(mon_logfile "$name")
    if [[ $name == prometheus ]]; then
        prometheus_write_config
        promtool check config "$PROMETHEUS_DIR/prometheus.yml" >"$LOG_DIR/promtool.log" 2>&1 || {
            show_log_tail "$LOG_DIR/promtool.log"
            die "promtool rejects $PROMETHEUS_DIR/prometheus.yml (from $PROMETHEUS_REPO_DIR; see above)."
        }
    fi
    if pid=$(mon_pid "$name"); then
        log "$name: already running (pid $pid, $(mon_addr "$name"))"
        if [[ $name == prometheus ]]; then
            # Picks up a changed configuration or rules without a restart.
            curl -fs -o /dev/null --max-time 5 -X POST "$(prometheus_url)/-/reload" ||
                warn "prometheus (pid $pid) did not accept a reload; read $logfile."
        fi
        return 0
    fi
    rm -f -- "$pidfile" # stale, if any
    mon_check_port "$name"
    mon_command "$name"
    log "$name: starting $(mon_bin "$name") on $(mon_addr "$name") (log: $logfile)"
    launch "$name" "$pidfile" "$logfile" "${MON_ENV[@]}" STACK_MON_PIDFILE="$pidfile" -- "${MON_CMD[@]}"
    pid=$LAUNCHED_PID
    if [[ $name == nginx_exporter ]] && ! nginx_pid >/dev/null; then
        # It listens only once NGINX's stub_status answered; it keeps trying.
        warn "$name: started (pid $pid), waiting for NGINX's $(nginx_status_url) before it serves /metrics."
        return 0
    fi
    await_healthy "$name" "$pid" "$logfile" "$(mon_health_url "$name")" mon_healthy "$name"
    log "$name: up (pid $pid, $(mon_health_url "$name"))"
}

mon_down() {
    local name=$1 pid pidfile
    pidfile=$(mon_pidfile "$name")
    if ! pid=$(mon_pid "$name"); then
        rm -f -- "$pidfile" 2>/dev/null || true
        log "$name: already stopped"
        return 0
    fi
    terminate "$name" "$pid" "$(mon_logfile "$name")"
    rm -f -- "$pidfile"
    log "$name: stopped"
}

mon_status() {
    local name=$1 state=stopped pid=- extra='' rc=1 up
    if pid=$(mon_pid "$name"); then
        if mon_healthy "$name"; then
            state=running rc=0
            if [[ $name == prometheus ]]; then
                up=$(curl -fs --max-time 2 "$(prometheus_url)/api/v1/query?query=sum(up)%20%2F%20count(up)" 2>/dev/null |
                    sed -n 's/.*"value":\[[^,]*,"\([^"]*\)".*/\1/p')
                extra="targets_up=${up:-?}"
            fi
        elif [[ $name == nginx_exporter ]] && ! nginx_pid >/dev/null; then
            state=waiting extra="(for NGINX's $(nginx_status_url); it serves /metrics once NGINX runs)"
        else
            state=not-ready extra="(not answering $(mon_health_url "$name"); read $(mon_logfile "$name"))"
        fi
    else
        pid=-
    fi
    printf '%-14s %-9s pid=%-8s %s:%-6s %s\n' "$name" "$state" "$pid" "$(url_host "$STACK_HOST")" "$(mon_port "$name")" "$extra"
    return "$rc"
}

# --- commands ----------------------------------------------------------------
cmd_up() {
    (($# == 0)) || die "'up' takes no arguments (got: $*). Configure it with the STACK_* variables; see '$SELF help'."
    ensure_packages
    local svc replicas
    # Check every chosen service first (ports, binaries), so a conflict starts
    # (or creates) nothing.
    for svc in "${SELECTED[@]}"; do
        svc_call preflight "$svc"
    done
    prepare_stack_dir
    lock_stack_dir
    for svc in "${SELECTED[@]}"; do
        svc_call up "$svc"
    done
    echo "Stack is up (${SELECTED[*]}; data, logs, sockets: $STACK_DIR)"
    local all
    mapfile -t all < <(known_services)
    for svc in "${all[@]}"; do
        svc_call status "$svc" | sed 's/^/  /' || true
    done
    echo "  logs: $PG_LOG, $REDIS_LOG, $LOG_DIR/apiN.log, $NGINX_LOG, $LOG_DIR/<exporter>.log, $LOG_DIR/prometheus.log"
    echo "DATABASE_URL=$(database_url)"
    echo "REDIS_URL=$(clients_redis_url)"
    replicas=$(pg_replica_urls)
    [[ -z $replicas ]] || echo "DATABASE_REPLICA_URLS=$replicas"
    echo "API_URLS=$(api_urls)"
    echo "PUBLIC_URL=$(nginx_url)"
    echo "PROMETHEUS_URL=$(prometheus_url)"
    echo "Load them into your shell with: eval \"\$($SELF env)\""
}

cmd_down() {
    local purge=0
    case ${1:-} in
    '') ;;
    --purge) purge=1 ;;
    *) die "'down' takes only --purge (got: $*)." ;;
    esac
    (($# <= 1)) || die "'down' takes only --purge (got: $*)."
    if [[ ! -d $STACK_DIR ]]; then
        log "$STACK_DIR does not exist; nothing is running from it"
        return 0
    fi
    lock_stack_dir
    local i all
    mapfile -t all < <(known_services)
    for ((i = ${#all[@]} - 1; i >= 0; i--)); do
        svc_call down "${all[i]}"
    done
    if ((purge)); then
        [[ -e $MARKER ]] ||
            die "$STACK_DIR has no $(basename "$MARKER") marker, so it was not created by $SELF; not deleting it. Remove it by hand if you are sure."
        rm -rf -- "$STACK_DIR"
        log "purged $STACK_DIR"
    fi
}

cmd_stop() {
    lock_stack_dir
    local i
    for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do
        svc_call down "${SELECTED[i]}"
    done
}

cmd_status() {
    (($# == 0)) || die "'status' takes no arguments."
    local svc rc=0 all
    mapfile -t all < <(known_services)
    # Shows every service; only those chosen by STACK_SERVICES decide the exit status.
    for svc in "${all[@]}"; do
        if ! svc_call status "$svc" && [[ " ${SELECTED[*]} " == *" $svc "* ]]; then
            rc=3
        fi
    done
    exit "$rc"
}

cmd_env() {
    (($# == 0)) || die "'env' takes no arguments."
    # URL-encoded values contain no single quotes, so this is safe for eval.
    printf "export DATABASE_URL='%s'\n" "$(database_url)"
    printf "export REDIS_URL='%s'\n" "$(clients_redis_url)"
    local replicas
    replicas=$(pg_replica_urls)
    [[ -z $replicas ]] || printf "export DATABASE_REPLICA_URLS='%s'\n" "$replicas"
    printf "export API_URLS='%s'\n" "$(api_urls)"
    printf "export PUBLIC_URL='%s'\n" "$(nginx_url)"
    printf "export PROMETHEUS_URL='%s'\n" "$(prometheus_url)"
}

main() {
    local cmd=${1:-}
    (($# == 0)) || shift
    case $cmd in
    up | down | status | env)
        load_config
        "cmd_$cmd" "$@"
        ;;
    stop)
        (($#)) || die "'stop' needs the services to stop, e.g. '$SELF stop redis' or '$SELF stop api2' (see '$SELF help')."
        STACK_SERVICES="$*"
        load_config
        [[ -d $STACK_DIR ]] || die "$STACK_DIR does not exist; nothing is running from it."
        cmd_stop
        ;;
    help | -h | --help) usage ;;
    '')
        usage >&2
        exit 2
        ;;
    *)
        usage >&2
        log "error: unknown command '$cmd'"
        exit 2
        ;;
    esac
}

main "$@"
