#!/usr/bin/env bash
# Runs busted specs under valgrind's memcheck against BUILD/tlspeer/core.so
# (`make valgrind` builds it, then calls this).
#
#   scripts/valgrind.sh BUILD            the CI subset (below)
#   FULL=1 scripts/valgrind.sh BUILD     every spec file
#   scripts/valgrind.sh BUILD FILES...   those spec files
#
# What is checked: the busted process, which loads tlspeer and runs the
# specs.  Any memcheck error (invalid read/write, use of uninitialised
# memory in a jump or a syscall, invalid free...) and any *definite* leak
# fails the run (--errors-for-leak-kinds=definite --error-exitcode).  The
# leak check is meaningful: busted ends with os.exit(code, true) or by
# returning from its main chunk, and either way lua5.4 closes the Lua state,
# so every tlspeer object has been through its __gc before valgrind looks.
# Children (the fresh lua5.4 some specs start, openssl, nginx) are not
# traced: that would multiply the run time by the suite's many tiny
# processes, and the asan target checks the child interpreters.
#
# The subset.  Under memcheck the Lua interpreter runs ~30-50x slower, and
# the whole suite takes far longer than CI can afford (02-hashing builds
# its inputs byte by byte in Lua; 04-key tries 700 wrong passwords through
# a KDF; 05-x509 generates RSA-2048 keys: minutes each).  The subset still
# calls into every C file:
#   01-module          core.c, aux.c (module load, the DRBG, <close>)
#   06-misuse          every method of every class with good, wrong-typed
#                      and closed arguments, and GC ordering: crypto.c,
#                      hashing.c, key.c, x509.c, options.c, tcp.c, tls.c
#   10-options_bundle  options.c, cabundle.c (TLSOptions, CA bundles)
#   15-sessions        tcp.c, tls.c: full handshakes against openssl,
#                      session tickets and resumption
# (11-helpers would be the natural in-process client+server test, but its
# pumps have deadlines of a few seconds that memcheck's slowness misses.)
# `make valgrind FULL=1` runs every spec file.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/valgrind.sh BUILD [spec files]}
shift
[ -f "$build/tlspeer/core.so" ] || { echo "valgrind: $build/tlspeer/core.so not built" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 2; }

subset="spec/01-module_spec.lua spec/06-misuse_spec.lua
spec/10-options_bundle_spec.lua spec/15-sessions_spec.lua"
if [ $# -gt 0 ]; then
  files=("$@")
elif [ "${FULL:-0}" = 1 ]; then
  files=(spec)
else
  # shellcheck disable=SC2206
  files=($subset)
fi

log=$(mktemp /tmp/tlspeer-valgrind.XXXXXX)
# Specs with time or memory bounds can tell they run under a sanitizer.
export TLSPEER_SANITIZER=valgrind
# The load spec at the counts the other sanitizers use (its time bounds
# are for a native run of the full counts).
export TLSPEER_LOAD_CLIENTS="${TLSPEER_LOAD_CLIENTS:-10}"
export TLSPEER_LOAD_HANDSHAKES="${TLSPEER_LOAD_HANDSHAKES:-50}"
start=$(date +%s)
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite \
  --errors-for-leak-kinds=definite --error-exitcode=99 \
  --track-origins=yes --num-callers=40 \
  --suppressions="$PWD/scripts/valgrind.supp" --gen-suppressions=all \
  --log-file="$log" \
  lua5.4 /usr/bin/busted --cpath="$build/?.so" ${BUSTED_ARGS:-} "${files[@]}"
rc=$?
elapsed=$(( $(date +%s) - start ))

# The summary, and every error or leak in full.
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|possibly lost' "$log" \
  | sed 's/^==[0-9]*== */valgrind: /'
# Every process counts: the busted process, and the children it forks
# (spec 22 forks workers), each with an ERROR SUMMARY of its own.
if [ "$rc" -eq 99 ] || grep -q 'ERROR SUMMARY: [1-9]' "$log" ||
   ! grep -q 'ERROR SUMMARY: 0 errors' "$log"; then
  cat "$log" >&2
  echo "valgrind: memcheck found errors or definite leaks (${elapsed}s, log $log)" >&2
  exit 1
fi
rm -f "$log"
if [ "$rc" -ne 0 ]; then
  echo "valgrind: specs failed (busted exit $rc, ${elapsed}s)" >&2
  exit "$rc"
fi
echo "valgrind: 0 errors, 0 definite leaks, specs passed (${elapsed}s)"
