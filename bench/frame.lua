-- bench/frame.lua: the frame section of the benchmark (issue 12, "Measured").
--
-- A game calls tlspeer from its frame: every call must come back within a
-- small part of a 16.6 ms frame.  Each scenario below runs a 60 fps loop
-- (it sleeps to the next 1/60 s tick) that times every call into tlspeer
-- (each poll, send, close, connect, request... and the constructors), and
-- reports the longest single call, the p99 and the number of calls, and
-- whether the work finished with its bytes intact.  Targets: every call
-- <= 2 ms (max) and <= 0.5 ms (p99).
--
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/?.so;;' \
--     lua5.4 bench/frame.lua [--quick] [--label NAME] [--out FILE.json] [SCENARIO...]
--
-- SCENARIO names (default: all): hs_rsa4096_connect, hs_rsa4096_raw,
-- hs_rsa4096_http, hs_p384_connect, hs_p384_raw, hs_p384_http,
-- default_bundle_http, listen20_rsa4096, listen20_p384, dns_stall,
-- dns_never, download_http, download_connect, send_connect,
-- close_stalled_connect, close_stalled_raw.  A prefix selects several
-- ("hs_", "dns").  The dns scenarios need root: they run in a network
-- namespace the bench makes (and removes) with a stub DNS server.
--
-- Each scenario runs in a process of its own (fresh state: the first use
-- of anything is measured where a game would pay it), three times
-- (FRAME_RUNS; once with --quick): the row is the median run, by its
-- longest call, and lists every run's longest call.  Started as
--   lua5.4 bench/frame.lua --run SCENARIO --result FILE [--quick]
-- The peers are Python's ssl module (OpenSSL: bench/peer.py) and the stub
-- DNS server bench/dnsstub.py, started by the bench on loopback.
-- Worker threads: tlspeer's default (one per core); the poll budget too,
-- unless FRAME_POLL_BUDGET="seconds,bytes" asks for tls.set_poll_budget
-- (an experiment, named in the output).  Output: a Markdown
-- table on stdout, and FILE.json (default bench/out/frame.json).
local B = require "bench.benchlib"

local OUT = "bench/out/frame"
-- The peers (bench/peer.py) run niced and as batch processes: on a real
-- network they are other machines, so neither their CPU time nor their
-- waking up is the game thread's.  Niced, they get less of the processors;
-- batch (SCHED_BATCH, Linux), a peer woken by a byte the game thread just
-- sent does not preempt that thread in the middle of its call, as a peer
-- on another machine could not.
local PEER_NICE = "nice -n 10 chrt -b 0 "
local MiB = 1 << 20

