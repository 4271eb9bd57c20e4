-- tls.listen{...} and tls.connect{...}: the everyday TLS server and client in
-- a few lines, on top of TCPServer, StreamPeerTCP and StreamPeerTLS.
--
-- Both are poll-driven: poll() does one non-blocking step (call it from a
-- game loop's frame); run() / wait() block for scripts and the REPL.
-- Handlers are plain lists of functions per event; they run inside poll(),
-- under pcall: an error raised by a handler is reported (the "error" event,
-- or stderr when nobody listens) and breaks neither the loop nor the other
-- connections.
local core = require "tlspeer.core"
local check_options = require("tlspeer.options").check

local StreamPeerTCP, TCPServer = core.StreamPeerTCP, core.TCPServer
local StreamPeerTLS, TLSOptions = core.StreamPeerTLS, core.TLSOptions
local X509Certificate, CryptoKey = core.X509Certificate, core.CryptoKey
local now, wait_sockets, check_host = core._now, core._wait, core._check_host
local is_integer = core._is_integer

local TLS_HANDSHAKING = StreamPeerTLS.STATUS_HANDSHAKING
local TLS_CONNECTED = StreamPeerTLS.STATUS_CONNECTED

local READ_CHUNK = 65536
local READ_PER_POLL = 1024 * 1024   -- per connection and poll: fairness

local M = {}

------------------------------------------------------------------ events

local Emitter = {}
Emitter.__index = Emitter

-- obj:on(event, fn): adds a listener; returns obj, so calls chain.
function Emitter:on(event, fn)
  if type(event) ~= "string" then
    error("bad argument #1 to 'on' (event name expected)", 2)
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'on' (function expected)", 2)
  end
  if not self._events[event] then
    error(("bad argument #1 to 'on' (unknown event '%s')"):format(event), 2)
  end
  local list = self._events[event]
  list[#list + 1] = fn
  return self
end

-- Runs every listener of `event`; a raising listener is reported.
function Emitter:_emit(event, ...)
  local list = self._events[event]
  for i = 1, #list do
    local ok, err = pcall(list[i], ...)
    if not ok then self:_report(event, err) end
  end
end

function Emitter:_report(event, err)
  local msg = ("tlspeer: the '%s' handler raised an error: %s"):format(event, tostring(err))
  local list = self._events.error
  if list and #list > 0 then
    for i = 1, #list do pcall(list[i], msg) end
  else
    io.stderr:write(msg, "\n")
  end
end

local function events(names)
  local t = {}
  for _, n in ipairs(names) do t[n] = {} end
  return t
end

---------------------------------------------------------------- options

-- What tls.listen and tls.connect take (see tlspeer.options); anything
-- else raises.
local LISTEN_OPTIONS = {
  port = "number", bind = "string", certificate = "path or X509Certificate",
  key = "path or CryptoKey", key_password = "string",
  trusted = "path or X509Certificate", verify = "string", alpn = "list of strings",
  min_version = "string", ciphersuites = "list of strings", handshake_timeout = "number",
  session_tickets = "boolean",
}
local CONNECT_OPTIONS = {
  host = "string", port = "number", timeout = "number",
  trusted = "path or X509Certificate", unsafe = "boolean",
  certificate = "path or X509Certificate", key = "path or CryptoKey", key_password = "string",
  common_name = "string", alpn = "list of strings", min_version = "string",
  ciphersuites = "list of strings",
}

-- A path is loaded into a new object of `class`; a loaded object (the
-- option's kind is checked already) is used as it is.
local function load_object(value, class, password)
  if type(value) ~= "string" then return value end
  local obj = class.new()
  local ok, msg, code = obj:load(value, false, password)
  if not ok then return nil, msg, code end
  return obj
end

-- opts[name] (or `default`), a number already: a port from `low` to
-- 65535, or (low == nil) a positive number of seconds.  Raises at the
-- caller of fname.
local function option_number(opts, fname, name, default, low)
  local v = opts[name]
  if v == nil then v = default end
  if low then
    if not is_integer(v) or v < low or v > 65535 then
      error(("bad option '%s' to '%s' (integer %d..65535 expected, got %s)")
        :format(name, fname, low, tostring(v)), 3)
    end
  elseif v <= 0 then
    error(("bad option '%s' to '%s' (positive number expected, got %s)")
      :format(name, fname, tostring(v)), 3)
  end
  return v
end

------------------------------------------------------------ connections

-- What both sides share: an outbox flushed without blocking, reading what
-- arrived, and noticing the end.
local Conn = setmetatable({}, { __index = Emitter })
Conn.__index = Conn

function Conn:__tostring()
  return ("tlspeer connection (%s)"):format(self.peer and tostring(self.peer) or "closed")
end

-- conn:send(data): queues data and sends what the socket takes now; the
-- rest leaves on later polls.  Returns true, or nil, message, code.
function Conn:send(data)
  if type(data) ~= "string" then
    error(("bad argument #1 to 'send' (string expected, got %s)"):format(type(data)), 2)
  end
  if self.closed then
    return nil, "the connection is closed", "ERR_UNCONFIGURED"
  end
  self.outbox[#self.outbox + 1] = data
  if self.peer:get_status() == TLS_CONNECTED then self:_flush() end
  return true
end

function Conn:_flush()
  local peer, box = self.peer, self.outbox
  while box[1] do
    local chunk = box[1]
    local n, msg, code = peer:put_partial_data(chunk)
    if not n then return nil, msg, code end
    if n == 0 then return true end
    if n < #chunk then
      box[1] = chunk:sub(n + 1)
      return true
    end
    table.remove(box, 1)
  end
  return true
end

function Conn:get_peer()
  return self.peer
end

function Conn:get_status()
  return self.peer and self.peer:get_status() or StreamPeerTLS.STATUS_DISCONNECTED
end

-- Bytes queued by send() that have not left yet.
function Conn:get_pending_bytes()
  local n = 0
  for _, s in ipairs(self.outbox) do n = n + #s end
  return n
end

-- Reads what arrived; returns data or "" , and whether the connection ended.
function Conn:_read()
  local peer, parts, total = self.peer, {}, 0
  while total < READ_PER_POLL do
    local data = peer:get_partial_data(READ_CHUNK)
    if not data or data == "" then break end
    parts[#parts + 1] = data
    total = total + #data
  end
  return table.concat(parts)
end

--------------------------------------------------------------- servers

local Server = setmetatable({}, { __index = Emitter })
Server.__index = Server

function Server:__tostring()
  return ("tlspeer server (%s, %d connections)")
    :format(self.tcp:is_listening() and ("port " .. self.tcp:get_local_port()) or "stopped",
            #self.conns)
end

-- The server's connection objects.
local ServerConn = setmetatable({}, { __index = Conn })
ServerConn.__index = ServerConn
ServerConn.__tostring = Conn.__tostring    -- metamethods are not inherited

function ServerConn:close()
  if self.closed then return end
  if self.outbox[1] and self.peer:get_status() == TLS_CONNECTED then
    self:_flush()               -- what fits now; close() never blocks
  end
  self.closed = true
  self.peer:disconnect_from_stream()
end

function ServerConn:get_address()
  local tcp = self.tcp
  return tcp:get_connected_host(), tcp:get_connected_port()
end

-- tls.listen{ port = 8443, certificate = ..., key = ..., bind = "*",
--             trusted = ..., verify = ..., alpn = {...}, key_password = ...,
--             handshake_timeout = 10 }
function M.listen(opts)
  check_options(opts, LISTEN_OPTIONS, "listen", 1)
  local port = option_number(opts, "listen", "port", 0, 0)
  local handshake_timeout = option_number(opts, "listen", "handshake_timeout", 10)
  if opts.certificate == nil or opts.key == nil then
    error("tls.listen needs 'certificate' and 'key' (paths or loaded objects)", 2)
  end
  local cert, msg, code = load_object(opts.certificate, X509Certificate)
  if not cert then return nil, msg, code end
  local key
  key, msg, code = load_object(opts.key, CryptoKey, opts.key_password)
  if not key then return nil, msg, code end
  local trusted
  if opts.trusted ~= nil then
    trusted, msg, code = load_object(opts.trusted, X509Certificate)
    if not trusted then return nil, msg, code end
  end
  local options
  options, msg, code = TLSOptions.server(key, cert, {
    trusted_chain = trusted, verify = opts.verify, alpn = opts.alpn,
    min_version = opts.min_version, ciphersuites = opts.ciphersuites,
    session_tickets = opts.session_tickets,
  })
  if not options then return nil, msg, code end

  local tcp = TCPServer.new()
  local ok
  ok, msg, code = tcp:listen(port, opts.bind or "*")
  if not ok then return nil, msg, code end

  return setmetatable({
    tcp = tcp,
    options = options,
    conns = {},
    handshake_timeout = handshake_timeout,
    _events = events { "connection_established", "data_received", "disconnected",
                       "connection_failed", "error" },
  }, Server)
end

function Server:get_local_port()
  return self.tcp:get_local_port()
end

-- The live connection objects (a copy).
function Server:get_connections()
  local copy = {}
  for i, conn in ipairs(self.conns) do copy[i] = conn end
  return copy
end

function Server:_accept()
  local tcp = self.tcp
  while tcp:is_connection_available() do
    local stream = tcp:take_connection()
    if not stream then break end
    stream:set_no_delay(true)
    local peer = StreamPeerTLS.new()
    local conn = setmetatable({
      server = self, tcp = stream, peer = peer, outbox = {},
      started = now(), established = false, closed = false,
    }, ServerConn)
    if peer:accept_stream(stream, self.options) then
      self.conns[#self.conns + 1] = conn
    end
  end
end

-- Advances one connection; returns false when it is over.
function Server:_step(conn)
  local peer = conn.peer
  if conn.closed then
    -- conn:close() from a handler: tell once, here.
    if conn.established and not conn.told then
      conn.told = true
      self:_emit("disconnected", conn)
    end
    return false
  end
  peer:poll()
  local status = peer:get_status()
  if status == TLS_HANDSHAKING then
    if now() - conn.started > self.handshake_timeout then
      conn.closed = true
      peer:disconnect_from_stream()
      conn.tcp:disconnect_from_host()
      self:_emit("connection_failed", conn,
        ("the TLS handshake did not finish within %g s"):format(self.handshake_timeout),
        "ERR_TIMEOUT")
      return false
    end
    return true
  end
  if status == TLS_CONNECTED and not conn.established then
    conn.established = true
    self:_emit("connection_established", conn)
  end
  if conn.established then
    if conn.outbox[1] then conn:_flush() end
    local data = conn:_read()
    if data ~= "" then self:_emit("data_received", conn, data) end
    if conn.outbox[1] and peer:get_status() == TLS_CONNECTED then conn:_flush() end
  end
  status = peer:get_status()
  if conn.closed or status ~= TLS_CONNECTED then
    -- Closed first, then told: a handler may call stop() or close().
    local m, c = peer:get_error()
    if not conn.closed then
      conn.closed = true
      peer:disconnect_from_stream()
    end
    if not conn.established then
      self:_emit("connection_failed", conn, m or "the handshake failed", c or "FAILED")
    else
      conn.told = true
      self:_emit("disconnected", conn)
    end
    return false
  end
  return true
end

-- srv:poll(): accepts, handshakes, reads, writes, each without blocking,
-- and runs the handlers.  Returns true while the server is listening.
function Server:poll()
  if self.tcp:is_listening() then self:_accept() end
  local keep = {}
  for _, conn in ipairs(self.conns) do
    local ok, alive = pcall(self._step, self, conn)
    if not ok then
      self:_report("poll", alive)
      alive = false
      if not conn.closed then conn.closed = true; pcall(conn.peer.disconnect_from_stream, conn.peer) end
    end
    if alive then keep[#keep + 1] = conn end
  end
  self.conns = keep
  return self.tcp:is_listening()
end

-- Blocks until something may be ready (or `timeout` seconds).
function Server:_wait(timeout)
  local readers, writers = { self.tcp }, {}
  local t = now()
  for _, conn in ipairs(self.conns) do
    readers[#readers + 1] = conn.peer
    if conn.outbox[1] then writers[#writers + 1] = conn.peer end
    if not conn.established then
      local left = conn.started + self.handshake_timeout - t
      if left < timeout then timeout = math.max(left, 0) end
    end
  end
  wait_sockets(readers, writers, timeout)
end

-- srv:run(timeout): serves until srv:stop() (or `timeout` seconds), never
-- spinning: it sleeps in poll(2) between events.
function Server:run(timeout)
  local deadline = timeout and now() + timeout
  self.running = true
  while self.running and self:poll() do
    local wait = 0.25
    if deadline then
      wait = math.min(wait, deadline - now())
      if wait <= 0 then break end
    end
    self:_wait(wait)
  end
  self.running = false
  return true
end

-- srv:stop(): stops listening and closes every connection (sending
-- close_notify); a run() in progress returns.
function Server:stop()
  self.running = false
  self.tcp:stop()
  local conns = self.conns
  self.conns = {}
  for _, conn in ipairs(conns) do
    local was_closed = conn.closed
    conn.closed = true
    if not was_closed then pcall(conn.peer.disconnect_from_stream, conn.peer) end
    if conn.established and not conn.told then
      conn.told = true
      self:_emit("disconnected", conn)
    end
  end
end

--------------------------------------------------------------- clients

local Client = setmetatable({}, { __index = Conn })
Client.__index = Client

function Client:__tostring()
  return ("tlspeer client (%s)"):format(self.failure and ("failed: " .. self.failure[1])
    or tostring(self.peer))
end

-- tls.connect{ host = "localhost", port = 8443, trusted = ..., unsafe = true,
--              certificate = ..., key = ..., alpn = {...}, timeout = 10,
--              common_name = ... }
-- Returns the client at once; the outcome comes as connection_established
-- or connection_failed(message, code) from poll() / wait().
function M.connect(opts)
  check_options(opts, CONNECT_OPTIONS, "connect", 1)
  local host = opts.host
  if host == nil then error("bad option 'host' to 'connect' (string expected, got nil)", 2) end
  -- A bad name is the caller's mistake, like a bad port: it raises here,
  -- before any connection (and it never reaches SNI).
  local valid, why = check_host(host)
  if not valid then error(("bad option 'host' to 'connect' (%s)"):format(why), 2) end
  local port = option_number(opts, "connect", "port", nil, 1)
  local timeout = option_number(opts, "connect", "timeout", 10)
  local self = setmetatable({
    host = host, port = port, timeout = timeout, outbox = {}, closed = false,
    established = false, started = now(),
    _events = events { "connection_established", "data_received", "disconnected",
                       "connection_failed", "error" },
  }, Client)

  local function fail(msg, code)
    self.failure = { msg, code }
    return self
  end
  local trusted, cert, key, msg, code
  if opts.trusted ~= nil then
    trusted, msg, code = load_object(opts.trusted, X509Certificate)
    if not trusted then return fail(msg, code) end
  end
  if (opts.certificate == nil) ~= (opts.key == nil) then
    error("options 'certificate' and 'key' go together", 2)
  end
  if opts.certificate ~= nil then
    cert, msg, code = load_object(opts.certificate, X509Certificate)
    if not cert then return fail(msg, code) end
    key, msg, code = load_object(opts.key, CryptoKey, opts.key_password)
    if not key then return fail(msg, code) end
  end
  local copts = { certificate = cert, key = key, alpn = opts.alpn,
                  min_version = opts.min_version, ciphersuites = opts.ciphersuites }
  local options
  if opts.unsafe then
    options, msg, code = TLSOptions.client_unsafe(trusted, copts)
  else
    options, msg, code = TLSOptions.client(trusted, opts.common_name or "", copts)
  end
  if not options then return fail(msg, code) end

  local tcp = StreamPeerTCP.new()
  tcp:set_no_delay(true)
  local ok
  ok, msg, code = tcp:connect_to_host(host, port)
  if not ok then return fail(msg, code) end
  self.tcp = tcp
  self.peer = StreamPeerTLS.new()
  ok, msg, code = self.peer:connect_to_stream(tcp, host, options)
  if not ok then return fail(msg, code) end
  return self
end

-- Reports a failure once.
function Client:_failed(msg, code)
  if self.reported then return end
  self.reported = true
  self.closed = true
  self.failure = self.failure or { msg, code }
  if self.peer then pcall(self.peer.disconnect_from_stream, self.peer) end
  self:_emit("connection_failed", self.failure[1], self.failure[2])
end

-- c:poll(): one non-blocking step; runs the handlers.  Returns true while
-- the connection is (or may become) usable.
function Client:poll()
  if self.failure then
    self:_failed(self.failure[1], self.failure[2])
    return false
  end
  if self.closed then return false end
  local peer = self.peer
  peer:poll()
  local status = peer:get_status()
  if status == TLS_HANDSHAKING then
    if now() - self.started > self.timeout then
      self:_failed(("the TLS handshake with %s did not finish within %g s")
        :format(self.host, self.timeout), "ERR_TIMEOUT")
      return false
    end
    return true
  end
  if status == TLS_CONNECTED and not self.established then
    self.established = true
    self:_emit("connection_established")
  end
  if self.established and not self.closed then
    if self.outbox[1] then self:_flush() end
    local data = self:_read()
    if data ~= "" then self:_emit("data_received", data) end
    if self.outbox[1] and peer:get_status() == TLS_CONNECTED then self:_flush() end
  end
  status = peer:get_status()
  if self.closed then return false end
  if status ~= TLS_CONNECTED then
    if not self.established then
      local m, c = peer:get_error()
      if self.tcp:get_status() == StreamPeerTCP.STATUS_ERROR then
        m, c = self.tcp:get_error()       -- the name or the connect failed
      end
      self:_failed(m or "the TLS handshake failed", c or "FAILED")
    else
      self.closed = true
      peer:disconnect_from_stream()
      self:_emit("disconnected")
    end
    return false
  end
  return true
end

function Client:_wait(timeout)
  if not self.peer or self.closed then return end
  local writers = {}
  if self.outbox[1] or not self.established then writers[1] = self.peer end
  wait_sockets({ self.peer }, writers, timeout)
end

-- c:wait(timeout): blocks until the connection is established (true) or
-- has failed / timed out (nil, message, code).
function Client:wait(timeout)
  timeout = timeout or self.timeout
  local deadline = now() + timeout
  while true do
    local alive = self:poll()
    if self.established then return true end
    if not alive then
      local f = self.failure or { "the connection closed", "ERR_CONNECTION_ERROR" }
      return nil, f[1], f[2]
    end
    local left = deadline - now()
    if left <= 0 then
      return nil, ("not connected to %s within %g s"):format(self.host, timeout), "ERR_TIMEOUT"
    end
    self:_wait(math.min(left, 0.25))
  end
end

-- c:run(timeout): pumps until the connection ends (or `timeout` seconds).
function Client:run(timeout)
  local deadline = timeout and now() + timeout
  while self:poll() do
    local wait = 0.25
    if deadline then
      wait = math.min(wait, deadline - now())
      if wait <= 0 then break end
    end
    self:_wait(wait)
  end
  return true
end

-- c:close(): sends what is queued (briefly), then close_notify.
function Client:close()
  if self.closed then return end
  self.closed = true
  if self.peer then
    if self.established and self.outbox[1] then
      local deadline = now() + 1
      while self.outbox[1] and now() < deadline and self.peer:get_status() == TLS_CONNECTED do
        self:_flush()
        if self.outbox[1] then wait_sockets({}, { self.peer }, 0.05) end
      end
    end
    self.peer:disconnect_from_stream()
    if self.established then self:_emit("disconnected") end
  end
end

-- Every object closes with Lua 5.4's `local x <close> = ...`; the collector has
-- nothing to do by hand (the sockets are freed with their own objects, and
-- finalizers never do network I/O).
local function nothing() end
Server.__close = function(self) self:stop() end
ServerConn.__close = function(self) self:close() end
Client.__close = function(self) self:close() end
Server.__gc, ServerConn.__gc, Client.__gc = nothing, nothing, nothing

return M
