#!/bin/sh
# bench/run.sh: what `make bench` runs.  Three sections, side by side in one
# run, one per mbedtls build:
#
#   tlspeer   mbedtls 3.6 as tlspeer builds it (scripts/mbedtls3.sh tlspeer,
#             scripts/mbedtls-tlspeer.cfg): the default engine
#   debian    mbedtls 3.6 as Debian configures it (scripts/mbedtls3.sh debian)
#   system    Debian bookworm's mbedtls 2.28 (libmbedtls-dev)
#
# For each, tlspeer (bench/out/build-NAME/tlspeer/core.so), the C baseline
# and bench/engine.c are built against that mbedtls, with every make
# variable given explicitly (none is taken from the environment), and then
# checked to be what the section claims -- mbedtls' version, the core.so
# actually loaded, the build marker scripts/mbedtls3.sh puts into the
# mbedtls it builds (flavour and configuration checksum), or Debian's shared
# library for 2.28 -- before anything is measured; a mismatch stops the run.
# Then bench/run.lua measures and writes BENCHMARKS.md.
#
#   QUICK=1                  fewer rows, sizes and repeats (under 2 minutes)
#   BENCH_SECTIONS="..."     a subset, in order (default: tlspeer debian system)
#   BENCH_TLSPEER_CFG=F.cfg  measure another configuration (a candidate of
#                            bench/candidates/) as the tlspeer section
#   BENCH_NO_CALLGRIND=1     wall-clock only
#   BENCH_NO_SECTIONS=1      without the frame and scale sections
#                            (bench/sections.sh, bench/SECTIONS.md)
set -eu
cd "$(dirname "$0")/.."
LUA=${LUA:-lua5.4}
CC=${CC:-cc}
MAKE=${MAKE:-make}
OUT=bench/out
mkdir -p "$OUT"
: > "$OUT/errors.log"
: > "$OUT/build.log"

die() { echo "bench: $*" >&2; exit 1; }
# make, with every variable that selects what is built given here: LUA is
# this script's interpreter, not the Makefile's runtime name (5.4).
mk() {
  $MAKE --no-print-directory LUA=5.4 LUA_BIN="$LUA" WERROR= CFLAGS="-O2 -g" "$@" \
    >>"$OUT/build.log" 2>&1 || { tail -n 20 "$OUT/build.log" >&2; die "make $* failed"; }
}

# Nothing of the caller's make or mbedtls selection leaks into the builds
# below (on a fresh clone `make certs` once took MBEDTLS_PREFIX from the
# environment and built the 2.28 section against 3.6 without notice).
if [ -n "${MBEDTLS_PREFIX:-}" ]; then
  echo "bench: MBEDTLS_PREFIX=$MBEDTLS_PREFIX is not used: each section builds its own" >&2
fi
unset MBEDTLS_PREFIX MBEDTLS BUILD CFLAGS LDFLAGS WERROR MAKEFLAGS MFLAGS MAKELEVEL \
      TLSPEER_BUILD LUA_CPATH LUA_PATH 2>/dev/null || true

# Dependencies: Debian packages, installed only when missing.
need=""
$LUA -e 'require "ssl"; require "socket"' 2>/dev/null || need="$need lua-sec lua-socket"
command -v gnuplot >/dev/null 2>&1 || need="$need gnuplot-nox"
[ -n "${BENCH_NO_CALLGRIND:-}" ] || command -v valgrind >/dev/null 2>&1 || need="$need valgrind"
[ -f /usr/include/mbedtls/version.h ] || need="$need libmbedtls-dev"
if [ -n "$need" ]; then
  echo "bench: installing$need" >&2
  # shellcheck disable=SC2086  # a list of package names
  if [ "$(id -u)" -eq 0 ]; then apt-get install -y $need >&2
  else sudo apt-get install -y $need >&2; fi
fi

header_version() {   # MBEDTLS_VERSION_STRING of an include directory
  sed -n 's/^#define MBEDTLS_VERSION_STRING *"\([^"]*\)".*/\1/p' \
    "$1/mbedtls/build_info.h" "$1/mbedtls/version.h" 2>/dev/null | head -n1
}

# ident PROGRAM...: the "key value" lines of its `version` mode, one per
# line as key=value (values keep their spaces).
ident() { "$@" version 2>>"$OUT/errors.log" | sed 's/^\([a-z_]*\) /\1=/'; }
field() { printf '%s\n' "$1" | sed -n "s/^$2=//p"; }

# check NAME WHAT IDENT VERSION MARKER LIBRARY: WHAT's identity must match.
check() {
  v=$(field "$3" mbedtls_version); m=$(field "$3" marker); l=$(field "$3" library)
  bad=""
  [ "$v" = "$4" ] || bad="$bad mbedtls $v, not $4;"
  [ "$m" = "$5" ] || bad="$bad build \"$m\", not \"$5\";"
  case $6 in
    static) [ "$l" = static ] || bad="$bad loads $l, not static mbedtls;" ;;
    system) case $l in /usr/lib/*/libmbedtls.so* | /lib/*/libmbedtls.so*) ;;
              *) bad="$bad loads \"$l\", not the system's libmbedtls;" ;; esac ;;
  esac
  [ -z "$bad" ] || die "section \"$1\": $2 is not the build it claims:$bad"
}

