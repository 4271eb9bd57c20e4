#!/bin/sh
# bench/portability.sh BINARY...: checks that an x86-64 binary (tlspeer's
# core.so, bench/engine) runs on any x86-64 CPU, not only on this one:
#
# 1. objdump: every function that has an instruction beyond x86-64's
#    baseline (SSE2) -- SSSE3, SSE4, AES-NI, PCLMUL, AVX/AVX2/AVX-512 (VEX
#    or EVEX), BMI, ADX, MOVBE, POPCNT, LZCNT, FMA, F16C, SHA -- is listed, and
#    must be one of mbedtls' aesni.c functions (mbedtls_aesni_*, which run
#    only after mbedtls_aesni_has_support() found AES-NI and PCLMUL: see
#    bench/NOTES.md, Portability); any other fails the check.
# 2. With qemu-user (Debian's qemu-user: `apt-get install qemu-user`), when
#    the BINARY is bench/engine built against that mbedtls (engine-*), it
#    runs AES-128-GCM and ChaCha20-Poly1305 transfers and handshakes under
#    `qemu-x86_64 -cpu MODEL` for CPU models without those extensions
#    (qemu64: SSE3 only; Nehalem: SSE4.2, no AES-NI; Westmere: AES-NI and
#    PCLMUL, no AVX), where an instruction the model lacks is an illegal
#    instruction (SIGILL).
#
# Exit status: 0 when every check passed.
set -eu
status=0
# Mnemonics (AT&T syntax, objdump -d) beyond x86-64's SSE2 baseline.
# Not tzcnt: GCC's generic tuning emits `rep bsf` for __builtin_ctz of a
# value it knows is not zero, which objdump shows as tzcnt; a CPU without
# BMI1 ignores the rep prefix and runs bsf, with the same result.
beyond='^(pshufb|palignr|phaddw|phaddd|phaddsw|phsubw|phsubd|phsubsw|pmaddubsw|pmulhrsw|psignb|psignw|psignd|pabsb|pabsw|pabsd|pblendw|pblendvb|blendps|blendpd|blendvps|blendvpd|dpps|dppd|insertps|extractps|mpsadbw|packusdw|pcmpeqq|pcmpgtq|pextrb|pextrd|pextrq|pinsrb|pinsrd|pinsrq|pmaxsb|pmaxsd|pmaxud|pmaxuw|pminsb|pminsd|pminud|pminuw|pmovsx..|pmovzx..|pmuldq|pmulld|ptest|roundps|roundpd|roundss|roundsd|phminposuw|pcmpestri|pcmpestrm|pcmpistri|pcmpistrm|crc32[bwlq]?|popcnt[wlq]?|lzcnt[wlq]?|aesenc|aesenclast|aesdec|aesdeclast|aesimc|aeskeygenassist|pclmul[a-z]*|sha1[a-z0-9]*|sha256[a-z0-9]*|andn[lq]?|bextr[lq]?|blsi[lq]?|blsmsk[lq]?|blsr[lq]?|bzhi[lq]?|mulx[lq]?|pdep[lq]?|pext[lq]?|rorx[lq]?|sarx[lq]?|shlx[lq]?|shrx[lq]?|adcx[lq]?|adox[lq]?|movbe[wlq]?|v[a-z0-9]+)$'

for bin in "$@"; do
  echo "== $bin"
  # function -> first offending mnemonic, and how many
  report=$(objdump -d --no-show-raw-insn "$bin" | awk -v re="$beyond" '
    /^[0-9a-f]+ <.*>:$/ { fn = $2; gsub(/[<>:]/, "", fn); next }
    /^ *[0-9a-f]+:\t/ {
      split($0, parts, "\t"); ins = parts[2]; sub(/ .*/, "", ins)
      if (ins ~ re) { n[fn]++; if (!(fn in first)) first[fn] = ins }
    }
    END { for (f in n) printf "%s %d %s\n", f, n[f], first[f] }' | sort)
  if [ -z "$report" ]; then
    echo "   no instruction beyond SSE2"
  else
    echo "$report" | while read -r fn count first; do
      case $fn in
        mbedtls_aesni_*) echo "   ok: $fn ($count, e.g. $first): after mbedtls_aesni_has_support()" ;;
        *) echo "   NOT PORTABLE: $fn ($count, e.g. $first)"; echo bad >>"${TMPDIR:-/tmp}/tlspeer-portability.$$" ;;
      esac
    done
  fi
  if [ -f "${TMPDIR:-/tmp}/tlspeer-portability.$$" ]; then
    status=1
    rm -f "${TMPDIR:-/tmp}/tlspeer-portability.$$"
  fi

  case $(basename "$bin") in engine-*) ;; *) continue ;; esac
  if ! command -v qemu-x86_64 >/dev/null 2>&1; then
    echo "   qemu-x86_64 missing (apt-get install qemu-user): run-time check skipped"
    continue
  fi
  for cpu in qemu64 Nehalem Westmere; do
    for run in "bulk TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 262144" \
               "bulk TLS_AES_128_GCM_SHA256 262144" \
               "bulk TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 262144" \
               "hs ec 1.3 x25519,secp256r1 1" "hs rsa 1.2 x25519,secp256r1 1"; do
      # shellcheck disable=SC2086
      if out=$(qemu-x86_64 -cpu "$cpu" "$bin" $run 2>&1); then
        echo "   ok: -cpu $cpu: $run"
      else
        echo "   FAILED: -cpu $cpu: $run: $(echo "$out" | tail -1)"
        status=1
      fi
    done
  done
done
exit $status
