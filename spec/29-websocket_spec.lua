-- WebSocketPeer (Godot's class) and tls.ws_listen / tls.ws_connect: the
-- contract's methods and defaults, RFC 6455 conformance against raw bytes
-- written by the spec (malformed frames, bad UTF-8, oversized messages, a
-- peer that vanishes mid-frame), permessage-deflate negotiation, budgets,
-- and the helpers on loopback.  Real peers are in spec 30.
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"
local WS = tls.WebSocketPeer

local CERTS = "certs/"

-- A client WebSocketPeer and a server WebSocketPeer over tls.pipe().
local function pair(setup)
  local a, b = tls.pipe()
  local c, s = WS.new(), WS.new()
  if setup then setup(c, s) end
  assert(c:_connect_over(a, "ws://localhost/chat?room=1"))
  assert(s:accept_stream(b))
  H.wait_for(function()
    c:poll(); s:poll()
    return c:get_ready_state() ~= WS.STATE_CONNECTING and s:get_ready_state() ~= WS.STATE_CONNECTING
  end)
  return c, s, a, b
end

local function pump(peers, done, seconds)
  return H.wait_for(function()
    for _, p in ipairs(peers) do p:poll() end
    return done()
  end, seconds or 5, 0)
end

-- A raw server over a pipe: does the handshake by hand, returns the
-- client WebSocketPeer and the raw pipe end the spec writes frames to.
local function raw_server(setup, extra_response)
  local a, b = tls.pipe()
  local c = WS.new()
  if setup then setup(c) end
  assert(c:_connect_over(a, "ws://localhost/"))
  c:poll()
  local req = b:get_partial_data(100000)
  local key = req:match("Sec%-WebSocket%-Key: (%S+)")
  b:put_partial_data("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    .. "Sec-WebSocket-Accept: " .. core._ws_accept(key) .. "\r\n" .. (extra_response or "") .. "\r\n")
  pump({ c }, function() return c:get_ready_state() ~= WS.STATE_CONNECTING end)
  return c, b, req
end

-- A raw client over a pipe: sends a handshake request by hand.
local function raw_client(setup, extra_request)
  local a, b = tls.pipe()
  local s = WS.new()
  if setup then setup(s) end
  assert(s:accept_stream(b))
  a:put_partial_data("GET /x HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    .. "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" .. (extra_request or "") .. "\r\n")
  pump({ s }, function() return s:get_ready_state() ~= WS.STATE_CONNECTING end)
  local resp = a:get_partial_data(100000)
  return s, a, resp
end

local function frame(b0, payload, mask) return core._ws_frame(b0, payload, mask) end

-- Reads the frames a raw end received: list of {opcode, payload}.
local function frames_of(bytes, masked)
  local list, pos = {}, 1
  while true do
    local fin, rsv, op, m, len, hlen, key = core._ws_parse(bytes, pos)
    if fin == nil then break end
    local payload = bytes:sub(pos + hlen, pos + hlen + len - 1)
    if m then payload = core._ws_mask(payload, key, 0) end
    assert.equal(masked, m)
    list[#list + 1] = { op = op, payload = payload, fin = fin, rsv = rsv }
    pos = pos + hlen + len
  end
  return list
end

local function close_frame_code(f)
  local a, b = f.payload:byte(1, 2)
  return a * 256 + b, f.payload:sub(3)
end

describe("WebSocketPeer", function()
  teardown(H.cleanup)

  it("has Godot's constants and defaults", function()
    assert.same({ 0, 1, 2, 3, 0, 1 }, { WS.STATE_CONNECTING, WS.STATE_OPEN, WS.STATE_CLOSING,
      WS.STATE_CLOSED, WS.WRITE_MODE_TEXT, WS.WRITE_MODE_BINARY })
    local ws = WS.new()
    assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
    assert.equal(65535, ws:get_inbound_buffer_size())
    assert.equal(65535, ws:get_outbound_buffer_size())
    assert.equal(4096, ws:get_max_queued_packets())
    assert.equal(0, ws:get_heartbeat_interval())
    assert.same({}, ws:get_supported_protocols())
    assert.same({}, ws:get_handshake_headers())
    assert.is_false(ws:is_compression_enabled())
    assert.equal(-1, ws:get_close_code())
    assert.equal("", ws:get_close_reason())
    assert.equal("", ws:get_selected_protocol())
    assert.equal("", ws:get_requested_url())
    assert.equal("", ws:get_connected_host())
    assert.equal(0, ws:get_connected_port())
    assert.equal(0, ws:get_current_outbound_buffered_amount())
    assert.equal(0, ws:get_available_packet_count())
    assert.is_false(ws:was_string_packet())
    assert.matches("WebSocketPeer %(closed", tostring(ws))
    local p, msg, code = ws:get_packet()
    assert.is_nil(p); assert.equal("ERR_UNAVAILABLE", code); assert.truthy(msg)
    local ok, m2, c2 = ws:send_text("x")
    assert.is_nil(ok); assert.equal("FAILED", c2); assert.truthy(m2)
  end)

  it("keeps settings and hands out copies", function()
    local ws = WS.new()
    local list = { "chat", "v2" }
    ws:set_supported_protocols(list)
    list[1] = "changed"
    assert.same({ "chat", "v2" }, ws:get_supported_protocols())
    ws:set_handshake_headers { "X-A: 1", "Cookie: a=b" }
    assert.same({ "X-A: 1", "Cookie: a=b" }, ws:get_handshake_headers())
    ws:set_inbound_buffer_size(100); ws:set_outbound_buffer_size(200)
    ws:set_max_queued_packets(3); ws:set_heartbeat_interval(2.5)
    ws:set_compression_enabled(true); ws:set_no_delay(false)
    assert.same({ 100, 200, 3, 2.5, true }, { ws:get_inbound_buffer_size(), ws:get_outbound_buffer_size(),
      ws:get_max_queued_packets(), ws:get_heartbeat_interval(), ws:is_compression_enabled() })
  end)

  it("raises on programming mistakes", function()
    local ws = WS.new()
    assert.has_error(function() ws:set_supported_protocols("chat") end)
    assert.has_error(function() ws:set_supported_protocols { "bad name" } end)
    assert.has_error(function() ws:set_handshake_headers { "X-A: 1\r\nEvil: 1" } end)
    assert.has_error(function() ws:set_handshake_headers { "no colon" } end)
    assert.has_error(function() ws:set_inbound_buffer_size(0) end)
    assert.has_error(function() ws:set_inbound_buffer_size(1.5) end)
    assert.has_error(function() ws:set_outbound_buffer_size("10") end)
    assert.has_error(function() ws:set_max_queued_packets(-1) end)
    assert.has_error(function() ws:set_heartbeat_interval(-1) end)
    assert.has_error(function() ws:set_heartbeat_interval(0 / 0) end)
    assert.has_error(function() ws:set_compression_enabled(1) end)
    assert.has_error(function() ws:set_no_delay("yes") end)
    assert.has_error(function() ws:connect_to_url(nil) end)
    assert.has_error(function() ws:connect_to_url("ws://localhost/", "options") end)
    assert.has_error(function() ws:accept_stream(42) end)
    assert.has_error(function() ws:accept_stream({}) end)
    assert.has_error(function() ws:send(42) end)
    assert.has_error(function() ws:send("x", 7) end)
    assert.has_error(function() ws:send_text(nil) end)
    assert.has_error(function() ws:put_packet({}) end)
    assert.has_error(function() ws:close("1000") end)
    assert.has_error(function() ws:close(1005) end)
    assert.has_error(function() ws:close(999) end)
    assert.has_error(function() ws:close(1000, ("x"):rep(124)) end)
    assert.has_error(function() ws:close(1000, "\255") end)
    assert.has_error(function() ws:get_handshake_header(1) end)
    local server_opts = tls.TLSOptions.server(tls.CryptoKey.new():load(CERTS .. "server.key") and
      (function() local k = tls.CryptoKey.new(); k:load(CERTS .. "server.key"); return k end)(),
      (function() local c = tls.X509Certificate.new(); c:load(CERTS .. "server.crt"); return c end)())
    assert.has_error(function() ws:connect_to_url("wss://localhost/", server_opts) end)
  end)

  it("refuses URLs that are not ws:// or wss:// with ERR_INVALID_PARAMETER", function()
    for _, url in ipairs { "http://localhost/", "localhost", "ws://", "ws://bad host/", "ws://h:0/",
                           "ws://h:99999/", "ws://h/#frag", "ws://h/a b", "ws://u:p@h/", "ws://[nohost]/" } do
      local ws = WS.new()
      local ok, msg, code = ws:connect_to_url(url)
      assert.is_nil(ok, url)
      assert.equal("ERR_INVALID_PARAMETER", code, url)
      assert.matches("invalid WebSocket URL", msg)
      assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
    end
  end)

  it("refuses a stream that is not connected, and a second connection", function()
    local ws = WS.new()
    local ok, _, code = ws:accept_stream(tls.StreamPeerTCP.new())
    assert.is_nil(ok); assert.equal("ERR_INVALID_PARAMETER", code)
    local c = pair()
    local ok2, _, code2 = c:connect_to_url("ws://localhost/")
    assert.is_nil(ok2); assert.equal("ERR_ALREADY_IN_USE", code2)
  end)

  it("exchanges text and binary messages, subprotocols and headers, both ways", function()
    local c, s = pair(function(cl, sv)
      cl:set_supported_protocols { "v3", "chat" }
      sv:set_supported_protocols { "chat", "v3" }
      cl:set_handshake_headers { "Origin: https://game.example", "X-Player: 7" }
      sv:set_handshake_headers { "X-Server: tlspeer" }
    end)
    assert.equal(WS.STATE_OPEN, c:get_ready_state())
    assert.equal(WS.STATE_OPEN, s:get_ready_state())
    assert.equal("v3", c:get_selected_protocol())             -- the client's first choice
    assert.equal("v3", s:get_selected_protocol())
    assert.equal("https://game.example", s:get_handshake_header("origin"))
    assert.equal("7", s:get_handshake_header("X-PLAYER"))
    assert.equal("tlspeer", c:get_handshake_header("x-server"))
    assert.equal("ws://localhost/chat?room=1", s:get_requested_url())
    assert.equal("ws://localhost/chat?room=1", c:get_requested_url())
    assert(c:send_text("héllo ✓"))
    assert(c:put_packet("\0\1\2"))
    assert(c:send("bin", WS.WRITE_MODE_BINARY))
    assert(c:send("txt", WS.WRITE_MODE_TEXT))
    assert(c:send(""))
    pump({ c, s }, function() return s:get_available_packet_count() == 5 end)
    local got = {}
    while s:get_available_packet_count() > 0 do got[#got + 1] = { s:get_packet(), s:was_string_packet() } end
    assert.same({ { "héllo ✓", true }, { "\0\1\2", false }, { "bin", false }, { "txt", true }, { "", false } }, got)
    assert(s:send_text("back"))
    pump({ c, s }, function() return c:get_available_packet_count() == 1 end)
    assert.equal("back", c:get_packet())
    assert.is_true(c:was_string_packet())
    local ok, _, code = c:send_text("\255")
    assert.is_nil(ok); assert.equal("ERR_INVALID_PARAMETER", code)
  end)

  it("runs the closing handshake with codes and reasons both ways", function()
    local c, s = pair()
    c:close(4000, "see you ✓")
    assert.equal(WS.STATE_CLOSING, c:get_ready_state())
    assert.is_nil(c:send_text("late"))
    pump({ c, s }, function() return c:get_ready_state() == WS.STATE_CLOSED and s:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(4000, s:get_close_code()); assert.equal("see you ✓", s:get_close_reason())
    assert.equal(4000, c:get_close_code())                     -- the server echoed the code
    local c2, s2 = pair()
    s2:close()                                                 -- 1000, ""
    pump({ c2, s2 }, function() return c2:get_ready_state() == WS.STATE_CLOSED and s2:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(1000, c2:get_close_code()); assert.equal("", c2:get_close_reason())
    -- reusable once closed
    assert.is_true(c2:connect_to_url("ws://127.0.0.1:1/") or true)
    c2:close(-1)
  end)

  it("close(-1) drops the connection at once; the peer sees -1 (unclean)", function()
    local c, s = pair()
    c:close(-1)
    assert.equal(WS.STATE_CLOSED, c:get_ready_state())
    assert.equal(-1, c:get_close_code())
    pump({ s }, function() return s:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(-1, s:get_close_code())
    assert.equal("", s:get_close_reason())
  end)

  it("a peer that vanishes mid-frame: -1, and the messages before it stay readable", function()
    local c, raw = raw_server()
    raw:put_partial_data(frame(0x81, "whole", false) .. frame(0x82, ("x"):rep(1000), false):sub(1, 300))
    pump({ c }, function() return c:get_available_packet_count() == 1 end)
    raw:disconnect_from_host()
    pump({ c }, function() return c:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(-1, c:get_close_code())
    assert.equal("whole", c:get_packet())
    assert.truthy(c:get_error())
  end)

  it("answers pings (also between fragments) and assembles fragmented messages", function()
    local c, raw = raw_server()
    raw:put_partial_data(frame(0x01, "frag", false) .. frame(0x89, "are you there", false)
      .. frame(0x00, "men", false) .. frame(0x80, "ted ✓", false))
    pump({ c }, function() return c:get_available_packet_count() == 1 end)
    assert.equal("fragmented ✓", c:get_packet())
    assert.is_true(c:was_string_packet())
    local out = frames_of(raw:get_partial_data(100000), true)
    assert.equal(10, out[1].op)
    assert.equal("are you there", out[1].payload)
  end)

  it("heartbeat_interval pings, and drops a peer that stops answering", function()
    local c, raw = raw_server(function(ws) ws:set_heartbeat_interval(0.05) end)
    pump({ c }, function() return raw:get_available_bytes() > 0 end)
    local out = frames_of(raw:get_partial_data(100000), true)
    assert.equal(9, out[1].op)                                  -- a ping
    raw:put_partial_data(frame(0x8A, out[1].payload, false))    -- answered once
    pump({ c }, function() return c:get_ready_state() == WS.STATE_CLOSED end, 10)
    assert.equal(WS.STATE_CLOSED, c:get_ready_state())
    assert.equal(-1, c:get_close_code())
    local msg, code = c:get_error()
    assert.matches("did not answer a ping", msg)
    assert.equal("ERR_TIMEOUT", code)
  end)

  local function expect_fail(setup_frames, want_code, want_reason, as_client)
    local ws, raw
    if as_client then ws, raw = raw_server() else ws, raw = raw_client() ; raw:get_partial_data(100000) end
    raw:put_partial_data(setup_frames)
    pump({ ws }, function() return ws:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
    assert.equal(want_code, ws:get_close_code())
    assert.matches(want_reason, ws:get_close_reason())
    local out = frames_of(raw:get_partial_data(1000000), as_client == true)
    local last = out[#out]
    assert.equal(8, last.op)
    assert.equal(want_code, (close_frame_code(last)))
  end

  it("fails malformed frames with 1002 and says why", function()
    expect_fail(frame(0x81, "x", false), 1002, "unmasked frame from a client")
    expect_fail(frame(0x81, "x", true), 1002, "masked frame from the server", true)
    expect_fail(frame(0xC1, "x", true), 1002, "reserved bits")       -- RSV1 without deflate
    expect_fail(frame(0x83, "x", true), 1002, "unknown opcode 3")
    expect_fail(frame(0x8B, "", true), 1002, "unknown opcode 11")
    expect_fail(frame(0x09, "x", true), 1002, "fragmented control frame")
    expect_fail(frame(0x89, ("x"):rep(126), true), 1002, "longer than 125")
    expect_fail(frame(0x80, "x", true), 1002, "no message to continue")
    expect_fail(frame(0x01, "a", true) .. frame(0x81, "b", true), 1002, "before the last one ended")
    expect_fail(frame(0x88, "\3", true), 1002, "1%-byte payload")
    expect_fail(frame(0x88, "\3\237", true), 1002, "invalid code 1005")
    expect_fail("\130\255\128\0\0\0\0\0\0\0\0\0\0\0", 1002, "most significant bit")
  end)

  it("fails text that is not UTF-8 with 1007 (also split across fragments, and in close reasons)", function()
    expect_fail(frame(0x81, "ok \255", true), 1007, "not valid UTF%-8")
    expect_fail(frame(0x81, "\237\160\128", true), 1007, "not valid UTF%-8")        -- a surrogate
    expect_fail(frame(0x01, "caf\195", true) .. frame(0x80, "", true), 1007, "inside a UTF%-8 character")
    expect_fail(frame(0x88, "\3\232\255", true), 1007, "reason is not valid UTF%-8")
    -- a character split across fragments is fine
    local s, raw = raw_client()
    raw:get_partial_data(100000)
    raw:put_partial_data(frame(0x01, "caf\195", true) .. frame(0x80, "\169", true))
    pump({ s }, function() return s:get_available_packet_count() == 1 end)
    assert.equal("café", s:get_packet())
  end)

  it("closes a message over the inbound buffer with 1009 and a readable reason, on both sides", function()
    local c, s = pair(function(_, sv) sv:set_inbound_buffer_size(1000) end)
    assert(c:send(("x"):rep(1001)))
    pump({ c, s }, function() return c:get_ready_state() == WS.STATE_CLOSED and s:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(1009, s:get_close_code())
    assert.matches("1001 bytes is over the inbound buffer %(1000 bytes", s:get_close_reason())
    assert.equal(1009, c:get_close_code())
    assert.matches("over the inbound buffer", c:get_close_reason())
    -- fragments add up
    expect_fail(frame(0x02, ("a"):rep(40000), true) .. frame(0x80, ("a"):rep(30000), true), 1009, "70000 bytes")
  end)

  it("keeps the outbound buffer and max_queued_packets limits", function()
    local c = pair(function(cl) cl:set_outbound_buffer_size(100); cl:set_max_queued_packets(3) end)
    local ok, msg, code = c:send(("x"):rep(200))
    assert.is_nil(ok); assert.equal("ERR_OUT_OF_MEMORY", code); assert.matches("outbound", msg)
    assert(c:send("1")); assert(c:send("2")); assert(c:send("3"))
    assert.is_true(c:get_current_outbound_buffered_amount() >= 3 * 7)
    local ok2, _, code2 = c:send("4")
    assert.is_nil(ok2); assert.equal("ERR_OUT_OF_MEMORY", code2)
    c:poll()
    assert.equal(0, c:get_current_outbound_buffered_amount())
    assert(c:send("4"))
  end)

  it("stops reading while max_queued_packets are unread, and loses nothing", function()
    local c, s = pair(function(_, sv) sv:set_max_queued_packets(2) end)
    for i = 1, 6 do assert(c:send_text("m" .. i)) end
    pump({ c, s }, function() return s:get_available_packet_count() == 2 end)
    for _ = 1, 5 do c:poll(); s:poll() end
    assert.equal(2, s:get_available_packet_count())
    local got = {}
    pump({ c, s }, function()
      while s:get_available_packet_count() > 0 do got[#got + 1] = s:get_packet() end
      return #got == 6
    end)
    assert.same({ "m1", "m2", "m3", "m4", "m5", "m6" }, got)
  end)

  it("assembles a large message over many polls within the byte budget", function()
    local c, s = pair(function(cl, sv)
      sv:set_inbound_buffer_size(2 * 1048576); cl:set_outbound_buffer_size(2 * 1048576)
    end)
    local big = H.bytes(1048576, 3)
    assert(c:put_packet(big))
    -- A poll runs steps of at most the byte budget until its time budget
    -- is spent: with a time budget of one step, 1 MiB takes 64 polls.
    local seconds, bytes = tls.get_poll_budget()
    tls.set_poll_budget(1e-6, 16384)
    local polls = 0
    local ok, err = pcall(pump, { c, s }, function()
      polls = polls + 1
      return s:get_available_packet_count() == 1
    end, 20)
    tls.set_poll_budget(seconds, bytes)
    assert(ok, err)
    assert.is_true(s:get_packet() == big)
    assert.is_true(polls >= 64, polls .. " polls")
  end)

  it("negotiates permessage-deflate: context takeover and window bits", function()
    local c, s = pair(function(cl, sv) cl:set_compression_enabled(true); sv:set_compression_enabled(true) end)
    assert.equal("permessage-deflate", c:get_handshake_header("sec-websocket-extensions"))
    local text = ("compress me please "):rep(200)
    for _ = 1, 3 do assert(c:send_text(text)); assert(s:send_text(text)) end
    pump({ c, s }, function() return s:get_available_packet_count() == 3 and c:get_available_packet_count() == 3 end)
    for _ = 1, 3 do assert.equal(text, s:get_packet()); assert.equal(text, c:get_packet()) end
    -- a raw client asking for no context takeover and a small server window
    local s2, raw, resp = raw_client(function(sv) sv:set_compression_enabled(true) end,
      "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; server_max_window_bits=8, "
      .. "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
      .. "server_max_window_bits=10; client_max_window_bits\r\n")
    assert.matches("Sec%-WebSocket%-Extensions: permessage%-deflate; server_no_context_takeover; "
      .. "client_no_context_takeover; server_max_window_bits=10\r\n", resp)
    assert(s2:send_text(text)); assert(s2:send_text(text))
    s2:poll()
    local out = frames_of(raw:get_partial_data(1000000), false)
    assert.equal(2, #out)
    assert.equal(4, out[1].rsv)
    assert.equal(out[1].payload, out[2].payload)              -- no takeover: same bytes each time
    local z = core._zstream("inflate", "raw")
    assert.equal(text, (z:update(out[1].payload .. "\0\0\255\255", "sync")))
    -- not enabled: no offer accepted
    local _, _, resp3 = raw_client(nil, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert.is_nil(resp3:find("Extensions", 1, true))
  end)

  it("fails a compressed message that inflates past the inbound buffer (1009) or is corrupt (1007)", function()
    local s, raw = raw_client(function(sv) sv:set_compression_enabled(true); sv:set_inbound_buffer_size(10000) end,
      "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    raw:get_partial_data(100000)
    local z = core._zstream("deflate", "raw")
    local bomb = z:update(("\0"):rep(1000000), "sync"):sub(1, -5)
    raw:put_partial_data(frame(0xC2, bomb, true))
    pump({ s }, function() return s:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(1009, s:get_close_code())
    assert.matches("inflates past the inbound buffer", s:get_close_reason())
    local s2, raw2 = raw_client(function(sv) sv:set_compression_enabled(true) end,
      "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    raw2:get_partial_data(100000)
    raw2:put_partial_data(frame(0xC2, "\255\255\255\255", true))
    pump({ s2 }, function() return s2:get_ready_state() == WS.STATE_CLOSED end)
    assert.equal(1007, s2:get_close_code())
  end)

  it("refuses bad handshakes with an HTTP error", function()
    local s, _, resp = raw_client(nil, "")
    assert.equal(WS.STATE_OPEN, s:get_ready_state())
    assert.matches("^HTTP/1.1 101 ", resp)
    assert.matches("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo=\r\n", resp)
    local function refused(request, status)
      local a, b = tls.pipe()
      local ws = WS.new()
      assert(ws:accept_stream(b))
      a:put_partial_data(request)
      pump({ ws }, function() return ws:get_ready_state() == WS.STATE_CLOSED end)
      assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
      assert.matches("^HTTP/1.1 " .. status, a:get_partial_data(100000))
      assert.matches("refused", (ws:get_error()))
    end
    local base = "Host: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    refused("GET / HTTP/1.1\r\n" .. base .. "Sec-WebSocket-Version: 8\r\n\r\n", "426")
    refused("GET / HTTP/1.1\r\n" .. base .. "\r\n", "426")
    refused("POST / HTTP/1.1\r\n" .. base .. "Sec-WebSocket-Version: 13\r\n\r\n", "405")
    refused("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
      .. "Sec-WebSocket-Key: short\r\n\r\n", "400")
    refused("GET / HTTP/1.0\r\n" .. base .. "Sec-WebSocket-Version: 13\r\n\r\n", "400")
    refused("garbage\r\n\r\n", "400")
    refused("GET / HTTP/1.1\r\nX: " .. ("a"):rep(20000) .. "\r\n\r\n", "431")
  end)

  it("checks the server's handshake response (client side)", function()
    local function bad(response, pattern, setup)
      local a, b = tls.pipe()
      local c = WS.new()
      if setup then setup(c) end
      assert(c:_connect_over(a, "ws://localhost/"))
      c:poll()
      local req = b:get_partial_data(100000)
      local key = req:match("Sec%-WebSocket%-Key: (%S+)")
      b:put_partial_data((response:gsub("ACCEPT", (core._ws_accept(key)))))
      pump({ c }, function() return c:get_ready_state() == WS.STATE_CLOSED end)
      assert.equal(WS.STATE_CLOSED, c:get_ready_state())
      assert.matches(pattern, (c:get_error()))
      assert.equal(-1, c:get_close_code())
    end
    local ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    bad("HTTP/1.1 404 Not Found\r\n\r\n", "did not switch")
    bad(ok .. "Sec-WebSocket-Accept: wrong=\r\n\r\n", "does not match")
    bad("HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ACCEPT\r\n\r\n", "Upgrade: websocket")
    bad(ok .. "Sec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Protocol: other\r\n\r\n", "not offered",
      function(c) c:set_supported_protocols { "chat" } end)
    bad(ok .. "Sec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", "not offered")
    bad(ok .. "Sec-WebSocket-Accept: ACCEPT\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10\r\n\r\n",
      "not acceptable", function(c) c:set_compression_enabled(true) end)
    bad(ok .. "Sec-WebSocket-Accept: ACCEPT\r\nBroken header line\r\n\r\n", "malformed header")
  end)

  it("masks every client frame with a fresh key, and servers send unmasked", function()
    local c, raw = raw_server()
    assert(c:send_text("same")); assert(c:send_text("same"))
    c:poll()
    local bytes = raw:get_partial_data(100000)
    local out = frames_of(bytes, true)
    assert.equal(2, #out)
    assert.equal("same", out[1].payload)
    local k1 = select(7, core._ws_parse(bytes, 1))
    local k2 = select(7, core._ws_parse(bytes, 11 + 1))
    assert.are_not.equal(k1, k2)
  end)

  it("touches no globals", function()
    local before = {}
    for k in pairs(_G) do before[k] = true end
    pair(function(cl, sv) cl:set_compression_enabled(true); sv:set_compression_enabled(true) end)
    for k in pairs(_G) do assert.is_true(before[k], "new global " .. tostring(k)) end
  end)
end)

describe("tls.ws_listen / tls.ws_connect", function()
  teardown(H.cleanup)

  local function pump_all(done, seconds)
    return H.wait_for(function() tls.poll(); return done() end, seconds or 10, 0.001)
  end

  it("serve a chat of several clients over wss, driven by tls.poll()", function()
    local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt",
      key = CERTS .. "server.key", protocols = { "chat" }, compression = true })
    local joined, left = 0, {}
    srv:on("connection_established", function() joined = joined + 1 end)
    srv:on("message_received", function(conn, msg, is_string)
      assert.is_true(is_string)
      srv:broadcast(msg, WS.WRITE_MODE_TEXT)
    end)
    srv:on("disconnected", function(conn, code, reason) left[#left + 1] = code end)
    local clients, heard = {}, {}
    for i = 1, 3 do
      local c = tls.ws_connect { url = "wss://localhost:" .. srv:get_local_port() .. "/chat",
        trusted = CERTS .. "ca.crt", protocols = { "chat" }, compression = true }
      heard[i] = {}
      c:on("message_received", function(conn, msg, is_string) heard[i][#heard[i] + 1] = msg end)
      clients[i] = c
    end
    assert.is_true(pump_all(function()
      return joined == 3 and clients[1].established and clients[2].established and clients[3].established
    end))
    assert.equal(3, #srv:get_connections())
    assert(clients[1]:send_text("hi from 1"))
    assert.is_true(pump_all(function() return #heard[3] == 1 and #heard[2] == 1 and #heard[1] == 1 end))
    assert.equal("hi from 1", heard[2][1])
    assert.equal("chat", clients[1]:get_peer():get_selected_protocol())
    local closed
    clients[2]:on("disconnected", function(conn, code, reason) closed = { conn == clients[2], code, reason } end)
    clients[2]:close(4100, "leaving")
    assert.is_true(pump_all(function() return closed and #left == 1 end))
    assert.same({ true, 4100, "" }, closed)
    assert.same({ 4100 }, left)
    srv:stop()
    assert.is_true(pump_all(function() return not clients[1]:poll() and not clients[3]:poll() end))
  end)

  it("reports a refused connection and a bad certificate as connection_failed", function()
    local port = H.free_port()
    local c = tls.ws_connect { url = "ws://127.0.0.1:" .. port .. "/" }
    local failed
    c:on("connection_failed", function(conn, msg, code) failed = { conn == c, msg, code } end)
    local ok, msg, code = c:wait(10)
    assert.is_nil(ok); assert.truthy(msg); assert.truthy(code)
    pump_all(function() return failed end)
    assert.is_true(failed[1])
    local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt",
      key = CERTS .. "server.key" })
    local c2 = tls.ws_connect { url = "wss://localhost:" .. srv:get_local_port() .. "/" }  -- untrusted CA
    local failed2
    c2:on("connection_failed", function(conn, m) failed2 = m end)
    assert.truthy(pump_all(function() return failed2 end))
    srv:stop()
  end)

  it("checks options, and reports handler errors without breaking the loop", function()
    assert.has_error(function() tls.ws_listen { prot = 1 } end)
    assert.has_error(function() tls.ws_listen { port = "80" } end)
    assert.has_error(function() tls.ws_listen { certificate = CERTS .. "server.crt" } end)
    assert.has_error(function() tls.ws_listen { inbound_buffer_size = 0 } end)
    assert.has_error(function() tls.ws_connect {} end)
    assert.has_error(function() tls.ws_connect { url = "ws://h/", compression = "yes" } end)
    local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1", heartbeat_interval = 0.05 })
    local errors, echoed = {}, nil
    srv:on("error", function(msg) errors[#errors + 1] = msg end)
    srv:on("message_received", function(conn, msg) conn:send(msg); error("handler bug") end)
    local c = tls.ws_connect { url = "ws://127.0.0.1:" .. srv:get_local_port() .. "/" }
    c:on("message_received", function(conn, msg) echoed = msg end)
    assert.is_true(pump_all(function() return c.established end))
    c:send("x")
    assert.is_true(pump_all(function() return echoed == "x" end))
    assert.matches("handler bug", errors[1])
    -- heartbeat over the event core: the client answers the pings, it stays
    local t0 = core._now()
    pump_all(function() return core._now() - t0 > 0.3 end)
    assert.equal(WS.STATE_OPEN, c:get_ready_state())
    srv:stop()
  end)
end)

describe("WebSocketPeer while DNS stalls (a stub DNS server in a network namespace)", function()
  local ns = "tlspeer-ws-" .. tostring(os.time() % 100000) .. "-" .. tostring(math.random(1000))
  local stub_pid

  setup(function()
    assert(H.execute("ip netns add " .. ns), "cannot make a network namespace")
    assert(H.execute("ip netns exec " .. ns .. " ip link set lo up"))
    assert(H.execute("mkdir -p /etc/netns/" .. ns))
    H.write("/etc/netns/" .. ns .. "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    local dir = H.tmpdir()
    local p = assert(io.popen(("ip netns exec %s python3 scripts/dnsstub.py --delay 1.5 --never never.test "
      .. "--ready %s >/dev/null 2>&1 & echo $!"):format(ns, H.q(dir .. "/ready"))))
    stub_pid = tonumber(p:read("*l"))
    p:close()
    assert(H.wait_for(function() return H.exists(dir .. "/ready") end, 5), "the stub DNS server did not start")
  end)

  teardown(function()
    if stub_pid then H.kill(stub_pid) end
    H.execute("ip netns del " .. ns)
    H.execute("rm -rf /etc/netns/" .. ns)
    H.cleanup()
  end)

  it("connect_to_url returns at once and poll() never waits for the lookup (ws and wss)", function()
    local dir = H.tmpdir()
    H.write(dir .. "/t.lua", ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath) .. [[
      local tls = require "tlspeer"
      local now = require("tlspeer.core")._now
      local WS = tls.WebSocketPeer
      local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1",
        certificate = "certs/server.crt", key = "certs/server.key" })
      srv:on("message_received", function(conn, m) conn:send_text(m) end)
      local ca = tls.X509Certificate.new()
      assert(ca:load("certs/ca.crt"))
      local ws = WS.new()
      local t0 = now()
      assert(ws:connect_to_url("wss://game.test:" .. srv:get_local_port() .. "/",
        tls.TLSOptions.client(ca, "localhost")))
      local longest, got = now() - t0, nil
      while not got and now() - t0 < 10 do
        local t1 = now()
        ws:poll()
        tls.poll()
        if now() - t1 > longest then longest = now() - t1 end
        if ws:get_ready_state() == WS.STATE_OPEN and not ws.sent_hello then
          ws.sent_hello = true
          ws:send_text("hello")
        end
        if ws:get_available_packet_count() > 0 then got = ws:get_packet() end
      end
      print("answered", got, now() - t0 >= 1.4, longest < 1)
      local never = WS.new()
      assert(never:connect_to_url("ws://never.test/"))
      never:poll()
      print("never", never:get_ready_state())
      never:close(-1)
      print("closed", never:get_ready_state())
    ]])
    local ok, out = H.run(("ip netns exec %s timeout 30 %s %s"):format(ns, H.LUA, H.q(dir .. "/t.lua")))
    assert.is_true(ok, out)
    assert.matches("answered\thello\ttrue\ttrue", out)
    assert.matches("never\t0", out)
    assert.matches("closed\t3", out)
  end)
end)
