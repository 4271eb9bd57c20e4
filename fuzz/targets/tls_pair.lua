-- fuzz target tls_pair: a client and a server, both tlspeer (or one of
-- them the raw mbedtls peer of harness.c, which renegotiates), joined by
-- an in-memory pipe whose two transports are scheduled (common.lua), and
-- driven by ops.  The bytes each side sends are a fixed pattern, so what
-- the other side reads can be checked byte for byte.
--
-- Input: a variant byte -
--   bit 0     mutual TLS (the client has a certificate, the server asks)
--   bit 1     session tickets off
--   bits 2-3  0, 3: tlspeer both; 1: the server is the raw peer; 2: the
--             client is the raw peer
--   bits 4-5  cipher suite: default, ECDHE-ECDSA AES-128-GCM, AES-128-CBC
--             SHA256 (CBC: records with an explicit IV), CHACHA20-POLY1305
--   bit 6     the handshake first (unscheduled), then the ops
--   bit 7     mutual TLS: verify = "optional" (else "required")
-- then ops read from the front (OPS below: one byte each, some take one
-- argument byte more) and transport control bytes read from the back; when
-- the two meet, the ops end and the transports answer in full.
--
-- Oracles (each a fuzz_fail):
--   * every byte a side reads is the next byte the other side sent: never
--     more, never different (what was sent: the counts put_partial_data
--     returned, put_data's true; a failed put_data may have sent any part);
--   * at the end, with the transports answering in full, if both sides are
--     connected and neither transport failed, everything sent has arrived;
--   * a connected client, and a connected server of mutual TLS, report
--     is_peer_verified();
--   * what fuzz_invoke and the scheduled transports check: nothing raises
--     but "closed" on a peer closed from its transport and "from inside its
--     own transport" on re-entry; a transport of a freed peer is never
--     called again; a disconnect from the transport has taken effect when
--     the call returns.
local tls = require "tlspeer"
local TLS = tls.StreamPeerTLS
local CONNECTED, DISCONNECTED = TLS.STATUS_CONNECTED, TLS.STATUS_DISCONNECTED
local T = {}
local pki
local DEBUG = os.getenv("FUZZ_DEBUG")

local SUITES = { false, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
  "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" }

-- The pattern each direction sends: byte p of the stream (from 1) is
-- PATTERN[dir]:byte((p - 1) % P + 1); P is prime, so no chunk repeats soon.
local P = 65521
local PATTERN = {}

function T.init()
  pki = fuzz_pki()
  for dir = 1, 2 do
    local t, x = {}, dir * 7919
    for i = 1, P do
      x = (x * 1103515245 + 12345) & 0x7fffffff
      t[i] = string.char((x >> 16) & 0xff)
    end
    local s = table.concat(t)
    PATTERN[dir] = s .. s
  end
end

local function pattern(dir, from, n)      -- bytes from..from+n-1 (from >= 1)
  local out, p = {}, PATTERN[dir]
  while n > 0 do
    local i = (from - 1) % P + 1
    local k = math.min(n, P)
    out[#out + 1] = p:sub(i, i + k - 1)
    from, n = from + k, n - k
  end
  return table.concat(out)
end

------------------------------------------------------------------- input

local function tape(data)
  local t = { f = 2, b = #data }
  function t.op()
    if t.f > t.b then return nil end
    t.f = t.f + 1
    return data:byte(t.f - 1)
  end
  function t.ctl()
    if t.quiet or t.b < t.f then return nil end
    t.b = t.b - 1
    return data:byte(t.b + 1)
  end
  return t
end

---------------------------------------------------------------- the run

local R                                       -- the run's state

local function fail(fmt, ...)
  fuzz_fail(("tls_pair (variant 0x%02x): " .. fmt):format(R.variant, ...))
end

-- Direction 1: client -> server; 2: server -> client.
local function new_dirs()
  return { { sent = 0, maybe = 0, recvd = 0, tainted = false },
           { sent = 0, maybe = 0, recvd = 0, tainted = false } }
end

local function account_sent(dir, n, data)
  local d = R.dirs[dir]
  if n == nil then                            -- a failed put_data: unknown
    d.maybe, d.tainted = d.maybe + #data, true
  elseif d.tainted then
    d.maybe = d.maybe + n
  else
    d.sent = d.sent + n
  end
end

local function account_recv(dir, s, who)
  if #s == 0 then return end
  local d = R.dirs[dir]
  if d.recvd + #s > d.sent + d.maybe then
    fail("the %s received %d bytes in all, %d sent%s", who, d.recvd + #s, d.sent,
      d.maybe > 0 and (" (and %d maybe)"):format(d.maybe) or "")
  end
  local want = pattern(dir, d.recvd + 1, #s)
  if s ~= want then
    local i = 1
    while s:byte(i) == want:byte(i) do i = i + 1 end
    fail("the %s received a byte that was not sent: byte %d of the stream (%d sent)",
      who, d.recvd + i, d.sent)
  end
  d.recvd = d.recvd + #s
end

-- The next bytes a side sends (what its next put must carry).
local function next_data(dir, n)
  local d = R.dirs[dir]
  return pattern(dir, d.sent + d.maybe + 1, n)
end

-------------------------------------------------------------- the pipe

local function new_pipe()
  return { { data = "", closed = false }, { data = "", closed = false } }
end

-- A queue's reader end.
local function q_recv(q, n)
  if #q.data == 0 then
    if q.closed then return nil, "the other end is closed", "ERR_FILE_EOF" end
    return ""
  end
  local s = q.data:sub(1, n)
  q.data = q.data:sub(#s + 1)
  return s
end

local function q_send(q, s)
  if q.gone then return nil, "the other end is gone", "ERR_CONNECTION_ERROR" end
  q.data = q.data .. s
  return #s
end

--------------------------------------------------------------- the sides

-- A side: { name, server, dir (what it sends), raw (a raw peer) or peer,
-- stream, opts, ... } (tlspeer sides are fuzz_side tables).
local function options(server)
  local v = R.variant
  local o = {}
  if v & 2 ~= 0 then o.session_tickets = false end
  local suite = SUITES[((v >> 4) & 3) + 1]
  if suite then o.ciphersuites = { suite } end
  if server then
    if v & 1 ~= 0 then
      o.trusted_chain, o.verify = pki.ca, v & 0x80 ~= 0 and "optional" or "required"
    end
    return assert(tls.TLSOptions.server(pki.server_key, pki.server, o))
  end
  if v & 1 ~= 0 then o.certificate, o.key = pki.client, pki.client_key end
  return assert(tls.TLSOptions.client(pki.ca, "", o))
end

local sides                                    -- { client, server }

local function other(side) return side == sides[1] and sides[2] or sides[1] end

local function raw_sync(side)                  -- the raw peer's bytes move
  local pipe = R.pipe
  local inq, outq = pipe[3 - side.dir], pipe[side.dir]
  if #inq.data > 0 then side.raw:feed(inq.data); inq.data = "" end
  local out = side.raw:take()
  if #out > 0 and not outq.gone then outq.data = outq.data .. out end
end

-- A tlspeer peer's method, checked (fuzz_invoke); afterwards a disconnect
-- from inside the transport must have taken effect.
local function call(side, kind, name, ...)
  side.deferred = false
  local r = table.pack(fuzz_invoke(R.ctx, side.peer, kind, name, ...))
  if side.deferred and not R.ctx.closed[side.peer] and (R.ctx.inside[side.peer] or 0) == 0 then
    side.deferred = false
    local status = side.peer:get_status()
    if status ~= DISCONNECTED then
      fail("the %s's transport called disconnect_from_stream() during %s(); status %d after it",
        side.name, name, status)
    end
  end
  return table.unpack(r, 1, r.n)
end

local function alive(side)
  if side.raw then return not side.raw_closed end
  return not R.ctx.closed[side.peer]
end

local function status(side)
  if side.raw then
    local s = side.raw:status()
    return (s == "connected" and not side.raw_closed) and CONNECTED
      or s == "handshaking" and TLS.STATUS_HANDSHAKING or TLS.STATUS_ERROR
  end
  if R.ctx.closed[side.peer] then return DISCONNECTED end
  return side.peer:get_status()
end

-- Connects a tlspeer side to the current pipe (a new transport).
local function setup(side)
  if side.stream then side.stream.retired = true end
  if not side.peer or R.ctx.closed[side.peer] then side.peer = TLS.new() end
  R.ctx.names = R.ctx.names or setmetatable({}, { __mode = "k" })
  R.ctx.names[side.peer] = side.name
  if not side.opts or R.ctx.opts_closed[side.opts] then side.opts = options(side.server) end
  local inq, outq = R.pipe[3 - side.dir], R.pipe[side.dir]
  local t = fuzz_sched_transport(side, R.tape.ctl,
    function(n) return q_recv(inq, n) end,
    function(s) return q_send(outq, s) end)
  function t.disconnect_from_host()
    outq.closed, inq.gone = true, true
  end
  side.stream, side.fault = t, false
  call(side, "any", "set_timeout", 0)
  if side.server then
    call(side, "setup", "accept_stream", t, side.opts)
  else
    call(side, "setup", "connect_to_stream", t, "localhost", side.opts)
  end
end

local function new_raw(side)
  side.raw = fuzz_raw_peer(side.server, {
    ca = pki.raw_client.ca, mtls = R.variant & 1 ~= 0,
    cert = side.server and pki.raw_server.cert or pki.raw_client.cert,
    key = side.server and pki.raw_server.key or pki.raw_client.key })
  side.raw_closed = false
end

------------------------------------------------------------------ steps

local function recv(side, s)
  if s then account_recv(3 - side.dir, s, side.name) end
end

local function poll(side)
  if side.raw then
    if side.raw_closed then return end
    raw_sync(side)
    local done = side.raw:handshake()
    if done then recv(side, side.raw:read(65536)) end
    raw_sync(side)
    return
  end
  call(side, "mbed", "poll")
end

local function put(side, n, whole)
  if n == 0 then return end
  local data = next_data(side.dir, n)
  if side.raw then
    if side.raw_closed then return end
    raw_sync(side)
    local k = side.raw:write(data)
    raw_sync(side)
    if k then account_sent(side.dir, k, data) end
    return
  end
  if R.dirs[side.dir].tainted then return end
  if whole then
    local ok, done = call(side, "mbed", "put_data", data)
    if ok then account_sent(side.dir, done and #data or nil, data) end
  else
    local ok, k, msg, code = call(side, "mbed", "put_partial_data", data)
    if ok then
      fuzz_result("put_partial_data", k, msg, code)
      if k then
        if math.type(k) ~= "integer" or k < 0 or k > #data then
          fail("put_partial_data(%d bytes) returned %s", #data, tostring(k))
        end
        account_sent(side.dir, k, data)
      end
    end
  end
end

local function get(side, n, whole)
  if side.raw then
    if side.raw_closed then return end
    raw_sync(side)
    recv(side, side.raw:read(math.max(1, math.min(n, 65536))))
    raw_sync(side)
    return
  end
  local ok, s, msg, code = call(side, "mbed", whole and "get_data" or "get_partial_data", n)
  if ok then
    fuzz_result(whole and "get_data" or "get_partial_data", s, msg, code)
    if s and #s > n then fail("%s(%d) returned %d bytes", whole and "get_data" or "get_partial_data", n, #s) end
    if s and whole and #s ~= n then fail("get_data(%d) returned %d bytes", n, #s) end
    recv(side, s)
  end
end

local function disconnect(side)
  if side.raw then
    if side.raw_closed then return end
    side.raw:close_notify()
    raw_sync(side)
    side.raw_closed = true
    R.pipe[side.dir].closed, R.pipe[3 - side.dir].gone = true, true
    return
  end
  call(side, "any", "disconnect_from_stream")
end

local function verified(side)
  if side.raw or not alive(side) or status(side) ~= CONNECTED then return end
  local ok, v = call(side, "any", "is_peer_verified")
  if ok and v == false and (not side.server or R.variant & 1 ~= 0) then
    local _, reused = call(side, "any", "is_session_reused")
    fail("the connected %s says is_peer_verified() is false%s", side.name,
      reused and " (a resumed session)" or "")
  end
end

local function getters(side)
  if side.raw then return end
  for _, g in ipairs { "get_status", "get_error", "get_cipher_suite", "get_tls_version",
                       "get_alpn_protocol", "is_session_reused", "get_available_bytes",
                       "has_pending" } do
    call(side, "any", g)
  end
  call(side, "free", "__tostring")
  local ok, cert = call(side, "any", "get_peer_certificate")
  if ok and cert then cert:get_subject() end
  verified(side)
end

-- Both sides on a fresh pipe: tlspeer peers set up again on it (a client
-- offers the session it kept), raw peers made anew.
local function connect()
  R.pipe, R.dirs = new_pipe(), new_dirs()
  R.tape.quiet = R.variant & 0x40 ~= 0
  for _, side in ipairs(sides) do
    if side.is_raw then new_raw(side) else setup(side) end
  end
  if R.variant & 0x40 ~= 0 then
    for _ = 1, 60 do
      poll(sides[1]); poll(sides[2])
      if status(sides[1]) ~= TLS.STATUS_HANDSHAKING and status(sides[2]) ~= TLS.STATUS_HANDSHAKING then
        break
      end
    end
    R.tape.quiet = false
  end
end

local function size(b, unit) return (b or 0) * unit end

local OPS = {
  [0] = function() poll(sides[1]) end,
  function() poll(sides[2]) end,
  function(t) put(sides[1], 1 + size(t.op(), 16)) end,
  function(t) put(sides[2], 1 + size(t.op(), 16)) end,
  function(t) get(sides[1], 1 + size(t.op(), 16)) end,
  function(t) get(sides[2], 1 + size(t.op(), 16)) end,
  function(t) put(sides[1], 1 + size(t.op(), 8), true) end,
  function(t) put(sides[2], 1 + size(t.op(), 8), true) end,
  function(t) get(sides[1], 1 + (t.op() or 0) % 64, true) end,
  function(t) get(sides[2], 1 + (t.op() or 0) % 64, true) end,
  function() disconnect(sides[1]) end,
  function() disconnect(sides[2]) end,
  function()                                  -- reconnect (resumes)
    disconnect(sides[1]); disconnect(sides[2])
    connect()
  end,
  function()                                  -- renegotiation by a raw peer
    for _, side in ipairs(sides) do
      if side.raw and not side.raw_closed then
        raw_sync(side)
        side.raw:renegotiate()
        raw_sync(side)
      end
    end
  end,
  function(t) put(sides[((t.op() or 0) & 1) + 1], 1000 + size(t.op(), 100)) end,   -- a big write
  function() getters(sides[1]); getters(sides[2]) end,
  function() collectgarbage() end,
  function()                                  -- a few rounds of both
    for _ = 1, 4 do
      poll(sides[1]); get(sides[1], 4096)
      poll(sides[2]); get(sides[2], 4096)
    end
  end,
}

-- The end: the transports answer in full; both sides poll and read until
-- nothing moves, then the checks.
local function settle()
  R.tape.quiet = true
  local last
  for _ = 1, 40 do
    for _, side in ipairs(sides) do
      if alive(side) then poll(side); get(side, 65536) end
    end
    local now = ("%d %d %d %d %d %d"):format(#R.pipe[1].data, #R.pipe[2].data,
      R.dirs[1].recvd, R.dirs[2].recvd, status(sides[1]), status(sides[2]))
    if now == last then break end
    last = now
  end
  local c, s = sides[1], sides[2]
  if DEBUG then
    local function err(side)
      if side.raw or not alive(side) then return "" end
      return " (" .. tostring((side.peer:get_error())) .. ")"
    end
    io.stderr:write(("[pair] client %d%s, server %d%s; c->s %d/%d, s->c %d/%d\n"):format(
      status(c), err(c), status(s), err(s), R.dirs[1].recvd, R.dirs[1].sent,
      R.dirs[2].recvd, R.dirs[2].sent))
  end
  verified(c); verified(s)
  if status(c) == CONNECTED and status(s) == CONNECTED and not c.fault and not s.fault then
    for dir = 1, 2 do
      local d = R.dirs[dir]
      if not d.tainted and d.recvd ~= d.sent then
        fail("both sides connected and nothing failed, but the %s received %d of the %d bytes sent",
          dir == 1 and "server" or "client", d.recvd, d.sent)
      end
    end
  end
end

function T.run(data)
  local v = data:byte(1) or 0
  R = { variant = v, ctx = fuzz_context(), tape = tape(data) }
  local mode = (v >> 2) & 3
  sides = {
    fuzz_side(R.ctx, { name = "client", server = false, dir = 1 }),
    fuzz_side(R.ctx, { name = "server", server = true, dir = 2 }),
  }
  if mode == 1 then sides[2].is_raw = true elseif mode == 2 then sides[1].is_raw = true end
  for _, side in ipairs(sides) do
    if not side.is_raw then
      side.on_sent = function(n, d) account_sent(side.dir, n, d) end
      side.on_recv = function(s) account_recv(3 - side.dir, s, side.name) end
      side.next_data = function(n) return next_data(side.dir, n) end
      side.other_step = function()
        local o = other(side)
        if alive(o) then poll(o) end
      end
    end
  end
  connect()
  for _ = 1, #data do
    local b = R.tape.op()
    if b == nil then break end
    OPS[b % 18](R.tape)
  end
  settle()
  for _, side in ipairs(sides) do
    if side.raw then side.raw = nil elseif alive(side) then disconnect(side) end
  end
  R, sides = nil, nil
end

return T
