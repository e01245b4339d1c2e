#!/usr/bin/env bash
# Build and install the rockspec offline into a scratch tree (from a copy of the
# sources, so the checkout stays clean), then load the library and the tool from there.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tar --exclude=./build --exclude=./.git -cf - . | tar -xf - -C "$scratch"
tree="$scratch/tree"
(cd "$scratch" && luarocks --lua-version=5.4 --tree "$tree" make --deps-mode=none \
  CURL_INCDIR=/usr/include/x86_64-linux-gnu lua-mde-scm-1.rockspec)
LUA_PATH="$tree/share/lua/5.4/?.lua;;" LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
  lua5.4 -e 'local mde = require "mde"; assert(mde.new{ token = "x" }); print(mde._VERSION, "loaded from the rock tree")'
test -x "$tree/bin/mde"
# every Lua module of lua/ is in the rockspec
for f in $(cd lua && find . -name "*.lua" | sort); do
  grep -q "\"lua/${f#./}\"" lua-mde-scm-1.rockspec || { echo "lua/${f#./} is not in lua-mde-scm-1.rockspec" >&2; exit 1; }
done
