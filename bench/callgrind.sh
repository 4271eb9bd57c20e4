#!/bin/sh
# bench/callgrind.sh PROGRAM ARGS...: runs PROGRAM under
# `valgrind --tool=callgrind` and prints, for each function of bench/engine.c
# that marks a phase of the work (server_handshake, client_handshake, seal,
# open_), the instructions executed inside it (inclusive), and the whole
# run's total:
#
#   IR <function> <instructions>
#   IR total <instructions>
#
# Instruction counts do not depend on what else the machine is doing, so
# one run on a shared machine is enough to compare two builds.  The program's
# own output (RESULT lines) is passed through.
set -eu
out=$(mktemp -t tlspeer-callgrind.XXXXXX)
trap 'rm -f "$out" "$out.ann"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$out" -q "$@"
callgrind_annotate --inclusive=yes --threshold=100 "$out" >"$out.ann" 2>/dev/null
# callgrind_annotate prints "1,234 (5.6%)  file:function [object]" (3.19)
# or "1,234  file:function [object]".
awk '
  /PROGRAM TOTALS/ { gsub(/,/, "", $1); print "IR total " $1 }
  {
    for (i = 2; i <= NF; i++) {
      if ($i ~ /:(server_handshake|client_handshake|seal|open_)$/) {
        n = $1; gsub(/,/, "", n)
        f = $i; sub(/.*:/, "", f)
        if (!(f in seen)) { seen[f] = 1; print "IR " f " " n }
      }
    }
  }' "$out.ann"
