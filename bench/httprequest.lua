-- bench/httprequest.lua: HTTPRequest against tls.request (issue 13).
--
-- 20 HTTPRequests download 5 MB each at once from nginx over TLS (on
-- loopback, with tlspeer's dev certificates or the bench's own), driven by
-- tls.poll(): the total throughput, and the longest single call into
-- tlspeer (target: <= 2 ms, the frame section's); then the same 20
-- downloads with tls.request, one after another (a blocking call is one
-- whole download: its "longest call" is that, by design).  Rows:
--   HTTPRequest x20, tls.poll() in a loop   as fast as the loop goes
--   HTTPRequest x20, to download_file       the same, bodies to files
--   HTTPRequest x20, tls.poll() at 60 fps   one poll per 1/60 s frame (a game)
--   tls.request x20, one after another      blocking, for scripts
-- Every body is checked (length, and the SHA-256 of the file).
--
--   lua5.4 bench/httprequest.lua [--quick] [--count N] [--mb M] [--budget SECONDS]
--
-- Run from the checkout after `make` (it finds lua/ and build/ itself;
-- LUA_PATH / LUA_CPATH still apply).  Prints a Markdown table; the lead
-- hooks it into `make bench`.  --quick: 1 MB each, the 60 fps row on 5.
-- Thread CPU per call comes from bench/out/benchclock.so when it can be
-- built (bench/benchclock.c): on 2 shared cores a call preempted for a
-- scheduler slice shows milliseconds of wall time for little work.
package.path = "lua/?.lua;lua/?/init.lua;./?.lua;" .. package.path
-- build/ unless LUA_CPATH picks a build (bench/sections.sh does).
package.cpath = (os.getenv("LUA_CPATH") and "" or "build/?.so;") .. "bench/out/?.so;" .. package.cpath

local B = require "bench.benchlib"
local tls = require "tlspeer"
local core = require "tlspeer.core"

local MiB = 1024 * 1024
local args = { count = 20, mb = 5 }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    if a == "--quick" then args.quick = true
    elseif a == "--count" then args.count = tonumber(arg[i + 1]); i = i + 1
    elseif a == "--mb" then args.mb = tonumber(arg[i + 1]); i = i + 1
    elseif a == "--budget" then args.budget = tonumber(arg[i + 1]); i = i + 1
    else error("unknown argument " .. a) end
    i = i + 1
  end
end
if args.quick then args.mb = 1 end
local COUNT, SIZE = args.count, math.floor(args.mb * MiB)
local FPS_COUNT = args.quick and 5 or COUNT
if args.budget then tls.set_poll_budget(args.budget) end
-- HTTPREQUEST_GC=generational: the collector's mode, for experiments.
if os.getenv("HTTPREQUEST_GC") then collectgarbage(os.getenv("HTTPREQUEST_GC")) end

local now = core._now
if not B.read_file("bench/out/benchclock.so") then B.build_benchclock() end
local okbc, bc = pcall(require, "benchclock")
local tcpu = okbc and bc.thread_cpu or function() return 0 end

------------------------------------------------------------------ server

local work = B.capture("mktemp -d /tmp/tlspeer-bench-http.XXXXXX"):match("^%s*(.-)%s*$")
local certdir, crt, key, cafile
if B.read_file("certs/server.key") then
  certdir = B.capture("pwd"):match("^%s*(.-)%s*$") .. "/certs"
  crt, key, cafile = certdir .. "/server.crt", certdir .. "/server.key", certdir .. "/ca.crt"
else
  certdir = B.capture("pwd"):match("^%s*(.-)%s*$") .. "/bench/out/frame-certs"
  B.make_certs(certdir)
  crt, key, cafile = certdir .. "/p256.crt", certdir .. "/p256.key", certdir .. "/ca.crt"
end

local function free_port()
  local s = tls.TCPServer.new()
  assert(s:listen(0, "127.0.0.1"))
  local p = s:get_local_port()
  s:stop()
  return p
end

local PORT = free_port()
os.execute("mkdir -p " .. B.sh_quote(work .. "/www") .. " " .. B.sh_quote(work .. "/tmp")
  .. " " .. B.sh_quote(work .. "/dl"))
do
  local f = assert(io.open(work .. "/www/file.bin", "wb"))
  local block = tls.Crypto.new():generate_random_bytes(MiB)
  for _ = 1, math.ceil(SIZE / MiB) do f:write(block) end
  f:close()
  os.execute(("truncate -s %d %s"):format(SIZE, B.sh_quote(work .. "/www/file.bin")))
end
local root = B.capture("id -u"):match("^0") and "user root;" or ""
B.write_file(work .. "/nginx.conf", ([[
%s
worker_processes 2;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  sendfile on;
  keepalive_requests 1000;
  server {
    listen 127.0.0.1:%d ssl;
    ssl_certificate %s;
    ssl_certificate_key %s;
    root %s/www;
  }
}
]]):format(root, work, work, work, work, work, work, work, PORT, crt, key, work))
assert(B.exec(("/usr/sbin/nginx -p %s/ -c %s/nginx.conf"):format(B.sh_quote(work), B.sh_quote(work))),
  "nginx did not start (Debian's nginx-light)")
