#!/usr/bin/env bash
# Install the Debian 12 packages lua-mde builds and tests with, when they are missing.
# Usage: .ci/deps.sh [build|test]   (build: what the library and its demo need; test: everything)
set -euo pipefail

build_pkgs=(make gcc pkg-config ca-certificates openssl curl
  lua5.4 liblua5.4-dev libcurl4-openssl-dev libssl-dev lua-cjson
  nginx libnginx-mod-http-lua lua-resty-core lua-resty-lrucache)
test_pkgs=(lua-busted lua-check luarocks lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev
  luajit2 libluajit2-5.1-dev lua-socket lua-sec
  clang libclang-rt-14-dev valgrind cppcheck clang-tidy
  python3-requests lua-curl chromium procps)

want=("${build_pkgs[@]}")
[ "${1:-test}" = test ] && want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
