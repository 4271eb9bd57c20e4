-- Mutual TLS: the server asks every client for a certificate issued by the
-- dev CA, and the client presents certs/client.crt.  Server and client run
-- in this one process, each polled from the same loop, as a game would.
--
--   lua5.4 examples/mutual_tls.lua
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe
local certs = root .. "/certs/"

local server = assert(tls.listen {
  port = 0,
  certificate = certs .. "server.crt", key = certs .. "server.key",
  trusted = certs .. "ca.crt",         -- client certificates must chain to it
  verify = "required",
})
server:on("connection_failed", function(_, message) print("server: refused: " .. message) end)
server:on("connection_established", function(conn)
  local who = conn:get_peer():get_peer_certificate()
  print("server: client certificate " .. who:get_subject())
  conn:send("welcome, " .. who:get_subject() .. "\n")
end)

local function try(with_certificate)
  local client = tls.connect {
    host = "localhost", port = server:get_local_port(),
    trusted = certs .. "ca.crt",
    certificate = with_certificate and certs .. "client.crt" or nil,
    key = with_certificate and certs .. "client.key" or nil,
  }
  client:on("data_received", function(data) io.write("client: ", data); client:close() end)
  client:on("connection_failed", function(message) print("client: refused: " .. message) end)
  while client:poll() do server:poll() end
  for _ = 1, 20 do server:poll() end
end

print("-- with a client certificate")
try(true)
print("-- without one")
try(false)
server:stop()
