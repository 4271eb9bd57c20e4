-- Regressions found while fuzzing (fuzz/, `make fuzz`): each spec is named
-- after what broke, and its input (when the fuzzer found it) is in
-- fuzz/corpus/<target>/.
local H = require "helpers"
local tls = H.tls

local TLS = tls.StreamPeerTLS

-- A TLS client and server joined by tls.pipe(), handshaken.
local function tls_pair()
  local crypto = tls.Crypto.new()
  local key = assert(crypto:generate_ec("secp256r1"))
  local cert = assert(crypto:generate_self_signed_certificate(key, "CN=localhost",
    "20200101000000", "20991231000000"))
  local a, b = tls.pipe()
  local c, s = TLS.new(), TLS.new()
  assert.is_true(c:connect_to_stream(a, "localhost", tls.TLSOptions.client_unsafe()))
  assert.is_true(s:accept_stream(b, tls.TLSOptions.server(key, cert)))
  for _ = 1, 200 do
    c:poll()
    s:poll()
    if c:get_status() ~= TLS.STATUS_HANDSHAKING and s:get_status() ~= TLS.STATUS_HANDSHAKING then
      break
    end
  end
  assert.equal(TLS.STATUS_CONNECTED, c:get_status())
  assert.equal(TLS.STATUS_CONNECTED, s:get_status())
  c:set_timeout(1)
  s:set_timeout(1)
  return c, s
end

-- Runs tls.request(url), each connection it makes served the next of
-- `responses` by a fake connected stream (as fuzz/targets/http.lua does):
-- HTTPClient's connect step is swapped out for the call.
local function request_with(responses, url)
  local HTTPClient = tls.HTTPClient
  local real = HTTPClient._start_connect
  local served = 0
  local function stream(response)
    local pos = 1
    return {
      get_partial_data = function(_, n)
        if pos > #response then return nil, "end of the response", "ERR_FILE_EOF" end
        local s = response:sub(pos, pos + n - 1)
        pos = pos + #s
        return s
      end,
      put_partial_data = function(_, s) return #s end,
      poll = function() return true end,
      get_status = function() return tls.StreamPeerTLS.STATUS_CONNECTED end,
      disconnect_from_stream = function() end,
    }
  end
  HTTPClient._start_connect = function(self)
    served = served + 1
    self.peer, self.tcp = stream(responses[served] or ""), nil
    self.status = HTTPClient.STATUS_CONNECTED
  end
  local ok, a, b, c = pcall(tls.request, url or "http://localhost/dir/page", { timeout = 2 })
  HTTPClient._start_connect = real
  return ok, a, b, c
end

describe("fuzz regressions", function()
  it("get_string with a length prefix over 1 GiB from the peer fails, not raises", function()
    -- fuzz/corpus/streampeer/crash-get-string-huge-length: the length is
    -- the peer's, and get_string passed it to get_data, whose range check
    -- raised "bad argument #1 to 'get_data'" out of get_string.
    local c, s = tls_pair()
    for _, big_endian in ipairs { false, true } do
      c:set_big_endian(big_endian)
      s:set_big_endian(big_endian)
      assert.is_true(c:put_u32(0xffffffff) ~= nil)
      local ok, v, msg, code = pcall(s.get_string, s)
      assert.is_true(ok, v)
      assert.is_nil(v)
      assert.equal("ERR_INVALID_DATA", code)
      assert.matches("4294967295 bytes", msg)
      assert.is_true(c:put_u32(0x40000001) ~= nil)              -- 2^30 + 1
      ok, v, msg, code = pcall(s.get_utf8_string, s)
      assert.is_true(ok, v)
      assert.is_nil(v)
      assert.equal("ERR_INVALID_DATA", code)
    end
    -- A length the peer can send still works, and so does a caller's limit.
    assert.is_true(c:put_string("hello") ~= nil)
    assert.equal("hello", s:get_string())
    assert.has_error(function() s:get_string(1.5) end)
    c:disconnect_from_stream()
    s:disconnect_from_stream()
  end)

  it("tls.request fails, not raises, on a redirect to a Location with a space", function()
    -- fuzz/corpus/http/crash-redirect-location-with-space: the resolved
    -- Location went to client:request(), whose argument check raised
    -- "bad argument #2 to 'request'" out of tls.request.
    for _, location in ipairs { "/a b", "../other?x=a b", "http://localhost/ x" } do
      local ok, body, msg, code = request_with {
        "HTTP/1.1 302 Found\r\nLocation: " .. location .. "\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }
      assert.is_true(ok, body)
      assert.is_nil(body)
      assert.equal("ERR_INVALID_DATA", code)
      assert.matches("redirected to an invalid URL", msg)
    end
    -- A redirect to a good Location is still followed.
    local ok, body, code = request_with {
      "HTTP/1.1 302 Found\r\nLocation: ../other?x=1\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" }
    assert.is_true(ok, body)
    assert.equal("ok", body)
    assert.equal(200, code)
  end)

  it("zero-byte reads from a drained receive buffer do no arithmetic on NULL", function()
    -- fuzz/corpus/streampeer/crash-get-data-zero-empty-buffer: once the
    -- receive buffer was emptied (and freed), get_data(0), get_partial_data(0)
    -- and a get_string() of length 0 computed NULL + 0, undefined behaviour
    -- that UBSan (scripts/asan.sh, make fuzz) reports.  They must give "".
    local c, s = tls_pair()
    assert.equal("", s:get_data(0))
    assert.equal("", s:get_partial_data(0))
    assert.is_true(c:put_data("ab") ~= nil)
    assert.equal("ab", s:get_data(2))
    assert.equal("", s:get_data(0))
    assert.equal("", s:get_partial_data(0))
    assert.is_true(c:put_u32(0) ~= nil)
    assert.equal("", s:get_string())
    assert.equal(0, s:get_available_bytes())
    c:disconnect_from_stream()
    s:disconnect_from_stream()
  end)
end)
