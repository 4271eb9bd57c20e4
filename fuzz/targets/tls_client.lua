-- fuzz target tls_client: StreamPeerTLS:connect_to_stream over a scheduled
-- transport whose bytes (the server's) are the fuzz input; the layout is
-- in tls_common.lua (the variant bit gives the client a certificate: the
-- recorded mTLS transcript replays only with it).
local M = require "tls_common"
local pki
local T = {}
function T.init() pki = fuzz_pki() end
function T.run(data) M.run(pki, false, data) end

-- The recorder (FUZZ_RECORD=1, see harness.c).
local st
function T.record_start(variant)
  st = M.start(pki, false, variant, function() return fuzz_bridge(0, 1) end)
end
function T.record_step() return M.step(st) end
function T.seeds(transcript, name, variant)
  return M.seeds("tls_client", transcript, name, variant)
end

-- Our client against the raw server, which sends a HelloRequest (an
-- encrypted handshake record that replays: the client draws the same
-- randomness every run) right after the handshake, then the reply.
function T.record_reneg()
  local raw = fuzz_raw_peer(true, pki.raw_server)
  local parts, inbuf = {}, ""
  local c = M.start(pki, false, 0, function()
    return {
      get_partial_data = function(_, n)
        local b = inbuf:sub(1, n)
        inbuf = inbuf:sub(#b + 1)
        return b
      end,
      put_partial_data = function(_, b) raw:feed(b); return #b end,
    }
  end)
  local phase, request, done, reneg_at = "handshake", "", false, nil
  for _ = 1, 400 do
    if phase == "handshake" then
      local ok, err = raw:handshake()
      if ok == nil then error(err) end
      if ok then
        local out = raw:take()
        parts[#parts + 1] = out
        inbuf = inbuf .. out
        reneg_at = #table.concat(parts) + 1
        assert(raw:renegotiate())
        phase = "serve"
      end
    elseif phase == "serve" then
      request = request .. (raw:read(4096) or "")
      if request:find("\r\n\r\n", 1, true) then
        assert(raw:write(M.REPLY) == #M.REPLY)
        phase = "replied"
      end
    end
    local out = raw:take()
    parts[#parts + 1] = out
    inbuf = inbuf .. out
    if M.step(c) then done = true; break end
  end
  assert(done and phase == "replied", "the client did not get the reply")
  local transcript = table.concat(parts)
  local seeds = M.seeds("tls_client", transcript, "reneg", 0)
  local pending = assert(M.find_pending(pki, false, transcript, reneg_at),
    "no schedule makes the request wait while the HelloRequest is read")
  seeds[#seeds + 1] = { "tls_client/recorded_reneg_pending", pending }
  return seeds
end
return T
