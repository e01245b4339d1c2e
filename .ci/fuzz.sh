#!/usr/bin/env bash
# Builds the libFuzzer targets in spec/fuzz/ (clang, ASan + UBSan) and runs each for a bounded
# time over its committed corpus, printing how many inputs each executed.
# Usage: .ci/fuzz.sh [seconds per target, default 20]
# New inputs go to a temporary corpus, never into spec/fuzz/corpus/; a crash leaves
# spec/fuzz/crash-* (gitignored) and fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-20}
bin=spec/fuzz/bin
mkdir -p "$bin"
lua_cflags=$(pkg-config --cflags lua5.4)
lua_libs=$(pkg-config --libs lua5.4)
flags=(-std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -Wall -Wextra -Werror -Isrc $lua_cflags)

declare -A srcs=(
  [headers]="src/headers.c"
  [decode]="src/decode.c"
  [request]="src/request.c"
)
declare -A dict=(
  [decode]="-dict=spec/fuzz/json.dict"
)

status=0
for t in headers decode request; do
  # shellcheck disable=SC2086
  clang "${flags[@]}" -o "$bin/fuzz_$t" "spec/fuzz/fuzz_$t.c" ${srcs[$t]} $lua_libs
  work=$(mktemp -d)
  log=$(mktemp)
  if "$bin/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix=spec/fuzz/ ${dict[$t]:-} "$work" "spec/fuzz/corpus/$t" >"$log" 2>&1; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz_$t: ok, $execs executions in ${secs}s"
  else
    echo "fuzz_$t: FAILED" >&2
    tail -40 "$log" >&2
    status=1
  fi
  rm -rf "$work" "$log"
done
exit $status
