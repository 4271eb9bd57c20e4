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
local loop = require "tlspeer.loop"
local now, check_host = core._now, core._check_host
local is_integer = core._is_integer

local TLS_HANDSHAKING = StreamPeerTLS.STATUS_HANDSHAKING
local TLS_CONNECTED = StreamPeerTLS.STATUS_CONNECTED

local READ_CHUNK = 16384                -- one TLS record

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

-- For the other helper objects (HTTPRequest): the same listeners.
M._Emitter, M._events = Emitter, events

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
  if not ok then
    -- CryptoKey:load's words name its own third argument; here the
    -- password is an option.
    msg = msg:gsub("pass its password as the third argument",
                   "pass its password as the option 'key_password'")
    return nil, msg, code
  end
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

-- What both sides share: an outbox sent without blocking (an offset into
-- its first string, never a copy of the rest), reads within the step's
-- byte budget, and a close that never waits: what is queued leaves in
-- later polls (at most LINGER seconds), then close_notify.
local LINGER = 5

-- close()'s optional argument: seconds, zero or more (nil: LINGER).
local function check_linger(linger)
  if linger == nil then return LINGER end
  if type(linger) ~= "number" or linger ~= linger or linger < 0 then
    error(("bad argument #1 to 'close' (seconds >= 0 expected, got %s)")
      :format(tostring(linger)), 3)
  end
  return linger
end

