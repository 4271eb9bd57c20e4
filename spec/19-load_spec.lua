-- Load on loopback, bounded in count and time, each part stopping by
-- itself: many concurrent clients echoing 64 KiB each, long runs of
-- sequential handshakes with the server's and the client's file
-- descriptors and memory watched, and a slow-loris crowd that must not stop
-- a normal client from being served.
--
-- The server is spec/fixtures/load_server.lua (tls.listen, echo) in a
-- process of its own.  Counts: reduced in the normal suite; the full ones
-- with TLSPEER_LOAD=full (`make soak`).  The figures measured go to stderr
-- and to $TLSPEER_LOAD_REPORT (default /tmp/tlspeer-load-report.txt).
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"
local lfs = require "lfs"

local FULL = os.getenv("TLSPEER_LOAD") == "full"
-- (TLSPEER_LOAD_CLIENTS and TLSPEER_LOAD_HANDSHAKES override the counts.)
local CLIENTS = H.tointeger(tonumber(os.getenv("TLSPEER_LOAD_CLIENTS") or ""))
  or (FULL and 1000 or 200)                   -- concurrent clients (a)
local PAYLOAD = 64 * 1024                     -- bytes each sends and checks
local HANDSHAKES = H.tointeger(tonumber(os.getenv("TLSPEER_LOAD_HANDSHAKES") or ""))
  or (FULL and 10000 or 1000)                 -- sequential handshakes (b)
local LORIS = 200                             -- slow-loris connections (c)
local REPORT = os.getenv("TLSPEER_LOAD_REPORT") or "/tmp/tlspeer-load-report.txt"

-- Flat: equal descriptor counts; resident memory growing less than this
-- from the first sample (after the first tenth) to the last.
local RSS_SLACK_KIB = 4 * 1024

local function mbedtls_label()
  return "mbedtls " .. tls.mbedtls_version .. (FULL and ", full counts" or ", normal-suite counts")
end

