#!/usr/bin/env bash
# Builds mbedtls 3.6 LTS (Debian trixie's source package) into a private
# prefix, so tlspeer can be built against 3.6 on bookworm, which ships 2.28:
#
#   scripts/mbedtls3.sh [debian|tlspeer|FILE.cfg]
#   make MBEDTLS_PREFIX=$(scripts/mbedtls3.sh tlspeer)
#
# debian (the default): configured as Debian's libmbedtls is (the config.py
#   lines of its debian/rules), built as CMake's Release (-O2); into
#   $TLSPEER_CACHE/mbedtls-3.6.
# tlspeer: tlspeer's own configuration and compiler flags,
#   scripts/mbedtls-tlspeer.cfg (which says what and why); into
#   $TLSPEER_CACHE/mbedtls-3.6-tlspeer.
# FILE.cfg: another file in that format (bench/NOTES.md: measuring a
#   candidate option); into $TLSPEER_CACHE/mbedtls-3.6-<FILE>.
#
# TLSPEER_CACHE defaults to ~/.cache/tlspeer.  The source is fetched once
# (apt-get source, signatures checked) into $TLSPEER_CACHE/src/.  A prefix
# holds static, position-independent libraries (they go into
# tlspeer/core.so; Everest's, when configured, merged into libmbedcrypto.a),
# the headers, with the configuration applied to
# include/mbedtls/mbedtls_config.h, and a stamp, .tlspeer-installed, that
# names the flavour and the configuration's checksum (a prefix whose .cfg
# changed is rebuilt) and the build marker: the string, also compiled into
# the library's version.c, by which `make bench` recognises the build inside
# a binary ("tlspeer-mbedtls-build: mbedtls 3.6.x, flavour F, ...").
# Progress goes to stderr; the last line on stdout is the prefix.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TLSPEER_CACHE:-${HOME:?}/.cache/tlspeer}
suite=trixie
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

exec 3>&1 1>&2 # everything but the final prefix goes to stderr
log() { printf 'mbedtls3: %s\n' "$*"; }
die() { log "error: $*"; exit 1; }

flavour=${1:-debian}
case $flavour in
  debian) cfg='' name=mbedtls-3.6 ;;
  tlspeer) cfg=$here/mbedtls-tlspeer.cfg name=mbedtls-3.6-tlspeer ;;
  *.cfg)
    [[ -f $flavour ]] || die "no such configuration: $flavour"
    cfg=$(cd "$(dirname "$flavour")" && pwd)/$(basename "$flavour")
    flavour=$(basename "$flavour" .cfg)
    [[ $flavour != debian ]] || die "a .cfg cannot be named debian"
    name=mbedtls-3.6-$flavour ;;
  *) die "usage: $0 [debian|tlspeer|FILE.cfg]" ;;
esac

mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
prefix=$cache/$name
stamp=$prefix/.tlspeer-installed
srcdir=$cache/src/mbedtls-3.6
# What the stamp must say: the flavour, and for a .cfg its checksum.
if [[ -n $cfg ]]; then
  # Of the lines that do something: editing a comment rebuilds nothing.
  want="flavour $flavour, config $(sed -e 's/#.*//' -e 's/[[:space:]]\{1,\}/ /g' \
    -e 's/^ //' -e 's/ $//' -e '/^$/d' "$cfg" | sha256sum | cut -c1-16)"
else
  want="flavour debian"
fi

installed() {
  [[ -f $stamp && -f $prefix/include/mbedtls/build_info.h ]] &&
    grep -qxF "$want" "$stamp" && grep -q '^marker: ' "$stamp"
}
done_() { printf '%s\n' "$prefix" >&3; exit 0; }

installed && done_
# One build at a time (e.g. parallel make or CI jobs sharing the cache).
exec 9>"$cache/mbedtls-3.6.lock"
flock 9
installed && done_

work=$(mktemp -d -t tlspeer-mbedtls3.XXXXXX)
trap 'rm -rf "$work"' EXIT

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


# The source, once: Debian trixie's mbedtls source package, unpacked (its
# patches applied) into $srcdir; both flavours are built from copies of it.
fetch_source() {
  [[ -f $srcdir/.tlspeer-source && -f $srcdir/CMakeLists.txt ]] && return 0
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

  rm -rf "$srcdir"
  mkdir -p "$(dirname "$srcdir")"
  cp -a "$src" "$srcdir"
  printf '%s\n' "$version" >"$srcdir/.tlspeer-source"
}

# Debian's configuration: its debian/rules edits 3.6's default config with
# scripts/config.py (threading, CMAC, DTLS-SRTP, ...); the rest is the
# default config, TLS 1.3 included.  Built as CMake's Release (-O2).
configure_debian() {
  while read -r op name; do
    log "config: $op $name"
    python3 scripts/config.py "$op" "$name"
  done < <(sed -n 's/^[[:space:]]*\(\.\/\)\{0,1\}scripts\/config\.py[[:space:]]\{1,\}\(set\|unset\)[[:space:]]\{1,\}\([A-Za-z0-9_]\{1,\}\)[[:space:]]*$/\2 \3/p' \
    debian/rules)
  cmake_args=(-DCMAKE_BUILD_TYPE=Release)
}

