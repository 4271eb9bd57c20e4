-- A WebSocket chat client with Godot's WebSocketPeer: connects, picks a
-- nick, says a few lines, prints what the room says, and closes cleanly.
--
--   lua5.4 examples/chat_client.lua [url] [nick]   (ws://localhost:8080/ guest)
--   wss:// URLs are verified against the dev CA of `make certs`.
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/_path.lua")
local tls = require "tlspeer"
local core = require "tlspeer.core"         -- only for a sleep between frames
local WebSocketPeer = tls.WebSocketPeer
io.stdout:setvbuf("line")

local url, nick = arg[1] or "ws://localhost:8080/", arg[2] or "guest"
local ca = tls.X509Certificate.new()
assert(ca:load(root .. "/certs/ca.crt"))

local ws = WebSocketPeer.new()
ws:set_supported_protocols { "chat" }
ws:set_compression_enabled(true)
assert(ws:connect_to_url(url, tls.TLSOptions.client(ca)))

local lines = { "/nick " .. nick, "hello, everyone", "bye for now" }
local said, opened, quiet_since = 0, false, nil

-- A game would do this once per frame, from its update function.
while ws:get_ready_state() ~= WebSocketPeer.STATE_CLOSED do
  ws:poll()
  if ws:get_ready_state() == WebSocketPeer.STATE_OPEN then
    if not opened then
      opened = true
      print(("connected to %s (subprotocol '%s')"):format(url, ws:get_selected_protocol()))
    end
    while ws:get_available_packet_count() > 0 do print(ws:get_packet()) end
    if said < #lines then
      said = said + 1
      ws:send_text(lines[said])
      quiet_since = core._now()
    elseif core._now() - quiet_since > 1 then
      ws:close(1000, "done chatting")
    end
  end
  core._sleep(1 / 60)
end
if opened then
  print(("closed: %d %s"):format(ws:get_close_code(), ws:get_close_reason()))
else
  print("could not connect: " .. tostring((ws:get_error())))
  os.exit(1)
end
