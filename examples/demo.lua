-- make demo: a TLS server and a TLS client over loopback, with the dev
-- certificates tlspeer made (certs/generate.lua), printing their exchange,
-- the negotiated version and cipher suite, and the certificates they saw.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe
local certs = root .. "/certs/"

local function show(data)
  return '"' .. data:gsub("\n", "\\n") .. '"'
end

print(("tlspeer on mbedtls %s"):format(tls.mbedtls_version))

local server = assert(tls.listen {
  port = 0, bind = "127.0.0.1",
  certificate = certs .. "server.crt", key = certs .. "server.key",
  trusted = certs .. "ca.crt", verify = "optional",
  alpn = { "demo/1" },
})
print(("server: listening on 127.0.0.1:%d"):format(server:get_local_port()))

server:on("connection_established", function(conn)
  local peer = conn:get_peer()
  local client_cert = peer:get_peer_certificate()
  print(("server: handshake done: %s, %s"):format(peer:get_tls_version(), peer:get_cipher_suite()))
  print("server: client certificate: " .. (client_cert and client_cert:get_subject() or "none"))
end)
server:on("data_received", function(conn, data)
  print("server: received " .. show(data))
  conn:send("Hello, client! You said: " .. data)
end)
server:on("disconnected", function() print("server: client disconnected") end)

local client = tls.connect {
  host = "localhost", port = server:get_local_port(),
  trusted = certs .. "ca.crt",
  certificate = certs .. "client.crt", key = certs .. "client.key",
  alpn = { "demo/1" },
}
client:on("connection_established", function()
  local peer = client:get_peer()
  local cert = peer:get_peer_certificate()
  print(("client: connected to %s"):format(tostring(peer)))
  print(("client: version %s, cipher %s, ALPN %s"):format(peer:get_tls_version(),
    peer:get_cipher_suite(), peer:get_alpn_protocol() or "none"))
  -- get_not_after() is "YYYYMMDDhhmmss" UTC; shown as tostring(cert) does.
  local expires = cert:get_not_after():gsub("^(%d%d%d%d)(%d%d)(%d%d)(%d%d)(%d%d)(%d%d)$",
                                            "%1-%2-%3 %4:%5:%6 UTC")
  print(("client: server certificate: %s, issued by %s, for %s, expires %s")
    :format(cert:get_subject(), cert:get_issuer(), table.concat(cert:get_san(), " "), expires))
  client:send("Hello, secure world!\n")
end)
client:on("data_received", function(data)
  print("client: received " .. show(data))
  client:close()
end)
client:on("connection_failed", function(message, code)
  print(("client: failed: %s (%s)"):format(message, code))
  os.exit(1, true)
end)

local deadline = os.time() + 10
while client:poll() and os.time() < deadline do
  server:poll()
end
for _ = 1, 50 do server:poll() end
server:stop()
print("demo: done")
