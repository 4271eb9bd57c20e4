-- `<close>` variables: every tlspeer object closes at the end of the block
-- that declares it.  The syntax exists only on Lua 5.4, so the cases are
-- source text, compiled only there; on 5.1, 5.2, 5.3 and LuaJIT the same
-- steps run with the `__close` metamethod called by hand where the block
-- ends (in reverse order of declaration, as 5.4 does), and the syntax
-- itself is checked to be refused.  Either way every case asserts.
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"

local CERTS = "certs/"
local HashingContext, HMACContext, AESContext =
  tls.HashingContext, tls.HMACContext, tls.AESContext
local AES_KEY, AES_IV = { [256] = H.bytes(32, 3201) }, H.bytes(16, 1699)

local function ensure_certs()
  if not H.exists(CERTS .. "server.key") then
    local ok, out = H.run(H.LUA .. " certs/generate.lua")
    assert(ok, out)
  end
end

-- tls.listen / tls.connect on loopback, pumped until done() (bounded).
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

local function new_server()
  return assert(tls.listen { port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt",
                             key = CERTS .. "server.key" })
end

local function new_client(srv)
  return tls.connect { host = "localhost", port = srv:get_local_port(), trusted = CERTS .. "ca.crt" }
end

-- An EC key written by openssl, in a fresh folder.
local function ec_key_file()
  local file = H.tmpdir() .. "/ec.pem"
  H.openssl("ecparam -genkey -noout -name prime256v1 -out " .. H.q(file))
  return file
end

local function load_ok(file, public_only)
  local k = tls.CryptoKey.new()
  assert(k:load(file, public_only) == true, "load " .. file)
  return k
end

local fx = { tls = tls, H = H, HashingContext = HashingContext, HMACContext = HMACContext,
             AESContext = AESContext, AES_KEY = AES_KEY, AES_IV = AES_IV, pump = pump,
             new_server = new_server, new_client = new_client, ec_key_file = ec_key_file,
             load_ok = load_ok }

