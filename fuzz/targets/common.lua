-- fuzz/targets/common.lua: helpers for every target (run by the harness
-- before the target's own file).

-- A tlspeer call that fails must say so with nil, message, code.  Anything
-- else (a raised error is caught by the harness) is a bug: raise.
function fuzz_result(what, ok, msg, code)
  if ok == nil or ok == false then
    if type(msg) ~= "string" or type(code) ~= "string" then
      error(("%s failed without a message and code: %s, %s, %s")
        :format(what, tostring(ok), tostring(msg), tostring(code)), 2)
    end
    return nil
  end
  return ok
end

-- The PKI of the TLS targets, made with tlspeer from the harness's
-- deterministic RNG, so every run (and the recorded seeds) sees the same
-- keys and certificates.
function fuzz_pki()
  local tls = require "tlspeer"
  local crypto = tls.Crypto.new()
  local from, to = "20200101000000", "20991231000000"
  local ca_key = assert(crypto:generate_ec("secp256r1"))
  local ca = assert(crypto:generate_self_signed_certificate(ca_key,
    "CN=tlspeer fuzz CA", from, to, { ca = true }))
  local server_key = assert(crypto:generate_ec("secp256r1"))
  local server = assert(crypto:issue_certificate(server_key, "CN=localhost",
    ca_key, ca, from, to, { san = { "localhost" } }))
  local client_key = assert(crypto:generate_ec("secp256r1"))
  local client = assert(crypto:issue_certificate(client_key, "CN=fuzz client",
    ca_key, ca, from, to, { client = true }))
  -- The same as PEM, for the raw peer (fuzz_raw_peer).
  local function pem(o, ...) return assert(o:save_to_string(...)) end
  return { ca = ca, server_key = server_key, server = server,
           client_key = client_key, client = client,
           raw_server = { ca = pem(ca), cert = pem(server), key = pem(server_key) },
           raw_client = { ca = pem(ca), cert = pem(client), key = pem(client_key) } }
end

-- A transport serving `data` as the peer's bytes, chunked as its first
-- byte says: low 7 bits = most bytes per read (0: as many as asked), high
-- bit = a would-block "" between reads.  Writes are discarded.
function fuzz_transport(data)
  local first = data:byte(1) or 0
  local chunk, stall = first & 0x7f, first & 0x80 ~= 0
  local t = { pos = 2, reads = 0, written = 0 }
  function t:get_partial_data(n)
    self.reads = self.reads + 1
    if stall and self.reads % 2 == 0 then return "" end
    if self.pos > #data then
      return nil, "end of the fuzz input", "ERR_FILE_EOF"
    end
    if chunk > 0 and n > chunk then n = chunk end
    local s = data:sub(self.pos, self.pos + n - 1)
    self.pos = self.pos + #s
    return s
  end
  function t:put_partial_data(s)
    self.written = self.written + #s
    return #s
  end
  return t
end

-- For recording: the harness's in-memory bridge (dir 0 = client->server).
function fuzz_bridge(out_dir, in_dir)
  return {
    get_partial_data = function(_, n) return fuzz_bridge_get(in_dir, n) end,
    put_partial_data = function(_, s) return fuzz_bridge_put(out_dir, s) end,
  }
end

------------------------------------------------------------------------
-- Scheduled transports: every get_partial_data / put_partial_data call
-- takes one control byte from a schedule (nil when there is none left:
-- the call is answered in full).  The byte's low 3 bits:
--   0-2  in full (all asked for / all given)
--   3    short: at most 1 + (byte >> 3) bytes (1..32)
--   4    would block ("" / 0)
--   5    end of stream (nil, msg, "ERR_FILE_EOF")
--   6    a transport failure: bit 3 clear, nil, msg, "ERR_CONNECTION_ERROR";
--        set, the method raises
--   7    a re-entry: bits 3-6 pick one of the 16 calls of REENTRIES below,
--        made on the peer from inside its transport; then the call is
--        answered in full, or (bit 7) the method raises.
-- FUZZ_REENTRY=none turns the re-entries off (they answer in full), and
-- FUZZ_REENTRY=0,1,2 keeps only those.

local REENTRY_ON = {}
do
  local env = os.getenv("FUZZ_REENTRY")
  for k = 0, 15 do REENTRY_ON[k] = env == nil or env == "" or env == "all" end
  if env and env ~= "none" then
    for k in env:gmatch("%d+") do REENTRY_ON[tonumber(k)] = true end
  end
end

function fuzz_decode(c)
  if c == nil then return "full" end
  local k = c & 7
  if k <= 2 then return "full"
  elseif k == 3 then return "short", 1 + (c >> 3)
  elseif k == 4 then return "block"
  elseif k == 5 then return "eof"
  elseif k == 6 then return (c & 8 ~= 0) and "raise" or "fail"
  end
  return "reenter", (c >> 3) & 15, c & 0x80 ~= 0
end

-- A schedule read front to back from `s`; cycled when `cycle` is set.
function fuzz_schedule(s, cycle)
  local i = 0
  return function()
    if #s == 0 then return nil end
    i = i + 1
    if i > #s then
      if not cycle then return nil end
      i = 1
    end
    return s:byte(i)
  end
end

-- The state shared by every peer of one run: which peers were closed from
-- their transport (__gc/__close), how deep each is inside its transport,
-- which TLSOptions were closed.
function fuzz_context()
  return {
    closed = setmetatable({}, { __mode = "k" }),
    inside = setmetatable({}, { __mode = "k" }),
    opts_closed = setmetatable({}, { __mode = "k" }),
  }
end

local CLOSED = "attempt to use a closed StreamPeerTLS"
local INSIDE = "from inside its own transport"

-- Calls a method of a StreamPeerTLS and checks what it may raise:
--   "free"  (__gc, __close, __tostring): never raises;
--   "any"   (getters, disconnect_from_stream): only "closed", and only on a
--           peer closed from its transport;
--   "mbed"  (the methods that enter mbedtls): also "from inside its own
--           transport", and only while the peer is inside it;
--   "setup" (connect_to_stream / accept_stream): also a closed TLSOptions.
-- A peer closed from its transport must raise "closed" (but for "free").
-- Returns true, results... or false, message.
local TRACE = os.getenv("FUZZ_TRACE")

function fuzz_invoke(ctx, peer, kind, name, ...)
  if TRACE then
    io.stderr:write(("%s%s %s\n"):format(("  "):rep(ctx.inside[peer] or 0), tostring(ctx.names and ctx.names[peer] or "peer"), name))
  end
  if ctx.on_call and (ctx.inside[peer] or 0) == 0 then ctx.on_call(name) end
  local f
  if name:sub(1, 2) == "__" then f = getmetatable(peer)[name] else f = peer[name] end
  if f == nil then return true end           -- not in this version of tlspeer
  local closed = ctx.closed[peer]          -- before the call: it must raise
  local ok, a, b, c = pcall(f, peer, ...)
  if ok then
    if closed and kind ~= "free" then
      fuzz_fail(("%s() on a StreamPeerTLS closed from its own transport did not raise")
        :format(name))
    end
    if name == "__tostring" and closed and a ~= "StreamPeerTLS (closed)" then
      fuzz_fail("tostring of a closed StreamPeerTLS: " .. tostring(a))
    end
    return true, a, b, c
  end
  local msg = tostring(a)
  if kind ~= "free" and ctx.closed[peer] and msg:find(CLOSED, 1, true) then return false, msg end
  if (kind == "mbed" or kind == "setup") and (ctx.inside[peer] or 0) > 0
      and msg:find(INSIDE, 1, true) then
    return false, msg
  end
  if kind == "setup" and msg:find("attempt to use a closed TLSOptions", 1, true)
      and next(ctx.opts_closed) then
    return false, msg
  end
  fuzz_fail(("%s() raised%s: %s"):format(name,
    (ctx.inside[peer] or 0) > 0 and " (from inside its transport)" or "", msg))
end

local GETTERS = { "get_status", "get_error", "get_available_bytes", "get_cipher_suite",
  "get_tls_version", "get_alpn_protocol", "is_peer_verified", "is_session_reused",
  "has_pending", "get_stream", "get_timeout", "is_big_endian_enabled" }

-- `side` is one tlspeer peer of a run: { ctx, peer, stream, opts, server,
-- host, on_sent(n, data), on_recv(data), next_data(n), other_step() }.
-- on_* account for data a re-entry moved (the pair target checks it).
local REENTRIES = {
  [0] = function(side)
    side.deferred = true
    fuzz_invoke(side.ctx, side.peer, "any", "disconnect_from_stream")
  end,
  [1] = function(side, t)
    fuzz_invoke(side.ctx, side.peer, "free", "__gc")
    side.ctx.closed[side.peer], t.freed = true, true
  end,
  [2] = function(side, t)
    fuzz_invoke(side.ctx, side.peer, "free", "__close")
    side.ctx.closed[side.peer], t.freed = true, true
  end,
  [3] = function() collectgarbage() end,
  [4] = function(side) fuzz_invoke(side.ctx, side.peer, "mbed", "poll") end,
  [5] = function(side)
    local ok, s = fuzz_invoke(side.ctx, side.peer, "mbed", "get_partial_data", 100)
    if ok and s then side.on_recv(s) end
  end,
  [6] = function(side)
    local data = side.next_data(7)
    local ok, n = fuzz_invoke(side.ctx, side.peer, "mbed", "put_partial_data", data)
    if ok and n then side.on_sent(n, data) end
  end,
  [7] = function(side)
    for _, g in ipairs(GETTERS) do fuzz_invoke(side.ctx, side.peer, "any", g) end
    fuzz_invoke(side.ctx, side.peer, "free", "__tostring")
  end,
  [8] = function(side)
    local ok, cert = fuzz_invoke(side.ctx, side.peer, "any", "get_peer_certificate")
    if ok and cert then cert:get_subject(); cert:get_fingerprint("sha256") end
  end,
  [9] = function(side, t)
    if side.server then
      fuzz_invoke(side.ctx, side.peer, "setup", "accept_stream", t, side.opts)
    else
      fuzz_invoke(side.ctx, side.peer, "setup", "connect_to_stream", t, side.host, side.opts)
    end
  end,
  [10] = function(side)
    getmetatable(side.opts).__gc(side.opts)
    side.ctx.opts_closed[side.opts] = true
  end,
  [11] = function(side)
    if side.other_step then return side.other_step() end
    fuzz_invoke(side.ctx, side.peer, "any", "set_timeout", 0)
    local ok, s = fuzz_invoke(side.ctx, side.peer, "mbed", "get_data", 1)
    if ok and s then side.on_recv(s) end
  end,
  [12] = function(side)
    local ok, s = fuzz_invoke(side.ctx, side.peer, "mbed", "get_data", 3)
    if ok and s then side.on_recv(s) end
  end,
  [13] = function(side)
    local data = side.next_data(5)
    local ok, done = fuzz_invoke(side.ctx, side.peer, "mbed", "put_data", data)
    if ok then side.on_sent(done and #data or nil, data) end
  end,
  [14] = function(side)
    getmetatable(side.opts).__close(side.opts)
    side.ctx.opts_closed[side.opts] = true
  end,
  [15] = function(side)
    local ok, v = fuzz_invoke(side.ctx, side.peer, "mbed", "get_u8")
    if ok and v then side.on_recv(string.char(v)) end
    local data = side.next_data(1)
    local done
    ok, done = fuzz_invoke(side.ctx, side.peer, "mbed", "put_u8", data:byte())
    if ok then side.on_sent(done and 1 or nil, data) end
  end,
}

local function nothing() end
function fuzz_side(ctx, fields)
  local side = { ctx = ctx, host = "localhost", on_sent = nothing, on_recv = nothing,
                 next_data = function(n) return ("x"):rep(n) end }
  for k, v in pairs(fields) do side[k] = v end
  return side
end

-- A scheduled transport for `side`: ctl() gives the control bytes,
-- recv(n) / send(s) move the bytes (recv: a string, "" for nothing yet, or
-- nil, msg, code; send: a count or nil, msg, code).  side.fault is set
-- when the schedule made the transport fail (end of stream, failure,
-- raise), which the pair target's "nothing lost" oracle needs to know.
function fuzz_sched_transport(side, ctl, recv, send)
  local t = {}
  local function call(what, arg)
    if t.freed then
      fuzz_fail(("the transport of a StreamPeerTLS freed from inside it was called again (%s)")
        :format(what))
    end
    if t.retired then
      fuzz_fail(("a transport the peer no longer uses was called (%s)"):format(what))
    end
    local kind, a, b = fuzz_decode(ctl(what, arg))
    if TRACE then
      io.stderr:write(("    %s transport %s(%s): %s %s\n"):format(side.name or "", what,
        what == "get" and arg or #arg, kind, tostring(a or "")))
    end
    if kind == "reenter" then
      local peer, ctx = side.peer, side.ctx
      ctx.inside[peer] = (ctx.inside[peer] or 0) + 1
      if REENTRY_ON[a] then REENTRIES[a](side, t) end
      ctx.inside[peer] = ctx.inside[peer] - 1
      if b then
        side.fault = true
        error("fuzz: the transport raises after a re-entry", 0)
      end
      kind = "full"
    end
    if kind == "block" then return what == "get" and "" or 0 end
    if kind == "eof" then
      side.fault = true
      return nil, "fuzz: the end of the stream", "ERR_FILE_EOF"
    end
    if kind == "fail" then
      side.fault = true
      return nil, "fuzz: a transport failure", "ERR_CONNECTION_ERROR"
    end
    if kind == "raise" then
      side.fault = true
      error("fuzz: the transport raises", 0)
    end
    if what == "get" then
      if kind == "short" and arg > a then arg = a end
      return recv(arg)
    end
    if kind == "short" and #arg > a then arg = arg:sub(1, a) end
    return send(arg)
  end
  function t:get_partial_data(n) return call("get", n) end
  function t:put_partial_data(s) return call("put", s) end
  return t
end
