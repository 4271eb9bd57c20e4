-- HTTPClient and tls.request against a real nginx (Debian's), configured
-- by this spec: TLS with the dev certificates in certs/, plain HTTP, static
-- files, chunked responses, keep-alive, redirects and a request-body echo.
local H = require "helpers"
local tls = H.tls
local HTTPClient = tls.HTTPClient

local CWD = assert(os.getenv("PWD"))
local BIG = 20 * 1024 * 1024

local ngx, www, ca, opts        -- set up once for the file
local TLS_PORT, PLAIN_PORT

local function ensure_certs()
  if not H.exists("certs/server.key") then
    local ok, out = H.run(H.LUA .. " certs/generate.lua")
    assert(ok, out)
  end
end

local function sha256_hex(data)
  local ctx = tls.HashingContext.new()
  ctx:start(tls.HashingContext.HASH_SHA256)
  ctx:update(data)
  return H.hex(ctx:finish())
end

-- sha256sum's digest of a file: a second opinion on HashingContext.
local function file_sha256(path)
  local ok, out = H.run("sha256sum " .. H.q(path))
  assert(ok, out)
  return out:match("^(%x+)")
end

-- The text of page.html, and what sub_filter makes of it.
local PAGE = {}
for i = 1, 4000 do PAGE[#PAGE + 1] = ("<p>foo line %d</p>\n"):format(i) end
PAGE = table.concat(PAGE)
local PAGE_SERVED = PAGE:gsub("foo", "bar")

local function nginx_conf(ports, dir)
  TLS_PORT, PLAIN_PORT = ports[1], ports[2]
  www = dir .. "/www"
  return ([[
  types { text/html html; text/plain txt; }
  default_type application/octet-stream;
  keepalive_requests 1000;
  keepalive_timeout 60s;
  server {
    listen 127.0.0.1:%d ssl;
    listen 127.0.0.1:%d;
    ssl_certificate %s/certs/server.crt;
    ssl_certificate_key %s/certs/server.key;
    root %s;
    add_header X-Conn $connection always;
    location = /page.html { sub_filter 'foo' 'bar'; sub_filter_once off; }
    location = /conn { return 200 "$connection"; }
    location = /args { return 200 "$args"; }
    location = /echo {
      client_body_buffer_size 4m;
      client_max_body_size 8m;
      echo_read_request_body;
      echo -n "$request_method:";
      echo_request_body;
    }
    location = /r301 { return 301 /echo; }
    location = /r302 { return 302 /echo; }
    location = /r303 { return 303 /echo; }
    location = /r307 { return 307 /echo; }
    location = /r308 { return 308 /echo; }
    location = /rel { return 302 target.txt; }
    location = /loop { return 302 /loop; }
  }
]]):format(TLS_PORT, PLAIN_PORT, CWD, CWD, www)
end

local function https(path) return ("https://127.0.0.1:%d%s"):format(TLS_PORT, path) end
local function http(path) return ("http://127.0.0.1:%d%s"):format(PLAIN_PORT, path) end

-- Polls `client` while its status is one of `statuses` (bounded); returns
-- the status it ends in.
local function poll_while(client, statuses, seconds)
  local set = {}
  for _, s in ipairs(statuses) do set[s] = true end
  local deadline = H.now() + (seconds or 10)
  while set[client:get_status()] do
    assert(H.now() < deadline, "timed out in status " .. client:get_status())
    client:poll()
    if set[client:get_status()] then H.sleep(0.001) end
  end
  return client:get_status()
end

-- Reads the whole body (bounded); returns it, or calls each_chunk on every
-- piece and returns the byte count.
local function read_body(client, each_chunk, seconds)
  local parts, total = {}, 0
  local deadline = H.now() + (seconds or 20)
  while client:get_status() == HTTPClient.STATUS_BODY do
    assert(H.now() < deadline, "timed out reading the body")
    client:poll()
    local chunk = client:read_response_body_chunk()
    if #chunk == 0 then
      H.sleep(0.001)
    elseif each_chunk then
      each_chunk(chunk)
      total = total + #chunk
    else
      parts[#parts + 1] = chunk
    end
  end
  if each_chunk then return total end
  return table.concat(parts)
end

-- A connected HTTPClient (TLS, trusting the dev CA, or plain).
local function connected(plain)
  local c = HTTPClient.new()
  if plain then
    assert(c:connect_to_host("127.0.0.1", PLAIN_PORT))
  else
    assert(c:connect_to_host("127.0.0.1", TLS_PORT, opts))
  end
  local st = poll_while(c, { HTTPClient.STATUS_RESOLVING, HTTPClient.STATUS_CONNECTING })
  assert(st == HTTPClient.STATUS_CONNECTED, "not connected: " .. tostring((c:get_error())))
  return c
end

-- One request on a connected client, non-blocking; returns code, body.
local function fetch(c, method, path, headers, body)
  assert(c:request(method, path, headers or {}, body))
  poll_while(c, { HTTPClient.STATUS_REQUESTING })
  assert(c:has_response(), "no response: " .. tostring((c:get_error())))
  return c:get_response_code(), read_body(c)
end

describe("HTTPClient and tls.request against nginx", function()
  setup(function()
    ensure_certs()
    ngx = H.nginx(nginx_conf, 2)
    assert(H.execute("mkdir -p " .. H.q(www)))
    H.write(www .. "/empty.bin", "")
    H.write(www .. "/one.bin", "x")
    H.write(www .. "/target.txt", "the target\n")
    H.write(www .. "/page.html", PAGE)
    assert(H.run(("head -c %d /dev/urandom > %s"):format(BIG, H.q(www .. "/big.bin"))))
    ca = tls.X509Certificate.new()
    assert(ca:load("certs/ca.crt"))
    opts = tls.TLSOptions.client(ca)
  end)

  teardown(function()
    if ngx then ngx.stop() end
    H.cleanup()
  end)

  it("GET static files of 0 and 1 bytes, with their lengths", function()
    local c = connected()
    local code, body = fetch(c, HTTPClient.METHOD_GET, "/empty.bin")
    assert.equal(200, code)
    assert.equal("", body)
    assert.equal(0, c:get_response_body_length())
    assert.is_false(c:is_response_chunked())
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    code, body = fetch(c, HTTPClient.METHOD_GET, "/one.bin")
    assert.equal(200, code)
    assert.equal("x", body)
    assert.equal(1, c:get_response_body_length())
    local d = c:get_response_headers_as_dictionary()
    assert.equal("1", d["content-length"])
    assert.equal("application/octet-stream", d["Content-Type"])
    assert.equal("nginx/1", d.server:sub(1, 7))
    c:close()
    assert.equal(HTTPClient.STATUS_DISCONNECTED, c:get_status())
  end)

  it("GET a 20 MB file whose SHA-256 matches the file's", function()
    local c = connected()
    assert(c:request(HTTPClient.METHOD_GET, "/big.bin", {}))
    poll_while(c, { HTTPClient.STATUS_REQUESTING })
    assert.equal(200, c:get_response_code())
    assert.equal(BIG, c:get_response_body_length())
    local ctx = tls.HashingContext.new()
    ctx:start(tls.HashingContext.HASH_SHA256)
    local biggest = 0
    local n = read_body(c, function(chunk)
      ctx:update(chunk)
      biggest = math.max(biggest, #chunk)
    end, 40)
    assert.equal(BIG, n)
    assert.is_true(biggest <= c:get_read_chunk_size())
    assert.equal(file_sha256(www .. "/big.bin"), H.hex(ctx:finish()))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    c:close()
  end)

  it("HEAD gets the headers, no body, and goes back to CONNECTED", function()
    local c = connected()
    assert(c:request(HTTPClient.METHOD_HEAD, "/target.txt", {}))
    local st = poll_while(c, { HTTPClient.STATUS_REQUESTING })
    assert.equal(HTTPClient.STATUS_CONNECTED, st)
    assert.is_true(c:has_response())
    assert.equal(200, c:get_response_code())
    assert.equal("11", c:get_response_headers_as_dictionary()["Content-Length"])
    assert.equal("", c:read_response_body_chunk())
    -- The connection is still good: nothing of a body was left on it.
    local code, body = fetch(c, HTTPClient.METHOD_GET, "/target.txt")
    assert.equal(200, code)
    assert.equal("the target\n", body)
  end)

  it("404 is a response: body, 404, headers", function()
    local body, code, headers = tls.request(https("/missing.txt"), { tls_options = opts, timeout = 10 })
    assert.equal(404, code)
    assert.matches("404 Not Found", body, 1, true)
    assert.equal("text/html", headers["content-type"])
    local c = connected()
    local c2, b2 = fetch(c, HTTPClient.METHOD_GET, "/nope")
    assert.equal(404, c2)
    assert.matches("<html>", b2, 1, true)
  end)

  it("read chunked responses (sub_filter and the echo module) whole", function()
    local c = connected()
    local code, body = fetch(c, HTTPClient.METHOD_GET, "/page.html")
    assert.equal(200, code)
    assert.is_true(c:is_response_chunked())
    assert.equal(-1, c:get_response_body_length())
    assert.equal("chunked", c:get_response_headers_as_dictionary()["transfer-encoding"])
    assert.equal(#PAGE_SERVED, #body)
    assert.equal(sha256_hex(PAGE_SERVED), sha256_hex(body))
    -- Then, on the same connection, the echo module's chunked reply.
    code, body = fetch(c, HTTPClient.METHOD_POST, "/echo", { "Content-Type: text/plain" }, "abc")
    assert.equal(200, code)
    assert.is_true(c:is_response_chunked())
    assert.equal("POST:abc", body)
    -- Small read chunks cut the chunked body at the right places too.
    c:set_read_chunk_size(256)
    local sizes = {}
    assert(c:request(HTTPClient.METHOD_GET, "/page.html", {}))
    poll_while(c, { HTTPClient.STATUS_REQUESTING })
    local parts = {}
    read_body(c, function(chunk) sizes[#sizes + 1] = #chunk; parts[#parts + 1] = chunk end)
    assert.equal(PAGE_SERVED, table.concat(parts))
    for _, n in ipairs(sizes) do assert.is_true(n <= 256, "a chunk of " .. n) end
    assert.is_true(#sizes >= math.floor(#PAGE_SERVED / 256))
  end)

  it("reuse a keep-alive connection for the next request", function()
    local c = connected()
    local code, first = fetch(c, HTTPClient.METHOD_GET, "/conn")
    assert.equal(200, code)
    assert.matches("^%d+$", first)
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    local code2, second = fetch(c, HTTPClient.METHOD_GET, "/conn")
    assert.equal(200, code2)
    assert.equal(first, second)
    assert.equal(first, c:get_response_headers_as_dictionary()["X-Conn"])
    -- A second client gets a connection of its own: the check can fail.
    local other = connected()
    local _, third = fetch(other, HTTPClient.METHOD_GET, "/conn")
    assert.are_not.equal(first, third)
    c:close(); other:close()
  end)

  it("follow 301 and 302 (POST becomes GET) and 303 (POST becomes GET)", function()
    for _, r in ipairs { "/r301", "/r302", "/r303" } do
      local body, code = tls.request(https(r), { method = "POST", body = "payload",
        headers = { ["Content-Type"] = "text/plain" }, tls_options = opts, timeout = 10 })
      assert.equal(200, code, r)
      assert.equal("GET:", body, r)
    end
    local body, code = tls.request(https("/r303"), { method = "PUT", body = "x", tls_options = opts })
    assert.equal(200, code)
    assert.equal("GET:", body)
  end)

  it("follow 307 and 308 keeping the method and the body", function()
    for _, r in ipairs { "/r307", "/r308" } do
      local body, code = tls.request(https(r), { method = "POST", body = "payload 1234",
        tls_options = opts, timeout = 10 })
      assert.equal(200, code, r)
      assert.equal("POST:payload 1234", body, r)
    end
    local body, code = tls.request(https("/r308"), { method = tls.HTTPClient.METHOD_PATCH,
      body = "p", tls_options = opts })
    assert.equal(200, code)
    assert.equal("PATCH:p", body)
    -- A relative Location resolves against the URL it came from.
    body, code = tls.request(https("/rel"), { tls_options = opts })
    assert.equal(200, code)
    assert.equal("the target\n", body)
  end)

  it("stop a redirect loop with ERR_UNAVAILABLE; max_redirects = 0 returns the 3xx", function()
    local body, msg, code = tls.request(https("/loop"), { tls_options = opts, timeout = 10 })
    assert.is_nil(body)
    assert.equal("ERR_UNAVAILABLE", code)
    assert.matches("more than 8 redirects", msg, 1, true)
    body, msg, code = tls.request(https("/loop"), { tls_options = opts, max_redirects = 2 })
    assert.is_nil(body)
    assert.equal("ERR_UNAVAILABLE", code)
    local b, status, headers = tls.request(https("/r301"), { tls_options = opts, max_redirects = 0 })
    assert.equal(301, status)
    assert.matches("301 Moved Permanently", b, 1, true)
    assert.matches("/echo$", headers.location)
  end)

  it("POST, PUT and PATCH bodies come back from the echo location", function()
    local payload = H.bytes(300000, 7)
    local c = connected()
    local code, body = fetch(c, HTTPClient.METHOD_POST, "/echo",
      { "Content-Type: application/octet-stream" }, payload)
    assert.equal(200, code)
    assert.equal("POST:", body:sub(1, 5))
    assert.equal(#payload, #body - 5)
    assert.equal(sha256_hex(payload), sha256_hex(body:sub(6)))
    code, body = fetch(c, HTTPClient.METHOD_PUT, "/echo", { ["X-Test"] = "1" }, "put body")
    assert.equal(200, code)
    assert.equal("PUT:put body", body)
    local b, status = tls.request(https("/echo"), { method = "PATCH", body = "patched",
      tls_options = opts })
    assert.equal(200, status)
    assert.equal("PATCH:patched", b)
    -- An empty POST says Content-Length: 0 (nginx would answer 411 otherwise).
    b, status = tls.request(https("/echo"), { method = "POST", tls_options = opts })
    assert.equal(200, status)
    assert.equal("POST:", b)
  end)

  it("tls.request streams the 20 MB file to a path and to a sink", function()
    local dir = H.tmpdir()
    local out = dir .. "/big.out"
    local n, code, headers = tls.request(https("/big.bin"), { output = out, tls_options = opts,
      timeout = 40 })
    assert.equal(BIG, n)
    assert.equal(200, code)
    assert.equal(tostring(BIG), headers["Content-Length"])
    assert.is_false(H.exists(out .. ".part"))
    local want = file_sha256(www .. "/big.bin")
    assert.equal(want, file_sha256(out))
    -- To a sink: chunks no larger than the read chunk size, hashed as they come.
    local ctx = tls.HashingContext.new()
    ctx:start(tls.HashingContext.HASH_SHA256)
    local chunks, biggest = 0, 0
    n, code = tls.request(https("/big.bin"), { tls_options = opts, timeout = 40,
      sink = function(chunk)
        chunks = chunks + 1
        biggest = math.max(biggest, #chunk)
        ctx:update(chunk)
      end })
    assert.equal(BIG, n)
    assert.equal(200, code)
    assert.is_true(biggest <= 65536, "a chunk of " .. biggest)
    assert.is_true(chunks >= math.floor(BIG / 65536))
    assert.equal(want, H.hex(ctx:finish()))
    -- To an open file.
    local f = assert(io.open(dir .. "/one.out", "wb"))
    n, code = tls.request(https("/one.bin"), { output = f, tls_options = opts })
    f:close()
    assert.equal(1, n)
    assert.equal(200, code)
    assert.equal("x", H.read(dir .. "/one.out"))
  end)

  it("run the seed's poll loop: connect, poll while CONNECTING, request, read", function()
    local c = HTTPClient.new()
    local seen = {}
    assert.is_true(c:connect_to_host("127.0.0.1", TLS_PORT, opts))
    seen[#seen + 1] = c:get_status()
    local deadline = H.now() + 10
    while c:get_status() == HTTPClient.STATUS_RESOLVING
        or c:get_status() == HTTPClient.STATUS_CONNECTING do
      assert(H.now() < deadline, "timed out connecting")
      c:poll()
      if seen[#seen] ~= c:get_status() then seen[#seen + 1] = c:get_status() end
      H.sleep(0.001)
    end
    assert.same({ HTTPClient.STATUS_RESOLVING, HTTPClient.STATUS_CONNECTING,
                  HTTPClient.STATUS_CONNECTED }, seen)
    assert.is_true(c:request(HTTPClient.METHOD_GET, "/target.txt", {}))
    assert.equal(HTTPClient.STATUS_REQUESTING, c:get_status())
    while c:get_status() == HTTPClient.STATUS_REQUESTING do
      assert(H.now() < deadline, "timed out requesting")
      c:poll()
      H.sleep(0.001)
    end
    assert.equal(HTTPClient.STATUS_BODY, c:get_status())
    local response = ""
    while c:get_status() == HTTPClient.STATUS_BODY do
      assert(H.now() < deadline, "timed out reading")
      response = response .. c:read_response_body_chunk()
      H.sleep(0.001)
    end
    assert.equal("the target\n", response)
    assert.matches("HTTPClient %(connected, https://127%.0%.0%.1:%d+%)", tostring(c))
  end)

  it("blocking mode: each call waits until its step is done", function()
    local c = HTTPClient.new()
    c:set_blocking_mode(true)
    assert.is_true(c:is_blocking_mode_enabled())
    c:set_timeout(10)
    assert.is_true(c:connect_to_host("https://127.0.0.1", TLS_PORT, opts))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    assert.is_true(c:request(HTTPClient.METHOD_GET, "/page.html", {}))
    assert.equal(HTTPClient.STATUS_BODY, c:get_status())
    local parts, reads = {}, 0
    while c:get_status() == HTTPClient.STATUS_BODY and reads < 1000 do
      local chunk = c:read_response_body_chunk()
      reads = reads + 1
      assert.is_true(#chunk > 0 or c:get_status() ~= HTTPClient.STATUS_BODY)
      parts[#parts + 1] = chunk
    end
    assert.equal(PAGE_SERVED, table.concat(parts))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    c:close()
  end)

  it("speak plain http:// as well as https://", function()
    local c = connected(true)
    local code, body = fetch(c, HTTPClient.METHOD_GET, "/target.txt")
    assert.equal(200, code)
    assert.equal("the target\n", body)
    assert.matches("http://127%.0%.0%.1:" .. PLAIN_PORT, tostring(c))
    local b, status, headers = tls.request(http("/page.html"))
    assert.equal(200, status)
    assert.equal(PAGE_SERVED, b)
    assert.equal("chunked", headers["Transfer-Encoding"])
    -- The "http://" prefix, and TLS when the URL says https:// on the plain port fails.
    local c2 = HTTPClient.new()
    assert(c2:connect_to_host("http://127.0.0.1", PLAIN_PORT))
    assert.equal(HTTPClient.STATUS_CONNECTED,
      poll_while(c2, { HTTPClient.STATUS_RESOLVING, HTTPClient.STATUS_CONNECTING }))
    local nb, msg = tls.request(("https://127.0.0.1:%d/"):format(PLAIN_PORT),
      { tls_options = opts, timeout = 5 })
    assert.is_nil(nb)
    assert.is_string(msg)
  end)

  it("query_string_from_dict builds a query nginx reads back", function()
    local c = HTTPClient.new()
    local q = c:query_string_from_dict { b = "two words", a = 1, c = true, d = { "x", "y&z" },
      e = false }
    assert.equal("a=1&b=two%20words&c&d=x&d=y%26z", q)
    local body, code = tls.request(https("/args?" .. q), { tls_options = opts })
    assert.equal(200, code)
    assert.equal(q, body)
    assert.equal("", c:query_string_from_dict {})
  end)

  it("refuse an untrusted server: STATUS_TLS_HANDSHAKE_ERROR and a reason", function()
    local crypto = tls.Crypto.new()
    local key = crypto:generate_ec()
    local other = crypto:generate_self_signed_certificate(key, "CN=another CA", nil, nil, { ca = true })
    local c = HTTPClient.new()
    assert(c:connect_to_host("127.0.0.1", TLS_PORT, tls.TLSOptions.client(other)))
    local st = poll_while(c, { HTTPClient.STATUS_RESOLVING, HTTPClient.STATUS_CONNECTING })
    assert.equal(HTTPClient.STATUS_TLS_HANDSHAKE_ERROR, st)
    local msg, code = c:get_error()
    assert.matches("trust", msg:lower(), 1, true)
    assert.is_string(code)
    local b, m, code2 = tls.request(https("/one.bin"), { tls_options = tls.TLSOptions.client(other) })
    assert.is_nil(b)
    assert.matches("trust", m:lower(), 1, true)
    assert.is_string(code2)
    -- The same server, trusted: fine (the refusal was about trust).
    assert.equal("x", (tls.request(https("/one.bin"), { tls_options = opts })))
  end)

  it("run examples/https_get.lua and examples/download.lua against it", function()
    local ok, out = H.run(("SSL_CERT_FILE=%s timeout 30 " .. H.LUA .. " examples/https_get.lua %s")
      :format(H.q(CWD .. "/certs/ca.crt"), H.q(https("/target.txt"))))
    assert.is_true(ok, out)
    assert.matches("Connected to 127.0.0.1:" .. TLS_PORT .. " via TLS", out, 1, true)
    assert.matches("Status: 200", out, 1, true)
    assert.matches("Response: the target\n", out, 1, true)
    -- With the CA as an argument, and a chunked body.
    ok, out = H.run(("timeout 30 " .. H.LUA .. " examples/https_get.lua %s certs/ca.crt")
      :format(H.q(https("/page.html"))))
    assert.is_true(ok, out)
    assert.matches("Response: " .. PAGE_SERVED, out, 1, true)
    -- Without trusting the dev CA it fails, and says so.
    ok, out = H.run(("SSL_CERT_FILE=%s timeout 30 " .. H.LUA .. " examples/https_get.lua %s")
      :format(H.q(CWD .. "/certs/client.crt"), H.q(https("/target.txt"))))
    assert.is_false(ok)
    assert.matches("Connection failed: ", out, 1, true)
    -- download.lua: size and SHA-256 of the 20 MB file.
    local dir = H.tmpdir()
    ok, out = H.run(("SSL_CERT_FILE=%s timeout 60 " .. H.LUA .. " examples/download.lua %s %s")
      :format(H.q(CWD .. "/certs/ca.crt"), H.q(https("/big.bin")), H.q(dir .. "/big")))
    assert.is_true(ok, out)
    assert.matches(BIG .. " bytes, HTTP 200", out, 1, true)
    assert.matches("sha256 " .. file_sha256(www .. "/big.bin"), out, 1, true)
    assert.equal(file_sha256(www .. "/big.bin"), file_sha256(dir .. "/big"))
    ok, out = H.run(("timeout 30 " .. H.LUA .. " examples/download.lua %s %s")
      :format(H.q(http("/one.bin")), H.q(dir .. "/one")))
    assert.is_true(ok, out)
    assert.matches("1 bytes, HTTP 200", out, 1, true)
    assert.matches("sha256 " .. sha256_hex("x"), out, 1, true)
  end)
end)