sections=""
for s in ${BENCH_SECTIONS:-tlspeer debian system}; do
  b=$OUT/build-$s
  case $s in
    tlspeer | debian)
      flavour=$s
      [ "$s" = debian ] || flavour=${BENCH_TLSPEER_CFG:-tlspeer}
      P=$(scripts/mbedtls3.sh "$flavour" 2>>"$OUT/errors.log" | tail -n1) ||
        die "scripts/mbedtls3.sh $flavour failed (see $OUT/errors.log)"
      want_version=$(header_version "$P/include")
      want_marker=$(sed -n 's/^marker: //p' "$P/.tlspeer-installed")
      want_lib=static
      title="mbedtls $want_version, $( [ "$s" = debian ] && echo "Debian's configuration" || echo "tlspeer's build${BENCH_TLSPEER_CFG:+ ($BENCH_TLSPEER_CFG)}")"
      mbed="MBEDTLS=$s MBEDTLS_PREFIX=$P"
      libs="-I$P/include $P/lib/libmbedtls.a $P/lib/libmbedx509.a $P/lib/libmbedcrypto.a -lpthread"
      tls13=1 ;;
    system)
      P=""
      want_version=$(header_version /usr/include)
      want_marker=none
      want_lib=system
      title="mbedtls $want_version, Debian's system library"
      mbed="MBEDTLS=system MBEDTLS_PREFIX="
      libs="-lmbedtls -lmbedx509 -lmbedcrypto"
      tls13=0 ;;
    *) die "unknown section $s (tlspeer, debian, system)" ;;
  esac
  # The Makefile sees a new mbedtls only through its flags, and a rebuilt
  # prefix has the same paths: start afresh when the prefix is newer.
  if [ -n "${P:-}" ] && [ -f "$b/tlspeer/core.so" ] &&
     [ -n "$(find "$P/.tlspeer-installed" -newer "$b/tlspeer/core.so")" ]; then
    rm -rf "$b"
  fi
  # shellcheck disable=SC2086
  mk BUILD="$b" $mbed "$b/tlspeer/core.so"
  # shellcheck disable=SC2086
  $CC -O2 -g -Wall -Wextra -o "$OUT/baseline-$s" bench/baseline.c $libs
  # shellcheck disable=SC2086
  $CC -O2 -g -Wall -Wextra -o "$OUT/engine-$s" bench/engine.c $libs

  # What each of the three is, before anything is measured.
  id=$(ident env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$b/?.so;;" \
       $LUA bench/tlspeer_bench.lua)
  module=$(field "$id" module)
  [ "$module" = "$(cd "$b/tlspeer" && pwd -P)/core.so" ] ||
    die "section \"$s\": tlspeer loaded \"$module\", not $b/tlspeer/core.so"
  check "$s" "tlspeer ($module)" "$id" "$want_version" "$want_marker" "$want_lib"
  check "$s" "the C baseline" "$(ident "$OUT/baseline-$s")" "$want_version" "$want_marker" "$want_lib"
  check "$s" "the engine" "$(ident "$OUT/engine-$s")" "$want_version" "$want_marker" "$want_lib"
  echo "bench: section \"$s\": $title; checked: version $want_version, build \"$want_marker\", $b/tlspeer/core.so" >&2
  sections="$sections
$title=$b/?.so=$OUT/baseline-$s=$OUT/engine-$s=$tls13=$s"
  first_build=${first_build:-$b}
  first_mbed=${first_mbed:-$mbed}
done

# Certificates: the dev CA of certs/ (made with the first section's build
# when missing), leaves made by tlspeer.
if [ ! -f certs/ca.key ]; then
  # shellcheck disable=SC2086
  mk BUILD="$first_build" $first_mbed certs
fi
mkdir -p "$OUT/certs"
LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH="$first_build/?.so;;" \
  $LUA bench/gencerts.lua "$OUT/certs"

# 1,000 connections per process, two descriptors each on the server side:
# the soft limit is raised to 8192 when it is lower, never lowered, and the
# hard limit is left alone (the scale section raises its own processes'
# soft limit to 10,000 connections and more).
n=$(ulimit -Sn)
if [ "$n" != unlimited ] && [ "$n" -lt 8192 ]; then
  ulimit -Sn 8192 2>/dev/null || ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
fi

set --
[ -n "${QUICK:-}" ] && set -- --quick
[ -n "${BENCH_NO_CALLGRIND:-}" ] && set -- "$@" --no-callgrind
# One argument per section (titles hold spaces).
old_ifs=$IFS
IFS='
'
for s in $sections; do [ -n "$s" ] && set -- "$@" "$s"; done
IFS=$old_ifs
# The frame and scale sections first (their tables go into BENCHMARKS.md).
rm -f "$OUT/sections.md"
if [ -z "${BENCH_NO_SECTIONS:-}" ]; then
  QUICK=${QUICK:-} LUA=$LUA MAKE=$MAKE sh bench/sections.sh >/dev/null ||
    echo "bench: a frame/scale/HTTPRequest/WebSocket section failed: see BENCHMARKS.md" >&2
fi
LUA=$LUA exec $LUA bench/run.lua "$@"
