#!/usr/bin/env bash
# scripts/fuzz.sh - coverage-guided fuzzing (cargo-fuzz / libFuzzer) of everything that decodes
# untrusted bytes: the Redis value codec, the completeness marker and Redis key names, and the
# registration-number parser. The targets live in fuzz/ (its own crate, not a workspace member;
# fuzz/fuzz_targets/*.rs says what each one checks beyond "never panics").
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 60; the targets run one after another)
#
# What it does:
#   1. installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when `cargo fuzz` is missing;
#   2. builds every target once (release with debug assertions and overflow checks, AddressSanitizer
#      by default). cargo-fuzz passes nightly-only compiler flags (-Zsanitizer, sanitizer-coverage
#      passes); this machine has only a stable toolchain, so the script sets RUSTC_BOOTSTRAP=1,
#      which lets stable rustc accept them. Nothing else of the project is built that way;
#   3. runs each target for SECONDS_PER_TARGET (-max_total_time) in a single libFuzzer process
#      (libFuzzer's default: no -jobs/-workers/-fork, which would fork children and move the
#      output into fuzz-N.log files), starting from the committed seeds (fuzz/seeds/<target>/,
#      real encoded values: see fuzz/examples/seeds.rs) plus the corpus earlier runs grew
#      (fuzz/corpus/<target>/, git-ignored; new inputs are written there);
#   4. prints per target: inputs executed, executions per second, coverage (libFuzzer's "cov",
#      covered code edges, and "ft", features), the corpus size, and any crash with the path
#      of the input that caused it (fuzz/artifacts/<target>/crash-…, git-ignored). Reproduce one
#      with `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <artifact>`.
#
# Environment (defaults in brackets):
#   FUZZ_TARGETS    [every target in fuzz/Cargo.toml]  space-separated subset to run.
#   FUZZ_SANITIZER  [address]  address or none (none: faster, catches only panics and aborts).
#   FUZZ_TIMEOUT    [10]       seconds one input may take before libFuzzer reports it as a hang.
#   FUZZ_RSS_MB     [2048]     memory limit of the fuzzing process, MB (exceeding it is a finding).
# Output: the summary on stdout; each target's full libFuzzer log in runs/fuzz/<UTC timestamp>/.
# Exit status: 0 when no target found anything, 1 when one did, 2 on a usage or build error.
# Not part of CI or scripts/test.sh: fuzzing for minutes is a separate, deliberate run.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
fatal() {
  echo "fuzz: $*" >&2
  exit 2
}

case "${1:-}" in
  -h | --help | help)
    usage
    exit 0
    ;;
esac
seconds=${1:-60}
[[ $seconds =~ ^[1-9][0-9]{0,5}$ ]] || fatal "SECONDS_PER_TARGET must be a whole number of seconds from 1 to 999999, got '$seconds' (see --help)"
[[ $# -le 1 ]] || fatal "at most one argument (SECONDS_PER_TARGET), got $#"
sanitizer=${FUZZ_SANITIZER:-address}
[[ $sanitizer == address || $sanitizer == none ]] || fatal "FUZZ_SANITIZER must be 'address' or 'none', got '$sanitizer'"
input_timeout=${FUZZ_TIMEOUT:-10}
[[ $input_timeout =~ ^[1-9][0-9]*$ ]] || fatal "FUZZ_TIMEOUT must be a positive whole number of seconds, got '$input_timeout'"
rss_mb=${FUZZ_RSS_MB:-2048}
[[ $rss_mb =~ ^[1-9][0-9]*$ ]] || fatal "FUZZ_RSS_MB must be a positive whole number of MB, got '$rss_mb'"

cd "$(dirname "$0")/.."
command -v cargo >/dev/null || fatal "cargo is not on PATH"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked >&2 || fatal "could not install cargo-fuzz"
fi
# cargo-fuzz needs nightly compiler flags; stable rustc accepts them with this (see above).
export RUSTC_BOOTSTRAP=1

all_targets=$(cargo fuzz list) || fatal "cargo fuzz list failed (is fuzz/Cargo.toml intact?)"
targets=${FUZZ_TARGETS:-$all_targets}
for target in $targets; do
  grep -qx "$target" <<<"$all_targets" || fatal "FUZZ_TARGETS: unknown target '$target' (known: ${all_targets//$'\n'/ })"
done

echo "fuzz: building $(wc -w <<<"$targets") targets (sanitizer: $sanitizer)" >&2
if [[ -z ${FUZZ_TARGETS:-} ]]; then
  cargo fuzz build --sanitizer "$sanitizer" >&2 || fatal "cargo fuzz build failed"
else # cargo fuzz build takes one target or all of them
  for target in $targets; do
    cargo fuzz build --sanitizer "$sanitizer" "$target" >&2 || fatal "cargo fuzz build $target failed"
  done
fi

out="runs/fuzz/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
found=0
summary=()
for target in $targets; do
  mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"
  log="$out/$target.log"
  echo "fuzz: running $target for ${seconds}s (log: $log)" >&2
  status=0
  # libFuzzer stops itself after -max_total_time; the outer timeout only guards against a
  # process that does not (it sends SIGINT first, which libFuzzer handles by printing stats).
  timeout --signal=INT --kill-after=30 $((seconds + 120)) \
    cargo fuzz run --sanitizer "$sanitizer" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout="$input_timeout" -rss_limit_mb="$rss_mb" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # The last status line libFuzzer printed, e.g. "#101739 DONE cov: 412 ft: 1620 corp: 310/9kb ...".
  last=$(grep -E '^#[0-9]+' "$log" | grep -F 'cov:' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$last")
  artifacts=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tr '\n' ' ')
  line="$target: ${runs:-?} runs, ${speed:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} (units/bytes)"
  if [[ $status -ne 0 || -n $artifacts ]]; then
    found=$((found + 1))
    # A panic's message is on the line after "panicked at"; a sanitizer names the error itself.
    reason=$(awk '/panicked at/ { getline msg; print $0 " " msg; exit }
      /ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)/ { print; exit }' "$log")
    [[ -n $reason ]] || reason="exit status $status"
    line+=" - FOUND: $reason; input: ${artifacts:-none written, see $log}"
  else
    line+=" - nothing found"
  fi
  summary+=("$line")
  echo "fuzz: $line" >&2
done

{
  echo "fuzz: ${seconds}s per target, sanitizer $sanitizer, $(date -u +%Y-%m-%dT%H:%M:%SZ), logs in $out"
  printf 'fuzz: %s\n' "${summary[@]}"
  echo "fuzz: $(wc -w <<<"$targets") targets, $found with findings"
} | tee "$out/summary.txt"
[[ $found -eq 0 ]] || exit 1