local args = { scenarios = {} }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then args.quick = true
    elseif a == "--run" then args.run = arg[i + 1]; i = i + 1
    elseif a == "--result" then args.result = arg[i + 1]; i = i + 1
    elseif a == "--label" then args.label = arg[i + 1]; i = i + 1
    elseif a == "--out" then args.out = arg[i + 1]; i = i + 1
    elseif a:sub(1, 2) == "--" then error("unknown option " .. a)
    else args.scenarios[#args.scenarios + 1] = a end
    i = i + 1
  end
end
local QUICK = args.quick

-- Sizes: the issue's, or smaller in --quick.
local DOWNLOAD = QUICK and 4 * MiB or 20 * MiB
local UPLOAD = QUICK and 2 * MiB or 8 * MiB
local STALL_QUEUE = 8 * MiB
local HANDSHAKES = QUICK and 1 or 3          -- per row, one after the other
-- Runs of each scenario (FRAME_RUNS; the row is the median run's).
local RUNS = tonumber(os.getenv("FRAME_RUNS") or "") or (QUICK and 1 or 3)
local SMALL = 16 * 1024

local SCENARIOS = {
  { "hs_rsa4096_connect", "handshake, RSA-4096 server: tls.connect + GET 16 KiB" },
  { "hs_rsa4096_raw", "handshake, RSA-4096 server: StreamPeerTLS over StreamPeerTCP + GET" },
  { "hs_rsa4096_http", "handshake, RSA-4096 server: HTTPClient GET 16 KiB" },
  { "hs_p384_connect", "handshake, P-384 server: tls.connect + GET 16 KiB" },
  { "hs_p384_raw", "handshake, P-384 server: StreamPeerTLS over StreamPeerTCP + GET" },
  { "hs_p384_http", "handshake, P-384 server: HTTPClient GET 16 KiB" },
  { "default_bundle_http", "HTTPClient GET with the default CA bundle (first use loads it)" },
  { "listen20_rsa4096", "tls.listen (RSA-4096) receiving 20 simultaneous handshakes + echo" },
  { "listen20_p384", "tls.listen (P-384) receiving 20 simultaneous handshakes + echo" },
  { "dns_stall", "DNS answers after 3 s: StreamPeerTCP, tls.connect, HTTPClient to game.test" },
  { "dns_never", "DNS never answers (resolver gives up after 4 s), one connect abandoned" },
  { "download_http", "HTTPClient download, 1 read_response_body_chunk per frame" },
  { "download_connect", "tls.connect download (data_received), tls.poll() per frame" },
  { "send_connect", "tls.connect: one conn:send of the whole upload" },
  { "close_stalled_connect", "tls.connect: close() with 8 MiB queued to a peer that never reads" },
  { "close_stalled_raw", "StreamPeerTLS: put_partial_data until full, disconnect_from_stream()" },
}

------------------------------------------------------------ the child

-- Runs one scenario in this process; writes its record to args.result.
local function child(name)
  local tls = require "tlspeer"
  local core = require "tlspeer.core"
  local now = core._now
  local sleep = B.system and B.system.sleep or function(s) core._wait({}, {}, s) end
  local CERTS = assert(os.getenv("FRAME_CERTS"))
  local WWW = assert(os.getenv("FRAME_WWW"))
  local TMP = assert(os.getenv("FRAME_TMP"))
  local PY = os.getenv("FRAME_PYTHON") or "python3"
  local TCP, TLS, HTTP = tls.StreamPeerTCP, tls.StreamPeerTLS, tls.HTTPClient

  -- FRAME_POLL_BUDGET="seconds,bytes": tls.set_poll_budget for an
  -- experiment (the default budget otherwise).
  local budget = os.getenv("FRAME_POLL_BUDGET")
  if budget and budget ~= "" then
    local sec, bytes = budget:match("^([%d.e-]+),?(%d*)$")
    tls.set_poll_budget(tonumber(sec), tonumber(bytes))
  end
  local R = { poll_budget = budget, name = name, calls = {}, cpu = {}, by = {}, notes = {}, tasks = {}, preempted = 0,
              mbedtls = tls.mbedtls_version, workers = tls.get_worker_threads() }
  local durations, cpus, by = R.calls, R.cpu, R.by
  local function note(fmt, ...) R.notes[#R.notes + 1] = fmt:format(...) end

  -- The calling thread's CPU time and involuntary context switches
  -- (bench/benchclock.c), when built: a slow call that was preempted is
  -- told from one that worked that long.
  local okbc, bc = pcall(require, "benchclock")
  local tcpu = okbc and bc.thread_cpu or function() return 0 end
  local nivcsw = okbc and bc.nivcsw or function() return 0 end
  R.have_cpu = okbc

  -- T(what, f, ...): calls f(...), a call into tlspeer, and times it.
  local function T(what, f, ...)
    local c0, v0 = tcpu(), nivcsw()
    local t0 = now()
    local a, b, c, d = f(...)
    local dt = now() - t0
    local dc, dv = tcpu() - c0, nivcsw() - v0
    local i = #durations + 1
    durations[i], cpus[i] = dt, dc
    local s = by[what]
    if not s then
      s = { n = 0, max = 0, sum = 0, cpu_max = 0, preempted = 0 }
      by[what] = s
    end
    s.n = s.n + 1
    s.sum = s.sum + dt
    if dt > s.max then s.max = dt end
    if dc > s.cpu_max then s.cpu_max = dc end
    if dv > 0 then
      s.preempted = s.preempted + 1
      R.preempted = R.preempted + 1
    end
    return a, b, c, d
  end

  -- The game loop: step(elapsed) once per 1/60 s tick until it returns
  -- true (or `limit` seconds pass).
  local function frames(step, limit)
    local tick = 1 / 60
    local t0 = now()
    local nxt, n, late = t0, 0, 0
    while true do
      n = n + 1
      if step(now() - t0, n) then break end
      if now() - t0 > limit then
        R.timed_out = true
        note("gave up after %g s", limit)
        break
      end
      nxt = nxt + tick
      local left = nxt - now()
      if left > 0 then sleep(left) else late = late + 1; nxt = now() end
    end
    R.frames = (R.frames or 0) + n
    R.late_frames = (R.late_frames or 0) + late
    return now() - t0
  end

  -- The peers stand for other machines: they run at a lower priority and
  -- as batch processes (PEER_NICE), so that the game thread's wall time is
  -- not their work.
  local function start_peer(mode, ...)
    local log = TMP .. "/peer-" .. mode .. ".log"
    local cmd = PEER_NICE .. B.sh_quote(PY) .. " bench/peer.py " .. mode
    for _, a in ipairs { ... } do cmd = cmd .. " " .. B.sh_quote(a) end
    local pid = B.spawn(cmd, log, "peer " .. mode)
    return tonumber((B.wait_line(log, "^PORT (%d+)", 15, pid))), pid, log
  end

  local function www(cert)
    return (start_peer("www", CERTS .. "/" .. cert .. ".crt", CERTS .. "/" .. cert .. ".key", WWW))
  end

  local function file(name) return assert(B.read_file(WWW .. "/" .. name)) end

  local function get_request(host, path)
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"):format(path, host)
  end

  -- An HTTP/1.1 response with Content-Length, all of it in buf: its body.
  local function http_body(buf)
    local he = buf:find("\r\n\r\n", 1, true)
    if not he then return nil end
    local cl = tonumber(buf:sub(1, he):lower():match("content%-length:%s*(%d+)"))
    if not cl or #buf < he + 3 + cl then return nil end
    return buf:sub(he + 4, he + 3 + cl)
  end

  ---------------------------------------------------------- tasks
  -- A task is one piece of work a game would do, stepped once per frame
  -- (task.step() -> true when it has ended); task.ok tells whether it did
  -- its work with the bytes intact.

  -- tls.connect, then a GET (the response read from data_received).
  -- The frame's tls.poll() steps it.
  local function connect_task(o)
    local task = { name = "tls.connect " .. o.host .. o.path }
    local t0 = now()
    local c = T("tls.connect", tls.connect, { host = o.host, port = o.port, trusted = o.trusted })
    local parts, got, est, sent = {}, 0, false, false
    T("client:on", c.on, c, "connection_established", function() est = true end)
    T("client:on", c.on, c, "data_received", function(data)
      parts[#parts + 1] = data
      got = got + #data
    end)
    T("client:on", c.on, c, "connection_failed", function(m, code)
      task.error = ("%s (%s)"):format(tostring(m), tostring(code))
    end)
    T("client:on", c.on, c, "disconnected", function() task.disconnected = true end)
    function task.step()
      if task.error then task.t = now() - t0; return true end
      if est and not sent then
        sent = true
        task.hs_t = now() - t0
        local peer = T("client:get_peer", c.get_peer, c)
        task.version = T("tls:get_tls_version", peer.get_tls_version, peer)
        task.cipher = T("tls:get_cipher_suite", peer.get_cipher_suite, peer)
        T("client:send", c.send, c, get_request(o.host, o.path))
      end
      if sent and got > 0 then
        local body = http_body(table.concat(parts))
        if body then
          task.ok = body == o.expect
          task.bytes = #body
          T("client:close", c.close, c)
          task.t = now() - t0
          return true
        end
      end
      if task.disconnected then
        task.error = "disconnected before the whole response"
        task.t = now() - t0
        return true
      end
    end
    return task
  end

  -- StreamPeerTCP, then StreamPeerTLS over it, each polled once per frame;
  -- a GET with put_partial_data, the response with get_partial_data.
  local function raw_task(o)
    local task = { name = "StreamPeerTLS " .. o.host .. o.path }
    local t0 = now()
    local tcp = T("StreamPeerTCP.new", TCP.new)
    local ok, msg = T("tcp:connect_to_host", tcp.connect_to_host, tcp, o.host, o.port)
    local peer, state, parts, from = nil, "tcp", {}, 1
    local req = get_request(o.host, o.path)
    if not ok then task.error = msg; state = "failed" end
    function task.step()
      if state == "failed" then task.t = now() - t0; return true end
      if state == "tcp" then
        T("tcp:poll", tcp.poll, tcp)
        local st = T("tcp:get_status", tcp.get_status, tcp)
        if st == TCP.STATUS_CONNECTED then
          peer = T("StreamPeerTLS.new", TLS.new)
          local okc, m = T("tls:connect_to_stream", peer.connect_to_stream, peer, tcp, o.host, o.opts)
          if not okc then task.error = m; state = "failed"; return false end
          state = "hs"
        elseif st ~= TCP.STATUS_CONNECTING then
          task.error = "TCP: " .. tostring(T("tcp:get_error", tcp.get_error, tcp))
          state = "failed"
        end
        return false
      end
      T("tls:poll", peer.poll, peer)
      if state == "hs" then
        local st = T("tls:get_status", peer.get_status, peer)
        if st == TLS.STATUS_CONNECTED then
          task.hs_t = now() - t0
          task.version = T("tls:get_tls_version", peer.get_tls_version, peer)
          task.cipher = T("tls:get_cipher_suite", peer.get_cipher_suite, peer)
          state = "send"
        elseif st ~= TLS.STATUS_HANDSHAKING then
          task.error = "TLS: " .. tostring(T("tls:get_error", peer.get_error, peer))
          state = "failed"
          return false
        end
      end
      if state == "send" then
        local n, m = T("tls:put_partial_data", peer.put_partial_data, peer, req, from)
        if not n then task.error = m; state = "failed"; return false end
        from = from + n
        if from > #req then state = "recv" end
      end
      if state == "recv" then
        local data, m = T("tls:get_partial_data", peer.get_partial_data, peer, 65536)
        if data == nil then task.error = m; state = "failed"; return false end
        if #data > 0 then
          parts[#parts + 1] = data
          local body = http_body(table.concat(parts))
          if body then
            task.ok = body == o.expect
            task.bytes = #body
            T("tls:disconnect_from_stream", peer.disconnect_from_stream, peer)
            task.t = now() - t0
            return true
          end
        end
      end
    end
    return task
  end

  -- HTTPClient: connect_to_host, poll() each frame, request(), and
  -- read_response_body_chunk() (o.reads per frame, 1 by default).
  local function http_task(o)
    local task = { name = "HTTPClient " .. o.host .. o.path }
    local t0 = now()
    local h = T("HTTPClient.new", HTTP.new)
    local ok, msg = T("http:connect_to_host", h.connect_to_host, h, "https://" .. o.host, o.port, o.opts)
    local parts, requested, got = {}, false, 0
    if not ok then task.error = msg end
    function task.step()
      if task.error then task.t = now() - t0; return true end
      T("http:poll", h.poll, h)
      local st = T("http:get_status", h.get_status, h)
      if st == HTTP.STATUS_CONNECTED and not requested then
        task.hs_t = now() - t0
        local okr, m = T("http:request", h.request, h, HTTP.METHOD_GET, o.path, {})
        if not okr then task.error = m end
        requested = true
        return false
      elseif st == HTTP.STATUS_BODY then
        for _ = 1, o.reads or 1 do
          local chunk = T("http:read_response_body_chunk", h.read_response_body_chunk, h)
          if #chunk == 0 then break end
          parts[#parts + 1] = chunk
          got = got + #chunk
        end
        st = T("http:get_status", h.get_status, h)
      end
      if requested and (st == HTTP.STATUS_CONNECTED or st == HTTP.STATUS_DISCONNECTED) then
        local body = table.concat(parts)
        task.code = T("http:get_response_code", h.get_response_code, h)
        task.ok = body == o.expect and task.code == 200
        task.bytes = #body
        T("http:close", h.close, h)
        task.t = now() - t0
        return true
      end
      if st ~= HTTP.STATUS_RESOLVING and st ~= HTTP.STATUS_CONNECTING and st ~= HTTP.STATUS_CONNECTED
          and st ~= HTTP.STATUS_REQUESTING and st ~= HTTP.STATUS_BODY then
        local m, code = T("http:get_error", h.get_error, h)
        task.error = ("status %d: %s (%s)"):format(st, tostring(m), tostring(code))
        task.t = now() - t0
        return true
      end
    end
    return task
  end

  -- A plain StreamPeerTCP connect (polled), then disconnect_from_host.
  local function tcp_task(o)
    local task = { name = "StreamPeerTCP " .. o.host }
    local t0 = now()
    local tcp = T("StreamPeerTCP.new", TCP.new)
    local ok, msg = T("tcp:connect_to_host", tcp.connect_to_host, tcp, o.host, o.port)
    if not ok then task.error = msg end
    function task.step(elapsed)
      if task.error then task.t = now() - t0; return true end
      if o.abandon_at and elapsed >= o.abandon_at then
        T("tcp:disconnect_from_host", tcp.disconnect_from_host, tcp)
        task.ok = true
        task.abandoned = true
        task.t = now() - t0
        return true
      end
      T("tcp:poll", tcp.poll, tcp)
      local st = T("tcp:get_status", tcp.get_status, tcp)
      if st == TCP.STATUS_CONNECTED then
        task.ok = true
        task.hs_t = now() - t0
        T("tcp:disconnect_from_host", tcp.disconnect_from_host, tcp)
        task.t = now() - t0
        return true
      elseif st ~= TCP.STATUS_CONNECTING then
        local m, code = T("tcp:get_error", tcp.get_error, tcp)
        task.error = ("%s (%s)"):format(tostring(m), tostring(code))
        task.t = now() - t0
        return true
      end
    end
    return task
  end

  -- Runs tasks made by make(i), i = 1..k, one after the other.
  local function sequence(make, k, poll_tls, limit)
    local cur, i = nil, 0
    R.wall = frames(function(elapsed)
      if poll_tls then T("tls.poll", tls.poll) end
      if not cur then
        i = i + 1
        cur = make(i)
      end
      if cur.step(elapsed) then
        R.tasks[#R.tasks + 1] = cur
        cur = nil
        if i == k then return true end
      end
    end, limit)
    if cur then R.tasks[#R.tasks + 1] = cur end
  end

  -- Runs tasks all at once, from the first frame.
  local function together(makers, poll_tls, limit)
    local live = {}
    R.wall = frames(function(elapsed, n)
      if n == 1 then
        for i, make in ipairs(makers) do live[i] = make() end
      end
      if poll_tls then T("tls.poll", tls.poll) end
      local left = 0
      for i, task in pairs(live) do
        if task.step(elapsed) then
          task.at = elapsed
          R.tasks[#R.tasks + 1] = task
          live[i] = nil
        else
          left = left + 1
        end
      end
      return left == 0
    end, limit)
    for _, task in pairs(live) do R.tasks[#R.tasks + 1] = task end
  end

  local function ca_options()
    local ca = T("X509Certificate.new", tls.X509Certificate.new)
    assert(T("X509Certificate:load", ca.load, ca, CERTS .. "/ca.crt"))
    return (T("TLSOptions.client", tls.TLSOptions.client, ca))
  end

  local function all_ok()
    if #R.tasks == 0 then return false end
    for _, t in ipairs(R.tasks) do if not t.ok then return false end end
    return true
  end

  ---------------------------------------------------------- scenarios
  local S = {}

  for _, cert in ipairs { "rsa4096", "p384" } do
    S["hs_" .. cert .. "_connect"] = function()
      local port, small = www(cert), file("small")
      sequence(function()
        return connect_task { host = "127.0.0.1", port = port, path = "/small", expect = small,
                              trusted = CERTS .. "/ca.crt" }
      end, HANDSHAKES, true, 60)
      R.ok = all_ok()
    end
    S["hs_" .. cert .. "_raw"] = function()
      local port, small = www(cert), file("small")
      local opts
      sequence(function()
        opts = opts or ca_options()
        return raw_task { host = "127.0.0.1", port = port, path = "/small", expect = small, opts = opts }
      end, HANDSHAKES, false, 60)
      R.ok = all_ok()
    end
    S["hs_" .. cert .. "_http"] = function()
      local port, small = www(cert), file("small")
      local opts
      sequence(function()
        opts = opts or ca_options()
        return http_task { host = "127.0.0.1", port = port, path = "/small", expect = small, opts = opts }
      end, HANDSHAKES, false, 60)
      R.ok = all_ok()
    end
  end

  -- HTTPClient without TLSOptions: the default CA bundle (here
  -- SSL_CERT_FILE: the system's bundle plus the bench's CA) is loaded by
  -- the first call that needs it.
  S.default_bundle_http = function()
    local port, small = www("p384"), file("small")
    sequence(function()
      return http_task { host = "127.0.0.1", port = port, path = "/small", expect = small }
    end, HANDSHAKES, false, 60)
    R.ok = all_ok()
  end

  for _, cert in ipairs { "rsa4096", "p384" } do
    S["listen20_" .. cert] = function()
      local srv = T("tls.listen", tls.listen, { port = 0, bind = "127.0.0.1",
        certificate = CERTS .. "/" .. cert .. ".crt", key = CERTS .. "/" .. cert .. ".key" })
      local est, disc, failed, echoed = 0, 0, 0, 0
      T("server:on", srv.on, srv, "connection_established", function() est = est + 1 end)
      T("server:on", srv.on, srv, "data_received", function(conn, data)
        echoed = echoed + #data
        conn:send(data)
      end)
      T("server:on", srv.on, srv, "disconnected", function() disc = disc + 1 end)
      T("server:on", srv.on, srv, "connection_failed", function(_, m)
        failed = failed + 1
        note("connection_failed: %s", tostring(m))
      end)
      local port = T("server:get_local_port", srv.get_local_port, srv)
      local log = TMP .. "/clients.log"
      local pid = B.spawn(("%s%s bench/peer.py clients 20 127.0.0.1 %d %s 1024"):format(
        PEER_NICE, B.sh_quote(PY), port, B.sh_quote(CERTS .. "/ca.crt")), log, "clients")
      local ended_at
      R.wall = frames(function(elapsed)
        T("tls.poll", tls.poll)
        if not ended_at and not B.alive(pid) then ended_at = elapsed end
        return ended_at and (disc + failed >= 20 or elapsed - ended_at > 2)
      end, 60)
      T("server:stop", srv.stop, srv)
      B.stop(pid)
      local r = B.results(log)
      R.tasks[1] = { name = "20 clients (Python ssl)", ok = r.ok == 20 and est == 20,
                     bytes = echoed, t = r.wall_s, established = est, disconnected = disc,
                     failed = failed, clients_ok = r.ok, client_hs_max_s = r.hs_max_s }
      R.ok = R.tasks[1].ok
    end
  end

  -- Inside the network namespace, with the stub DNS server running.
  local function dns(never)
    local port, small = www("p256"), file("small")
    local opts = ca_options()
    local makers = {
      function() return tcp_task { host = "game.test", port = port } end,
      function()
        return connect_task { host = "game.test", port = port, path = "/small", expect = small,
                              trusted = CERTS .. "/ca.crt" }
      end,
      function()
        return http_task { host = "game.test", port = port, path = "/small", expect = small, opts = opts }
      end,
    }
    if never then
      makers[#makers + 1] = function()
        return tcp_task { host = "game.test", port = port, abandon_at = 0.5 }
      end
    end
    together(makers, true, 20)
    R.ok = #R.tasks == #makers
    for _, t in ipairs(R.tasks) do
      if never then
        -- Each lookup fails (or was abandoned), and says so.
        t.ok = t.abandoned or (t.error ~= nil and t.error:find("resolve") ~= nil)
      else
        -- Each connection completes, after the answer (3 s).
        t.ok = t.ok and t.t >= 2.9
      end
      R.ok = R.ok and t.ok
    end
    if never then
      -- One more lookup in flight when the script ends: how long the
      -- process then takes to exit (lua_close joins the DNS workers).
      local tcp = T("StreamPeerTCP.new", TCP.new)
      T("tcp:connect_to_host", tcp.connect_to_host, tcp, "game.test", port)
      R.exit_with_lookup = true
    end
  end
  S.dns_stall = function() dns(false) end
  S.dns_never = function() dns(true) end

  S.download_http = function()
    local port = www("p256")
    local name = QUICK and "blob4" or "blob20"
    local blob = file(name)
    sequence(function()
      return http_task { host = "127.0.0.1", port = port, path = "/" .. name, expect = blob,
                         opts = ca_options() }
    end, 1, false, 120)
    R.ok = all_ok()
  end

  -- tls.connect to a peer that sends the length (8 bytes), then the data.
  S.download_connect = function()
    local name = QUICK and "blob4" or "blob20"
    local blob = file(name)
    local port = start_peer("source", CERTS .. "/p256.crt", CERTS .. "/p256.key", WWW .. "/" .. name)
    sequence(function()
      local task = { name = "tls.connect download" }
      local t0 = now()
      local c = T("tls.connect", tls.connect, { host = "127.0.0.1", port = port,
                                                 trusted = CERTS .. "/ca.crt" })
      local parts, got = {}, 0
      T("client:on", c.on, c, "data_received", function(data)
        parts[#parts + 1] = data
        got = got + #data
      end)
      T("client:on", c.on, c, "connection_failed", function(m) task.error = tostring(m) end)
      function task.step()
        if task.error then return true end
        if got >= 8 + #blob then
          local all = table.concat(parts)
          task.ok = all:sub(9) == blob and string.unpack(">I8", all) == #blob
          task.bytes = #all - 8
          T("client:close", c.close, c)
          task.t = now() - t0
          return true
        end
      end
      return task
    end, 1, true, 120)
    R.ok = all_ok()
  end

  -- tls.connect to a peer that reads a length and the data and answers
  -- their SHA-256: one conn:send of the length, one of the whole upload.
  S.send_connect = function()
    local blob = file("blob20"):sub(1, UPLOAD)
    local want = assert(os.getenv("FRAME_UPLOAD_SHA"))
    local port = start_peer("sink", CERTS .. "/p256.crt", CERTS .. "/p256.key")
    sequence(function()
      local task = { name = ("tls.connect upload %d bytes"):format(#blob) }
      local t0 = now()
      local c = T("tls.connect", tls.connect, { host = "127.0.0.1", port = port,
                                                 trusted = CERTS .. "/ca.crt" })
      local est, sent, answer = false, false, ""
      T("client:on", c.on, c, "connection_established", function() est = true end)
      T("client:on", c.on, c, "data_received", function(data) answer = answer .. data end)
      T("client:on", c.on, c, "connection_failed", function(m) task.error = tostring(m) end)
      function task.step()
        if task.error then return true end
        if est and not sent then
          sent = true
          T("client:send", c.send, c, string.pack(">I8", #blob))
          T("client:send", c.send, c, blob)
        end
        if answer:find("\n") then
          task.ok = answer:match("^(%x+)") == want
          task.bytes = #blob
          T("client:close", c.close, c)
          task.t = now() - t0
          return true
        end
      end
      return task
    end, 1, true, 120)
    R.ok = all_ok()
  end

  -- close() with 8 MiB queued to a peer that handshakes, then never reads.
  S.close_stalled_connect = function()
    local blob = file("blob20"):sub(1, STALL_QUEUE)
    local port = start_peer("stall", CERTS .. "/p256.crt", CERTS .. "/p256.key")
    sequence(function()
      local task = { name = "tls.connect close() to a stalled peer" }
      local t0 = now()
      local c = T("tls.connect", tls.connect, { host = "127.0.0.1", port = port,
                                                 trusted = CERTS .. "/ca.crt" })
      local est, sent_at, closed_at, gone_at
      T("client:on", c.on, c, "connection_established", function() est = true end)
      T("client:on", c.on, c, "connection_failed", function(m) task.error = tostring(m) end)
      T("client:on", c.on, c, "disconnected", function() gone_at = now() end)
      function task.step()
        if task.error then return true end
        if est and not sent_at then
          T("client:send", c.send, c, blob)
          sent_at = now()
        elseif sent_at and not closed_at and now() - sent_at > 0.5 then
          task.pending_at_close = T("client:get_pending_bytes", c.get_pending_bytes, c)
          T("client:close", c.close, c)
          closed_at = now()
        elseif gone_at and now() - gone_at > 0.5 then
          task.ok = true
          task.close_to_disconnected = gone_at - closed_at
          task.t = now() - t0
          return true
        elseif closed_at and now() - closed_at > 10 then
          task.error = "no 'disconnected' within 10 s of close()"
          return true
        end
      end
      return task
    end, 1, true, 60)
    R.ok = all_ok()
  end

  S.close_stalled_raw = function()
    local blob = file("blob20"):sub(1, STALL_QUEUE)
    local port = start_peer("stall", CERTS .. "/p256.crt", CERTS .. "/p256.key")
    local opts = ca_options()
    sequence(function()
      local task = { name = "StreamPeerTLS disconnect_from_stream() to a stalled peer" }
      local t0 = now()
      local tcp = T("StreamPeerTCP.new", TCP.new)
      T("tcp:connect_to_host", tcp.connect_to_host, tcp, "127.0.0.1", port)
      local peer, state, from, full_since = nil, "tcp", 1, nil
      function task.step()
        if state == "tcp" then
          T("tcp:poll", tcp.poll, tcp)
          if T("tcp:get_status", tcp.get_status, tcp) == TCP.STATUS_CONNECTED then
            peer = T("StreamPeerTLS.new", TLS.new)
            T("tls:connect_to_stream", peer.connect_to_stream, peer, tcp, "127.0.0.1", opts)
            state = "hs"
          end
          return false
        end
        T("tls:poll", peer.poll, peer)
        local st = T("tls:get_status", peer.get_status, peer)
        if state == "hs" then
          if st == TLS.STATUS_CONNECTED then state = "send"
          elseif st ~= TLS.STATUS_HANDSHAKING then
            task.error = tostring(T("tls:get_error", peer.get_error, peer))
            return true
          end
          return false
        end
        if state == "send" then
          -- As much as the peer takes, at most 8 writes a frame.
          local wrote = 0
          for _ = 1, 8 do
            if from > #blob then break end
            local n, m = T("tls:put_partial_data", peer.put_partial_data, peer, blob, from)
            if not n then task.error = m; return true end
            if n == 0 then break end
            from = from + n
            wrote = wrote + n
          end
          if wrote == 0 then full_since = full_since or now() else full_since = nil end
          if full_since and now() - full_since > 0.5 then
            task.sent_before_close = from - 1
            T("tls:disconnect_from_stream", peer.disconnect_from_stream, peer)
            task.status_after = T("tls:get_status", peer.get_status, peer)
            task.ok = task.status_after == TLS.STATUS_DISCONNECTED
            task.t = now() - t0
            return true
          end
        end
      end
      return task
    end, 1, false, 60)
    R.ok = all_ok()
  end

  local run = assert(S[name], "unknown scenario " .. name)
  local ok, err = xpcall(run, debug.traceback)
  if not ok then
    R.ok = false
    R.error = err
    io.stderr:write(err, "\n")
  end
  B.stop_all()
  -- Strip what the parent does not need from the tasks.
  for _, t in ipairs(R.tasks) do t.step = nil end
  R.exit_started = B.clock()
  B.write_file(args.result, "return " .. B.serialize(R))
  -- A lookup may still be in flight (dns_never): the parent times the exit.
end

------------------------------------------------------------ the parent

local LUA = os.getenv("LUA") or "lua5.4"
local q = B.sh_quote

-- Certificates (openssl: the bench's own CA and three server leaves for
-- localhost, game.test and 127.0.0.1), the files the peers serve, and a
-- CA bundle of the system's roots plus the bench's CA.
local function prepare()
  local certs, www = "bench/out/frame-certs", OUT .. "/www"
  B.exec(("mkdir -p %s %s"):format(q(certs), q(www)))
  B.make_certs(certs)
  local sys = B.read_file("/etc/ssl/certs/ca-certificates.crt") or ""
  B.write_file(certs .. "/bundle.pem", sys .. B.read_file(certs .. "/ca.crt"))
  if not B.read_file(www .. "/small") then
    assert(B.exec(("head -c %d /dev/urandom > %s"):format(SMALL, q(www .. "/small"))))
  end
  local f = io.open(www .. "/blob20", "rb")
  local size = f and f:seek("end") or 0
  if f then f:close() end
  if size ~= 20 * MiB then
    assert(B.exec(("head -c %d /dev/urandom > %s && head -c %d %s > %s"):format(
      20 * MiB, q(www .. "/blob20"), 4 * MiB, q(www .. "/blob20"), q(www .. "/blob4"))))
  end
  local sha = B.capture(("head -c %d %s | sha256sum"):format(UPLOAD, q(www .. "/blob20"))):match("^(%x+)")
  return certs, www, sha
end

-- A network namespace with loopback up, a resolv.conf that points at the
-- stub DNS server running in it.  Returns ns, and the function that
-- removes it all.
local function make_namespace(never, tmp, python)
  local ns = ("tpbench%d"):format(math.random(1e6))
  assert(B.exec("ip netns add " .. ns), "ip netns add failed (the dns scenarios need root)")
  local stub
  local function cleanup()
    if stub then B.stop(stub) end
    -- Nothing of ours may stay behind in it.
    local pids = B.capture("ip netns pids " .. ns .. " 2>/dev/null")
    for pid in pids:gmatch("%d+") do B.stop(tonumber(pid)) end
    B.exec("ip netns del " .. ns)
    B.exec("rm -rf /etc/netns/" .. ns)
  end
  local ok, err = pcall(function()
    assert(B.exec(("ip netns exec %s ip link set lo up"):format(ns)))
    B.exec("mkdir -p /etc/netns/" .. ns)
    -- The stall answers at 3 s, before the resolver's 5 s timeout; when
    -- nothing answers, the resolver gives up after 4 s.
    B.write_file("/etc/netns/" .. ns .. "/resolv.conf",
      ("nameserver 127.0.0.1\noptions timeout:%d attempts:1\n"):format(never and 4 or 5))
    local log = tmp .. "/dnsstub.log"
    stub = B.spawn(("ip netns exec %s %s bench/dnsstub.py --delay 3 %s --log %s"):format(
      ns, q(python), never and "--never" or "", q(tmp .. "/dnsstub-queries.log")), log, "dnsstub")
    B.wait_line(log, "^(READY)", 10, stub)
  end)
  if not ok then
    cleanup()
    error(err, 0)
  end
  return ns, cleanup
end

local function summarize(R, title)
  local st = B.stats(R.calls)
  local names = {}
  for k, v in pairs(R.by) do
    names[#names + 1] = { name = k, n = v.n, max = v.max, mean = v.sum / v.n, cpu_max = v.cpu_max,
                          preempted = v.preempted }
  end
  table.sort(names, function(a, b) return a.max > b.max end)
  R.stats, R.cpu_stats, R.slowest, R.title = st, B.stats(R.cpu or {}), names, title
  R.miss = (st.max or 0) > 0.002 or (st.p99 or 0) > 0.0005
  -- A miss by the work itself (thread CPU time over the targets), or only
  -- by wall time (the thread was preempted during the call).
  local cs = R.cpu_stats
  R.cpu_miss = R.have_cpu and ((cs.max or 0) > 0.002 or (cs.p99 or 0) > 0.0005)
  return R
end

local function task_note(t)
  local bits = {}
  if t.version then bits[#bits + 1] = t.version end
  if t.hs_t then bits[#bits + 1] = ("connected %.2f s"):format(t.hs_t) end
  if t.t then bits[#bits + 1] = ("done %.2f s"):format(t.t) end
  if t.pending_at_close then bits[#bits + 1] = ("%.1f MiB queued at close"):format(t.pending_at_close / MiB) end
  if t.close_to_disconnected then bits[#bits + 1] = ("disconnected %.1f s after close()"):format(t.close_to_disconnected) end
  if t.sent_before_close then bits[#bits + 1] = ("%.2f MiB taken before the peer stalled"):format(t.sent_before_close / MiB) end
  if t.client_hs_max_s then bits[#bits + 1] = ("%d/20 echoed, slowest client handshake %.2f s"):format(t.clients_ok or 0, t.client_hs_max_s) end
  if t.abandoned then bits[#bits + 1] = "abandoned at 0.5 s" end
  if t.error then bits[#bits + 1] = "error: " .. t.error:gsub("|", "/") end
  return t.name .. ": " .. table.concat(bits, ", ")
end

local function parent()
  local want = args.scenarios
  local selected = {}
  for _, s in ipairs(SCENARIOS) do
    local take = #want == 0
    for _, w in ipairs(want) do if s[1]:sub(1, #w) == w then take = true end end
    if take then selected[#selected + 1] = s end
  end
  assert(#selected > 0, "no scenario matches")
  math.randomseed(os.time())
  local certs, www, sha = prepare()
  -- The thread-CPU clock for the scenario processes (optional).
  if not B.read_file("bench/out/benchclock.so") then B.build_benchclock() end
  local cpath = "bench/out/?.so;" .. (os.getenv("LUA_CPATH") or ";;")
  local python = B.python()
  local label = args.label or os.getenv("LUA_CPATH") or "default build"
  local results = {}
  local t_start = B.clock()
  -- One run of scenario s: its record, or { skipped = why }.
  local function run_once(s)
    local name, title = s[1], s[2]
    local tmp = OUT .. "/" .. name
    B.exec(("rm -rf %s && mkdir -p %s"):format(q(tmp), q(tmp)))
    local result = tmp .. "/result.lua"
    local env = ("env FRAME_POLL_BUDGET=%s LUA_CPATH=%s FRAME_CERTS=%s FRAME_WWW=%s FRAME_TMP=%s FRAME_PYTHON=%s FRAME_UPLOAD_SHA=%s"):format(
      q(os.getenv("FRAME_POLL_BUDGET") or ""), q(cpath), q(certs), q(www), q(tmp), q(python), sha)
    if name == "default_bundle_http" then env = env .. " SSL_CERT_FILE=" .. q(certs .. "/bundle.pem") end
    local cmd = ("%s %s bench/frame.lua --run %s --result %s%s 2>%s"):format(
      env, LUA, name, q(result), QUICK and " --quick" or "", q(tmp .. "/stderr.log"))
    local cleanup
    if name:sub(1, 4) == "dns_" then
      local ok, ns, c = pcall(make_namespace, name == "dns_never", tmp, python)
      if not ok then
        B.log("%s skipped: %s", name, ns)
        return { name = name, title = title, skipped = tostring(ns) }
      end
      cmd, cleanup = ("ip netns exec %s %s"):format(ns, cmd), c
    end
    B.log("%s ...", name)
    local t0 = B.clock()
    local ok, err = pcall(B.exec, cmd)
    local t_end = B.clock()
    if cleanup then cleanup() end
    if not ok then error(err) end
    local fn = loadfile(result)
    if not fn then
      B.log("%s: no result (see %s)", name, tmp .. "/stderr.log")
      return { name = name, title = title, skipped = "the scenario process failed: "
        .. (B.read_file(tmp .. "/stderr.log") or ""):sub(1, 300) }
    end
    local R = summarize(fn(), title)
    R.process_s = t_end - t0
    R.exit_s = R.exit_started and (t_end - R.exit_started) or nil
    B.log("%s: %d calls, max %.3f ms, p99 %.3f ms, %s", name, R.stats.n or 0,
      (R.stats.max or 0) * 1000, (R.stats.p99 or 0) * 1000, R.ok and "ok" or "NOT OK")
    return R
  end
  -- Each scenario runs RUNS times, in processes of their own; the row is
  -- the run with the median longest call (wall), as the other sections
  -- report medians of their runs.  Every run's longest call is listed, and
  -- the work must be done with bytes intact in every run.
  for _, s in ipairs(selected) do
    local runs = {}
    for i = 1, RUNS do
      local R = run_once(s)
      runs[i] = R
      if R.skipped then break end
    end
    local failed
    for _, R in ipairs(runs) do if R.skipped or not R.ok then failed = failed or R end end
    if failed or #runs == 1 then
      results[#results + 1] = failed or runs[1]
    else
      local order = {}
      for i, R in ipairs(runs) do order[i] = R end
      table.sort(order, function(a, b) return a.stats.max < b.stats.max end)
      local R = order[(#order + 1) // 2]
      local maxima = {}
      for i, r in ipairs(runs) do maxima[i] = B.ms(r.stats.max) end
      R.runs_max_ms = {}
      for i, r in ipairs(runs) do R.runs_max_ms[i] = r.stats.max * 1000 end
      table.insert(R.notes, 1, ("%d runs, longest call in each: %s ms (the median run is shown)")
        :format(#runs, table.concat(maxima, " / ")))
      results[#results + 1] = R
    end
  end

  -- The table.
  local rows = {}
  for _, R in ipairs(results) do
    if R.skipped then
      rows[#rows + 1] = { R.name, "–", "–", "–", "–", "–", "–", "–", "–", "skipped",
                          (R.skipped:gsub("\n", " "):gsub("|", "/")) }
    else
      local st = R.stats
      local slow = R.slowest[1]
      local verdict = not R.miss and "met"
        or (not R.have_cpu and "**miss**")
        or (R.cpu_miss and "**miss** (work)" or "miss (wall only: preempted)")
      local notes = {}
      for _, t in ipairs(R.tasks) do notes[#notes + 1] = task_note(t) end
      if R.exit_with_lookup and R.exit_s then
        notes[#notes + 1] = ("process exit with a lookup in flight took %.2f s"):format(R.exit_s)
      end
      for _, n in ipairs(R.notes) do notes[#notes + 1] = n end
      rows[#rows + 1] = {
        R.name, tostring(st.n), B.ms(st.max), B.ms(st.p99),
        R.have_cpu and B.ms(R.cpu_stats.max) or "–", R.have_cpu and B.ms(R.cpu_stats.p99) or "–",
        R.have_cpu and tostring(R.preempted) or "–", verdict,
        slow and ("`%s` %s ms (CPU %s ms, ×%d)"):format(slow.name, B.ms(slow.max),
          R.have_cpu and B.ms(slow.cpu_max) or "?", slow.n) or "–",
        R.ok and "yes" or "**NO**", (table.concat(notes, "; "):gsub("|", "/")),
      }
    end
  end
  local first = results[1] or {}
  io.write(("\n### Frame section: %s (mbedtls %s, %s worker threads%s%s)\n\n"):format(
    label, tostring(first.mbedtls), tostring(first.workers), QUICK and ", --quick" or "",
    (first.poll_budget and first.poll_budget ~= "") and (", tls.set_poll_budget(" .. first.poll_budget .. ")") or ""))
  io.write(("Every call into tlspeer in a 60 fps loop, timed one by one; target: max <= 2 ms, p99 <= 0.5 ms. "
    .. "Each scenario ran %d time%s, each time in a fresh process; a row is the run with the median "
    .. "longest call, and its details list the longest call of every run.\n\n"):format(RUNS, RUNS == 1 and "" or "s"))
  io.write("*max CPU*, *p99 CPU*: the thread CPU time of the calls (the work they did); *preempted*: "
    .. "calls during which the calling thread was involuntarily switched out (their wall time includes "
    .. "other threads' work). *targets*: met, missed by the work itself (CPU time over a target), or "
    .. "missed by wall time only.\n\n")
  io.write(B.markdown({ "scenario", "calls", "max ms", "p99 ms", "max CPU ms", "p99 CPU ms", "preempted",
                        "targets",
                        "slowest call (wall, CPU, calls)",
                        "work done, bytes intact", "details" }, rows))

  -- Machine-readable.
  local json = { label = label, quick = QUICK or false, date = os.date("!%Y-%m-%dT%H:%M:%SZ"),
                 total_s = B.clock() - t_start, scenarios = {} }
  for _, R in ipairs(results) do
    local by = {}
    for _, s in ipairs(R.slowest or {}) do
      by[s.name] = { calls = s.n, max_ms = s.max * 1000, mean_ms = s.mean * 1000,
                     cpu_max_ms = s.cpu_max and s.cpu_max * 1000, preempted = s.preempted }
    end
    local tasks = {}
    for i, t in ipairs(R.tasks or {}) do tasks[i] = t end
    json.mbedtls, json.workers = json.mbedtls or R.mbedtls, json.workers or R.workers
    json.scenarios[#json.scenarios + 1] = {
      name = R.name, title = R.title, skipped = R.skipped,
      calls = R.stats and R.stats.n, max_ms = R.stats and R.stats.max and R.stats.max * 1000,
      p99_ms = R.stats and R.stats.p99 and R.stats.p99 * 1000,
      p50_ms = R.stats and R.stats.p50 and R.stats.p50 * 1000,
      cpu_max_ms = R.have_cpu and R.cpu_stats.max and R.cpu_stats.max * 1000 or nil,
      cpu_p99_ms = R.have_cpu and R.cpu_stats.p99 and R.cpu_stats.p99 * 1000 or nil,
      preempted_calls = R.have_cpu and R.preempted or nil,
      meets_target = R.stats and not R.miss, ok = R.ok,
      cpu_meets_target = R.have_cpu and not R.cpu_miss or nil, by_call = by, tasks = tasks,
      notes = R.notes, frames = R.frames, late_frames = R.late_frames, wall_s = R.wall,
      exit_s = R.exit_with_lookup and R.exit_s or nil, error = R.error,
      runs_max_ms = R.runs_max_ms,
    }
  end
  local out = args.out or "bench/out/frame.json"
  B.write_file(out, B.json(json))
  B.log("wrote %s (%.0f s in all)", out, B.clock() - t_start)
end

if args.run then
  child(args.run)
else
  local ok, err = xpcall(parent, debug.traceback)
  B.stop_all()
  if not ok then
    io.stderr:write(err, "\n")
    os.exit(1)
  end
end
