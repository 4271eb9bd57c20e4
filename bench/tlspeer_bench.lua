-- bench/tlspeer_bench.lua: the benchmark's work done with tlspeer's public
-- API (TCPServer, StreamPeerTCP, StreamPeerTLS, TLSOptions, Crypto,
-- HashingContext).  Same command line and output as bench/baseline.c:
--
--   lua5.4 bench/tlspeer_bench.lua server TEST CERT SUITE N SIZE
--   lua5.4 bench/tlspeer_bench.lua client PORT TEST CERT SUITE N SIZE
--   lua5.4 bench/tlspeer_bench.lua crypto rsa|ec|sha256 N SIZE
--
-- The blocking get_data/put_data are used: they wait in poll(2) on the
-- socket, the fastest way to drive one connection from a script.
-- Certificates come from $BENCH_CERTS; LUA_CPATH picks the build.
local tls = require "tlspeer"
local core = require "tlspeer.core"
local now, wait_sockets = core._now, core._wait

local CERTS = os.getenv("BENCH_CERTS") or "."
-- BENCH_WORKERS=n: tls.set_worker_threads(n) (0: every handshake step inline).
if os.getenv("BENCH_WORKERS") then tls.set_worker_threads(tonumber(os.getenv("BENCH_WORKERS"))) end
local MiB = 1 << 20

local function check(v, msg, code)
  if v == nil then error(("%s (%s)"):format(tostring(msg), tostring(code)), 2) end
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

local function load_cert(name)
  local c = tls.X509Certificate.new()
  check(c:load(CERTS .. "/" .. name))
  return c
end

------------------------------------------------------------------ server

