# scripts/tests/lib.sh - helpers shared by the script tests. Source it after setting TEST_NAME
# (the prefix of every line, e.g. stack_test) and `passed=0 failed=0`.
# shellcheck shell=bash

check() { # check "description" command...: counts a pass, or a failure with its description
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    printf '%s: FAILED: %s\n' "$TEST_NAME" "$what" >&2
  fi
}

free_port() { # the first port from $1 upwards that nothing listens on (and the $2-1 after it)
  local port=$1 count=${2:-1} i
  for ((i = 0; i < count; i++)); do
    if (echo >"/dev/tcp/127.0.0.1/$((port + i))") 2>/dev/null; then
      port=$((port + i + 1)) i=-1
    fi
  done
  echo "$port"
}
