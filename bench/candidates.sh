#!/bin/sh
# bench/candidates.sh [NAME...]: compares mbedtls builds by instruction
# counts (callgrind), with wall-clock beside them: how tlspeer's mbedtls
# configuration (scripts/mbedtls-tlspeer.cfg) was chosen, and how to check a
# new candidate.  A NAME is
#
#   2.28          Debian's system mbedtls (libmbedtls-dev)
#   debian        mbedtls 3.6 as Debian configures it (scripts/mbedtls3.sh)
#   tlspeer       mbedtls 3.6 as tlspeer configures it
#   FILE.cfg      a candidate (bench/candidates/*.cfg), built by scripts/mbedtls3.sh
#
# (default: 2.28 debian tlspeer and every bench/candidates/*.cfg).  Each is
# built once into ~/.cache/tlspeer; bench/engine.c is built against it into
# bench/out/engine-NAME.  Then, for each: bulk AES-128-GCM and
# ChaCha20-Poly1305 (TLS 1.2) and AES-128-GCM (TLS 1.3), instructions per
# byte sealed and per byte opened; full handshakes, ECDSA P-256 and RSA-2048
# certificates, TLS 1.2 and 1.3, X25519 first and P-256 first, instructions
# per handshake on the server and on the client; heap per idle connection.
# The table goes to stdout and bench/out/candidates.md.
#
#   CAND_BULK=bytes     bulk size under callgrind (default 1 MiB)
#   CAND_HS=n           handshakes under callgrind (default 3, after one uncounted)
#   CAND_WALL=0         no wall-clock runs (they are noisy on a shared machine)
#   CAND_ROWS="..."     only these rows (ids as in the table's first column)
set -eu
cd "$(dirname "$0")/.."
OUT=bench/out
CC=${CC:-cc}
mkdir -p "$OUT"
BULK=${CAND_BULK:-1048576}
HS=${CAND_HS:-3}
WALL=${CAND_WALL:-1}
[ -f "$OUT/certs/ec.crt" ] || { echo "candidates: run make bench QUICK=1 first (bench/out/certs)" >&2; exit 1; }
export BENCH_CERTS=$OUT/certs

[ $# -gt 0 ] || set -- 2.28 debian tlspeer bench/candidates/*.cfg

# name, engine binary
engines=""
for c in "$@"; do
  case $c in
    2.28)
      name=2.28
      $CC -O2 -g -Wall -Wextra -o "$OUT/engine-$name" bench/engine.c \
          -lmbedtls -lmbedx509 -lmbedcrypto ;;
    *)
      p=$(scripts/mbedtls3.sh "$c" 2>>"$OUT/candidates-build.log" | tail -1)
      name=$(basename "$c" .cfg)
      $CC -O2 -g -Wall -Wextra -I"$p/include" -o "$OUT/engine-$name" bench/engine.c \
          "$p/lib/libmbedtls.a" "$p/lib/libmbedx509.a" "$p/lib/libmbedcrypto.a" -lpthread ;;
  esac
  engines="$engines $name"
done

AES12=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
CHACHA12=TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
AES13=TLS_AES_128_GCM_SHA256
# id|what it is|engine arguments (without the N or BYTES at the end)
ROWS="bulk-aes12|bulk TLS 1.2 AES-128-GCM|bulk $AES12
bulk-chacha12|bulk TLS 1.2 ChaCha20-Poly1305|bulk $CHACHA12
bulk-aes13|bulk TLS 1.3 AES-128-GCM|bulk $AES13
hs-ec13-x|handshake TLS 1.3 ECDSA P-256, X25519 first|hs ec 1.3 x25519,secp256r1,secp384r1
hs-ec13-p|handshake TLS 1.3 ECDSA P-256, P-256 first|hs ec 1.3 secp256r1,x25519,secp384r1
hs-rsa13-x|handshake TLS 1.3 RSA-2048, X25519 first|hs rsa 1.3 x25519,secp256r1,secp384r1
hs-rsa13-p|handshake TLS 1.3 RSA-2048, P-256 first|hs rsa 1.3 secp256r1,x25519,secp384r1
hs-ec12-x|handshake TLS 1.2 ECDSA P-256, X25519 first|hs ec 1.2 x25519,secp256r1,secp384r1
hs-ec12-p|handshake TLS 1.2 ECDSA P-256, P-256 first|hs ec 1.2 secp256r1,x25519,secp384r1
hs-rsa12-x|handshake TLS 1.2 RSA-2048, X25519 first|hs rsa 1.2 x25519,secp256r1,secp384r1
hs-rsa12-p|handshake TLS 1.2 RSA-2048, P-256 first|hs rsa 1.2 secp256r1,x25519,secp384r1
mem13|heap per idle connection, TLS 1.3|mem ec 1.3 200
mem12|heap per idle connection, TLS 1.2|mem ec 1.2 200"

md=$OUT/candidates.md
{
  printf '| row | build | server or seal | client or open | unit | wall-clock server or seal | wall-clock client or open |\n'
  printf '|---|---|--:|--:|---|--:|--:|\n'
} >"$md"
cat "$md"

echo "$ROWS" | while IFS='|' read -r id _ args; do
  if [ -n "${CAND_ROWS:-}" ]; then
    case " $CAND_ROWS " in *" $id "*) ;; *) continue ;; esac
  fi
  for e in $engines; do
    bin=$OUT/engine-$e
    case $e in 2.28) case $id in *13*) continue ;; esac ;; esac
    # shellcheck disable=SC2086  # the engine's arguments, one word each
    set -- $args
    case $1 in
      bulk)
        ir=$(bench/callgrind.sh "$bin" "$@" "$BULK")
        a=$(echo "$ir" | awk -v n="$BULK" '$1 == "IR" && $2 == "seal" { printf "%.2f", $3 / (2 * n) }')
        b=$(echo "$ir" | awk -v n="$BULK" '$1 == "IR" && $2 == "open_" { printf "%.2f", $3 / (2 * n) }')
        unit="instr/byte"
        if [ "$WALL" = 1 ]; then
          w=$("$bin" "$@" $((BULK * 32)))
          wa=$(echo "$w" | awk '$2 == "seal_ns_per_byte" { printf "%.2f ns/B", $3 }')
          wb=$(echo "$w" | awk '$2 == "open_ns_per_byte" { printf "%.2f ns/B", $3 }')
        fi ;;
      hs)
        ir=$(bench/callgrind.sh "$bin" "$@" "$HS")
        a=$(echo "$ir" | awk -v n="$HS" '$1 == "IR" && $2 == "server_handshake" { printf "%.0f", $3 / n }')
        b=$(echo "$ir" | awk -v n="$HS" '$1 == "IR" && $2 == "client_handshake" { printf "%.0f", $3 / n }')
        unit="instr/handshake"
        if [ "$WALL" = 1 ]; then
          w=$("$bin" "$@" 20)
          wa=$(echo "$w" | awk '$2 == "server_handshake_ns" { printf "%.3f ms", $3 / 1e6 }')
          wb=$(echo "$w" | awk '$2 == "client_handshake_ns" { printf "%.3f ms", $3 / 1e6 }')
        fi ;;
      mem)
        w=$("$bin" "$@")
        a=$(echo "$w" | awk '$2 == "server_heap_per_conn" { printf "%.0f", $3 }')
        b=$(echo "$w" | awk '$2 == "client_heap_per_conn" { printf "%.0f", $3 }')
        unit="heap bytes"
        wa="" wb="" ;;
    esac
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$id" "$e" "$a" "$b" "$unit" \
      "${wa:-}" "${wb:-}" | tee -a "$md"
  done
done
