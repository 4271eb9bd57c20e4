#!/bin/sh
# bench/sections.sh: the frame and scale sections of the benchmark (issue 12,
# "Measured"), on Debian's mbedtls 2.28 and, when available, mbedtls 3.6.
# Writes bench/out/sections.md (the Markdown tables) and
# bench/out/{frame,scale}-{2.28,3.6}.json.
#
#   QUICK=1            --quick sizes and counts, 2.28 only (about 2 minutes)
#   MBEDTLS_PREFIX=p   the mbedtls 3.6 prefix (else scripts/mbedtls3.sh in a full run)
#   BENCH_NO36=1       skip mbedtls 3.6
#   SECTIONS="frame scale"   which sections
#
# Needs python3 and openssl (the peers), lua-cqueues and lua-luaossl (the
# scale comparison: installed here when missing), valgrind (optional: the
# callgrind counts), and root for the dns scenarios of the frame section
# (a network namespace; they are reported as skipped otherwise).
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
MAKE=${MAKE:-make}
OUT=bench/out
SECTIONS=${SECTIONS:-"frame scale"}
mkdir -p "$OUT"

need=""
$LUA -e 'require "cqueues"; require "openssl.ssl.context"' 2>/dev/null || need="$need lua-cqueues lua-luaossl"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v python3 >/dev/null 2>&1 || need="$need python3"
if [ -n "$need" ]; then
  echo "bench: installing$need" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y $need >&2
  else sudo apt-get install -y $need >&2; fi
fi

$MAKE --no-print-directory BUILD=build MBEDTLS_PREFIX= all >&2
builds="2.28=build=mbedtls 2.28 (Debian)"
P=${MBEDTLS_PREFIX:-}
if [ -z "$P" ] && [ -z "${QUICK:-}" ] && [ -z "${BENCH_NO36:-}" ]; then
  P=$(scripts/mbedtls3.sh 2>>"$OUT/errors.log" | tail -1) || P=""
fi
if [ -n "$P" ] && [ -z "${BENCH_NO36:-}" ]; then
  $MAKE --no-print-directory BUILD=build-3.6 MBEDTLS_PREFIX="$P" build-3.6/tlspeer/core.so >&2
  builds="$builds
3.6=build-3.6=mbedtls 3.6"
fi

q=""
[ -n "${QUICK:-}" ] && q="--quick"
: > "$OUT/sections.md"
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
    echo "bench: $s section, $label" >&2
    LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$dir/?.so;;" LUA=$LUA \
      $LUA "bench/$s.lua" $q --label "$label" --out "$OUT/$s-$tag.json" >> "$OUT/sections.md"
  done
  IFS='
'
done
IFS=$old_ifs
cat "$OUT/sections.md"
