-- bench/scale.lua: the scale section of the benchmark (issue 12, "Measured").
--
-- N idle TLS connections (1,000 and 10,000) on a tls.listen echo server
-- (bench/scale_server.lua, one process, stepped by srv:run()), and the
-- same workload on a cqueues + luaossl server (bench/cqueues_server.lua),
-- side by side in the same run.  The clients are other processes
-- (bench/scale_clients.lua: one per 2,500 connections, each with its
-- descriptor limit raised).  Measured, with N idle connections on each:
--
--   echo latency   4 active connections per server, 32-byte round trips;
--                  the servers take turns by blocks of 50 rounds, so both
--                  see the same machine load.  Median and p99; target:
--                  tlspeer <= 1.2x cqueues.  Also the server's CPU time per
--                  echo (/proc, over the whole run), which preemption by
--                  other work on the machine hardly moves.
--   idle CPU       of each server process, from /proc/PID/stat over
--                  IDLE seconds with nothing happening; target < 1 %.
--   RSS per idle connection   (server RSS after N connected - before) / N,
--                  each after a full collection; target <= 24 KiB.
--   poll, nothing ready       ns per srv:poll() and tls.poll() (cqueues:
--                  cq:step(0)) at N, fastest and median batch of 1,000.
--   callgrind      instructions per srv:poll() with nothing ready at each N
--                  (bench/scale_callgrind.lua under valgrind): the same
--                  count at 1,000 and 10,000 shows no O(N) work per poll.
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/scale.lua [--quick] [--label NAME] [--out FILE.json] [--no-callgrind]
--
-- --quick: N = 500 and 2,000, 3 s idle, fewer rounds (under a minute).
local B = require "bench.benchlib"

local args = {}
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then args.quick = true
    elseif a == "--no-callgrind" then args.no_callgrind = true
    elseif a == "--label" then args.label = arg[i + 1]; i = i + 1
    elseif a == "--out" then args.out = arg[i + 1]; i = i + 1
    else error("unknown argument " .. a) end
    i = i + 1
  end
end
local QUICK = args.quick

local OUT = "bench/out/scale"
local LUA = os.getenv("LUA") or "lua5.4"
local NS = QUICK and { 500, 2000 } or { 1000, 10000 }
local IDLE_S = QUICK and 3 or 10
local ROUNDS = QUICK and 1000 or 2500
local ECHO_RUNS = QUICK and 1 or 3
local ACTIVE = 4
local PER_PROCESS = 2500
local NOFILE = 65536
local CG_POLLS = 2000
local q = B.sh_quote

local function raise(cmd)
  -- The descriptor limit of the bench's own processes (root may raise the
  -- hard limit too; else the hard limit as it is).
  return ("sh -c %s"):format(q(("ulimit -n %d 2>/dev/null || ulimit -Sn $(ulimit -Hn); exec %s")
    :format(NOFILE, cmd)))
end

local function nofile(pid)
  local s = B.read_file("/proc/" .. pid .. "/limits") or ""
  return tonumber(s:match("Max open files%s+(%d+)"))
end

local CERTS = "bench/out/frame-certs"
local CA, CRT, KEY = CERTS .. "/ca.crt", CERTS .. "/p256.crt", CERTS .. "/p256.key"

local function client(args_)
  return ("%s bench/scale_clients.lua %s"):format(LUA, args_)
end

