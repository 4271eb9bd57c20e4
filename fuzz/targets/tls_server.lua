-- fuzz target tls_server: StreamPeerTLS:accept_stream over a scheduled
-- transport whose bytes (the client's) are the fuzz input; the layout is
-- in tls_common.lua.
local M = require "tls_common"
local pki
local T = {}
function T.init() pki = fuzz_pki() end
function T.run(data) M.run(pki, true, data) end

-- The recorder (FUZZ_RECORD=1, see harness.c).
local st
function T.record_start(variant)
  st = M.start(pki, true, variant, function() return fuzz_bridge(1, 0) end)
end
function T.record_step() return M.step(st) end
function T.seeds(transcript, name, variant)
  return M.seeds("tls_server", transcript, name, variant)
end

-- Our server against the raw client, which sends the request and then a
-- renegotiating ClientHello (encrypted: it replays because the server
-- draws the same randomness every run).
function T.record_reneg()
  local raw = fuzz_raw_peer(false, pki.raw_client)
  local parts, inbuf = {}, ""
  local s = M.start(pki, true, 0, function()
    return {
      get_partial_data = function(_, n)
        local b = inbuf:sub(1, n)
        inbuf = inbuf:sub(#b + 1)
        return b
      end,
      put_partial_data = function(_, b) raw:feed(b); return #b end,
    }
  end)
  local phase, after, reneg_at = "handshake", 0, nil
  for _ = 1, 400 do
    if phase == "handshake" then
      local done, err = raw:handshake()
      if done == nil then error(err) end
      if done then phase = "request" end
    elseif phase == "request" then
      assert(raw:write(M.REQUEST) == #M.REQUEST)
      local out = raw:take()
      parts[#parts + 1] = out
      inbuf = inbuf .. out
      reneg_at = #table.concat(parts) + 1
      assert(raw:renegotiate())
      phase = "renegotiating"
    else
      raw:read(4096)
      after = after + 1
    end
    local out = raw:take()
    parts[#parts + 1] = out
    inbuf = inbuf .. out
    M.step(s)
    if after >= 10 then break end
  end
  assert(after >= 10, "the raw client never renegotiated")
  local transcript = table.concat(parts)
  local seeds = M.seeds("tls_server", transcript, "reneg", 0)
  local pending = assert(M.find_pending(pki, true, transcript, reneg_at),
    "no schedule makes the reply wait while the ClientHello is read")
  seeds[#seeds + 1] = { "tls_server/recorded_reneg_pending", pending }
  return seeds
end
return T
