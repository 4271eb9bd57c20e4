-- WebSocketPeer (Godot 4's class of that name): RFC 6455 WebSockets over
-- StreamPeerTCP (ws://) and StreamPeerTLS (wss://), client and server, with
-- permessage-deflate (RFC 7692) on the zlib binding.
--
-- The protocol is Lua code on the StreamPeer methods; frame headers,
-- masking and UTF-8 validation are C (src/wsframe.c).  poll() never blocks
-- and works within the event core's budgets: each step reads and writes at
-- most loop.budget_bytes, a large message is assembled over as many polls
-- as it takes, and a frame partly sent keeps an offset into its string.
local core = require "tlspeer.core"
local loop = require "tlspeer.loop"

local StreamPeerTCP, StreamPeerTLS, TLSOptions = core.StreamPeerTCP, core.StreamPeerTLS,
  core.TLSOptions
local ws_parse, ws_frame, ws_mask, ws_utf8 = core._ws_parse, core._ws_frame, core._ws_mask,
  core._ws_utf8
local ws_key, ws_accept, zstream = core._ws_key, core._ws_accept, core._zstream
local now, check_host, is_integer = core._now, core._check_host, core._is_integer
local TCP_METHODS, TLS_METHODS = core._methods.StreamPeerTCP, core._methods.StreamPeerTLS

local TCP_CONNECTING, TCP_CONNECTED = StreamPeerTCP.STATUS_CONNECTING,
  StreamPeerTCP.STATUS_CONNECTED
local TLS_HANDSHAKING, TLS_CONNECTED = StreamPeerTLS.STATUS_HANDSHAKING,
  StreamPeerTLS.STATUS_CONNECTED

local CONNECTING, OPEN, CLOSING, CLOSED = 0, 1, 2, 3
local WRITE_MODE_TEXT, WRITE_MODE_BINARY = 0, 1

local READ_CHUNK = 16384          -- bytes asked of the stream at a time
local MAX_HEAD = 16384            -- a handshake request or response head
local CLOSE_TIMEOUT = 5           -- seconds to wait for the peer's close frame
local COALESCE = 16384            -- small frames leave together, up to this
-- Frames one step parses at most: 16 KiB of 64-byte messages is 250 of
-- them, and each may run a handler; the rest waits for the next step.
local FRAMES_PER_STEP = 64

local STATE_NAMES = { [0] = "connecting", "open", "closing", "closed" }

local WebSocketPeer = {
  STATE_CONNECTING = CONNECTING, STATE_OPEN = OPEN, STATE_CLOSING = CLOSING,
  STATE_CLOSED = CLOSED,
  WRITE_MODE_TEXT = WRITE_MODE_TEXT, WRITE_MODE_BINARY = WRITE_MODE_BINARY,
}

local Peer = {}
Peer.__index = Peer

local function argerror(n, fname, msg)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), 3)
end

local function printable(s)
  local short = s:sub(1, 120):gsub(".", function(c)
    local b = c:byte()
    if b < 32 or b > 126 or b == 92 then return ("\\x%02x"):format(b) end
  end)
  return #s > 120 and short .. "..." or short
end

local function big16(s, i)
  local a, b = s:byte(i, i + 1)
  return a * 256 + b
end

-- Close codes a close frame may carry (RFC 6455 7.4, IANA registry).
local function valid_close_code(c)
  return (c >= 1000 and c <= 1003) or (c >= 1007 and c <= 1014) or (c >= 3000 and c <= 4999)
end

function WebSocketPeer.new()
  local self = setmetatable({
    state = CLOSED,
    protocols = {}, headers = {},
    inbound = 65535, outbound = 65535, max_queued = 4096, heartbeat = 0,
    compression = false, no_delay = true,
    close_code = -1, close_reason = "",
    -- packets received: data, and whether each was text
    pq = {}, ps = {}, phead = 1, ptail = 0, pbytes = 0,
    last_string = false,
  }, Peer)
  self:_reset()
  return self
end

-- Forgets the last connection (settings and unread packets stay).
function Peer:_reset()
  self.tcp, self.tls, self.io, self.io_lua = nil, nil, nil, false
  self.phase = nil
  self.is_server = false
  self.url, self.host, self.port, self.path, self.use_tls = "", nil, nil, "/", false
  self.selected = ""
  self.hs_headers = nil
  self.ib, self.ipos = "", 1
  self.fh, self.msg = nil, nil
  -- frames to send: control frames first (between data frames), a frame
  -- partly sent is finished first
  self.out, self.ohead, self.otail = {}, 1, 0
  self.ctrl, self.chead, self.ctail = {}, 1, 0
  self.cur, self.cur_from, self.cur_close = nil, 1, false
  self.obytes, self.ocount = 0, 0
  self.sent_close, self.got_close, self.close_sent_out = false, false, false
  self.failed, self.fail_after_flush = false, false
  self.close_deadline = nil
  self.deflate = nil
  self.error, self.error_code = nil, nil
  self.ping_out, self.next_ping, self.last_rx = nil, nil, nil
  self.wake_at = nil
  self.paused = false
  self.quota = FRAMES_PER_STEP
end

function Peer:__tostring()
  local where = self.url ~= "" and self.url or (self.host and (self.host .. ":" .. tostring(self.port)))
  return ("WebSocketPeer (%s%s)"):format(STATE_NAMES[self.state], where and (", " .. where) or "")
end

--------------------------------------------------------------- settings

local function check_list(v, fname, what)
  if type(v) ~= "table" then argerror(1, fname, "list of strings expected") end
  local copy = {}
  for i, s in ipairs(v) do
    if type(s) ~= "string" then argerror(1, fname, ("item %d is not a string"):format(i)) end
    copy[i] = s
    if what == "protocol" then
      if not s:match("^[!#$%%&'*+%-.^_`|~%w]+$") then
        argerror(1, fname, ("'%s' is not a valid protocol name (an HTTP token)"):format(printable(s)))
      end
    elseif not s:match("^[!#$%%&'*+%-.^_`|~%w]+:") or s:find("[\r\n%z]") then
      argerror(1, fname, ("item %d is not a \"Name: value\" line"):format(i))
    end
  end
  return copy
end

