#!/usr/bin/env bash
# The whole test suite of lua-mde: bash .ci/test.sh
#
# Installs the Debian packages it needs when they are missing, builds the C core for
# every Lua, then runs each step below and ends with one line "N passed, N failed".
# A busted step counts its tests; every other step counts as one test.
#   MDE_QUICK=1   skip the slow steps (sanitizers, valgrind, fuzzing, benchmark)
set -uo pipefail
cd "$(dirname "$0")/.."

.ci/deps.sh test || { echo "could not install the packages"; echo "0 passed, 1 failed"; exit 1; }

passed=0
failed=0
failures=()
logdir=$(mktemp -d)
trap 'rm -rf "$logdir"' EXIT

# step NAME COMMAND...: run a command, count it (busted summaries are counted test by test)
step() {
  local name=$1; shift
  local log="$logdir/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log"
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  local summary ok=0 bad=0
  summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors?' | tail -1)
  if [ -n "$summary" ]; then
    ok=$(echo "$summary" | awk '{print $1}')
    bad=$(( $(echo "$summary" | awk '{print $4}') + $(echo "$summary" | awk '{print $7}') ))
    [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
  elif [ "$rc" -eq 0 ]; then
    ok=1
  else
    bad=1
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
  if [ "$bad" -eq 0 ]; then
    printf '%-44s ok   %5d  (%ds)\n' "$name" "$ok" $((SECONDS - t0))
  else
    printf '%-44s FAIL %5d passed, %d failed (%ds)\n' "$name" "$ok" "$bad" $((SECONDS - t0))
    failures+=("$name")
    sed 's/\x1b\[[0-9;]*m//g' "$log" | tail -60 | sed 's/^/    | /'
  fi
}

busted54() { lua5.4 /usr/bin/busted -o utfTerminal "$@"; }

step "build (gcc, Lua 5.4)"            make -s
step "build (Lua 5.1, 5.2, 5.3, LuaJIT)" make -s all-luas
step "build (clang, -Werror)"          make -s CC=clang BUILD_NAME=clang-check
step "luacheck"                        luacheck -q lua spec bin examples bench
step "cppcheck and clang-tidy"         make -s lint
step "rockspec builds with luarocks"   .ci/luarocks.sh
step "specs (Lua 5.4)"                 busted54
for v in 5.1 5.2 5.3 luajit; do
  if [ "$v" = luajit ]; then interp=luajit; else interp=lua$v; fi
  step "specs (Lua $v: core, client, api)" "$interp" /usr/bin/busted -o utfTerminal \
    spec/core_spec.lua spec/client_spec.lua spec/api_spec.lua spec/filter_spec.lua spec/redact_spec.lua \
    spec/gather_spec.lua spec/pacing_spec.lua
done
if [ -z "${MDE_QUICK:-}" ]; then
  step "specs under ASan/UBSan"         .ci/sanitize.sh
  step "valgrind (error paths)"         .ci/valgrind.sh
  step "fuzzing (libFuzzer, bounded)"   .ci/fuzz.sh 15
  [ -x bench/run.sh ] && step "benchmark (short mode)" bench/run.sh --short
fi

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed steps: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