-- A command to a server; its answer (a few tries: a connection may be
-- refused while the server's backlog is full).
local function command(srv, cmd)
  local out
  for _ = 1, 3 do
    out = B.capture(client(("cmd 127.0.0.1 %d %s %s 2>&1"):format(srv.port, q(CA), cmd)))
    out = out:match("^%s*(.-)%s*$")
    if not out:find("^lua") and not out:find("traceback") then return out end
    B.sleep(0.5)
  end
  error(("the %s server did not answer '%s': %s"):format(srv.id, cmd, out))
end

local function measure(n, tmp)
  local servers = {
    { id = "tlspeer", cmd = ("%s bench/scale_server.lua %s %s"):format(LUA, q(CRT), q(KEY)) },
    { id = "cqueues", cmd = ("%s bench/cqueues_server.lua %s %s"):format(LUA, q(CRT), q(KEY)) },
  }
  local ports = {}
  for i, s in ipairs(servers) do
    s.log = ("%s/%s-%d.log"):format(tmp, s.id, n)
    s.pid = B.spawn(raise(s.cmd), s.log, s.id .. " server")
    s.port = tonumber((B.wait_line(s.log, "^PORT (%d+)", 10, s.pid)))
    s.nofile = nofile(s.pid)
    if s.nofile and s.nofile < n + 64 then
      error(("the %s server may open %d descriptors, fewer than %d connections need: "
        .. "raise the hard limit (ulimit -Hn) of the shell that runs the bench"):format(s.id, s.nofile, n))
    end
    ports[i] = s.port
  end
  local csv = table.concat(ports, ",")
  -- Warm up both (a handshake, echoes, the allocator), then the baseline.
  B.capture(client(("echo 127.0.0.1 %s %s %d 50 32 2>&1"):format(csv, q(CA), ACTIVE)))
  for _, s in ipairs(servers) do
    s.lua0 = tonumber(command(s, "gc"):match("^ok (%S+)"))
    assert(s.lua0, "the " .. s.id .. " server does not answer")
    s.rss0 = B.rss(s.pid)
  end
  -- The idle connections.
  B.log("N = %d: connecting %d idle clients to each server", n, n)
  local t0 = B.clock()
  local idle = {}
  for _, s in ipairs(servers) do
    local left, k = n, 0
    while left > 0 do
      local m = math.min(PER_PROCESS, left)
      k = k + 1
      local log = ("%s/idle-%s-%d-%d.log"):format(tmp, s.id, n, k)
      local pid = B.spawn(raise(client(("idle 127.0.0.1 %d %s %d"):format(s.port, q(CA), m))), log,
                          "idle clients")
      idle[#idle + 1] = { pid = pid, log = log, m = m, server = s }
      left = left - m
    end
  end
  for _, c in ipairs(idle) do
    local m, reused = B.wait_line(c.log, "^READY (%d+) REUSED (%d+)", 600, c.pid)
    c.server.reused = (c.server.reused or 0) + tonumber(reused)
    c.nofile = nofile(c.pid)
  end
  local connect_s = B.clock() - t0
  B.log("N = %d: connected in %.1f s", n, connect_s)
  for _, s in ipairs(servers) do
    s.lua1 = tonumber(command(s, "gc"):match("^ok (%S+)"))
    s.rss1 = B.rss(s.pid)
    s.count = tonumber(command(s, "count"))
    if s.count then s.count = s.count - 1 end        -- the command's own connection
  end
  -- Idle CPU: nothing happens for IDLE_S seconds.
  for _, s in ipairs(servers) do s.cpu0 = B.cpu_seconds(s.pid) end
  local w0 = B.clock()
  B.sleep(IDLE_S)
  local w = B.clock() - w0
  for _, s in ipairs(servers) do s.idle_cpu = (B.cpu_seconds(s.pid) - s.cpu0) / w end
  -- Echo latency, the servers taking turns.  For a placement that does
  -- not change from run to run on this shared 2-core machine, the servers
  -- (all their threads) go to the last CPU and the echo client to the
  -- first; ECHO_RUNS runs, the median of each figure is reported.
  local pinned = B.exec("command -v taskset >/dev/null 2>&1")
  local ncpu = tonumber(B.capture("nproc")) or 1
  if pinned and ncpu > 1 then
    for _, s in ipairs(servers) do B.exec(("taskset -a -p -c %d %d >/dev/null 2>&1"):format(ncpu - 1, s.pid)) end
  else
    pinned = false
  end
  local runs = {}
  for run = 1, ECHO_RUNS do
    local go = ("%s/go-%d"):format(tmp, n)
    os.remove(go)
    local elog = ("%s/echo-%d-%d.log"):format(tmp, n, run)
    local ecmd = client(("echo 127.0.0.1 %s %s %d %d 32 50 %s"):format(csv, q(CA), ACTIVE, ROUNDS, q(go)))
    if pinned then ecmd = "taskset -c 0 " .. ecmd end
    local epid = B.spawn(ecmd, elog, "echo client")
    B.wait_line(elog, "^(CONNECTED)", 30, epid)
    local cpu0 = {}
    for i, s in ipairs(servers) do cpu0[i] = B.cpu_seconds(s.pid) end
    B.write_file(go, "go\n")
    assert(B.wait_exit(epid, 300), "the echo client did not finish")
    local r = B.results(elog)
    for i, s in ipairs(servers) do
      s.echo_runs = s.echo_runs or {}
      s.echo_runs[run] = {
        p50 = r["s" .. i .. "_rtt_p50_us"], p99 = r["s" .. i .. "_rtt_p99_us"],
        mean = r["s" .. i .. "_rtt_mean_us"], max = r["s" .. i .. "_rtt_max_us"],
        echoes = r["s" .. i .. "_echoes"],
        cpu_per_echo = (B.cpu_seconds(s.pid) - cpu0[i]) / (r["s" .. i .. "_echoes"] or 1),
      }
    end
  end
  local function median(list, key)
    local v = {}
    for i, x in ipairs(list) do v[i] = x[key] end
    table.sort(v)
    return v[(#v + 1) // 2]
  end
  for _, s in ipairs(servers) do
    s.p50, s.p99, s.mean, s.max = median(s.echo_runs, "p50"), median(s.echo_runs, "p99"),
      median(s.echo_runs, "mean"), median(s.echo_runs, "max")
    s.echoes, s.cpu_per_echo = s.echo_runs[1].echoes, median(s.echo_runs, "cpu_per_echo")
  end
  -- The cost of a poll with nothing ready.
  for _, s in ipairs(servers) do
    local a, b, c, d = command(s, "pollcost 20000"):match("^(%S+) (%S+) (%S+) (%S+)$")
    s.poll_min, s.poll_med, s.tlspoll_min, s.tlspoll_med = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  end
  for _, c in ipairs(idle) do B.stop(c.pid) end
  for _, s in ipairs(servers) do B.stop(s.pid) end
  local out = { n = n, connect_s = connect_s, idle_window_s = w, pinned = pinned,
                client_nofile = idle[1] and idle[1].nofile, client_processes = #idle }
  for _, s in ipairs(servers) do
    out[s.id] = {
      established = s.count, resumed = s.reused, nofile = s.nofile,
      echo_p50_us = s.p50, echo_p99_us = s.p99, echo_mean_us = s.mean, echo_max_us = s.max,
      echoes = s.echoes, server_cpu_per_echo_us = s.cpu_per_echo * 1e6, echo_runs = s.echo_runs,
      idle_cpu_percent = s.idle_cpu * 100,
      rss_before_kib = s.rss0 / 1024, rss_after_kib = s.rss1 / 1024,
      rss_per_conn_kib = (s.rss1 - s.rss0) / n / 1024,
      lua_heap_per_conn_kib = s.lua1 and s.lua0 and (s.lua1 - s.lua0) / n,
      poll_idle_ns_min = s.poll_min, poll_idle_ns_median = s.poll_med,
      tls_poll_idle_ns_min = s.tlspoll_min, tls_poll_idle_ns_median = s.tlspoll_med,
    }
  end
  return out
end

-- Instructions per srv:poll() with nothing ready, N connections open,
-- counted by callgrind (only inside bench_repeat_call).
local function callgrind(n, tmp)
  local file = ("%s/callgrind-%d.out"):format(tmp, n)
  os.remove(file)
  local cpath = "bench/out/?.so;" .. (os.getenv("LUA_CPATH") or ";;")
  local cmd = ("env LUA_CPATH=%s valgrind --tool=callgrind --collect-atstart=no "
    .. "--toggle-collect=bench_repeat_call --callgrind-out-file=%s %s bench/scale_callgrind.lua %d %d %s %s %s %s")
    :format(q(cpath), q(file), LUA, n, CG_POLLS, q(CRT), q(KEY), q(B.python()),
            q(("%s/tcpidle-%d.log"):format(tmp, n)))
  local t0 = B.clock()
  local log = B.capture(raise(cmd) .. " 2>&1")
  local s = B.read_file(file) or ""
  local total = tonumber(s:match("\nsummary:%s*(%d+)") or s:match("\ntotals:%s*(%d+)"))
  local opened = tonumber(log:match("OPEN (%d+)"))
  if not total then B.log("callgrind at N = %d gave no count:\n%s", n, log:sub(-800)) end
  return { n = n, open = opened, polls = CG_POLLS, instructions = total,
           per_poll = total and total / CG_POLLS, seconds = B.clock() - t0 }
end

local function main()
  B.exec("mkdir -p " .. q(OUT))
  B.make_certs(CERTS)
  if not B.read_file("bench/out/benchclock.so") then B.build_benchclock() end
  local ok = B.exec(LUA .. [[ -e 'require "cqueues"; require "openssl.ssl.context"' 2>/dev/null]])
  if not ok then
    B.log("installing lua-cqueues and lua-luaossl (Debian)")
    B.exec("apt-get install -y lua-cqueues lua-luaossl >/dev/null 2>&1 || "
      .. "sudo apt-get install -y lua-cqueues lua-luaossl >/dev/null 2>&1")
  end
  local t_start = B.clock()
  local results = { label = args.label or os.getenv("LUA_CPATH") or "default build", quick = QUICK or false,
                    date = os.date("!%Y-%m-%dT%H:%M:%SZ"), lua = LUA, runs = {}, callgrind = {} }
  results.mbedtls = B.capture(LUA .. [[ -e 'io.write(require("tlspeer").mbedtls_version)']])
  results.cqueues = B.capture(LUA .. [[ -e 'io.write(require("cqueues").VERSION)']])
  results.luaossl = B.capture(LUA .. [[ -e 'io.write(require("openssl").version(0) or "")' 2>/dev/null]])
  for _, n in ipairs(NS) do
    local ok2, r = xpcall(measure, debug.traceback, n, OUT)
    B.stop_all()
    if not ok2 then error(r, 0) end
    results.runs[#results.runs + 1] = r
  end
  if not args.no_callgrind and B.exec("command -v valgrind >/dev/null 2>&1") then
    for _, n in ipairs(NS) do
      B.log("callgrind, N = %d", n)
      results.callgrind[#results.callgrind + 1] = callgrind(n, OUT)
    end
  end
  results.total_s = B.clock() - t_start

  -- Tables.
  local rows = {}
  local function f1(x) return x and ("%.1f"):format(x) or "–" end
  local function f2(x) return x and ("%.2f"):format(x) or "–" end
  for _, r in ipairs(results.runs) do
    local a, b = r.tlspeer, r.cqueues
    for _, pair in ipairs { { "tlspeer", a }, { "cqueues + luaossl", b } } do
      local name, s = pair[1], pair[2]
      rows[#rows + 1] = { tostring(r.n), name, tostring(s.established), f1(s.echo_p50_us), f1(s.echo_p99_us),
        f1(s.server_cpu_per_echo_us), f2(s.idle_cpu_percent),
        ("%s (Lua %s)"):format(f1(s.rss_per_conn_kib), f1(s.lua_heap_per_conn_kib)),
        ("%s / %s"):format(f1(s.poll_idle_ns_min), f1(s.poll_idle_ns_median)),
        s.tls_poll_idle_ns_min and ("%s / %s"):format(f1(s.tls_poll_idle_ns_min), f1(s.tls_poll_idle_ns_median)) or "–" }
    end
    local function ratio(x, y) return (x and y and y > 0) and ("%.2f×"):format(x / y) or "–" end
    rows[#rows + 1] = { tostring(r.n), "**tlspeer / cqueues**", "", ratio(a.echo_p50_us, b.echo_p50_us),
      ratio(a.echo_p99_us, b.echo_p99_us), ratio(a.server_cpu_per_echo_us, b.server_cpu_per_echo_us),
      "", ratio(a.rss_per_conn_kib, b.rss_per_conn_kib), ratio(a.poll_idle_ns_median, b.poll_idle_ns_median), "" }
  end
  io.write(("\n### Scale section: %s (mbedtls %s; cqueues %s, luaossl on %s; %s)\n\n"):format(
    results.label, results.mbedtls, results.cqueues, results.luaossl, LUA))
  io.write(("N idle TLS connections per server (clients: %d processes of up to %d, descriptor limit %s); "
    .. "%d active connections x %d 32-byte echoes per server, servers taking turns (median of %d runs; "
    .. "servers pinned to the last CPU, the echo client to the first). Targets: echo "
    .. "p50 and p99 <= 1.2x cqueues, idle CPU < 1 %%, RSS <= 24 KiB per idle connection, no O(N) work per poll.\n\n")
    :format(results.runs[#results.runs].client_processes // 2, PER_PROCESS,
      tostring(results.runs[#results.runs].client_nofile), ACTIVE, ROUNDS, ECHO_RUNS))
  io.write(B.markdown({ "N", "server", "connected", "echo p50 µs", "echo p99 µs", "server CPU µs/echo",
    ("idle CPU %% (%gs)"):format(IDLE_S), "RSS KiB/conn (of it Lua heap)", "srv:poll() idle ns (min / median)",
    "tls.poll() idle ns" }, rows))
  if #results.callgrind > 0 then
    local cg = {}
    for _, c in ipairs(results.callgrind) do
      cg[#cg + 1] = { tostring(c.n), tostring(c.open or "?"), tostring(c.polls),
        c.per_poll and ("%.0f"):format(c.per_poll) or "–" }
    end
    io.write("\nInstructions per `srv:poll()` with nothing ready (callgrind, only inside the polls; the N "
      .. "connections are accepted TCP connections waiting for a ClientHello: each is registered in the "
      .. "event loop like an established one, without the cost of N handshakes under valgrind):\n\n")
    io.write(B.markdown({ "N", "connections open", "polls", "instructions per poll" }, cg))
  end
  local out = args.out or "bench/out/scale.json"
  B.write_file(out, B.json(results))
  B.log("wrote %s (%.0f s in all)", out, results.total_s)
end

local ok, err = xpcall(main, debug.traceback)
B.stop_all()
if not ok then
  io.stderr:write(err, "\n")
  os.exit(1)
end
