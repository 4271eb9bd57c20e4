-- A TLS echo server, a tiny HTTPS server and a WebSocket (wss://) echo, for
-- trying clients (the LÖVE example, examples/client.lua) against: what
-- arrives on the echo port is sent back; every HTTPS request gets a short
-- page; every WebSocket message comes back as it was sent (text or binary).
--
--   lua5.4 examples/echo_server.lua [echo_port] [https_port] [wss_port] [--ports FILE]
--
-- Ports default to 8443, 8444 and 8445 (0 picks free ones; --ports writes
-- "echo_port https_port wss_port" to FILE once all listen).  Uses the dev
-- certificates of `make certs`.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")    -- progress shows at once, also in a pipe

local ports, portfile = {}, nil
local i = 1
while arg[i] do
  if arg[i] == "--ports" then portfile = arg[i + 1]; i = i + 1
  else ports[#ports + 1] = assert(tonumber(arg[i]), "port?") end
  i = i + 1
end
local opts = { certificate = root .. "/certs/server.crt", key = root .. "/certs/server.key" }

opts.port = ports[1] or 8443
local echo = assert(tls.listen(opts))
echo:on("data_received", function(conn, data) conn:send(data) end)

opts.port = ports[2] or 8444
local https = assert(tls.listen(opts))
local PAGE = "hello from tlspeer over HTTPS\n"
https:on("data_received", function(conn, data)
  conn.request = (conn.request or "") .. data
  if conn.request:find("\r\n\r\n", 1, true) then
    conn:send(("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
      .. "Connection: close\r\n\r\n%s"):format(#PAGE, PAGE))
    conn:close()
  end
end)

opts.port = ports[3] or 8445
local wss = assert(tls.ws_listen(opts))
wss:on("message_received", function(conn, message, is_string)
  conn:send(message, is_string and tls.WebSocketPeer.WRITE_MODE_TEXT or tls.WebSocketPeer.WRITE_MODE_BINARY)
end)

print(("echo on %d, https on %d, wss on %d"):format(echo:get_local_port(), https:get_local_port(),
  wss:get_local_port()))
if portfile then
  local f = assert(io.open(portfile .. ".tmp", "w"))
  f:write(echo:get_local_port(), " ", https:get_local_port(), " ", wss:get_local_port(), "\n")
  f:close()
  assert(os.rename(portfile .. ".tmp", portfile))
end
tls.run()                        -- serves all three, sleeping between events