local function copy(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  return c
end

function Peer:set_supported_protocols(list)
  self.protocols = check_list(list, "set_supported_protocols", "protocol")
end
function Peer:get_supported_protocols() return copy(self.protocols) end

function Peer:set_handshake_headers(list)
  self.headers = check_list(list, "set_handshake_headers", "header")
end
function Peer:get_handshake_headers() return copy(self.headers) end

local function check_size(v, fname, low)
  if not is_integer(v) or v < low or v > 2147483647 then
    argerror(1, fname, ("integer %d..2147483647 expected, got %s"):format(low, tostring(v)))
  end
  return v
end

function Peer:set_inbound_buffer_size(n)
  self.inbound = check_size(n, "set_inbound_buffer_size", 1)
end
function Peer:get_inbound_buffer_size() return self.inbound end

function Peer:set_outbound_buffer_size(n)
  self.outbound = check_size(n, "set_outbound_buffer_size", 1)
end
function Peer:get_outbound_buffer_size() return self.outbound end

function Peer:set_max_queued_packets(n)
  self.max_queued = check_size(n, "set_max_queued_packets", 1)
end
function Peer:get_max_queued_packets() return self.max_queued end

function Peer:set_heartbeat_interval(seconds)
  if type(seconds) ~= "number" or seconds ~= seconds or seconds < 0 or seconds == math.huge then
    argerror(1, "set_heartbeat_interval", ("seconds >= 0 expected, got %s"):format(tostring(seconds)))
  end
  self.heartbeat = seconds
  if self.state == OPEN then self:_arm_heartbeat() end
end
function Peer:get_heartbeat_interval() return self.heartbeat end

function Peer:set_compression_enabled(enabled)
  if type(enabled) ~= "boolean" then argerror(1, "set_compression_enabled", "boolean expected") end
  self.compression = enabled
end
function Peer:is_compression_enabled() return self.compression end

function Peer:set_no_delay(enabled)
  if type(enabled) ~= "boolean" then argerror(1, "set_no_delay", "boolean expected") end
  self.no_delay = enabled
  if self.tcp then self.tcp:set_no_delay(enabled) end
end

------------------------------------------------------------- queries

function Peer:get_ready_state() return self.state end
function Peer:get_close_code() return self.close_code end
function Peer:get_close_reason() return self.close_reason end
function Peer:get_selected_protocol() return self.selected end
function Peer:get_requested_url() return self.url end

function Peer:get_connected_host()
  local tcp = self.tcp
  if tcp and tcp:get_status() == TCP_CONNECTED then return tcp:get_connected_host() end
  return ""
end

function Peer:get_connected_port()
  local tcp = self.tcp
  if tcp and tcp:get_status() == TCP_CONNECTED then return tcp:get_connected_port() end
  return 0
end

function Peer:get_current_outbound_buffered_amount() return self.obytes end

-- Ours: the message and code of the last failure (a handshake refused, a
-- protocol error, the connection lost), or nil.
function Peer:get_error() return self.error, self.error_code end

-- Ours: a header of the handshake the other side sent (the client's
-- request on a server: Origin, Cookie...; the server's response on a
-- client), by name in any case; several lines are joined with ", ".
function Peer:get_handshake_header(name)
  if type(name) ~= "string" then argerror(1, "get_handshake_header", "string expected") end
  return self.hs_headers and self.hs_headers[name:lower()] or nil
end

-- Ours: the underlying stream (StreamPeerTLS for wss, StreamPeerTCP for
-- ws, or the object given to accept_stream).
function Peer:get_stream() return self.io end

---------------------------------------------------------------- packets

function Peer:get_available_packet_count()
  return self.ptail - self.phead + 1
end

function Peer:get_packet()
  local h = self.phead
  if h > self.ptail then return nil, "no packet is available", "ERR_UNAVAILABLE" end
  local data = self.pq[h]
  self.last_string = self.ps[h]
  self.pq[h], self.ps[h] = nil, nil
  self.phead = h + 1
  if self.phead > self.ptail then self.phead, self.ptail = 1, 0 end
  self.pbytes = self.pbytes - #data
  if self.paused then self:_wake() end
  return data
end

function Peer:was_string_packet() return self.last_string end

function Peer:_push_packet(data, is_string)
  local t = self.ptail + 1
  self.ptail = t
  self.pq[t], self.ps[t] = data, is_string
  self.pbytes = self.pbytes + #data
end

-- The helpers' hook: called when the peer wants a step (room for reading
-- again, a frame queued); a helper sets self._on_wake.
function Peer:_wake()
  local f = self._on_wake
  if f then f(self) end
end

----------------------------------------------------------------- sending

local function frame_queue_push(self, frame, control)
  if control then
    self.ctail = self.ctail + 1
    self.ctrl[self.ctail] = frame
  else
    self.otail = self.otail + 1
    self.out[self.otail] = frame
  end
  self.obytes = self.obytes + #frame
  self:_wake()
end

-- A data frame for `payload` (opcode 1 text, 2 binary), compressed when
-- permessage-deflate is on.
function Peer:_data_frame(payload, opcode)
  local b0 = 0x80 + opcode
  local z = self.deflate
  if z and payload ~= "" then         -- an empty message goes as it is (RFC 7692 allows either)
    local out, st, code = z.deflate:update(payload, "sync")
    if not out then return nil, st, code end
    if out:sub(-4) == "\0\0\255\255" then out = out:sub(1, -5) end
    if z.reset_out then z.deflate:reset() end
    payload, b0 = out, b0 + 0x40
  end
  return ws_frame(b0, payload, not self.is_server)
end