local report_lines = {}
local function report(fmt, ...)
  local line = ("[19 %s] " .. fmt):format(mbedtls_label(), ...)
  io.stderr:write(line, "\n")
  report_lines[#report_lines + 1] = line
end

local function write_report()
  local f = io.open(REPORT, "a")
  if f then
    f:write(os.date("!%Y-%m-%dT%H:%M:%SZ"), "\n", table.concat(report_lines, "\n"), "\n")
    f:close()
  end
end

local function fd_count(pid)
  local n = 0
  for name in lfs.dir("/proc/" .. pid .. "/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n - (pid == "self" and 1 or 0)   -- lfs.dir's own descriptor
end

local function rss_kib(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status", "r"))
  local s = f:read("*a")
  f:close()
  return H.tointeger(tonumber(s:match("VmRSS:%s*(%d+)")))
end

local function soft_nofile()
  local f = assert(io.open("/proc/self/limits", "r"))
  local s = f:read("*a")
  f:close()
  local v = s:match("Max open files%s+(%S+)")
  return v == "unlimited" and math.huge or tonumber(v)
end

local PRELUDE = ("package.path = %q; package.cpath = %q")
  :format("lua/?.lua;lua/?/init.lua;" .. package.path, package.cpath)

-- Starts the echo server; returns { pid, port, stats(), stop() }.
local servers = {}
local function start_server(max_seconds, handshake_timeout)
  local dir = H.tmpdir()
  local out, err, stats = dir .. "/out", dir .. "/err", dir .. "/stats"
  assert(H.execute(("%s -e %s spec/fixtures/load_server.lua %g %g %s >%s 2>%s </dev/null &")
    :format(H.LUA, H.q(PRELUDE), max_seconds, handshake_timeout, H.q(stats), H.q(out), H.q(err))))
  local pid, port
  H.wait_for(function()
    pid, port = (H.exists(out) and H.read(out) or ""):match("READY (%d+) (%d+)")
    return pid
  end, 10, 0.01)
  assert(pid, "the load server did not start:\n" .. (H.exists(err) and H.read(err) or ""))
  local h = { pid = pid, port = H.tointeger(tonumber(port)) }
  function h.stats()
    local s = H.exists(stats) and H.read(stats) or ""
    local t = {}
    for k, v in s:gmatch("(%w+)=(%d+)") do t[k] = H.tointeger(tonumber(v)) end
    return t
  end
  function h.stop()
    if h.pid then H.kill(h.pid); h.pid = nil end
  end
  function h.errors() return H.read(err) end
  servers[#servers + 1] = h
  return h
end

-- Waits until the server's descriptor count stops changing (bounded).
local function settled_fds(pid, want)
  local last = fd_count(pid)
  H.wait_for(function()
    H.sleep(0.05)
    local n = fd_count(pid)
    local stable = n == last and (not want or n <= want)
    last = n
    return stable
  end, 3, 0.001)
  return last
end

after_each(function()
  for i = #servers, 1, -1 do
    servers[i].stop()
    servers[i] = nil
  end
end)

teardown(function()
  write_report()
  H.cleanup()
end)

describe("load (" .. (FULL and "full" or "normal-suite") .. " counts)", function()

  it(("serves %d concurrent TLS clients each echoing a unique %d KiB payload, byte for byte")
      :format(CLIENTS, math.floor(PAYLOAD / 1024)), function()
    local srv = start_server(FULL and 300 or 90, 10)
    -- The clients run in a process of their own, with `ulimit -n` raised
    -- when this one's is too low for them.
    local need = CLIENTS + 256
    local ulimit = ""
    if soft_nofile() < need then
      ulimit = ('ulimit -Sn %d 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; '):format(math.max(4096, need))
    end
    local cmd = ("%s%s -e %s spec/fixtures/load_clients.lua %d %d %d %d 2>&1")
      :format(ulimit, H.LUA, H.q(PRELUDE), srv.port, CLIENTS, PAYLOAD, FULL and 240 or 80)
    local t0 = H.now()
    local ok, out = H.run(cmd)
    local elapsed = H.now() - t0
    assert(ok, out)
    local result = out:match("RESULT ([^\n]*)")
    assert(result, out)
    local r = {}
    for k, v in result:gmatch("([%w_]+)=([%d%.]+)") do r[k] = tonumber(v) end
    H.sleep(0.6)                           -- the server's stats, rewritten every 0.5 s
    local st = srv.stats()
    report("concurrent: %s", result)
    report("concurrent: server: handshakes=%s peak simultaneous connections=%s failed=%s; wall %.1f s",
           tostring(st.handshakes), tostring(st.peak), tostring(st.failed), elapsed)
    assert.equal(CLIENTS, r.established, out)
    assert.equal(CLIENTS, r.peak_open, "not all clients were connected at the same time")
    assert.equal(CLIENTS, r.matched, out)
    assert.equal(0, r.mismatched)
    assert.equal(0, r.crossed)
    assert.equal(0, r.failed, out)
    assert.equal(0, r.unfinished, out)
    assert.equal(CLIENTS * PAYLOAD, r.sent)
    assert.equal(CLIENTS * PAYLOAD, r.received)
    assert.equal(CLIENTS, st.peak, "the server did not hold every client at once")
    assert.equal(0, st.failed)
    srv.stop()
  end)

  it(("keeps descriptors and memory flat over %d sequential handshakes"):format(HANDSHAKES), function()
    local srv = start_server(FULL and 1800 or 150, 10)
    local ca = tls.X509Certificate.new()
    assert(ca:load("certs/ca.crt"))
    local every = math.floor(HANDSHAKES / 10)
    local samples = {}
    local t0 = H.now()
    local deadline = t0 + (FULL and 1500 or 130)
    local failures = 0
    for i = 1, HANDSHAKES do
      assert(H.now() < deadline, ("only %d handshakes within the time bound"):format(i - 1))
      local c = tls.connect { host = "127.0.0.1", port = srv.port, trusted = ca,
                              common_name = "localhost", timeout = 5 }
      local ok, msg = c:wait(5)
      if not ok then
        failures = failures + 1
        error(("handshake %d failed: %s"):format(i, tostring(msg)))
      end
      local want, got = "ping " .. i, ""
      c:on("data_received", function(d) got = got .. d; if #got >= #want then c:close() end end)
      assert(c:send(want))
      c:run(5)
      assert.equal(want, got)
      c:close()
      if i % every == 0 then
        collectgarbage(); collectgarbage()
        local s = {
          n = i, t = H.now() - t0,
          sfd = settled_fds(srv.pid, samples[1] and samples[1].sfd),
          srss = rss_kib(srv.pid),
          cfd = fd_count("self"), crss = rss_kib("self"),
        }
        samples[#samples + 1] = s
        report("sequential: after %5d handshakes (%.1f s): server fds %d, RSS %d KiB; client fds %d, RSS %d KiB",
               s.n, s.t, s.sfd, s.srss, s.cfd, s.crss)
      end
    end
    local first, last = samples[1], samples[#samples]
    report("sequential: %d handshakes in %.1f s (%.1f ms each); server fds %d -> %d, RSS %d -> %d KiB (%+d); "
           .. "client fds %d -> %d, RSS %d -> %d KiB (%+d)",
           HANDSHAKES, last.t, 1000 * last.t / HANDSHAKES, first.sfd, last.sfd, first.srss, last.srss,
           last.srss - first.srss, first.cfd, last.cfd, first.crss, last.crss, last.crss - first.crss)
    assert.equal(0, failures)
    -- Never more than at the first sample (fewer is fine: a collector that
    -- runs late, as LuaJIT's may, finalizes sockets of earlier specs then).
    assert.is_true(last.sfd <= first.sfd, ("the server's descriptors grew: %d -> %d"):format(first.sfd, last.sfd))
    assert.is_true(last.cfd <= first.cfd, ("the client's descriptors grew: %d -> %d"):format(first.cfd, last.cfd))
    -- AddressSanitizer keeps freed memory in quarantine by design, so RSS
    -- says nothing there (LeakSanitizer checks leaks in that run instead).
    if os.getenv("TLSPEER_SANITIZER") ~= "asan" then
      assert.is_true(last.srss - first.srss < RSS_SLACK_KIB,
        ("the server's RSS grew by %d KiB"):format(last.srss - first.srss))
      assert.is_true(last.crss - first.crss < RSS_SLACK_KIB,
        ("the client's RSS grew by %d KiB"):format(last.crss - first.crss))
    end
    srv.stop()
  end)

  it(("serves a normal client promptly while %d slow-loris connections hang, then drops them")
      :format(LORIS), function()
    local HS_TIMEOUT = 3
    local srv = start_server(60, HS_TIMEOUT)
    local base_fds = settled_fds(srv.pid)
    -- Half send the start of a ClientHello (a record header announcing
    -- 512 bytes, then 11 of them), half send nothing.
    local partial = H.record_header(22, 1, 512) .. "\1\0\1\252\3\3" .. ("\0"):rep(5)
    local loris = {}
    local t_loris = H.now()
    for i = 1, LORIS do
      local t = tls.StreamPeerTCP.new()
      assert(t:connect_to_host("127.0.0.1", srv.port))
      loris[i] = t
    end
    for i, t in ipairs(loris) do
      assert.equal(tls.StreamPeerTCP.STATUS_CONNECTED, H.connected(t))
      if i % 2 == 0 then assert(t:put_data(partial)) end
    end
    -- Let the server take them all in.
    assert.truthy(H.wait_for(function() return fd_count(srv.pid) >= base_fds + LORIS end, 3))

    -- A normal client, now: handshake and echo within a bound.
    local ca = tls.X509Certificate.new()
    assert(ca:load("certs/ca.crt"))
    local t0 = H.now()
    local c = tls.connect { host = "127.0.0.1", port = srv.port, trusted = ca,
                            common_name = "localhost", timeout = 5 }
    local got = ""
    assert.is_true(c:wait(5))
    local t_hs = H.now() - t0
    c:on("data_received", function(d) got = got .. d; if got == "still served" then c:close() end end)
    assert(c:send("still served"))
    c:run(5)
    local served = H.now() - t0
    local while_hanging = H.now() - t_loris < HS_TIMEOUT
    assert.equal("still served", got)
    report("slow loris: %d hanging connections; a normal client: handshake %.3f s, echo done %.3f s "
           .. "(%s the server's %g s handshake timeout)", LORIS, t_hs, served,
           while_hanging and "within" or "NOT within", HS_TIMEOUT)
    assert.is_true(served < 2, ("the normal client took %.2f s"):format(served))
    assert.is_true(while_hanging, "the normal client was not served while the others hung")

    -- The server drops them when the handshake timeout passes.
    local dropped = 0
    for _, t in ipairs(loris) do
      t:set_timeout(HS_TIMEOUT + 3 - (H.now() - t_loris))
      local data, _, code = t:get_data(1)
      if data == nil and code == "ERR_FILE_EOF" then dropped = dropped + 1 end
      t:disconnect_from_host()
    end
    local dropped_after = H.now() - t_loris
    local fds = settled_fds(srv.pid, base_fds)
    H.sleep(0.6)
    local st = srv.stats()
    report("slow loris: %d of %d dropped by the server after %.1f s; server timeouts=%s; server fds %d -> %d",
           dropped, LORIS, dropped_after, tostring(st.timeouts), base_fds, fds)
    assert.equal(LORIS, dropped)
    assert.equal(LORIS, st.timeouts)
    assert.equal(base_fds, fds)
    srv.stop()
  end)
end)
