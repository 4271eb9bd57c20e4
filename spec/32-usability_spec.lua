-- What a newcomer meets first: the clock and sleep, what tostring shows
-- of classes and headers, errors that say what to write instead, one code
-- for a refused connect, downloads that never keep an error page, and a
-- wait() that tells why it timed out.
local H = require "helpers"
local tls = H.tls

-- A port where nothing listens (a moment ago).
local function closed_port()
  return H.free_port()
end

-- Writes an encrypted copy of a new EC key; returns its path.
local function encrypted_key(dir)
  local key = tls.Crypto.new():generate_ec()
  local path = dir .. "/enc.key"
  assert(key:save(path, false, "secret"))
  return path
end

describe("tls.now and tls.sleep", function()
  it("now() is a clock in seconds and sleep() waits at least that long", function()
    local t0 = tls.now()
    assert.is_number(t0)
    tls.sleep(0.02)
    assert.is_true(tls.now() - t0 >= 0.015)
    tls.sleep(0)
  end)

  it("sleep() refuses what is not a number of seconds", function()
    assert.has_error(function() tls.sleep(-1) end,
      "bad argument #1 to 'sleep' (seconds >= 0 expected, got -1)")
    assert.has_error(function() tls.sleep("1") end,
      "bad argument #1 to 'sleep' (seconds >= 0 expected, got string)")
    assert.has_error(function() tls.sleep(0 / 0) end)
  end)
end)

describe("introspection", function()
  local function instance(name, class)
    if name == "TLSOptions" then return class.client_unsafe() end
    return class.new()
  end

  it("tostring of every class table lists its methods and constants", function()
    for name, class in pairs(tls) do
      if type(class) == "table" and name:match("^%u") then
        local text = tostring(class)
        assert.matches("^tlspeer class " .. name, text)
        assert.matches("docs/" .. name .. ".md", text, 1, true)
        local mt = getmetatable(instance(name, class))
        for method, fn in pairs(mt.__index) do
          if type(fn) == "function" and not method:match("^_") and method ~= "new" then
            assert.truthy(text:find(method, 1, true), name .. " does not list " .. method)
          end
        end
        for k, v in pairs(class) do
          if type(v) == "number" then
            assert.truthy(text:find(k .. " = " .. v, 1, true), name .. " does not list " .. k)
          end
        end
      end
    end
  end)

  it("a class table reaches its methods, as its instances do", function()
    local crypto = tls.Crypto.new()
    assert.equal(getmetatable(crypto).__index.generate_rsa, tls.Crypto.generate_rsa)
    assert.equal(getmetatable(tls.StreamPeerTLS.new()).__index.poll, tls.StreamPeerTLS.poll)
    assert.is_nil(tls.StreamPeerTLS.no_such_method)
  end)
end)

describe("Godot 3 names", function()
  it("StreamPeerTLS's Godot 3 methods raise advice, not 'attempt to call a nil value'", function()
    local peer = tls.StreamPeerTLS.new()
    for _, name in ipairs { "set_certificate_file", "set_private_key_file", "set_connection",
                            "set_peer_certificate", "set_verify_mode", "connect",
                            "connect_to_host" } do
      local ok, err = pcall(function() peer[name](peer, "x") end)
      assert.is_false(ok)
      assert.matches("StreamPeerTLS has no method '" .. name .. "'", err, 1, true)
      assert.matches("docs/porting-from-godot.md", err, 1, true)
    end
    local _, err = pcall(function() peer:set_certificate_file("res://certs/server.crt") end)
    assert.matches("TLSOptions.server(key, certificate)", err, 1, true)
    assert.is_nil(peer.no_such_method)
  end)

  it("HTTPClient:connect_to_host(host, port, true) says what use_ssl is here", function()
    local http = tls.HTTPClient.new()
    assert.has_error(function() http:connect_to_host("example.com", 443, true) end,
      "bad argument #3 to 'connect_to_host' (TLSOptions expected, got boolean: Godot 3's "
      .. "use_ssl = true is tls.TLSOptions.client() here, or an \"https://\" host)")
  end)
end)