local function cleanup()
  local pid = B.read_file(work .. "/nginx.pid")
  if pid then B.exec("kill " .. pid:match("%d+") .. " 2>/dev/null") end
  B.sleep(0.2)
  B.exec("rm -rf " .. B.sh_quote(work))
end

local URL = ("https://127.0.0.1:%d/file.bin"):format(PORT)
local ca = tls.X509Certificate.new()
assert(ca:load(cafile))
local tls_options = tls.TLSOptions.client(ca)
tls.preload_certificate_bundle()
local expected = (function()
  local ctx = tls.HashingContext.new()
  ctx:start(tls.HashingContext.HASH_SHA256)
  ctx:update(B.read_file(work .. "/www/file.bin"))
  return ctx:finish()
end)()

-- Up once nginx answers.
do
  local deadline = B.clock() + 5
  while true do
    local body = tls.request(URL, { tls_options = tls_options, timeout = 2 })
    if body then break end
    assert(B.clock() < deadline, "nginx does not answer on " .. URL)
    B.sleep(0.05)
  end
end

------------------------------------------------------------------ timing

-- Times fn() as one call: wall and thread CPU.  `quiet` lists the calls
-- in which no request completed (where no body became one string).
local calls, cpus, quiet, quiet_cpus
local completed = 0
local function timed(fn, ...)
  local before = completed
  local c0, t0 = tcpu(), now()
  local a, b, c = fn(...)
  local dt, dc = now() - t0, tcpu() - c0
  calls[#calls + 1] = dt
  cpus[#cpus + 1] = dc
  if completed == before then
    quiet[#quiet + 1] = dt
    quiet_cpus[#quiet_cpus + 1] = dc
  end
  return a, b, c
end

-- count HTTPRequests at once; `files`: to download_file; `fps`: one poll
-- per frame.  Returns seconds, bytes, ok.
local function run_requests(count, files, fps)
  calls, cpus, quiet, quiet_cpus = {}, {}, {}, {}
  local done, good, total = 0, 0, 0
  local reqs = {}
  collectgarbage()
  local t0 = now()
  for i = 1, count do
    local req = timed(tls.HTTPRequest.new)
    timed(req.set_tls_options, req, tls_options)
    if files then timed(req.set_download_file, req, ("%s/dl/%d.bin"):format(work, i)) end
    req:on("request_completed", function(result, code, _, body)
      done = done + 1
      completed = completed + 1
      if result == 0 and code == 200 then
        local n = files and SIZE or #body
        total = total + n
        if n == SIZE then good = good + 1 end
      end
    end)
    assert(timed(req.request, req, URL))
    reqs[i] = req
  end
  local tick = 1 / 60
  local next_frame = now()
  while done < count do
    timed(tls.poll)
    if fps then
      next_frame = next_frame + tick
      local wait = next_frame - now()
      if wait > 0 then B.sleep(wait) else next_frame = now() end
    end
  end
  local elapsed = now() - t0
  if files then
    for i = 1, count do
      local data = B.read_file(("%s/dl/%d.bin"):format(work, i))
      local ctx = tls.HashingContext.new()
      ctx:start(tls.HashingContext.HASH_SHA256)
      ctx:update(data or "")
      if ctx:finish() ~= expected then good = good - 1 end
      os.remove(("%s/dl/%d.bin"):format(work, i))
    end
  end
  return elapsed, total, good == count
end

local function run_sequential(count)
  calls, cpus, quiet, quiet_cpus = {}, {}, {}, {}
  local total, good = 0, 0
  collectgarbage()
  local t0 = now()
  for _ = 1, count do
    local body, code = timed(tls.request, URL, { tls_options = tls_options })
    if body and code == 200 then
      total = total + #body
      if #body == SIZE then good = good + 1 end
    end
  end
  return now() - t0, total, good == count
end

------------------------------------------------------------------ rows

local rows = {}
local function row(name, elapsed, bytes, ok, target)
  local st, sc = B.stats(calls), B.stats(cpus)
  local sq, sqc = B.stats(quiet), B.stats(quiet_cpus)
  local verdict
  if not ok then verdict = "FAILED (bodies)"
  elseif not target then verdict = "blocking by design"
  elseif st.max <= 0.002 then verdict = "met"
  elseif okbc and sc.max <= 0.002 then verdict = "met in CPU; wall time preempted"
  else verdict = "missed" end
  local function cpu(v) return okbc and B.ms(v) or "–" end
  rows[#rows + 1] = { name, ("%.1f"):format(bytes / MiB), ("%.2f"):format(elapsed),
    ("%.1f"):format(bytes / MiB / elapsed), tostring(st.n), B.ms(st.max), cpu(sc.max),
    target and cpu(sqc.max) or "–", B.ms(st.p99), cpu(sc.p99), verdict }
  B.log("%s: %.1f MB/s, longest call %.3f ms (most CPU %.3f ms)", name, bytes / MiB / elapsed,
    st.max * 1000, (sc.max or 0) * 1000)
end

local ok, err = pcall(function()
  local e, b, good = run_requests(COUNT, false, false)
  row(("HTTPRequest x%d, tls.poll() in a loop"):format(COUNT), e, b, good, true)
  e, b, good = run_requests(COUNT, true, false)
  row(("HTTPRequest x%d, to download_file"):format(COUNT), e, b, good, true)
  e, b, good = run_requests(FPS_COUNT, false, true)
  row(("HTTPRequest x%d, tls.poll() at 60 fps"):format(FPS_COUNT), e, b, good, true)
  e, b, good = run_sequential(COUNT)
  row(("tls.request x%d, one after another"):format(COUNT), e, b, good, false)
end)
cleanup()
if not ok then error(err, 0) end

local budget_s, budget_b = tls.get_poll_budget()
io.write(("\n### HTTPRequest: %d downloads of %.0f MB over TLS (nginx, loopback)\n\n"):format(COUNT,
  SIZE / MiB))
io.write(("tlspeer on mbedtls %s, %s; poll budget %.1f ms and %d KiB per step.  A call is one call\n"
  .. "into tlspeer (each tls.poll(), request(), constructor; for tls.request the whole\n"
  .. "download); target for the poll-driven rows: every call <= 2 ms.\n\n")
  :format(tls.mbedtls_version, _VERSION, budget_s * 1000, budget_b // 1024))
io.write(B.markdown({ "scenario", "MB", "seconds", "MB/s", "calls", "longest call (ms)",
  "most CPU in a call (ms)", "same, no completion in it (ms)", "p99 (ms)", "p99 CPU (ms)",
  "verdict" }, rows))
io.write("\nThe call in which a request completes in memory makes its body one Lua string: one\n"
  .. "allocation and copy of the whole body (for 5 MB, mostly the page faults of fresh memory:\n"
  .. "1-3 ms here); with download_file no such string is made.  Wall times include the\n"
  .. "scheduler's: 2 cores shared with nginx and tlspeer's workers; the CPU columns are the\n"
  .. "calling thread's own time.\n")
