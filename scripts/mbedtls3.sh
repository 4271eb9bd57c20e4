#!/usr/bin/env bash
# Builds mbedtls 3.6 LTS (Debian trixie's source package) into a private prefix,
# so tlspeer can be built and tested against 3.6 on bookworm, which ships 2.28:
#
#   make MBEDTLS_PREFIX=$(scripts/mbedtls3.sh)
#
# The prefix is $TLSPEER_CACHE/mbedtls-3.6 (default ~/.cache/tlspeer). It holds
# static, position-independent libraries (they go into tlspeer/core.so) and the
# headers. Progress goes to stderr; the last line on stdout is the prefix.
set -euo pipefail

cache=${TLSPEER_CACHE:-${HOME:?}/.cache/tlspeer}
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

exec 3>&1 1>&2 # everything but the final prefix goes to stderr
log() { printf 'mbedtls3: %s\n' "$*"; }
die() { log "error: $*"; exit 1; }

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
prefix=$cache/mbedtls-3.6
stamp=$prefix/.tlspeer-installed

installed() { [[ -f $stamp && -f $prefix/include/mbedtls/build_info.h ]]; }
done_() { printf '%s\n' "$prefix" >&3; exit 0; }

installed && done_
# One build at a time (e.g. parallel make or CI jobs sharing the cache).
exec 9>"$cache/mbedtls-3.6.lock"
flock 9
installed && done_

as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    env DEBIAN_FRONTEND=noninteractive "$@"
  elif command -v sudo >/dev/null; then
    sudo env DEBIAN_FRONTEND=noninteractive "$@"
  else
    die "need root or sudo to run: $*"
  fi
}

# The Debian archive this machine already uses: the http(s) URI of the apt
# source (deb822 or one-line) whose suites include this release's codename.
debian_mirror() {
  local codename files=()
  codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || die "no VERSION_CODENAME in /etc/os-release"
  shopt -s nullglob
  files=(/etc/apt/sources.list.d/*.sources)
  if ((${#files[@]})); then
    awk -v want="$codename" '
      function flush(  n, i, u) {
        gsub(/[ \t]+/, " ", suites)
        if (!found && types ~ /(^|[ \t])deb(-src)?([ \t]|$)/ &&
            (" " suites " ") ~ (" " want " ") && tolower(enabled) != "no") {
          n = split(uris, u)
          for (i = 1; i <= n; i++)
            if (u[i] ~ /^https?:\/\//) { print u[i]; found = 1; break }
        }
        types = suites = uris = enabled = field = ""
      }
      FNR == 1 { flush() }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      /^[ \t]/ {   # continuation line
        if (field == "types") types = types " " $0
        else if (field == "suites") suites = suites " " $0
        else if (field == "uris") uris = uris " " $0
        next
      }
      {
        field = tolower($0); sub(/:.*/, "", field)
        v = $0; sub(/^[^:]*:[ \t]*/, "", v)
        if (field == "types") types = v
        else if (field == "suites") suites = v
        else if (field == "uris") uris = v
        else if (field == "enabled") enabled = v
      }
      END { flush() }' "${files[@]}"
  fi
  files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
  for f in "${files[@]}"; do
    [[ -f $f ]] || continue
    awk -v want="$codename" '
      $1 == "deb" || $1 == "deb-src" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if ($i ~ /^https?:\/\// && $(i + 1) == want) print $i
      }' "$f"
  done
  shopt -u nullglob
}

mirror=$(debian_mirror | head -n1)
mirror=${mirror%/}
[[ -n $mirror ]] || die "found no Debian archive for this release in /etc/apt/sources.list{,.d/}"
log "mirror: $mirror ($suite)"

# Tools: dpkg-source unpacks the source (.tar.bz2 + .tar.xz, quilt patches),
# python3 runs mbedtls' scripts/config.py, cmake/make/gcc build it.
missing=()
for tool_pkg in dpkg-source:dpkg-dev cmake:cmake make:make gcc:gcc \
                python3:python3 bzip2:bzip2 xz:xz-utils patch:patch; do
  command -v "${tool_pkg%%:*}" >/dev/null || missing+=("${tool_pkg#*:}")
