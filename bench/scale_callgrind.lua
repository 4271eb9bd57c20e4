-- bench/scale_callgrind.lua: run by bench/scale.lua under
--   valgrind --tool=callgrind --collect-atstart=no --toggle-collect=bench_repeat_call
-- N TCP connections (from bench/peer.py tcpidle, another process) to a
-- tls.listen server in this process, accepted and registered in its event
-- loop (their TLS handshakes wait for a ClientHello that never comes: no
-- public-key work under valgrind), then K calls of srv:poll() with nothing
-- ready, inside benchclock's repeat_call, the only place callgrind counts.
--
--   lua5.4 bench/scale_callgrind.lua N K CERT KEY PYTHON LOGFILE
local B = require "bench.benchlib"
local tls = require "tlspeer"
local core = require "tlspeer.core"
local bc = require "benchclock"

local n, k = tonumber(arg[1]), tonumber(arg[2])
local srv = assert(tls.listen { port = 0, bind = "127.0.0.1", certificate = arg[3], key = arg[4],
                                handshake_timeout = 3600 })
srv:on("error", function(m) io.stderr:write(m, "\n") end)
local pid = B.spawn(("%s bench/peer.py tcpidle %d 127.0.0.1 %d"):format(B.sh_quote(arg[5]), n,
  srv:get_local_port()), arg[6], "tcpidle")
-- Accept them all, and let every connection's first handshake step end.
local t = core._now()
while #srv:get_connections() < n and core._now() - t < 600 do
  for _ = 1, 100 do srv:poll() end
  core._wait({}, {}, 0.001)
end
for _ = 1, 200 do
  srv:poll()
  core._wait({}, {}, 0.005)
end
local opened = #srv:get_connections()
collectgarbage("collect")
io.write("OPEN ", opened, "\n")
io.flush()

bc.repeat_call(function() srv:poll() end, k)
B.stop(pid)
os.exit(0)
