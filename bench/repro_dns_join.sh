#!/bin/sh
# bench/repro_dns_join.sh: a DNS lookup that never ends holds up
# tls.set_worker_threads() and the end of the Lua state (process exit):
# both join the DNS worker threads (src/workers.c destroy(), from
# set_worker_threads and pools_gc), which wait in getaddrinfo() until the
# resolver gives up.  Needs root (a network namespace with a stub DNS
# server that never answers; the resolver's timeout set to 6 s).
#
#   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' sh bench/repro_dns_join.sh
set -eu
cd "$(dirname "$0")/.."
NS=tpbrepro$$
PY=$(python3 -c 'import sys; print(sys.executable)')
ip netns add $NS
cleanup() {
  for p in $(ip netns pids $NS 2>/dev/null); do kill $p 2>/dev/null || true; done
  sleep 0.2
  ip netns del $NS 2>/dev/null || true
  rm -rf /etc/netns/$NS
}
trap cleanup EXIT INT TERM
ip netns exec $NS ip link set lo up
mkdir -p /etc/netns/$NS
printf 'nameserver 127.0.0.1\noptions timeout:6 attempts:1\n' > /etc/netns/$NS/resolv.conf
ip netns exec $NS "$PY" bench/dnsstub.py --never >/dev/null 2>&1 &
sleep 0.5
start=$(date +%s.%N)
ip netns exec $NS ${LUA:-lua5.4} -e '
local tls = require "tlspeer"
local now = require("tlspeer.core")._now
local tcp = tls.StreamPeerTCP.new()
local t = now()
assert(tcp:connect_to_host("game.test", 443))
print(("connect_to_host returned after %.3f s (the lookup runs on a DNS worker)"):format(now() - t))
t = now()
tls.set_worker_threads(1)
print(("tls.set_worker_threads(1) returned after %.3f s"):format(now() - t))
assert(tcp:connect_to_host("game.test", 443) or true)
tcp = tls.StreamPeerTCP.new()
assert(tcp:connect_to_host("game.test", 443))
io.write("the script ends now, with a lookup in flight\n")
io.stdout:flush()'
end=$(date +%s.%N)
echo "the whole process took $(echo "$end - $start" | bc) s (the exit waits for the lookup)"
