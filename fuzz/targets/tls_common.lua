-- fuzz/targets/tls_common.lua: the TLS peer both single-peer TLS targets
-- drive (and the recorder, which must make the same calls in the same
-- order, so that the recorded transcripts replay).
--
-- Input: a header byte - bits 0-4 the schedule's length L, bit 5 the
-- schedule cycles, bit 6 the variant (tls_server: verify = "required"
-- instead of "optional"; tls_client: the client has a certificate), bit 7
-- get_data / put_data (timeout 0) instead of the partial calls - then L
-- control bytes (see fuzz_sched_transport in common.lua), then the other
-- side's bytes.  The transport's writes are discarded.
local tls = require "tlspeer"
local TLS = tls.StreamPeerTLS
local M = {}
local DEBUG = os.getenv("FUZZ_DEBUG")

M.REQUEST = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"        -- 35 bytes
M.REPLY = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"   -- 43 bytes

-- make_transport(side) -> the stream; variant 0 or 1 (see above).
function M.start(pki, server, variant, make_transport, blocking)
  local ctx = fuzz_context()
  local peer = TLS.new()
  local opts
  if server then
    opts = assert(tls.TLSOptions.server(pki.server_key, pki.server,
      { verify = variant == 1 and "required" or "optional", trusted_chain = pki.ca }))
  else
    local extra = variant == 1 and { certificate = pki.client, key = pki.client_key } or nil
    opts = assert(tls.TLSOptions.client(pki.ca, "", extra))
  end
  local st = { ctx = ctx, peer = peer, server = server, sent = false, got = "",
               blocking = blocking }
  st.side = fuzz_side(ctx, { peer = peer, opts = opts, server = server })
  st.side.stream = make_transport(st.side)
  peer:set_timeout(0)             -- get_data / put_data never wait
  local _, ok, msg, code
  if server then
    _, ok, msg, code = M.call(st, "setup", "accept_stream", st.side.stream, opts)
  else
    _, ok, msg, code = M.call(st, "setup", "connect_to_stream", st.side.stream, "localhost", opts)
  end
  st.ok = fuzz_result(server and "accept_stream" or "connect_to_stream", ok, msg, code)
  return st
end

