#!/usr/bin/env bash
# Valgrind memcheck over the specs that drive mde.core, with the collector running almost
# continuously (pause 0), so a handle freed too early or a missing anchor shows up as an
# invalid read, and a leak in the module as "definitely/indirectly lost". Fails on any error
# and on any definite or indirect leak.
# Usage: .ci/valgrind.sh [spec files, default: the core spec and the client/auth specs, which
# drive its error paths: resets, truncations, timeouts, bad keys]
set -euo pipefail
cd "$(dirname "$0")/.."

make -s LUA=5.4
[ $# -gt 0 ] || set -- --filter-out=soak spec/core_spec.lua spec/auth_spec.lua spec/client_spec.lua \
  spec/reliability_spec.lua spec/secrets_spec.lua

# The specs start nginx, openssl and curl as children: those are not traced.
export LUA_INIT_5_4='collectgarbage("incremental", 0, 400)'
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --error-exitcode=99 --track-origins=yes --keep-debuginfo=yes \
  --suppressions=.ci/valgrind.supp --log-file="$log" \
  lua5.4 /usr/bin/busted "$@" || status=$?
cat "$log"
if [ "$status" -eq 99 ]; then
  echo "valgrind.sh: memory errors or leaks (see above)" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "valgrind.sh: the specs failed under valgrind (exit $status)" >&2
  exit 1
fi
echo "valgrind.sh: no memory errors, 0 bytes definitely or indirectly lost over: $*"
