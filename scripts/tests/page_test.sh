#!/usr/bin/env bash
# scripts/tests/page_test.sh - tests the students' page (web/, served by NGINX at /) on a second,
# throw-away stack (own folder, own free ports; pg redis api nginx, 2,000 students seeded), so the
# developer's stack is never touched:
#   - with curl: / and its assets with their content types and cache headers (no-cache and a CSP
#     for the page, a year and immutable for the versioned assets), a 304 on revalidation, gzip,
#     every other path (/index.html, /metrics, ...) still the JSON 404, the ?v= stamps current,
#     web/ readable by NGINX's workers;
#   - in Debian's headless Chromium driven by playwright-core (scripts/tests/page/run.mjs): a valid
#     ID shows the API's result, every error answer its own message (malformed without a request,
#     the server's 400, 404, NGINX's real 429 and 503, a network failure, nonsense answers),
#     keyboard-only use, the live region, contrast, print CSS, and no request leaving the origin.
#     It saves docs/page-phone.png (390x844) and docs/page-desktop.png (1280x800) of a result.
#
# Installs what is missing (as root, Debian packages): chromium and fonts-liberation (its
# recommended fonts, so screenshots look the same everywhere), nodejs and npm; then
# playwright-core from npm into scripts/tests/page/node_modules (npm ci, pinned by the lock file;
# it downloads no browser). Needs target/debug/api (or PAGE_API_BIN) and a seeder binary.
# PAGE_SHOTS_DIR=DIR writes the screenshots there instead of docs/.
# Prints "page_test: N passed, M failed" last; exit status 1 if anything failed.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd -- "$SCRIPT_DIR/../.." && pwd)
STUDENTS=2000
FIRST_ID=1000000
# A seeded student who passed (the screenshots show this one) and an ID past the data set.
VALID_ID=1000006
UNKNOWN_ID=$((FIRST_ID + STUDENTS + 5))
SHOTS_DIR=${PAGE_SHOTS_DIR:-$REPO_DIR/docs}
NODE_DIR=$SCRIPT_DIR/page
CHROMIUM=/usr/bin/chromium
passed=0
failed=0

TEST_NAME=page_test
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

summary() { printf 'page_test: %d passed, %d failed\n' "$passed" "$failed"; }

test_binaries "${PAGE_API_BIN:-}"