describe("errors that say more", function()
  it("generate_ec takes the NIST and OpenSSL names of its curves", function()
    local crypto = tls.Crypto.new()
    assert.equal(256, crypto:generate_ec("P-256"):get_bits())
    assert.equal(256, crypto:generate_ec("prime256v1"):get_bits())
    assert.equal(384, crypto:generate_ec("P-384"):get_bits())
    assert.equal(384, crypto:generate_ec("p-384"):get_bits())
    assert.equal(521, crypto:generate_ec("P-521"):get_bits())
  end)

  it("an unknown curve lists the names it takes", function()
    local crypto = tls.Crypto.new()
    local ok, err = pcall(crypto.generate_ec, crypto, "P-192")
    assert.is_false(ok)
    assert.matches([[invalid option 'P-192' (expected "secp256r1", "secp384r1" or "secp521r1")]],
      err, 1, true)
  end)

  it("other option arguments list their choices too", function()
    local cert = tls.X509Certificate.new()
    assert(cert:load("certs/server.crt"))
    local ok, err = pcall(cert.get_fingerprint, cert, "sha3")
    assert.is_false(ok)
    assert.matches("invalid option 'sha3' (expected ", err, 1, true)
    assert.matches('"sha256"', err, 1, true)
  end)

  it("tls.listen and tls.connect name the key_password option for an encrypted key", function()
    local path = encrypted_key(H.tmpdir())
    local srv, msg, code = tls.listen { port = 0, certificate = "certs/server.crt", key = path }
    assert.is_nil(srv)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("pass its password as the option 'key_password'", msg, 1, true)
    srv = assert(tls.listen { port = 0, bind = "127.0.0.1", certificate = "certs/server.crt",
                              key = "certs/server.key" })
    local client = tls.connect { host = "127.0.0.1", port = srv:get_local_port(),
                                 certificate = "certs/client.crt", key = path }
    local ok
    ok, msg, code = client:wait(5)
    assert.is_nil(ok)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("pass its password as the option 'key_password'", msg, 1, true)
    -- CryptoKey:load itself still speaks of its third argument.
    _, msg = tls.CryptoKey.new():load(path)
    assert.matches("as the third argument", msg, 1, true)
    srv:stop()
    H.cleanup()
  end)
end)

describe("a refused connect", function()
  it("is ERR_CANT_CONNECT from StreamPeerTLS, tls.connect, HTTPClient and tls.request", function()
    local port = closed_port()
    -- StreamPeerTLS over a StreamPeerTCP whose connect is refused
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", port))
    local peer = tls.StreamPeerTLS.new()
    assert(peer:connect_to_stream(tcp, "localhost", tls.TLSOptions.client_unsafe()))
    assert.equal(tls.StreamPeerTLS.STATUS_ERROR, H.handshake(peer, 5))
    local msg, code = peer:get_error()
    assert.equal("ERR_CANT_CONNECT", code)
    assert.matches("refused", msg)
    -- tls.connect
    local client = tls.connect { host = "127.0.0.1", port = port, unsafe = true }
    local ok
    ok, msg, code = client:wait(5)
    assert.is_nil(ok)
    assert.equal("ERR_CANT_CONNECT", code)
    -- tls.connect by name (localhost: ::1, then 127.0.0.1)
    client = tls.connect { host = "localhost", port = port, unsafe = true }
    ok, msg, code = client:wait(5)
    assert.is_nil(ok)
    assert.equal("ERR_CANT_CONNECT", code)
    -- HTTPClient
    local http = tls.HTTPClient.new()
    http:set_blocking_mode(true)
    assert(http:connect_to_host("https://127.0.0.1", port, tls.TLSOptions.client_unsafe()))
    assert.equal(tls.HTTPClient.STATUS_CANT_CONNECT, http:get_status())
    assert.equal("ERR_CANT_CONNECT", select(2, http:get_error()))
    -- tls.request, http and https
    ok, msg, code = tls.request(("http://127.0.0.1:%d/"):format(port), { timeout = 5 })
    assert.is_nil(ok)
    assert.equal("ERR_CANT_CONNECT", code)
    ok, msg, code = tls.request(("https://127.0.0.1:%d/"):format(port), { timeout = 5 })
    assert.is_nil(ok)
    assert.equal("ERR_CANT_CONNECT", code)
  end)
end)

