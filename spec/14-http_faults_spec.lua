-- HTTPClient and tls.request against servers that misbehave: crafted
-- responses written by this spec over tls.TCPServer, in this process,
-- served from a small poll loop interleaved with the client's.
local H = require "helpers"
local tls = H.tls
local HTTPClient = tls.HTTPClient

-- A server on a free loopback port that reads each request (up to the
-- blank line) and then writes `response` (nil: never answers), and closes
-- the connection afterwards unless keep_open.  s.step() is one
-- non-blocking step; s.requests the requests read; s.stop() is idempotent.
local function fault_server(response, keep_open)
  local srv = tls.TCPServer.new()
  assert(srv:listen(0, "127.0.0.1"))
  local s = { port = srv:get_local_port(), conns = {}, requests = {} }
  function s.step()
    if not srv:is_listening() then return end
    while srv:is_connection_available() do
      s.conns[#s.conns + 1] = { peer = srv:take_connection(), req = "" }
    end
    for _, c in ipairs(s.conns) do
      if not c.done then
        c.peer:poll()
        if not c.pos then
          local d = c.peer:get_partial_data(65536)
          if d and #d > 0 then c.req = c.req .. d end
          if c.req:find("\r\n\r\n", 1, true) then
            s.requests[#s.requests + 1] = c.req
            if response then c.pos = 1 end
          end
        elseif c.pos <= #response then
          local n = c.peer:put_partial_data(response:sub(c.pos, c.pos + 65535))
          if not n then c.done = true else c.pos = c.pos + n end
        elseif not keep_open then
          c.peer:disconnect_from_host()
          c.done = true
        end
      end
    end
  end
  function s.stop()
    for _, c in ipairs(s.conns) do pcall(c.peer.disconnect_from_host, c.peer) end
    if srv:is_listening() then srv:stop() end
  end
  return s
end

local ACTIVE = {
  [HTTPClient.STATUS_RESOLVING] = true, [HTTPClient.STATUS_CONNECTING] = true,
  [HTTPClient.STATUS_REQUESTING] = true, [HTTPClient.STATUS_BODY] = true,
}

-- Runs one GET of `path` against the server, polling both sides, at most
-- `seconds` (default 5).  Returns the final status, the body read, the
-- client, and the largest response buffer the client held meanwhile.
local function exchange(s, path, seconds, headers)
  local c = HTTPClient.new()
  assert(c:connect_to_host("127.0.0.1", s.port))
  local body, requested, peak = {}, false, 0
  local deadline = H.now() + (seconds or 5)
  while true do
    -- Stop as soon as the exchange is over, before a poll() notices that
    -- the server has closed an idle connection meanwhile.
    if requested and not ACTIVE[c:get_status()] then break end
    assert(H.now() < deadline, "the exchange did not finish; status " .. c:get_status())
    c:poll()
    s.step()
    local st = c:get_status()
    if st == HTTPClient.STATUS_CONNECTED and not requested then
      assert(c:request(HTTPClient.METHOD_GET, path or "/", headers or {}))
      requested = true
    elseif st == HTTPClient.STATUS_BODY then
      local chunk = c:read_response_body_chunk()
      body[#body + 1] = chunk
    elseif not ACTIVE[st] and not requested then
      error("the client did not connect: " .. tostring((c:get_error())))
    end
    if c.inbuf then peak = math.max(peak, #c.inbuf.data - c.inbuf.pos + 1) end
    H.sleep(0.0005)
  end
  return c:get_status(), table.concat(body), c, peak
end

local servers = {}
local function serve(response, keep_open)
  local s = fault_server(response, keep_open)
  servers[#servers + 1] = s
  return s
end

describe("HTTPClient against misbehaving servers", function()
  after_each(function()
    for i = #servers, 1, -1 do servers[i].stop(); servers[i] = nil end
  end)

  it("a malformed status line is a connection error that says so", function()
    for _, line in ipairs { "HTTP/1.1 OK", "SSH-2.0-OpenSSH_9.2", "HTTP/1.1 2x0 Fine" } do
      local s = serve(line .. "\r\nContent-Length: 0\r\n\r\n")
      local st, _, c = exchange(s)
      assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st, line)
      local msg, code = c:get_error()
      assert.matches("malformed status line", msg, 1, true)
      assert.equal("ERR_INVALID_DATA", code)
      assert.is_false(c:has_response())
    end
  end)

  it("a status code of more than three digits is malformed, not cut to three", function()
    -- Regression: "HTTP/1.1 2000 OK" used to be read as a 200.
    for _, line in ipairs { "HTTP/1.1 2000 OK", "HTTP/1.1 200OK" } do
      local s = serve(line .. "\r\nContent-Length: 0\r\n\r\n")
      local st, _, c = exchange(s)
      assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st, line)
      assert.matches("malformed status line", (c:get_error()), 1, true)
    end
    -- Without a reason phrase it is fine.
    local s = serve("HTTP/1.1 204\r\n\r\n")
    local st, _, c = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTED, st)
    assert.equal(204, c:get_response_code())
  end)

  it("a header line of 1 MB is an error, with at most ~128 KiB buffered", function()
    local s = serve("HTTP/1.1 200 OK\r\nX-Big: " .. ("a"):rep(1024 * 1024) .. "\r\n\r\nbody")
    local st, _, c, peak = exchange(s, "/", 10)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st)
    local msg, code = c:get_error()
    assert.matches("headers are larger than 65536 bytes", msg, 1, true)
    assert.equal("ERR_INVALID_DATA", code)
    assert.is_true(peak > 0)
    assert.is_true(peak <= 2 * 65536 + 4096, "buffered " .. peak .. " bytes")
  end)

  it("a chunk size that is not hex is an error", function()
    for _, size in ipairs { "zz", "-1", "" } do
      local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. size .. "\r\nabcd\r\n0\r\n\r\n")
      local st, _, c = exchange(s)
      assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st, size)
      local msg, code = c:get_error()
      assert.matches("invalid chunk size", msg, 1, true)
      assert.equal("ERR_INVALID_DATA", code)
    end
  end)

  it("a chunk size with junk after the hex digits is an error", function()
    -- Regression: "4g" used to be read as 4 (the pattern was not anchored).
    for _, size in ipairs { "4g", "4 4", "0x4" } do
      local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        .. size .. "\r\nabcd\r\n0\r\n\r\n")
      local st, _, c = exchange(s)
      assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st, size)
      assert.matches("invalid chunk size", (c:get_error()), 1, true)
    end
    -- A chunk extension is fine.
    local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "4;name=value\r\nabcd\r\n0\r\n\r\n")
    local st, body = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTED, st)
    assert.equal("abcd", body)
  end)

  it("a Content-Length larger than what arrives, then close: ERR_FILE_EOF, no hang", function()
    local s = serve("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly 20 bytes here..")
    local t0 = H.now()
    local st, body, c = exchange(s, "/", 5)
    assert.is_true(H.now() - t0 < 3)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st)
    assert.equal("only 20 bytes here..", body)
    local msg, code = c:get_error()
    assert.equal("ERR_FILE_EOF", code)
    assert.matches("after 20 of 100 body bytes", msg, 1, true)
  end)

  it("a connection closed in the middle of a chunked body is an error", function()
    for _, cut in ipairs { "10\r\nabc", "3\r\nabc\r\n", "3\r\nabc" } do
      local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" .. cut)
      local st, _, c = exchange(s)
      assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st, cut)
      local msg = c:get_error()
      assert.matches("closed", msg, 1, true)
    end
  end)

  it("a chunked body with trailers: the body whole, the trailers among the headers", function()
    local s = serve("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc123\r\nX-Done: yes\r\n\r\n")
    local st, body, c = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTED, st)
    assert.equal("hello, world", body)
    assert.is_true(c:is_response_chunked())
    assert.equal(-1, c:get_response_body_length())
    local d = c:get_response_headers_as_dictionary()
    assert.equal("abc123", d["x-checksum"])
    assert.equal("yes", d["X-Done"])
    local found = false
    for _, h in ipairs(c:get_response_headers()) do found = found or h == "X-Checksum: abc123" end
    assert.is_true(found)
  end)

  it("tls.request gives ERR_TIMEOUT in time when the server never answers", function()
    local s = serve(nil)            -- listens (the kernel accepts), never answers
    local t0 = H.now()
    local body, msg, code = tls.request(("http://127.0.0.1:%d/"):format(s.port), { timeout = 0.5 })
    local took = H.now() - t0
    assert.is_nil(body)
    assert.equal("ERR_TIMEOUT", code)
    assert.matches("timed out", msg, 1, true)
    assert.is_true(took >= 0.4 and took < 2, "took " .. took .. " s")
    -- The same with a blocking HTTPClient and its own timeout.
    local c = HTTPClient.new()
    c:set_blocking_mode(true)
    c:set_timeout(0.3)
    assert(c:connect_to_host("127.0.0.1", s.port))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    t0 = H.now()
    c:request(HTTPClient.METHOD_GET, "/", {})
    assert.is_true(H.now() - t0 < 2)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, c:get_status())
    assert.equal("ERR_TIMEOUT", select(2, c:get_error()))
  end)

  it("a response without Content-Length is read until the server closes", function()
    local payload = H.bytes(200000, 3)
    local s = serve("HTTP/1.1 200 OK\r\nContent-Type: x/y\r\n\r\n" .. payload)
    local st, body, c = exchange(s)
    assert.equal(HTTPClient.STATUS_DISCONNECTED, st)
    assert.equal(-1, c:get_response_body_length())
    assert.is_false(c:is_response_chunked())
    assert.equal(#payload, #body)
    assert.is_true(body == payload)
  end)

  it("skip 100 Continue before the real response", function()
    local s = serve("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n"
      .. "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Real: yes\r\n\r\nhello")
    local st, body, c = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTED, st)      -- keep-alive: the connection stays
    assert.equal(201, c:get_response_code())
    assert.equal("hello", body)
    assert.equal("yes", c:get_response_headers_as_dictionary()["x-real"])
    assert.same({ "Content-Length: 5", "X-Real: yes" }, c:get_response_headers())
  end)

  it("duplicate conflicting Content-Length headers are an error; agreeing ones are not", function()
    local s = serve("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
    local st, _, c = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st)
    local msg, code = c:get_error()
    assert.matches("invalid Content-Length", msg, 1, true)
    assert.equal("ERR_INVALID_DATA", code)
    s = serve("HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello")
    local st2, body = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTED, st2)
    assert.equal("hello", body)
  end)

  it("repeated headers are joined in the dictionary and kept in the list", function()
    local s = serve("HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-Y: z\r\nset-cookie: b=2\r\n"
      .. "Content-Length: 0\r\nConnection: close\r\n\r\n")
    local st, _, c = exchange(s)
    assert.equal(HTTPClient.STATUS_DISCONNECTED, st)     -- Connection: close
    local d = c:get_response_headers_as_dictionary()
    assert.equal("a=1, b=2", d["SET-COOKIE"])
    assert.equal(5, #c:get_response_headers())
    -- The request the server got carries the headers the client adds.
    local req = s.requests[1]
    assert.matches("^GET / HTTP/1%.1\r\n", req)
    assert.matches("\r\nHost: 127%.0%.0%.1:" .. s.port .. "\r\n", req)
    assert.matches("\r\nUser%-Agent: [^\r]+\r\n", req)
    assert.matches("\r\nAccept: %*/%*\r\n", req)
  end)

  it("a server that closes before answering is a connection error", function()
    local s = serve("")
    local st, _, c = exchange(s)
    assert.equal(HTTPClient.STATUS_CONNECTION_ERROR, st)
    assert.matches("closed the connection before sending a response", (c:get_error()), 1, true)
  end)

  it("request() raises on a header or URL with CR or LF (header injection)", function()
    local s = serve("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", true)
    local c = HTTPClient.new()
    c:set_blocking_mode(true)
    c:set_timeout(5)
    assert(c:connect_to_host("127.0.0.1", s.port))
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    for _, headers in ipairs {
      { "X-A: b\r\nX-Evil: 1" }, { "X-A: b\nX-Evil: 1" }, { "X-A: b\rX-Evil: 1" },
      { ["X-A"] = "b\r\nX-Evil: 1" }, { ["X-A\r\nX-Evil"] = "1" },
    } do
      assert.has_error(function() c:request(HTTPClient.METHOD_GET, "/", headers) end)
    end
    assert.has_error(function() c:request(HTTPClient.METHOD_GET, "/\r\nX-Evil: 1", {}) end)
    assert.has_error(function()
      tls.request(("http://127.0.0.1:%d/"):format(s.port), { headers = { "A: b\r\nC: d" } })
    end)
    -- Nothing was sent: the client is still CONNECTED and can make a clean request.
    assert.equal(HTTPClient.STATUS_CONNECTED, c:get_status())
    assert.equal(0, #s.requests)
  end)

  it("request() while not connected gives ERR_UNCONFIGURED", function()
    local c = HTTPClient.new()
    local ok, msg, code = c:request(HTTPClient.METHOD_GET, "/", {})
    assert.is_nil(ok)
    assert.equal("ERR_UNCONFIGURED", code)
    assert.matches("disconnected", msg, 1, true)
    ok, msg, code = c:poll()
    assert.is_nil(ok)
    assert.equal("ERR_UNCONFIGURED", code)
    -- Also while still connecting.
    local s = serve(nil)
    assert(c:connect_to_host("127.0.0.1", s.port))
    ok, msg, code = c:request(HTTPClient.METHOD_GET, "/", {})
    assert.is_nil(ok)
    assert.equal("ERR_UNCONFIGURED", code)
    c:close()
  end)

  it("wrong argument types raise", function()
    local c = HTTPClient.new()
    local bad = {
      function() c:connect_to_host(42) end,
      function() c:connect_to_host("") end,
      function() c:connect_to_host("127.0.0.1", "80") end,
      function() c:connect_to_host("127.0.0.1", 70000) end,
      function() c:connect_to_host("127.0.0.1", 80, "tls") end,
      function() c:request("GET", "/", {}) end,
      function() c:request(99, "/", {}) end,
      function() c:request(HTTPClient.METHOD_GET, 5, {}) end,
      function() c:request(HTTPClient.METHOD_GET, "/", "X-A: b") end,
      function() c:request(HTTPClient.METHOD_GET, "/", { 5 }) end,
      function() c:request(HTTPClient.METHOD_GET, "/", {}, 5) end,
      function() c:set_read_chunk_size(100) end,
      function() c:set_read_chunk_size(1.5) end,
      function() c:set_blocking_mode("yes") end,
      function() c:set_timeout(-1) end,
      function() c:query_string_from_dict("a=b") end,
      function() tls.request(42) end,
      function() tls.request("http://127.0.0.1:1/", 5) end,
      function() tls.request("http://127.0.0.1:1/", { method = "FETCH" }) end,
      function() tls.request("http://127.0.0.1:1/", { body = {} }) end,
      function() tls.request("http://127.0.0.1:1/", { timeout = "1" }) end,
      function() tls.request("http://127.0.0.1:1/", { max_redirects = -1 }) end,
      function() tls.request("http://127.0.0.1:1/", { sink = "x" }) end,
      function() tls.request("http://127.0.0.1:1/", { output = 5 }) end,
    }
    for i, f in ipairs(bad) do
      local ok = pcall(f)
      assert.is_false(ok, "case " .. i .. " did not raise")
    end
    -- Server TLSOptions and unknown schemes are runtime errors, not raises.
    local key = tls.Crypto.new():generate_ec()
    local cert = tls.Crypto.new():generate_self_signed_certificate(key, "CN=localhost")
    local ok, _, code = c:connect_to_host("127.0.0.1", 443, tls.TLSOptions.server(key, cert))
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    ok, _, code = c:connect_to_host("ftp://127.0.0.1")
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    local body
    body, _, code = tls.request("ftp://127.0.0.1/")
    assert.is_nil(body)
    assert.equal("ERR_INVALID_PARAMETER", code)
  end)
end)
