#!/bin/sh
# Installs the Debian packages tlspeer builds and tests with, when missing.
#   scripts/deps.sh [5.1|5.2|5.3|5.4|luajit]   (the Lua runtime; 5.4 default)
set -e
case "${1:-5.4}" in
  5.1)    lua="lua5.1 liblua5.1-0-dev" ;;
  5.2)    lua="lua5.2 liblua5.2-dev" ;;
  5.3)    lua="lua5.3 liblua5.3-dev" ;;
  5.4)    lua="lua5.4 liblua5.4-dev" ;;
  luajit) lua="luajit libluajit-5.1-dev" ;;
  *) echo "tlspeer: unknown Lua runtime '$1' (5.1, 5.2, 5.3, 5.4 or luajit)" >&2; exit 2 ;;
esac
pkgs="$lua libmbedtls-dev zlib1g-dev lua-busted openssl pkg-config gcc make nginx-light python3 ca-certificates iproute2 python3-httpbin gunicorn tinyproxy python3-websockets chromium nodejs"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# npm comes with some builds of nodejs; Debian's has it apart (spec 30 uses it)
command -v npm >/dev/null 2>&1 || missing="$missing npm"
[ -z "$missing" ] && exit 0
echo "tlspeer: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
