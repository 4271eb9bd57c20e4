-- StreamPeerTLS as a server: our TCPServer + accept_stream against the real
-- `openssl s_client`, and our client against our server over TCP and over
-- tls.pipe() (both ends polled in one loop).
local H = require "helpers"
local tls = H.tls

local TLS = tls.StreamPeerTLS
local HANDSHAKING, CONNECTED = TLS.STATUS_HANDSHAKING, TLS.STATUS_CONNECTED
local ERROR, DISCONNECTED = TLS.STATUS_ERROR, TLS.STATUS_DISCONNECTED
local HAS_TLS13 = not tls.mbedtls_version:match("^2%.")
local DEFAULT_VERSION = HAS_TLS13 and "TLSv1.3" or "TLSv1.2"

local function load_key(path)
  local k = tls.CryptoKey.new()
  assert(k:load(path))
  return k
end

local function load_cert(path)
  local c = tls.X509Certificate.new()
  assert(c:load(path))
  return c
end

local function sha256(s)
  local h = tls.HashingContext.new()
  assert(h:start(tls.HashingContext.HASH_SHA256))
  assert(h:update(s))
  return H.hex(h:finish())
end

local CA, SKEY, SCERT, CKEY, CCERT

-- Everything started in the background, stopped after each spec even when
-- it fails.
local running = {}
local function s_client(args, input)
  local h = H.s_client(args, input)
  running[#running + 1] = h
  return h
end

setup(function()
  for _, f in ipairs { "ca.crt", "server.key", "server.crt", "client.key", "client.crt" } do
    assert(H.exists("certs/" .. f), "certs/" .. f .. " is missing: run `make certs`")
  end
  CA = load_cert("certs/ca.crt")
  SKEY, SCERT = load_key("certs/server.key"), load_cert("certs/server.crt")
  CKEY, CCERT = load_key("certs/client.key"), load_cert("certs/client.crt")
end)

after_each(function()
  for i = #running, 1, -1 do
    running[i].stop()
    running[i] = nil
  end
end)

teardown(function() H.cleanup() end)

-- A listening TCPServer on 127.0.0.1, port 0.
local function listener()
  local srv = tls.TCPServer.new()
  assert(srv:listen(0, "127.0.0.1"))
  return srv, srv:get_local_port()
end

-- Waits (bounded) for a connection on srv and takes it.  `client` is an
-- s_client handle whose output explains a failure.
local function take(srv, client)
  local ok = H.wait_for(function()
    return srv:is_connection_available() or (client and client.exit_code())
  end, 5)
  assert(ok and srv:is_connection_available(),
         "no connection arrived" .. (client and (":\n" .. client.output()) or ""))
  return assert(srv:take_connection())
end

-- s_client against 127.0.0.1:port with the dev CA as its only trust.
local function sclient_args(port, extra)
  return ("-connect 127.0.0.1:%d -servername localhost -CAfile certs/ca.crt "
          .. "-verify_return_error -ign_eof %s"):format(port, extra or "")
end

-- Runs our server with `options` against s_client started with `extra`
-- arguments and `input`; returns the server peer (after its handshake),
-- the s_client handle and the TCP stream.
local function serve(options, extra, input)
  local srv, port = listener()
  local client = s_client(sclient_args(port, extra), input or "")
  local tcp = take(srv, client)
  srv:stop()
  local peer = TLS.new()
  assert.is_true(peer:accept_stream(tcp, options))
  H.handshake(peer, 5)
  return peer, client, tcp
end

-- Reads until `pattern` is in what arrived (bounded); returns it all.
local function read_until(peer, pattern, timeout)
  local got = {}
  H.wait_for(function()
    peer:poll()
    local d, msg = peer:get_partial_data(4096)
    if d == nil then error("get_partial_data failed: " .. tostring(msg)) end
    got[#got + 1] = d
    return table.concat(got):find(pattern)
  end, timeout or 5)
  return table.concat(got)
end

-- Reads a line from s_client, answers, closes, and returns s_client's
-- exit code and output.
local function echo_once(peer, client)
  local line = read_until(peer, "\n")
  assert.equal("ping from s_client\n", line)
  assert.is_true(peer:put_data("pong from tlspeer\n"))
  peer:disconnect_from_stream()
  local rc = client.wait(5)
  return rc, client.output()
end

local function server_options(opts)
  return assert(tls.TLSOptions.server(SKEY, SCERT, opts))
end

describe("StreamPeerTLS server against openssl s_client", function()
  it("completes the handshake and data flows both ways", function()
    local peer, client = serve(server_options(), "", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    assert.equal(DEFAULT_VERSION, peer:get_tls_version())
    assert.is_nil(peer:get_peer_certificate())      -- no client certificate
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("pong from tlspeer", out, 1, true)
    assert.matches("Verify return code: 0 (ok)", out, 1, true)
    assert.equal(DISCONNECTED, peer:get_status())
  end)

  it("sends the whole chain: leaf + intermediate verify against the root alone", function()
    local crypto = tls.Crypto.new()
    local ca_key = load_key("certs/ca.key")
    local nb = os.date("!%Y%m%d%H%M%S", os.time() - 86400)
    local na = os.date("!%Y%m%d%H%M%S", os.time() + 30 * 86400)
    local ikey = assert(crypto:generate_ec())
    local inter = assert(crypto:issue_certificate(ikey, "CN=tlspeer spec intermediate,O=tlspeer",
                                                  ca_key, CA, nb, na, { ca = true }))
    local lkey = assert(crypto:generate_ec())
    local leaf = assert(crypto:issue_certificate(lkey, "CN=localhost,O=tlspeer spec leaf",
                                                 ikey, inter, nb, na,
                                                 { san = { "localhost", "127.0.0.1" } }))
    local chain = tls.X509Certificate.new()
    assert(chain:load_from_string(leaf:save_to_string() .. inter:save_to_string()))
    assert.equal(2, chain:get_chain_length())
    local options = assert(tls.TLSOptions.server(lkey, chain))
    local peer, client = serve(options, "", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("Verify return code: 0 (ok)", out, 1, true)
    assert.matches("depth=1 [^\n]*tlspeer spec intermediate", out)
    assert.matches("\n 1 s:[^\n]*tlspeer spec intermediate", out)
    assert.matches("pong from tlspeer", out, 1, true)
  end)

  it("verify = \"required\": a client certificate signed by the CA is accepted", function()
    local options = server_options { trusted_chain = CA, verify = "required" }
    local peer, client = serve(options, "-cert certs/client.crt -key certs/client.key",
                               "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    local pc = peer:get_peer_certificate()
    assert.is_not_nil(pc)
    assert.matches("CN=tlspeer client", pc:get_subject(), 1, true)
    assert.equal(CCERT:get_fingerprint(), pc:get_fingerprint())
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("pong from tlspeer", out, 1, true)
  end)

  it("verify = \"required\": a client without a certificate is refused on both sides", function()
    local options = server_options { trusted_chain = CA }    -- required by default
    local peer, client = serve(options, "", "ping from s_client\n")
    assert.equal(ERROR, peer:get_status())
    local msg, code = peer:get_error()
    assert.matches("certificate", msg)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.is_nil(peer:get_peer_certificate())
    local d, emsg, ecode = peer:get_partial_data(10)
    assert.is_nil(d)
    assert.equal(msg, emsg)
    assert.equal(code, ecode)
    peer:disconnect_from_stream()            -- closes the socket
    local rc = client.wait(5)
    local out = client.output()
    assert.is_not_nil(rc, "s_client did not finish:\n" .. out)
    assert.not_matches("pong", out)
    -- TLS 1.2: mbedtls sends no alert, s_client sees the connection end.
    -- TLS 1.3: s_client has finished its side of the handshake and fails on
    -- the server's alert, which mbedtls 3.6 seals with the handshake keys
    -- (Mbed-TLS/mbedtls#10877): "bad record mac" instead of "certificate
    -- required".  Either way s_client fails.
    assert.not_equal(0, rc, out)
  end)

  it("verify = \"optional\": a client without a certificate is accepted", function()
    local options = server_options { trusted_chain = CA, verify = "optional" }
    local peer, client = serve(options, "", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    assert.is_nil(peer:get_peer_certificate())
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("pong from tlspeer", out, 1, true)
  end)

  it("negotiates ALPN", function()
    local options = server_options { alpn = { "http/1.1" } }
    local peer, client = serve(options, "-alpn http/1.1", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    assert.equal("http/1.1", peer:get_alpn_protocol())
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("ALPN protocol: http/1.1", out, 1, true)
  end)

  it("speaks TLS 1.2 when the client forces it", function()
    local peer, client = serve(server_options(), "-tls1_2", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    assert.equal("TLSv1.2", peer:get_tls_version())
    assert.matches("^TLS_ECDHE_", peer:get_cipher_suite())
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("Protocol%s*: TLSv1%.2", out)
  end)

  it("speaks TLS 1.3 by default where mbedtls has it, and min_version = \"1.3\" refuses 1.2", function()
    local peer, client = serve(server_options(), "", "ping from s_client\n")
    assert.equal(CONNECTED, peer:get_status(), tostring((peer:get_error())))
    assert.equal(DEFAULT_VERSION, peer:get_tls_version())
    local rc, out = echo_once(peer, client)
    assert.equal(0, rc, out)
    assert.matches("New, " .. DEFAULT_VERSION:gsub("%.", "%%."), out)
    if not HAS_TLS13 then
      local o, msg, code = tls.TLSOptions.server(SKEY, SCERT, { min_version = "1.3" })
      assert.is_nil(o)
      assert.equal("ERR_UNAVAILABLE", code)
      assert.matches("1.3", msg, 1, true)
      return
    end
    local peer2, client2 = serve(server_options { min_version = "1.3" }, "-tls1_2", "x\n")
    assert.equal(ERROR, peer2:get_status())
    local msg = peer2:get_error()
    assert.matches("version", msg)
    peer2:disconnect_from_stream()
    assert.is_not_nil(client2.wait(5))
    assert.not_equal(0, client2.exit_code())
  end)
end)

describe("StreamPeerTLS server against clients that misbehave", function()
  it("regression: plain HTTP sent to the TLS port says the client does not speak TLS (2.28 gave a generic ClientHello error)", function()
    local srv, port = listener()
    local c = tls.StreamPeerTCP.new()
    assert(c:connect_to_host("127.0.0.1", port))
    local tcp = take(srv)
    srv:stop()
    assert.equal(tls.StreamPeerTCP.STATUS_CONNECTED, H.connected(c))
    assert.is_true(c:put_data("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
    local peer = TLS.new()
    assert.is_true(peer:accept_stream(tcp, server_options()))
    assert.equal(ERROR, H.handshake(peer, 5))
    local msg, code = peer:get_error()
    assert.matches("TLS", msg)
    assert.matches("not speak TLS", msg)
    assert.equal("ERR_CONNECTION_ERROR", code)
    assert.matches("error", tostring(peer))
    -- Still usable afterwards: the error is reported, nothing raises.
    local d, emsg = peer:get_partial_data(1)
    assert.is_nil(d)
    assert.equal(msg, emsg)
    peer:disconnect_from_stream()
    c:disconnect_from_host()
  end)

  it("a client that sends nothing leaves the server handshaking; poll never blocks", function()
    local srv, port = listener()
    local c = tls.StreamPeerTCP.new()
    assert(c:connect_to_host("127.0.0.1", port))
    local tcp = take(srv)
    srv:stop()
    local peer = TLS.new()
    assert.is_true(peer:accept_stream(tcp, server_options()))
    local worst, t_end = 0, H.now() + 0.3
    repeat
      local t0 = H.now()
      assert.is_true(peer:poll())
      assert.equal("", peer:get_partial_data(10))
      worst = math.max(worst, H.now() - t0)
      assert.equal(HANDSHAKING, peer:get_status())
      H.sleep(0.005)
    until H.now() > t_end
    assert.is_true(worst < 0.1, "poll took " .. worst .. " s")
    -- Then the client goes away before saying anything.
    c:disconnect_from_host()
    assert.equal(ERROR, H.handshake(peer, 5))
    local msg, code = peer:get_error()
    assert.matches("closed", msg)
    assert.equal("ERR_CONNECTION_ERROR", code)
  end)

  it("a client that closes mid-handshake makes the server fail", function()
    local srv, port = listener()
    local ctcp = tls.StreamPeerTCP.new()
    assert(ctcp:connect_to_host("127.0.0.1", port))
    local stcp = take(srv)
    srv:stop()
    assert.equal(tls.StreamPeerTCP.STATUS_CONNECTED, H.connected(ctcp))
    local client, server = TLS.new(), TLS.new()
    -- The ClientHello leaves; the client is never polled again.
    assert.is_true(client:connect_to_stream(ctcp, "localhost", tls.TLSOptions.client(CA)))
    assert.is_truthy(H.wait_for(function() return stcp:get_available_bytes() > 0 end, 5))
    -- The server answers it and then waits for the rest.
    assert.is_true(server:accept_stream(stcp, server_options()))
    H.wait_for(function()
      server:poll()
      return ctcp:get_available_bytes() > 0
    end, 5)
    assert.is_true(ctcp:get_available_bytes() > 0, "the server never answered")
    assert.equal(HANDSHAKING, server:get_status())
    ctcp:disconnect_from_host()        -- gone, without a word
    assert.equal(ERROR, H.handshake(server, 5))
    local msg, code = server:get_error()
    assert.matches("handshake", msg)
    assert.equal("ERR_CONNECTION_ERROR", code)
  end)
end)

-- ---------------------------------------------------------------------
-- Our client and our server together.

-- Two connected transports: "tcp" (StreamPeerTCP through a TCPServer) or
-- "pipe" (tls.pipe()).
local function transports(kind)
  if kind == "pipe" then return tls.pipe() end
  local srv, port = listener()
  local c = tls.StreamPeerTCP.new()
  assert(c:connect_to_host("127.0.0.1", port))
  local s = take(srv)
  srv:stop()
  return c, s
end

-- Polls both peers until neither is handshaking, or one has failed
-- (bounded).
local function handshake_both(c, s, timeout)
  H.wait_for(function()
    c:poll()
    s:poll()
    local cs, ss = c:get_status(), s:get_status()
    return (cs ~= HANDSHAKING and ss ~= HANDSHAKING) or cs >= ERROR or ss >= ERROR
  end, timeout or 5)
  return c:get_status(), s:get_status()
end

local function connect_pair(kind, copts, sopts)
  local ct, st = transports(kind)
  local c, s = TLS.new(), TLS.new()
  assert.is_true(c:connect_to_stream(ct, "localhost", copts))
  assert.is_true(s:accept_stream(st, sopts))
  return c, s, ct, st
end

-- Sends `up` from c to s and `down` from s to c at the same time, with the
-- partial methods only; returns what each side received.
local function exchange(c, s, up, down, timeout)
  local sides = {
    { peer = c, data = up, pos = 1, got = {}, n = 0, want = #down },
    { peer = s, data = down, pos = 1, got = {}, n = 0, want = #up },
  }
  local deadline = H.now() + (timeout or 20)
  while H.now() < deadline do
    local progress, done = false, true
    for _, side in ipairs(sides) do
      local p = side.peer
      if side.pos <= #side.data then
        local k, msg = p:put_partial_data(side.data:sub(side.pos, side.pos + 65535))
        assert(k, msg)
        side.pos = side.pos + k
        progress = progress or k > 0
      end
      local d, msg = p:get_partial_data(65536)
      assert(d, msg)
      if #d > 0 then
        side.got[#side.got + 1] = d
        side.n = side.n + #d
        progress = true
      end
      p:poll()
      done = done and side.n >= side.want and side.pos > #side.data
    end
    if done then break end
    if not progress then H.sleep(0.0005) end
  end
  return table.concat(sides[2].got), table.concat(sides[1].got)
end

-- Reads on `peer` until get_partial_data fails (bounded); returns the
-- failure and what arrived before it.
local function read_to_end(peer, timeout)
  local got, res = {}, nil
  H.wait_for(function()
    peer:poll()
    local d, msg, code = peer:get_partial_data(4096)
    if d == nil then res = { msg, code } return true end
    got[#got + 1] = d
  end, timeout or 5)
  return res, table.concat(got)
end

for _, kind in ipairs { "tcp", "pipe" } do
  describe("our client and our server over " .. kind, function()
    it("mutual TLS, ALPN, matching suite and version", function()
      local copts = assert(tls.TLSOptions.client(CA, "", {
        certificate = CCERT, key = CKEY, alpn = { "h2", "http/1.1" } }))
      local sopts = server_options { trusted_chain = CA, alpn = { "http/1.1" } }
      local c, s = connect_pair(kind, copts, sopts)
      local cs, ss = handshake_both(c, s)
      assert.equal(CONNECTED, cs, tostring((c:get_error())))
      assert.equal(CONNECTED, ss, tostring((s:get_error())))
      assert.matches("CN=tlspeer client", s:get_peer_certificate():get_subject(), 1, true)
      assert.matches("CN=localhost", c:get_peer_certificate():get_subject(), 1, true)
      assert.equal("http/1.1", c:get_alpn_protocol())
      assert.equal("http/1.1", s:get_alpn_protocol())
      assert.is_string(c:get_cipher_suite())
      assert.matches("^TLS_", c:get_cipher_suite())
      assert.equal(c:get_cipher_suite(), s:get_cipher_suite())
      assert.equal(DEFAULT_VERSION, c:get_tls_version())
      assert.equal(c:get_tls_version(), s:get_tls_version())
      c:disconnect_from_stream()
      s:disconnect_from_stream()
    end)

    it("a server that requires a certificate refuses a client without one", function()
      local sopts = server_options { trusted_chain = CA }
      local c, s = connect_pair(kind, tls.TLSOptions.client(CA), sopts)
      local _, ss = handshake_both(c, s)
      assert.equal(ERROR, ss)
      local msg, code = s:get_error()
      assert.matches("certificate", msg)
      assert.equal("ERR_UNAUTHORIZED", code)
      -- The application drops the failed connection; the client learns it
      -- (from the alert in TLS 1.3, from the close in 1.2).
      s:disconnect_from_stream()
      H.wait_for(function()
        c:poll()
        return c:get_status() ~= HANDSHAKING and c:get_status() ~= CONNECTED
      end, 5)
      assert.equal(ERROR, c:get_status())
      assert.is_string((c:get_error()))
      c:disconnect_from_stream()
    end)

    it("moves 1 MiB each way with the partial methods, intact (SHA-256)", function()
      local c, s = connect_pair(kind, tls.TLSOptions.client(CA), server_options())
      local cs, ss = handshake_both(c, s)
      assert.equal(CONNECTED, cs, tostring((c:get_error())))
      assert.equal(CONNECTED, ss, tostring((s:get_error())))
      local crypto = tls.Crypto.new()
      local up = crypto:generate_random_bytes(1048576)
      local down = crypto:generate_random_bytes(1048576)
      local got_up, got_down = exchange(c, s, up, down, 20)
      assert.equal(#up, #got_up)
      assert.equal(#down, #got_down)
      assert.equal(sha256(up), sha256(got_up))
      assert.equal(sha256(down), sha256(got_down))
      c:disconnect_from_stream()
      s:disconnect_from_stream()
    end)

    it("disconnect_from_stream: the other side reads to ERR_FILE_EOF, in both directions", function()
      for _, closer in ipairs { "client", "server" } do
        local c, s = connect_pair(kind, tls.TLSOptions.client(CA), server_options())
        local cs, ss = handshake_both(c, s)
        assert.equal(CONNECTED, cs)
        assert.equal(CONNECTED, ss)
        local a, b = c, s
        if closer == "server" then a, b = s, c end
        assert.is_true(a:put_data("last words"))
        a:disconnect_from_stream()
        assert.equal(DISCONNECTED, a:get_status())
        local res, got = read_to_end(b, 5)
        assert.is_not_nil(res, closer .. " closed, but the other side never saw EOF")
        assert.equal("last words", got)
        assert.equal("ERR_FILE_EOF", res[2])
        assert.is_string(res[1])
        assert.equal(DISCONNECTED, b:get_status())
        b:disconnect_from_stream()
      end
    end)
  end)
end

describe("StreamPeerTLS over a Lua stream", function()
  it("a put_partial_data that raises fails the handshake with its message", function()
    local stream = {
      get_partial_data = function() return "" end,
      put_partial_data = function() error("transport exploded on purpose") end,
    }
    local c = TLS.new()
    local ok = c:connect_to_stream(stream, "localhost", tls.TLSOptions.client(CA))
    assert.is_true(ok)
    assert.equal(ERROR, H.handshake(c, 2))
    local msg, code = c:get_error()
    assert.matches("transport exploded on purpose", msg, 1, true)
    assert.is_string(code)
    local d, emsg = c:get_partial_data(1)
    assert.is_nil(d)
    assert.matches("transport exploded on purpose", emsg, 1, true)
  end)

  it("a get_partial_data that raises, on the server side, fails cleanly too", function()
    local a, b = tls.pipe()
    local calls = 0
    local bad = setmetatable({}, { __index = {
      get_partial_data = function(_, n)
        calls = calls + 1
        if calls > 1 then error("reader broke") end
        return b:get_partial_data(n)
      end,
      put_partial_data = function(_, s) return b:put_partial_data(s) end,
    } })
    local c, s = TLS.new(), TLS.new()
    assert.is_true(c:connect_to_stream(a, "localhost", tls.TLSOptions.client(CA)))
    assert.is_true(s:accept_stream(bad, server_options()))
    local _, ss = handshake_both(c, s, 5)
    assert.equal(ERROR, ss)
    assert.matches("reader broke", (s:get_error()), 1, true)
  end)

  it("keeps its TLSOptions and stream alive: a GC storm mid-handshake changes nothing", function()
    local weak = setmetatable({}, { __mode = "v" })
    local c, s = TLS.new(), TLS.new()
    -- In a function of its own, so that no stack slot keeps anything.
    local function start()
      local a, b = tls.pipe()
      weak.a, weak.b = a, b
      assert.is_true(c:connect_to_stream(a, "localhost",
                                         tls.TLSOptions.client(load_cert("certs/ca.crt"))))
      assert.is_true(s:accept_stream(b, tls.TLSOptions.server(load_key("certs/server.key"),
                                                              load_cert("certs/server.crt"))))
    end
    start()
    for _ = 1, 4 do collectgarbage() end
    -- Only the peers hold them now.
    assert.is_not_nil(weak.a)
    assert.is_not_nil(weak.b)
    assert.equal(HANDSHAKING, c:get_status())
    local cs, ss
    H.wait_for(function()
      c:poll(); collectgarbage()
      s:poll(); collectgarbage()
      cs, ss = c:get_status(), s:get_status()
      return cs ~= HANDSHAKING and ss ~= HANDSHAKING
    end, 10)
    assert.equal(CONNECTED, cs, tostring((c:get_error())))
    assert.equal(CONNECTED, ss, tostring((s:get_error())))
    assert.is_true(c:put_data("after the storm"))
    assert.equal("after the storm", read_until(s, "storm$"))
    assert.is_true(rawequal(weak.a, c:get_stream()))
    assert.is_true(rawequal(weak.b, s:get_stream()))
    -- Once disconnected, the peers let go of them.
    c:disconnect_from_stream()
    s:disconnect_from_stream()
    for _ = 1, 4 do collectgarbage() end
    assert.is_nil(weak.a)
    assert.is_nil(weak.b)
  end)

  it("keeps its TLSOptions alive: collected only once no peer uses them", function()
    local weak = setmetatable({}, { __mode = "v" })
    local c, s = TLS.new(), TLS.new()
    local function start()
      local a, b = tls.pipe()
      local copts, sopts = tls.TLSOptions.client(CA), server_options()
      weak.copts, weak.sopts = copts, sopts
      assert.is_true(c:connect_to_stream(a, "localhost", copts))
      assert.is_true(s:accept_stream(b, sopts))
    end
    start()
    for _ = 1, 4 do collectgarbage() end
    assert.is_not_nil(weak.copts)
    assert.is_not_nil(weak.sopts)
    local cs, ss = handshake_both(c, s)
    assert.equal(CONNECTED, cs)
    assert.equal(CONNECTED, ss)
    c:disconnect_from_stream()
    s:disconnect_from_stream()
    for _ = 1, 4 do collectgarbage() end
    assert.is_nil(weak.copts)
    assert.is_nil(weak.sopts)
  end)

  it("a live peer that is collected does not crash; over TCP the other side sees the end", function()
    local c = TLS.new()
    local weak = setmetatable({}, { __mode = "v" })
    local function start()
      local ct, st = transports("tcp")
      local s = TLS.new()
      weak.s, weak.st = s, st
      assert.is_true(c:connect_to_stream(ct, "localhost", tls.TLSOptions.client(CA)))
      assert.is_true(s:accept_stream(st, server_options()))
      local cs, ss = handshake_both(c, s)
      assert.equal(CONNECTED, cs)
      assert.equal(CONNECTED, ss)
      assert.is_true(s:put_data("hello"))
    end
    start()
    for _ = 1, 4 do collectgarbage() end
    assert.is_nil(weak.s)
    assert.is_nil(weak.st)
    local res, got = read_to_end(c, 5)
    assert.is_not_nil(res, "the client never noticed its server was gone")
    assert.equal("hello", got)
    assert.is_string(res[1])
    assert.is_true(res[2] == "ERR_FILE_EOF" or res[2] == "ERR_CONNECTION_ERROR", tostring(res[2]))
    assert.is_true(c:get_status() == DISCONNECTED or c:get_status() == ERROR)
    c:disconnect_from_stream()
  end)

  it("a live peer over a pipe that is collected does not crash the other end", function()
    local c = TLS.new()
    local weak = setmetatable({}, { __mode = "v" })
    local function start()
      local a, b = tls.pipe()
      local s = TLS.new()
      weak.s = s
      assert.is_true(c:connect_to_stream(a, "localhost", tls.TLSOptions.client(CA)))
      assert.is_true(s:accept_stream(b, server_options()))
      local cs, ss = handshake_both(c, s)
      assert.equal(CONNECTED, cs)
      assert.equal(CONNECTED, ss)
    end
    start()
    for _ = 1, 4 do collectgarbage() end
    assert.is_nil(weak.s)
    -- Nobody answers any more, but the client carries on without error.
    for _ = 1, 5 do
      assert.is_true(c:poll())
      assert.equal("", c:get_partial_data(100))
    end
    assert.is_true(c:put_data("anyone there?"))
    assert.equal(CONNECTED, c:get_status())
    c:disconnect_from_stream()
    assert.equal(DISCONNECTED, c:get_status())
  end)
end)
