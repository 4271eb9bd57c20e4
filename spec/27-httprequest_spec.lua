-- HTTPRequest (Godot's, poll-driven) and tls.request's content codings and
-- timeouts, against real servers this spec starts: python3-httpbin under
-- gunicorn over TLS, nginx with gzip, and crafted servers in this process
-- that misbehave on purpose (truncated and corrupt gzip, a gzip bomb, bodies
-- cut short, sizes that disagree).  Every RESULT_* value is produced here
-- for real.  Timing is never asserted (the bench measures it): deadlines
-- only bound hangs.
local H = require "helpers"
local D = require "httpd"
local tls = H.tls
local HTTPRequest, HTTPClient = tls.HTTPRequest, tls.HTTPClient
local R = HTTPRequest

local CWD = assert(os.getenv("PWD"))
local bin, ngx, www, ca_opts
local NGX_TLS, NGX_PLAIN
local BIG = 5 * 1024 * 1024

-- A text that gzip shrinks a lot, and random bytes it cannot.
local TEXT = {}
for i = 1, 60000 do TEXT[#TEXT + 1] = ("line %d of the level data\n"):format(i) end
TEXT = table.concat(TEXT)

local function sha256(data)
  local ctx = tls.HashingContext.new()
  ctx:start(tls.HashingContext.HASH_SHA256)
  ctx:update(data)
  return H.hex(ctx:finish())
end

local function nginx_conf(ports, dir)
  NGX_TLS, NGX_PLAIN = ports[1], ports[2]
  www = dir .. "/www"
  return ([[
  types { text/plain txt; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:%d ssl;
    listen 127.0.0.1:%d;
    ssl_certificate %s/certs/server.crt;
    ssl_certificate_key %s/certs/server.key;
    root %s;
    gzip on;
    gzip_types text/plain;
    gzip_min_length 0;
    gzip_comp_level 6;
  }
]]):format(NGX_TLS, NGX_PLAIN, CWD, CWD, www)
end

local function ngx_url(path, plain)
  if plain then return ("http://127.0.0.1:%d%s"):format(NGX_PLAIN, path) end
  return ("https://127.0.0.1:%d%s"):format(NGX_TLS, path)
end

local crafted = {}
local function serve(respond, opts)
  local s = D.crafted(respond, opts)
  crafted[#crafted + 1] = s
  return s
end

-- A new HTTPRequest trusting the dev CA; `setup` may change properties.
local function new_request(setup)
  local req = HTTPRequest.new()
  req:set_tls_options(ca_opts)
  if setup then setup(req) end
  return req
end

-- Runs one request to completion (tls.poll() and the crafted servers
-- stepped meanwhile); returns { result, code, headers, body, err, errcode,
-- events = n }.
local function fetch(req, url, headers, method, data, seconds)
  local out = { events = 0 }
  req:on("request_completed", function(result, code, hdrs, body)
    out.events = out.events + 1
    out.result, out.code, out.headers, out.body = result, code, hdrs, body
  end)
  assert(req:request(url, headers, method, data))
  D.drive(function() return out.events > 0 end, crafted, seconds or 20, "GET " .. url)
  out.err, out.errcode = req:get_error()
  return out
end

-- The value of a header in a request_completed list.
local function header_of(list, name)
  for _, h in ipairs(list) do
    local n, v = h:match("^([^:]+):%s*(.-)%s*$")
    if n and n:lower() == name:lower() then return v end
  end
end

-- httpbin echoes the request's headers as JSON: the value of one.
local function echoed(body, name)
  return body:match('"' .. name .. '": ?"([^"]*)"')
end

setup(function()
  for _, f in ipairs { "ca.crt", "server.key", "server.crt" } do
    assert(H.exists("certs/" .. f), "certs/" .. f .. " is missing: run `make certs`")
  end
  ca_opts = D.client_tls()
  bin = D.httpbin()
  ngx = H.nginx(nginx_conf, 2)
  assert(H.execute("mkdir -p " .. H.q(www)))
  H.write(www .. "/level.txt", TEXT)
  H.write(www .. "/big.bin", H.bytes(BIG, 7))
end)

teardown(function()
  if bin then bin.stop() end
  if ngx then ngx.stop() end
  H.cleanup()
end)

after_each(function()
  for i = #crafted, 1, -1 do crafted[i].stop(); crafted[i] = nil end
end)

describe("HTTPRequest: the contract", function()
  it("has Godot's RESULT_* values 0-13 and its defaults", function()
    local names = { "SUCCESS", "CHUNKED_BODY_SIZE_MISMATCH", "CANT_CONNECT", "CANT_RESOLVE",
      "CONNECTION_ERROR", "TLS_HANDSHAKE_ERROR", "NO_RESPONSE", "BODY_SIZE_LIMIT_EXCEEDED",
      "BODY_DECOMPRESS_FAILED", "REQUEST_FAILED", "DOWNLOAD_FILE_CANT_OPEN",
      "DOWNLOAD_FILE_WRITE_ERROR", "REDIRECT_LIMIT_REACHED", "TIMEOUT" }
    for i, name in ipairs(names) do
      assert.equal(i - 1, HTTPRequest["RESULT_" .. name], name)
    end
    local req = HTTPRequest.new()
    assert.is_true(req:is_accepting_gzip())
    assert.equal(-1, req:get_body_size_limit())
    assert.equal(65536, req:get_download_chunk_size())
    assert.equal("", req:get_download_file())
    assert.equal(8, req:get_max_redirects())
    assert.equal(0, req:get_timeout())
    assert.equal(HTTPClient.STATUS_DISCONNECTED, req:get_http_client_status())
    assert.equal(-1, req:get_body_size())
    assert.equal(0, req:get_downloaded_bytes())
    assert.is_nil(req:get_error())
    assert.matches("^HTTPRequest %(idle", tostring(req))
    -- Setters and getters pair up.
    req:set_accept_gzip(false); assert.is_false(req:is_accepting_gzip())
    req:set_body_size_limit(1000); assert.equal(1000, req:get_body_size_limit())
    req:set_download_chunk_size(4096); assert.equal(4096, req:get_download_chunk_size())
    req:set_download_file("x.bin"); assert.equal("x.bin", req:get_download_file())
    req:set_max_redirects(-1); assert.equal(-1, req:get_max_redirects())
    req:set_timeout(2.5); assert.equal(2.5, req:get_timeout())
    assert.is_true(req:set_http_proxy("127.0.0.1", 3128))
    assert.is_true(req:set_https_proxy("", -1))
  end)

  it("raises on wrong argument types and unknown events; a bad URL is nil, message, code", function()
    local req = HTTPRequest.new()
    for _, f in ipairs {
      function() req:request(42) end,
      function() req:request("https://x.test/", "Accept: */*") end,
      function() req:request("https://x.test/", { "Bad header" }) end,
      function() req:request("https://x.test/", { "X-A: b\r\nX-Evil: 1" }) end,
      function() req:request("https://x.test/", { ["X-A"] = "b\0c" }) end,
      function() req:request("https://x.test/", {}, 99) end,
      function() req:request("https://x.test/", {}, "GET") end,
      function() req:request("https://x.test/", {}, 0, 42) end,
      function() req:set_accept_gzip("yes") end,
      function() req:set_body_size_limit(-2) end,
      function() req:set_body_size_limit(1.5) end,
      function() req:set_download_chunk_size(10) end,
      function() req:set_download_file(nil) end,
      function() req:set_max_redirects("8") end,
      function() req:set_timeout(-1) end,
      function() req:set_tls_options("x") end,
      function()
        local crypto = tls.Crypto.new()
        local k = crypto:generate_ec()
        req:set_tls_options(assert(tls.TLSOptions.server(k, crypto:generate_self_signed_certificate(k))))
      end,
      function() req:set_http_proxy(1, 2) end,
      function() req:set_https_proxy("x", 70000) end,
      function() req:on("finished", function() end) end,
      function() req:on("request_completed", "f") end,
    } do
      assert.has_error(f)
    end
    for _, url in ipairs { "ftp://x/", "https://bad host/", "https://a\r\nb/", "https://[x]/",
                           "http://x:99999/", "https://x/a b", "" } do
      local ok, msg, code = req:request(url)
      assert.is_nil(ok, url)
      assert.equal("ERR_INVALID_PARAMETER", code)
      assert.matches("invalid URL", msg, 1, true)
      assert.is_falsy(msg:find("\r", 1, true))
    end
    local ok, msg, code = req:set_http_proxy("bad\r\nhost", 8080)
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("invalid proxy host", msg, 1, true)
    assert.equal(HTTPClient.STATUS_DISCONNECTED, req:get_http_client_status())
  end)

  it("GETs from httpbin over TLS: request_completed(result, code, headers, body)", function()
    local req = new_request()
    local r = fetch(req, bin.url("/get?level=3"), { "X-Game: tlspeer", "Accept: application/json" })
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal(200, r.code)
    assert.equal(1, r.events)
    assert.is_true(#r.headers > 0)
    for _, h in ipairs(r.headers) do assert.matches("^[%w%-]+: ", h) end
    assert.equal("application/json", header_of(r.headers, "content-type"))
    assert.equal("tlspeer", echoed(r.body, "X%-Game"))
    assert.equal("gzip, deflate", echoed(r.body, "Accept%-Encoding"))
    assert.matches('"level": ?"3"', r.body)
    assert.is_nil(r.err)
    assert.equal(HTTPClient.STATUS_DISCONNECTED, req:get_http_client_status())
    -- Any status is a response.
    r = fetch(new_request(), bin.url("/status/418"))
    assert.equal(R.RESULT_SUCCESS, r.result)
    assert.equal(418, r.code)
  end)

  it("decodes httpbin's /gzip and /deflate; raw when accept_gzip is off or the caller asks its own", function()
    for _, path in ipairs { "/gzip", "/deflate" } do
      local r = fetch(new_request(), bin.url(path))
      assert.equal(R.RESULT_SUCCESS, r.result, r.err)
      assert.equal(path == "/gzip" and "gzip" or "deflate", header_of(r.headers, "Content-Encoding"))
      assert.matches(path == "/gzip" and '"gzipped": ?true' or '"deflated": ?true', r.body)
    end
    -- accept_gzip off: nothing asked for; httpbin compresses anyway, and
    -- the body comes as sent.
    local r = fetch(new_request(function(q) q:set_accept_gzip(false) end), bin.url("/gzip"))
    assert.equal(R.RESULT_SUCCESS, r.result)
    assert.equal("\31\139", r.body:sub(1, 2))
    r = fetch(new_request(function(q) q:set_accept_gzip(false) end), bin.url("/headers"))
    assert.is_nil(echoed(r.body, "Accept%-Encoding"))
    -- The caller's own Accept-Encoding: sent as given, the body not decoded.
    r = fetch(new_request(), bin.url("/gzip"), { "Accept-Encoding: gzip" })
    assert.equal("\31\139", r.body:sub(1, 2))
    assert.equal("gzip", echoed(tls.request(bin.url("/headers"),
      { tls_options = ca_opts, headers = { "Accept-Encoding: gzip" } }), "Accept%-Encoding"))
  end)

  it("decodes nginx's gzip of a large text, in memory and to a file", function()
    local r = fetch(new_request(), ngx_url("/level.txt"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal("gzip", header_of(r.headers, "Content-Encoding"))
    assert.equal(#TEXT, #r.body)
    assert.is_true(r.body == TEXT)
    local dir = H.tmpdir()
    local req = new_request(function(q) q:set_download_file(dir .. "/level.txt") end)
    local progress = {}
    req:on("progress", function(got, size) progress[#progress + 1] = { got, size } end)
    r = fetch(req, ngx_url("/level.txt", true))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal("", r.body)
    assert.is_true(H.read(dir .. "/level.txt") == TEXT)
    assert.is_false(H.exists(dir .. "/level.txt.part"))
    -- Progress counts the bytes as they came (compressed), up to the whole.
    assert.is_true(#progress > 0)
    assert.equal(req:get_downloaded_bytes(), progress[#progress][1])
    assert.is_true(req:get_downloaded_bytes() < #TEXT / 4)
  end)

  it("follows redirects (httpbin /redirect/n) up to max_redirects, then RESULT_REDIRECT_LIMIT_REACHED", function()
    local r = fetch(new_request(), bin.url("/redirect/3"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal(200, r.code)
    assert.matches('"url": ?"https://127.0.0.1:%d+/get"', r.body)
    r = fetch(new_request(function(q) q:set_max_redirects(2) end), bin.url("/redirect/3"))
    assert.equal(R.RESULT_REDIRECT_LIMIT_REACHED, r.result)
    assert.equal(302, r.code)
    assert.is_string(header_of(r.headers, "Location"))
    assert.equal("", r.body)
    assert.equal("ERR_UNAVAILABLE", r.errcode)
    assert.matches("more than 2 redirects", r.err, 1, true)
    r = fetch(new_request(function(q) q:set_max_redirects(0) end), bin.url("/redirect/1"))
    assert.equal(R.RESULT_REDIRECT_LIMIT_REACHED, r.result)
    -- 303 after a POST is a GET; 307 keeps the POST and its body.
    r = fetch(new_request(), bin.url("/redirect-to?url=/get&status_code=303"), {},
      HTTPClient.METHOD_POST, "a=1")
    assert.equal(200, r.code)
    assert.matches('"url": ?"[^"]*/get"', r.body)
    r = fetch(new_request(), bin.url("/redirect-to?url=/post&status_code=307"),
      { "Content-Type: text/plain" }, HTTPClient.METHOD_POST, "level=3")
    assert.equal(200, r.code)
    assert.matches('"data": ?"level=3"', r.body)
  end)

  it("POSTs with request() and request_raw() (binary bytes)", function()
    local r = fetch(new_request(), bin.url("/post"), { "Content-Type: application/json" },
      HTTPClient.METHOD_POST, '{"score":42}')
    assert.equal(200, r.code)
    assert.matches('"score": ?42', r.body)
    local bytes = "\0\1\2\255binary\0"
    local req = new_request()
    local out = {}
    req:on("request_completed", function(result, code, _, body) out = { result, code, body } end)
    assert(req:request_raw(bin.url("/post"), { "Content-Type: application/octet-stream" },
      HTTPClient.METHOD_POST, bytes))
    D.drive(function() return out[1] ~= nil end, nil, 20)
    assert.equal(200, out[2])
    local b64 = out[3]:match('"data": ?"data:application/octet%-stream;base64,([^"]*)"')
    assert.is_string(b64, out[3])
    assert.equal("AAEC/2JpbmFyeQA=", b64)
  end)

  it("streams httpbin's chunked /stream-bytes and /stream; downloads a 5 MB file with progress", function()
    local r = fetch(new_request(), bin.url("/stream-bytes/50000?seed=3&chunk_size=999"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal(50000, #r.body)
    local again = fetch(new_request(), bin.url("/stream-bytes/50000?seed=3&chunk_size=4096"))
    assert.is_true(again.body == r.body)
    r = fetch(new_request(), bin.url("/stream/7"))
    local n = 0
    for _ in r.body:gmatch("[^\n]+") do n = n + 1 end
    assert.equal(7, n)
    -- 5 MB from nginx to a file, with progress events.
    local dir = H.tmpdir()
    local req = new_request(function(q) q:set_download_file(dir .. "/big.bin") end)
    local last, calls = -1, 0
    req:on("progress", function(got, size)
      assert.is_true(got > last)
      assert.equal(BIG, size)
      last, calls = got, calls + 1
    end)
    r = fetch(req, ngx_url("/big.bin"), nil, nil, nil, 60)
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal(BIG, req:get_body_size())
    assert.equal(BIG, req:get_downloaded_bytes())
    assert.equal(BIG, last)
    assert.is_true(calls > 1)
    assert.equal(sha256(H.bytes(BIG, 7)), sha256(H.read(dir .. "/big.bin")))
  end)

  it("runs any number at once, each stepped by tls.poll() (or its own poll())", function()
    local reqs, done = {}, 0
    local bodies = {}
    for i = 1, 10 do
      local req = new_request()
      req:on("request_completed", function(result, code, _, body)
        assert.equal(R.RESULT_SUCCESS, result)
        assert.equal(200, code)
        bodies[i] = body
        done = done + 1
      end)
      local url = i % 2 == 0 and ngx_url("/big.bin", i % 4 == 0) or bin.url("/delay/1?n=" .. i)
      assert(req:request(url))
      reqs[i] = req
    end
    D.drive(function() return done == 10 end, nil, 60, "10 requests")
    for i = 1, 10 do
      if i % 2 == 0 then
        assert.equal(BIG, #bodies[i])
      else
        assert.matches("n=" .. i, bodies[i], 1, true)
      end
    end
    -- One request stepped by its own poll() alone.
    local req = new_request()
    local result
    req:on("request_completed", function(r) result = r end)
    assert(req:request(bin.url("/get")))
    local deadline = H.now() + 20 * H.SLOW
    while req:poll() do
      assert(H.now() < deadline)
      H.sleep(0.001)
    end
    assert.equal(R.RESULT_SUCCESS, result)
    -- wait() blocks in the event core until it completes.
    result = nil
    assert(req:request(bin.url("/get")))
    assert.is_true(req:wait(20 * H.SLOW))
    assert.equal(R.RESULT_SUCCESS, result)
  end)

  it("is ERR_BUSY while a request runs; cancel_request() stops it without an event", function()
    local req = new_request()
    local events = 0
    req:on("request_completed", function() events = events + 1 end)
    assert(req:request(bin.url("/delay/5")))
    local ok, msg, code = req:request(bin.url("/get"))
    assert.is_nil(ok)
    assert.equal("ERR_BUSY", code)
    assert.matches("cancel_request", msg, 1, true)
    D.drive(function() return req:get_http_client_status() == HTTPClient.STATUS_REQUESTING end,
      nil, 10, "the request")
    req:cancel_request()
    assert.equal(HTTPClient.STATUS_DISCONNECTED, req:get_http_client_status())
    for _ = 1, 20 do tls.poll(); H.sleep(0.005) end
    assert.equal(0, events)
    -- The next request runs.
    local r = fetch(req, bin.url("/get"))
    assert.equal(R.RESULT_SUCCESS, r.result)
    assert.equal(1, events)
  end)

  it("a cancel in the middle of a download removes file.part", function()
    local dir = H.tmpdir()
    local path = dir .. "/big.bin"
    -- A server that sends half the body, then stalls.
    local half = H.bytes(200000, 2)
    local s = serve(function()
      return ("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"):format(400000, half), true
    end)
    local req = new_request(function(q) q:set_download_file(path) end)
    local events = 0
    req:on("request_completed", function() events = events + 1 end)
    assert(req:request(s.url("/big.bin")))
    D.drive(function() return req:get_downloaded_bytes() >= 200000 end, crafted, 10, "half the body")
    assert.is_true(H.exists(path .. ".part"))
    req:cancel_request()
    assert.is_false(H.exists(path .. ".part"))
    assert.is_false(H.exists(path))
    assert.equal(0, events)
  end)

  it("a request started from request_completed runs (chained requests)", function()
    local req = new_request()
    local codes = {}
    req:on("request_completed", function(result, code)
      codes[#codes + 1] = code
      if #codes == 1 then assert(req:request(bin.url("/status/201"))) end
    end)
    assert(req:request(bin.url("/status/202")))
    D.drive(function() return #codes == 2 end, nil, 20)
    assert.same({ 202, 201 }, codes)
  end)

  it("a handler that raises is reported to 'error' listeners; the request completes", function()
    local req = new_request()
    local reported, completed
    req:on("error", function(msg) reported = msg end)
    req:on("request_completed", function() error("boom in the handler") end)
    req:on("request_completed", function(result) completed = result end)
    assert(req:request(bin.url("/get")))
    D.drive(function() return completed ~= nil end, nil, 20)
    assert.equal(R.RESULT_SUCCESS, completed)
    assert.matches("boom in the handler", reported, 1, true)
  end)
end)

describe("HTTPRequest: every failure is a RESULT_* with get_error()", function()
  it("RESULT_CANT_RESOLVE, RESULT_CANT_CONNECT, RESULT_TLS_HANDSHAKE_ERROR", function()
    local r = fetch(new_request(), "https://no-such-host.invalid/")
    assert.equal(R.RESULT_CANT_RESOLVE, r.result)
    assert.equal("ERR_CANT_RESOLVE", r.errcode)
    assert.matches("no-such-host.invalid", r.err, 1, true)
    assert.equal(0, r.code)
    local port = H.free_port()              -- nothing listens there
    r = fetch(new_request(), ("http://127.0.0.1:%d/"):format(port))
    assert.equal(R.RESULT_CANT_CONNECT, r.result)
    assert.equal("ERR_CANT_CONNECT", r.errcode)
    assert.is_string(r.err)
    -- The default CA bundle does not trust the dev CA: verification is on.
    local req = HTTPRequest.new()
    r = fetch(req, bin.url("/get"))
    assert.equal(R.RESULT_TLS_HANDSHAKE_ERROR, r.result)
    assert.matches("certificate", r.err)
    -- A name the certificate does not carry.
    local ca = tls.X509Certificate.new()
    assert(ca:load("certs/ca.crt"))
    r = fetch(new_request(function(q)
      q:set_tls_options(tls.TLSOptions.client(ca, "other.example"))
    end), bin.url("/get"))
    assert.equal(R.RESULT_TLS_HANDSHAKE_ERROR, r.result)
  end)

  it("RESULT_TIMEOUT: set_timeout covers the whole request (httpbin /delay)", function()
    local req = new_request(function(q) q:set_timeout(1) end)
    local r = fetch(req, bin.url("/delay/10"))
    assert.equal(R.RESULT_TIMEOUT, r.result)
    assert.equal("ERR_TIMEOUT", r.errcode)
    assert.matches("did not complete within 1 s", r.err, 1, true)
    -- Redirects count against the same timeout.
    r = fetch(new_request(function(q) q:set_timeout(1.5) end),
      bin.url("/redirect-to?url=/delay/5"))
    assert.equal(R.RESULT_TIMEOUT, r.result)
    -- 0: none (a delay of 2 s completes).
    r = fetch(new_request(), bin.url("/delay/2"))
    assert.equal(R.RESULT_SUCCESS, r.result)
  end)

  it("RESULT_BODY_SIZE_LIMIT_EXCEEDED: by Content-Length at once, or while a chunked body streams", function()
    local r = fetch(new_request(function(q) q:set_body_size_limit(1000) end), bin.url("/bytes/50000"))
    assert.equal(R.RESULT_BODY_SIZE_LIMIT_EXCEEDED, r.result)
    assert.equal(200, r.code)
    assert.equal("", r.body)
    assert.matches("body_size_limit", r.err, 1, true)
    r = fetch(new_request(function(q) q:set_body_size_limit(10000) end),
      bin.url("/stream-bytes/50000?chunk_size=1000"))
    assert.equal(R.RESULT_BODY_SIZE_LIMIT_EXCEEDED, r.result)
    -- At the limit exactly: fine.
    r = fetch(new_request(function(q) q:set_body_size_limit(50000) end), bin.url("/bytes/50000"))
    assert.equal(R.RESULT_SUCCESS, r.result)
  end)

  it("a gzip bomb stops at body_size_limit, decompressed a step at a time", function()
    -- 256 MB of zeros in about 256 KB of gzip.
    local zeros, n = ("\0"):rep(1024 * 1024), 0
    local bomb = D.compress("gzip", function()
      n = n + 1
      if n <= 256 then return zeros end
    end)
    assert.is_true(#bomb < 400 * 1024)
    local s = serve(D.response(200, "Content-Encoding: gzip\r\n", bomb))
    collectgarbage()
    local before = collectgarbage("count")
    local peak = before
    local req = new_request(function(q) q:set_body_size_limit(4 * 1024 * 1024) end)
    req:on("progress", function() peak = math.max(peak, collectgarbage("count")) end)
    local r = fetch(req, s.url("/bomb"))
    assert.equal(R.RESULT_BODY_SIZE_LIMIT_EXCEEDED, r.result, r.err)
    assert.matches("once decompressed", r.err, 1, true)
    -- Never anywhere near the 256 MB it expands to.
    assert.is_true(peak - before < 64 * 1024, ("the heap grew by %.0f KiB"):format(peak - before))
  end)

  it("RESULT_BODY_DECOMPRESS_FAILED: a truncated gzip body, a corrupt one", function()
    local packed = D.compress("gzip", TEXT)
    local cut = packed:sub(1, math.floor(#packed / 2))
    local s = serve(D.response(200, "Content-Encoding: gzip\r\n", cut))
    local r = fetch(new_request(), s.url("/cut"))
    assert.equal(R.RESULT_BODY_DECOMPRESS_FAILED, r.result)
    assert.equal("ERR_INVALID_DATA", r.errcode)
    assert.matches("cut short", r.err, 1, true)
    local bad = packed:sub(1, 20) .. ("\255"):rep(200) .. packed:sub(221)
    s = serve(D.response(200, "Content-Encoding: gzip\r\n", bad))
    r = fetch(new_request(), s.url("/corrupt"))
    assert.equal(R.RESULT_BODY_DECOMPRESS_FAILED, r.result)
    assert.matches("corrupt", r.err, 1, true)
    -- "deflate" as raw deflate (no zlib header), as some servers send it:
    -- read all the same.
    s = serve(D.response(200, "Content-Encoding: deflate\r\n", D.compress("raw", TEXT)))
    r = fetch(new_request(), s.url("/raw"))
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.is_true(r.body == TEXT)
  end)

  it("RESULT_CHUNKED_BODY_SIZE_MISMATCH: a chunked body whose Content-Length disagrees", function()
    local chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n"
      .. "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    local s = serve(chunked:format(100))
    local r = fetch(new_request(), s.url("/"))
    assert.equal(R.RESULT_CHUNKED_BODY_SIZE_MISMATCH, r.result)
    assert.matches("11 bytes, its Content%-Length says 100", r.err)
    s = serve(chunked:format(11))
    r = fetch(new_request(), s.url("/"))
    assert.equal(R.RESULT_SUCCESS, r.result)
    assert.equal("hello world", r.body)
  end)

  it("RESULT_NO_RESPONSE, RESULT_CONNECTION_ERROR, RESULT_REQUEST_FAILED", function()
    -- Closes after reading the request, without a word.
    local s = serve(function() return function() return false end end)
    local r = fetch(new_request(), s.url("/"))
    assert.equal(R.RESULT_NO_RESPONSE, r.result)
    assert.matches("closed the connection before sending a response", r.err, 1, true)
    -- A body cut short.
    s = serve("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this")
    r = fetch(new_request(), s.url("/"))
    assert.equal(R.RESULT_CONNECTION_ERROR, r.result)
    assert.equal(200, r.code)
    assert.matches("after 9 of 1000 body bytes", r.err, 1, true)
    -- Not HTTP at all.
    s = serve("SSH-2.0-OpenSSH\r\n\r\n")
    r = fetch(new_request(), s.url("/"))
    assert.equal(R.RESULT_CONNECTION_ERROR, r.result)
    assert.matches("malformed status line", r.err, 1, true)
    -- A server that takes the head and resets the connection while a
    -- large body is being sent.
    local srv = tls.TCPServer.new()
    assert(srv:listen(0, "127.0.0.1"))
    local port = srv:get_local_port()
    local conn, closed = nil, false
    local reset = { step = function()
      if not conn and srv:is_connection_available() then conn = srv:take_connection() end
      if conn and not closed then
        local d = conn:get_partial_data(100)
        if not d or #d > 0 then
          conn:disconnect_from_host()
          closed = true
        end
      end
    end, stop = function() srv:stop() end }
    crafted[#crafted + 1] = reset
    r = fetch(new_request(), ("http://127.0.0.1:%d/upload"):format(port), {},
      HTTPClient.METHOD_POST, ("u"):rep(32 * 1024 * 1024), 30)
    assert.equal(R.RESULT_REQUEST_FAILED, r.result, r.err)
    assert.matches("could not be sent whole", r.err, 1, true)
  end)

  it("RESULT_DOWNLOAD_FILE_CANT_OPEN and RESULT_DOWNLOAD_FILE_WRITE_ERROR", function()
    local dir = H.tmpdir()
    local r = fetch(new_request(function(q) q:set_download_file(dir .. "/no/such/dir/f.bin") end),
      bin.url("/bytes/100"))
    assert.equal(R.RESULT_DOWNLOAD_FILE_CANT_OPEN, r.result)
    assert.equal("ERR_FILE_CANT_OPEN", r.errcode)
    assert.matches("f.bin.part", r.err, 1, true)
    -- The file cannot take its place: a directory is there.
    assert(H.execute("mkdir -p " .. H.q(dir .. "/taken/x")))
    r = fetch(new_request(function(q) q:set_download_file(dir .. "/taken") end), bin.url("/bytes/100"))
    assert.equal(R.RESULT_DOWNLOAD_FILE_WRITE_ERROR, r.result)
    assert.equal("ERR_FILE_CANT_WRITE", r.errcode)
    assert.is_false(H.exists(dir .. "/taken.part"))
    -- A write that fails for real: a file size limit (ulimit -f, SIGXFSZ
    -- ignored) in a child process.
    local script = dir .. "/child.lua"
    H.write(script, ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
      .. ([[
local tls = require "tlspeer"
local ca = tls.X509Certificate.new(); assert(ca:load("certs/ca.crt"))
local req = tls.HTTPRequest.new()
req:set_tls_options(tls.TLSOptions.client(ca))
req:set_download_file(%q)
local out
req:on("request_completed", function(result) out = result end)
assert(req:request(%q))
assert(req:wait(30))
print(out, req:get_error())
]]):format(dir .. "/limited.bin", ngx_url("/big.bin")))
    local ok, text = H.run(("cd %s && trap '' XFSZ && ulimit -f 1024 && %s %s")
      :format(H.q(CWD), H.LUA, H.q(script)))
    assert.is_true(ok, text)
    assert.matches("^11\tcannot write", text)
    assert.matches("\tERR_FILE_CANT_WRITE", text, 1, true)
    assert.is_false(H.exists(dir .. "/limited.bin.part"))
    assert.is_false(H.exists(dir .. "/limited.bin"))
  end)
end)

describe("HTTPRequest: redirects and credentials (the origin rule)", function()
  it("drops Authorization and Cookie across origins, keeps them within one; Proxy-Authorization never goes to a server", function()
    local b = serve(D.response(200, "", "landed"))
    local a = serve(function(_, n)
      if n == 1 then return D.response(302, "Location: /second\r\n") end
      return D.response(302, "Location: " .. b.url("/away") .. "\r\n")
    end)
    local r = fetch(new_request(), a.url("/first"),
      { "Authorization: Bearer s3cret", "Cookie: c=1", "Proxy-Authorization: Basic eDp5", "X-Keep: 1" })
    assert.equal(R.RESULT_SUCCESS, r.result, r.err)
    assert.equal("landed", r.body)
    assert.equal(2, #a.requests)
    for i = 1, 2 do
      assert.equal("Bearer s3cret", D.header(a.requests[i], "Authorization"))
      assert.equal("c=1", D.header(a.requests[i], "Cookie"))
      assert.is_nil(D.header(a.requests[i], "Proxy-Authorization"))
    end
    assert.is_nil(D.header(b.requests[1], "Authorization"))
    assert.is_nil(D.header(b.requests[1], "Cookie"))
    assert.is_nil(D.header(b.requests[1], "Proxy-Authorization"))
    assert.equal("1", D.header(b.requests[1], "X-Keep"))
    -- A redirect to an invalid URL is the server's fault.
    local c = serve(D.response(302, "Location: http://bad host/\r\n"))
    r = fetch(new_request(), c.url("/"))
    assert.equal(R.RESULT_REQUEST_FAILED, r.result)
    assert.equal("ERR_INVALID_DATA", r.errcode)
    assert.matches("redirected to an invalid URL", r.err, 1, true)
  end)
end)

describe("HTTPRequest: the collector", function()
  it("a request that runs with a listener needs no reference (Godot keeps its node): the result comes", function()
    local result, body
    do
      local req = new_request()
      req:on("request_completed", function(r, _, _, b) result, body = r, b end)
      assert(req:request(bin.url("/bytes/30000?seed=5")))
    end
    D.drive(function()
      collectgarbage()
      return result ~= nil
    end, nil, 20, "an unreferenced request")
    assert.equal(R.RESULT_SUCCESS, result)
    assert.equal(30000, #body)
  end)

  it("a collected HTTPRequest (nobody references it or listens) closes its socket and removes its partial file", function()
    local dir = H.tmpdir()
    local s = serve(function()
      return "HTTP/1.1 200 OK\r\nContent-Length: 400000\r\n\r\n" .. H.bytes(100000, 1), true
    end)
    local req = new_request(function(q) q:set_download_file(dir .. "/f.bin") end)
    assert(req:request(s.url("/")))
    D.drive(function() return req:get_downloaded_bytes() >= 100000 end, crafted, 10)
    assert.is_true(H.exists(dir .. "/f.bin.part"))
    req = nil                                      -- luacheck: ignore
    for _ = 1, 4 do collectgarbage() end
    tls.poll()
    -- The server sees the connection end.
    assert.is_true(H.wait_for(function()
      s.step()
      return s.conns[1].done
    end, 5), "the socket stayed open")
    assert.is_false(H.exists(dir .. "/f.bin.part"))
  end)
end)

describe("tls.request: content codings and timeouts", function()
  it("decodes gzip and deflate (accept_gzip = true by default); accept_gzip = false leaves them", function()
    for _, path in ipairs { "/gzip", "/deflate" } do
      local body, code = tls.request(bin.url(path), { tls_options = ca_opts })
      assert.equal(200, code)
      assert.matches(path == "/gzip" and '"gzipped": ?true' or '"deflated": ?true', body)
    end
    local body = tls.request(bin.url("/gzip"), { tls_options = ca_opts, accept_gzip = false })
    assert.equal("\31\139", body:sub(1, 2))
    local text = tls.request(ngx_url("/level.txt"), { tls_options = ca_opts })
    assert.is_true(text == TEXT)
    local dir = H.tmpdir()
    local n = tls.request(ngx_url("/level.txt"), { tls_options = ca_opts, output = dir .. "/l.txt" })
    assert.equal(#TEXT, n)
    assert.is_true(H.read(dir .. "/l.txt") == TEXT)
  end)

  it("timeout bounds each operation, total_timeout the whole request", function()
    -- /drip sends a byte every 0.5 s: no single wait reaches 1.5 s.
    local body, code = tls.request(bin.url("/drip?numbytes=4&duration=2&delay=0"),
      { tls_options = ca_opts, timeout = 1.5 })
    assert.equal(200, code)
    assert.equal(4, #body)
    local t0 = H.now()
    local ok, msg, ecode = tls.request(bin.url("/drip?numbytes=10&duration=10&delay=0"),
      { tls_options = ca_opts, timeout = 5, total_timeout = 1 })
    assert.is_nil(ok)
    assert.equal("ERR_TIMEOUT", ecode)
    assert.matches("total_timeout of 1 s", msg, 1, true)
    assert.is_true(H.now() - t0 < 8 * H.SLOW)
    ok, msg, ecode = tls.request(bin.url("/delay/10"), { tls_options = ca_opts, timeout = 1 })
    assert.is_nil(ok)
    assert.equal("ERR_TIMEOUT", ecode)
    assert.has_error(function() tls.request(bin.url("/"), { total_timeout = 0 }) end)
    assert.has_error(function() tls.request(bin.url("/"), { accept_gzip = "yes" }) end)
    assert.has_error(function() tls.request(bin.url("/"), { body_size_limit = -5 }) end)
  end)

  it("a truncated gzip body and a gzip bomb fail cleanly (body_size_limit)", function()
    local packed = D.compress("gzip", TEXT)
    local s = serve(D.response(200, "Content-Encoding: gzip\r\n", packed:sub(1, 1000)))
    local r = D.in_child(("return tls.request(%q)"):format(s.url("/")), crafted)
    assert.same({ "nil", "ERR_INVALID_DATA" }, { r[1], r[3] })
    assert.matches("cut short", r[2], 1, true)
    local zeros, n = ("\0"):rep(1024 * 1024), 0
    local bomb = D.compress("gzip", function()
      n = n + 1
      if n <= 64 then return zeros end
    end)
    s = serve(D.response(200, "Content-Encoding: gzip\r\n", bomb))
    r = D.in_child(([[
      local before = collectgarbage("count")
      local ok, msg, code = tls.request(%q, { body_size_limit = 1000000 })
      return ok, msg, code
    ]]):format(s.url("/")), crafted)
    assert.same({ "nil", "ERR_INVALID_DATA" }, { r[1], r[3] })
    assert.matches("body_size_limit", r[2], 1, true)
  end)
end)

describe("examples/http_request.lua", function()
  it("runs against httpbin: to memory (gzip decoded), to a file, and a failure that says why", function()
    local ok, out = H.run(("timeout 60 %s examples/http_request.lua %s certs/ca.crt")
      :format(H.LUA, H.q(bin.url("/gzip"))))
    assert.is_true(ok, out)
    assert.matches("Status: 200", out, 1, true)
    assert.matches("Content-Encoding: gzip", out, 1, true)
    assert.matches('Response: {"gzipped":true', out, 1, true)
    local dir = H.tmpdir()
    ok, out = H.run(("timeout 60 %s examples/http_request.lua %s certs/ca.crt %s")
      :format(H.LUA, H.q(bin.url("/bytes/80000")), H.q(dir .. "/b.bin")))
    assert.is_true(ok, out)
    assert.matches("Downloaded 80000 of 80000 bytes", out, 1, true)
    assert.equal(80000, #H.read(dir .. "/b.bin"))
    ok, out = H.run(("SSL_CERT_FILE=%s timeout 60 %s examples/http_request.lua %s")
      :format(H.q(CWD .. "/certs/client.crt"), H.LUA, H.q(bin.url("/get"))))
    assert.is_false(ok)
    assert.matches("Request failed: result 5", out, 1, true)
  end)
end)

describe("regressions", function()
  -- A client's TLS sessions were cached per host name only: a TLS 1.3
  -- session from httpbin made the next handshake with a TLS 1.2 server on
  -- another port of 127.0.0.1 offer only TLS 1.3 (mbedtls resumes in the
  -- session's version), and fail, every time after.
  it("sessions are per host and port, and one whose resumption failed is forgotten", function()
    local opts = D.client_tls()
    local body, code = tls.request(bin.url("/get"), { tls_options = opts })
    assert.equal(200, code, body)
    local args = "-www -tls1_2 -cert certs/server.crt -key certs/server.key"
    local s12 = H.s_server(args)
    local ok, status = tls.request(("https://127.0.0.1:%d/"):format(s12.port), { tls_options = opts })
    assert.is_string(ok, status)
    assert.equal(200, status)
    -- The same port, first TLS 1.3, then (restarted) TLS 1.2 only (mbedtls
    -- 2.28 has no TLS 1.3: nothing to resume across versions there).
    if not tls.mbedtls_version:match("^3%.") then s12.stop(); return end
    -- s12 stays up until s13 has its port: a port s12 just gave back would
    -- carry s12's TLS 1.2 session into the first TLS 1.3 request.
    local s13 = H.s_server("-www -tls1_3 -cert certs/server.crt -key certs/server.key")
    s12.stop()
    local port = s13.port
    ok, status = tls.request(("https://127.0.0.1:%d/"):format(port), { tls_options = opts })
    assert.equal(200, status, status)
    s13.stop()
    local dir = H.tmpdir()
    local p = assert(io.popen(("openssl s_server -accept 127.0.0.1:%d %s >%s 2>&1 </dev/null & echo $!")
      :format(port, args, H.q(dir .. "/out"))))
    local pid = tonumber(p:read("*l"))
    p:close()
    local function up()            -- (s_server serves one connection at a time)
      local t = tls.StreamPeerTCP.new()
      t:connect_to_host("127.0.0.1", port)
      local st = H.connected(t, 1)
      t:disconnect_from_host()
      return st == tls.StreamPeerTCP.STATUS_CONNECTED
    end
    assert.is_true(H.wait_for(up, 5), H.read(dir .. "/out"))
    local first = { tls.request(("https://127.0.0.1:%d/"):format(port), { tls_options = opts, timeout = 10 }) }
    local second = { tls.request(("https://127.0.0.1:%d/"):format(port), { tls_options = opts, timeout = 10 }) }
    H.kill(pid)
    -- The first may fail (it offered the old session); the next is a full
    -- handshake.
    assert.equal(200, second[2], tostring(second[2]) .. " after " .. tostring(first[2]))
  end)
end)
