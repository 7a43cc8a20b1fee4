#!/usr/bin/env bash
# The nginx service's command in docker-compose.yml: renders the project's NGINX configuration
# (nginx/render.sh, the same template as the native stack) with the compose values, checks it and
# runs NGINX in the foreground.
#
#   nginx-start.sh            in the container: render to $NGINX_DIR/nginx.conf (a tmpfs), nginx -t, exec nginx
#   nginx-start.sh --print    render to stdout only (xtask/tests/deploy/compose.rs checks the result)
#
# NGINX_PROJECT_DIR is where ./nginx is (mounted read-only at /etc/nginx/project in the container).
# The compose values live here and only here:
#   upstreams      the three replicas on their API_LISTEN port (docker-compose.yml: 8081)
#   listen 8080    the public port, on every interface of the container (published on the
#                  host's loopback only, by docker-compose.yml)
#   listen 8089    stub_status for nginx-exporter; on the compose network only, never published
#   web root       /usr/share/nginx/results-web: ./web (the students' page), mounted read-only
# Other knobs (NGINX_MICROCACHE, NGINX_RATE_LIMIT, NGINX_RATE, NGINX_BURST) pass through from the
# container's environment; nginx/render.sh documents them and their defaults.
set -euo pipefail

NGINX_PROJECT_DIR=${NGINX_PROJECT_DIR:-/etc/nginx/project}
export NGINX_UPSTREAMS="api1:8081 api2:8081 api3:8081"
export NGINX_LISTEN=8080
export NGINX_STATUS_LISTEN=8089
export NGINX_DIR=/var/cache/nginx-edge   # pid file, temp paths, micro-cache
export NGINX_ERROR_LOG=stderr            # `docker compose logs nginx`
export NGINX_USER=""                     # not root (docker-compose.yml user:): no `user` directive
# The students' page: docker-compose.yml mounts ./web here read-only.
export NGINX_WEB_ROOT=${NGINX_WEB_ROOT:-/usr/share/nginx/results-web}

if [[ ${1:-} == --print ]]; then
  exec sh "$NGINX_PROJECT_DIR/render.sh"
fi
mkdir -p "$NGINX_DIR/tmp"
sh "$NGINX_PROJECT_DIR/render.sh" >"$NGINX_DIR/nginx.conf"   # the root filesystem is read-only
nginx -t -q -c "$NGINX_DIR/nginx.conf"
exec nginx -c "$NGINX_DIR/nginx.conf" -g 'daemon off;'
