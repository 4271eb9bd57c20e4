-- fuzz target tls_client: StreamPeerTLS:connect_to_stream over a transport
-- whose bytes (the server's) are the fuzz input.
local M = require "tls_common"
local pki
local T = {}
function T.init() pki = fuzz_pki() end
-- The first byte after the chunking byte is not a choice: the client
-- offers no certificate, so the recorded plain transcript replays.
function T.run(data) M.run(pki, false, data) end
local st
function T.record_start(variant)
  st = M.start(pki, false, fuzz_bridge(0, 1), variant)
end
function T.record_step() return M.step(st) end
return T
