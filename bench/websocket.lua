-- bench/websocket.lua: WebSocket over wss (TLS) on loopback, in one run:
--
--   1. throughput: a client sends N messages of 64 B, then of 1 MiB, to a
--      server that counts them and answers "done"; messages/s and MB/s for
--      tlspeer -> tlspeer, node ws -> node ws and Python websockets ->
--      Python websockets (each pair in two processes of its own);
--   2. frame: a tlspeer wss server (tls.ws_listen) in a 60 fps loop while
--      1,000 node ws clients chat (each sends 64 B a second; the server
--      relays every message to the sender and 4 others): the longest
--      single tls.poll() call (target <= 2 ms), p99, per-call work.
--
--   lua5.4 bench/websocket.lua [--quick]        prints a Markdown table
--
-- Needs `make` (build/), node with ws (~/.cache/tlspeer/npm, as spec 30
-- installs it) and python3-websockets.  Other roles of this file (run by
-- the bench itself): serve, send, chat-server.
package.path = "lua/?.lua;lua/?/init.lua;bench/?.lua;" .. package.path
-- build/ unless LUA_CPATH picks a build (bench/sections.sh does).
package.cpath = (os.getenv("LUA_CPATH") and "" or "build/?.so;") .. "bench/out/?.so;" .. package.cpath

local B = require "benchlib"
local q = B.sh_quote

local CERT, KEY, CA = "certs/server.crt", "certs/server.key", "certs/ca.crt"
local NPM = (os.getenv("HOME") or "/tmp") .. "/.cache/tlspeer/npm/node_modules"
local LUA = arg[-1] or "lua5.4"

local role = arg[1]

---------------------------------------------------------------- roles

local function tlspeer()
  local tls = require "tlspeer"
  -- Throughput wants bigger steps than a game frame: 5 ms and 1 MiB per
  -- connection step (the defaults are 0.3 ms and 16 KiB).
  tls.set_poll_budget(0.005, 1048576)
  return tls
end

if role == "serve" then
  local tls = tlspeer()
  local n = tonumber(arg[2])
  local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1", certificate = CERT, key = KEY,
    inbound_buffer_size = 4 * 1048576, outbound_buffer_size = 4 * 1048576, max_queued_packets = 1000000 })
  local got = 0
  srv:on("message_received", function(conn)
    got = got + 1
    if got == n then conn:send_text("done") end
  end)
  srv:on("disconnected", function() got = 0 end)
  print("READY " .. srv:get_local_port())
  io.stdout:flush()
  srv:run()
  return
end

if role == "send" then
  local tls = tlspeer()
  local core = require "tlspeer.core"
  local port, n, size = tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4])
  local ws = tls.WebSocketPeer.new()
  ws:set_outbound_buffer_size(8 * 1048576)
  ws:set_max_queued_packets(1000000)
  local ca = tls.X509Certificate.new()
  assert(ca:load(CA))
  assert(ws:connect_to_url("wss://localhost:" .. port .. "/", tls.TLSOptions.client(ca)))
  while ws:get_ready_state() == tls.WebSocketPeer.STATE_CONNECTING do
    ws:poll()
    core._wait({ ws:get_stream() }, {}, 0.001)
  end
  assert(ws:get_ready_state() == tls.WebSocketPeer.STATE_OPEN, tostring(ws:get_error()))
  local msg = ("x"):rep(size)
  local t0 = core._now()
  local sent = 0
  while sent < n do
    if ws:send(msg) then
      sent = sent + 1
      if sent % 64 == 0 then ws:poll() end
    else
      ws:poll()
      if ws:get_current_outbound_buffered_amount() > 0 then
        core._wait({}, { ws:get_stream() }, 0.01)
      end
    end
  end
  while ws:get_available_packet_count() == 0 do
    ws:poll()
    if ws:get_ready_state() == tls.WebSocketPeer.STATE_CLOSED then error("closed: " .. tostring(ws:get_error())) end
    if ws:get_current_outbound_buffered_amount() > 0 then
      core._wait({ ws:get_stream() }, { ws:get_stream() }, 0.01)
    else
      core._wait({ ws:get_stream() }, {}, 0.01)
    end
  end
  print("RESULT seconds " .. (core._now() - t0))
  ws:close(-1)
  return
end

