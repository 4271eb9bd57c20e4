#!/bin/sh
# Installs the Debian packages tlspeer builds and tests with, when missing.
set -e
pkgs="lua5.4 liblua5.4-dev libmbedtls-dev lua-busted openssl pkg-config gcc make nginx-light python3 ca-certificates"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "tlspeer: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
