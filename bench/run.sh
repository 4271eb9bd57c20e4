#!/bin/sh
# bench/run.sh: what `make bench` runs.  Installs what is missing (LuaSec,
# LuaSocket, gnuplot), builds tlspeer and the C baseline against mbedtls 2.28
# (Debian) and, when available, 3.6 (MBEDTLS_PREFIX, or scripts/mbedtls3.sh
# in a full run), makes the certificates, then runs bench/run.lua.
#
#   QUICK=1            small sizes and counts, 2.28 only (under a minute)
#   MBEDTLS_PREFIX=p   the mbedtls 3.6 prefix for the second section
#   BENCH_NO36=1       skip the mbedtls 3.6 section
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
MAKE=${MAKE:-make}
OUT=bench/out
mkdir -p "$OUT"
: > "$OUT/errors.log"

# Dependencies: Debian packages, installed only when missing.
need=""
$LUA -e 'require "ssl"; require "socket"' 2>/dev/null || need="$need lua-sec lua-socket"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
if [ -n "$need" ]; then
  echo "bench: installing$need" >&2
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y $need >&2
  else sudo apt-get install -y $need >&2; fi
fi

# tlspeer against Debian's mbedtls 2.28, and its C baseline.
$MAKE --no-print-directory BUILD=build MBEDTLS_PREFIX= all >&2
$CC -O2 -g -Wall -Wextra -o "$OUT/baseline-2.28" bench/baseline.c \
    -lmbedtls -lmbedx509 -lmbedcrypto
sections="mbedtls 2.28=build/?.so=$OUT/baseline-2.28=0"

# mbedtls 3.6: the prefix given, or (full run) the one scripts/mbedtls3.sh
# builds or finds.
P=${MBEDTLS_PREFIX:-}
if [ -z "$P" ] && [ -z "${QUICK:-}" ] && [ -z "${BENCH_NO36:-}" ]; then
  P=$(scripts/mbedtls3.sh 2>>"$OUT/errors.log" | tail -1) || P=""
fi
if [ -n "$P" ] && [ -z "${BENCH_NO36:-}" ]; then
  $MAKE --no-print-directory BUILD=build-3.6 MBEDTLS_PREFIX="$P" build-3.6/tlspeer/core.so >&2
  $CC -O2 -g -Wall -Wextra -I"$P/include" -o "$OUT/baseline-3.6" bench/baseline.c \
      "$P/lib/libmbedtls.a" "$P/lib/libmbedx509.a" "$P/lib/libmbedcrypto.a" -lpthread
  sections="$sections
mbedtls 3.6=build-3.6/?.so=$OUT/baseline-3.6=1"
fi

# Certificates: the dev CA of certs/ (make certs), leaves made by tlspeer.
[ -f certs/ca.key ] || $MAKE --no-print-directory certs >&2
mkdir -p "$OUT/certs"
LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
  $LUA bench/gencerts.lua "$OUT/certs"

# 1,000 connections per process, two descriptors each on the server side.
ulimit -n 8192 2>/dev/null || ulimit -n 4096 2>/dev/null || true

set --
[ -n "${QUICK:-}" ] && set -- --quick
# One argument per section (names hold spaces).
old_ifs=$IFS
IFS='
'
for s in $sections; do set -- "$@" "$s"; done
IFS=$old_ifs
LUA=$LUA exec $LUA bench/run.lua "$@"
