#!/usr/bin/env bash
# Runs the busted specs against a tlspeer built with AddressSanitizer and
# UndefinedBehaviorSanitizer (`make asan` builds it, then calls this).
#
#   scripts/asan.sh BUILD [busted args...]
#
# The Lua interpreter (LUA_BIN: lua5.4 by default, or luajit, lua5.1...) is
# not instrumented, so the sanitizer runtime is preloaded
# (LD_PRELOAD of the compiler's libasan.so).  Every process the specs start
# inherits that environment; tlspeer only ever runs inside Lua interpreters
# (busted and the fresh ones the specs spawn), and those keep the runtime,
# so a bug in a child interpreter is caught too.  `openssl` and `nginx`, the
# peers the specs start, run through shims (first in PATH) that drop the
# sanitizer environment: they are not ours, uninstrumented, and LeakSanitizer
# would report their exit-time leaks.  Small tools (sh, rm, mktemp, kill...)
# keep it: they are clean, and a report from them fails the run like any
# other (so nothing is silently ignored).
#
# Reports go to files (log_path, one per process, named after the
# executable), so a child that dies of an error cannot hide it behind a
# spec that only checks its output: the run fails if any report was written,
# whatever busted said.  Leaks are checked by LeakSanitizer at exit (busted
# closes the Lua state, so every object's __gc has run); the suppressions in
# scripts/lsan.supp are for the Lua interpreter only and say why.
#
# Environment: CC (the compiler that built BUILD, for its runtime: gcc or
# clang), ASAN_LOG_DIR (keep the reports there instead of a temporary one).
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/asan.sh BUILD [busted args]}
shift
cc=${CC:-gcc}
lua=${LUA_BIN:-lua5.4}
case "$($cc --version 2>/dev/null | head -1)" in
  *clang*) runtime=$($cc -print-file-name=libclang_rt.asan-x86_64.so) ;;
  *)       runtime=$($cc -print-file-name=libasan.so) ;;
esac
[ -f "$runtime" ] || { echo "asan: no sanitizer runtime for $cc ($runtime)" >&2; exit 2; }
[ -f "$build/tlspeer/core.so" ] || { echo "asan: $build/tlspeer/core.so not built" >&2; exit 2; }

work=$(mktemp -d /tmp/tlspeer-asan.XXXXXX)
logdir=${ASAN_LOG_DIR:-$work/logs}
mkdir -p "$logdir"
trap 'rm -rf "$work"' EXIT

# Shims for the peers: the real binary, without the sanitizer environment.
mkdir -p "$work/bin"
for tool in openssl nginx; do
  real=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v "$tool") || continue
  printf '#!/bin/sh\nunset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS\nexec %s "$@"\n' \
    "$real" > "$work/bin/$tool"
  chmod +x "$work/bin/$tool"
done

# Memory errors and undefined behaviour are checked in every process that
# keeps the runtime.  Leak checking is switched on per executable, through
# the runtime's include_if_exists=...%b (%b: the executable's name): only
# the interpreter gets detect_leaks=1.  The small tools the specs call (mktemp, ls...)
# exit without freeing what they allocated, which is theirs, not ours.
mkdir -p "$work/opts"
echo "detect_leaks=1" > "$work/opts/$lua"
common="log_path=$logdir/report:log_exe_name=1"
export PATH="$work/bin:$PATH"
# Full unwinding on malloc gives better stacks, but LuaJIT's machine code
# has no unwind information: the unwinder never ends there.
unwind=0
case "$lua" in *luajit*) unwind=1 ;; esac
export ASAN_OPTIONS="$common:halt_on_error=1:abort_on_error=0:detect_leaks=0:\
check_initialization_order=1:detect_stack_use_after_return=1:\
strict_string_checks=1:fast_unwind_on_malloc=$unwind:\
include_if_exists=$work/opts/%b"
export UBSAN_OPTIONS="$common:halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="$common:suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"

# Specs with time or memory bounds can tell they run under a sanitizer.
export TLSPEER_SANITIZER=asan
# Instrumented crypto is several times slower: the load spec keeps its
# shape (concurrent echo, sequential handshakes, slow loris) at counts that
# fit its time bounds.  make soak runs the full counts without sanitizers.
export TLSPEER_LOAD_CLIENTS="${TLSPEER_LOAD_CLIENTS:-10}"
export TLSPEER_LOAD_HANDSHAKES="${TLSPEER_LOAD_HANDSHAKES:-50}"
start=$(date +%s)
TLSPEER_LUA="$lua" LD_PRELOAD="$runtime" "$lua" /usr/bin/busted --cpath="$build/?.so" "$@"
rc=$?
elapsed=$(( $(date +%s) - start ))

reports=$(find "$logdir" -type f -name 'report*' | sort)
if [ -n "$reports" ]; then
  for r in $reports; do
    printf '\n=== sanitizer report %s\n' "$(basename "$r")" >&2
    cat "$r" >&2
  done
  echo "asan: $(wc -w <<<"$reports") sanitizer report(s) (${elapsed}s)" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "asan: specs failed (busted exit $rc, ${elapsed}s)" >&2
  exit "$rc"
fi
echo "asan: no sanitizer reports, specs passed (${elapsed}s)"
