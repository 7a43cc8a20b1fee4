#!/usr/bin/env bash
# scripts/stamp_web.sh - after editing web/app.js or web/style.css, run this once: it sets the
# `?v=` of each asset in web/index.html to the first 12 hex digits of the file's SHA-256.
# NGINX lets browsers (and any CDN in front) keep the assets for a year (immutable), so a
# changed file must get a new URL to be fetched at all. There is no build step: the stamped
# index.html is committed. scripts/tests/page_test.sh fails when a stamp is stale.
#
# Usage: scripts/stamp_web.sh [--check]   (--check: change nothing, exit 1 when a stamp is stale)
set -euo pipefail

WEB_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../web" && pwd)
check=0
[[ ${1:-} == --check ]] && check=1
stale=0
for asset in app.js style.css; do
  want=$(sha256sum "$WEB_DIR/$asset" | cut -c1-12)
  have=$(sed -n "s|.*\"/${asset//./\\.}?v=\([0-9a-f]*\)\".*|\1|p" "$WEB_DIR/index.html")
  [[ -n $have ]] || { echo "stamp_web: no /$asset?v=… reference in web/index.html" >&2; exit 1; }
  [[ $have == "$want" ]] && continue
  stale=1
  if ((check)); then
    echo "stamp_web: web/index.html asks for /$asset?v=$have, the file is v=$want (run scripts/stamp_web.sh)" >&2
  else
    sed -i "s|\"/${asset//./\\.}?v=[0-9a-f]*\"|\"/$asset?v=$want\"|" "$WEB_DIR/index.html"
    echo "stamp_web: /$asset?v=$want" >&2
  fi
done
((check == 0 || stale == 0))