-- The Lua 5.4 cases: a chunk that returns { { name, function }, ... }.
-- (Padded with newlines when compiled, so that its line numbers are this
-- file's.)
local CLOSE54_LINE = debug.getinfo(1, "l").currentline + 2
local CLOSE54 = [==[
local fx, assert = ...
local tls, H = fx.tls, fx.H
local HashingContext, HMACContext, AESContext = fx.HashingContext, fx.HMACContext, fx.AESContext
local AES_KEY, AES_IV = fx.AES_KEY, fx.AES_IV
local cases = {}
local function case(name, fn) cases[#cases + 1] = { name, fn } end

case("CryptoKey: closes with <close> and refuses use afterwards", function()
  local kept
  do
    local k <close> = tls.CryptoKey.new()
    kept = k
  end
  assert.equal("CryptoKey (closed)", tostring(kept))
  assert.error_matches(function() kept:get_bits() end, "attempt to use a closed CryptoKey")
end)

case("CryptoKey: works as a <close> variable and describes itself", function()
  local file = fx.ec_key_file()
  local seen
  do
    local k <close> = fx.load_ok(file)
    seen = k
    assert.equal("CryptoKey (EC secp256r1, private)", tostring(k))
  end
  assert.equal("CryptoKey (closed)", tostring(seen))
  assert.equal("CryptoKey (empty)", tostring(tls.CryptoKey.new()))
  local p = fx.load_ok(file, true)
  assert.equal("CryptoKey (EC secp256r1, public)", tostring(p))
end)

case("X509Certificate and CryptoKey: work with <close> variables", function()
  local crypto = H.crypto()
  local key = assert(crypto:generate_ec())
  local kept
  do
    local x <close> = assert(crypto:generate_self_signed_certificate(key))
    local k <close> = assert(crypto:generate_ec())
    kept = { x, k }
    assert.are.equal(1, x:get_chain_length())
  end
  assert.are.equal("X509Certificate (closed)", tostring(kept[1]))
  assert.are.equal("CryptoKey (closed)", tostring(kept[2]))
  assert.has_error(function() kept[1]:get_subject() end,
                   "attempt to use a closed X509Certificate")
  assert.has_error(function() kept[2]:get_bits() end,
                   "attempt to use a closed CryptoKey")
  -- closing one object leaves the ones made from it alone
  local k2 = assert(crypto:generate_ec())
  local c2 = assert(crypto:generate_self_signed_certificate(k2))
  local pub = c2:get_public_key()
  getmetatable(k2).__close(k2)
  getmetatable(c2).__close(c2)
  assert.are.equal("ec", pub:get_type())
  assert.is_true(pub:is_public_only())
end)

case("HashingContext: a <close> variable closes it at the end of its block", function()
  local escaped
  do
    local h <close> = HashingContext.new()
    escaped = h
    assert.is_true(h:start(0))
  end
  assert.error_matches(function() escaped:update("x") end,
                       "attempt to use a closed HashingContext", nil, true)
  assert.matches("(closed)", tostring(escaped), nil, true)
end)

case("HMACContext: a <close> variable closes it; closing twice is harmless; tostring says (closed)", function()
  local escaped
  do
    local m <close> = HMACContext.new()
    escaped = m
    m:start(3, "key")
    assert.matches("HMACContext", tostring(m), nil, true)
    assert.not_matches("closed", tostring(m), nil, true)
  end
  assert.has_no_error(function() getmetatable(escaped).__close(escaped) end)
  assert.matches("HMACContext", tostring(escaped), nil, true)
  assert.matches("(closed)", tostring(escaped), nil, true)
  assert.error_matches(function() escaped:finish() end,
                       "attempt to use a closed HMACContext", nil, true)
end)

case("AESContext: a <close> variable closes it; closing twice is harmless; tostring says (closed)", function()
  local escaped
  do
    local a <close> = AESContext.new()
    escaped = a
    assert.matches("AESContext", tostring(a), nil, true)
    a:start(AESContext.MODE_CBC_DECRYPT, AES_KEY[256], AES_IV)
    assert.matches("CBC", tostring(a), nil, true)
    assert.not_matches("closed", tostring(a), nil, true)
  end
  assert.matches("(closed)", tostring(escaped), nil, true)
  assert.has_no_error(function() getmetatable(escaped).__close(escaped) end)
  assert.has_no_error(function() getmetatable(escaped).__gc(escaped) end)
  assert.matches("AESContext", tostring(escaped), nil, true)
  assert.matches("(closed)", tostring(escaped), nil, true)
  assert.error_matches(function() escaped:update(("x"):rep(16)) end,
                       "attempt to use a closed AESContext", nil, true)
end)

case("StreamPeerTCP and TCPServer: <close> variables close them and release the port", function()
  local srv = tls.TCPServer.new()
  assert(srv:listen(0, "127.0.0.1"))
  local port = srv:get_local_port()
  local c, keep_srv
  do
    local p <close> = tls.StreamPeerTCP.new()
    local q <close> = srv
    assert(p:connect_to_host("127.0.0.1", port))
    c, keep_srv = p, q
  end
  assert.equal("StreamPeerTCP (closed)", tostring(c))
  assert.equal("TCPServer (closed)", tostring(keep_srv))
  assert.error_matches(function() c:poll() end, "attempt to use a closed StreamPeerTCP", 1, true)
  assert.error_matches(function() keep_srv:stop() end, "attempt to use a closed TCPServer", 1, true)
  local again = tls.TCPServer.new()
  assert.is_true(again:listen(port, "127.0.0.1"))
  getmetatable(again).__close(again)
end)

case("regression: closing TLSOptions (<close>) while a peer uses them does not crash it", function()
  -- It freed the mbedtls configuration the peer's context points into:
  -- the next poll crashed.  In a subprocess, so that a crash is a failure.
  local ok, out = H.lua [[
    local tls = require "tlspeer"
    local function ld(cls, p) local o = tls[cls].new(); assert(o:load(p)); return o end
    local a, b = tls.pipe()
    local c, s = tls.StreamPeerTLS.new(), tls.StreamPeerTLS.new()
    do
      local co <close> = tls.TLSOptions.client(ld("X509Certificate", "certs/ca.crt"))
      local so <close> = tls.TLSOptions.server(ld("CryptoKey", "certs/server.key"),
                                               ld("X509Certificate", "certs/server.crt"))
      assert(c:connect_to_stream(a, "localhost", co))
      assert(s:accept_stream(b, so))
    end
    collectgarbage()
    for _ = 1, 100 do c:poll(); s:poll() end
    assert(c:put_data("still alive"))
    print("status", c:get_status(), s:get_status(), s:get_partial_data(100))
  ]]
  assert.is_true(ok, out)
  assert.equal("status\t2\t2\tstill alive\n", out)
end)

case("tls.listen and tls.connect: have tostring and close with <close>, as every tlspeer object", function()
  local conn_seen
  do
    local srv <close> = fx.new_server()
    srv:on("connection_established", function(conn) conn_seen = conn end)
    local c <close> = fx.new_client(srv)
    assert.is_true(fx.pump(srv, { c }, function() return conn_seen ~= nil and c.established end))
    assert.matches("^tlspeer server %(port %d+, 1 connections%)$", tostring(srv))
    assert.matches("^tlspeer client %(StreamPeerTLS %(connected", tostring(c))
    assert.matches("^tlspeer connection %(StreamPeerTLS %(connected from", tostring(conn_seen))
    local a, b = tls.pipe()
    do local _ <close> = a end
    assert.same({ nil, "the other end of the pipe is closed", "ERR_FILE_EOF" },
                { b:get_partial_data(1) })
  end
  -- Leaving the block closed the client and stopped the server.
  assert.is_true(conn_seen.closed)
  assert.equal(tls.StreamPeerTLS.STATUS_DISCONNECTED, conn_seen:get_status())
end)

return cases
]==]

-- The same cases elsewhere: `__close` is only a metamethod there, called
-- by hand (it must be a function) where the block would end.
local function close(o)
  local mm = getmetatable(o).__close
  assert.is_function(mm)
  mm(o)
end

local BY_HAND = {
  function()
    local kept
    do
      local k = tls.CryptoKey.new()
      kept = k
      close(k)
    end
    assert.equal("CryptoKey (closed)", tostring(kept))
    assert.error_matches(function() kept:get_bits() end, "attempt to use a closed CryptoKey")
  end,

  function()
    local file = ec_key_file()
    local seen
    do
      local k = load_ok(file)
      seen = k
      assert.equal("CryptoKey (EC secp256r1, private)", tostring(k))
      close(k)
    end
    assert.equal("CryptoKey (closed)", tostring(seen))
    assert.equal("CryptoKey (empty)", tostring(tls.CryptoKey.new()))
    local p = load_ok(file, true)
    assert.equal("CryptoKey (EC secp256r1, public)", tostring(p))
  end,

  function()
    local crypto = H.crypto()
    local key = assert(crypto:generate_ec())
    local kept
    do
      local x = assert(crypto:generate_self_signed_certificate(key))
      local k = assert(crypto:generate_ec())
      kept = { x, k }
      assert.are.equal(1, x:get_chain_length())
      close(k)
      close(x)
    end
    assert.are.equal("X509Certificate (closed)", tostring(kept[1]))
    assert.are.equal("CryptoKey (closed)", tostring(kept[2]))
    assert.has_error(function() kept[1]:get_subject() end,
                     "attempt to use a closed X509Certificate")
    assert.has_error(function() kept[2]:get_bits() end,
                     "attempt to use a closed CryptoKey")
    local k2 = assert(crypto:generate_ec())
    local c2 = assert(crypto:generate_self_signed_certificate(k2))
    local pub = c2:get_public_key()
    close(k2)
    close(c2)
    assert.are.equal("ec", pub:get_type())
    assert.is_true(pub:is_public_only())
  end,

  function()
    local escaped
    do
      local h = HashingContext.new()
      escaped = h
      assert.is_true(h:start(0))
      close(h)
    end
    assert.error_matches(function() escaped:update("x") end,
                         "attempt to use a closed HashingContext", nil, true)
    assert.matches("(closed)", tostring(escaped), nil, true)
  end,

  function()
    local escaped
    do
      local m = HMACContext.new()
      escaped = m
      m:start(3, "key")
      assert.matches("HMACContext", tostring(m), nil, true)
      assert.not_matches("closed", tostring(m), nil, true)
      close(m)
    end
    assert.has_no_error(function() close(escaped) end)
    assert.matches("HMACContext", tostring(escaped), nil, true)
    assert.matches("(closed)", tostring(escaped), nil, true)
    assert.error_matches(function() escaped:finish() end,
                         "attempt to use a closed HMACContext", nil, true)
  end,

  function()
    local escaped
    do
      local a = AESContext.new()
      escaped = a
      assert.matches("AESContext", tostring(a), nil, true)
      a:start(AESContext.MODE_CBC_DECRYPT, AES_KEY[256], AES_IV)
      assert.matches("CBC", tostring(a), nil, true)
      assert.not_matches("closed", tostring(a), nil, true)
      close(a)
    end
    assert.matches("(closed)", tostring(escaped), nil, true)
    assert.has_no_error(function() close(escaped) end)
    assert.has_no_error(function() getmetatable(escaped).__gc(escaped) end)
    assert.matches("AESContext", tostring(escaped), nil, true)
    assert.matches("(closed)", tostring(escaped), nil, true)
    assert.error_matches(function() escaped:update(("x"):rep(16)) end,
                         "attempt to use a closed AESContext", nil, true)
  end,

  function()
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local port = srv:get_local_port()
    local c, keep_srv
    do
      local p = tls.StreamPeerTCP.new()
      local q = srv
      assert(p:connect_to_host("127.0.0.1", port))
      c, keep_srv = p, q
      close(q)
      close(p)
    end
    assert.equal("StreamPeerTCP (closed)", tostring(c))
    assert.equal("TCPServer (closed)", tostring(keep_srv))
    assert.error_matches(function() c:poll() end, "attempt to use a closed StreamPeerTCP", 1, true)
    assert.error_matches(function() keep_srv:stop() end, "attempt to use a closed TCPServer", 1, true)
    local again = tls.TCPServer.new()
    assert.is_true(again:listen(port, "127.0.0.1"))
    close(again)
  end,

  function()
    local ok, out = H.lua [[
      local tls = require "tlspeer"
      local function ld(cls, p) local o = tls[cls].new(); assert(o:load(p)); return o end
      local function close(o) getmetatable(o).__close(o) end
      local a, b = tls.pipe()
      local c, s = tls.StreamPeerTLS.new(), tls.StreamPeerTLS.new()
      do
        local co = tls.TLSOptions.client(ld("X509Certificate", "certs/ca.crt"))
        local so = tls.TLSOptions.server(ld("CryptoKey", "certs/server.key"),
                                         ld("X509Certificate", "certs/server.crt"))
        assert(c:connect_to_stream(a, "localhost", co))
        assert(s:accept_stream(b, so))
        close(so)
        close(co)
      end
      collectgarbage()
      for _ = 1, 100 do c:poll(); s:poll() end
      assert(c:put_data("still alive"))
      print("status", c:get_status(), s:get_status(), s:get_partial_data(100))
    ]]
    assert.is_true(ok, out)
    assert.equal("status\t2\t2\tstill alive\n", out)
  end,

  function()
    local conn_seen
    do
      local srv = new_server()
      srv:on("connection_established", function(conn) conn_seen = conn end)
      local c = new_client(srv)
      assert.is_true(pump(srv, { c }, function() return conn_seen ~= nil and c.established end))
      assert.matches("^tlspeer server %(port %d+, 1 connections%)$", tostring(srv))
      assert.matches("^tlspeer client %(StreamPeerTLS %(connected", tostring(c))
      assert.matches("^tlspeer connection %(StreamPeerTLS %(connected from", tostring(conn_seen))
      local a, b = tls.pipe()
      do close(a) end
      assert.same({ nil, "the other end of the pipe is closed", "ERR_FILE_EOF" },
                  { b:get_partial_data(1) })
      close(c)
      close(srv)
    end
    assert.is_true(conn_seen.closed)
    assert.equal(tls.StreamPeerTLS.STATUS_DISCONNECTED, conn_seen:get_status())
  end,
}

-- The case names, in the order of both lists.
local NAMES = {
  "CryptoKey: closes with <close> and refuses use afterwards",
  "CryptoKey: works as a <close> variable and describes itself",
  "X509Certificate and CryptoKey: work with <close> variables",
  "HashingContext: a <close> variable closes it at the end of its block",
  "HMACContext: a <close> variable closes it; closing twice is harmless; tostring says (closed)",
  "AESContext: a <close> variable closes it; closing twice is harmless; tostring says (closed)",
  "StreamPeerTCP and TCPServer: <close> variables close them and release the port",
  "regression: closing TLSOptions (<close>) while a peer uses them does not crash it",
  "tls.listen and tls.connect: have tostring and close with <close>, as every tlspeer object",
}

if _VERSION == "Lua 5.4" then
  describe("<close> variables (Lua 5.4)", function()
    setup(ensure_certs)
    teardown(H.cleanup)
    local chunk = assert(H.load_string(("\n"):rep(CLOSE54_LINE - 1) .. CLOSE54,
                                       "@spec/90-lua54_close_spec.lua"))
    local cases = chunk(fx, assert)
    it("has a case for every name, in order", function()
      local names = {}
      for i, c in ipairs(cases) do names[i] = c[1] end
      assert.same(NAMES, names)
      assert.equal(#NAMES, #BY_HAND)
    end)
    for _, c in ipairs(cases) do it(c[1], c[2]) end
  end)
else
  describe("<close> (Lua 5.4 only)", function()
    setup(ensure_certs)
    teardown(H.cleanup)
    it("is absent on " .. _VERSION .. ": the syntax does not compile", function()
      local f, err = H.load_string("do local x <close> = nil end", "=close")
      assert.is_nil(f)
      assert.matches("^close:1:", err)
      assert.equal(#NAMES, #BY_HAND)
    end)
    for i, name in ipairs(NAMES) do
      it("is absent on " .. _VERSION .. ": __close is only a metamethod, called by hand; "
         .. name, BY_HAND[i])
    end
  end)
end