-- A method of the peer (fuzz_invoke's kinds); a peer that a transport
-- disconnected during the call must be disconnected once it returns.
function M.call(st, kind, name, ...)
  st.side.deferred = false
  local r = table.pack(fuzz_invoke(st.ctx, st.peer, kind, name, ...))
  if st.side.deferred and not st.ctx.closed[st.peer] then
    st.side.deferred = false
    local status = st.peer:get_status()
    if status ~= TLS.STATUS_DISCONNECTED then
      fuzz_fail(("disconnect_from_stream() from inside the transport during %s(), "
        .. "and the peer's status is %d afterwards"):format(name, status))
    end
  end
  if not r[1] then st.dead = true end
  return table.unpack(r, 1, r.n)
end

local function getters(st)
  for _, g in ipairs { "get_cipher_suite", "get_tls_version", "get_alpn_protocol",
                       "is_peer_verified", "is_session_reused", "get_available_bytes",
                       "has_pending" } do
    M.call(st, "any", g)
  end
  M.call(st, "free", "__tostring")
  local _, cert = M.call(st, "any", "get_peer_certificate")
  if cert then cert:get_subject() end
end

local function put(st, s)
  if st.blocking then
    local _, ok, msg, code = M.call(st, "mbed", "put_data", s)
    fuzz_result("put_data", ok, msg, code)
  else
    local _, n, msg, code = M.call(st, "mbed", "put_partial_data", s)
    fuzz_result("put_partial_data", n, msg, code)
  end
end

local function get(st)
  if not st.blocking then
    local _, s, msg, code = M.call(st, "mbed", "get_partial_data", 4096)
    return fuzz_result("get_partial_data", s, msg, code)
  end
  local got = {}
  for _ = 1, 64 do
    local _, s, msg, code = M.call(st, "mbed", "get_data", 1)
    if s == nil then
      fuzz_result("get_data", s, msg, code)
      if code ~= "ERR_TIMEOUT" and #got == 0 then return nil end
      break
    end
    got[#got + 1] = s
  end
  return table.concat(got)
end

-- One step; true when this side has nothing more to do.
function M.step(st)
  if not st.ok or st.dead then return true end
  if not M.call(st, "mbed", "poll") then return true end
  local _, status = M.call(st, "any", "get_status")
  if DEBUG then
    io.stderr:write(("[%s] status %s %s\n"):format(st.server and "server" or "client",
      tostring(status), tostring((select(2, M.call(st, "any", "get_error"))))))
  end
  if status == TLS.STATUS_HANDSHAKING then return false end
  if status ~= TLS.STATUS_CONNECTED then
    -- Failed or closed: the error getters must work.
    local _, msg, code = M.call(st, "any", "get_error")
    assert(msg == nil or type(msg) == "string", "get_error message")
    assert(code == nil or type(code) == "string", "get_error code")
    M.call(st, "free", "__tostring")
    return true
  end
  -- Connected: every getter, then a little application data.
  getters(st)
  if not st.server and not st.sent then
    put(st, M.REQUEST)
    st.sent = true
  end
  local data = get(st)
  if data == nil or st.dead then return true end
  st.got = st.got .. data
  if st.server and not st.sent and st.got:find("\r\n\r\n", 1, true) then
    put(st, M.REPLY)
    st.sent = true
  end
  if DEBUG and #data > 0 then io.stderr:write("  got " .. ("%q"):format(data) .. "\n") end
  if not st.server and st.got:find("hello", 1, true) then
    M.call(st, "any", "disconnect_from_stream")
    return true
  end
  return false
end

function M.finish(st)
  if not st.dead then M.call(st, "any", "disconnect_from_stream") end
end

-- The fuzz run.
function M.run(pki, server, data, hooks)
  local h = data:byte(1) or 0
  local L = h & 31
  local ctl = fuzz_schedule(data:sub(2, 1 + L), h & 32 ~= 0)
  local input, pos = data:sub(2 + L), 1
  if hooks then ctl = function(what, arg) return hooks.ctl(what, arg, pos) end end
  local function recv(n)
    if pos > #input then return nil, "the end of the fuzz input", "ERR_FILE_EOF" end
    local s = input:sub(pos, pos + n - 1)
    pos = pos + #s
    return s
  end
  local function send(s) return #s end
  local st = M.start(pki, server, (h >> 6) & 1, function(side)
    return fuzz_sched_transport(side, ctl, recv, send)
  end, h & 128 ~= 0)
  if hooks then st.ctx.on_call = hooks.call end
  for _ = 1, 2 * #data + 40 do
    if M.step(st) then break end
  end
  M.finish(st)
end

-- The seeds for one recorded transcript: the same bytes under several
-- schedules.  `dir` is the target's corpus directory.
local SCHEDULES = {
  { "00", 0, "" },
  { "short", 0x20, "\x13" },               -- every call: at most 3 bytes
  { "block", 0x20, "\x00\x04" },           -- every other call would block
  { "mixed", 0x20, "\x3b\x04\x00" },       -- 8 bytes, would block, in full
  { "getdata", 0x80, "" },                 -- get_data / put_data
}
function M.seeds(dir, transcript, name, variant)
  local out = {}
  for _, s in ipairs(SCHEDULES) do
    local h = s[2] | #s[3] | (variant << 6)
    out[#out + 1] = { ("%s/recorded_%s_%s"):format(dir, name, s[1]),
                      string.char(h) .. s[3] .. transcript }
  end
  return out
end

-- Makes the schedule under which a replay of `transcript` has a write
-- record pending when a read takes in the other side's renegotiation
-- request (the record at byte `reneg_at` of the transcript), mbedtls'
-- refusal flushes that record from inside the read, and the connection
-- stays up for the next call (on f2618cf that call's flush re-encrypted
-- the record from a 1-byte buffer: bug (a)).  The schedule is steered as
-- the replay goes: the request record waits (its reads would block) until
-- a record of ours is pending; that record would block when put and at
-- the flush that follows; after the read that flushed it, the next read
-- would block.  Returns the seed's bytes, or nil.
function M.find_pending(pki, server, transcript, reneg_at)
  local sched, state, outer, got, last = {}, 0, nil, false, 0
  local hooks = {}
  function hooks.call(name) outer, got = name, false end
  function hooks.ctl(what, arg, pos)
    local c = 0
    if what == "put" and arg:byte(1) == 23 then        -- application data
      if state == 0 and outer:find("^put_") then c, state = 4, 1
      elseif state == 1 then c, state = 4, 2
      elseif state == 2 and got then state = 3 end
    elseif what == "get" then
      if state < 2 and pos == reneg_at then c = 4
      elseif state == 3 then c, state = 4, 4 end
      got = true
    end
    sched[#sched + 1] = string.char(c)
    if c ~= 0 then last = #sched end
    return c
  end
  fuzz_rng_reset()
  M.run(pki, server, string.char(0) .. transcript, hooks)
  if DEBUG then io.stderr:write(("find_pending: state %d, last %d\n"):format(state, last)) end
  if state ~= 4 or last > 31 then return nil end
  return string.char(last) .. table.concat(sched, "", 1, last) .. transcript
end

return M