local function server(test, cert, suite, n, size)
  local key = tls.CryptoKey.new()
  check(key:load(CERTS .. "/" .. cert .. ".key"))
  local opts = check(tls.TLSOptions.server(key, load_cert(cert .. ".crt"),
                                           { ciphersuites = { suite } }))
  local srv = tls.TCPServer.new()
  check(srv:listen(0, "127.0.0.1"))
  io.write("PORT ", srv:get_local_port(), "\n")
  io.flush()

  -- Takes a waiting connection first, and waits only when there is none
  -- (as the C baseline's blocking accept() does).
  local function accept()
    local tcp = srv:take_connection()
    while not tcp do
      wait_sockets({ srv }, {}, 5)
      tcp = srv:take_connection()
    end
    local p = tls.StreamPeerTLS.new()
    check(p:accept_stream(tcp, opts))
    return p
  end
  local function wait_close(p)
    while p:get_data(1) do end
    p:disconnect_from_stream()
  end

  if test == "bulk" then
    local p = accept()
    local left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(p:get_data(k))
      left = left - k
    end
    local chunk = ("x"):rep(MiB)
    left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(p:put_data(k == MiB and chunk or chunk:sub(1, k)))
      left = left - k
    end
    wait_close(p)
  elseif test == "hs" or test == "resume" then
    for _ = 1, n do
      local p = accept()
      check(p:put_data(check(p:get_data(1))))
      wait_close(p)
    end
  elseif test == "mem" then
    local peers = {}
    collectgarbage()
    local before = rss()
    for i = 1, n do
      local p = accept()
      check(p:put_data(check(p:get_data(1))))
      peers[i] = p
    end
    collectgarbage()
    result("server_mem_per_conn", (rss() - before) / n)
    for i = 1, n do wait_close(peers[i]) end
  elseif test == "poll" or test == "echo" then
    local p = accept()
    while true do
      local b = p:get_data(1)
      if not b then break end
      check(p:put_data(b))
    end
    p:disconnect_from_stream()
  end
end

------------------------------------------------------------------ client

local function client(port, test, cert, suite, n, size)
  local ca = load_cert("ca.crt")
  local function options(tickets)
    return check(tls.TLSOptions.client(ca, "", { ciphersuites = { suite },
                                                 session_tickets = tickets }))
  end
  local function connect(opts)
    local tcp = tls.StreamPeerTCP.new()
    check(tcp:connect_to_host("127.0.0.1", port))
    local p = tls.StreamPeerTLS.new()
    check(p:connect_to_stream(tcp, "localhost", opts))
    return p
  end

  if test == "bulk" then
    local p = connect(options(false))
    check(p:put_data("h")); -- finishes the handshake (the server reads 1 MiB blocks)
    local chunk = ("y"):rep(MiB)
    local t0 = now()
    local left = size - 1
    check(p:put_data(chunk:sub(1, math.min(left, MiB - 1))))
    left = left - math.min(left, MiB - 1)
    while left > 0 do
      local k = math.min(left, MiB)
      check(p:put_data(k == MiB and chunk or chunk:sub(1, k)))
      left = left - k
    end
    left = size
    while left > 0 do
      local k = math.min(left, MiB)
      check(p:get_data(k))
      left = left - k
    end
    result("bulk_mbps", 2 * size / (now() - t0) / 1e6)
    p:disconnect_from_stream()
  elseif test == "hs" or test == "resume" then
    local resume = test == "resume"
    local opts = options(resume)
    local reused, t0 = 0, now()
    for i = 1, n do
      if i == 2 then t0 = now() end       -- the first one is a full handshake
      local p = connect(opts)
      check(p:put_data("e"))
      check(p:get_data(1))
      if i > 1 and p:is_session_reused() then reused = reused + 1 end
      p:disconnect_from_stream()
    end
    result("hs_per_s", (n - 1) / (now() - t0))
    result("reused", reused)
  elseif test == "mem" then
    local opts, peers = options(false), {}
    collectgarbage()
    local before = rss()
    for i = 1, n do
      local p = connect(opts)
      check(p:put_data("m"))
      check(p:get_data(1))
      peers[i] = p
    end
    collectgarbage()
    result("client_mem_per_conn", (rss() - before) / n)
    for i = 1, n do peers[i]:disconnect_from_stream() end
  elseif test == "poll" then
    local p = connect(options(false))
    check(p:put_data("p"))
    check(p:get_data(1))
    local t0 = now()
    for _ = 1, n do p:poll() end
    local t = now() - t0
    assert(p:get_status() == tls.StreamPeerTLS.STATUS_CONNECTED)
    result("poll_ns", t / n * 1e9)
    p:disconnect_from_stream()
  elseif test == "echo" then
    local p = connect(options(false))
    check(p:put_data("e"))
    check(p:get_data(1))
    local t0 = now()
    for _ = 1, n do
      p:put_data("e")
      p:get_data(1)
    end
    result("echo_us", (now() - t0) / n * 1e6)
    p:disconnect_from_stream()
  end
end

------------------------------------------------------------------ crypto

local function crypto(what, n, size)
  local c = tls.Crypto.new()
  if what == "rsa" or what == "ec" then
    local t0 = now()
    for _ = 1, n do
      if what == "rsa" then check(c:generate_rsa(2048)) else check(c:generate_ec("secp256r1")) end
    end
    result("keygen_ms", (now() - t0) / n * 1e3)
  else
    local data = ("z"):rep(size)
    local h = tls.HashingContext.new()
    local t0 = now()
    for _ = 1, n do
      h:start(tls.HashingContext.HASH_SHA256)
      h:update(data)
      h:finish()
    end
    result("sha256_mbps", size * n / (now() - t0) / 1e6)
  end
end

local mode = arg[1]
if mode == "server" then
  server(arg[2], arg[3], arg[4], tonumber(arg[5]), tonumber(arg[6]))
elseif mode == "client" then
  client(tonumber(arg[2]), arg[3], arg[4], arg[5], tonumber(arg[6]), tonumber(arg[7]))
elseif mode == "crypto" then
  crypto(arg[2], tonumber(arg[3]), tonumber(arg[4]))
elseif mode == "groups" then
  -- The key exchange groups tlspeer offers, in its order: read from the
  -- supported_groups extension of the ClientHello a client writes into a
  -- Lua stream (the C baseline and the engine are then given the same).
  local hello = {}
  local stream = {
    get_partial_data = function() return "" end,
    put_partial_data = function(_, s) hello[#hello + 1] = s; return #s end,
  }
  local opts = check(tls.TLSOptions.client(load_cert("ca.crt")))
  local p = tls.StreamPeerTLS.new()
  check(p:connect_to_stream(stream, "localhost", opts))
  for _ = 1, 3 do p:poll() end
  local msg = table.concat(hello)
  -- record (5) | handshake header (4) | version (2) | random (32) | ...
  local pos = 5 + 4 + 2 + 32 + 1
  pos = pos + msg:byte(pos) + 1                                -- session id
  pos = pos + (">I2"):unpack(msg, pos) + 2                     -- cipher suites
  pos = pos + msg:byte(pos) + 1                                -- compression
  local ext_end = pos + 2 + (">I2"):unpack(msg, pos)
  pos = pos + 2
  local names = { [0x1d] = "x25519", [0x17] = "secp256r1", [0x18] = "secp384r1",
                  [0x19] = "secp521r1", [0x1e] = "x448" }
  local groups = {}
  while pos + 4 <= ext_end do
    local typ, len = (">I2I2"):unpack(msg, pos)
    if typ == 10 then
      for i = pos + 6, pos + 4 + len - 1, 2 do
        local g = (">I2"):unpack(msg, i)
        groups[#groups + 1] = names[g] or ("0x%04x"):format(g)
      end
    end
    pos = pos + 4 + len
  end
  assert(#groups > 0, "no supported_groups in the ClientHello")
  print("groups " .. table.concat(groups, ","))
elseif mode == "version" then
  -- What bench/run.sh checks before it measures a section: the version
  -- tlspeer reports, the core.so this process loaded (from its memory
  -- map), the tlspeer-mbedtls-build marker that scripts/mbedtls3.sh puts
  -- into the mbedtls it builds (none in Debian's shared library) and the
  -- shared mbedtls library mapped, if any.
  local module, library = "none", "static"
  for line in io.lines("/proc/self/maps") do
    local path = line:match("%s(/%S+)$")
    if path and path:match("/tlspeer/core%.so$") then module = path end
    if path and path:match("/libmbedtls%.so[%.%d]*$") then library = path end
  end
  local marker = "none"
  local f = module ~= "none" and io.open(module, "rb")
  if f then
    marker = f:read("a"):match("tlspeer%-mbedtls%-build: ([^%z]+)") or "none"
    f:close()
  end
  print("mbedtls_version " .. tls.mbedtls_version)
  print("marker " .. marker)
  print("library " .. library)
  print("module " .. module)
else
  io.stderr:write("usage: tlspeer_bench.lua server|client|crypto ...\n")
  os.exit(2)
end
