#!/usr/bin/env bash
# ASan + UBSan over the busted specs: builds build/asan/mde/core.so (make asan, clang) and runs
# the specs with the uninstrumented lua5.4 and clang's shared ASan runtime preloaded.
# Usage: .ci/sanitize.sh [busted arguments, default: every spec that drives mde.core]
#
# Leaks are not checked here (detect_leaks=0): Lua dlcloses C modules at exit, so LeakSanitizer
# can no longer name them, and the shell commands the specs run would report their own.
# .ci/valgrind.sh checks the module for leaks instead.
set -euo pipefail
cd "$(dirname "$0")/.."

make asan >/dev/null
rt=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-x86_64.so 2>/dev/null | head -n 1 || true)
[ -n "$rt" ] || rt=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
[ -f "$rt" ] || { echo "sanitize.sh: no libclang_rt.asan-x86_64.so (install libclang-rt-14-dev)" >&2; exit 1; }

# The specs start their tools (nginx, openssl, curl) as `env -u LD_PRELOAD ...`
# (spec/helpers/certs.lua CLEAN_ENV): the runtime is for the interpreter only.
export MDE_BUILD_DIR=build/asan
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# The soak test measures RSS, which ASan's quarantine makes meaningless.
[ $# -gt 0 ] || set -- --filter-out=soak spec/core_spec.lua spec/client_spec.lua spec/api_spec.lua \
  spec/auth_spec.lua spec/secrets_spec.lua spec/errors_spec.lua spec/reliability_spec.lua
LD_PRELOAD="$rt" lua5.4 /usr/bin/busted "$@"
echo "sanitize.sh: ASan + UBSan clean over: $*"
