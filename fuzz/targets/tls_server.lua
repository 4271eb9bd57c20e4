-- fuzz target tls_server: StreamPeerTLS:accept_stream over a transport
-- whose bytes (the client's) are the fuzz input.
local M = require "tls_common"
local pki
local T = {}
function T.init() pki = fuzz_pki() end
function T.run(data) M.run(pki, true, data) end
-- The recorder (FUZZ_RECORD=1).
local st
function T.record_start(variant)
  st = M.start(pki, true, fuzz_bridge(1, 0), variant)
end
function T.record_step() return M.step(st) end
return T
