-- Proxies: HTTPClient's set_http_proxy (absolute-form requests) and
-- set_https_proxy (a CONNECT tunnel, TLS end to end with the server), the
-- same on HTTPRequest, tls.request's opts.proxy and the environment as
-- curl reads it (https_proxy/HTTPS_PROXY, http_proxy/HTTP_PROXY,
-- ALL_PROXY, NO_PROXY), Basic proxy credentials from user:pass@, and
-- refusals (407, 403) that say so.  Against tinyproxy (Debian's) with and
-- without BasicAuth, httpbin under gunicorn over TLS, nginx over plain
-- HTTP, and crafted proxies in this process that record what they get.
local H = require "helpers"
local D = require "httpd"
local U = require "tlspeer.httputil"
local tls = H.tls
local HTTPRequest, HTTPClient = tls.HTTPRequest, tls.HTTPClient
local R = HTTPRequest

local CWD = assert(os.getenv("PWD"))
local bin, ngx, proxy, authproxy, ca_opts, www, NGX

local crafted = {}
local function keep(s)
  crafted[#crafted + 1] = s
  return s
end

local function nginx_conf(ports, dir)
  NGX = ports[1]
  www = dir .. "/www"
  return ([[
  default_type text/plain;
  server {
    listen 127.0.0.1:%d;
    root %s;
    gzip on; gzip_types text/plain; gzip_min_length 0;
    location = /to-bin { return 302 "%s"; }
  }
]]):format(NGX, www, "__BIN__")
end

local function ngx_url(path) return ("http://127.0.0.1:%d%s"):format(NGX, path) end

local TEXT = ("a line of text that compresses well\n"):rep(5000)

-- Runs one HTTPRequest to completion; returns { result, code, headers,
-- body, err, errcode }.
local function fetch(req, url, headers, method, data, seconds)
  local out = {}
  req:on("request_completed", function(result, code, hdrs, body)
    out.result, out.code, out.headers, out.body = result, code, hdrs, body
  end)
  assert(req:request(url, headers, method, data))
  D.drive(function() return out.result ~= nil end, crafted, seconds or 20, "GET " .. url)
  out.err, out.errcode = req:get_error()
  return out
end

local function new_request(setup)
  local req = HTTPRequest.new()
  req:set_tls_options(ca_opts)
  if setup then setup(req) end
  return req
end

-- A connected blocking HTTPClient's GET of `path`: code, body; or nil,
-- message, code.
local function client_get(c, path)
  local ok, msg, code = c:request(HTTPClient.METHOD_GET, path, {})
  if not ok then return nil, msg, code end
  if not c:has_response() then return nil, c:get_error() end
  local parts = {}
  while c:get_status() == HTTPClient.STATUS_BODY do
    parts[#parts + 1] = c:read_response_body_chunk()
  end
  return c:get_response_code(), table.concat(parts)
end

setup(function()
  for _, f in ipairs { "ca.crt", "server.key", "server.crt" } do
    assert(H.exists("certs/" .. f), "certs/" .. f .. " is missing: run `make certs`")
  end
  ca_opts = D.client_tls()
  bin = D.httpbin()
  ngx = H.nginx(function(ports, dir)
    return (nginx_conf(ports, dir):gsub("__BIN__", bin.url("/get")))
  end, 1)
  assert(H.execute("mkdir -p " .. H.q(www)))
  H.write(www .. "/level.txt", TEXT)
  proxy = D.tinyproxy()
  authproxy = D.tinyproxy("BasicAuth gamer s3cret")
end)

teardown(function()
  for _, h in ipairs { bin, ngx, proxy, authproxy } do h.stop() end
  H.cleanup()
end)

after_each(function()
  for i = #crafted, 1, -1 do crafted[i].stop(); crafted[i] = nil end
end)

describe("HTTPClient proxies (Godot's set_http_proxy, set_https_proxy)", function()
  it("set_https_proxy: a CONNECT tunnel through tinyproxy, TLS end to end with httpbin", function()
    local c = HTTPClient.new()
    c:set_blocking_mode(true)
    c:set_timeout(10)
    assert.is_true(c:set_https_proxy("127.0.0.1", proxy.port))
    assert(c:connect_to_host("127.0.0.1", bin.port, ca_opts))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status(), (c:get_error()))
    assert.matches("via the proxy 127.0.0.1:" .. proxy.port, tostring(c), 1, true)
    local code, body = client_get(c, "/get?through=proxy")
    assert.equal(200, code)
    assert.matches('"through": ?"proxy"', body)
    assert.matches("CONNECT", proxy.log())
    -- Verification is the server's, end to end: the default bundle does
    -- not trust the dev CA, whatever the proxy.
    c = HTTPClient.new()
    c:set_blocking_mode(true)
    c:set_timeout(10)
    c:set_https_proxy("127.0.0.1", proxy.port)
    assert(c:connect_to_host("https://127.0.0.1:" .. bin.port))
    assert.equal(HTTPClient.STATUS_TLS_HANDSHAKE_ERROR, c:get_status())
  end)

  it("set_http_proxy: requests in absolute form through tinyproxy to nginx", function()
    local c = HTTPClient.new()
    c:set_blocking_mode(true)
    c:set_timeout(10)
    assert.is_true(c:set_http_proxy("127.0.0.1", proxy.port))
    assert(c:connect_to_host("127.0.0.1", NGX))
    local code, body = client_get(c, "/level.txt")
    assert.equal(200, code)
    assert.is_true(body == TEXT)
    assert.matches(("GET http://127.0.0.1:%d/level.txt"):format(NGX), proxy.log(), 1, true)
    -- An https proxy does not apply to http://, and the other way round.
    local recorder = keep(D.proxy())
    c = HTTPClient.new()
    c:set_https_proxy("127.0.0.1", recorder.port)
    assert(c:connect_to_host("127.0.0.1", NGX))
    D.drive(function() c:poll(); return c:get_status() == HTTPClient.STATUS_CONNECTED end, crafted, 10)
    assert.equal(0, recorder.connections)
  end)

  it("the absolute form, Host and Basic credentials as a recording proxy sees them", function()
    local recorder = keep(D.proxy())
    local c = HTTPClient.new()
    assert.is_true(c:set_http_proxy("gamer:s%3Acret@127.0.0.1", recorder.port))
    assert(c:connect_to_host("origin.test", 8080))
    D.drive(function() c:poll(); return c:get_status() == HTTPClient.STATUS_CONNECTED end, crafted, 10)
    assert(c:request(HTTPClient.METHOD_GET, "/a/b?c=d", { "Proxy-Authorization: Basic caller" }))
    D.drive(function() c:poll(); return c:has_response() end, crafted, 10)
    local head = recorder.requests[1]
    assert.matches("^GET http://origin%.test:8080/a/b%?c=d HTTP/1%.1\r\n", head)
    assert.equal("origin.test:8080", D.header(head, "Host"))
    -- The caller's header wins over the proxy's credentials.
    assert.equal("Basic caller", D.header(head, "Proxy-Authorization"))
    c:close()
    c = HTTPClient.new()
    c:set_http_proxy("gamer:s%3Acret@127.0.0.1", recorder.port)
    assert(c:connect_to_host("origin.test"))
    D.drive(function() c:poll(); return c:get_status() == HTTPClient.STATUS_CONNECTED end, crafted, 10)
    assert(c:request(HTTPClient.METHOD_GET, "/", {}))
    D.drive(function() c:poll(); return c:has_response() end, crafted, 10)
    head = recorder.requests[2]
    assert.matches("^GET http://origin%.test/ HTTP/1%.1\r\n", head)
    assert.equal("Basic " .. U.base64("gamer:s:cret"), D.header(head, "Proxy-Authorization"))
  end)

  it("the setters: \"\" or -1 unsets, bad hosts are nil, message, code, wrong types raise", function()
    local c = HTTPClient.new()
    assert.is_true(c:set_http_proxy("127.0.0.1", 3128))
    assert.is_true(c:set_http_proxy("", 3128))
    assert.is_true(c:set_https_proxy("[::1]", 3128))
    assert.is_true(c:set_https_proxy("proxy.test", -1))
    for _, host in ipairs { "bad host", "a\r\nb", "a\0b", "[127.0.0.1]", "u:p@bad\nhost" } do
      local ok, msg, code = c:set_http_proxy(host, 8080)
      assert.is_nil(ok, host)
      assert.equal("ERR_INVALID_PARAMETER", code)
      assert.matches("invalid proxy host", msg, 1, true)
      assert.is_falsy(msg:find("\n", 1, true))
    end
    for _, f in ipairs {
      function() c:set_http_proxy(nil, 80) end, function() c:set_http_proxy("p", "80") end,
      function() c:set_http_proxy("p", 0) end, function() c:set_https_proxy("p", 65536) end,
      function() c:set_https_proxy("p", 1.5) end,
    } do
      assert.has_error(f)
    end
  end)
end)

describe("proxies that refuse", function()
  it("tinyproxy with BasicAuth: 407 refuses the tunnel (ERR_UNAUTHORIZED), the right credentials pass", function()
    local r = fetch(new_request(function(q) q:set_https_proxy("127.0.0.1", authproxy.port) end),
      bin.url("/get"))
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.equal("ERR_UNAUTHORIZED", r.errcode)
    assert.matches("refused the tunnel to 127.0.0.1:" .. bin.port .. ": 407", r.err, 1, true)
    assert.matches("it wants credentials", r.err, 1, true)
    r = fetch(new_request(function(q) q:set_https_proxy("gamer:wrong@127.0.0.1", authproxy.port) end),
      bin.url("/get"))
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.equal("ERR_UNAUTHORIZED", r.errcode)
    assert.matches("refused the credentials", r.err, 1, true)   -- tinyproxy answers 401 then
    r = fetch(new_request(function(q) q:set_https_proxy("gamer:s3cret@127.0.0.1", authproxy.port) end),
      bin.url("/gzip"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.matches('"gzipped": ?true', r.body)
    -- Plain http through it: the 407 is the response.
    r = fetch(new_request(function(q) q:set_http_proxy("127.0.0.1", authproxy.port) end),
      ngx_url("/level.txt"))
    assert.equal(R.RESULT_SUCCESS, r.result)
    assert.equal(407, r.code)
    r = fetch(new_request(function(q) q:set_http_proxy("gamer:s3cret@127.0.0.1", authproxy.port) end),
      ngx_url("/level.txt"))
    assert.equal(200, r.code)
    assert.is_true(r.body == TEXT)
    -- tls.request, with the credentials in the proxy URL.
    local ok, msg, code = tls.request(bin.url("/get"),
      { tls_options = ca_opts, proxy = ("http://gamer:nope@127.0.0.1:%d"):format(authproxy.port) })
    assert.is_nil(ok)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches("refused the tunnel", msg, 1, true)
    assert.is_falsy(msg:find("nope", 1, true))
    ok, msg, code = tls.request(bin.url("/get"),
      { tls_options = ca_opts, proxy = ("http://127.0.0.1:%d"):format(authproxy.port) })
    assert.is_nil(ok)
    assert.equal("ERR_UNAUTHORIZED", code)
    assert.matches(": 407 ", msg, 1, true)
    local body, status = tls.request(bin.url("/get"),
      { tls_options = ca_opts, proxy = ("http://gamer:s3cret@127.0.0.1:%d/"):format(authproxy.port) })
    assert.equal(200, status)
    assert.matches('"url"', body)
  end)

  it("a proxy answering 403 or 502 to CONNECT: refusals that say so", function()
    local forbidding = keep(D.proxy(function()
      return D.response(403, "", "no games at work")
    end))
    local r = fetch(new_request(function(q) q:set_https_proxy("127.0.0.1", forbidding.port) end),
      "https://game.test/")
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.equal("ERR_UNAUTHORIZED", r.errcode)
    assert.matches("the proxy 127.0.0.1:" .. forbidding.port .. " refused the tunnel to game.test:443: 403 X",
      r.err, 1, true)
    assert.matches("^CONNECT game%.test:443 HTTP/1%.1\r\n", forbidding.requests[1])
    local failing = keep(D.proxy(function() return D.response(502) end))
    r = fetch(new_request(function(q) q:set_https_proxy("127.0.0.1", failing.port) end),
      "https://game.test/")
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.equal("ERR_CANT_CONNECT", r.errcode)
    assert.matches("502", r.err, 1, true)
    -- A proxy that is not there.
    local port = H.free_port()
    r = fetch(new_request(function(q) q:set_https_proxy("127.0.0.1", port) end), bin.url("/get"))
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.matches("the proxy 127.0.0.1:" .. port, r.err, 1, true)
    -- A proxy whose name does not resolve.
    r = fetch(new_request(function(q) q:set_https_proxy("no-such-proxy.invalid", 3128) end),
      bin.url("/get"))
    assert.equal(R.RESULT_CANT_RESOLVE, r.result)
    assert.matches("proxy", r.err, 1, true)
  end)
end)

describe("HTTPRequest through proxies", function()
  it("CONNECT carries the proxy's credentials; the server never sees Proxy-Authorization", function()
    local origin = keep(D.crafted(D.response(200, "", "secret level"), { tls = D.server_tls() }))
    local relay = keep(D.proxy())
    -- Credentials in the proxy host, and the caller's own header.
    for _, setup in ipairs {
      { "gamer:s3cret@127.0.0.1", {}, "Basic " .. U.base64("gamer:s3cret") },
      { "127.0.0.1", { "Proxy-Authorization: Basic bXk6b3du" }, "Basic bXk6b3du" },
    } do
      local r = fetch(new_request(function(q) q:set_https_proxy(setup[1], relay.port) end),
        origin.url("/level"), setup[2])
      assert.equal(R.RESULT_SUCCESS, r.result, r.err)
      assert.equal("secret level", r.body)
      local connect = relay.requests[#relay.requests]
      assert.matches("^CONNECT 127%.0%.0%.1:" .. origin.port .. " HTTP/1%.1\r\n", connect)
      assert.equal(setup[3], D.header(connect, "Proxy-Authorization"))
      assert.equal("127.0.0.1:" .. origin.port, D.header(connect, "Host"))
      local got = origin.requests[#origin.requests]
      assert.matches("^GET /level HTTP/1%.1\r\n", got)
      assert.is_nil(D.header(got, "Proxy-Authorization"))
    end
  end)

  it("gzip, redirects across origins and downloads to a file go through tinyproxy", function()
    local req = new_request(function(q)
      q:set_http_proxy("127.0.0.1", proxy.port)
      q:set_https_proxy("127.0.0.1", proxy.port)
    end)
    local r = fetch(req, ngx_url("/level.txt"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.is_true(r.body == TEXT)
    -- http (nginx) -> https (httpbin), both through the proxy.
    r = fetch(req, ngx_url("/to-bin"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.matches('"url": ?"https://127.0.0.1:' .. bin.port .. '/get"', r.body)
    local dir = H.tmpdir()
    req:set_download_file(dir .. "/bytes.bin")
    r = fetch(req, bin.url("/bytes/70000?seed=9"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal(70000, #H.read(dir .. "/bytes.bin"))
    local log = proxy.log()
    assert.matches("CONNECT", log)
    assert.matches("GET http://127.0.0.1:" .. NGX .. "/to%-bin", log)
  end)
end)

describe("tls.request: opts.proxy and the environment, as curl reads it", function()
  -- A proxy URL where nothing listens: a request that took it fails and
  -- names it; one that did not succeeds directly.
  local dead
  before_each(function() dead = H.free_port() end)

  local function child(url, env, extra)
    return D.in_child(([[
      local ca = tls.X509Certificate.new(); assert(ca:load("certs/ca.crt"))
      local body, code, c = tls.request(%q, { tls_options = tls.TLSOptions.client(ca), timeout = 10 %s })
      if type(body) == "string" then return "body", code, "-" end
      return body, code, c
    ]]):format(url, extra or ""), crafted, env)
  end
  local function took_dead_proxy(r)
    return r[1] == "nil" and r[2]:find("the proxy 127.0.0.1:" .. dead, 1, true) ~= nil
  end
  local none = { http_proxy = false, HTTP_PROXY = false, https_proxy = false, HTTPS_PROXY = false,
                 all_proxy = false, ALL_PROXY = false, no_proxy = false, NO_PROXY = false,
                 REQUEST_METHOD = false }
  local function env(t)
    local e = {}
    for k, v in pairs(none) do e[k] = v end
    for k, v in pairs(t) do e[k] = v end
    return e
  end

  it("https_proxy / HTTPS_PROXY for https://, http_proxy / HTTP_PROXY for http://, ALL_PROXY for both", function()
    local p = "http://127.0.0.1:" .. dead
    assert.is_true(took_dead_proxy(child(bin.url("/get"), env { HTTPS_PROXY = p })))
    assert.is_true(took_dead_proxy(child(bin.url("/get"), env { https_proxy = p })))
    assert.is_true(took_dead_proxy(child(ngx_url("/level.txt"), env { http_proxy = p })))
    assert.is_true(took_dead_proxy(child(ngx_url("/level.txt"), env { HTTP_PROXY = p })))
    assert.is_true(took_dead_proxy(child(ngx_url("/level.txt"), env { ALL_PROXY = p })))
    assert.is_true(took_dead_proxy(child(bin.url("/get"), env { all_proxy = p })))
    -- Each scheme its own: an http proxy is not used for https://.
    assert.same({ "body", "200", "-" }, child(bin.url("/get"), env { http_proxy = p }))
    assert.same({ "body", "200", "-" }, child(ngx_url("/level.txt"), env { HTTPS_PROXY = p }))
    -- In a CGI program (REQUEST_METHOD set) HTTP_PROXY may come from a
    -- request's "Proxy:" header: it is ignored there, http_proxy is not.
    assert.same({ "body", "200", "-" },
      child(ngx_url("/level.txt"), env { HTTP_PROXY = p, REQUEST_METHOD = "GET" }))
    assert.is_true(took_dead_proxy(child(ngx_url("/level.txt"),
      env { http_proxy = p, REQUEST_METHOD = "GET" })))
    -- A real one: tinyproxy from HTTPS_PROXY.
    assert.same({ "body", "200", "-" },
      child(bin.url("/get?from=env"), env { HTTPS_PROXY = "127.0.0.1:" .. proxy.port }))
    assert.matches("CONNECT", proxy.log())
  end)

  it("NO_PROXY: names, domains, *, IP addresses and CIDR ranges skip the proxy", function()
    local p = "http://127.0.0.1:" .. dead
    for _, list in ipairs { "127.0.0.1", "*", "example.com, 127.0.0.1", "127.0.0.0/8", " 127.0.0.1 " } do
      assert.same({ "body", "200", "-" }, child(bin.url("/get"), env { HTTPS_PROXY = p, NO_PROXY = list }),
        list)
    end
    assert.same({ "body", "200", "-" }, child(bin.url("/get"), env { HTTPS_PROXY = p, no_proxy = "127.0.0.1" }))
    for _, list in ipairs { "example.com", "127.0.0.2", "10.0.0.0/8", "0.0.1" } do
      assert.is_true(took_dead_proxy(child(bin.url("/get"), env { HTTPS_PROXY = p, NO_PROXY = list })), list)
    end
    -- opts.proxy = false: no proxy at all; opts.proxy given: the
    -- environment is not read (NO_PROXY neither); opts.no_proxy.
    assert.same({ "body", "200", "-" }, child(bin.url("/get"), env { HTTPS_PROXY = p }, ", proxy = false"))
    assert.is_true(took_dead_proxy(child(bin.url("/get"), env { NO_PROXY = "*" },
      (", proxy = %q"):format(p))))
    assert.same({ "body", "200", "-" }, child(bin.url("/get"), env {},
      (", proxy = %q, no_proxy = '127.0.0.1'"):format(p)))
  end)

  it("bad proxy settings are nil, message, ERR_INVALID_PARAMETER, without the password; wrong types raise", function()
    for _, value in ipairs { "https://127.0.0.1:3128", "socks5://127.0.0.1:1080", "http://bad host:1",
                             "http://127.0.0.1:99999", "http://user:hunter2@bad\nhost:1", "http://", "ftp://p:1" } do
      local ok, msg, code = tls.request(bin.url("/get"), { proxy = value, tls_options = ca_opts })
      assert.is_nil(ok, value)
      assert.equal("ERR_INVALID_PARAMETER", code, value)
      assert.matches("invalid proxy in option 'proxy'", msg, 1, true)
      assert.is_falsy(msg:find("hunter2", 1, true))
      assert.is_falsy(msg:find("\n", 1, true))
    end
    local r = child(bin.url("/get"), env { HTTPS_PROXY = "socks5://127.0.0.1:1" })
    assert.same({ "nil", "ERR_INVALID_PARAMETER" }, { r[1], r[3] })
    assert.matches("$HTTPS_PROXY", r[2], 1, true)
    assert.matches("SOCKS proxies are not supported", r[2], 1, true)
    for _, bad in ipairs { { proxy = true }, { proxy = 5 }, { no_proxy = 5 },
                           { proxy = false, no_proxy = "x" } } do
      assert.has_error(function() tls.request(bin.url("/get"), bad) end)
    end
  end)
end)

describe("httputil: proxy URLs and NO_PROXY", function()
  it("parses proxy URLs as curl does (http:// optional, port 1080 by default, user:pass@)", function()
    local p = assert(U.parse_proxy("proxy.test"))
    assert.same({ "proxy.test", 1080 }, { p.host, p.port })
    p = assert(U.parse_proxy("http://u%40x:p%3Aw@[::1]:3128/"))
    assert.same({ "::1", 3128 }, { p.host, p.port })
    assert.equal("Basic " .. U.base64("u@x:p:w"), p.auth)
    assert.equal("dTp2", U.base64("u:v"))
    assert.equal("YQ==", U.base64("a"))
    assert.equal("YWI=", U.base64("ab"))
    assert.is_nil(U.parse_proxy("http://:8080"))
    assert.is_nil(U.parse_proxy(""))
  end)

  it("matches NO_PROXY lists", function()
    local cases = {
      { "example.com", "example.com", true }, { "www.example.com", "example.com", true },
      { "www.example.com", ".example.com", true }, { "example.com", ".example.com", true },
      { "notexample.com", "example.com", false }, { "example.com.org", "example.com", false },
      { "EXAMPLE.com", "example.COM", true }, { "example.com.", "example.com", true },
      { "anything", "*", true }, { "anything", "*.example.com", false },
      { "10.1.2.3", "10.0.0.0/8", true }, { "11.1.2.3", "10.0.0.0/8", false },
      { "192.168.1.7", "192.168.1.0/25", true }, { "192.168.1.200", "192.168.1.0/25", false },
      { "127.0.0.1", "127.0.0.1", true }, { "127.0.0.11", "127.0.0.1", false },
      { "::1", "::1", true }, { "[::1]", "::1", true }, { "::1", "[::1]", true },
      { "fd00::5", "fd00::/8", true }, { "fe80::1", "fd00::/8", false },
      { "::ffff:10.0.0.1", "::ffff:10.0.0.0/120", true },
      { "10.0.0.1", "::/0", false }, { "host", "", false }, { "a.b", "b, c", true },
    }
    for _, c in ipairs(cases) do
      assert.equal(c[3], U.no_proxy_match(c[1], c[2]), c[1] .. " in " .. c[2])
    end
  end)
end)
