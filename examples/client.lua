-- The seed's TLS client, ported: connects to localhost:8443, trusting the
-- dev CA in certs/ca.crt, and says hello.
--
--   lua5.4 examples/client.lua [host] [port]
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe

local client = tls.connect {
  host = arg[1] or "localhost",
  port = tonumber(arg[2] or "8443"),
  trusted = root .. "/certs/ca.crt",
}

client:on("connection_established", function()
  print("Connected to server via TLS")
  client:send("Hello, secure world!\n")
end)

client:on("data_received", function(data)
  io.write("Server says: ", data)
  client:close()
end)

client:on("connection_failed", function(message, code)
  print("TLS handshake failed: " .. message .. " (" .. code .. ")")
end)

client:run(10)