describe("client:wait()", function()
  it("says when the tls.listen server of the same script was not polled", function()
    local srv = assert(tls.listen { port = 0, bind = "127.0.0.1",
                                    certificate = "certs/server.crt", key = "certs/server.key" })
    local client = tls.connect { host = "127.0.0.1", port = srv:get_local_port(),
                                 trusted = "certs/ca.crt", common_name = "localhost" }
    local ok, msg, code = client:wait(0.5)
    assert.is_nil(ok)
    assert.equal("ERR_TIMEOUT", code)
    assert.matches("the tls.listen server on port " .. srv:get_local_port()
      .. " in this script was not polled", msg, 1, true)
    assert.matches("tls.run", msg, 1, true)
    -- Polled both ways, it connects.
    local done
    for _ = 1, 5000 do
      tls.poll()
      if client:get_status() == tls.StreamPeerTLS.STATUS_CONNECTED then done = true; break end
      tls.sleep(0.001)
    end
    assert.is_true(done)
    client:close()
    srv:stop()
  end)

  it("does not blame polling when the server is not a tls.listen of this script", function()
    local plain = tls.TCPServer.new()
    assert(plain:listen(0, "127.0.0.1"))       -- accepts, never answers
    local client = tls.connect { host = "127.0.0.1", port = plain:get_local_port(), unsafe = true }
    local ok, msg, code = client:wait(0.3)
    assert.is_nil(ok)
    assert.equal("ERR_TIMEOUT", code)
    assert.not_matches("polled", msg)
    assert.matches("the TLS handshake is not done", msg, 1, true)
    client:close()
    plain:stop()
  end)
end)

