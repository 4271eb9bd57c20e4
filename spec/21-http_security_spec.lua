-- Regressions of the security issue #9 in the Lua layer: credentials on
-- redirects, host names carrying CR/LF or brackets, options that were not
-- type-checked (or not known), and Transfer-Encoding per RFC 9112, 6.
-- The servers are crafted by this spec over tls.TCPServer (plain or TLS
-- with the dev certificates), in this process; tls.request blocks, so for
-- it the client runs in a child process while this one serves.
local H = require "helpers"
local tls = H.tls
local HTTPClient = tls.HTTPClient

local CONNECTED = 2      -- StreamPeerTCP and StreamPeerTLS agree
local HANDSHAKING = tls.StreamPeerTLS.STATUS_HANDSHAKING

-- A server on a free loopback port.  For each request it reads (up to the
-- blank line) it writes respond(request, n) (n counts the requests of the
-- server; a nil response: never answers), then closes the connection unless
-- respond's second result is true (keep-alive: it reads the next request).
-- With server TLSOptions it speaks TLS.  s.step() is one non-blocking
-- step; s.requests the requests read; s.connections how many connections
-- arrived; s.stop() is idempotent.
local function crafted_server(respond, tls_options)
  local srv = tls.TCPServer.new()
  assert(srv:listen(0, "127.0.0.1"))
  local s = { port = srv:get_local_port(), conns = {}, requests = {}, connections = 0 }
  local function close(c)
    c.done = true
    if c.peer ~= c.tcp then pcall(c.peer.disconnect_from_stream, c.peer) end
    pcall(c.tcp.disconnect_from_host, c.tcp)
  end
  function s.step()
    while srv:is_listening() and srv:is_connection_available() do
      local tcp = srv:take_connection()
      local c = { tcp = tcp, peer = tcp, req = "" }
      if tls_options then
        c.peer = tls.StreamPeerTLS.new()
        assert(c.peer:accept_stream(tcp, tls_options))
      end
      s.connections = s.connections + 1
      s.conns[#s.conns + 1] = c
    end
    for _, c in ipairs(s.conns) do
      if not c.done then
        c.peer:poll()
        local st = c.peer:get_status()
        if st ~= CONNECTED then
          if not (tls_options and st == HANDSHAKING) then close(c) end
        elseif c.out then
          if c.pos <= #c.out then
            local n = c.peer:put_partial_data(c.out:sub(c.pos, c.pos + 65535))
            if not n then close(c) else c.pos = c.pos + n end
          elseif c.keep then
            c.out = nil
          else
            close(c)
          end
        elseif not c.silent then
          local d = c.peer:get_partial_data(65536)
          if not d then
            close(c)
          else
            c.req = c.req .. d
            local e = c.req:find("\r\n\r\n", 1, true)
            if e then
              local req = c.req:sub(1, e + 3)
              c.req = c.req:sub(e + 4)
              s.requests[#s.requests + 1] = req
              local response, keep = respond(req, #s.requests)
              if response then
                c.out, c.pos, c.keep = response, 1, keep
              else
                c.silent = true
              end
            end
          end
        end
      end
    end
  end
  function s.stop()
    for _, c in ipairs(s.conns) do if not c.done then close(c) end end
    if srv:is_listening() then srv:stop() end
  end
  return s
end

local servers = {}
local function serve(respond, tls_options)
  if type(respond) == "string" then
    local response = respond
    respond = function() return response end
  end
  local s = crafted_server(respond, tls_options)
  servers[#servers + 1] = s
  return s
end

local function step_all()
  for _, s in ipairs(servers) do s.step() end
end

-- Steps every server for `seconds` (no client of ours is running).
local function idle(seconds)
  local deadline = H.now() + seconds
  repeat step_all(); H.sleep(0.002) until H.now() > deadline
end

-- Runs `code` (a chunk that returns values) in a child H.LUA with this
-- process's paths, serving every server meanwhile; returns what the chunk
-- returned, as strings ("nil" for nil), one per line of the child's output.
local function in_child(code)
  local dir = H.tmpdir()
  local script, out, rc = dir .. "/client.lua", dir .. "/out", dir .. "/rc"
  H.write(script, ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
    .. "local tls = require 'tlspeer'\n"
    .. "local r = { (function() " .. code .. " end)() }\n"
    .. "for i = 1, 3 do io.write(tostring(r[i]), '\\n') end\n")
  assert(H.execute(("(timeout 20 %s %s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s)"
    .. " </dev/null >/dev/null 2>&1 &"):format(H.LUA, H.q(script), H.q(out), H.q(rc), H.q(rc), H.q(rc))))
  local deadline = H.now() + 25
  while not H.exists(rc) do
    assert(H.now() < deadline, "the child did not finish")
    step_all()
    H.sleep(0.001)
  end
  local text = H.read(out)
  assert(H.read(rc):match("^0"), "the child failed:\n" .. text)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

-- The value of header `name` in a raw request (case-insensitive), or nil.
local function header(req, name)
  for line in req:gmatch("[^\r\n]+") do
    local n, v = line:match("^([^:]+):%s*(.-)%s*$")
    if n and n:lower() == name:lower() then return v end
  end
end

local CREDENTIALS = { "Authorization", "Cookie", "Proxy-Authorization" }

local function response(code, extra, body)
  body = body or ""
  return ("HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s"):format(code, extra or "", #body, body)
end

local function redirect(location)
  return response(302, "Location: " .. location .. "\r\n")
end

local ACTIVE = {
  [HTTPClient.STATUS_RESOLVING] = true, [HTTPClient.STATUS_CONNECTING] = true,
  [HTTPClient.STATUS_REQUESTING] = true, [HTTPClient.STATUS_BODY] = true,
}

-- Polls the client and every server until the client is idle again
-- (bounded); returns the body read meanwhile.
local function settle(c, seconds)
  local deadline = H.now() + (seconds or 5)
  local body = {}
  while ACTIVE[c:get_status()] do
    assert(H.now() < deadline, "the exchange did not finish; status " .. c:get_status())
    c:poll()
    step_all()
    if c:get_status() == HTTPClient.STATUS_BODY then
      body[#body + 1] = c:read_response_body_chunk()
    end
    H.sleep(0.0005)
  end
  return table.concat(body)
end

-- A GET of `path` on HTTPClient c, which connects to s first when it is
-- disconnected (or finishes the connect_to_host already made).  Returns
-- the body.
local function get(c, s, path)
  if c:get_status() == HTTPClient.STATUS_DISCONNECTED then
    assert(c:connect_to_host("127.0.0.1", s.port))
  end
  settle(c)
  assert(c:get_status() == HTTPClient.STATUS_CONNECTED,
    "not connected: " .. tostring((c:get_error())))
  assert(c:request(HTTPClient.METHOD_GET, path or "/", {}))
  return settle(c)
end

local function url(s, path, scheme)
  return ("%s://127.0.0.1:%d%s"):format(scheme or "http", s.port, path or "/")
end

setup(function()
  for _, f in ipairs { "ca.crt", "server.key", "server.crt" } do
    assert(H.exists("certs/" .. f), "certs/" .. f .. " is missing: run `make certs`")
  end
end)

after_each(function()
  for i = #servers, 1, -1 do servers[i].stop(); servers[i] = nil end
end)

teardown(function() H.cleanup() end)

describe("redirects and credentials", function()
  local function request_in_child(u, headers_code, extra)
    return in_child(([[
      local ca = tls.X509Certificate.new()
      assert(ca:load("certs/ca.crt"))
      local body, code = tls.request(%q, { headers = %s, timeout = 10,
        tls_options = tls.TLSOptions.client(ca) %s })
      return body, code
    ]]):format(u, headers_code, extra or ""))
  end

  it("a redirect to another port drops Authorization, Cookie and Proxy-Authorization", function()
    local b = serve(response(200, "", "landed"))
    local a = serve(redirect(url(b, "/landing")))
    -- The names in any case, as a list and as a map.
    for _, headers in ipairs {
      '{ "Authorization: Bearer s3cret", "cookie: session=42", "PROXY-AUTHORIZATION: Basic eDp5",'
        .. ' "X-Keep: yes" }',
      '{ authorization = "Bearer s3cret", COOKIE = "session=42",'
        .. ' ["Proxy-Authorization"] = "Basic eDp5", ["X-Keep"] = "yes" }',
    } do
      a.requests, b.requests = {}, {}
      local r = request_in_child(url(a, "/start"), headers)
      assert.same({ "landed", "200" }, { r[1], r[2] })
      assert.equal(1, #a.requests)
      assert.equal(1, #b.requests)
      for _, name in ipairs(CREDENTIALS) do
        if name ~= "Proxy-Authorization" then    -- for a proxy only: no server gets it (spec 28)
          assert.is_string(header(a.requests[1], name), name .. " did not reach the first server")
        end
        assert.is_nil(header(b.requests[1], name), name .. " reached the other origin")
      end
      assert.is_nil(header(a.requests[1], "Proxy-Authorization"), "a server got Proxy-Authorization")
      assert.equal("yes", header(b.requests[1], "X-Keep"))
      assert.matches("^GET /landing HTTP/1%.1\r\n", b.requests[1])
    end
  end)

  it("a Host header the caller set is not sent to another origin (the new origin gets its own)", function()
    local b = serve(response(200, "", "landed"))
    local a = serve(redirect(url(b, "/landing")))
    local r = request_in_child(url(a, "/start"), '{ "Host: vhost.example" }')
    assert.same({ "landed", "200" }, { r[1], r[2] })
    assert.equal("vhost.example", header(a.requests[1], "Host"))
    assert.equal("127.0.0.1:" .. b.port, header(b.requests[1], "Host"))
  end)

  it("a redirect to a path with a TAB, NUL, VT or FF is the server's fault", function()
    for _, path in ipairs { "/a\tb", "/a\0b", "/a\11b", "/a\12b" } do
      local s = serve(redirect(path))
      local r = in_child(("return tls.request(%q, { timeout = 10 })"):format(url(s, "/")))
      assert.equal("nil", r[1])
      assert.matches("redirected to an invalid URL", r[2], 1, true)
      assert.equal("ERR_INVALID_DATA", r[3])
      assert.equal(1, #s.requests)
    end
  end)

  it("https -> http is followed, but without the credentials", function()
    local key, cert = tls.CryptoKey.new(), tls.X509Certificate.new()
    assert(key:load("certs/server.key"))
    assert(cert:load("certs/server.crt"))
    local plain = serve(response(200, "", "plain"))
    local secure = serve(redirect(url(plain, "/down")), tls.TLSOptions.server(key, cert))
    local r = request_in_child(url(secure, "/", "https"),
      '{ "Authorization: Bearer s3cret", "Cookie: a=1", "Proxy-Authorization: Basic eDp5" }')
    assert.same({ "plain", "200" }, { r[1], r[2] })
    assert.equal(1, #secure.requests)
    assert.equal(1, #plain.requests)
    for _, name in ipairs(CREDENTIALS) do
      if name ~= "Proxy-Authorization" then       -- for a proxy only (spec 28)
        assert.is_string(header(secure.requests[1], name))
      end
      assert.is_nil(header(plain.requests[1], name), name .. " went out over plain HTTP")
    end
  end)

  it("a redirect within the origin keeps them; once dropped they stay dropped", function()
    local a
    local b = serve(function() return redirect(url(a, "/back")) end)
    a = serve(function(_, n)
      if n == 1 then return redirect("/second") end                     -- relative
      if n == 2 then return redirect(url(a, "/third")) end              -- absolute, same origin
      if n == 3 then return redirect(url(b, "/away")) end               -- another origin
      return response(200, "", "done")
    end)
    local r = request_in_child(url(a, "/first"), '{ Authorization = "Bearer s3cret", Cookie = "c=1" }')
    assert.same({ "done", "200" }, { r[1], r[2] })
    assert.equal(4, #a.requests)
    for i = 1, 3 do
      assert.equal("Bearer s3cret", header(a.requests[i], "Authorization"), "request " .. i)
      assert.equal("c=1", header(a.requests[i], "Cookie"), "request " .. i)
    end
    assert.is_nil(header(b.requests[1], "Authorization"))
    -- Back at the first origin after another one: still without them.
    assert.matches("^GET /back ", a.requests[4])
    assert.is_nil(header(a.requests[4], "Authorization"))
    assert.is_nil(header(a.requests[4], "Cookie"))
  end)

  it("the origin rule: scheme, host (any case) and port, default ports included", function()
    local rule = HTTPClient._redirect_headers
    local list = { "Authorization: x", "Cookie: y", "Proxy-Authorization: z", "Accept: a/b" }
    local function kept(from, to) return #rule(list, from, to) end
    assert.equal(4, kept("https://example.com/a", "https://EXAMPLE.com:443/b?c"))
    assert.equal(4, kept("http://127.0.0.1/", "http://127.0.0.1:80/x"))
    assert.equal(4, kept("http://[::1]:8080/", "http://[::1]:8080/y"))
    assert.equal(1, kept("https://example.com/", "http://example.com/"))
    assert.equal(1, kept("https://example.com/", "https://example.org/"))
    assert.equal(1, kept("https://example.com/", "https://example.com:8443/"))
    assert.equal(1, kept("http://localhost:80/", "http://127.0.0.1:80/"))
    assert.same({ "Accept: a/b" }, rule(list, "https://example.com/", "https://evil.example/"))
  end)
end)

describe("host names", function()
  local BAD = {
    "127.0.0.1\0\r\nX-Injected: 1",
    "127.0.0.1\r\nX-Injected: 1",
    "http://127.0.0.1\r\nX-Injected: 1",
    "https://[127.0.0.1\r\nX-Injected: 1]",
    "http://127.0.0.1\nX-Injected: 1/path",
    "[127.0.0.1]", "http://[localhost]", "[::1", "::1]",
    "bad host", "a..b", "http://user@127.0.0.1", "127.0.0.1:1:2",
  }

  it("HTTPClient:connect_to_host refuses a bad host at once: no connection, no injected line", function()
    local s = serve(response(200, "", "ok"))
    local c = HTTPClient.new()
    for _, host in ipairs(BAD) do
      local ok, msg, code = c:connect_to_host(host, s.port)
      assert.is_nil(ok, ("%q was accepted"):format(host))
      assert.equal("ERR_INVALID_PARAMETER", code)
      assert.is_string(msg)
      assert.is_nil(msg:find("[\r\n%z]"), "the message carries the line break: " .. msg)
      assert.equal(HTTPClient.STATUS_DISCONNECTED, c:get_status())
      assert.has_no_error(function() c:poll() end)
    end
    idle(0.1)
    assert.equal(0, s.connections)
    -- The same client and server are fine with a good name; nothing
    -- injected ever arrived.
    assert.equal("ok", get(c, s))
    assert.equal(1, #s.requests)
    assert.matches("\r\nHost: 127%.0%.0%.1:" .. s.port .. "\r\n", s.requests[1])
    for _, req in ipairs(s.requests) do assert.is_nil(req:find("X-Injected", 1, true)) end
  end)

  it("connect_to_host reads the port of the URL form; a second, different port is an error", function()
    local s = serve(function() return response(200, "", "ok"), true end)
    for _, form in ipairs {
      { url(s, ""), nil }, { url(s, "/ignored/path"), -1 }, { url(s, ""), s.port },
      { "127.0.0.1:" .. s.port, nil },
    } do
      local c = HTTPClient.new()
      assert.is_true(c:connect_to_host(form[1], form[2]))
      assert.equal("ok", get(c, s))
      c:close()
    end
    assert.equal(4, #s.requests)
    local c = HTTPClient.new()
    local ok, msg, code = c:connect_to_host(url(s, ""), s.port + 1)
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches(tostring(s.port), msg, 1, true)
    for _, bad in ipairs { "http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:8x",
                           "https://localhost:-1" } do
      ok, msg, code = c:connect_to_host(bad)
      assert.is_nil(ok, bad)
      assert.equal("ERR_INVALID_PARAMETER", code)
    end
    -- Brackets around an IPv6 literal, with or without a port.
    assert.is_true(c:connect_to_host("https://[::1]:9443"))
    assert.matches("https://[::1]:9443)", tostring(c), 1, true)
    assert.is_true(c:connect_to_host("[::1]", 8080))
    assert.is_true(c:connect_to_host("https://localhost:9443/x"))
    assert.matches("https://localhost:9443", tostring(c), 1, true)
    c:close()
  end)

  it("a space or control character in the path is refused: by tls.request (nil, message) and by request() (raises)", function()
    local s = serve(response(200, "", "ok"))
    for _, path in ipairs { "/a b", "/a\tb", "/a\0b", "/a\11b", "/a\12b", "/a\127b", "/x\r\nX-Injected: 1" } do
      local u = "http://127.0.0.1:" .. s.port .. path
      local body, msg, code = tls.request(u, { timeout = 2 })
      assert.is_nil(body, ("%q was requested"):format(u))
      assert.equal("ERR_INVALID_PARAMETER", code, msg)
      assert.matches("space or control character", msg, 1, true)
      local c = HTTPClient.new()
      assert.has_error(function() c:request(HTTPClient.METHOD_GET, path, {}) end)
    end
    assert.equal(0, #s.requests)
  end)

  it("tls.request refuses a bad host in the URL at once, without connecting", function()
    local s = serve(response(200, "", "ok"))
    for _, host in ipairs { "[127.0.0.1]", "[localhost]", "[127.0.0.1\r\nX-Injected: 1]",
                            "127.0.0.1\0.example", "bad host", "[::1" } do
      local u = "http://" .. host .. ":" .. s.port .. "/"   -- (5.1/5.2's %s stops at a NUL)
      local t0 = H.now()
      local body, msg, code = tls.request(u, { timeout = 1 })
      assert.is_nil(body, ("%q was requested"):format(u))
      assert.equal("ERR_INVALID_PARAMETER", code, msg)
      assert.matches("invalid host name", msg, 1, true)
      assert.is_nil(msg:find("[\r\n%z]"), "the message carries the line break: " .. msg)
      assert.is_true(H.now() - t0 < 0.5)
    end
    idle(0.1)
    assert.equal(0, s.connections)
  end)

  it("tls.connect raises on a bad host, as on other bad options", function()
    local s = serve(response(200))
    for _, host in ipairs { "127.0.0.1\r\nX-Injected: 1", "127.0.0.1\0", "[127.0.0.1]", "a b" } do
      local ok, err = pcall(tls.connect, { host = host, port = s.port, unsafe = true })
      assert.is_false(ok, ("%q was accepted"):format(host))
      assert.matches("bad option 'host' to 'connect'", err, 1, true)
      assert.matches("invalid host name", err, 1, true)
    end
    idle(0.1)
    assert.equal(0, s.connections)
  end)

  it("a redirect to an invalid host is the server's fault: ERR_INVALID_DATA", function()
    local b = serve(response(200, "", "landed"))
    for _, location in ipairs { ("http://[127.0.0.1]:%d/"):format(b.port),
                                ("http://bad host:%d/"):format(b.port),
                                ("http://127.0.0.1\0.x:%d/"):format(b.port),
                                ("//[localhost]:%d/"):format(b.port) } do
      local a = serve(redirect(location))
      local r = in_child(("return tls.request(%q, { timeout = 5 })"):format(url(a)))
      assert.equal("nil", r[1], location)
      assert.matches("redirected to an invalid URL", r[2], 1, true)
      assert.equal("ERR_INVALID_DATA", r[3])
    end
    assert.equal(0, b.connections)
  end)
end)

describe("options", function()
  local function new_server(extra)
    local opts = { port = 0, bind = "127.0.0.1", certificate = "certs/server.crt",
                   key = "certs/server.key" }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return assert(tls.listen(opts))
  end

  local function raises(f, pattern)
    local ok, err = pcall(f)
    assert.is_false(ok, "did not raise; expected " .. pattern)
    assert.matches(pattern, err, 1, true)
  end

  it("unsafe = \"false\" or 0 raises instead of turning verification off", function()
    local crypto = tls.Crypto.new()
    local key = crypto:generate_ec()
    local srv = new_server { certificate = crypto:generate_self_signed_certificate(key, "CN=localhost"),
                             key = key }
    local port = srv:get_local_port()
    raises(function() tls.connect { host = "localhost", port = port, unsafe = "false" } end,
      "bad option 'unsafe' to 'connect' (boolean expected, got string)")
    raises(function() tls.connect { host = "localhost", port = port, unsafe = 0 } end,
      "bad option 'unsafe' to 'connect' (boolean expected, got number)")
    -- unsafe = false verifies (and refuses the self-signed server); true does not.
    local function outcome(unsafe)
      local c = tls.connect { host = "localhost", port = port, unsafe = unsafe }
      local done, result
      c:on("connection_established", function() done, result = true, "established" end)
      c:on("connection_failed", function(_, code) done, result = true, code end)
      local deadline = H.now() + 5
      while not done and H.now() < deadline do srv:poll(); c:poll(); H.sleep(0.001) end
      c:close()
      return result
    end
    assert.equal("ERR_UNAUTHORIZED", outcome(false))
    assert.equal("established", outcome(true))
    srv:stop()
  end)

  it("an unknown option raises, naming it and the known ones", function()
    local taken = new_server()
    local port = taken:get_local_port()
    taken:stop()
    local ok, err = pcall(tls.listen, { prot = port, certificate = "certs/server.crt",
                                        key = "certs/server.key" })
    if ok then err:stop() end
    assert.is_false(ok, "tls.listen took an unknown option")
    assert.matches("unknown option 'prot' to 'listen' (known: alpn, bind, certificate, ", err, 1, true)
    assert.matches(", port, session_tickets, trusted, verify)", err, 1, true)
    raises(function() tls.connect { host = "localhost", port = port, trust = "certs/ca.crt" } end,
      "unknown option 'trust' to 'connect' (known: alpn, certificate, ")
    local s = serve(response(200, "", "ok"))
    raises(function() tls.request(url(s), { trusted = "certs/ca.crt" }) end,
      "unknown option 'trusted' to 'request' (known: accept_gzip, body, body_size_limit, chunk_size, headers, ")
    raises(function() tls.request(url(s), { [1] = "GET" }) end, "unknown option '1' to 'request'")
    idle(0.05)
    assert.equal(0, s.connections)
  end)

  it("every option of tls.listen, tls.connect and tls.request is type-checked", function()
    local cert = tls.X509Certificate.new()
    assert(cert:load("certs/server.crt"))
    local cases = {
      listen = {
        { "port", "8443", "number expected, got string" }, { "bind", 1, "string expected, got number" },
        { "certificate", 1, "path or X509Certificate expected, got number" },
        { "key", cert, "path or CryptoKey expected, got userdata" },
        { "key_password", 1, "string expected" }, { "trusted", true, "path or X509Certificate" },
        { "verify", true, "string expected, got boolean" }, { "alpn", "h2", "list of strings expected" },
        { "alpn", { 1 }, "list of strings expected" }, { "min_version", 1.2, "string expected" },
        { "ciphersuites", "X", "list of strings expected" },
        { "handshake_timeout", "10", "number expected, got string" },
      },
      connect = {
        { "host", 1, "string expected" }, { "port", "443", "number expected" },
        { "timeout", true, "number expected" }, { "trusted", 5, "path or X509Certificate" },
        { "certificate", 5, "path or X509Certificate" }, { "key", 5, "path or CryptoKey" },
        { "key_password", 1, "string expected" }, { "unsafe", "yes", "boolean expected" },
        { "common_name", 5, "string expected, got number" }, { "alpn", "h2", "list of strings" },
        { "min_version", 1.3, "string expected" }, { "ciphersuites", { true }, "list of strings" },
      },
      request = {
        { "method", {}, "string or number expected, got table" }, { "headers", "A: b", "table expected" },
        { "body", {}, "string expected" }, { "tls_options", "x", "TLSOptions expected, got string" },
        { "timeout", "1", "number expected" }, { "max_redirects", "8", "number expected" },
        { "output", 5, "path or open file expected, got number" },
        { "sink", "x", "function expected, got string" }, { "chunk_size", "1", "number expected" },
      },
    }
    local base = {
      listen = function() return { port = 0, bind = "127.0.0.1", certificate = "certs/server.crt",
                                   key = "certs/server.key" } end,
      connect = function() return { host = "localhost", port = 1 } end,
    }
    local s = serve(response(200, "", "ok"))
    for fname, list in pairs(cases) do
      for _, case in ipairs(list) do
        local name, value, expected = case[1], case[2], case[3]
        local ok, err
        if fname == "request" then
          local opts = { timeout = 1 }
          opts[name] = value
          ok, err = pcall(tls.request, url(s), opts)
        else
          local opts = base[fname]()
          if name == "key" or name == "certificate" then opts.certificate, opts.key = nil, nil end
          opts[name] = value
          if name == "key" then opts.certificate = "certs/server.crt" end
          if name == "certificate" then opts.key = "certs/server.key" end
          ok, err = pcall(tls[fname], opts)
          if ok and type(err) == "table" and err.stop then err:stop() end
        end
        assert.is_false(ok, ("%s{%s = %s} did not raise"):format(fname, name, tostring(value)))
        assert.matches(("bad option '%s' to '%s' ("):format(name, fname), err, 1, true)
        assert.matches(expected, err, 1, true)
      end
    end
    idle(0.05)
    assert.equal(0, s.connections)
    -- The right types still work, every option given.
    local srv = assert(tls.listen { port = 0, bind = "127.0.0.1", certificate = "certs/server.crt",
      key = "certs/server.key", trusted = "certs/ca.crt", verify = "optional",
      alpn = { "x/1" }, min_version = "1.2",
      ciphersuites = { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" }, handshake_timeout = 5 })
    local c = tls.connect { host = "127.0.0.1", port = srv:get_local_port(), trusted = "certs/ca.crt",
      common_name = "localhost", certificate = "certs/client.crt", key = "certs/client.key",
      unsafe = false, alpn = { "x/1" }, min_version = "1.2",
      ciphersuites = { "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" }, timeout = 5 }
    local deadline = H.now() + 5
    while not c.established and not c.failure and H.now() < deadline do
      srv:poll(); c:poll(); H.sleep(0.001)
    end
    assert.is_true(c.established, c.failure and c.failure[1])
    c:close(); srv:stop()
  end)
end)

describe("Transfer-Encoding (RFC 9112, 6)", function()
  local CHUNKED_HELLO = "5\r\nhello\r\n0\r\n\r\n"

  it("the body is chunked only when chunked is the final coding", function()
    local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" .. CHUNKED_HELLO)
    local c = HTTPClient.new()
    assert.equal("hello", get(c, s))
    assert.is_true(c:is_response_chunked())
    c:close()
    for _, te in ipairs { "chunked, gzip", "xchunked", "chunked;q=1, identity", "gzip" } do
      s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: " .. te .. "\r\n\r\n" .. CHUNKED_HELLO)
      c = HTTPClient.new()
      assert.equal(CHUNKED_HELLO, get(c, s), te)         -- read until the server closes
      assert.is_false(c:is_response_chunked(), te)
      assert.equal(-1, c:get_response_body_length())
      assert.equal(HTTPClient.STATUS_DISCONNECTED, c:get_status(), te)
    end
  end)

  it("Transfer-Encoding split over two header lines is one list", function()
    local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nX-A: b\r\n"
      .. "transfer-encoding: chunked\r\n\r\n" .. CHUNKED_HELLO)
    local c = HTTPClient.new()
    assert.equal("hello", get(c, s))
    assert.is_true(c:is_response_chunked())
    c:close()
    s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"
      .. CHUNKED_HELLO)
    c = HTTPClient.new()
    assert.equal(CHUNKED_HELLO, get(c, s))
    assert.is_false(c:is_response_chunked())
  end)

  it("Transfer-Encoding with Content-Length: chunked wins, then a new connection", function()
    -- The server would keep the connection for the next request.
    local s = serve(function()
      return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. "3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n", true
    end)
    local c = HTTPClient.new()
    assert.equal("abcdefg", get(c, s))
    assert.is_true(c:is_response_chunked())
    assert.equal(HTTPClient.STATUS_DISCONNECTED, c:get_status())
    assert.equal("abcdefg", get(c, s))
    assert.equal(2, #s.requests)
    assert.equal(2, s.connections)
  end)

  it("an HTTP/1.0 response with Transfer-Encoding closes the connection", function()
    local s = serve(function()
      return "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. CHUNKED_HELLO, true
    end)
    local c = HTTPClient.new()
    assert.equal("hello", get(c, s))
    assert.equal(HTTPClient.STATUS_DISCONNECTED, c:get_status())
    assert.equal("hello", get(c, s))
    assert.equal(2, s.connections)
  end)

  it("an empty Transfer-Encoding is an error", function()
    local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\nContent-Length: 5\r\n\r\nhello")
    local c = HTTPClient.new()
    get(c, s)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, c:get_status())
    local msg, code = c:get_error()
    assert.matches("invalid Transfer-Encoding", msg, 1, true)
    assert.equal("ERR_INVALID_DATA", code)
  end)
end)
