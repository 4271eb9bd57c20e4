-- bench/luasec_bench.lua: the benchmark's work done with LuaSec (OpenSSL)
-- over LuaSocket, Debian's lua-sec and lua-socket.  Same command line and
-- output as bench/baseline.c and bench/tlspeer_bench.lua.
--
-- Blocking sockets with a timeout for the network work, like the other two;
-- the idle poll is a receive with settimeout(0).  LuaSec 1.2 has no session
-- API (no get/set session), so a client cannot resume: "resume" reports
-- the count of reused sessions (0) and the driver shows N/A.  LuaSec has no
-- key generation or hashing: "crypto" answers N/A (the driver uses the
-- openssl command for SHA-256).
local socket = require "socket"
local ssl = require "ssl"

local CERTS = os.getenv("BENCH_CERTS") or "."
local MiB = 1 << 20

local function check(v, msg)
  if v == nil then error(tostring(msg), 2) end
  return v
end

local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, res = f:read("n", "n")
  f:close()
  return res * 4096
end

local function result(key, value)
  io.write(("RESULT %s %.3f\n"):format(key, value))
  io.flush()
end

-- IANA suite -> how OpenSSL is told: TLS 1.2 "ciphers", TLS 1.3 "ciphersuites".
local OPENSSL = {
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 = "ECDHE-ECDSA-AES128-GCM-SHA256",
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 = "ECDHE-ECDSA-CHACHA20-POLY1305",
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 = "ECDHE-RSA-AES128-GCM-SHA256",
}

local function params(mode, cert, suite)
  local p = { mode = mode, options = { "all" } }
  if OPENSSL[suite] then
    p.protocol = "tlsv1_2"
    p.ciphers = OPENSSL[suite]
  else
    p.protocol = "tlsv1_3"
    p.ciphersuites = suite
  end
  -- The key exchange group tlspeer and the C baseline negotiate.
  -- (P-256 too: in TLS 1.2 the list also names the curves an ECDSA
  -- certificate may use.)
  p.curveslist = os.getenv("BENCH_GROUPS") or "X25519:P-256"
  if mode == "server" then
    p.key = CERTS .. "/" .. cert .. ".key"
    p.certificate = CERTS .. "/" .. cert .. ".crt"
    p.verify = "none"
  else
    p.cafile = CERTS .. "/ca.crt"
    p.verify = "peer"
  end
  return check(ssl.newcontext(p))
end

------------------------------------------------------------------ server

local function server(test, cert, suite, n, size)
  local ctx = params("server", cert, suite)
  local lsn = check(socket.bind("127.0.0.1", 0))
  local _, port = lsn:getsockname()
  io.write("PORT ", port, "\n")
  io.flush()

  local function accept()
    local c = check(lsn:accept())
    c:setoption("tcp-nodelay", true)
    local s = check(ssl.wrap(c, ctx))
    s:settimeout(30)
    check(s:dohandshake())
    return s
  end
  local function wait_close(s)
    while s:receive(1) do end
    s:close()
  end

  if test == "bulk" then
    local s = accept()
    local left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(s:receive(k))
      left = left - k
    end
    local chunk = ("x"):rep(MiB)
    left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(s:send(k == MiB and chunk or chunk:sub(1, k)))
      left = left - k
    end
    wait_close(s)
  elseif test == "hs" or test == "resume" then
    for _ = 1, n do
      local s = accept()
      check(s:send(check(s:receive(1))))
      wait_close(s)
    end
  elseif test == "mem" then
    local conns = {}
    collectgarbage()
    local before = rss()
    for i = 1, n do
      local s = accept()
      check(s:send(check(s:receive(1))))
      conns[i] = s
    end
    collectgarbage()
    result("server_mem_per_conn", (rss() - before) / n)
    for i = 1, n do wait_close(conns[i]) end
  elseif test == "poll" or test == "echo" then
    local s = accept()
    while true do
      local b = s:receive(1)
      if not b then break end
      check(s:send(b))
    end
    s:close()
  end
end

------------------------------------------------------------------ client

local function client(port, test, cert, suite, n, size)
  local ctx = params("client", cert, suite)
  local function connect()
    local c = check(socket.tcp())
    check(c:connect("127.0.0.1", port))
    c:setoption("tcp-nodelay", true)
    local s = check(ssl.wrap(c, ctx))
    s:sni("localhost")
    s:settimeout(30)
    check(s:dohandshake())
    return s
  end

  if test == "bulk" then
    local s = connect()
    local chunk = ("y"):rep(MiB)
    local t0 = socket.gettime()
    local left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(s:send(k == MiB and chunk or chunk:sub(1, k)))
      left = left - k
    end
    left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(s:receive(k))
      left = left - k
    end
    result("bulk_mbps", 2 * size / (socket.gettime() - t0) / 1e6)
    s:close()
  elseif test == "hs" or test == "resume" then
    local t0 = socket.gettime()
    for i = 1, n do
      if i == 2 then t0 = socket.gettime() end
      local s = connect()
      check(s:send("e"))
      check(s:receive(1))
      s:close()
    end
    result("hs_per_s", (n - 1) / (socket.gettime() - t0))
    result("reused", 0)                   -- LuaSec 1.2: no session API
  elseif test == "mem" then
    local conns = {}
    collectgarbage()
    local before = rss()
    for i = 1, n do
      local s = connect()
      check(s:send("m"))
      check(s:receive(1))
      conns[i] = s
    end
    collectgarbage()
    result("client_mem_per_conn", (rss() - before) / n)
    for i = 1, n do conns[i]:close() end
  elseif test == "poll" then
    local s = connect()
    check(s:send("p"))
    check(s:receive(1))
    s:settimeout(0)
    local t0 = socket.gettime()
    for _ = 1, n do s:receive(1) end
    local t = socket.gettime() - t0
    local _, err = s:receive(1)
    assert(err == "wantread" or err == "timeout", err)
    result("poll_ns", t / n * 1e9)
    s:settimeout(30)
    s:close()
  elseif test == "echo" then
    local s = connect()
    check(s:send("e"))
    check(s:receive(1))
    local t0 = socket.gettime()
    for _ = 1, n do
      s:send("e")
      s:receive(1)
    end
    result("echo_us", (socket.gettime() - t0) / n * 1e6)
    s:close()
  end
end

local mode = arg[1]
if mode == "server" then
  server(arg[2], arg[3], arg[4], tonumber(arg[5]), tonumber(arg[6]))
elseif mode == "client" then
  client(tonumber(arg[2]), arg[3], arg[4], arg[5], tonumber(arg[6]), tonumber(arg[7]))
elseif mode == "version" then
  print(ssl._VERSION or "?")
else
  io.stderr:write("usage: luasec_bench.lua server|client ...\n")
  os.exit(2)
end
