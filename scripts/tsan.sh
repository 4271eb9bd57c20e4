#!/usr/bin/env bash
# Runs the specs of tlspeer's threaded code against a build made with
# ThreadSanitizer (`make tsan` builds it, then calls this).
#
#   scripts/tsan.sh BUILD [spec files...]
#
# What runs on threads: name lookups and handshake steps (src/workers.c,
# the jobs in src/tcp.c and src/tls.c), handed over to a worker and back
# through the job's state and the pool's lock.  The default specs drive
# both hand-overs hard: the event core and worker spec (lookups that
# stall, disconnects and collections in the middle of a step, fork), the
# helpers, sessions and load specs (many handshakes at once), HTTPRequest
# and WebSocketPeer (lookups, connects and handshakes from tls.poll()).
#
# The interpreter is not instrumented: the runtime is preloaded into it
# (through a wrapper, also for the interpreters the specs start), and
# spec/helpers.lua drops LD_PRELOAD from the environment at once, so the
# shells and tools the specs start never carry it (dash crashes with it).  tlspeer's own files are instrumented; mbedtls is the system
# library and is not, so a race is seen wherever one side of it is in
# tlspeer's code.  Any report fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/tsan.sh BUILD [spec files]}
shift
runtime=$(${CC:-gcc} -print-file-name=libtsan.so)
[ -f "$runtime" ] || { echo "tsan: no ThreadSanitizer runtime ($runtime)" >&2; exit 2; }
[ -f "$build/tlspeer/core.so" ] || { echo "tsan: $build/tlspeer/core.so not built" >&2; exit 2; }
if [ $# -gt 0 ]; then
  files=("$@")
else
  files=(spec/25-event_core_spec.lua spec/11-helpers_spec.lua spec/15-sessions_spec.lua
         spec/19-load_spec.lua spec/27-httprequest_spec.lua spec/29-websocket_spec.lua)
fi

work=$(mktemp -d /tmp/tlspeer-tsan.XXXXXX)
trap 'rm -rf "$work"' EXIT
logdir=$work/logs
mkdir -p "$logdir"
printf '#!/bin/sh\nLD_PRELOAD=%s exec lua5.4 "$@"\n' "$runtime" > "$work/lua5.4"
chmod +x "$work/lua5.4"
# die_after_fork=0: the fork spec's child starts pools of its own, which
# ThreadSanitizer does not follow but need not stop.
export TSAN_OPTIONS="log_path=$logdir/report:halt_on_error=0:die_after_fork=0:second_deadlock_stack=1"
export TLSPEER_SANITIZER=tsan
export TLSPEER_LOAD_CLIENTS="${TLSPEER_LOAD_CLIENTS:-10}"
export TLSPEER_LOAD_HANDSHAKES="${TLSPEER_LOAD_HANDSHAKES:-50}"
start=$(date +%s)
TLSPEER_LUA="$work/lua5.4" "$work/lua5.4" /usr/bin/busted --cpath="$build/?.so" ${BUSTED_ARGS:-} "${files[@]}"
rc=$?
elapsed=$(( $(date +%s) - start ))

reports=$(find "$logdir" -type f -name 'report*' | sort)
if [ -n "$reports" ]; then
  for r in $reports; do
    printf '\n=== ThreadSanitizer report %s\n' "$(basename "$r")" >&2
    cat "$r" >&2
  done
  echo "tsan: $(wc -w <<<"$reports") report(s) (${elapsed}s)" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  echo "tsan: specs failed (busted exit $rc, ${elapsed}s)" >&2
  exit "$rc"
fi
echo "tsan: no reports, specs passed (${elapsed}s)"
