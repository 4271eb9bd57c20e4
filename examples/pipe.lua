-- StreamPeerTLS over something that is not a socket: tls.pipe() gives two
-- connected in-memory ends, as an engine's own transport would. A client
-- and a server handshake over it with TLSOptions, then exchange data.
--
--   lua5.4 examples/pipe.lua
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
local TLS = tls.StreamPeerTLS

local key, cert, ca = tls.CryptoKey.new(), tls.X509Certificate.new(), tls.X509Certificate.new()
assert(key:load(root .. "/certs/server.key"))
assert(cert:load(root .. "/certs/server.crt"))
assert(ca:load(root .. "/certs/ca.crt"))

local a, b = tls.pipe()
local client, server = TLS.new(), TLS.new()
assert(client:connect_to_stream(a, "localhost", tls.TLSOptions.client(ca)))
assert(server:accept_stream(b, tls.TLSOptions.server(key, cert, { alpn = { "game/1" } })))
print(tls.TLSOptions.client(ca))

-- Both sides in one loop: each poll is one step of the handshake.
local steps = 0
while client:get_status() == TLS.STATUS_HANDSHAKING or server:get_status() == TLS.STATUS_HANDSHAKING do
  client:poll()
  server:poll()
  steps = steps + 1
  assert(steps < 10000, "the handshake did not finish")
end
assert(client:get_status() == TLS.STATUS_CONNECTED, client:get_error())
print(("handshake done: %s, %s, verified: %s"):format(client:get_tls_version(),
  client:get_cipher_suite(), tostring(client:is_peer_verified())))
print("server certificate: " .. client:get_peer_certificate():get_subject())

assert(client:put_data("Hello over a pipe\n"))
local got = ""
while #got < 18 do
  server:poll()
  got = got .. assert(server:get_partial_data(64))
end
io.write("server got: ", got)

client:disconnect_from_stream()
server:poll()
print(server)
