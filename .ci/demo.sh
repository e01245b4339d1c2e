#!/usr/bin/env bash
# lua-mde in one command: build, start the bundled MDE-like server on 127.0.0.1, and run the
# `mde` tool against it the way a security team would.
#
#   bash .ci/demo.sh            (from the repository root or anywhere; root or sudo for missing packages)
#
# It installs the Debian packages it needs (.ci/deps.sh build), builds the C core (make),
# starts spec/server/run.lua, writes out/report.html, prints the summary and the scan history of
# the documented sample session, and stops the server when it exits, whatever happens.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

# only the settings given below reach bin/mde
for v in $(compgen -e | grep '^MDE_' || true); do unset "$v"; done

step() { printf '\n\033[1m== %s\033[0m\n' "$*" 2>/dev/null || printf '\n== %s\n' "$*"; }
[ -t 1 ] || step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

step "1/5 Packages (.ci/deps.sh build: installs only what is missing)"
bash .ci/deps.sh build
echo "ok"

step "2/5 Building the C core (make)"
log=$(mktemp)
if ! make >"$log" 2>&1; then cat "$log" >&2; rm -f "$log"; exit 1; fi
rm -f "$log"
echo "ok: build/lua5.4/mde/core.so"

step "3/5 Starting the bundled local MDE-like server (spec/server/run.lua)"
server_env=$(lua5.4 spec/server/run.lua)
eval "$server_env"           # exports MDE_BASE_URL MDE_AUTHORITY MDE_CA_FILE MDE_PID ...
SERVER_PID=$MDE_PID
stop_server() { lua5.4 "$ROOT/spec/server/run.lua" --stop "$SERVER_PID" >/dev/null 2>&1 || true; }
trap stop_server EXIT
export MDE_TENANT_ID=t MDE_CLIENT_ID=c MDE_CLIENT_SECRET=s
export MDE_BASE_URL MDE_AUTHORITY MDE_CA_FILE
unset MDE_CERT_FILE MDE_KEY_FILE
echo "API and token service: $MDE_BASE_URL (tenant t, client c, secret in MDE_CLIENT_SECRET)"
echo "TLS is verified against the server's test CA: $MDE_CA_FILE"

step "4/5 Report over every scan definition of the server"
mde="$ROOT/bin/mde"
ids=$("$mde" definitions --columns id --format csv --no-header | tr -d '\r' | tr '\n' ' ')
mkdir -p out
show "bin/mde definitions --columns id --format csv --no-header"
echo "$ids"
show "bin/mde report $ids--html out/report.html"
start=$(date +%s.%N)
# shellcheck disable=SC2086
"$mde" report $ids --html out/report.html
end=$(date +%s.%N)

step "5/5 Scan history of the documented sample session, one row per scanned target"
show "bin/mde history 01decc497f4b4ec49a5fc4e12597f8c8 --targets --format table"
"$mde" history 01decc497f4b4ec49a5fc4e12597f8c8 --targets --format table

printf '\nThe HTML report (self-contained, no script): %s\n' "$ROOT/out/report.html"
awk -v a="$start" -v b="$end" 'BEGIN { printf "Report produced in %.2f s.\n", b - a }'
cat <<'EOF'

Next, against the local server or your tenant (export MDE_TENANT_ID, MDE_CLIENT_ID, MDE_CLIENT_SECRET):
  bin/mde help
  bin/mde sessions --status Failed --since 2024-06-28 --targets --format table
  bin/mde sessions --failed-targets --targets --format csv -o failed-targets.csv
  bin/mde definitions --format json
The server stops now.
EOF
