-- A WebSocket chat server: every message a client sends goes to everyone;
-- joins and leaves are announced.  Plain ws:// by default; with the dev
-- certificates (`make certs`) and --tls it serves wss://.
--
--   lua5.4 examples/chat_server.lua [port] [--tls]        (port 8080)
--   then: lua5.4 examples/chat_client.lua ws://localhost:8080/ alice
--   or a browser console: new WebSocket("ws://localhost:8080/").onmessage = e => console.log(e.data)
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
io.stdout:setvbuf("line")

local port, secure = 8080, false
for _, a in ipairs(arg) do
  if a == "--tls" then secure = true else port = assert(tonumber(a), "port?") end
end

local srv = assert(tls.ws_listen {
  port = port,
  certificate = secure and root .. "/certs/server.crt" or nil,
  key = secure and root .. "/certs/server.key" or nil,
  protocols = { "chat" },
  compression = true,          -- permessage-deflate, when the client offers it
  heartbeat_interval = 30,     -- drop clients that vanish without closing
})

local names = {}               -- conn -> name
local TEXT = tls.WebSocketPeer.WRITE_MODE_TEXT

srv:on("connection_established", function(conn)
  local host, p = conn:get_address()
  names[conn] = ("%s:%d"):format(host, p)
  print("joined: " .. names[conn], conn:get_peer():get_handshake_header("Origin") or "")
  srv:broadcast("* " .. names[conn] .. " joined", TEXT)
end)

srv:on("message_received", function(conn, message, is_string)
  if not is_string then return end
  local nick = message:match("^/nick (%S+)$")
  if nick then
    srv:broadcast(("* %s is now %s"):format(names[conn], nick), TEXT)
    names[conn] = nick
    return
  end
  srv:broadcast(names[conn] .. ": " .. message, TEXT)
end)

srv:on("disconnected", function(conn, code, reason)
  print(("left: %s (%d %s)"):format(names[conn], code, reason))
  srv:broadcast("* " .. names[conn] .. " left", TEXT)
  names[conn] = nil
end)

print(("chat on %s://localhost:%d/"):format(secure and "wss" or "ws", srv:get_local_port()))
srv:run()
