-- The seed's TLS server, ported: listens on 8443 with certs/server.crt and
-- certs/server.key, says when a client connects and prints what it sends.
--
--   lua5.4 examples/server.lua [port] [--once]
--
-- --once stops after the first client has come and gone.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe

local port, once = 8443, false
for _, a in ipairs(arg) do
  if a == "--once" then once = true else port = assert(tonumber(a), "port?") end
end

local server = assert(tls.listen {
  port = port,
  certificate = root .. "/certs/server.crt",
  key = root .. "/certs/server.key",
})
print("listening on port " .. server:get_local_port())

server:on("connection_established", function(conn)
  print("TLS connection established")
end)

server:on("data_received", function(conn, data)
  io.write("Client says: ", data)
  conn:send("Hello, client!\n")
end)

server:on("disconnected", function(conn)
  print("client disconnected")
  if once then server:stop() end
end)

server:run()