# --- what the browser test needs ---------------------------------------------------------------
missing=()
[[ -x $CHROMIUM ]] || missing+=(chromium)
fc-list 2>/dev/null | grep -q 'Liberation Sans' || missing+=(fonts-liberation)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
xtask_bin
((${#missing[@]} == 0)) || "$XTASK" install "${missing[@]}" || fatal "installing ${missing[*]} failed"
want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' \
  "$NODE_DIR/package-lock.json")
have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch { console.log("") }' \
  "$NODE_DIR/node_modules/playwright-core/package.json")
if [[ $have != "$want" ]]; then
  say "npm ci (playwright-core $want) in $NODE_DIR"
  # The browser is Debian's: playwright-core never downloads one, and nothing is built here.
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2) || fatal "npm ci in $NODE_DIR failed"
fi

# --- the throw-away stack ----------------------------------------------------------------------
STACK_API_BIN=$API_BIN
throwaway_stack page-test 27300
# No micro-cache: with it, a stopped replica set would be hidden behind stale answers, and the
# 503 case is about what the page shows when nothing can answer.
STACK_NGINX_MICROCACHE=off
trap '"$XTASK" stack down --purge >/dev/null 2>&1 || true; rm -rf "$STACK_DIR"' EXIT

say "stack in $STACK_DIR: pg $STACK_PG_PORT, redis $STACK_REDIS_PORT, api $STACK_API_PORT.., nginx $STACK_NGINX_PORT"
seed_throwaway_stack "$STUDENTS"
STACK_SERVICES="pg redis api nginx"
"$XTASK" stack up >"$STACK_DIR/up.log" 2>&1 || fatal "xtask stack up (api nginx) failed: $(tail -5 "$STACK_DIR/up.log")"
ORIGIN=http://127.0.0.1:$STACK_NGINX_PORT

# --- NGINX's side, with curl -------------------------------------------------------------------
head_of() { curl -s -o /dev/null -D - --max-time 5 "$@" | tr -d '\r'; }
has_header() { # URL 'Header: value' [curl args]: that header, exactly (the name in any case)
  local url=$1 header=$2
  shift 2
  head_of "$@" "$url" | grep -qix "$header"
}
json_404() {
  local h
  h=$(curl -s -D - --max-time 5 "$ORIGIN$1" | tr -d '\r')
  [[ $h == "HTTP/1.1 404 "* && ${h,,} == *"content-type: application/json"* && $h == *'"code":"not_found"'* ]]
}
check "/ is 200 text/html; charset=utf-8" has_header "$ORIGIN/" 'Content-Type: text/html; charset=utf-8'
check "/ is revalidated on every visit (Cache-Control: no-cache)" has_header "$ORIGIN/" 'Cache-Control: no-cache'
check "/ allows only its own origin (Content-Security-Policy default-src 'none', connect-src 'self')" bash -c \
  "curl -s -D - -o /dev/null '$ORIGIN/' | grep -i '^content-security-policy:' | grep -q \"default-src 'none'.*connect-src 'self'\""
check "/ revalidated with its ETag: 304" bash -c \
  "etag=\$(curl -s -D - -o /dev/null '$ORIGIN/' | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p'); [[ -n \$etag ]] &&
   [[ \$(curl -s -o /dev/null -w '%{http_code}' -H \"If-None-Match: \$etag\" '$ORIGIN/') == 304 ]]"
check "/?id=… is the same page" has_header "$ORIGIN/?id=$VALID_ID" 'Content-Type: text/html; charset=utf-8'
for asset in app.js:text/javascript style.css:text/css; do
  file=${asset%%:*} type=${asset#*:}
  url="$ORIGIN$(grep -o "/$file?v=[0-9a-f]*" "$REPO_DIR/web/index.html")"
  check "/$file is $type" has_header "$url" "Content-Type: $type; charset=utf-8"
  check "/$file is kept a year (public, max-age=31536000, immutable)" has_header "$url" 'Cache-Control: public, max-age=31536000, immutable'
  check "/$file is the file in web/" bash -c "curl -fs '$url' | cmp -s - '$REPO_DIR/web/$file'"
  check "/$file is gzipped when asked" has_header "$url" 'Content-Encoding: gzip' -H 'Accept-Encoding: gzip'
done
check "the ?v= stamps in web/index.html match the assets (cargo xtask stamp-web --check)" "$XTASK" stamp-web --check
for path in /index.html /app.js.map /web/ /web/index.html /favicon.ico /metrics /debug/pprof/profile /admin /README.md; do
  check "$path: still the JSON 404" json_404 "$path"
done
check "web/ is readable by NGINX's workers (user nobody)" runuser -u nobody -- cat "$REPO_DIR/web/index.html" "$REPO_DIR/web/app.js" "$REPO_DIR/web/style.css"
check "the compose rendering serves the page from the mounted ./web" bash -c \
  "NGINX_PROJECT_DIR='$REPO_DIR/nginx' bash '$REPO_DIR/docker/nginx-start.sh' --print | grep -q 'root /usr/share/nginx/results-web;' &&
   grep -q '\./web:/usr/share/nginx/results-web:ro' '$REPO_DIR/docker-compose.yml'"

# --- the browser --------------------------------------------------------------------------------
mkdir -p "$SHOTS_DIR"
out=$STACK_DIR/browser.txt
say "headless chromium ($("$CHROMIUM" --version 2>/dev/null | head -n 1)) against $ORIGIN"
rc=0
# Bounded: the cases take ~10 s; a browser that hangs is killed, and the run fails.
PAGE_ORIGIN=$ORIGIN PAGE_VALID_ID=$VALID_ID PAGE_UNKNOWN_ID=$UNKNOWN_ID PAGE_SHOTS_DIR=$SHOTS_DIR \
  PAGE_XTASK=$XTASK PAGE_CHROMIUM=$CHROMIUM STACK_DIR=$STACK_DIR \
  timeout -k 5 180 node "$NODE_DIR/run.mjs" >"$out" 2>&1 || rc=$?
while IFS= read -r line; do
  case $line in
    PASS\ *) passed=$((passed + 1)) ;;
    FAIL\ *) failed=$((failed + 1)) && printf '%s: FAILED: %s\n' "$TEST_NAME" "${line#FAIL }" >&2 ;;
    NOTE\ *) say "${line#NOTE }" ;;
  esac
done <"$out"
if ((rc != 0)) && ! grep -q '^FAIL ' "$out"; then
  failed=$((failed + 1))
  say "the browser run ended with status $rc without a failed check; its last lines:"
  tail -n 15 "$out" | sed 's/^/    /' >&2
fi
if ((rc == 0)); then say "screenshots: $SHOTS_DIR/page-phone.png, $SHOTS_DIR/page-desktop.png"; fi

summary
((failed == 0))
