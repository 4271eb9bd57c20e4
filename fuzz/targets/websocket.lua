-- fuzz target websocket: WebSocketPeer's handshake and frame parser
-- (lua/tlspeer/websocket.lua, src/wsframe.c).  The peer is given a fake
-- stream serving the fuzz input as the other side's bytes.
-- Input: a chunking byte (see fuzz_transport), a mode byte (bit 0: client
-- instead of server, bit 1: permessage-deflate offered/accepted, bit 2: a
-- 300-byte inbound buffer, bit 3: at most 2 queued packets, bit 4: read
-- packets only every 4th poll), then the other side's bytes: a handshake
-- request (server) or response (client; the client's key is fixed to RFC
-- 6455's sample "dGhlIHNhbXBsZSBub25jZQ==", whose accept value is
-- "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), then frames.
local tls = require "tlspeer"
local WS = tls.WebSocketPeer
local T = {}
function T.init() end

local SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

function T.run(data)
  local mode = data:byte(2) or 0
  local t = fuzz_transport(data:sub(1, 1) .. data:sub(3))
  local ws = WS.new()
  if mode & 2 ~= 0 then ws:set_compression_enabled(true) end
  if mode & 4 ~= 0 then ws:set_inbound_buffer_size(300) end
  if mode & 8 ~= 0 then ws:set_max_queued_packets(2) end
  ws:set_supported_protocols { "chat", "v2" }
  local ok
  if mode & 1 ~= 0 then
    ok = fuzz_result("_connect_over", ws:_connect_over(t, "ws://localhost/fuzz"))
    ws.key = SAMPLE_KEY
  else
    ok = fuzz_result("accept_stream", ws:accept_stream(t))
  end
  if not ok then return end
  local packets, bytes = 0, 0
  for i = 1, 4 * #data + 16 do
    ws:poll()
    if mode & 16 == 0 or i % 4 == 0 then
      while ws:get_available_packet_count() > 0 do
        local p = ws:get_packet()
        assert(type(p) == "string", "get_packet")
        assert(#p <= ws:get_inbound_buffer_size(), "a packet over the inbound buffer")
        assert(type(ws:was_string_packet()) == "boolean")
        packets, bytes = packets + 1, bytes + #p
      end
    end
    local st = ws:get_ready_state()
    if st == WS.STATE_OPEN and i == 8 then
      fuzz_result("send", ws:send("fuzz reply", WS.WRITE_MODE_TEXT))
    end
    if st == WS.STATE_CLOSED then break end
  end
  if mode & 2 == 0 then assert(bytes <= #data, "more message bytes than input bytes") end
  local st = ws:get_ready_state()
  assert(st >= 0 and st <= 3)
  local code = ws:get_close_code()
  assert(type(code) == "number" and type(ws:get_close_reason()) == "string")
  if st == WS.STATE_CLOSED and code ~= -1 then
    assert(code >= 1000 and code <= 4999, "close code out of range")
  end
  tostring(ws)
  ws:get_selected_protocol(); ws:get_requested_url(); ws:get_handshake_header("origin")
  ws:close(-1)
end
return T