describe("downloads", function()
  local server, portfile, port, dir, opts

  setup(function()
    dir = H.tmpdir()
    portfile = dir .. "/port"
    local prelude = ("package.path = %q; package.cpath = %q"):format(package.path, package.cpath)
    server = assert(io.popen(("%s -e %s spec/fixtures/status_server.lua %s >%s/log 2>&1 & echo $!")
      :format(H.LUA, H.q(prelude), H.q(portfile), H.q(dir))))
    server = { pid = tonumber(server:read("*l")), pipe = server }
    port = H.wait_for(function() return H.exists(portfile) and tonumber(H.read(portfile)) end, 10)
    assert(port, "the status server did not start")
    local ca = tls.X509Certificate.new()
    assert(ca:load("certs/ca.crt"))
    opts = tls.TLSOptions.client(ca)
  end)

  teardown(function()
    if server then H.kill(server.pid); server.pipe:close() end
    H.cleanup()
  end)

  local function url(code) return ("https://localhost:%d/%d"):format(port, code) end

  it("an error page never lands in the output file", function()
    local out = dir .. "/big.iso"
    local n, msg, status, headers = tls.request(url(404), { output = out, tls_options = opts })
    assert.is_nil(n)
    assert.equal(404, status)
    assert.matches("HTTP 404", msg, 1, true)
    assert.matches("keep_error_body", msg, 1, true)
    assert.equal("text/plain", headers["content-type"])
    assert.is_false(H.exists(out))
    assert.is_false(H.exists(out .. ".part"))
  end)

  it("nor in a sink or an open file", function()
    local got = {}
    local n, _, status = tls.request(url(500), { sink = function(c) got[#got + 1] = c end,
                                                 tls_options = opts })
    assert.is_nil(n)
    assert.equal(500, status)
    assert.same({}, got)
    local f = assert(io.open(dir .. "/open.bin", "wb"))
    n, _, status = tls.request(url(403), { output = f, tls_options = opts })
    f:close()
    assert.is_nil(n)
    assert.equal(403, status)
    assert.equal("", H.read(dir .. "/open.bin"))
  end)

  it("keeps the error page when asked (keep_error_body = true)", function()
    local out = dir .. "/error.html"
    local n, status = tls.request(url(404), { output = out, tls_options = opts,
                                              keep_error_body = true })
    assert.equal(#"page 404\n", n)
    assert.equal(404, status)
    assert.equal("page 404\n", H.read(out))
  end)

  it("writes a 2xx body as before, and in memory any status is a response", function()
    local out = dir .. "/ok.bin"
    local n, status = tls.request(url(200), { output = out, tls_options = opts })
    assert.equal(#"page 200\n", n)
    assert.equal(200, status)
    assert.equal("page 200\n", H.read(out))
    local body, code = tls.request(url(404), { tls_options = opts })
    assert.equal("page 404\n", body)
    assert.equal(404, code)
  end)

  it("keep_error_body must be a boolean", function()
    assert.has_error(function() tls.request(url(200), { keep_error_body = "yes" }) end,
      "bad option 'keep_error_body' to 'request' (boolean expected, got string)")
  end)

  it("header tables print as header lines", function()
    local _, _, headers = tls.request(url(200), { tls_options = opts })
    local text = tostring(headers)
    assert.matches("Content-Type: text/plain", text, 1, true)
    assert.matches("Content-Length: 9", text, 1, true)
    assert.is_nil(text:find("table: ", 1, true))
    local http = tls.HTTPClient.new()
    http:set_blocking_mode(true)
    assert(http:connect_to_host(("https://localhost:%d"):format(port), -1, opts))
    assert(http:request(tls.HTTPClient.METHOD_GET, "/200", {}))
    assert.matches("^Content%-Type: text/plain\nContent%-Length: 9",
      tostring(http:get_response_headers()))
    assert.matches("Content-Type: text/plain", tostring(http:get_response_headers_as_dictionary()),
      1, true)
    http:close()
  end)

  it("HTTPClient takes the port from an https:// URL", function()
    local http = tls.HTTPClient.new()
    http:set_blocking_mode(true)
    assert(http:connect_to_host(("https://localhost:%d"):format(port), -1, opts))
    assert.equal(tls.HTTPClient.STATUS_CONNECTED, http:get_status())
    assert.matches(":" .. port, tostring(http), 1, true)
    http:close()
  end)
end)

describe("from the checkout", function()
  -- The runtime under test as make's LUA= names it.
  local lua_arg = H.LUA:match("^lua(%d%.%d)$") or H.LUA
  local dir = os.getenv("PWD") or "."
  -- These run make for the default build directory of this runtime, as a
  -- user would: with none of the make variables of the run that started
  -- the specs, and make itself without a sanitizer's preload (GNU make
  -- trips AddressSanitizer).  The interpreter make starts is the one on
  -- PATH: under `make asan` it preloads the sanitizer's runtime, which the
  -- plain module does not mind.
  local clean = "env -u LD_PRELOAD -u MAKEFLAGS -u MAKELEVEL -u MFLAGS -u BUILD -u CFLAGS -u LDFLAGS "
    .. "-u MBEDTLS -u CC -u LUA -u LUA_BIN -u TLSPEER_BUILD "

  it("make env prints the paths that let require \"tlspeer\" work from any directory", function()
    local ok, env = H.run(clean .. "make -s env LUA=" .. lua_arg)
    assert.is_true(ok, env)
    assert.matches("export LUA_PATH='[^']*/lua/%?%.lua;", env)
    assert.matches("export LUA_CPATH='[^']*%?%.so;;'", env)
    local out
    ok, out = H.run(env .. "\ncd /tmp && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u LUA_PATH_5_3 "
      .. "-u LUA_CPATH_5_3 -u LUA_PATH_5_2 -u LUA_CPATH_5_2 " .. H.LUA
      .. " -e 'local t = require \"tlspeer\"; print(t.now() > 0, t.Crypto.new())'")
    assert.is_true(ok, out)
    assert.matches("true\tCrypto (mbedtls)", out, 1, true)
  end)

  it("make repl starts a Lua prompt with tls loaded", function()
    local ok, out = H.run("cd " .. H.q(dir) .. " && printf 'print(tls.HashingContext.HASH_SHA256)\\n' | "
      .. clean .. "make -s repl LUA=" .. lua_arg)
    assert.is_true(ok, out)
    assert.matches("tlspeer scm on mbedtls", out, 1, true)
    assert.matches("[\n ]2\n", out)       -- LuaJIT's prompt stays on the line
  end)
end)
