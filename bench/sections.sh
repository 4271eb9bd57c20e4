#!/bin/sh
# bench/sections.sh: the frame and scale sections of the benchmark (`make
# bench` runs it first), on the default engine (tlspeer's mbedtls 3.6) and
# on Debian's mbedtls 2.28, then HTTPRequest (bench/httprequest.lua) and
# WebSocket (bench/websocket.lua) on the default engine.  Writes
# bench/out/sections.md (the Markdown tables) and
# bench/out/{frame,scale}-{tlspeer,system}.json.
#
#   QUICK=1            --quick sizes and counts, the default engine only
#   BENCH_NO228=1      frame and scale on the default engine only
#   SECTIONS="frame scale httprequest websocket"   which sections
#
# Needs python3 and openssl (the peers), lua-cqueues and lua-luaossl (the
# scale comparison), nginx-light (HTTPRequest), python3-websockets, node
# and node's ws (WebSocket; ws from the npm registry into
# ~/.cache/tlspeer/npm), all installed here when missing; valgrind
# (optional: the callgrind counts), and root for the dns scenarios of the
# frame section (a network namespace; they are reported as skipped
# otherwise).
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
MAKE=${MAKE:-make}
OUT=bench/out
SECTIONS=${SECTIONS:-"frame scale httprequest websocket"}
mkdir -p "$OUT"

need=""
$LUA -e 'require "cqueues"; require "openssl.ssl.context"' 2>/dev/null || need="$need lua-cqueues lua-luaossl"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v python3 >/dev/null 2>&1 || need="$need python3"
case $SECTIONS in *httprequest*)
  [ -x /usr/sbin/nginx ] || need="$need nginx-light" ;; esac
case $SECTIONS in *websocket*)
  python3 -c 'import websockets' 2>/dev/null || need="$need python3-websockets"
  command -v node >/dev/null 2>&1 || need="$need nodejs"
  command -v npm >/dev/null 2>&1 || need="$need npm" ;; esac
if [ -n "$need" ]; then
  echo "bench: installing$need" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y $need >&2
  else sudo apt-get install -y $need >&2; fi
fi
case $SECTIONS in *websocket*)
  npm_dir=${HOME:-/tmp}/.cache/tlspeer/npm
  [ -f "$npm_dir/node_modules/ws/package.json" ] ||
    { mkdir -p "$npm_dir" && (cd "$npm_dir" && npm install --no-audit --no-fund --silent ws@8) >&2; } ;; esac

# Builds of their own, every make variable given here.
unset MBEDTLS_PREFIX MBEDTLS BUILD CFLAGS LDFLAGS WERROR MAKEFLAGS MFLAGS MAKELEVEL 2>/dev/null || true
$MAKE --no-print-directory LUA=5.4 MBEDTLS=tlspeer BUILD=$OUT/sections-tlspeer all >&2
builds="tlspeer=$OUT/sections-tlspeer=tlspeer's mbedtls 3.6 (the default engine)"
if [ -z "${QUICK:-}" ] && [ -z "${BENCH_NO228:-}" ]; then
  $MAKE --no-print-directory LUA=5.4 MBEDTLS=system BUILD=$OUT/sections-system all >&2
  builds="$builds
system=$OUT/sections-system=mbedtls 2.28 (Debian)"
fi

q=""
[ -n "${QUICK:-}" ] && q="--quick"
: > "$OUT/sections.md"
# A section that fails is reported in the tables (with the end of its
# error output) and the others still run; the exit status says so.
status=0
failed() {
  status=1
  cat "$3" >&2
  { printf '\n### The %s section failed (%s)\n\n```\n' "$1" "$2"
    tail -n 15 "$3"; printf '```\n\n'; } >> "$OUT/sections.md"
}
old_ifs=$IFS
IFS='
'
for b in $builds; do
  IFS=$old_ifs
  tag=${b%%=*}
  [ -n "${QUICK:-}" ] && tag="$tag-quick"
  rest=${b#*=}
  dir=${rest%%=*}
  label=${rest#*=}
  for s in $SECTIONS; do
    # HTTPRequest and WebSocket: on the default engine only.
    case $s in httprequest|websocket) [ "${tag%-quick}" = tlspeer ] || continue ;; esac
    echo "bench: $s section, $label" >&2
    case $s in httprequest|websocket)
      LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$dir/?.so;;" \
        $LUA "bench/$s.lua" $q >> "$OUT/sections.md" 2> "$OUT/$s-$tag.err" ||
        failed "$s" "$label" "$OUT/$s-$tag.err"
      continue ;; esac
    LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$dir/?.so;;" LUA=$LUA \
      $LUA "bench/$s.lua" $q --label "$label" --out "$OUT/$s-$tag.json" \
      >> "$OUT/sections.md" 2> "$OUT/$s-$tag.err" || failed "$s" "$label" "$OUT/$s-$tag.err"
  done
  IFS='
'
done
IFS=$old_ifs
cat "$OUT/sections.md"
exit $status
