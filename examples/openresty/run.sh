#!/bin/sh
# Run the OpenResty example against the bundled MDE-like test server, in one command:
#
#   examples/openresty/run.sh            # then open the URLs it prints; Ctrl-C stops everything
#   PORT=9090 examples/openresty/run.sh  # another port (default 8080), loopback only
#
# Starts spec/server (nginx + Lua, HTTPS on a random 127.0.0.1 port), then nginx with
# examples/openresty/nginx.conf (in the foreground) under a temporary prefix whose repo/ links
# to this repository. Needs lua5.4, nginx with libnginx-mod-http-lua, curl, openssl, and the
# C core for LuaJIT (built here when missing: make LUA=luajit).
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PORT=${PORT:-8080}
NGINX=${MDE_NGINX:-nginx}
cd "$ROOT"

[ -f build/luajit/mde/core.so ] || make LUA=luajit

# the test server: sets MDE_BASE_URL MDE_AUTHORITY MDE_CA_FILE MDE_TENANT MDE_CLIENT_ID ... MDE_PID
eval "$(lua5.4 spec/server/run.lua --workers 1)"

PREFIX=$(mktemp -d /tmp/mde-openresty.XXXXXX)
cleanup() {
    trap - EXIT INT TERM
    if [ -f "$PREFIX/logs/nginx.pid" ]; then kill -QUIT "$(cat "$PREFIX/logs/nginx.pid")" 2>/dev/null || true; fi
    lua5.4 spec/server/run.lua --stop "$MDE_PID" >/dev/null 2>&1 || true
    rm -rf "$PREFIX"
}
trap cleanup EXIT INT TERM

# nginx's workers run as nobody when started as root, and nobody cannot read a clone under a
# private directory (/root is 0700): started as root, this demo runs its workers as root too
chmod 0755 "$PREFIX"
GLOBALS="daemon off;"
if [ "$(id -u)" = 0 ]; then GLOBALS="daemon off; user root;"; fi
mkdir -p "$PREFIX/logs" "$PREFIX/tmp"
ln -s "$ROOT" "$PREFIX/repo"
sed "s/listen 127\.0\.0\.1:8080;/listen 127.0.0.1:$PORT;/" examples/openresty/nginx.conf >"$PREFIX/nginx.conf"

MDE_TENANT_ID=$MDE_TENANT MDE_CLIENT_ID=$MDE_CLIENT_ID MDE_CLIENT_SECRET=$MDE_CLIENT_SECRET
export MDE_TENANT_ID MDE_CLIENT_ID MDE_CLIENT_SECRET MDE_BASE_URL MDE_AUTHORITY MDE_CA_FILE

cat <<MSG
test server: $MDE_BASE_URL   (control: $MDE_CONTROL_URL)
example:     http://127.0.0.1:$PORT
  curl 'http://127.0.0.1:$PORT/history?session=01decc497f4b4ec49a5fc4e12597f8c8'
  curl 'http://127.0.0.1:$PORT/history?session=5e510000000000000000000000000000,5e510000000000000000000000000001'
  open http://127.0.0.1:$PORT/failed?definition=4ad8d463-6b3a-4894-b42a-a2de9ea0a8ae
  curl -X POST $MDE_CONTROL_URL/_test/control -d '{"delay":1}'   # a slow API: /ping still answers at once
logs: $PREFIX/logs/error.log     Ctrl-C stops nginx and the test server
MSG

env -u LD_PRELOAD "$NGINX" -p "$PREFIX" -e "$PREFIX/logs/error.log" -c "$PREFIX/nginx.conf" -g "$GLOBALS"
