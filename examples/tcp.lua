-- TCPServer and StreamPeerTCP, no TLS: both sides in one loop, exchanging
-- Godot's typed values (put_u16, put_double, put_utf8_string...).
--
--   lua5.4 examples/tcp.lua
dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
local TCP = tls.StreamPeerTCP

local server = tls.TCPServer.new()
assert(server:listen(0, "127.0.0.1"))
print(("server listening on port %d"):format(server:get_local_port()))

local client = TCP.new()
assert(client:connect_to_host("127.0.0.1", server:get_local_port()))

-- The frame loop: poll until connected and the server has taken it.
local conn
local deadline = tls.now() + 5
while (client:get_status() ~= TCP.STATUS_CONNECTED or not conn) and tls.now() < deadline do
  client:poll()
  if server:is_connection_available() then conn = server:take_connection() end
  tls.sleep(0.001)
end
assert(conn and client:get_status() == TCP.STATUS_CONNECTED, "not connected")
print(("client connected from port %d to %s:%d"):format(client:get_local_port(),
  client:get_connected_host(), client:get_connected_port()))
client:set_no_delay(true)

-- Typed values, big-endian on both sides; get_* wait (up to set_timeout).
client:set_big_endian(true)
conn:set_big_endian(true)
assert(client:put_u16(0xCAFE))
assert(client:put_32(-123456))
assert(client:put_double(3.25))
assert(client:put_utf8_string("héllo"))
print(("server read: %04X %d %g %s"):format(assert(conn:get_u16()), assert(conn:get_32()),
  assert(conn:get_double()), assert(conn:get_utf8_string())))

-- Raw bytes: put_partial_data never blocks, get_partial_data neither.
assert(conn:put_data("pong"))
local got = ""
while #got < 4 and tls.now() < deadline do
  client:poll()
  got = got .. assert(client:get_partial_data(4 - #got))
end
print("client read: " .. got)

-- A read that cannot complete fails after the timeout, nothing lost.
client:set_timeout(0.05)
print("timeout: " .. select(3, client:get_data(1)))

client:disconnect_from_host()
conn:disconnect_from_host()
server:stop()
print(client)
