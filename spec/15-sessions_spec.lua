-- Session resumption: servers issue tickets, client TLSOptions remember them
-- per host and offer them again; and regressions found on the way.
local H = require "helpers"
local tls = H.tls

local TLS13 = tls.mbedtls_version:match("^3%.") ~= nil

local function load(class, path)
  local obj = class.new()
  assert(obj:load(path))
  return obj
end

local key, crt, ca

-- Handshakes a client and a server over tls.pipe(); returns both peers
-- after a short exchange (so TLS 1.3 tickets, sent after the handshake,
-- reach the client).
local function pair(sopts, copts, name)
  local a, b = tls.pipe()
  local s, c = tls.StreamPeerTLS.new(), tls.StreamPeerTLS.new()
  assert(s:accept_stream(a, sopts))
  assert(c:connect_to_stream(b, name or "localhost", copts))
  for _ = 1, 200 do
    s:poll(); c:poll()
    if s:get_status() ~= 1 and c:get_status() ~= 1 then break end
  end
  if s:get_status() == 2 and c:get_status() == 2 then
    assert(s:put_data("ping"))
    for _ = 1, 20 do
      local d = c:get_partial_data(16)
      s:poll()
      if d == "ping" then break end
    end
  end
  return s, c
end

describe("session resumption", function()
  setup(function()
    if not H.exists("certs/server.key") then assert(H.run(H.LUA .. " certs/generate.lua")) end
    key = load(tls.CryptoKey, "certs/server.key")
    crt = load(tls.X509Certificate, "certs/server.crt")
    ca = load(tls.X509Certificate, "certs/ca.crt")
  end)

  it("resumes a second connection made with the same client options", function()
    local sopts = tls.TLSOptions.server(key, crt)
    local copts = tls.TLSOptions.client(ca)
    local _, c1 = pair(sopts, copts)
    assert.equal(2, c1:get_status())
    assert.is_false(c1:is_session_reused())
    local _, c2 = pair(sopts, copts)
    assert.equal(2, c2:get_status())
    assert.is_true(c2:is_session_reused())
    -- A resumed session still knows whom it talks to.
    assert.equal("CN=localhost,O=tlspeer", c2:get_peer_certificate():get_subject())
    assert.equal(TLS13 and "TLSv1.3" or "TLSv1.2", c2:get_tls_version())
    -- Each resumption refills the host's entry with the session it got:
    -- connections after it resume too, with collections in between.
    for i = 3, 6 do
      local _, c = pair(sopts, copts)
      assert.equal(2, c:get_status())
      assert.is_true(c:is_session_reused(), "connection " .. i)
      c:disconnect_from_stream()
      collectgarbage()
    end
  end)

  it("does not resume with other client options, another host name, or tickets off", function()
    local sopts = tls.TLSOptions.server(key, crt)
    local copts = tls.TLSOptions.client(ca)
    pair(sopts, copts)
    local _, other = pair(sopts, tls.TLSOptions.client(ca))
    assert.is_false(other:is_session_reused())
    local _, ip = pair(sopts, copts, "127.0.0.1")
    assert.equal(2, ip:get_status())
    assert.is_false(ip:is_session_reused())
    local plain = tls.TLSOptions.server(key, crt, { session_tickets = false })
    local off = tls.TLSOptions.client(ca)
    pair(plain, off)
    local _, again = pair(plain, off)
    assert.equal(2, again:get_status())
    assert.is_false(again:is_session_reused())
    local nocache = tls.TLSOptions.client(ca, "", { session_tickets = false })
    pair(sopts, nocache)
    local _, fresh = pair(sopts, nocache)
    assert.is_false(fresh:is_session_reused())
  end)

  it("a server with another ticket key falls back to a full handshake", function()
    local copts = tls.TLSOptions.client(ca)
    pair(tls.TLSOptions.server(key, crt), copts)
    local _, c = pair(tls.TLSOptions.server(key, crt), copts)
    assert.equal(2, c:get_status())
    assert.is_false(c:is_session_reused())
  end)

  it("gives openssl s_client tickets it resumes with (-reconnect)", function()
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local sopts = tls.TLSOptions.server(key, crt)
    local cli = H.s_client(("-connect 127.0.0.1:%d -servername localhost -CAfile certs/ca.crt "
      .. "-verify_return_error -tls1_2 -reconnect"):format(srv:get_local_port()), "")
    local ok, err = pcall(function()
      local peers = {}
      H.wait_for(function()
        while srv:is_connection_available() do
          local p = tls.StreamPeerTLS.new()
          p:accept_stream(srv:take_connection(), sopts)
          peers[#peers + 1] = p
        end
        for _, p in ipairs(peers) do p:poll(); p:get_partial_data(1024) end
        return cli.exit_code() ~= nil
      end, 10)
      local out = cli.output()
      local _, reused = out:gsub("Reused, TLSv1%.2", "")
      assert.is_true(#peers >= 6, out)
      assert.equal(5, reused, out)
    end)
    cli.stop()
    srv:stop()
    assert(ok, err)
  end)

  it("rejects a bad session_tickets option", function()
    assert.has_error(function() tls.TLSOptions.server(key, crt, { session_tickets = "yes" }) end)
    assert.has_error(function() tls.TLSOptions.client(ca, "", { session_tickets = 1 }) end)
  end)
end)

describe("regressions", function()
  it("a 2.28 server refusing a client without a certificate tells it (no hang)", function()
    local sopts = tls.TLSOptions.server(key, crt, { trusted_chain = ca })
    local s, c = pair(sopts, tls.TLSOptions.client(ca))
    assert.equal(3, s:get_status())
    -- The client learns it at once (TLS 1.2), or on its next read (TLS 1.3).
    for _ = 1, 50 do
      c:poll(); c:get_partial_data(16)
      if c:get_status() == 3 then break end
    end
    assert.equal(3, c:get_status())
    if not TLS13 then
      assert.matches("handshake failure", (c:get_error()))
    end
  end)

  it("a client limited to TLS 1.2 suites connects to a TLS 1.3-capable server", function()
    local copts = tls.TLSOptions.client(ca, "",
      { ciphersuites = { "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" } })
    local s, c = pair(tls.TLSOptions.server(key, crt), copts)
    assert.equal(2, c:get_status(), tostring((c:get_error())))
    assert.equal("TLSv1.2", c:get_tls_version())
    assert.equal("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", s:get_cipher_suite())
  end)

  it("closing a certificate or key that TLSOptions hold does not break them", function()
    local k = load(tls.CryptoKey, "certs/server.key")
    local c = load(tls.X509Certificate, "certs/server.crt")
    local trust = load(tls.X509Certificate, "certs/ca.crt")
    local sopts = tls.TLSOptions.server(k, c)
    local copts = tls.TLSOptions.client(trust)
    getmetatable(k).__close(k)
    getmetatable(c).__close(c)
    getmetatable(trust).__close(trust)
    assert.error_matches(function() k:get_bits() end, "closed CryptoKey")
    assert.error_matches(function() c:get_subject() end, "closed X509Certificate")
    collectgarbage(); collectgarbage()
    local s2, c2 = pair(sopts, copts)
    assert.equal(2, s2:get_status())
    assert.equal(2, c2:get_status())
    -- A key nobody holds is wiped at once on close.
    local lone = load(tls.CryptoKey, "certs/server.key")
    getmetatable(lone).__close(lone)
    assert.equal("CryptoKey (closed)", tostring(lone))
  end)

  it("empty certificates and bad option types are refused with clear messages", function()
    local empty = tls.X509Certificate.new()
    local r, _, code = tls.TLSOptions.client_unsafe(empty)
    assert.is_nil(r)
    assert.equal("ERR_INVALID_PARAMETER", code)
    r, _, code = tls.TLSOptions.server(key, crt, { trusted_chain = empty })
    assert.is_nil(r)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.error_matches(function() tls.TLSOptions.server(key, crt, { verify = 1 }) end,
      "bad option 'verify'")
    assert.error_matches(function() tls.TLSOptions.server(key, crt, { trusted_chain = "ca.crt" }) end,
      "bad option 'trusted_chain'")
    assert.error_matches(function() tls.TLSOptions.client_unsafe("ca.crt") end,
      "X509Certificate expected")
  end)

  it("get_data on a refused TCP connection says ERR_CANT_CONNECT, as get_error does", function()
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local port = srv:get_local_port()
    srv:stop()
    local tcp = tls.StreamPeerTCP.new()
    tcp:set_timeout(1)
    assert(tcp:connect_to_host("127.0.0.1", port))
    local data, msg, code = tcp:get_data(1)
    assert.is_nil(data)
    assert.equal("ERR_CANT_CONNECT", code)
    assert.matches("refused", msg)
    assert.equal(select(2, tcp:get_error()), code)
  end)
end)

describe("SNI", function()
  it("is sent for host names and not for IP addresses", function()
    local srv = H.s_server("-cert certs/server.crt -key certs/server.key -trace -rev")
    local ok, err = pcall(function()
      local trust = load(tls.X509Certificate, "certs/ca.crt")
      local function hello(name)
        local tcp = tls.StreamPeerTCP.new()
        assert(tcp:connect_to_host("127.0.0.1", srv.port))
        local c = tls.StreamPeerTLS.new()
        c:set_timeout(3)
        assert(c:connect_to_stream(tcp, name, tls.TLSOptions.client(trust)))
        assert(c:put_data("x\n"))
        assert.equal("x\n", c:get_data(2))
        c:disconnect_from_stream()
      end
      hello("localhost")
      assert.truthy(srv.wait_output("server_name"), srv.output())
      local _, before = srv.output():gsub("extension_type=server_name", "")
      assert.matches("localhost", srv.output():match("extension_type=server_name.-\n.-\n.-\n.-\n"))
      local function hellos()
        return select(2, srv.output():gsub("ClientHello, Length", ""))
      end
      local first = hellos()
      assert.is_true(first >= 1, srv.output())
      hello("127.0.0.1")
      assert.truthy(H.wait_for(function() return hellos() >= 2 * first end, 3),
        "the second ClientHello was not traced")
      local _, after = srv.output():gsub("extension_type=server_name", "")
      assert.equal(before, after)
    end)
    srv.stop()
    assert(ok, err)
  end)
end)