function Peer:send(message, write_mode)
  if type(message) ~= "string" then
    argerror(1, "send", ("string expected, got %s"):format(type(message)))
  end
  if write_mode == nil then write_mode = WRITE_MODE_BINARY end
  if write_mode ~= WRITE_MODE_TEXT and write_mode ~= WRITE_MODE_BINARY then
    argerror(2, "send", ("WRITE_MODE_TEXT (0) or WRITE_MODE_BINARY (1) expected, got %s")
      :format(tostring(write_mode)))
  end
  if self.state ~= OPEN then
    return nil, ("the WebSocket is not open (%s)"):format(STATE_NAMES[self.state]), "FAILED"
  end
  if write_mode == WRITE_MODE_TEXT and ws_utf8(message) ~= 0 then
    return nil, "a text message must be valid UTF-8", "ERR_INVALID_PARAMETER"
  end
  if self.ocount >= self.max_queued then
    return nil, ("%d messages are queued already (max_queued_packets)"):format(self.ocount),
      "ERR_OUT_OF_MEMORY"
  end
  local frame, msg, code = self:_data_frame(message, write_mode == WRITE_MODE_TEXT and 1 or 2)
  if not frame then return nil, msg, code end
  if self.obytes + #frame > self.outbound then
    return nil, ("the outbound buffer is full: %d bytes queued, %d more would pass "
      .. "outbound_buffer_size (%d)"):format(self.obytes, #frame, self.outbound), "ERR_OUT_OF_MEMORY"
  end
  self.ocount = self.ocount + 1
  frame_queue_push(self, frame, false)
  return true
end

function Peer:send_text(text)
  if type(text) ~= "string" then
    argerror(1, "send_text", ("string expected, got %s"):format(type(text)))
  end
  return self:send(text, WRITE_MODE_TEXT)
end

function Peer:put_packet(bytes)
  if type(bytes) ~= "string" then
    argerror(1, "put_packet", ("string expected, got %s"):format(type(bytes)))
  end
  return self:send(bytes, WRITE_MODE_BINARY)
end

local function close_payload(code, reason)
  if not code then return "" end
  return string.char(math.floor(code / 256), code % 256) .. reason
end

-- Takes the next frames to send: control frames first; small frames
-- leave together (one TLS record, one system call).
function Peer:_next_chunk()
  local frame, is_close
  if self.chead <= self.ctail then
    frame = self.ctrl[self.chead]
    self.ctrl[self.chead] = nil
    self.chead = self.chead + 1
    if self.chead > self.ctail then self.chead, self.ctail = 1, 0 end
    return frame, false
  end
  local h = self.ohead
  if h > self.otail then return nil end
  frame = self.out[h]
  self.out[h] = nil
  h = h + 1
  is_close = self.close_frame == frame
  local n = 1
  if not is_close and #frame < COALESCE and h <= self.otail then
    local parts, size = { frame }, #frame
    while h <= self.otail do
      local f = self.out[h]
      if size + #f > COALESCE or f == self.close_frame then break end
      parts[#parts + 1] = f
      size = size + #f
      self.out[h] = nil
      h = h + 1
    end
    n = #parts
    if n > 1 then frame = table.concat(parts) end
  end
  self.ohead = h
  if h > self.otail then self.ohead, self.otail = 1, 0 end
  self.ocount = self.ocount - (is_close and 0 or n)
  if self.ocount < 0 then self.ocount = 0 end
  return frame, is_close
end

-- Sends what is queued, at most `limit` bytes.  Returns false when the
-- connection was lost.
function Peer:_flush(limit)
  local io, sent = self.io, 0
  while sent < limit do
    local cur = self.cur
    if not cur then
      local is_close
      cur, is_close = self:_next_chunk()
      if not cur then break end
      self.cur, self.cur_from, self.cur_close = cur, 1, is_close
    end
    local n, msg, code
    if self.io_lua and self.cur_from > 1 then
      n, msg, code = io:put_partial_data(cur:sub(self.cur_from))   -- no offset argument there
    else
      n, msg, code = io:put_partial_data(cur, self.cur_from)
    end
    if not n then
      self:_lost(msg, code)
      return false
    end
    if n == 0 then break end
    sent = sent + n
    self.obytes = self.obytes - n
    if self.cur_from + n > #cur then
      if self.cur_close then self.close_sent_out = true end
      self.cur, self.cur_from, self.cur_close = nil, 1, false
    else
      self.cur_from = self.cur_from + n
    end
  end
  return true
end

function Peer:_has_output()
  return self.cur ~= nil or self.chead <= self.ctail or self.ohead <= self.otail
end

-------------------------------------------------------------- closing

-- close(code = 1000, reason = ""): starts the closing handshake (poll
-- until STATE_CLOSED); a negative code drops the connection at once.
function Peer:close(code, reason)
  if code == nil then code = 1000 end
  if reason == nil then reason = "" end
  if not is_integer(code) then
    argerror(1, "close", ("integer close code expected, got %s"):format(tostring(code)))
  end
  if type(reason) ~= "string" then
    argerror(2, "close", ("string expected, got %s"):format(type(reason)))
  end
  if code >= 0 and not valid_close_code(code) then
    argerror(1, "close", ("%d is not a close code an endpoint may send (1000-1003, 1007-1014, "
      .. "3000-4999; negative: no closing handshake)"):format(code))
  end
  if #reason > 123 then argerror(2, "close", "a close reason is at most 123 bytes") end
  if ws_utf8(reason) ~= 0 then argerror(2, "close", "a close reason must be valid UTF-8") end
  local st = self.state
  if st == CLOSED then return end
  if code < 0 or st == CONNECTING then
    self.close_code, self.close_reason = -1, ""
    return self:_finish()
  end
  if self.sent_close then return end
  self:_send_close(code, reason)
end

function Peer:_send_close(code, reason)
  local frame = ws_frame(0x88, close_payload(code, reason), not self.is_server)
  self.sent_close = true
  self.close_frame = frame
  self.state = CLOSING
  self.close_deadline = now() + CLOSE_TIMEOUT
  frame_queue_push(self, frame, false)
end

-- A protocol error: the close frame with `code` and `reason` goes out,
-- then the connection ends (without waiting for the peer's answer: RFC
-- 6455 7.1.7).  get_close_code()/get_close_reason() say what went wrong.
function Peer:_fail(code, reason)
  if self.failed or self.state == CLOSED then return end
  self.failed = true
  self.close_code, self.close_reason = code, reason
  self.error, self.error_code = reason, "ERR_INVALID_DATA"
  self.fh, self.msg = nil, nil
  self.ib, self.ipos = "", 1
  if not self.sent_close then
    local r = reason
    if #r > 123 then r = r:sub(1, 120) .. "..." end
    while ws_utf8(r) ~= 0 do r = r:sub(1, -2) end
    self:_send_close(code, r)
  end
  self.fail_after_flush = true
  self.close_deadline = now() + 1
end

-- The transport ended (EOF or an error).
function Peer:_lost(msg, code)
  if self.state == CLOSED then return end
  if not (self.got_close and self.sent_close) and not self.failed then
    self.close_code, self.close_reason = -1, ""
    if not self.got_close then
      self.error = msg or "the connection was lost"
      self.error_code = code or "ERR_CONNECTION_ERROR"
    end
  end
  self:_finish()
end

-- The end: state CLOSED, the stream disconnected (unread packets stay).
function Peer:_finish()
  self.state = CLOSED
  if self.tls then pcall(self.tls.disconnect_from_stream, self.tls) end
  if self.tcp then pcall(self.tcp.disconnect_from_host, self.tcp) end
  if self.io and self.io ~= self.tls and self.io ~= self.tcp then
    local d = self.io.disconnect_from_stream or self.io.disconnect_from_host or self.io.close
    if d then pcall(d, self.io) end
  end
  if self.deflate then
    self.deflate.inflate:close()
    self.deflate.deflate:close()
    self.deflate = nil
  end
  self.fh, self.msg = nil, nil
  self.ib, self.ipos = "", 1
  self.out, self.ohead, self.otail = {}, 1, 0
  self.ctrl, self.chead, self.ctail = {}, 1, 0
  self.cur = nil
  self.obytes, self.ocount = 0, 0
  self.wake_at = nil
  self:_wake()
end

Peer.__close = function(self) if self.state ~= CLOSED then self:close(-1) end end
Peer.__gc = function() end

------------------------------------------------------------- receiving

-- A control frame, whole.
function Peer:_control(op, payload)
  if op == 9 then                                  -- ping: pong with its payload
    if not self.sent_close then
      frame_queue_push(self, ws_frame(0x8A, payload, not self.is_server), true)
    end
  elseif op == 10 then                             -- pong
    self.ping_out = nil
  else                                             -- close
    local code, reason
    if #payload == 1 then return self:_fail(1002, "a close frame with a 1-byte payload") end
    if #payload >= 2 then
      code, reason = big16(payload, 1), payload:sub(3)
      if not valid_close_code(code) then
        return self:_fail(1002, ("a close frame with the invalid code %d"):format(code))
      end
      if ws_utf8(reason) ~= 0 then
        return self:_fail(1007, "a close frame whose reason is not valid UTF-8")
      end
    end
    self.got_close = true
    if not self.failed then
      self.close_code, self.close_reason = code or 1005, reason or ""
    end
    if not self.sent_close then
      self:_send_close(code, "")                   -- the code echoed
      self.close_deadline = now() + CLOSE_TIMEOUT
    end
    self.fh, self.msg = nil, nil
  end
end

-- Bytes of a data message: inflated when compressed, UTF-8 checked when
-- text, collected; false when the connection failed.
function Peer:_message_bytes(m, piece, last)
  local z = self.deflate
  if m.compressed then
    local left = self.inbound - m.size
    if last then piece = piece .. "\0\0\255\255" end
    local out, st = z.inflate:update(piece, last and "sync" or "none", left + 1)
    if not out then
      self:_fail(1007, "a compressed message that does not inflate: " .. tostring(st))
      return false
    end
    if st == "end" then m.ended = true end
    if #out > left or st == "more" then
      self:_fail(1009, ("a message inflates past the inbound buffer (%d bytes)"):format(self.inbound))
      return false
    end
    piece = out
  end
  if piece ~= "" then
    m.n = m.n + 1
    m.parts[m.n] = piece
    m.size = m.size + #piece
    if m.text then
      m.utf8 = ws_utf8(piece, m.utf8)
      if not m.utf8 then
        self:_fail(1007, "a text message that is not valid UTF-8")
        return false
      end
    end
  end
  return true
end

function Peer:_message_end(m)
  if m.text and m.utf8 ~= 0 then
    return self:_fail(1007, "a text message that ends inside a UTF-8 character")
  end
  local z = self.deflate
  if m.compressed and (z.reset_in or m.ended) then z.inflate:reset() end
  local data = m.n == 1 and m.parts[1] or table.concat(m.parts)
  self.msg = nil
  self:_push_packet(data, m.text)
end

-- Parses the frames in the input buffer.
function Peer:_parse()
  while self.state ~= CLOSED and not self.failed do
    local fh = self.fh
    if not fh then
      if self.quota <= 0 then return end           -- the step's share is done
      if self.got_close then                       -- nothing counts after a close
        self.ib, self.ipos = "", 1
        return
      end
      if self:get_available_packet_count() >= self.max_queued then
        self.paused = true
        return
      end
      local fin, rsv, op, masked, len, hlen, key = ws_parse(self.ib, self.ipos)
      if fin == nil then
        if rsv then return self:_fail(1002, rsv) end     -- a length no frame may have
        return                                           -- not all there yet
      end
      if masked ~= self.is_server then
        return self:_fail(1002, self.is_server and "an unmasked frame from a client"
          or "a masked frame from the server")
      end
      if op >= 8 then
        if op > 10 then return self:_fail(1002, ("a frame with the unknown opcode %d"):format(op)) end
        if not fin then return self:_fail(1002, "a fragmented control frame") end
        if len > 125 then return self:_fail(1002, "a control frame longer than 125 bytes") end
        if rsv ~= 0 then return self:_fail(1002, "a control frame with reserved bits set") end
      else
        local m = self.msg
        if op > 2 then return self:_fail(1002, ("a frame with the unknown opcode %d"):format(op)) end
        if op == 0 then
          if not m then return self:_fail(1002, "a continuation frame with no message to continue") end
          if rsv ~= 0 then return self:_fail(1002, "a continuation frame with reserved bits set") end
        else
          if m then return self:_fail(1002, "a new message before the last one ended") end
          if rsv ~= 0 and not (rsv == 4 and self.deflate) then
            return self:_fail(1002, "a frame with reserved bits set that no extension defines")
          end
          m = { text = op == 1, compressed = rsv == 4, parts = {}, n = 0, size = 0, wire = 0,
                utf8 = 0 }
          self.msg = m
        end
        -- The wire size bounds the message; compressed data is checked
        -- again as it inflates.
        local wire = m.wire + len
        if wire > self.inbound + (m.compressed and 1024 or 0) then
          return self:_fail(1009, ("a message of %s%d bytes is over the inbound buffer "
            .. "(%d bytes: set_inbound_buffer_size)"):format(fin and "" or "at least ", wire,
            self.inbound))
        end
        m.wire = wire
      end
      self.ipos = self.ipos + hlen
      self.quota = self.quota - 1
      fh = { fin = fin, op = op, len = len, key = key, got = 0 }
      self.fh = fh
    end
    local avail = #self.ib - self.ipos + 1
    if fh.op >= 8 then
      if avail < fh.len then return end
      local payload = self.ib:sub(self.ipos, self.ipos + fh.len - 1)
      self.ipos = self.ipos + fh.len
      if fh.key then payload = ws_mask(payload, fh.key, 0) end
      self.fh = nil
      self:_control(fh.op, payload)
    else
      local take = fh.len - fh.got
      if take > avail then take = avail end
      local last = fh.fin and fh.got + take == fh.len
      if take > 0 or last then
        local piece = self.ib:sub(self.ipos, self.ipos + take - 1)
        self.ipos = self.ipos + take
        if fh.key and take > 0 then piece = ws_mask(piece, fh.key, fh.got) end
        fh.got = fh.got + take
        if not self:_message_bytes(self.msg, piece, last) then return end
      end
      if fh.got < fh.len then return end
      self.fh = nil
      if fh.fin then
        self:_message_end(self.msg)
      end
    end
  end
end

-- Reads what arrived, at most `limit` bytes, and parses it.  Returns
-- whether more may be waiting.
function Peer:_read(limit)
  local io, got = self.io, 0
  if self.ipos <= #self.ib then self:_parse() end    -- frames left by a pause
  while got < limit do
    if self.state == CLOSED or self.failed then return false end
    if self.quota <= 0 then return true end
    if self:get_available_packet_count() >= self.max_queued or self.pbytes >= self.inbound then
      self.paused = true
      return false
    end
    self.paused = false
    local want = limit - got
    if want > READ_CHUNK then want = READ_CHUNK end
    local data, msg, code = io:get_partial_data(want)
    if not data then
      self:_lost(msg, code)
      return false
    end
    if data == "" then break end
    got = got + #data
    self.last_rx = now()
    if self.ipos > #self.ib then
      self.ib = data
    else
      self.ib = self.ib:sub(self.ipos) .. data
    end
    self.ipos = 1
    self:_parse()
  end
  return got >= limit
end

---------------------------------------------------------------- heartbeat

function Peer:_arm_heartbeat()
  if self.heartbeat > 0 then
    self.next_ping = now() + self.heartbeat
  else
    self.next_ping, self.ping_out = nil, nil
  end
end

-- Heartbeat pings, the close timeout; sets wake_at, the next time a step
-- is due for a timer.
function Peer:_timers(t)
  local wake
  if self.state == OPEN and self.heartbeat > 0 and self.next_ping then
    local hb = self.heartbeat
    if self.ping_out then
      local since = self.ping_out
      if self.last_rx and self.last_rx > since then since = self.last_rx end
      if t - since >= hb then
        self.close_code, self.close_reason = -1, ""
        self.error = ("the peer did not answer a ping within %g s (heartbeat_interval)"):format(hb)
        self.error_code = "ERR_TIMEOUT"
        self.close_reason = self.error
        self:_finish()
        return
      end
      wake = since + hb
    end
    if t >= self.next_ping then
      frame_queue_push(self, ws_frame(0x89, "tlspeer", not self.is_server), true)
      self.ping_out = self.ping_out or t
      self.next_ping = t + hb
    end
    if not wake or self.next_ping < wake then wake = self.next_ping end
  end
  if self.close_deadline and self.state == CLOSING then
    if t >= self.close_deadline then
      if not self.failed and not self.got_close then self.close_code, self.close_reason = -1, "" end
      self:_finish()
      return
    end
    if not wake or self.close_deadline < wake then wake = self.close_deadline end
  end
  self.wake_at = wake
end

------------------------------------------------------------ handshakes

local function split_tokens(v)
  local t = {}
  for item in (v or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then t[#t + 1] = item end
  end
  return t
end

local function has_token(v, token)
  for _, item in ipairs(split_tokens(v)) do
    if item:lower() == token then return true end
  end
  return false
end

-- "Name: value" lines of a head (after its first line) -> map of lower-case
-- names to values (repeated names joined with ", "), or nil, message.
local function parse_headers(rest)
  local dict, n = {}, 0
  for line in rest:gmatch("[^\r\n]+") do
    local name, value = line:match("^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, ("a malformed header line '%s'"):format(printable(line)) end
    n = n + 1
    if n > 100 then return nil, "more than 100 header lines" end
    name = name:lower()
    dict[name] = dict[name] and (dict[name] .. ", " .. value) or value
  end
  return dict
end

-- Extension offers: "a; p=1; q, b" -> { {name = "a", params = {{"p","1"},{"q"}}}, ... }
local function parse_extensions(v)
  local list = {}
  for _, item in ipairs(split_tokens(v)) do
    local parts = {}
    for p in item:gmatch("[^;]+") do parts[#parts + 1] = p:match("^%s*(.-)%s*$") end
    local ext = { name = (parts[1] or ""):lower(), params = {} }
    for i = 2, #parts do
      local k, val = parts[i]:match("^([^=%s]+)%s*=%s*(.-)$")
      if k then
        val = val:match('^"(.*)"$') or val
        ext.params[#ext.params + 1] = { k:lower(), val }
      else
        ext.params[#ext.params + 1] = { parts[i]:lower() }
      end
    end
    list[#list + 1] = ext
  end
  return list
end

local function window_bits(v)
  local n = v and v:match("^%d%d?$") and tonumber(v)
  if n and n >= 8 and n <= 15 then return n end
  return nil
end

local function new_deflate(bits_out, reset_out, reset_in)
  return {
    inflate = zstream("inflate", "raw", 15),
    deflate = zstream("deflate", "raw", -1, bits_out or 15, 8),
    reset_out = reset_out, reset_in = reset_in,
  }
end

-- The permessage-deflate parameters of a client's offer that a server
-- accepts: the response's extension line and the streams; nil to decline.
local function accept_deflate_offer(params)
  local seen, snct, cnct, sbits = {}, false, false, nil
  for _, p in ipairs(params) do
    local k, v = p[1], p[2]
    if seen[k] then return nil end
    seen[k] = true
    if k == "server_no_context_takeover" and v == nil then snct = true
    elseif k == "client_no_context_takeover" and v == nil then cnct = true
    elseif k == "server_max_window_bits" then
      sbits = window_bits(v)
      -- zlib makes no 8-bit raw windows (it uses 9): decline rather than
      -- send what a strict peer cannot read.
      if not sbits or sbits == 8 then return nil end
    elseif k == "client_max_window_bits" then
      if v ~= nil and not window_bits(v) then return nil end
    else
      return nil
    end
  end
  local line = "permessage-deflate"
  if snct then line = line .. "; server_no_context_takeover" end
  if cnct then line = line .. "; client_no_context_takeover" end
  if sbits then line = line .. "; server_max_window_bits=" .. sbits end
  return line, new_deflate(sbits, snct, cnct)
end

-- The server's answer to our offer (client side): the streams, or nil,
-- message.
local function accept_deflate_response(exts)
  if #exts > 1 then return nil, "the server answered with more than one extension" end
  local e = exts[1]
  if e.name ~= "permessage-deflate" then
    return nil, ("the server chose the extension '%s', which was not offered"):format(printable(e.name))
  end
  local seen, snct, cnct = {}, false, false
  for _, p in ipairs(e.params) do
    local k, v = p[1], p[2]
    if seen[k] then return nil, ("permessage-deflate's '%s' is repeated"):format(printable(k)) end
    seen[k] = true
    if k == "server_no_context_takeover" and v == nil then snct = true
    elseif k == "client_no_context_takeover" and v == nil then cnct = true
    elseif k == "server_max_window_bits" and window_bits(v) then -- inflate reads any window
    else
      return nil, ("permessage-deflate's parameter '%s' is not acceptable"):format(printable(k))
    end
  end
  return new_deflate(15, cnct, snct)
end

-- ws:// and wss:// URLs -> use_tls, host, port, target; or nil, message.
local function parse_ws_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  scheme = scheme and scheme:lower()
  if scheme ~= "ws" and scheme ~= "wss" then return nil, "ws:// or wss:// expected" end
  local authority, target = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@", 1, true) then return nil, "credentials in the URL are not supported" end
  if target:find("#", 1, true) then return nil, "a WebSocket URL has no fragment (#...)" end
  local host, port_s = authority:match("^%[([^%]]*)%](.*)$")
  if host then
    if not host:find(":", 1, true) then return nil, "brackets go only around an IPv6 address" end
  else
    host, port_s = authority:match("^([^:]*)(.*)$")
  end
  local ok, why = check_host(host)
  if not ok then return nil, why end
  local port = scheme == "wss" and 443 or 80
  if port_s ~= "" and port_s ~= ":" then
    local digits = port_s:match("^:(%d+)$")
    port = digits and #digits <= 5 and tonumber(digits)
    if not port or port < 1 or port > 65535 then return nil, "invalid port (1..65535 expected)" end
  end
  if target == "" then target = "/" elseif target:sub(1, 1) == "?" then target = "/" .. target end
  if target:find("[%z\1-\32\127]") then
    return nil, "a space or control character in the path (percent-encode it)"
  end
  return scheme == "wss", host, port, target
end

-- connect_to_url(url, tls_client_options = nil) -> true, or nil, message, code
function Peer:connect_to_url(url, options)
  if type(url) ~= "string" then
    argerror(1, "connect_to_url", ("string expected, got %s"):format(type(url)))
  end
  if options ~= nil and (type(options) ~= "userdata"
      or getmetatable(options) ~= getmetatable(TLSOptions.client_unsafe())) then
    argerror(2, "connect_to_url", "TLSOptions or nil expected")
  end
  if self.state ~= CLOSED then
    return nil, "the WebSocketPeer is in use: close it first", "ERR_ALREADY_IN_USE"
  end
  local use_tls, host, port, target = parse_ws_url(url)
  if use_tls == nil then
    return nil, ("invalid WebSocket URL '%s': %s"):format(printable(url), host), "ERR_INVALID_PARAMETER"
  end
  if options and options:is_server() then
    argerror(2, "connect_to_url", "client TLSOptions expected, got server options")
  end
  self:_reset()
  self.close_code, self.close_reason = -1, ""
  self.url, self.host, self.port, self.path, self.use_tls = url, host, port, target, use_tls
  local tcp = StreamPeerTCP.new()
  tcp:set_no_delay(self.no_delay)
  local ok, msg, code = tcp:connect_to_host(host, port)
  if not ok then return nil, msg, code end
  self.tcp, self.io = tcp, tcp
  if use_tls then
    local tls = StreamPeerTLS.new()
    local opts = options
    if not opts then
      opts, msg, code = TLSOptions.client()
      if not opts then tcp:disconnect_from_host(); return nil, msg, code end
    end
    ok, msg, code = tls:connect_to_stream(tcp, host, opts)
    if not ok then tcp:disconnect_from_host(); return nil, msg, code end
    self.tls, self.io = tls, tls
  end
  self.key = ws_key()
  self.phase = "connect"
  self.state = CONNECTING
  return true
end

-- Ours, for tests and transports of your own: a client handshake over a
-- connected stream object (anything with get_partial_data and
-- put_partial_data); `url` gives the Host and path.
function Peer:_connect_over(stream, url)
  local use_tls, host, port, target = parse_ws_url(url)
  if use_tls == nil then return nil, host, "ERR_INVALID_PARAMETER" end
  self:_reset()
  self.close_code, self.close_reason = -1, ""
  self.url, self.host, self.port, self.path, self.use_tls = url, host, port, target, use_tls
  self.io, self.io_lua = stream, true
  self.key = ws_key()
  self.phase = "handshake"
  self.state = CONNECTING
  self:_send_request()
  return true
end

local function kind_of(stream)
  local t = type(stream)
  if t == "userdata" then
    local mt = getmetatable(stream)
    local idx = mt and mt.__index
    if idx == TCP_METHODS then return "tcp" end
    if idx == TLS_METHODS then return "tls" end
    return nil
  end
  if t == "table" and type(stream.get_partial_data) == "function"
      and type(stream.put_partial_data) == "function" then
    return "lua"
  end
  return nil
end

-- accept_stream(stream): the server side of a connection a TCPServer took
-- (StreamPeerTCP), or a StreamPeerTLS accept_stream'ed on one (its
-- handshake may still be running); ours: any object with
-- get_partial_data/put_partial_data.
function Peer:accept_stream(stream)
  local kind = kind_of(stream)
  if not kind then
    argerror(1, "accept_stream", "StreamPeerTCP, StreamPeerTLS or a stream object expected")
  end
  if self.state ~= CLOSED then
    return nil, "the WebSocketPeer is in use: close it first", "ERR_ALREADY_IN_USE"
  end
  if kind == "tcp" and stream:get_status() ~= TCP_CONNECTED then
    return nil, "the StreamPeerTCP is not connected", "ERR_INVALID_PARAMETER"
  end
  if kind == "tls" then
    local st = stream:get_status()
    if st ~= TLS_CONNECTED and st ~= TLS_HANDSHAKING then
      return nil, "the StreamPeerTLS is not connected", "ERR_INVALID_PARAMETER"
    end
  end
  self:_reset()
  self.close_code, self.close_reason = -1, ""
  self.is_server = true
  self.io, self.io_lua = stream, kind == "lua"
  if kind == "tcp" then self.tcp = stream; stream:set_no_delay(self.no_delay) end
  if kind == "tls" then
    self.tls, self.use_tls = stream, true
    local tcp = stream:get_stream()
    if kind_of(tcp) == "tcp" then self.tcp = tcp; tcp:set_no_delay(self.no_delay) end
  end
  self.phase = (kind == "tls" and stream:get_status() == TLS_HANDSHAKING) and "tls" or "handshake"
  self.state = CONNECTING
  return true
end

function Peer:_send_request()
  local host = self.host
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  if self.port ~= (self.use_tls and 443 or 80) then host = host .. ":" .. self.port end
  local lines = {
    "GET " .. self.path .. " HTTP/1.1",
    "Host: " .. host,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " .. self.key,
    "Sec-WebSocket-Version: 13",
  }
  if #self.protocols > 0 then
    lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. table.concat(self.protocols, ", ")
  end
  if self.compression then lines[#lines + 1] = "Sec-WebSocket-Extensions: permessage-deflate" end
  for _, h in ipairs(self.headers) do lines[#lines + 1] = h end
  lines[#lines + 1] = "\r\n"
  frame_queue_push(self, table.concat(lines, "\r\n"), true)
end

-- The handshake failed: CLOSED, with the reason in get_error().
function Peer:_hs_fail(msg, code)
  self.error, self.error_code = msg, code or "ERR_INVALID_DATA"
  self.close_code, self.close_reason = -1, ""
  self:_finish()
end

-- The head of a request or response in the input buffer: its first line
-- and headers; nil when it is not all there yet; false after a failure.
function Peer:_take_head()
  local s, e = self.ib:find("\r\n\r\n", self.ipos, true)
  if not s then
    if #self.ib - self.ipos + 1 > MAX_HEAD then
      return false, ("a handshake larger than %d bytes"):format(MAX_HEAD)
    end
    return nil
  end
  if s - self.ipos > MAX_HEAD then return false, ("a handshake larger than %d bytes"):format(MAX_HEAD) end
  local head = self.ib:sub(self.ipos, s - 1)
  self.ipos = e + 1
  local first, rest = head:match("^([^\r\n]*)\r?\n?(.*)$")
  local dict, why = parse_headers(rest)
  if not dict then return false, why end
  return first, dict
end

-- Client: the server's response.
function Peer:_check_response(first, h)
  local code = first:match("^HTTP/1%.%d (%d%d%d)")
  if code ~= "101" then
    return self:_hs_fail(("the server at %s did not switch to WebSocket: '%s'")
      :format(self.url, printable(first)), code and "ERR_UNAVAILABLE" or "ERR_INVALID_DATA")
  end
  if not has_token(h.upgrade, "websocket") then
    return self:_hs_fail("the server's 101 response has no 'Upgrade: websocket'")
  end
  if not has_token(h.connection, "upgrade") then
    return self:_hs_fail("the server's 101 response has no 'Connection: Upgrade'")
  end
  if h["sec-websocket-accept"] ~= ws_accept(self.key) then
    return self:_hs_fail("the server's Sec-WebSocket-Accept does not match the key sent",
      "ERR_UNAUTHORIZED")
  end
  local proto = h["sec-websocket-protocol"]
  if proto then
    local ok = false
    for _, p in ipairs(self.protocols) do if p == proto then ok = true end end
    if not ok then
      return self:_hs_fail(("the server chose the subprotocol '%s', which was not offered")
        :format(printable(proto)))
    end
    self.selected = proto
  end
  local ext = h["sec-websocket-extensions"]
  if ext then
    local exts = parse_extensions(ext)
    if #exts > 0 then
      if not self.compression then
        return self:_hs_fail(("the server answered with the extension '%s', which was not offered")
          :format(printable(ext)))
      end
      local z, why = accept_deflate_response(exts)
      if not z then return self:_hs_fail(why) end
      self.deflate = z
    end
  end
  self.hs_headers = h
  self:_open()
end

local function http_response(status, extra)
  return ("HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n%s\r\n"):format(status, extra or "")
end

-- Server: the client's request.  A refused request gets an HTTP error
-- response (sent now, as far as the socket takes it) and the end.
function Peer:_check_request(first, h)
  local function refuse(status, why, extra)
    pcall(self.io.put_partial_data, self.io, http_response(status, extra))
    self:_hs_fail("refused a WebSocket handshake: " .. why)
  end
  local method, target, minor = first:match("^(%u+) (%S+) HTTP/1%.(%d)$")
  if not method then return refuse("400 Bad Request", ("a malformed request line '%s'"):format(printable(first))) end
  if method ~= "GET" then return refuse("405 Method Not Allowed", "the method is " .. method, "Allow: GET\r\n") end
  if minor == "0" then return refuse("400 Bad Request", "HTTP/1.0 has no upgrade") end
  if not h.host then return refuse("400 Bad Request", "no Host header") end
  if not has_token(h.upgrade, "websocket") then
    return refuse("426 Upgrade Required", "no 'Upgrade: websocket'", "Upgrade: websocket\r\n")
  end
  if not has_token(h.connection, "upgrade") then return refuse("400 Bad Request", "no 'Connection: Upgrade'") end
  if h["sec-websocket-version"] ~= "13" then
    return refuse("426 Upgrade Required", ("Sec-WebSocket-Version '%s', not 13")
      :format(printable(h["sec-websocket-version"] or "")), "Sec-WebSocket-Version: 13\r\n")
  end
  local key = h["sec-websocket-key"]
  local accept, valid = ws_accept(key or "")
  if not key or not valid then return refuse("400 Bad Request", "no valid Sec-WebSocket-Key") end
  local lines = {
    "HTTP/1.1 101 Switching Protocols",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Accept: " .. accept,
  }
  -- The first of the client's subprotocols that this server supports.
  for _, p in ipairs(split_tokens(h["sec-websocket-protocol"])) do
    for _, mine in ipairs(self.protocols) do
      if p == mine and self.selected == "" then self.selected = p end
    end
  end
  if self.selected ~= "" then lines[#lines + 1] = "Sec-WebSocket-Protocol: " .. self.selected end
  if self.compression and h["sec-websocket-extensions"] then
    for _, e in ipairs(parse_extensions(h["sec-websocket-extensions"])) do
      if e.name == "permessage-deflate" then
        local line, z = accept_deflate_offer(e.params)
        if line then
          lines[#lines + 1] = "Sec-WebSocket-Extensions: " .. line
          self.deflate = z
          break
        end
      end
    end
  end
  for _, x in ipairs(self.headers) do lines[#lines + 1] = x end
  lines[#lines + 1] = "\r\n"
  self.hs_headers = h
  self.path = target
  self.url = (self.use_tls and "wss://" or "ws://") .. h.host .. target
  frame_queue_push(self, table.concat(lines, "\r\n"), true)
  self:_open()
end

function Peer:_open()
  self.state = OPEN
  self.phase = "open"
  self.last_rx = now()
  self:_arm_heartbeat()
end

-- Connecting (client): the TCP connect, then the TLS handshake.
function Peer:_connect_step()
  local tls, tcp = self.tls, self.tcp
  if tls then
    tls:poll()
    local st = tls:get_status()
    if st == TLS_HANDSHAKING then return false end
    if st ~= TLS_CONNECTED then
      local m, c = tls:get_error()
      if tcp:get_status() ~= TCP_CONNECTED and tcp:get_status() ~= TCP_CONNECTING then
        local m2, c2 = tcp:get_error()
        if m2 then m, c = m2, c2 end
      end
      self:_hs_fail(m or ("cannot connect to " .. self.url), c or "ERR_CANT_CONNECT")
      return false
    end
  else
    tcp:poll()
    local st = tcp:get_status()
    if st == TCP_CONNECTING then return false end
    if st ~= TCP_CONNECTED then
      local m, c = tcp:get_error()
      self:_hs_fail(m or ("cannot connect to " .. self.url), c or "ERR_CANT_CONNECT")
      return false
    end
  end
  self.phase = "handshake"
  self:_send_request()
  return true
end

-- One step of the connection, within the byte budget; returns whether it
-- has more to do at once.
function Peer:_step()
  if self.state == CLOSED then return false end
  self.quota = FRAMES_PER_STEP
  local phase = self.phase
  if phase == "connect" then
    if not self:_connect_step() then return false end
  elseif phase == "tls" then
    local tls = self.tls
    tls:poll()
    local st = tls:get_status()
    if st == TLS_HANDSHAKING then return false end
    if st ~= TLS_CONNECTED then
      local m, c = tls:get_error()
      self:_hs_fail(m or "the TLS handshake failed", c or "FAILED")
      return false
    end
    self.phase = "handshake"
  elseif self.tls then
    self.tls:poll()
  end
  local budget = loop.budget_bytes
  if self:_has_output() and not self:_flush(budget) then return false end
  if self.state == CLOSED then return false end
  local more = false
  if self.phase == "handshake" then
    local io, got = self.io, 0
    while got < MAX_HEAD + 4 do
      local data, msg, code = io:get_partial_data(READ_CHUNK)
      if not data then
        self:_hs_fail(msg or "the connection closed during the handshake", code or "ERR_CONNECTION_ERROR")
        return false
      end
      if data == "" then break end
      got = got + #data
      self.ib = self.ib:sub(self.ipos) .. data
      self.ipos = 1
      local first, h = self:_take_head()
      if first == false then
        if self.is_server then
          pcall(io.put_partial_data, io, http_response("431 Request Header Fields Too Large"))
        end
        self:_hs_fail((self.is_server and "refused a WebSocket handshake: " or "") .. h)
        return false
      end
      if first then
        if self.is_server then self:_check_request(first, h) else self:_check_response(first, h) end
        break
      end
    end
    if self.state ~= OPEN then return false end
    if self.ipos <= #self.ib then self:_parse() end
    more = true
  elseif self.state == OPEN or self.state == CLOSING then
    more = self:_read(budget)
  end
  if self.state == CLOSED then return false end
  if self:_has_output() and not self:_flush(budget) then return false end
  self:_timers(now())
  if self.state == CLOSED then return false end
  if self.sent_close and not self:_has_output() and (self.got_close or self.fail_after_flush) then
    self:_finish()
    return false
  end
  if self.tls and self.tls:has_pending() and not self.paused then more = true end
  if self.fh == nil and not self.paused and self.ipos <= #self.ib and self.state ~= CLOSED then
    -- whole frames may wait in the buffer (a budget stopped the step)
    local fin, _, _, _, len, hlen = ws_parse(self.ib, self.ipos)
    if fin ~= nil and #self.ib - self.ipos + 1 >= hlen + len then more = true end
  end
  return more
end

-- poll(): advances the connection (connect, handshake, frames in and
-- out) without blocking, for at most the event core's time budget.
function Peer:poll()
  if self.state == CLOSED then return end
  local deadline = now() + loop.budget_time
  while self:_step() and now() < deadline do end
end

-- Whether the transport wants to be watched for writability (helpers).
function Peer:_wants_write()
  return self.phase == "connect" or self:_has_output()
end

return WebSocketPeer