# A .cfg file (scripts/mbedtls-tlspeer.cfg says the format): config.py
# edits of 3.6's default config, and compiler flags, for every file or one
# file of library/, for every architecture or one (uname -m).  Built with
# CMake's build type None, so the .cfg's flags are the only ones (no -O2
# of Release's after them).
configure_cfg() {
  local arch lineno=0 op rest target file flags=() line
  arch=$(uname -m)
  while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    line=${line%%#*}
    read -r op rest <<<"$line" || true
    [[ -n ${op:-} ]] || continue
    case $op in
      set | unset)
        log "config: $op $rest"
        # shellcheck disable=SC2086  # NAME [VALUE]
        python3 scripts/config.py "$op" $rest ||
          die "$cfg:$lineno: config.py $op $rest failed"
        ;;
      cflags | cflags@*)
        target=${op#cflags}
        target=${target#@}
        file=
        if [[ $target == *:* ]]; then file=${target#*:}; target=${target%%:*}; fi
        [[ -z $target || $target == "$arch" ]] || continue
        if [[ -n $file ]]; then
          [[ -f library/$file ]] || die "$cfg:$lineno: no library/$file"
          log "cflags ($file): $rest"
          printf 'set_source_files_properties(%s PROPERTIES COMPILE_OPTIONS "%s")\n' \
            "$file" "${rest// /;}" >>library/CMakeLists.txt
        else
          log "cflags: $rest"
          flags+=("$rest")
        fi
        ;;
      *) die "$cfg:$lineno: unknown line: $line" ;;
    esac
  done <"$cfg"
  # Debian's packaging leaves 3rdparty/ (Everest's X25519, p256-m) out of
  # the CMake build: back in when the configuration asks for either.
  if python3 scripts/config.py get MBEDTLS_ECDH_VARIANT_EVEREST_ENABLED >/dev/null ||
     python3 scripts/config.py get MBEDTLS_PSA_P256M_DRIVER_ENABLED >/dev/null; then
    grep -q '^add_subdirectory(3rdparty)' CMakeLists.txt ||
      sed -i 's/^add_subdirectory(library)$/add_subdirectory(3rdparty)\n&/' CMakeLists.txt
  fi
  cmake_args=(-DCMAKE_BUILD_TYPE=None "-DCMAKE_C_FLAGS=${flags[*]}")
}

fetch_source
version=$(cat "$srcdir/.tlspeer-source")
upstream=${version#*:}
upstream=${upstream%-*}
src=$work/mbedtls-$upstream
cp -a "$srcdir" "$src"
log "mbedtls $version, flavour $flavour${cfg:+ ($cfg)}"
cmake_args=()
if [[ -n $cfg ]]; then
  (cd "$src" && configure_cfg && declare -p cmake_args >"$work/cmake_args")
else
  (cd "$src" && configure_debian && declare -p cmake_args >"$work/cmake_args")
fi
. "$work/cmake_args"
# Which build this is, readable in any binary mbedtls is linked into (the
# benchmark checks tlspeer/core.so with it): version.c is always linked,
# since tlspeer reports mbedtls_version.
marker="mbedtls $upstream, $want"
[[ -z $cfg ]] || marker+=", cflags ${cmake_args[1]#-DCMAKE_C_FLAGS=}"
printf '\n/* Added by tlspeer'"'"'s scripts/mbedtls3.sh. */\n__attribute__((used)) static const char tlspeer_mbedtls_build[] =\n    "tlspeer-mbedtls-build: %s";\n' \
  "$marker" >>"$src/library/version.c"

rm -rf "$prefix"
log "building into $prefix with $(nproc) jobs"
cmake -S "$src" -B "$work/build" \
  "${cmake_args[@]}" \
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
         include/mbedtls/ssl.h include/mbedtls/build_info.h \
         include/mbedtls/mbedtls_config.h; do
  [[ -f $prefix/$f ]] || die "install is missing $prefix/$f"
done
grep -q "MBEDTLS_VERSION_STRING *\"$upstream\"" "$prefix/include/mbedtls/build_info.h" ||
  die "installed headers are not mbedtls $upstream"
# The installed config is the one the library was built with (tlspeer is
# compiled against it: the two must agree).
cmp -s "$src/include/mbedtls/mbedtls_config.h" "$prefix/include/mbedtls/mbedtls_config.h" ||
  die "the installed mbedtls_config.h is not the configured one"
# The 3rdparty libraries (Everest, p256-m), when built, go into
# libmbedcrypto.a, so that the usual three libraries are all there is.
for a in "$prefix"/lib/libeverest.a "$prefix"/lib/libp256m.a; do
  [[ -f $a ]] || continue
  log "merging ${a##*/} into libmbedcrypto.a"
  rm -rf "$work/ar" && mkdir -p "$work/ar"
  (cd "$work/ar" && ar x "$a" && ar rs "$prefix/lib/libmbedcrypto.a" ./*.o)
  rm -f "$a"
done
{
  printf 'mbedtls %s from Debian %s\n' "$version" "$suite"
  printf '%s\n' "$want"
  printf 'marker: %s\n' "$marker"
  printf 'cmake: %s\n' "${cmake_args[*]}"
} >"$stamp"
[[ -z $cfg ]] || cp "$cfg" "$prefix/tlspeer-mbedtls.cfg"
log "installed mbedtls $version ($flavour) in ${SECONDS}s"
done_
