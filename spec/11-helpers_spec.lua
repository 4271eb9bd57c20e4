-- tls.listen / tls.connect: the helpers of the seed examples, with real
-- sockets on loopback, several clients at once, and clients that misbehave.
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"

local CERTS = "certs/"

local function ensure_certs()
  if not H.exists(CERTS .. "server.key") then
    local ok, out = H.run(H.LUA .. " certs/generate.lua")
    assert(ok, out)
  end
end

-- Polls the server and the clients until done() or the time bound.
local function pump(srv, clients, done, seconds)
  local deadline = core._now() + (seconds or 5)
  while core._now() < deadline do
    srv:poll()
    for _, c in ipairs(clients) do c:poll() end
    if done() then return true end
    core._wait({}, {}, 0.002)
  end
  return false
end

local function new_server(extra)
  local opts = { port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt",
                 key = CERTS .. "server.key" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(tls.listen(opts))
end

local function new_client(srv, extra)
  local opts = { host = "localhost", port = srv:get_local_port(), trusted = CERTS .. "ca.crt" }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tls.connect(opts)
end

describe("tls.listen and tls.connect", function()
  setup(ensure_certs)

  it("run the seed's exchange: connect, send, echo, close, in order", function()
    local srv = new_server()
    local log = {}
    srv:on("connection_established", function() log[#log + 1] = "srv established" end)
    srv:on("data_received", function(conn, data)
      log[#log + 1] = "srv got " .. data
      conn:send(data:upper())
    end)
    srv:on("disconnected", function() log[#log + 1] = "srv disconnected" end)
    local c = new_client(srv)
    c:on("connection_established", function()
      log[#log + 1] = "cli established"
      c:send("Hello, secure world!\n")
    end)
    c:on("data_received", function(data)
      log[#log + 1] = "cli got " .. data
      c:close()
    end)
    c:on("disconnected", function() log[#log + 1] = "cli disconnected" end)
    assert.is_true(pump(srv, { c }, function()
      for _, l in ipairs(log) do if l == "srv disconnected" then return true end end
    end))
    srv:stop()
    assert.same({ "cli established", "srv established", "srv got Hello, secure world!\n",
                  "cli got HELLO, SECURE WORLD!\n", "cli disconnected", "srv disconnected" },
                (function()
                  -- The two sides' first events may interleave; fix their order.
                  local t = {}
                  for _, l in ipairs(log) do t[#t + 1] = l end
                  if t[1] == "srv established" then t[1], t[2] = t[2], t[1] end
                  return t
                end)())
  end)

  it("serve many clients at once, each getting its own bytes back", function()
    local srv = new_server()
    srv:on("data_received", function(conn, data) conn:send(data) end)
    local clients, got = {}, {}
    -- Under a sanitizer the crypto is several times slower: fewer clients.
    for i = 1, os.getenv("TLSPEER_SANITIZER") and 6 or 20 do
      local payload = ("client %02d "):format(i) .. H.bytes(20000 + i, i)
      local c = new_client(srv)
      got[i] = {}
      c:on("connection_established", function() c:send(payload) end)
      c:on("data_received", function(data) got[i][#got[i] + 1] = data end)
      clients[i] = { c = c, payload = payload }
    end
    local list = {}
    for i, e in ipairs(clients) do list[i] = e.c end
    assert.is_true(pump(srv, list, function()
      for i, e in ipairs(clients) do
        if #table.concat(got[i]) < #e.payload then return false end
      end
      return true
    end, 20))
    for i, e in ipairs(clients) do
      assert.equal(e.payload, table.concat(got[i]), "client " .. i)
      e.c:close()
    end
    srv:stop()
  end)

  it("keep serving others when one client fails its handshake or sends garbage", function()
    local srv = new_server()
    local failed, served = 0, 0
    srv:on("connection_failed", function() failed = failed + 1 end)
    srv:on("data_received", function(conn, data) conn:send("ok:" .. data) end)
    -- A client that does not trust the server gives up.
    local untrusting = new_client(srv, { trusted = CERTS .. "server.crt" })
    -- A plain TCP client that sends an HTTP request to the TLS port.
    local plain = tls.StreamPeerTCP.new()
    assert(plain:connect_to_host("127.0.0.1", srv:get_local_port()))
    plain:put_data("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    local good = new_client(srv)
    good:on("connection_established", function() good:send("ping") end)
    good:on("data_received", function(data) if data == "ok:ping" then served = served + 1 end end)
    assert.is_true(pump(srv, { untrusting, good }, function()
      return served == 1 and failed >= 2
    end, 10))
    assert.equal(1, served)
    good:close()
    srv:stop()
  end)

  it("drop handshakes that do not finish in time, and still serve a normal client", function()
    local srv = new_server { handshake_timeout = 0.3 }
    local timeouts, served = 0, false
    srv:on("connection_failed", function(_, msg, code)
      if code == "ERR_TIMEOUT" then timeouts = timeouts + 1 end
      assert.matches("did not finish", msg)
    end)
    srv:on("data_received", function(conn) served = true; conn:send("x") end)
    local stalled = {}
    for i = 1, 5 do
      stalled[i] = tls.StreamPeerTCP.new()
      assert(stalled[i]:connect_to_host("127.0.0.1", srv:get_local_port()))
    end
    local good = new_client(srv)
    good:on("connection_established", function() good:send("hi") end)
    assert.is_true(pump(srv, { good }, function() return served and timeouts == 5 end, 5))
    -- The stalled clients see their connection closed.
    for _, s in ipairs(stalled) do
      s:set_timeout(1)
      local data, _, code = s:get_data(1)
      assert.is_nil(data)
      assert.equal("ERR_FILE_EOF", code)
    end
    good:close()
    srv:stop()
  end)

  it("report a raising handler and go on with the loop and the other connections", function()
    local srv = new_server()
    local reports, echoes = {}, 0
    srv:on("error", function(msg) reports[#reports + 1] = msg end)
    srv:on("data_received", function(conn, data)
      if data == "boom" then error("handler exploded") end
      conn:send(data)
    end)
    local a, b = new_client(srv), new_client(srv)
    a:on("connection_established", function() a:send("boom") end)
    b:on("connection_established", function() b:send("fine") end)
    b:on("data_received", function(data) if data == "fine" then echoes = echoes + 1 end end)
    assert.is_true(pump(srv, { a, b }, function() return echoes == 1 and #reports == 1 end))
    assert.matches("handler exploded", reports[1])
    assert.matches("data_received", reports[1])
    -- The raising connection is still served afterwards.
    local again = false
    a:on("data_received", function(data) if data == "later" then again = true end end)
    a:send("later")
    assert.is_true(pump(srv, { a, b }, function() return again end))
    a:close(); b:close(); srv:stop()
  end)

  it("do mutual TLS with paths or loaded objects", function()
    local ca = tls.X509Certificate.new(); assert(ca:load(CERTS .. "ca.crt"))
    local srv = new_server { trusted = ca, verify = "required" }
    local subject
    srv:on("connection_established", function(conn)
      subject = conn:get_peer():get_peer_certificate():get_subject()
    end)
    local key = tls.CryptoKey.new(); assert(key:load(CERTS .. "client.key"))
    local c = new_client(srv, { certificate = CERTS .. "client.crt", key = key })
    assert.is_true(pump(srv, { c }, function() return subject ~= nil end))
    assert.equal("CN=tlspeer client,O=tlspeer", subject)
    c:close()
    -- Without a client certificate the server refuses.  In TLS 1.2 the
    -- client's handshake fails; in TLS 1.3 the client has finished its side
    -- when the server's verdict comes, so it sees the connection end.
    local refused, srv_failed
    local d = new_client(srv)
    d:on("connection_failed", function(msg) refused = msg end)
    d:on("disconnected", function() refused = "disconnected" end)
    srv:on("connection_failed", function(_, msg) srv_failed = msg end)
    assert.is_true(pump(srv, { d }, function() return refused and srv_failed end))
    assert.matches("certificate", srv_failed)
    srv:stop()
  end)

  it("negotiate ALPN and connect unsafely to a self-signed server", function()
    local crypto = tls.Crypto.new()
    local key = crypto:generate_ec()
    local cert = crypto:generate_self_signed_certificate(key, "CN=localhost")
    local srv = new_server { certificate = cert, key = key, alpn = { "game/2", "game/1" } }
    local c = new_client(srv, { trusted = nil, unsafe = true, alpn = { "game/1" } })
    assert.is_true(pump(srv, { c }, function() return c.established end))
    assert.equal("game/1", c:get_peer():get_alpn_protocol())
    c:close()
    -- The same server is not trusted by a safe client.
    local failed
    local d = new_client(srv)
    d:on("connection_failed", function(msg, code) failed = { msg, code } end)
    assert.is_true(pump(srv, { d }, function() return failed ~= nil end))
    assert.matches("not trusted", failed[1])
    assert.equal("ERR_UNAUTHORIZED", failed[2])
    srv:stop()
  end)

  it("wait() returns nil, message, code for a refused or unresolvable server", function()
    local srv = new_server()
    local port = srv:get_local_port()
    srv:stop()                          -- nothing listens there any more
    local c = tls.connect { host = "127.0.0.1", port = port, trusted = CERTS .. "ca.crt" }
    local ok, msg, code = c:wait(2)
    assert.is_nil(ok)
    assert.equal("ERR_CANT_CONNECT", code)
    assert.matches("refused", msg)
    local u = tls.connect { host = "no-such-host.invalid", port = 443 }
    ok, msg, code = u:wait(2)
    assert.is_nil(ok)
    assert.equal("ERR_CANT_RESOLVE", code)
    local events = 0
    u:on("connection_failed", function() events = events + 1 end)
    u:poll(); u:poll()
    assert.equal(0, events, "a failure already reported by wait() is reported once")
  end)

  it("wait() and run() against a server in another process", function()
    local script = [[
      local tls = require "tlspeer"
      local srv = assert(tls.listen{ port = 0, bind = "127.0.0.1",
        certificate = "certs/server.crt", key = "certs/server.key" })
      io.stdout:write(srv:get_local_port(), "\n"); io.stdout:flush()
      srv:on("data_received", function(conn, data) conn:send("echo " .. data) end)
      srv:on("disconnected", function() srv:stop() end)
      srv:run(10)
    ]]
    local path = H.write(os.tmpname(), "package.path='lua/?.lua;lua/?/init.lua;'..package.path\n" ..
      "package.cpath='" .. package.cpath:gsub("'", "") .. "'\n" .. script)
    local p = assert(io.popen(H.LUA .. " " .. H.q(path) .. "; echo \"exit $?\""))
    local port = H.tointeger(tonumber(p:read("*l")))
    local c = tls.connect { host = "localhost", port = port, trusted = CERTS .. "ca.crt" }
    assert.is_true(c:wait(5))
    local got
    c:on("data_received", function(data) got = data; c:close() end)
    assert.is_true(c:send("abc"))
    local t0 = core._now()
    c:run(5)
    assert.equal("echo abc", got)
    assert.is_true(core._now() - t0 < 4)
    assert.matches("exit 0\n$", p:read("*a"))   -- (the exit status: 5.1's close() has none)
    p:close()
    os.remove(path)
  end)

  -- (tostring, and closing with <close>: spec/90-lua54_close_spec.lua)

  it("check their arguments", function()
    assert.has_error(function() tls.listen() end)
    assert.has_error(function() tls.listen { port = -1, certificate = "x", key = "y" } end)
    assert.has_error(function() tls.listen { port = 0 } end)
    assert.has_error(function() tls.listen { port = 0, certificate = 1, key = {} } end)
    assert.has_error(function() tls.connect { host = "localhost" } end)
    assert.has_error(function() tls.connect { host = 1, port = 1 } end)
    assert.has_error(function() tls.connect { host = "h", port = 1, certificate = "c" } end)
    local srv = new_server()
    assert.has_error(function() srv:on("no_such_event", function() end) end)
    assert.has_error(function() srv:on("data_received", "not a function") end)
    srv:stop()
  end)

  it("return nil, message, code for missing files and a port in use", function()
    local r, msg, code = tls.listen { port = 0, certificate = "certs/missing.crt", key = CERTS .. "server.key" }
    assert.is_nil(r)
    assert.matches("missing.crt", msg)
    assert.equal("ERR_FILE_NOT_FOUND", code)
    local srv = new_server()
    r, msg, code = tls.listen { port = srv:get_local_port(), bind = "127.0.0.1",
                                certificate = CERTS .. "server.crt", key = CERTS .. "server.key" }
    assert.is_nil(r)
    assert.equal("ERR_ALREADY_IN_USE", code)
    srv:stop()
    -- A client with a bad trusted path fails through its event.
    local c = tls.connect { host = "localhost", port = 1, trusted = "certs/missing.crt" }
    local failed
    c:on("connection_failed", function(m, cd) failed = { m, cd } end)
    assert.is_false(c:poll())
    assert.equal("ERR_FILE_NOT_FOUND", failed[2])
  end)
end)
