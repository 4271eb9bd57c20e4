#!/bin/sh
# bench/sections.sh: the frame and scale sections of the benchmark (`make
# bench` runs it first), on the default engine (tlspeer's mbedtls 3.6) and
# on Debian's mbedtls 2.28.  Writes bench/out/sections.md (the Markdown
# tables) and bench/out/{frame,scale}-{tlspeer,system}.json.
#
#   QUICK=1            --quick sizes and counts, the default engine only
#   BENCH_NO228=1      the default engine only
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
