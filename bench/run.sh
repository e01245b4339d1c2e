#!/usr/bin/env bash
# lua-mde benchmark: one command, loopback only, every process it starts stopped on exit.
#
#   bench/run.sh            full run (~10 minutes on 2 cores)
#   bench/run.sh --short    CI mode (~1-2 minutes): fewer calls, records and repetitions
#
# Builds what it needs (mde.core for Lua 5.4 and, when available, LuaJIT and 5.1; the C
# floor bench/floor.c), starts the bundled MDE-like server and a static nginx, runs every
# tool and prints the result tables (Markdown) on stdout; progress goes to stderr.
# Exits non-zero only when the benchmark itself is broken (a tool fails or returns the
# wrong data), never because a machine is slow.
set -euo pipefail
cd "$(dirname "$0")/.."

args=()
for a in "$@"; do
  case "$a" in
    --short) args+=(--short) ;;
    --only=*) args+=(--only "${a#--only=}") ;;
    --serve=*) args+=(--serve "${a#--serve=}") ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench/run.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done

make -s LUA=5.4 >&2
if command -v luajit >/dev/null 2>&1; then make -s LUA=luajit >&2 || echo "bench: no LuaJIT build" >&2; fi
if command -v lua5.1 >/dev/null 2>&1; then make -s LUA=5.1 >&2 || echo "bench: no Lua 5.1 build" >&2; fi
mkdir -p build/bench
if [ ! build/bench/floor -nt bench/floor.c ]; then
  # Lua linked in statically, as in Debian's lua5.4 interpreter that runs lua-mde (a shared
  # liblua is position-independent code and a few per cent slower); -E lets cjson.so find it
  lua_a=$(pkg-config --variable=libdir lua5.4)/liblua5.4.a
  if [ -f "$lua_a" ]; then lua_libs="-Wl,-E $lua_a -lm -ldl"; else lua_libs=$(pkg-config --libs lua5.4); fi
  cc -O2 -g -std=c99 -Wall -Wextra -o build/bench/floor bench/floor.c \
    $(pkg-config --cflags lua5.4 libcurl) $lua_libs $(pkg-config --libs libcurl)
fi

dir=$(mktemp -d /tmp/mde-bench.XXXXXX)
chmod 0755 "$dir"

cleanup() {
  # the static nginx of this run (its title names our directory)
  if [ -f "$dir/static.pid" ]; then
    pid=$(cat "$dir/static.pid" 2>/dev/null || true)
    if [ -n "$pid" ] && grep -qa -- "$dir" "/proc/$pid/cmdline" 2>/dev/null; then
      kill -QUIT "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.02; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  # the bundled server (its launcher checks the pid is a server it started)
  if [ -f "$dir/server.pid" ]; then
    lua5.4 spec/server/run.lua --stop "$(cat "$dir/server.pid")" >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

lua5.4 bench/bench.lua --dir "$dir" "${args[@]}"