-- (A server's connections have no events of their own: the server's
-- handlers get them as their first argument.)
local Conn = {}
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
  if self.closed or self.closing then
    return nil, "the connection is closed", "ERR_UNCONFIGURED"
  end
  if data == "" then return true end
  local box = self.outbox
  box[#box + 1] = data
  self.pending = self.pending + #data
  if self.peer:get_status() == TLS_CONNECTED then self:_flush(loop.budget_bytes) end
  return true
end

-- Sends queued bytes, at most `limit`; says whether the socket still wants
-- to be watched for writability (bytes are left).
function Conn:_flush(limit)
  local peer, box = self.peer, self.outbox
  local sent = 0
  while box[1] and sent < limit do
    local chunk, from = box[1], self.out_from
    local n, msg, code = peer:put_partial_data(chunk, from)
    if not n then return nil, msg, code end
    if n == 0 then break end
    sent = sent + n
    self.pending = self.pending - n
    if from + n <= #chunk then
      self.out_from = from + n
    else
      table.remove(box, 1)
      self.out_from = 1
    end
  end
  loop.want_write(peer, box[1] ~= nil)
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
  return self.pending
end

-- Reads what arrived, at most `limit` bytes; returns it ("" for none) and
-- whether more may be waiting (the budget stopped the read).
function Conn:_read(limit)
  local peer, parts, total = self.peer, {}, 0
  while total < limit do
    local data = peer:get_partial_data(math.min(READ_CHUNK, limit - total))
    if not data or data == "" then break end
    parts[#parts + 1] = data
    total = total + #data
  end
  return table.concat(parts), total >= limit
end

-- The common part of a step once connected: writes, reads, handlers.
-- Returns whether the token has more to do now.
function Conn:_io(emit_data)
  local budget = loop.budget_bytes
  if self.outbox[1] then self:_flush(budget) end
  local data, more = self:_read(budget)
  if data ~= "" then emit_data(data) end
  if self.outbox[1] and self.peer:get_status() == TLS_CONNECTED then self:_flush(budget) end
  -- Data decrypted but not read yet sits past the socket: step again.
  return more or (self.peer:get_status() == TLS_CONNECTED and self.peer:has_pending())
end

-- Starts a close that does not wait: returns true when the connection can
-- be disconnected now (nothing queued), else the rest leaves in later
-- steps, until LINGER seconds have passed.
function Conn:_begin_close(owner, linger)
  if self.outbox[1] and self.peer:get_status() == TLS_CONNECTED then
    self:_flush(loop.budget_bytes)
  end
  if not self.outbox[1] or self.peer:get_status() ~= TLS_CONNECTED then return true end
  self.closing = true
  self.linger = loop.timer(now() + (linger or LINGER), owner, self)
  return false
end

--------------------------------------------------------------- servers

local Server = setmetatable({}, { __index = Emitter })
Server.__index = Server

-- The servers of this Lua state, for a client's wait() to tell whether
-- the server it waits for is its neighbour that nobody polls.
local servers = setmetatable({}, { __mode = "k" })

function Server:__tostring()
  return ("tlspeer server (%s, %d connections)")
    :format(self.tcp:is_listening() and ("port " .. self.tcp:get_local_port()) or "stopped",
            self.nconns)
end

-- The server's connection objects.
local ServerConn = setmetatable({}, { __index = Conn })
ServerConn.__index = ServerConn
ServerConn.__tostring = Conn.__tostring    -- metamethods are not inherited

-- conn:close([linger]): sends what is queued (in later polls, when it does
-- not fit now: at most `linger` seconds, 5 by default), then close_notify;
-- "disconnected" follows.  Never blocks.
function ServerConn:close(linger)
  linger = check_linger(linger)
  if self.closed or self.closing then return end
  if self:_begin_close(self.server, linger) then self.server:_end(self) end
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

  local self = loop.owner(setmetatable({
    tcp = tcp,
    options = options,
    conns = {},                 -- conn -> true
    nconns = 0,
    handshake_timeout = handshake_timeout,
    _events = events { "connection_established", "data_received", "disconnected",
                       "connection_failed", "error" },
  }, Server))
  self._owner = self
  loop.watch(tcp, self)
  servers[self] = true
  return self
end

function Server:get_local_port()
  return self.tcp:get_local_port()
end

-- The live connection objects (a copy, in no particular order).
function Server:get_connections()
  local copy = {}
  for conn in pairs(self.conns) do copy[#copy + 1] = conn end
  return copy
end

local ACCEPT_PER_STEP = 4

-- Takes in what is waiting, a few at a time (each costs the set-up of a
-- TLS context): the listener stays ready, and the rest comes in the next
-- steps, within the poll's budget.
function Server:_accept()
  local tcp = self.tcp
  for _ = 1, ACCEPT_PER_STEP do
    local stream, msg, code = tcp:take_connection()
    if not stream then
      if code == "FAILED" then loop.pause_accept(self, tcp, msg) end
      return false
    end
    stream:set_no_delay(true)
    local peer = StreamPeerTLS.new()
    local conn = setmetatable({
      server = self, tcp = stream, peer = peer, outbox = {}, out_from = 1, pending = 0,
      started = now(), established = false, closed = false, _owner = self,
    }, ServerConn)
    local ok, msg, code = peer:accept_stream(stream, self.options)
    if ok then
      self.conns[conn] = true
      self.nconns = self.nconns + 1
      conn.deadline = loop.timer(conn.started + self.handshake_timeout, self, conn)
      loop.watch(peer, conn)
    else
      -- TLS could not even be set up (memory): the client learns it now,
      -- not when the collector gets to the socket.
      stream:disconnect_from_host()
      conn.closed = true
      self:_emit("connection_failed", conn, msg, code)
    end
  end
  return true
end

-- The end of a connection: out of the loop, disconnected, told once.
function Server:_end(conn, failed, msg, code)
  if conn.closed then return end
  conn.closed, conn.closing = true, false
  if conn.deadline then conn.deadline.cancelled = true end
  if conn.linger then conn.linger.cancelled = true end
  loop.unwatch(conn.peer)
  if self.conns[conn] then
    self.conns[conn] = nil
    self.nconns = self.nconns - 1
  end
  pcall(conn.peer.disconnect_from_stream, conn.peer)
  if failed then
    self:_emit("connection_failed", conn, msg, code)
  elseif conn.established then
    self:_emit("disconnected", conn)
  end
end

-- A timer: a handshake that took too long, or a close that lingered.
function Server:_timeout(conn)
  if conn == loop.RESUME_ACCEPT then
    if self.tcp:is_listening() then loop.watch(self.tcp, self) end
    return
  end
  if conn.closed then return end
  if conn.closing then
    return self:_end(conn)                      -- what is left is dropped
  end
  if not conn.established then
    conn.tcp:disconnect_from_host()
    self:_end(conn, true, ("the TLS handshake did not finish within %g s")
      :format(self.handshake_timeout), "ERR_TIMEOUT")
  end
end

-- One step of a token: the listener (accept) or a connection.
function Server:_step(conn)
  if conn == self then
    return self.tcp:is_listening() and self:_accept()
  end
  if conn.closed then return false end
  local peer = conn.peer
  peer:poll()
  local status = peer:get_status()
  if status == TLS_HANDSHAKING then return false end
  if status == TLS_CONNECTED and not conn.established then
    conn.established = true
    conn.deadline.cancelled = true
    self:_emit("connection_established", conn)
    if conn.closed then return false end
  end
  local more = false
  if conn.established and status == TLS_CONNECTED then
    more = conn:_io(function(data) self:_emit("data_received", conn, data) end)
    if conn.closed then return false end
    if conn.closing and not conn.outbox[1] then
      self:_end(conn)
      return false
    end
  end
  status = peer:get_status()
  if status ~= TLS_CONNECTED then
    local m, c = peer:get_error()
    if not conn.established then
      self:_end(conn, true, m or "the handshake failed", c or "FAILED")
    else
      self:_end(conn)
    end
    return false
  end
  return more
end

-- obj:set_poll_budget(seconds) / obj:get_poll_budget(): how long this
-- object's own poll() (and its turn in run()) works at most; nil goes back
-- to tls.set_poll_budget's.  tls.poll() keeps its own budget for all.
local function set_budget(self, seconds)
  if seconds ~= nil and (type(seconds) ~= "number" or not (seconds > 0)) then
    error("bad argument #1 to 'set_poll_budget' (positive number of seconds or nil expected)", 2)
  end
  self._budget_time = seconds
end

local function get_budget(self)
  return self._budget_time or (loop.get_budget())
end

Server.set_poll_budget, Server.get_poll_budget = set_budget, get_budget

-- srv:poll(): accepts, handshakes, reads, writes, each without blocking,
-- for the connections that are ready, within the poll budget; runs the
-- handlers.  Returns true while the server is listening.
function Server:poll()
  self.polled_at = now()
  loop.poll_owner(self)
  return self.tcp:is_listening()
end

-- srv:run(timeout): serves until srv:stop() (or `timeout` seconds), never
-- spinning: it sleeps in the event loop until a socket is ready or a
-- timer is due.
function Server:run(timeout)
  self.polled_at = now()
  self.running = true
  loop.run(self, function() return not self.running or not self.tcp:is_listening() end, timeout)
  self.running = false
  return true
end

-- srv:stop(): stops listening and closes every connection (sending
-- close_notify, without waiting); a run() in progress returns.
function Server:stop()
  servers[self] = nil
  self.running = false
  loop.unwatch(self.tcp)
  self.tcp:stop()
  for conn in pairs(self.conns) do self:_end(conn) end
end

--------------------------------------------------------------- clients

local Client = setmetatable({}, { __index = Conn })
Client.__index = Client
Client.on, Client._emit, Client._report = Emitter.on, Emitter._emit, Emitter._report

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
  local self = loop.owner(setmetatable({
    host = host, port = port, timeout = timeout, outbox = {}, out_from = 1, pending = 0,
    closed = false, established = false, started = now(),
    _events = events { "connection_established", "data_received", "disconnected",
                       "connection_failed", "error" },
  }, Client))
  self._owner = self

  local function fail(msg, code)
    self.failure = { msg, code }
    self:_queue(self)               -- reported by the next poll
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
  loop.watch(self.peer, self)
  loop.want_write(self.peer, true)          -- until connected
  self.deadline = loop.timer(self.started + timeout, self, "connect")
  return self
end

-- Reports a failure once.
function Client:_failed(msg, code)
  if self.reported then return end
  self.reported = true
  self.closed = true
  self.failure = self.failure or { msg, code }
  if self.deadline then self.deadline.cancelled = true end
  if self.peer then
    loop.unwatch(self.peer)
    pcall(self.peer.disconnect_from_stream, self.peer)
  end
  self:_emit("connection_failed", self.failure[1], self.failure[2])
end

-- The end of an established connection: told once.
function Client:_end()
  if self.closed then return end
  self.closed, self.closing = true, false
  if self.linger then self.linger.cancelled = true end
  loop.unwatch(self.peer)
  self.peer:disconnect_from_stream()
  self:_emit("disconnected")
end

-- Why a connection is not up yet, for a timeout's message: where it is
-- stuck and, when the server is a tls.listen of this Lua state that was
-- not polled since the time `since`, that it must be.
function Client:_stuck(since)
  local tcp = self.tcp
  local where
  if not tcp then
    where = "it never started"
  elseif tcp:get_status() ~= StreamPeerTCP.STATUS_CONNECTED then
    where = tcp:is_resolving() and "the name is still being looked up"
      or "the TCP connection is not up yet"
  else
    where = "the TCP connection is up, the TLS handshake is not done"
  end
  for srv in pairs(servers) do
    if srv.tcp:is_listening() and srv.tcp:get_local_port() == self.port
        and (srv.polled_at or -1) < since and loop.polled_at < since then
      return where .. ("; the tls.listen server on port %d in this script was not polled "
        .. "meanwhile: client:wait() steps only the client, so poll both sides "
        .. "(tls.run(seconds), or tls.poll() in a loop)"):format(self.port)
    end
  end
  return where
end

function Client:_timeout(key)
  if self.closed then return end
  if key == "connect" and not self.established then
    return self:_failed(("the TLS handshake with %s did not finish within %g s (%s)")
      :format(self.host, self.timeout, self:_stuck(self.started)), "ERR_TIMEOUT")
  end
  if self.closing then return self:_end() end   -- what is left is dropped
end

function Client:_step()
  if self.failure then
    self:_failed(self.failure[1], self.failure[2])
    return false
  end
  if self.closed then return false end
  local peer = self.peer
  peer:poll()
  local status = peer:get_status()
  if status == TLS_HANDSHAKING then return false end
  if status == TLS_CONNECTED and not self.established then
    self.established = true
    self.deadline.cancelled = true
    loop.want_write(peer, self.outbox[1] ~= nil)
    self:_emit("connection_established")
    if self.closed then return false end
  end
  local more = false
  if self.established and status == TLS_CONNECTED then
    more = self:_io(function(data) self:_emit("data_received", data) end)
    if self.closed then return false end
    if self.closing and not self.outbox[1] then
      self:_end()
      return false
    end
  end
  status = peer:get_status()
  if status ~= TLS_CONNECTED then
    if not self.established then
      local m, c = peer:get_error()
      if self.tcp:get_status() == StreamPeerTCP.STATUS_ERROR then
        m, c = self.tcp:get_error()       -- the name or the connect failed
      end
      self:_failed(m or "the TLS handshake failed", c or "FAILED")
    else
      self:_end()
    end
    return false
  end
  return more
end

Client.set_poll_budget, Client.get_poll_budget = set_budget, get_budget

-- c:poll(): one non-blocking step; runs the handlers.  Returns true while
-- the connection is (or may become) usable.
function Client:poll()
  if self.failure and not self.reported then self:_queue(self) end
  loop.poll_owner(self)
  return not self.closed
end

-- c:wait(timeout): blocks until the connection is established (true) or
-- has failed / timed out (nil, message, code).  Only this client is
-- stepped meanwhile: a server in the same script must be polled by it
-- too (tls.poll() steps everything).
function Client:wait(timeout)
  timeout = timeout or self.timeout
  if self.failure and not self.reported then self:_queue(self) end
  local since = now()
  local done = loop.run(self, function() return self.established or self.closed end, timeout)
  if self.established then return true end
  if done then
    local f = self.failure or { "the connection closed", "ERR_CONNECTION_ERROR" }
    return nil, f[1], f[2]
  end
  return nil, ("not connected to %s port %d within %g s (%s)")
    :format(self.host, self.port, timeout, self:_stuck(since)), "ERR_TIMEOUT"
end

-- c:run(timeout): pumps until the connection ends (or `timeout` seconds).
function Client:run(timeout)
  if self.failure and not self.reported then self:_queue(self) end
  loop.run(self, function() return self.closed end, timeout)
  return true
end

-- c:close([linger]): sends what is queued (in later polls, when it does not
-- fit now: at most `linger` seconds, 5 by default), then close_notify.
-- Never blocks.
function Client:close(linger)
  linger = check_linger(linger)
  if self.closed or self.closing then return end
  if not self.peer or not self.established then
    self.closed = true
    if self.deadline then self.deadline.cancelled = true end
    if self.peer then
      loop.unwatch(self.peer)
      self.peer:disconnect_from_stream()
    end
    return
  end
  if self:_begin_close(self, linger) then self:_end() end
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
