-- StreamPeerTLS as a client against the real `openssl s_server`, started by
-- the spec on 127.0.0.1 with a free port: certificate kinds (EC, RSA, a
-- chain), verification failures (untrusted, wrong name, expired), mutual
-- TLS, ALPN, protocol versions, data both ways, close_notify, and faults
-- of the transport (refused, unresolvable, closed, garbage, silent, a Lua
-- stream that raises).  Runs against mbedtls 2.28 (TLS 1.2) and 3.6 (also
-- TLS 1.3): tls.mbedtls_version decides what to expect.
local H = require "helpers"
local tls = H.tls
local TCP, TLS, Options = tls.StreamPeerTCP, tls.StreamPeerTLS, tls.TLSOptions
local X509, Key = tls.X509Certificate, tls.CryptoKey

local HANDSHAKING, CONNECTED, DISCONNECTED, ERROR, MISMATCH =
  TLS.STATUS_HANDSHAKING, TLS.STATUS_CONNECTED, TLS.STATUS_DISCONNECTED,
  TLS.STATUS_ERROR, TLS.STATUS_ERROR_HOSTNAME_MISMATCH

local HAS_TLS13 = tls.mbedtls_version:match("^3%.") ~= nil
local DEFAULT_VERSION = HAS_TLS13 and "TLSv1.3" or "TLSv1.2"

local crypto = H.crypto()

local function load_cert(path)
  local c = X509.new()
  assert(c:load(path))
  return c
end

local function load_key(path)
  local k = Key.new()
  assert(k:load(path))
  return k
end

-- "YYYYMMDDhhmmss" `days` from now.
local function stamp(days)
  return os.date("!%Y%m%d%H%M%S", os.time() + math.floor(days * 86400))
end

