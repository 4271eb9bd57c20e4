#!/usr/bin/env bash
# Runs the LÖVE example game (examples/love) the way CI does: tlspeer built
# for LuaJIT, the TLS echo and HTTPS servers of examples/echo_server.lua on
# free ports, LÖVE under a virtual X display (xvfb-run; OpenGL through
# Mesa), then checks what the game printed.  `make love` calls it.
#   scripts/love.sh [BUILD]      (BUILD: the LuaJIT build, build-luajit)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-luajit}
for cmd in love:love xvfb-run:xvfb; do
  command -v "${cmd%%:*}" >/dev/null && continue
  s=; [ "$(id -u)" -eq 0 ] || s=sudo
  $s apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $s apt-get install -y -qq love xvfb xauth >/dev/null
  break
done
[ -f "$build/tlspeer/core.so" ] || { echo "love: $build/tlspeer/core.so not built (make LUA=luajit)" >&2; exit 2; }

work=$(mktemp -d /tmp/tlspeer-love.XXXXXX)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The servers: tlspeer on Lua 5.4 (the default build), free ports.
TLSPEER_BUILD=build lua5.4 examples/echo_server.lua 0 0 0 --ports "$work/ports" >"$work/servers.log" 2>&1 &
server=$!
for _ in $(seq 100); do [ -f "$work/ports" ] && break; sleep 0.05; done
read -r echo_port https_port wss_port <"$work/ports"

rc=0
TLSPEER_BUILD="$PWD/$build" TLSPEER_ROOT="$PWD" TLSPEER_LOVE_EXIT=1 \
TLSPEER_LOVE_URL="https://localhost:$https_port/" TLSPEER_LOVE_ECHO="localhost:$echo_port" \
TLSPEER_LOVE_WS="wss://localhost:$wss_port/game" \
TLSPEER_LOVE_SHOT="${LOVE_SHOT:-$work/shot.png}" \
  timeout 60 xvfb-run -a love examples/love >"$work/out.log" 2>&1 || rc=$?
cat "$work/out.log"
grep -q '^\[love\] https: 200, 30 bytes' "$work/out.log"
grep -q '^\[love\] httprequest: 200, 30 bytes' "$work/out.log"
grep -q '^\[love\] echo: 3/3 messages echoed' "$work/out.log"
grep -q '^\[love\] websocket: 3/3 messages echoed' "$work/out.log"
grep -q '^\[love\] result: OK' "$work/out.log"
[ -s "${LOVE_SHOT:-$work/shot.png}" ] || { echo "love: no screenshot was saved" >&2; exit 1; }
[ "$rc" -eq 0 ] || { echo "love: exit code $rc" >&2; exit 1; }
echo "love: the example game ran in LÖVE: HTTPS (HTTPClient and HTTPRequest), the TLS echo and the WebSocket worked, the frame was drawn"
