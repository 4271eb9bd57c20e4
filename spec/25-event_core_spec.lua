-- The event core (issue 12): tls.poll() steps every live helper object;
-- only what is ready is stepped; steps stay within their byte budget;
-- sends keep an offset; close() never waits; names are looked up on a
-- worker (a stub DNS server that stalls, in a network namespace this spec
-- makes); handshake steps run on workers and survive closes and
-- collections mid-step; pools work again after fork.  How long calls take
-- is measured by `make bench` (its frame section), not here.
local H = require "helpers"
local tls = H.tls
local TLS = tls.StreamPeerTLS
local CONNECTED, HANDSHAKING, DISCONNECTED = TLS.STATUS_CONNECTED, TLS.STATUS_HANDSHAKING,
  TLS.STATUS_DISCONNECTED

local CERTS = "certs/"

local function new_server(opts)
  opts = opts or {}
  opts.port = opts.port or 0
  opts.bind = opts.bind or "127.0.0.1"
  opts.certificate = opts.certificate or CERTS .. "server.crt"
  opts.key = opts.key or CERTS .. "server.key"
  return assert(tls.listen(opts))
end

local function new_client(srv, extra)
  local o = { host = "127.0.0.1", port = srv:get_local_port(), trusted = CERTS .. "ca.crt",
              common_name = "localhost" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return tls.connect(o)
end

-- tls.poll() until pred() (bounded); returns pred()'s value.
local function poll_until(pred, seconds)
  return H.wait_for(function()
    tls.poll()
    return pred()
  end, seconds or 5, 0.001)
end

describe("the event core", function()
  after_each(H.cleanup)

  it("tls.poll() alone steps a server and a client: the seed's exchange, in a frame loop", function()
    local srv = new_server()
    local got, seen = "", {}
    srv:on("data_received", function(conn, data) conn:send(data) end)
    srv:on("disconnected", function() seen.server_end = true end)
    local c = new_client(srv)
    c:on("connection_established", function() c:send("Hello, secure world!\n") end)
    c:on("data_received", function(d) got = got .. d; if got:find("\n") then c:close() end end)
    c:on("disconnected", function() seen.client_end = true end)
    assert.truthy(poll_until(function() return seen.client_end and seen.server_end end))
    assert.equal("Hello, secure world!\n", got)
    srv:stop()
  end)

  it("steps only the connections that are ready", function()
    local srv = new_server()
    local clients = {}
    srv:on("data_received", function(conn, data) conn:send(data) end)
    for i = 1, 30 do clients[i] = new_client(srv) end
    assert.truthy(poll_until(function()
      for _, c in ipairs(clients) do if c:get_status() ~= CONNECTED then return false end end
      return #srv:get_connections() == 30
    end, 10))
    -- Count the server's steps, once everything has settled (TLS 1.3's
    -- session tickets arrive after the handshake): 100 ms without a step.
    local steps, stepped = 0, {}
    local step = srv._step
    srv._step = function(self, token, ...)
      steps = steps + 1
      stepped[token] = true
      return step(self, token, ...)
    end
    local quiet_since = H.now()
    assert.truthy(H.wait_for(function()
      local before = steps
      tls.poll()
      if steps ~= before then quiet_since = H.now() end
      return H.now() - quiet_since > 0.1
    end, 10, 0.002))
    steps, stepped = 0, {}
    for _ = 1, 50 do tls.poll() end
    assert.equal(0, steps, "idle connections were stepped")
    local echoed = false
    clients[7]:on("data_received", function() echoed = true end)
    clients[7]:send("ping")
    assert.truthy(poll_until(function() return echoed end))
    local n = 0
    for token in pairs(stepped) do
      n = n + 1
      assert.equal(clients[7]:get_peer():get_stream():get_local_port(),
                   token.tcp:get_connected_port())
    end
    assert.equal(1, n, "other connections were stepped")
    srv._step = nil
    for _, c in ipairs(clients) do c:close() end
    srv:stop()
  end)

  it("reads within the byte budget per step, and sends from an offset: 3 MiB intact both ways", function()
    -- Under memcheck (30x slower) 512 KiB: still eight steps' budgets.
    local size = H.SLOW >= 30 and 512 * 1024 or 3 * 1024 * 1024
    local srv = new_server()
    local max_chunk, got, back = 0, {}, {}
    srv:on("data_received", function(conn, data)
      if #data > max_chunk then max_chunk = #data end
      got[#got + 1] = data
      conn:send(data)
    end)
    local c = new_client(srv)
    local payload = H.bytes(size, 7)
    c:on("connection_established", function() assert(c:send(payload)) end)
    local nback = 0
    c:on("data_received", function(d) back[#back + 1] = d; nback = nback + #d end)
    assert.truthy(poll_until(function() return nback == #payload end, 30))
    assert.equal(payload, table.concat(got))
    assert.equal(payload, table.concat(back))
    assert.is_true(max_chunk <= 64 * 1024, "a step read " .. max_chunk .. " bytes")
    assert.equal(0, c:get_pending_bytes())
    c:close()
    srv:stop()
  end)

  it("close() does not wait for a peer that reads nothing: the rest lingers, then is dropped", function()
    local srv = new_server()
    local sconn
    srv:on("connection_established", function(conn) sconn = conn end)
    local c = new_client(srv)
    assert.truthy(poll_until(function() return sconn and c:get_status() == CONNECTED end))
    -- The server is no longer polled by anyone: it reads nothing.
    srv._step = function() return false end
    local ended = false
    c:on("disconnected", function() ended = true end)
    assert(c:send(H.bytes(8 * 1024 * 1024, 3)))
    for _ = 1, 20 do c:poll() end
    assert.is_true(c:get_pending_bytes() > 0, "the socket took 8 MiB?")
    c:close(0.3)                               -- at most 0.3 s for what is queued
    assert.is_false(ended)
    assert.is_nil((c:send("more")))            -- closing: no more sends
    assert.truthy(H.wait_for(function() c:poll(); return ended end, 3, 0.01))
    assert.equal(DISCONNECTED, c:get_status())
    srv._step = nil
    srv:stop()
  end)

  it("a listener out of descriptors pauses accepting, says so once, and accepts again later", function()
    -- In a child with a low descriptor limit: the server's accept fails
    -- with EMFILE while a client waits in the kernel's queue.  A listener
    -- that kept polling would spin at full CPU for the whole second.
    for _, kind in ipairs { "listen", "ws_listen" } do
      local ok, out = H.run("ulimit -n 64; " .. H.LUA .. " -e " .. H.q(("package.path = %q; package.cpath = %q")
        :format(package.path, package.cpath)) .. " -e " .. H.q(([[
        local tls = require "tlspeer"
        tls.set_worker_threads(0)
        local srv = assert(tls.%s { port = 0, bind = "127.0.0.1",
                                     certificate = "certs/server.crt", key = "certs/server.key" })
        local said = {}
        srv:on("error", function(msg) said[#said + 1] = msg end)
        local port = srv:get_local_port()
        srv:run(0.05)
        local junk = {}
        while true do
          local f = io.open("/dev/null")
          if not f then break end
          junk[#junk + 1] = f
        end
        table.remove(junk):close()
        local tcp = tls.StreamPeerTCP.new()
        assert(tcp:connect_to_host("127.0.0.1", port))
        local c0 = os.clock()
        srv:run(1.0)
        local cpu = os.clock() - c0
        for _ = 1, 8 do table.remove(junk):close() end
        local peer = tls.StreamPeerTLS.new()
        local ca = tls.X509Certificate.new()
        assert(ca:load("certs/ca.crt"))
        assert(peer:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(ca)))
        local t0 = tls.now()
        while peer:get_status() == tls.StreamPeerTLS.STATUS_HANDSHAKING and tls.now() < t0 + 5 do
          srv:poll(); peer:poll(); tls.sleep(0.002)
        end
        print(("said=%%d cpu=%%.3f status=%%d first=%%s"):format(#said, cpu, peer:get_status(), said[1]))
      ]]):format(kind)))
      assert.is_true(ok, out)
      local said, cpu, status = out:match("said=(%d+) cpu=(%S+) status=(%d+)")
      assert.equal("1", said, out)
      assert.matches("cannot accept a connection %(accept failed: Too many open files%)", out)
      assert.is_true(tonumber(cpu) < 0.3, out)        -- a spin would take the whole second
      -- accepted after the pause: the TLS handshake completes
      assert.equal(tostring(tls.StreamPeerTLS.STATUS_CONNECTED), status, out)
    end
  end)

  it("tls.run(timeout) serves every helper object and returns after the timeout", function()
    local srv = new_server()
    srv:on("data_received", function(conn, data) conn:send(data) end)
    local c = new_client(srv)
    local got = ""
    c:on("connection_established", function() c:send("run") end)
    c:on("data_received", function(d) got = got .. d end)
    local t0 = H.now()
    assert.is_true(tls.run(2))
    assert.is_true(H.now() - t0 >= 1.95)
    assert.equal("run", got)
    c:close(); srv:stop()
    assert.has_error(function() tls.run("soon") end)
  end)

  it("tls.set_poll_budget checks its arguments; get_poll_budget reads it back", function()
    local seconds, bytes = tls.get_poll_budget()
    assert.equal(0.0003, seconds)                 -- the defaults: 0.3 ms, one record
    assert.equal(16384, bytes)
    assert.has_error(function() tls.set_poll_budget(0) end)
    assert.has_error(function() tls.set_poll_budget(0.002, 10) end)
    tls.set_poll_budget(0.002, 64 * 1024)
    assert.same({ 0.002, 65536 }, { tls.get_poll_budget() })
    tls.set_poll_budget(0.001)                    -- bytes stay
    assert.same({ 0.001, 65536 }, { tls.get_poll_budget() })
    tls.set_poll_budget(seconds, bytes)
  end)

  it("each helper object can have a budget of its own for its poll()", function()
    local srv = new_server()
    local c = new_client(srv)
    assert.equal(tls.get_poll_budget(), srv:get_poll_budget())
    srv:set_poll_budget(0.001)
    assert.equal(0.001, srv:get_poll_budget())
    assert.equal(tls.get_poll_budget(), c:get_poll_budget())
    assert.has_error(function() c:set_poll_budget(0) end)
    assert.has_error(function() c:set_poll_budget("1") end)
    c:set_poll_budget(0.002)
    assert.truthy(poll_until(function() srv:poll(); c:poll(); return c:get_status() == CONNECTED end, 10))
    srv:set_poll_budget(nil)
    assert.equal(tls.get_poll_budget(), srv:get_poll_budget())
    c:close(); srv:stop()
  end)
end)

describe("handshake steps on worker threads", function()
  local crypto = tls.Crypto.new()
  local rsa_key, rsa_cert

  setup(function()
    rsa_key = assert(crypto:generate_rsa(4096))
    rsa_cert = assert(crypto:generate_self_signed_certificate(rsa_key, "CN=localhost"))
  end)

  -- A server (StreamPeerTLS over TCP) and a client, both over sockets.
  local function pair()
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", srv:get_local_port()))
    assert(H.wait_for(function() tcp:poll(); return srv:is_connection_available() end))
    local stcp = srv:take_connection()
    local server, client = TLS.new(), TLS.new()
    assert(server:accept_stream(stcp, tls.TLSOptions.server(rsa_key, rsa_cert)))
    assert(client:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(rsa_cert)))
    return server, client, srv
  end

  it("run by default, one thread per core; set_worker_threads(0) runs them inline", function()
    assert.is_true(tls.get_worker_threads() >= 1)
    for _, n in ipairs { 0, 2 } do
      local before = tls.get_worker_threads()
      tls.set_worker_threads(n)
      local server, client = pair()
      assert.truthy(H.wait_for(function()
        server:poll(); client:poll()
        return server:get_status() ~= HANDSHAKING and client:get_status() ~= HANDSHAKING
      end, 10))
      assert.equal(CONNECTED, client:get_status(), tostring((client:get_error())))
      assert.equal(CONNECTED, server:get_status())
      assert.is_true(client:put_data("over " .. n))
      assert.equal("over " .. n, server:get_data(#("over " .. n)))
      tls.set_worker_threads(before)
    end
    assert.has_error(function() tls.set_worker_threads(-1) end)
    assert.has_error(function() tls.set_worker_threads(65) end)
  end)

  it("a disconnect during a step takes effect at once and frees the rest after the step", function()
    local server, client = pair()
    server:poll(); client:poll()               -- steps on their way
    client:disconnect_from_stream()
    assert.equal(DISCONNECTED, client:get_status())
    for _ = 1, 200 do server:poll(); client:poll(); H.sleep(0.005)
      if server:get_status() ~= HANDSHAKING then break end end
    assert.are_not.equal(HANDSHAKING, server:get_status())
    assert.is_nil(client:get_stream())
  end)

  it("a peer dropped or closed by hand in the middle of a step is freed safely", function()
    for round = 1, 5 do
      local server, client = pair()
      server:poll(); client:poll()
      if round % 2 == 0 then
        getmetatable(server).__gc(server)     -- waits for the step, then frees
        getmetatable(client).__close(client)
      end
      server, client = nil, nil
      collectgarbage(); collectgarbage()
    end
  end)

  it("blocking writes and reads wait for the steps of the handshake", function()
    local srv = H.s_server("-cert " .. CERTS .. "server.crt -key " .. CERTS .. "server.key")
    finally(srv.stop)
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", srv.port))
    local client = TLS.new()
    local ca = tls.X509Certificate.new()
    assert(ca:load(CERTS .. "ca.crt"))
    assert(client:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(ca)))
    client:set_timeout(10)
    assert.is_true(client:put_data("blocking\n"))   -- finishes the handshake first
    assert.equal(CONNECTED, client:get_status())
    assert.truthy(srv.wait_output("blocking", 5))
    srv.send("reply\n")
    assert.equal("reply\n", client:get_data(6))
  end)
end)

describe("worker threads start when a step is first waited for", function()
  -- In a process of its own (this one has started its pools already):
  -- blocking handshakes take their queued first step back and run it, so
  -- no thread is started; the first non-blocking handshake starts them.
  it("a program that only blocks stays one thread; the first poll starts the pool", function()
    local srv = H.s_server("-cert " .. CERTS .. "server.crt -key " .. CERTS .. "server.key")
    finally(srv.stop)
    local ok, out = H.lua(([[
      local tls = require "tlspeer"
      local TLS = tls.StreamPeerTLS
      local function threads()
        local f = assert(io.open("/proc/self/status"))
        local n = f:read("*a"):match("Threads:%%s*(%%d+)")
        f:close()
        return n
      end
      local base = threads()            -- a sanitizer may have one of its own
      tls.set_worker_threads(2)
      local ca = tls.X509Certificate.new()
      assert(ca:load("%s"))
      local opts = tls.TLSOptions.client(ca)
      local function peer()
        local tcp = tls.StreamPeerTCP.new()
        assert(tcp:connect_to_host("127.0.0.1", %d))
        local t = TLS.new()
        assert(t:connect_to_stream(tcp, "localhost", opts))
        return t
      end
      for i = 1, 3 do
        local t = peer()
        t:set_timeout(10)
        assert(t:put_data("blocking " .. i .. "\n"))
        assert(t:get_status() == TLS.STATUS_CONNECTED)
        t:disconnect_from_stream()
      end
      io.write("blocking:", threads() - base, " ")
      local t = peer()
      local t0 = os.time()
      while t:get_status() == TLS.STATUS_HANDSHAKING and os.time() - t0 < 10 do
        t:poll()
        require("tlspeer.core")._wait({ t }, {}, 0.01)
      end
      assert(t:get_status() == TLS.STATUS_CONNECTED, tostring((t:get_error())))
      io.write("polled:", threads(), "\n")
    ]]):format(CERTS .. "ca.crt", srv.port))
    assert.is_true(ok, out)
    local blocking, polled = out:match("blocking:(%d+) polled:(%d+)")
    assert.equal("0", blocking, out)
    -- Two workers (and, under ThreadSanitizer, its own background thread).
    assert.is_true(tonumber(polled) >= 2, out)
  end)
end)

describe("names looked up on a worker (a stub DNS server in a network namespace)", function()
  local ns = "tlspeer-spec-" .. tostring(os.time() % 100000) .. "-" .. tostring(math.random(1000))
  local stub_pid

  setup(function()
    assert(H.execute("ip netns add " .. ns), "cannot make a network namespace")
    assert(H.execute("ip netns exec " .. ns .. " ip link set lo up"))
    assert(H.execute("mkdir -p /etc/netns/" .. ns))
    H.write("/etc/netns/" .. ns .. "/resolv.conf", "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")
    local dir = H.tmpdir()
    local p = assert(io.popen(("ip netns exec %s python3 scripts/dnsstub.py --delay 1.5 --never never.test "
      .. "--ready %s >/dev/null 2>&1 & echo $!"):format(ns, H.q(dir .. "/ready"))))
    stub_pid = tonumber(p:read("*l"))
    p:close()
    assert(H.wait_for(function() return H.exists(dir .. "/ready") end, 5), "the stub DNS server did not start")
  end)

  teardown(function()
    if stub_pid then H.kill(stub_pid) end
    H.execute("ip netns del " .. ns)
    H.execute("rm -rf /etc/netns/" .. ns)
    H.cleanup()
  end)

  -- Runs Lua code inside the namespace, with the build under test; its
  -- printed lines come back.
  local function in_ns(code)
    local prelude = ("package.path = %q; package.cpath = %q; local tls = require 'tlspeer'; "
      .. "local now = require('tlspeer.core')._now\n"):format(package.path, package.cpath)
    local dir = H.tmpdir()
    H.write(dir .. "/t.lua", prelude .. code)
    return H.run(("ip netns exec %s timeout 30 %s %s"):format(ns, H.LUA, H.q(dir .. "/t.lua")))
  end

  it("connect_to_host returns at once while DNS stalls, and connects after the answer", function()
    local ok, out = in_ns([[
      local srv = assert(tls.listen { port = 0, bind = "127.0.0.1",
        certificate = "certs/server.crt", key = "certs/server.key" })
      srv:on("data_received", function(conn, d) conn:send(d) end)
      local t0 = now()
      local tcp = tls.StreamPeerTCP.new()
      assert(tcp:connect_to_host("game.test", srv:get_local_port()))
      print("call", now() - t0 < 0.2, tcp:get_status(), tcp:is_resolving())
      local http = tls.HTTPClient.new()
      assert(http:connect_to_host("game.test", srv:get_local_port()))
      http:poll()
      print("http", http:get_status())
      local c = tls.connect { host = "game.test", port = srv:get_local_port(), trusted = "certs/ca.crt",
                              common_name = "localhost" }
      local got = ""
      c:on("connection_established", function() c:send("late") end)
      c:on("data_received", function(d) got = got .. d end)
      -- Both lookups stall; each side then goes on by itself: wait for both.
      while (got ~= "late" or tcp:get_status() == tls.StreamPeerTCP.STATUS_CONNECTING)
          and now() - t0 < 10 do
        tls.poll(); tcp:poll()
      end
      print("answered", got, now() - t0 >= 1.4, tcp:get_status())
      -- A lookup that never ends: dropping the peer never waits for it.
      local stuck = tls.StreamPeerTCP.new()
      assert(stuck:connect_to_host("never.test", 443))
      stuck = nil
      local t1 = now()
      collectgarbage(); collectgarbage()
      print("dropped", now() - t1 < 0.2)
    ]])
    assert.is_true(ok, out)
    assert.matches("call\ttrue\t1\ttrue", out)
    assert.matches("http\t1", out)                         -- STATUS_RESOLVING
    assert.matches("answered\tlate\ttrue\t2", out)
    assert.matches("dropped\ttrue", out)
  end)

  it("set_worker_threads() and the process's exit never wait for a stalled lookup", function()
    local ok, out = in_ns([[
      local tcp = tls.StreamPeerTCP.new()
      assert(tcp:connect_to_host("never.test", 443))
      local t = now()
      tls.set_worker_threads(1)
      print("set", now() - t < 0.5)
      tls.set_worker_threads(0)
      tls.set_worker_threads(2)
      local other = tls.StreamPeerTCP.new()
      assert(other:connect_to_host("never.test", 443))
      print("ends with lookups in flight at", now())
    ]])
    local ended = H.now()
    assert.is_true(ok, out)
    assert.matches("set\ttrue", out)
    -- The monotonic clock is the machine's: the child's last word and our
    -- clock after its exit compare.  The resolver gives up after 2 s: an
    -- exit that waited for the lookups would take that long.
    local last = tonumber(out:match("ends with lookups in flight at\t([%d.]+)"))
    assert.truthy(last, out)
    assert.is_true(ended - last < 1.5, ("the exit took %.2f s"):format(ended - last))

  end)

  it("a lookup that fails is STATUS_CANT_RESOLVE for HTTPClient, ERR_CANT_RESOLVE for tls.connect", function()
    local ok, out = in_ns([[
      local http = tls.HTTPClient.new()
      assert(http:connect_to_host("never.test", 443))
      local t0 = now()
      while now() - t0 < 10 and (http:get_status() == 1 or http:get_status() == 3) do
        http:poll(); require("tlspeer.core")._sleep(0.01)
      end
      print("http", http:get_status(), (select(2, http:get_error())))
      local c = tls.connect { host = "never.test", port = 443 }
      print("connect", select(3, c:wait(10)))
    ]])
    assert.is_true(ok, out)
    assert.matches("http\t2\tERR_CANT_RESOLVE", out)       -- STATUS_CANT_RESOLVE
    assert.matches("connect\tERR_CANT_RESOLVE", out)
  end)
end)

describe("idle connections give their record buffers back", function()
  local crypto = tls.Crypto.new()
  local key, cert

  setup(function()
    key = assert(crypto:generate_ec())
    cert = assert(crypto:generate_self_signed_certificate(key, "CN=localhost"))
  end)

  -- A client and a server over TCP sockets in this process, connected.
  local function tcp_pair()
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", srv:get_local_port()))
    assert(H.wait_for(function() tcp:poll(); return srv:is_connection_available() end))
    local server, client = TLS.new(), TLS.new()
    assert(server:accept_stream(srv:take_connection(), tls.TLSOptions.server(key, cert)))
    assert(client:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(cert)))
    assert(H.wait_for(function()
      server:poll(); client:poll()
      return server:get_status() == CONNECTED and client:get_status() == CONNECTED
    end, 10))
    return server, client
  end

  -- Reads exactly n bytes from `to`, polling `from` meanwhile.
  local function read_all(to, from, n)
    local parts, got = {}, 0
    assert(H.wait_for(function()
      from:poll()
      local d = assert(to:get_partial_data(n - got))
      parts[#parts + 1] = d
      got = got + #d
      return got == n
    end, 10))
    return table.concat(parts)
  end

  -- Keeps calling into tlspeer (so sweeps run) for `seconds`.
  local function quiet(seconds, ...)
    local peers = { ... }
    local t0 = H.now()
    while H.now() - t0 < seconds do
      for _, p in ipairs(peers) do p:poll() end
      H.sleep(0.01)
    end
  end

  it("records of every size still go both ways after quiet spells", function()
    local server, client = tcp_pair()
    for round = 1, 3 do
      for _, size in ipairs { 1, 4000, 16384, 70000 } do
        local a, b = H.bytes(size, round * 7 + size), H.bytes(size, round * 11 + size)
        assert.is_true(client:put_data(a))
        assert.equal(a, read_all(server, client, size))
        assert.is_true(server:put_data(b))
        assert.equal(b, read_all(client, server, size))
      end
      quiet(0.6, client, server)                -- quiet: the pages go back
    end
  end)

  it("a record half received when the sweep comes is kept whole", function()
    -- The server reads through a Lua transport that holds the last quarter
    -- of what the client sent until after a quiet spell.
    local a, b = tls.pipe()
    local held, release = {}, false
    local gate = {
      get_partial_data = function(_, n)
        if not release then
          if held[1] then return "" end           -- the rest waits
          local data, msg, code = b:get_partial_data(n)
          if not data then return data, msg, code end
          if #data > 1000 then                  -- hold back the last quarter
            local keep = #data - math.floor(#data / 4)
            held[#held + 1] = data:sub(keep + 1)
            return data:sub(1, keep)
          end
          return data
        end
        if held[1] then return table.remove(held, 1) end
        return b:get_partial_data(n)
      end,
      put_partial_data = function(_, data) return b:put_partial_data(data) end,
    }
    local server, client = TLS.new(), TLS.new()
    assert(server:accept_stream(gate, tls.TLSOptions.server(key, cert)))
    assert(client:connect_to_stream(a, "localhost", tls.TLSOptions.client(cert)))
    release = true                              -- the handshake goes through whole
    assert(H.wait_for(function()
      server:poll(); client:poll()
      return server:get_status() == CONNECTED and client:get_status() == CONNECTED
    end, 10))
    quiet(0.6, client, server)
    release = false
    local msg = H.bytes(16000, 3)                -- one record, most of a buffer
    assert.is_true(client:put_data(msg))
    assert.equal("", server:get_partial_data(16000))  -- part of a record: nothing yet
    quiet(0.6, server)                          -- the sweep finds it half read
    release = true
    assert.equal(msg, read_all(server, client, #msg))
  end)
end)

describe("worker pools after fork()", function()
  local fork = require "spec_fork"

  it("a forked child looks names up and handshakes with pools of its own", function()
    local srv = new_server()
    srv:on("data_received", function(conn, data) conn:send(data) end)
    -- Use the pools in the parent first.
    local c0 = new_client(srv, { host = "localhost" })
    assert.truthy(poll_until(function() return c0:get_status() == CONNECTED end, 10))
    c0:close()
    local dir = H.tmpdir()
    local pid = assert(fork.fork())
    if pid == 0 then
      local ok, err = pcall(function()
        local tcp = tls.StreamPeerTCP.new()
        assert(tcp:connect_to_host("localhost", srv:get_local_port()))
        local t = TLS.new()
        local ca = tls.X509Certificate.new()
        assert(ca:load(CERTS .. "ca.crt"))
        assert(t:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(ca)))
        t:set_timeout(10)
        assert(t:put_data("from the child"))
        H.write(dir .. "/out", assert(t:get_data(14)))
      end)
      if not ok then H.write(dir .. "/out", "error: " .. tostring(err)) end
      fork.exit(ok and 0 or 1)
    end
    -- The parent serves meanwhile.
    assert.truthy(poll_until(function() return H.exists(dir .. "/out") end, 20))
    assert.equal(0, fork.wait(pid), H.read(dir .. "/out"))
    assert.equal("from the child", H.read(dir .. "/out"))
    srv:stop()
  end)
end)