if role == "chat-server" then
  local tls = require "tlspeer"           -- the game defaults: 0.3 ms, 16 KiB
  local core = require "tlspeer.core"
  local seconds, plain, idle_gc = tonumber(arg[2]), arg[3] == "plain", arg[4] == "idle-gc"
  -- idle-gc: the collector runs only in the frame's idle time (stopped,
  -- then stepped by hand between polls), as a game can do: Lua's atomic
  -- phase then never falls inside a call into tlspeer.
  if idle_gc then collectgarbage("stop") end
  local srv = assert(tls.ws_listen { port = 0, bind = "127.0.0.1", certificate = not plain and CERT or nil,
    key = not plain and KEY or nil })
  local conns, nconns = {}, 0
  srv:on("connection_established", function(conn)
    nconns = nconns + 1
    conns[nconns] = conn
  end)
  local relayed = 0
  srv:on("message_received", function(conn, msg, is_string)
    conn:send(msg, 0)
    for k = 1, 4 do
      local other = conns[math.random(nconns)]
      if other and other:send(msg, 0) then relayed = relayed + 1 end
    end
  end)
  print("READY " .. srv:get_local_port())
  io.stdout:flush()
  -- 60 fps: one tls.poll() a frame, timed; the rest of the frame sleeps.
  -- With bench/benchclock.c, each call's thread-CPU time and involuntary
  -- context switches too: a call slow because the thread was preempted
  -- (2 cores shared with the node clients) is told from one that worked.
  local okbc, bc = pcall(require, "benchclock")
  local tcpu = okbc and bc.thread_cpu or function() return 0 end
  local nivcsw = okbc and bc.nivcsw or function() return 0 end
  local cpus, preempted = {}, 0
  local frame = 1 / 60
  local calls, all_open_at = {}, nil
  local ramp_max = 0
  local stop_at
  local next_frame = core._now()
  while true do
    local c0, v0 = tcpu(), nivcsw()
    local t0 = core._now()
    tls.poll()
    local dt = core._now() - t0
    local cpu, switched = tcpu() - c0, nivcsw() ~= v0
    if nconns >= 1000 and not all_open_at then
      all_open_at = t0
      stop_at = t0 + seconds
    end
    if all_open_at then
      calls[#calls + 1] = dt
      cpus[#cpus + 1] = cpu
      if switched and dt > 0.002 then preempted = preempted + 1 end
    elseif dt > ramp_max then ramp_max = dt end
    if stop_at and t0 > stop_at then break end
    next_frame = next_frame + frame
    if idle_gc then
      while core._now() < next_frame - 0.002 do
        if collectgarbage("step", 32) then break end
      end
    end
    local left = next_frame - core._now()
    if left > 0 then core._sleep(left) else next_frame = core._now() end
  end
  local s = B.stats(calls)
  local over = 0
  for _, dt in ipairs(calls) do if dt > 0.002 then over = over + 1 end end
  local c = B.stats(cpus)
  print(("RESULT over2ms %d"):format(over))
  print(("RESULT preempted %d"):format(preempted))
  print(("RESULT cpu_max %.6f"):format(okbc and c.max or -1))
  print(("RESULT cpu_p99 %.6f"):format(okbc and c.p99 or -1))
  print(("RESULT frames %d"):format(s.n))
  print(("RESULT max %.6f"):format(s.max))
  print(("RESULT p99 %.6f"):format(s.p99))
  print(("RESULT p50 %.6f"):format(s.p50))
  print(("RESULT ramp_max %.6f"):format(ramp_max))
  print(("RESULT relayed %d"):format(relayed))
  print(("RESULT conns %d"):format(nconns))
  print(("RESULT heap_kb %.0f"):format(collectgarbage("count")))
  io.stdout:flush()
  srv:stop()
  return
end

-------------------------------------------------------------- harness

local quick = arg[1] == "--quick"
local dir = os.getenv("TMPDIR") or "/tmp"
local log = function(name) return dir .. "/tlspeer-wsbench-" .. name .. ".log" end

local function server_cmd(impl, n)
  if impl == "tlspeer" then return ("%s bench/websocket.lua serve %d"):format(q(LUA), n) end
  if impl == "node" then
    return ("env NODE_PATH=%s node bench/ws_bench_peer.js serve %s %s %d"):format(q(NPM), CERT, KEY, n)
  end
  return ("%s bench/ws_bench_peer.py serve %s %s %d"):format(q("/usr/bin/python3"), CERT, KEY, n)
end

local function client_cmd(impl, port, n, size)
  if impl == "tlspeer" then return ("%s bench/websocket.lua send %d %d %d"):format(q(LUA), port, n, size) end
  if impl == "node" then
    return ("env NODE_PATH=%s node bench/ws_bench_peer.js send %d %s %d %d"):format(q(NPM), port, CA, n, size)
  end
  return ("%s bench/ws_bench_peer.py send %d %s %d %d"):format(q("/usr/bin/python3"), port, CA, n, size)
end

local function throughput(impl, n, size)
  local spid = B.spawn(server_cmd(impl, n), log(impl .. "-server"), impl .. " server")
  local port = tonumber(B.wait_line(log(impl .. "-server"), "^READY (%d+)", 20, spid))
  local cpid = B.spawn(client_cmd(impl, port, n, size), log(impl .. "-client"), impl .. " client")
  local ok = B.wait_exit(cpid, 300)
  B.stop(spid)
  if not ok then B.stop(cpid) end
  local r = B.results(log(impl .. "-client"))
  if not r.seconds then
    B.log("%s %d x %d B failed:\n%s", impl, n, size, B.read_file(log(impl .. "-client")) or "")
    return nil
  end
  return r.seconds
end

local IMPLS = {
  { "tlspeer", "tlspeer WebSocketPeer -> tls.ws_listen" },
  { "node", "node ws -> node ws" },
  { "python", "Python websockets -> Python websockets" },
}
local small_n = quick and 5000 or 20000
local large_n = quick and 16 or 64

local rows = {}
for _, impl in ipairs(IMPLS) do
  B.log("throughput: %s", impl[2])
  local s1 = throughput(impl[1], small_n, 64)
  local s2 = throughput(impl[1], large_n, 1048576)
  rows[#rows + 1] = {
    impl[2],
    s1 and ("%.0f"):format(small_n / s1) or "failed",
    s1 and ("%.2f"):format(small_n * 64 / s1 / 1e6) or "–",
    s2 and ("%.1f"):format(large_n / s2) or "failed",
    s2 and ("%.1f"):format(large_n * 1048576 / s2 / 1e6) or "–",
  }
end

print(("\n### WebSocket over wss, loopback (%s)\n"):format(os.date("!%Y-%m-%d")))
print(("One client sends %d messages of 64 B, then %d of 1 MiB, to a server that counts them;"
  .. " timed from the open connection to the server's \"done\". Each pair runs in two processes"
  .. " of its own; no compression.\n"):format(small_n, large_n))
print(B.markdown({ "client -> server", "64 B msg/s", "64 B MB/s", "1 MiB msg/s", "1 MiB MB/s" }, rows))

-- The frame section: 1,000 chatting clients, with Lua's collector as it
-- comes, then with the collector run in the frame's idle time.
if not B.read_file("bench/out/benchclock.so") then B.build_benchclock() end
local seconds = quick and 5 or 15
local chat_rows = {}
for _, mode in ipairs { { "default", "Lua's collector as it comes" },
                        { "idle-gc", "collector stepped in the frame's idle time" } } do
  B.log("frame: 1000 node ws clients chatting with a tlspeer wss server for %d s (%s)", seconds, mode[2])
  local spid = B.spawn(("%s bench/websocket.lua chat-server %d tls %s"):format(q(LUA), seconds, mode[1]),
    log("chat-server"), "chat server")
  local port = tonumber(B.wait_line(log("chat-server"), "^READY (%d+)", 60, spid))
  local cpid = B.spawn(("sh -c %s"):format(q(("ulimit -Sn 8192 2>/dev/null || ulimit -Sn $(ulimit -Hn); exec env NODE_PATH=%s node bench/ws_bench_peer.js chat %d %s 1000 %d")
    :format(q(NPM), port, CA, seconds + 60))), log("chat-clients"), "chat clients")
  B.wait_exit(spid, seconds + 120)
  B.stop(cpid)
  local r = B.results(log("chat-server"))
  if r.max then
    local verdict
    if r.max <= 0.002 then verdict = "met"
    elseif r.cpu_max >= 0 and r.cpu_max <= 0.002 then verdict = "met by the work (wall: preempted)"
    else verdict = "missed" end
    chat_rows[#chat_rows + 1] = { mode[2], tostring(r.frames), B.ms(r.max), B.ms(r.p99), B.ms(r.p50),
      r.cpu_max >= 0 and B.ms(r.cpu_max) or "–", r.cpu_p99 >= 0 and B.ms(r.cpu_p99) or "–",
      ("%d (%d)"):format(r.over2ms, r.preempted), verdict, B.ms(r.ramp_max), tostring(r.relayed) }
  else
    B.log("chat server failed:\n%s", B.read_file(log("chat-server")) or "")
  end
end
if #chat_rows > 0 then
  print("### The longest call while 1,000 WebSocket clients chat\n")
  print(("A tlspeer wss server (`tls.ws_listen`, default budgets) calls `tls.poll()` once per"
    .. " 60 fps frame for %d s while 1,000 node ws clients (another process) each send 64 B a second;"
    .. " every message goes back to its sender and to 4 others. CPU: the calling thread's"
    .. " CPU time in the call (bench/benchclock.c); \"preempted\": calls over 2 ms during"
    .. " which the thread was switched out.\n"):format(seconds))
  print(B.markdown({ "collector", "frames", "longest call (ms)", "p99 (ms)", "p50 (ms)", "longest CPU (ms)",
                     "CPU p99 (ms)", "calls > 2 ms (preempted)", "target <= 2 ms",
                     "longest while 1,000 connect (ms)", "relayed" }, chat_rows))
end
B.stop_all()