-- Objects, s_servers and TCPServers of the running spec, closed after it
-- even when it fails.
local opened, servers = {}, {}
local function track(o)
  opened[#opened + 1] = o
  return o
end

local function s_server(args)
  local h = H.s_server(args)
  servers[#servers + 1] = h
  return h
end

after_each(function()
  for i = #servers, 1, -1 do
    servers[i].stop()
    servers[i] = nil
  end
  for i = #opened, 1, -1 do
    getmetatable(opened[i]).__close(opened[i])
    opened[i] = nil
  end
end)

-- Material written to a temporary folder once for the file.
local dir, ca, ca_key, files

lazy_setup(function()
  dir = H.tmpdir()
  ca, ca_key = load_cert("certs/ca.crt"), load_key("certs/ca.key")
  files = {}
  local function save(name, key, cert)
    assert(key:save(dir .. "/" .. name .. ".key"))
    assert(cert:save(dir .. "/" .. name .. ".crt"))
    files[name] = ("-cert %s/%s.crt -key %s/%s.key"):format(dir, name, dir, name)
    return cert
  end
  local san = { san = { "localhost", "127.0.0.1" } }

  -- RSA server certificate from the dev CA.
  local rsa = assert(crypto:generate_rsa(2048))
  save("rsa", rsa, assert(crypto:issue_certificate(rsa, "CN=localhost,O=tlspeer rsa",
    ca_key, ca, stamp(-1), stamp(30), san)))

  -- root -> intermediate -> server
  local root_key, inter_key, leaf_key =
    assert(crypto:generate_ec()), assert(crypto:generate_ec()), assert(crypto:generate_ec())
  local root = assert(crypto:generate_self_signed_certificate(root_key,
    "CN=tlspeer spec root", stamp(-1), stamp(30), { ca = true }))
  local inter = assert(crypto:issue_certificate(inter_key,
    "CN=tlspeer spec intermediate", root_key, root, stamp(-1), stamp(30), { ca = true }))
  save("leaf", leaf_key, assert(crypto:issue_certificate(leaf_key,
    "CN=localhost,O=tlspeer chain", inter_key, inter, stamp(-1), stamp(30), san)))
  assert(root:save(dir .. "/root.crt"))
  assert(inter:save(dir .. "/inter.crt"))
  files.root = root

  -- Expired, from the dev CA.
  local old = assert(crypto:generate_ec())
  save("expired", old, assert(crypto:issue_certificate(old, "CN=localhost,O=tlspeer old",
    ca_key, ca, "20200101000000", "20210101000000", san)))

  -- Self-signed.
  local self_key = assert(crypto:generate_ec())
  files.self_cert = save("self", self_key, assert(crypto:generate_self_signed_certificate(
    self_key, "CN=localhost,O=tlspeer self", stamp(-1), stamp(30))))

  -- Some other CA, which signed none of the above.
  local other_key = assert(crypto:generate_ec())
  files.other_ca = assert(crypto:generate_self_signed_certificate(other_key,
    "CN=someone else's CA", stamp(-1), stamp(30), { ca = true }))
end)

lazy_teardown(function() H.cleanup() end)

local EC = "-cert certs/server.crt -key certs/server.key"

-- Connects a TLS client to 127.0.0.1:port as `name`; returns the peer and
-- its status once the handshake ended (bounded).
local function connect(port, name, options, timeout)
  local tcp = track(TCP.new())
  assert(tcp:connect_to_host("127.0.0.1", port))
  local peer = track(TLS.new())
  assert(peer:connect_to_stream(tcp, name, options))
  return peer, H.handshake(peer, timeout or 5), tcp
end

local function trusting(chain, override, opts)
  return assert(Options.client(chain or ca, override, opts))
end

-- Reads exactly n bytes (bounded by the peer's timeout).
local function read(peer, n)
  peer:set_timeout(3)
  return assert(peer:get_data(n))
end

-- Echo through `s_server -rev`: the line comes back reversed.
local function assert_echo(peer, line)
  assert.is_true(peer:put_data(line .. "\n"))
  assert.equal(line:reverse() .. "\n", read(peer, #line + 1))
end

-- Polls a connected peer until it leaves CONNECTED (bounded).
local function until_not_connected(peer, timeout)
  H.wait_for(function()
    peer:poll()
    return peer:get_status() ~= CONNECTED
  end, timeout or 3)
  return peer:get_status()
end

describe("StreamPeerTLS client against openssl s_server", function()

  it("has Godot's status constants", function()
    assert.same({ 0, 1, 2, 3, 4 }, { DISCONNECTED, HANDSHAKING, CONNECTED, ERROR, MISMATCH })
  end)

  it("connects to an EC server, exchanges data both ways and sends close_notify", function()
    local srv = s_server(EC)
    local peer, st, tcp = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    assert.is_nil(peer:get_error())
    assert.equal(DEFAULT_VERSION, peer:get_tls_version())
    local suite = peer:get_cipher_suite()
    assert.matches("^TLS_[A-Z0-9_]+$", suite)
    if peer:get_tls_version() == "TLSv1.2" then
      assert.matches("^TLS_ECDHE_ECDSA_WITH_", suite)
    else
      assert.is_nil(suite:match("_WITH_"))
    end
    assert.is_nil(peer:get_alpn_protocol())
    local cert = assert(peer:get_peer_certificate())
    assert.equal(load_cert("certs/server.crt"):get_subject(), cert:get_subject())
    assert.equal(load_cert("certs/server.crt"):get_fingerprint(), cert:get_fingerprint())
    assert.equal(tcp, peer:get_stream())
    assert.matches("^StreamPeerTLS %(connected to localhost 127%.0%.0%.1:" .. srv.port,
                   tostring(peer))

    -- client -> server: s_server prints what it receives.
    assert.is_true(peer:put_data("hello from tlspeer\n"))
    assert(srv.wait_output("hello from tlspeer"), srv.output())
    -- server -> client: s_server sends what it reads on its stdin.
    srv.send("hello from s_server\n")
    assert.equal("hello from s_server\n", read(peer, 20))
    assert.equal(0, peer:get_available_bytes())
    -- Typed methods go through TLS too.
    assert.is_true(peer:put_utf8_string("✓"))
    assert(srv.wait_output("\3\0\0\0✓"), srv.output())

    peer:disconnect_from_stream()
    assert.equal(DISCONNECTED, peer:get_status())
    assert.is_nil(peer:get_stream())
    -- s_server saw a close_notify ("DONE"), not an unexpected EOF.
    assert(srv.wait_output("DONE\n"), srv.output())
    assert.is_nil(srv.output():match("unexpected eof"))
    assert.equal("StreamPeerTLS (disconnected)", tostring(peer))
  end)

  it("echoes through s_server -rev, with get_partial_data in a poll loop", function()
    local srv = s_server(EC .. " -rev")
    local peer, st = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    assert_echo(peer, "hello tlspeer")
    local line = H.hex(H.bytes(3000, 7))    -- several records
    assert.is_true(peer:put_data(line .. "\n"))
    local parts, got = {}, 0
    assert(H.wait_for(function()
      peer:poll()
      local d = assert(peer:get_partial_data(#line + 1 - got))
      parts[#parts + 1] = d
      got = got + #d
      return got == #line + 1
    end, 5))
    assert.equal(line:reverse() .. "\n", table.concat(parts))
  end)

  it("sees the server closing: ERR_FILE_EOF and STATUS_DISCONNECTED", function()
    local srv = s_server(EC)
    local peer, st = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    srv.send("last words\n")
    assert.equal("last words\n", read(peer, 11))
    srv.send("q\n")                     -- s_server drops the connection
    peer:set_timeout(3)
    local t0 = H.now()
    local v, msg, code = peer:get_data(1)
    assert.is_nil(v)
    assert.equal("ERR_FILE_EOF", code)
    assert.matches("closed", msg)
    assert.is_true(H.now() - t0 < 2.5)
    assert.equal(DISCONNECTED, peer:get_status())
  end)

  it("connects to an RSA server certificate", function()
    local srv = s_server(files.rsa .. " -rev")
    local peer, st = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    assert.equal("rsa", peer:get_peer_certificate():get_public_key():get_type())
    assert.matches("O=tlspeer rsa", peer:get_peer_certificate():get_subject())
    if peer:get_tls_version() == "TLSv1.2" then
      assert.matches("^TLS_ECDHE_RSA_WITH_", peer:get_cipher_suite())
    end
    assert_echo(peer, "rsa works")
  end)

  it("verifies a chain sent by the server up to the trusted root", function()
    local srv = s_server(files.leaf .. " -rev -cert_chain " .. dir .. "/inter.crt")
    local peer, st = connect(srv.port, "localhost", trusting(files.root))
    assert.equal(CONNECTED, st, peer:get_error())
    assert.matches("O=tlspeer chain", peer:get_peer_certificate():get_subject())
    assert_echo(peer, "chain works")
  end)

  it("fails when the server leaves out the intermediate", function()
    local srv = s_server(files.leaf)
    local peer, st = connect(srv.port, "localhost", trusting(files.root))
    assert.equal(ERROR, st)
    local msg, code = peer:get_error()
    assert.matches("not trusted", msg)
    assert.equal("ERR_UNAUTHORIZED", code)
  end)

  it("does mutual TLS with opts.certificate and opts.key", function()
    local srv = s_server(EC .. " -Verify 1 -CAfile certs/ca.crt")
    local opts = trusting(nil, nil, { certificate = load_cert("certs/client.crt"),
                                      key = load_key("certs/client.key") })
    local peer, st = connect(srv.port, "localhost", opts)
    assert.equal(CONNECTED, st, peer:get_error())
    -- The server accepted it (with TLS 1.3 it checks after our Finished).
    assert.is_true(peer:put_data("with a client certificate\n"))
    assert(srv.wait_output("with a client certificate"), srv.output())
    assert.matches("tlspeer client", srv.output())
    assert.equal(CONNECTED, peer:get_status())
  end)

  -- Without a client certificate: TLS 1.2 fails in the handshake; a TLS 1.3
  -- client has finished when the server's alert comes, and sees it next.
  -- Regression: that late alert was reported as "the peer sent a fatal
  -- alert (116)", without saying it was about a certificate.
  for _, forced in ipairs { "", " -tls1_2" } do
    it("regression: a 'certificate required' alert after a TLS 1.3 handshake is named"
       .. " (mutual TLS without a client certificate" .. forced .. ")", function()
      local srv = s_server(EC .. " -Verify 1 -CAfile certs/ca.crt" .. forced)
      local peer, st = connect(srv.port, "localhost", trusting())
      local tls13 = HAS_TLS13 and forced == ""
      if tls13 and st == CONNECTED then
        st = until_not_connected(peer)
      end
      assert.equal(ERROR, st)
      if not tls13 then
        assert.matches("^TLS handshake failed", (peer:get_error()))
      end
      local msg, code = peer:get_error()
      assert.matches("alert", msg)
      assert.matches("certificate", msg)
      assert.matches(tls13 and "certificate required" or "handshake failure", msg)
      assert.matches("the server", msg)
      assert.equal("ERR_CONNECTION_ERROR", code)
      local v, msg2, code2 = peer:get_data(1)
      assert.is_nil(v)
      assert.equal(msg, msg2)
      assert.equal(code, code2)
    end)
  end

  it("negotiates ALPN", function()
    local srv = s_server(EC .. " -alpn http/1.1")
    local peer, st = connect(srv.port, "localhost",
                             trusting(nil, nil, { alpn = { "h2", "http/1.1" } }))
    assert.equal(CONNECTED, st, peer:get_error())
    assert.equal("http/1.1", peer:get_alpn_protocol())
    peer:disconnect_from_stream()     -- s_server serves one at a time
    -- A client that offers none gets none.
    local plain, st2 = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st2, plain:get_error())
    assert.is_nil(plain:get_alpn_protocol())
  end)

  it("speaks TLS 1.2 to a TLS 1.2-only server", function()
    local srv = s_server(EC .. " -tls1_2 -rev")
    local peer, st = connect(srv.port, "localhost", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    assert.equal("TLSv1.2", peer:get_tls_version())
    assert.matches("^TLS_ECDHE_ECDSA_WITH_", peer:get_cipher_suite())
    assert.matches("TLSv1%.2", tostring(peer))
    assert_echo(peer, "one point two")
  end)

  it("uses TLS 1.3 where mbedtls has it, and min_version = '1.3' accordingly", function()
    local opts, msg, code = Options.client(ca, nil, { min_version = "1.3" })
    if not HAS_TLS13 then
      assert.is_nil(opts)
      assert.equal("ERR_UNAVAILABLE", code)
      assert.matches("1%.3", msg)
      assert.matches(tls.mbedtls_version, msg, 1, true)
      -- The default is TLS 1.2 there, even against a TLS 1.3 server.
      local srv = s_server(EC .. " -tls1_3")
      local peer, st = connect(srv.port, "localhost", trusting())
      assert.equal(ERROR, st)
      assert.matches("TLS handshake failed", (peer:get_error()))
      return
    end
    assert(opts, msg)
    local srv = s_server(EC .. " -rev")
    local peer, st = connect(srv.port, "localhost", opts)
    assert.equal(CONNECTED, st, peer:get_error())
    assert.equal("TLSv1.3", peer:get_tls_version())
    local suite = peer:get_cipher_suite():gsub("CHACHA20_POLY1305", "AES_256_GCM")
    assert.matches("^TLS_AES_%d+_GCM_SHA%d+$", suite)
    assert_echo(peer, "one point three")
    -- A TLS 1.2-only server is refused.
    local old = s_server(EC .. " -tls1_2")
    local p2, st2 = connect(old.port, "localhost", opts)
    assert.equal(ERROR, st2)
    assert.matches("TLS handshake failed", (p2:get_error()))
  end)

  -- ------------------------------------------------------ verification

  it("rejects a certificate from a CA it does not trust", function()
    local srv = s_server(EC)
    local peer, st = connect(srv.port, "localhost", trusting(files.other_ca))
    assert.equal(ERROR, st)
    local msg, code = peer:get_error()
    assert.matches("not trusted", msg)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.is_nil(peer:get_peer_certificate())
    assert.is_nil(peer:get_cipher_suite())
    assert.is_nil(peer:get_tls_version())
    assert.matches("^StreamPeerTLS %(error: .*not trusted", tostring(peer))
    local v, msg2, code2 = peer:get_data(1)
    assert.is_nil(v)
    assert.equal(msg, msg2)
    assert.equal("ERR_UNAUTHORIZED", code2)
    local n, _, code3 = peer:put_data("x")
    assert.is_nil(n)
    assert.equal("ERR_UNAUTHORIZED", code3)
  end)

  it("verifies against the default CA bundle when no options are given", function()
    local srv = s_server(EC)
    local tcp = track(TCP.new())
    assert(tcp:connect_to_host("127.0.0.1", srv.port))
    local peer = track(TLS.new())
    assert(peer:connect_to_stream(tcp, "localhost"))
    assert.equal(ERROR, H.handshake(peer, 5))
    assert.matches("not trusted", (peer:get_error()))
  end)

  it("gives STATUS_ERROR_HOSTNAME_MISMATCH for a wrong name", function()
    local srv = s_server(EC)
    local peer, st = connect(srv.port, "wrong.example", trusting())
    assert.equal(MISMATCH, st)
    local msg, code = peer:get_error()
    assert.matches("wrong.example", msg, 1, true)
    assert.matches("localhost", msg, 1, true)        -- what it is for
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("hostname mismatch", tostring(peer))
  end)

  it("matches an IP address against the certificate's IP SAN", function()
    local srv = s_server(EC .. " -rev")
    local peer, st = connect(srv.port, "127.0.0.1", trusting())
    assert.equal(CONNECTED, st, peer:get_error())
    assert_echo(peer, "by address")
    peer:disconnect_from_stream()     -- s_server serves one at a time
    -- Another address is a mismatch, even though the socket is the same.
    local p2, st2 = connect(srv.port, "127.0.0.2", trusting())
    assert.equal(MISMATCH, st2)
    assert.matches("127.0.0.2", (p2:get_error()), 1, true)
  end)

  it("checks the common_name_override instead of the given name", function()
    local srv = s_server(EC)
    local opts = trusting(nil, "localhost")
    assert.equal("localhost", opts:get_common_name_override())
    local peer, st = connect(srv.port, "wrong.example", opts)
    assert.equal(CONNECTED, st, peer:get_error())
    peer:disconnect_from_stream()     -- s_server serves one at a time
    local p2, st2 = connect(srv.port, "localhost", trusting(nil, "wrong.example"))
    assert.equal(MISMATCH, st2)
    assert.matches("wrong.example", (p2:get_error()), 1, true)
  end)

  it("rejects an expired certificate", function()
    local srv = s_server(files.expired)
    local peer, st = connect(srv.port, "localhost", trusting())
    assert.equal(ERROR, st)
    local msg, code = peer:get_error()
    assert.matches("expired", msg)
    assert.matches("2021", msg)
    assert.equal("ERR_UNAUTHORIZED", code)
  end)

  it("client_unsafe() connects to a self-signed server under any name", function()
    local srv = s_server(files.self .. " -rev")
    local unsafe = assert(Options.client_unsafe())
    assert.is_true(unsafe:is_unsafe_client())
    local peer, st = connect(srv.port, "not-the-name.example", unsafe)
    assert.equal(CONNECTED, st, peer:get_error())
    assert.equal(files.self_cert:get_fingerprint(),
                 peer:get_peer_certificate():get_fingerprint())
    assert_echo(peer, "unsafe but working")
    peer:disconnect_from_stream()     -- s_server serves one at a time
    -- The safe client refuses the same server, and trusts it when told to.
    local p2, st2 = connect(srv.port, "localhost", trusting())
    assert.equal(ERROR, st2)
    assert.matches("not trusted", (p2:get_error()))
    local p3, st3 = connect(srv.port, "localhost", trusting(files.self_cert))
    assert.equal(CONNECTED, st3, p3:get_error())
  end)

  -- ------------------------------------------------------------- faults

  it("fails a refused connection with a message that says so", function()
    local port = H.free_port()
    local tcp = track(TCP.new())
    tcp:connect_to_host("127.0.0.1", port)   -- may fail at once or later
    local peer = track(TLS.new())
    local t0 = H.now()
    assert(peer:connect_to_stream(tcp, "localhost", trusting()))
    assert.equal(ERROR, H.handshake(peer, 3))
    local msg, code = peer:get_error()
    assert.matches("[Rr]efused", msg)
    assert.equal("ERR_CANT_CONNECT", code)      -- as StreamPeerTCP, tls.connect, HTTPClient say
    assert.is_true(H.now() - t0 < 2)
  end)

  it("fails over an unresolvable host with the resolver's reason", function()
    local tcp = track(TCP.new())
    assert.is_true(tcp:connect_to_host("no-such-host.invalid", 443))   -- looked up on a worker
    local peer = track(TLS.new())
    assert(peer:connect_to_stream(tcp, "no-such-host.invalid", trusting()))
    assert.equal(ERROR, H.handshake(peer, 2))
    local msg = peer:get_error()
    assert.matches("resolve", msg)
    assert.matches("no-such-host.invalid", msg, 1, true)
  end)

  -- A TCPServer in the spec plays the broken server.
  local function fault_server()
    local srv = track(tls.TCPServer.new())
    assert(srv:listen(0, "127.0.0.1"))
    local tcp = track(TCP.new())
    assert(tcp:connect_to_host("127.0.0.1", srv:get_local_port()))
    assert(H.wait_for(function() return srv:is_connection_available() end, 3))
    local conn = track(assert(srv:take_connection()))
    return conn, tcp
  end

  it("fails cleanly when the server closes right after accepting", function()
    for _, early in ipairs { true, false } do
      local conn, tcp = fault_server()
      if early then conn:disconnect_from_host() end  -- before the ClientHello
      local peer = track(TLS.new())
      local t0 = H.now()
      assert(peer:connect_to_stream(tcp, "localhost", trusting()))
      if not early then
        H.wait_for(function() return conn:get_available_bytes() > 0 end, 2)
        conn:disconnect_from_host()                  -- ClientHello unread
      end
      assert.equal(ERROR, H.handshake(peer, 3))
      local msg, code = peer:get_error()
      assert.matches("^TLS handshake failed: ", msg)
      assert.is_truthy(msg:match("closed") or msg:match("reset"), msg)
      assert.equal("ERR_CONNECTION_ERROR", code)
      assert.is_true(H.now() - t0 < 2)
    end
  end)

  it("fails cleanly when the server answers with something that is not TLS", function()
    for _, garbage in ipairs { "HTTP/1.1 400 Bad Request\r\n\r\n",
                               "\21\3\3\0\2\2\40" .. H.bytes(60, 99),
                               H.bytes(200, 4242) } do
      local conn, tcp = fault_server()
      local peer = track(TLS.new())
      local t0 = H.now()
      assert(peer:connect_to_stream(tcp, "localhost", trusting()))
      assert.is_true(conn:put_data(garbage))
      local st = H.handshake(peer, 3, function() conn:get_partial_data(4096) end)
      assert.equal(ERROR, st)
      local msg, code = peer:get_error()
      assert.matches("^TLS handshake failed: .", msg)
      assert.is_string(code)
      assert.is_true(H.now() - t0 < 2)
      if garbage:match("^HTTP") then
        assert.matches("not speak TLS", msg)
      end
    end
  end)

  it("stays HANDSHAKING with a silent server, and get_data times out", function()
    local conn, tcp = fault_server()
    local peer = track(TLS.new())
    assert(peer:connect_to_stream(tcp, "localhost", trusting()))
    local t0 = H.now()
    while H.now() - t0 < 0.3 do
      peer:poll()
      assert.equal(HANDSHAKING, peer:get_status())
      assert.equal("", peer:get_partial_data(10))
      assert.equal(0, peer:put_partial_data("early"))
      H.sleep(0.01)
    end
    assert.matches("^StreamPeerTLS %(handshaking with localhost", tostring(peer))
    peer:set_timeout(0.3)
    t0 = H.now()
    local v, msg, code = peer:get_data(1)
    local took = H.now() - t0
    assert.is_nil(v)
    assert.equal("ERR_TIMEOUT", code)
    assert.matches("handshake", msg)
    assert.is_true(took >= 0.28 and took < 1.5, "took " .. took)
    t0 = H.now()
    v, _, code = peer:put_data("x")
    assert.is_nil(v)
    assert.equal("ERR_TIMEOUT", code)
    assert.is_true(H.now() - t0 < 1.5)
    assert.equal(HANDSHAKING, peer:get_status())
    -- The ClientHello did reach the server.
    assert.equal(22, conn:get_u8())             -- a handshake record
  end)

  it("fails cleanly when a Lua stream raises, with the raised message", function()
    for _, which in ipairs { "get_partial_data", "put_partial_data" } do
      local stream = {
        sent = {},
        get_partial_data = function() return "" end,
        put_partial_data = function(self, s)
          self.sent[#self.sent + 1] = s
          return #s
        end,
      }
      stream[which] = function() error("the transport broke: " .. which) end
      local peer = track(TLS.new())
      local ok = peer:connect_to_stream(stream, "localhost", trusting())
      assert.is_true(ok)
      assert.equal(ERROR, H.handshake(peer, 2))
      local msg, code = peer:get_error()
      assert.matches("the transport broke: " .. which, msg, 1, true)
      assert.equal("ERR_CONNECTION_ERROR", code)
      assert.equal(stream, peer:get_stream())
      -- Still a working object: more calls answer, nothing crashes.
      local v = peer:get_partial_data(1)
      assert.is_nil(v)
      peer:poll()
      assert.equal(ERROR, peer:get_status())
      peer:disconnect_from_stream()
      assert.equal(DISCONNECTED, peer:get_status())
      if which == "get_partial_data" then
        assert.is_true(#stream.sent > 0)       -- the ClientHello went out
      end
    end
  end)
end)
