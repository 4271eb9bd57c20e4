-- tls.ws_listen{...} and tls.ws_connect{...}: a WebSocket server and client
-- in a few lines, in the style of tls.listen / tls.connect, on top of
-- WebSocketPeer (lua/tlspeer/websocket.lua), TCPServer and StreamPeerTLS.
--
-- Poll-driven (tls.poll() steps them with every other helper object, or
-- each one's own poll()); run() / wait() block for scripts.  Events:
--   connection_established(conn)
--   message_received(conn, message, is_string)
--   disconnected(conn, code, reason)        code -1: not a clean close
--   connection_failed(conn, message, code)  the connect or the handshake failed
--   error(message)                          a handler raised
-- On a client, `conn` is the client itself.
local core = require "tlspeer.core"
local check_options = require("tlspeer.options").check
local loop = require "tlspeer.loop"
local WebSocketPeer = require "tlspeer.websocket"

local TCPServer, StreamPeerTLS, TLSOptions = core.TCPServer, core.StreamPeerTLS, core.TLSOptions
local X509Certificate, CryptoKey = core.X509Certificate, core.CryptoKey
local now, is_integer = core._now, core._is_integer

local OPEN, CLOSED = WebSocketPeer.STATE_OPEN, WebSocketPeer.STATE_CLOSED
-- Messages one step hands to the handlers at most; the rest in later steps.
local MESSAGES_PER_STEP = 64
local TEXT, BINARY = WebSocketPeer.WRITE_MODE_TEXT, WebSocketPeer.WRITE_MODE_BINARY

local M = {}

------------------------------------------------------------------ events

local Emitter = {}
Emitter.__index = Emitter

function Emitter:on(event, fn)
  if type(event) ~= "string" then error("bad argument #1 to 'on' (event name expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'on' (function expected)", 2) end
  local list = self._events[event]
  if not list then error(("bad argument #1 to 'on' (unknown event '%s')"):format(event), 2) end
  list[#list + 1] = fn
  return self
end

-- Emitting and reporting raising handlers: as tls.listen / tls.connect.
local shared = require("tlspeer.helpers")._Emitter
Emitter._emit, Emitter._report = shared._emit, shared._report

local function events()
  return { connection_established = {}, message_received = {}, disconnected = {},
           connection_failed = {}, error = {} }
end

---------------------------------------------------------------- options

local PEER_OPTIONS = {
  protocols = "list of strings", handshake_headers = "list of strings",
  compression = "boolean", inbound_buffer_size = "number", outbound_buffer_size = "number",
  max_queued_packets = "number", heartbeat_interval = "number",
}
local LISTEN_OPTIONS = {
  port = "number", bind = "string", certificate = "path or X509Certificate",
  key = "path or CryptoKey", key_password = "string",
  trusted = "path or X509Certificate", verify = "string",
  min_version = "string", ciphersuites = "list of strings", handshake_timeout = "number",
}
local CONNECT_OPTIONS = {
  url = "string", timeout = "number", trusted = "path or X509Certificate", unsafe = "boolean",
  certificate = "path or X509Certificate", key = "path or CryptoKey", key_password = "string",
  common_name = "string", min_version = "string", ciphersuites = "list of strings",
}
for k, v in pairs(PEER_OPTIONS) do LISTEN_OPTIONS[k], CONNECT_OPTIONS[k] = v, v end

local function load_object(value, class, password)
  if type(value) ~= "string" then return value end
  local obj = class.new()
  local ok, msg, code = obj:load(value, false, password)
  if not ok then return nil, msg, code end
  return obj
end

local function positive(opts, fname, name, default)
  local v = opts[name]
  if v == nil then return default end
  if v ~= v or v <= 0 then
    error(("bad option '%s' to '%s' (positive number expected, got %s)")
      :format(name, fname, tostring(v)), 3)
  end
  return v
end

-- A WebSocketPeer with the options' settings (the setters check them).
local function make_peer(opts)
  local ws = WebSocketPeer.new()
  if opts.protocols then ws:set_supported_protocols(opts.protocols) end
  if opts.handshake_headers then ws:set_handshake_headers(opts.handshake_headers) end
  if opts.compression ~= nil then ws:set_compression_enabled(opts.compression) end
  if opts.inbound_buffer_size then ws:set_inbound_buffer_size(opts.inbound_buffer_size) end
  if opts.outbound_buffer_size then ws:set_outbound_buffer_size(opts.outbound_buffer_size) end
  if opts.max_queued_packets then ws:set_max_queued_packets(opts.max_queued_packets) end
  if opts.heartbeat_interval then ws:set_heartbeat_interval(opts.heartbeat_interval) end
  return ws
end

-------------------------------------------------------------- connections

-- What server connections and clients share: the peer, its step, sends.
local Conn = setmetatable({}, { __index = Emitter })
Conn.__index = Conn

-- conn:send(message, write_mode = WRITE_MODE_BINARY) / conn:send_text(text):
-- queued; leaves in the next polls.  true, or nil, message, code.
function Conn:send(message, write_mode)
  if type(message) ~= "string" then
    error(("bad argument #1 to 'send' (string expected, got %s)"):format(type(message)), 2)
  end
  return self.ws:send(message, write_mode)
end

function Conn:send_text(text)
  if type(text) ~= "string" then
    error(("bad argument #1 to 'send_text' (string expected, got %s)"):format(type(text)), 2)
  end
  return self.ws:send(text, TEXT)
end

-- The WebSocketPeer (get_selected_protocol, get_handshake_header...).
function Conn:get_peer() return self.ws end
function Conn:get_ready_state() return self.ws:get_ready_state() end

-- The object the event core watches: the TCP socket under it all.
local function watched(ws) return ws.tcp end

-- Steps the peer once and delivers what it brings; returns whether it
-- has more to do now.  `owner` emits; `failed` is called for a connection
-- that never opened.
function Conn:_advance(owner)
  local ws = self.ws
  local more = ws:_step()
  if not self.established and ws:get_ready_state() ~= 0 and ws:get_ready_state() ~= CLOSED then
    self.established = true
    if self.deadline then self.deadline.cancelled = true end
    owner:_emit("connection_established", self)
  end
  local n = 0
  while ws:get_available_packet_count() > 0 do
    if n == MESSAGES_PER_STEP then more = true; break end
    n = n + 1
    local msg = ws:get_packet()
    owner:_emit("message_received", self, msg, ws:was_string_packet())
    if self.ended then return false end
  end
  if ws:get_ready_state() == CLOSED then
    self:_ended(owner)
    return false
  end
  local obj = watched(ws)
  if obj then loop.want_write(obj, ws:_wants_write()) end
  local at = ws.wake_at
  if at and at ~= self.timer_at then
    if self.timer then self.timer.cancelled = true end
    self.timer_at = at
    self.timer = loop.timer(at, owner, self)
  end
  return more
end

function Conn:_ended(owner)
  if self.ended then return end
  self.ended = true
  if self.deadline then self.deadline.cancelled = true end
  if self.timer then self.timer.cancelled = true end
  local ws = self.ws
  local obj = self.watched
  if obj then loop.unwatch(obj) end
  if ws:get_ready_state() ~= CLOSED then ws:close(-1) end
  owner:_forget(self)
  if self.established then
    owner:_emit("disconnected", self, ws:get_close_code(), ws:get_close_reason())
  else
    local m, c = ws:get_error()
    owner:_emit("connection_failed", self, m or "the WebSocket handshake failed", c or "FAILED")
  end
end

--------------------------------------------------------------- servers

local Server = setmetatable({}, { __index = Emitter })
Server.__index = Server

function Server:__tostring()
  return ("tlspeer WebSocket server (%s, %d connections)")
    :format(self.tcp:is_listening() and ((self.options and "wss, port " or "ws, port ")
      .. self.tcp:get_local_port()) or "stopped", self.nconns)
end

local ServerConn = setmetatable({}, { __index = Conn })
ServerConn.__index = ServerConn

function ServerConn:__tostring()
  return ("tlspeer WebSocket connection (%s)"):format(tostring(self.ws))
end

-- conn:close(code = 1000, reason = ""): the closing handshake, in later
-- polls; "disconnected" follows.  Never blocks.
function ServerConn:close(code, reason)
  if self.ended then return end
  self.ws:close(code, reason)
  loop.wake(self)
end

function ServerConn:get_address()
  local ws = self.ws
  return ws:get_connected_host(), ws:get_connected_port()
end

-- tls.ws_listen{ port = 8080, certificate = ..., key = ... (wss), protocols = {...},
--                compression = true, heartbeat_interval = 30, ... }
function M.ws_listen(opts)
  check_options(opts, LISTEN_OPTIONS, "ws_listen", 1)
  local port = opts.port or 0
  if not is_integer(port) or port < 0 or port > 65535 then
    error(("bad option 'port' to 'ws_listen' (integer 0..65535 expected, got %s)")
      :format(tostring(port)), 2)
  end
  local handshake_timeout = positive(opts, "ws_listen", "handshake_timeout", 10)
  make_peer(opts)                           -- checks the peer options now
  if (opts.certificate == nil) ~= (opts.key == nil) then
    error("options 'certificate' and 'key' go together (both: wss://, neither: ws://)", 2)
  end
  local options, msg, code
  if opts.certificate ~= nil then
    local cert, key, trusted
    cert, msg, code = load_object(opts.certificate, X509Certificate)
    if not cert then return nil, msg, code end
    key, msg, code = load_object(opts.key, CryptoKey, opts.key_password)
    if not key then return nil, msg, code end
    if opts.trusted ~= nil then
      trusted, msg, code = load_object(opts.trusted, X509Certificate)
      if not trusted then return nil, msg, code end
    end
    options, msg, code = TLSOptions.server(key, cert, {
      trusted_chain = trusted, verify = opts.verify, min_version = opts.min_version,
      ciphersuites = opts.ciphersuites,
    })
    if not options then return nil, msg, code end
  end
  local tcp = TCPServer.new()
  local ok
  ok, msg, code = tcp:listen(port, opts.bind or "*")
  if not ok then return nil, msg, code end
  local self = loop.owner(setmetatable({
    tcp = tcp, options = options, opts = opts, conns = {}, nconns = 0,
    handshake_timeout = handshake_timeout, _events = events(),
  }, Server))
  self._owner = self
  loop.watch(tcp, self)
  return self
end

function Server:get_local_port() return self.tcp:get_local_port() end

function Server:get_connections()
  local list = {}
  for conn in pairs(self.conns) do
    if conn.established then list[#list + 1] = conn end
  end
  return list
end

-- srv:broadcast(message, write_mode): sends to every open connection;
-- returns how many took it.
function Server:broadcast(message, write_mode)
  if type(message) ~= "string" then
    error(("bad argument #1 to 'broadcast' (string expected, got %s)"):format(type(message)), 2)
  end
  local n = 0
  for conn in pairs(self.conns) do
    if conn.established and conn.ws:get_ready_state() == OPEN then
      if conn.ws:send(message, write_mode or BINARY) then n = n + 1 end
    end
  end
  return n
end

local ACCEPT_PER_STEP = 4

function Server:_accept()
  for _ = 1, ACCEPT_PER_STEP do
    local stream, msg, code = self.tcp:take_connection()
    if not stream then
      if code == "FAILED" then loop.pause_accept(self, self.tcp, msg) end
      return false
    end
    local ws = make_peer(self.opts)
    local ok = true
    if self.options then
      local peer = StreamPeerTLS.new()
      ok = peer:accept_stream(stream, self.options) and ws:accept_stream(peer)
    else
      ok = ws:accept_stream(stream)
    end
    if ok then
      local conn = setmetatable({ server = self, ws = ws, watched = stream, _owner = self,
                                  established = false, ended = false }, ServerConn)
      ws._on_wake = function() loop.wake(conn) end
      self.conns[conn] = true
      self.nconns = self.nconns + 1
      conn.deadline = loop.timer(now() + self.handshake_timeout, self, conn)
      loop.watch(stream, conn)
      loop.wake(conn)
    else
      stream:disconnect_from_host()
    end
  end
  return true
end

function Server:_forget(conn)
  if self.conns[conn] then
    self.conns[conn] = nil
    self.nconns = self.nconns - 1
  end
end

function Server:_timeout(conn)
  if conn == loop.RESUME_ACCEPT then
    if self.tcp:is_listening() then loop.watch(self.tcp, self) end
    return
  end
  if conn.ended then return end
  if not conn.established and conn.deadline and not conn.deadline.cancelled
      and now() >= conn.deadline.at then
    conn.ws.error = ("the WebSocket handshake did not finish within %g s"):format(self.handshake_timeout)
    conn.ws.error_code = "ERR_TIMEOUT"
    return conn:_ended(self)
  end
  conn.timer_at = nil
  self:_queue(conn)
end

function Server:_step(conn)
  if conn == self then return self.tcp:is_listening() and self:_accept() end
  if conn.ended then return false end
  return conn:_advance(self)
end

function Server:poll()
  loop.poll_owner(self)
  return self.tcp:is_listening()
end

function Server:run(timeout)
  self.running = true
  loop.run(self, function() return not self.running or not self.tcp:is_listening() end, timeout)
  self.running = false
  return true
end

-- srv:stop(): stops listening and drops every connection (a close frame
-- 1001 is queued and sent as far as the socket takes it now).
function Server:stop()
  self.running = false
  loop.unwatch(self.tcp)
  self.tcp:stop()
  for conn in pairs(self.conns) do
    local ws = conn.ws
    if ws:get_ready_state() == OPEN then
      ws:close(1001, "server stopping")
      pcall(ws._flush, ws, loop.budget_bytes)
    end
    conn:_ended(self)
  end
end

--------------------------------------------------------------- clients

local Client = setmetatable({}, { __index = Conn })
Client.__index = Client

function Client:__tostring()
  return ("tlspeer WebSocket client (%s)"):format(self.failure and ("failed: " .. self.failure[1])
    or tostring(self.ws))
end

-- tls.ws_connect{ url = "wss://host/path", trusted = ..., unsafe = true,
--                 protocols = {...}, compression = true, timeout = 10, ... }
function M.ws_connect(opts)
  check_options(opts, CONNECT_OPTIONS, "ws_connect", 1)
  if type(opts.url) ~= "string" then
    error(("bad option 'url' to 'ws_connect' (string expected, got %s)"):format(type(opts.url)), 2)
  end
  local timeout = positive(opts, "ws_connect", "timeout", 10)
  if (opts.certificate == nil) ~= (opts.key == nil) then
    error("options 'certificate' and 'key' go together", 2)
  end
  local ws = make_peer(opts)
  local self = loop.owner(setmetatable({
    ws = ws, url = opts.url, timeout = timeout, established = false, ended = false,
    _events = events(),
  }, Client))
  self._owner = self
  local function fail(msg, code)
    self.failure = { msg, code }
    ws.error, ws.error_code = msg, code
    self:_queue(self)
    return self
  end
  local trusted, cert, key, msg, code
  if opts.trusted ~= nil then
    trusted, msg, code = load_object(opts.trusted, X509Certificate)
    if not trusted then return fail(msg, code) end
  end
  if opts.certificate ~= nil then
    cert, msg, code = load_object(opts.certificate, X509Certificate)
    if not cert then return fail(msg, code) end
    key, msg, code = load_object(opts.key, CryptoKey, opts.key_password)
    if not key then return fail(msg, code) end
  end
  local options
  if opts.url:match("^[wW][sS][sS]:") then
    local copts = { certificate = cert, key = key, min_version = opts.min_version,
                    ciphersuites = opts.ciphersuites }
    if opts.unsafe then
      options, msg, code = TLSOptions.client_unsafe(trusted, copts)
    else
      options, msg, code = TLSOptions.client(trusted, opts.common_name or "", copts)
    end
    if not options then return fail(msg, code) end
  end
  local ok
  ok, msg, code = ws:connect_to_url(opts.url, options)
  if not ok then return fail(msg, code) end
  self.watched = ws.tcp
  ws._on_wake = function() loop.wake(self) end
  loop.watch(ws.tcp, self)
  loop.want_write(ws.tcp, true)
  self.deadline = loop.timer(now() + timeout, self, "connect")
  return self
end

function Client:_forget() end

function Client:_timeout(key)
  if self.ended then return end
  if key == "connect" then
    if not self.established then
      self.ws.error = ("the WebSocket connection to %s did not open within %g s")
        :format(self.url, self.timeout)
      self.ws.error_code = "ERR_TIMEOUT"
      self:_ended(self)
    end
    return
  end
  self.timer_at = nil
  self:_queue(self)
end

function Client:_step()
  if self.ended then return false end
  if self.failure then
    self:_ended(self)
    return false
  end
  return self:_advance(self)
end

-- c:poll(): one non-blocking step.  Returns true while the connection is
-- (or may become) usable.
function Client:poll()
  loop.poll_owner(self)
  return not self.ended
end

-- c:wait(timeout): blocks until the connection is open (true) or failed
-- (nil, message, code).
function Client:wait(timeout)
  timeout = timeout or self.timeout
  if self.failure and not self.ended then self:_queue(self) end
  local done = loop.run(self, function() return self.established or self.ended end, timeout)
  if self.established then return true end
  if done then
    local m, c = self.ws:get_error()
    return nil, m or "the connection closed", c or "ERR_CONNECTION_ERROR"
  end
  return nil, ("not connected to %s within %g s (is something polling the server side? "
    .. "tls.poll() steps every helper object)"):format(self.url, timeout), "ERR_TIMEOUT"
end

-- c:run(timeout): pumps until the connection ends (or `timeout` seconds).
function Client:run(timeout)
  if self.failure and not self.ended then self:_queue(self) end
  loop.run(self, function() return self.ended end, timeout)
  return true
end

-- c:close(code = 1000, reason = ""): the closing handshake in later polls.
function Client:close(code, reason)
  if self.ended then return end
  self.ws:close(code, reason)
  self:_queue(self)
end

local function nothing() end
Server.__close = function(self) self:stop() end
ServerConn.__close = function(self) self:close() end
Client.__close = function(self) self:close() end
Server.__gc, ServerConn.__gc, Client.__gc = nothing, nothing, nothing

return M