done
if [[ $mirror == https:* && ! -f /etc/ssl/certs/ca-certificates.crt ]]; then
  missing+=(ca-certificates)
fi
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
[[ -f $keyring ]] || as_root apt-get install -y -q debian-archive-keyring

work=$(mktemp -d -t tlspeer-mbedtls3.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
# Let apt's unprivileged downloader (_apt) write into the work dirs.
if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then
  chmod 755 "$work"
  chown _apt "$work/src"
fi

# A private apt setup: only trixie's deb-src, its own lists and cache, checked
# against the system's Debian keyring. The system's apt state is not touched.
printf 'deb-src [signed-by=%s] %s %s main\n' "$keyring" "$mirror" "$suite" \
  >"$work/apt/sources.list"
apt_opts=(
  -o Dir::Etc::SourceList="$work/apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State::Lists="$work/apt/lists"
  -o Dir::Cache="$work/apt/cache"
)
apt_update() {
  apt-get "${apt_opts[@]}" -q --error-on=any update 2>&1 | tee "$work/update.log"
}
log "fetching the $suite source index"
if ! apt_update; then
  grep -qE 'NO_PUBKEY|EXPKEYSIG|KEYEXPIRED|not signed|signatures' "$work/update.log" ||
    die "apt-get update for $suite failed"
  # Bookworm's keyring gained the trixie keys in a point release.
  log "$keyring lacks the $suite signing key; updating debian-archive-keyring"
  as_root apt-get update -q
  as_root apt-get install -y -q --only-upgrade debian-archive-keyring
  apt_update || die "cannot verify the $suite Release file with $keyring"
fi

log "fetching the mbedtls source"
(cd "$work/src" && apt-get "${apt_opts[@]}" -q source mbedtls)
dsc=$(ls "$work"/src/mbedtls_*.dsc)
version=$(sed -n 's/^Version: *//p' "$dsc")
upstream=${version#*:}
upstream=${upstream%-*}
[[ $upstream == 3.6.* ]] || die "$suite has mbedtls $version, not 3.6.x"
src=$work/src/mbedtls-$upstream
[[ -f $src/CMakeLists.txt ]] || die "no unpacked source in $src"
log "mbedtls $version"

# Configure as Debian's libmbedtls does: its debian/rules edits the default
# config with scripts/config.py (threading, CMAC, DTLS-SRTP, ...); the rest is
# 3.6's default config, TLS 1.3 included.
while read -r op name; do
  log "config: $op $name"
  (cd "$src" && python3 scripts/config.py "$op" "$name")
done < <(sed -n 's/^[[:space:]]*\(\.\/\)\{0,1\}scripts\/config\.py[[:space:]]\{1,\}\(set\|unset\)[[:space:]]\{1,\}\([A-Za-z0-9_]\{1,\}\)[[:space:]]*$/\2 \3/p' \
  "$src/debian/rules")

rm -rf "$prefix"
log "building into $prefix with $(nproc) jobs"
cmake -S "$src" -B "$work/build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$prefix" \
  -DCMAKE_INSTALL_LIBDIR=lib \
  -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
  -DUSE_STATIC_MBEDTLS_LIBRARY=ON \
  -DUSE_SHARED_MBEDTLS_LIBRARY=OFF \
  -DENABLE_PROGRAMS=OFF \
  -DENABLE_TESTING=OFF \
  -DGEN_FILES=OFF \
  -DMBEDTLS_FATAL_WARNINGS=OFF
cmake --build "$work/build" -j"$(nproc)"
cmake --install "$work/build"

for f in lib/libmbedtls.a lib/libmbedx509.a lib/libmbedcrypto.a \
         include/mbedtls/ssl.h include/mbedtls/build_info.h; do
  [[ -f $prefix/$f ]] || die "install is missing $prefix/$f"
done
grep -q "MBEDTLS_VERSION_STRING *\"$upstream\"" "$prefix/include/mbedtls/build_info.h" ||
  die "installed headers are not mbedtls $upstream"
printf 'mbedtls %s from Debian %s\n' "$version" "$suite" >"$stamp"
log "installed mbedtls $version in ${SECONDS}s"
done_
