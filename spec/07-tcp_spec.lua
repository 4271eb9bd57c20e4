-- StreamPeerTCP and TCPServer over loopback (IPv4 and IPv6): statuses,
-- addresses, the typed StreamPeer methods in both byte orders, blocking and
-- non-blocking reads and writes, timeouts, end of stream, and failures.
-- Both ends live in this process, so every wait is bounded (H.wait_for,
-- set_timeout) and every socket is closed after each spec.
local H = require "helpers"
local tls = H.tls
local TCP, Server = tls.StreamPeerTCP, tls.TCPServer

local NONE, CONNECTING, CONNECTED, ERROR =
  TCP.STATUS_NONE, TCP.STATUS_CONNECTING, TCP.STATUS_CONNECTED, TCP.STATUS_ERROR

-- Everything a spec opens, closed in after_each (even when it fails).
local opened = {}
local function track(...)
  for i = 1, select("#", ...) do
    local o = select(i, ...)
    if o ~= nil then opened[#opened + 1] = o end
  end
  return ...
end

local function close(o)
  getmetatable(o).__close(o)
end

after_each(function()
  for i = #opened, 1, -1 do
    close(opened[i])
    opened[i] = nil
  end
end)

local function new_server(host)
  local srv = track(Server.new())
  assert(srv:listen(0, host or "127.0.0.1"))
  return srv
end

-- Waits (bounded) for a connection on srv and takes it, polling the
-- connecting client meanwhile when there is one (a name is looked up on
-- a worker: the connect starts once a poll sees the answer).
local function accept(srv, client)
  assert(H.wait_for(function()
    if client then client:poll() end
    return srv:is_connection_available()
  end, 5), "no connection arrived")
  return track(assert(srv:take_connection()))
end

-- A connected pair over `host`: the accepted peer, the client, the server.
local function pair(host, connect_host)
  local srv = new_server(host)
  local c = track(TCP.new())
  assert(c:connect_to_host(connect_host or host or "127.0.0.1",
                           srv:get_local_port()))
  local s = accept(srv, c)
  assert.equal(CONNECTED, H.connected(c))
  return s, c, srv
end

-- Reads with get_partial_data until n bytes arrived (bounded).
local function read_n(peer, n, timeout)
  local parts, got = {}, 0
  H.wait_for(function()
    local chunk = assert(peer:get_partial_data(n - got))
    parts[#parts + 1] = chunk
    got = got + #chunk
    return got >= n
  end, timeout or 5)
  return table.concat(parts)
end

local function sha256(s)
  local h = tls.HashingContext.new()
  assert(h:start(tls.HashingContext.HASH_SHA256))
  assert(h:update(s))
  return h:finish()
end

describe("StreamPeerTCP and TCPServer", function()

  it("have Godot's status constants", function()
    assert.same({ 0, 1, 2, 3 }, { NONE, CONNECTING, CONNECTED, ERROR })
  end)

  it("connect over 127.0.0.1 on port 0 and walk the statuses", function()
    local srv = track(Server.new())
    assert.is_false(srv:is_listening())
    assert.equal(0, srv:get_local_port())
    assert.equal("TCPServer (not listening)", tostring(srv))
    assert.is_true(srv:listen(0, "127.0.0.1"))
    assert.is_true(srv:is_listening())
    local port = srv:get_local_port()
    assert.is_true(port > 0 and port < 65536)
    assert.equal("TCPServer (listening on port " .. port .. ")", tostring(srv))

    local c = track(TCP.new())
    assert.equal(NONE, c:get_status())
    assert.equal("StreamPeerTCP (none)", tostring(c))
    assert.equal("", c:get_connected_host())
    assert.equal(0, c:get_connected_port())
    assert.is_true(c:connect_to_host("127.0.0.1", port))
    local st = c:get_status()
    assert.is_true(st == CONNECTING or st == CONNECTED)
    assert.equal(("StreamPeerTCP (%s 127.0.0.1:%d)")
                   :format(st == CONNECTING and "connecting" or "connected", port),
                 tostring(c))
    assert.equal(CONNECTED, H.connected(c))
    assert.equal("127.0.0.1", c:get_connected_host())
    assert.equal(port, c:get_connected_port())
    assert.is_true(c:get_local_port() > 0)
    assert.equal(("StreamPeerTCP (connected 127.0.0.1:%d)"):format(port),
                 tostring(c))

    local s = accept(srv)
    assert.equal(CONNECTED, s:get_status())
    assert.equal("127.0.0.1", s:get_connected_host())
    assert.equal(c:get_local_port(), s:get_connected_port())
    assert.equal(port, s:get_local_port())

    assert.is_true(c:put_data("ping"))
    assert.equal("ping", s:get_data(4))
    assert.is_true(s:put_data("pong"))
    assert.equal("pong", c:get_data(4))

    c:disconnect_from_host()
    assert.equal(NONE, c:get_status())
    assert.equal("", c:get_connected_host())
    assert.equal(0, c:get_connected_port())
    assert.equal("StreamPeerTCP (none)", tostring(c))
    srv:stop()
    assert.is_false(srv:is_listening())
    assert.equal(0, srv:get_local_port())
    assert.equal("TCPServer (not listening)", tostring(srv))
  end)

  it("connect over ::1", function()
    local s, c, srv = pair("::1")
    local port = srv:get_local_port()
    assert.equal("::1", c:get_connected_host())
    assert.equal("::1", s:get_connected_host())
    assert.equal(port, c:get_connected_port())
    assert.equal(c:get_local_port(), s:get_connected_port())
    assert.equal(("StreamPeerTCP (connected [::1]:%d)"):format(port), tostring(c))
    assert.is_true(c:put_data("over IPv6"))
    assert.equal("over IPv6", s:get_data(9))
  end)

  it("a server on '*' takes IPv4 and IPv6 clients (dual-stack)", function()
    local srv = new_server("*")
    for _, host in ipairs { "127.0.0.1", "::1" } do
      local c = track(TCP.new())
      assert(c:connect_to_host(host, srv:get_local_port()))
      local s = accept(srv)
      assert.equal(CONNECTED, H.connected(c))
      -- An IPv4 client of the dual-stack socket shows as IPv4, not ::ffff:.
      assert.equal(host, s:get_connected_host())
      assert.is_true(c:put_data(host))
      assert.equal(host, s:get_data(#host))
    end
  end)

  it("shows IPv4 addresses of every shape, both ways", function()
    -- All of 127.0.0.0/8 is the loopback: numbers of one, two and three
    -- digits, zeros and 255, on the client's and on the server's side.
    local srv = new_server("0.0.0.0")
    for _, pair_ in ipairs { { "127.10.200.3", "127.0.0.1" }, { "127.255.0.99", "127.1.22.0" } } do
      local to, from = pair_[1], pair_[2]
      local c = track(TCP.new())
      assert(c:bind(0, from))
      assert(c:connect_to_host(to, srv:get_local_port()))
      local s = accept(srv, c)
      assert.equal(CONNECTED, H.connected(c))
      assert.equal(to, c:get_connected_host())
      assert.equal(from, s:get_connected_host())
      assert.equal(("StreamPeerTCP (connected %s:%d)"):format(to, srv:get_local_port()), tostring(c))
    end
  end)

  it("connect_to_host resolves localhost", function()
    local s, c = pair("*", "localhost")
    local host = c:get_connected_host()
    assert.is_true(host == "127.0.0.1" or host == "::1", host)
    assert.is_true(s:put_data("hi"))
    assert.equal("hi", c:get_data(2))
  end)

  it("connect_to_host while connected fails with ERR_ALREADY_IN_USE", function()
    local _, c, srv = pair()
    local ok, msg, code = c:connect_to_host("127.0.0.1", srv:get_local_port())
    assert.is_nil(ok)
    assert.equal("ERR_ALREADY_IN_USE", code)
    assert.matches("disconnect_from_host", msg)
    assert.equal(CONNECTED, c:get_status())
  end)

  it("bind() before connect uses the given local port", function()
    local srv = new_server()
    local port = H.free_port()
    local c = track(TCP.new())
    assert.is_true(c:bind(port, "127.0.0.1"))
    assert.equal(port, c:get_local_port())
    assert(c:connect_to_host("127.0.0.1", srv:get_local_port()))
    local s = accept(srv)
    assert.equal(CONNECTED, H.connected(c))
    assert.equal(port, c:get_local_port())
    assert.equal(port, s:get_connected_port())
    -- Too late now.
    local ok, msg, code = c:bind(0)
    assert.is_nil(ok)
    assert.equal("ERR_ALREADY_IN_USE", code)
    assert.matches("before connect_to_host", msg)
    -- Not an address.
    ok, msg, code = track(TCP.new()):bind(0, "example.com")
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("example.com", msg, 1, true)
  end)

  it("listen on a port in use fails with ERR_ALREADY_IN_USE", function()
    local a = new_server("127.0.0.1")
    local b = track(Server.new())
    local ok, msg, code = b:listen(a:get_local_port(), "127.0.0.1")
    assert.is_nil(ok)
    assert.equal("ERR_ALREADY_IN_USE", code)
    assert.matches(tostring(a:get_local_port()), msg, 1, true)
    assert.is_false(b:is_listening())
    -- Listening twice on one server.
    ok, msg, code = a:listen(0)
    assert.is_nil(ok)
    assert.equal("ERR_ALREADY_IN_USE", code)
    assert.matches("stop", msg)
    -- Not an address.
    ok, msg, code = b:listen(0, "localhost.example")
    assert.is_nil(ok)
    assert.equal("ERR_INVALID_PARAMETER", code)
    assert.matches("localhost.example", msg, 1, true)
  end)

  it("take_connection with nothing waiting fails with ERR_UNAVAILABLE", function()
    local srv = new_server()
    assert.is_false(srv:is_connection_available())
    local peer, msg, code = srv:take_connection()
    assert.is_nil(peer)
    assert.equal("ERR_UNAVAILABLE", code)
    assert.is_string(msg)
    srv:stop()
    assert.is_false(srv:is_connection_available())
    peer, msg, code = srv:take_connection()
    assert.is_nil(peer)
    assert.equal("ERR_UNCONFIGURED", code)
    assert.matches("not listening", msg)
  end)

  -- ----------------------------------------------------------- typed I/O

  local F = H.f32                        -- x as a float put and got back
  local typed = {
    { "u8",  { 0, 1, 0x7f, 0x80, 0xff } },
    { "8",   { 0, 1, -1, 0x7f, -0x80 } },
    { "u16", { 0, 1, 0x7fff, 0x8000, 0xffff } },
    { "16",  { 0, -1, 0x7fff, -0x8000 } },
    { "u32", { 0, 1, 0x7fffffff, 0x80000000, 0xffffffff } },
    { "32",  { 0, -1, 0x7fffffff, -0x80000000 } },
    -- u64 is carried in Lua's signed integers: 2^64-1 is -1.  Without
    -- 64-bit integers (5.1, 5.2, LuaJIT) both are doubles, exact up to 2^53.
    H.INT64 and { "u64", { 0, 1, math.maxinteger, math.mininteger, -1 } }
             or { "u64", { 0, 1, 2^53 - 1, 2^53 } },
    H.INT64 and { "64",  { 0, -1, math.maxinteger, math.mininteger } }
             or { "64",  { 0, -1, 2^53 - 1, -(2^53 - 1), 2^53, -2^53 } },
    { "float", { 0.0, 1.5, -2.25, F(0.1), 3.4028234663852886e38,
                 1.401298464324817e-45, math.huge, -math.huge } },
    { "double", { 0.0, math.pi, -1e-300, 1.7976931348623157e308,
                  4.9406564584124654e-324, math.huge, -math.huge } },
  }

  for _, big in ipairs { false, true } do
    local order = big and "big-endian" or "little-endian"

    it("round-trips every typed put/get at the boundaries, " .. order, function()
      local s, c = pair()
      assert.is_false(c:is_big_endian_enabled())   -- Godot's default
      assert.is_false(s:is_big_endian_enabled())
      c:set_big_endian(big)
      s:set_big_endian(big)
      assert.equal(big, c:is_big_endian_enabled())
      for _, t in ipairs(typed) do
        local name, values = t[1], t[2]
        for _, v in ipairs(values) do
          assert.is_true(c["put_" .. name](c, v))
          local got = s["get_" .. name](s)
          assert.equal(v, got, ("put_%s/get_%s %s"):format(name, name, tostring(v)))
          if H.INT64 then
            assert.equal(math.type(v), math.type(got))
          else                                -- doubles: integral stays integral
            assert.equal(H.is_integer(v), H.is_integer(got))
          end
        end
      end
      -- NaN and the sign of zero survive.
      for _, name in ipairs { "float", "double" } do
        assert.is_true(c["put_" .. name](c, 0 / 0))
        local nan = s["get_" .. name](s)
        assert.is_true(nan ~= nan)
        assert.is_true(c["put_" .. name](c, H.NEG_ZERO))
        assert.equal(-math.huge, 1 / s["get_" .. name](s))
      end
      -- A float keeps single precision only.
      assert.is_true(c:put_float(0.1))
      assert.equal(F(0.1), s:get_float())
      assert.is_true(F(0.1) ~= 0.1)
      assert.equal(0, s:get_available_bytes())
    end)

    it("writes the bytes in " .. order .. " order on the wire", function()
      local s, c = pair()
      c:set_big_endian(big)
      local function wire(bytes)
        return big and bytes or bytes:reverse()
      end
      assert.is_true(c:put_u16(0x0102))
      assert.equal(wire("\1\2"), s:get_data(2))
      assert.is_true(c:put_32(-2))
      assert.equal(wire("\255\255\255\254"), s:get_data(4))
      if H.INT64 then
        assert.is_true(c:put_u64(0x0102030405060708))
        assert.equal(wire("\1\2\3\4\5\6\7\8"), s:get_data(8))
      else                                    -- the same below 2^53
        assert.is_true(c:put_u64(0x01020304050607))
        assert.equal(wire("\0\1\2\3\4\5\6\7"), s:get_data(8))
      end
      assert.is_true(c:put_float(1.0))
      assert.equal(wire("\63\128\0\0"), s:get_data(4))
      assert.is_true(c:put_double(-2.0))
      assert.equal(wire("\192\0\0\0\0\0\0\0"), s:get_data(8))
      assert.is_true(c:put_string("abc"))
      assert.equal(wire("\0\0\0\3") .. "abc", s:get_data(7))
      assert.is_true(c:put_utf8_string("é"))
      assert.equal(wire("\0\0\0\2") .. "é", s:get_data(6))
    end)
  end

  it("put_* reject values out of range and non-numbers, sending nothing", function()
    local s, c = pair()
    local bad = {
      { "u8", 256 }, { "u8", -1 }, { "8", 128 }, { "8", -129 },
      { "u16", 0x10000 }, { "u16", -1 }, { "16", 0x8000 }, { "16", -0x8001 },
      { "u32", 0x100000000 }, { "u32", -1 }, { "32", 0x80000000 },
      { "32", -0x80000001 }, { "u8", 1.5 }, { "64", 2.5 }, { "u64", "1" },
      { "float", "1.0" }, { "double", {} }, { "32", nil },
    }
    for _, b in ipairs(bad) do
      assert.has_error(function() c["put_" .. b[1]](c, b[2]) end, nil,
                       ("put_%s(%s)"):format(b[1], tostring(b[2])))
    end
    -- Nothing of the above reached the peer: the next byte is the marker.
    assert.is_true(c:put_u8(42))
    assert.equal(42, s:get_u8())
    assert.equal(0, s:get_available_bytes())
  end)

  it("round-trips strings: empty, binary, UTF-8, with and without a length", function()
    local s, c = pair()
    local binary = {}
    for i = 0, 255 do binary[#binary + 1] = string.char(i) end
    binary = table.concat(binary) .. "\0\0end"
    local text = "héllo, wörld ✓ 🚀 日本語"

    assert.is_true(c:put_string(""))
    assert.equal("", s:get_string())
    assert.is_true(c:put_string(binary))
    assert.equal(binary, s:get_string())
    assert.is_true(c:put_utf8_string(""))
    assert.equal("", s:get_utf8_string())
    assert.is_true(c:put_utf8_string(text))
    assert.equal(text, s:get_utf8_string())
    -- An explicit length reads that many raw bytes, no prefix.
    assert.is_true(c:put_data("xyz" .. text))
    assert.equal("xyz", s:get_string(3))
    assert.equal(text, s:get_utf8_string(#text))
    -- -1 means "read the prefix", as the default.
    assert.is_true(c:put_string("minus one"))
    assert.equal("minus one", s:get_string(-1))
  end)

  it("put_utf8_string raises on invalid UTF-8; get_utf8_string fails with ERR_INVALID_DATA", function()
    local s, c = pair()
    for _, bad in ipairs { "\255", "abc\192", "\237\160\128x", "\195" } do
      assert.has_error(function() c:put_utf8_string(bad) end)
    end
    assert.has_error(function() c:put_string(42) end)
    assert.has_error(function() c:put_utf8_string(nil) end)
    assert.has_error(function() s:get_string(1.5) end)
    assert.has_error(function() s:get_utf8_string("x") end)
    -- Invalid bytes sent as a plain string, read as UTF-8.
    assert.is_true(c:put_string("ab\255cd"))
    local v, msg, code = s:get_utf8_string()
    assert.is_nil(v)
    assert.equal("ERR_INVALID_DATA", code)
    assert.matches("UTF%-8", msg)
    -- The bad bytes were consumed: the stream stays in step.
    assert.is_true(c:put_utf8_string("ok"))
    assert.equal("ok", s:get_utf8_string())
    assert.is_true(c:put_data("\200\200"))
    v, msg, code = s:get_utf8_string(2)
    assert.is_nil(v)
    assert.equal("ERR_INVALID_DATA", code)
  end)

  -- ------------------------------------------------ blocking and timeouts

  it("get_data timeout keeps the bytes that arrived for the next read", function()
    local s, c = pair()
    assert.equal(30, s:get_timeout())             -- the default
    s:set_timeout(0.2)
    assert.equal(0.2, s:get_timeout())
    assert.is_true(c:put_data("abc"))
    local t0 = H.now()
    local v, msg, code = s:get_data(5)
    local took = H.now() - t0
    assert.is_nil(v)
    assert.equal("ERR_TIMEOUT", code)
    assert.matches("3 arrived", msg)
    assert.is_true(took >= 0.18 and took < 1.5, "waited " .. took .. " s")
    assert.is_true(c:put_data("de"))
    assert.equal("abcde", s:get_data(5))
    assert.equal(0, s:get_available_bytes())
  end)

  it("a typed get that times out keeps its partial bytes too", function()
    local s, c = pair()
    s:set_timeout(0.1)
    c:set_big_endian(true)
    s:set_big_endian(true)
    assert.is_true(c:put_data("\1\2"))
    local v, _, code = s:get_u32()
    assert.is_nil(v)
    assert.equal("ERR_TIMEOUT", code)
    assert.is_true(c:put_data("\3\4"))
    assert.equal(0x01020304, s:get_u32())
  end)

  it("get_partial_data never blocks and returns '' when nothing arrived", function()
    local s, c = pair()
    local t0 = H.now()
    assert.equal("", s:get_partial_data(100))
    assert.equal("", s:get_partial_data(0))
    assert.is_true(H.now() - t0 < 0.5)
    assert.is_true(c:put_data("12345"))
    assert.equal("123", read_n(s, 3))
    assert.equal("45", read_n(s, 2))
    assert.equal(0, c:put_partial_data(""))
    assert.equal(3, c:put_partial_data("678"))
    assert.equal("678", read_n(s, 3))
  end)

  it("transfers 4 MiB with the partial methods in a poll loop", function()
    local s, c = pair()
    local size = 4 * 1024 * 1024
    local data = assert(H.crypto():generate_random_bytes(size))
    local sent, parts, got = 0, {}, 0
    local done = H.wait_for(function()
      for _ = 1, 16 do
        if sent < size then
          local chunk = data:sub(sent + 1, sent + 256 * 1024)
          local n = assert(c:put_partial_data(chunk))
          assert.is_true(n >= 0 and n <= #chunk)
          sent = sent + n
        end
        local r = assert(s:get_partial_data(256 * 1024))
        if #r > 0 then
          parts[#parts + 1] = r
          got = got + #r
        end
      end
      return got >= size
    end, 20, 0)
    assert.is_true(done, ("stalled: %d sent, %d received"):format(sent, got))
    assert.equal(size, sent)
    assert.equal(size, got)
    local received = table.concat(parts)
    assert.equal(sha256(data), sha256(received))
    assert.is_true(data == received)
  end)

  it("put_partial_data returns 0 on a full socket; put_data then times out", function()
    local s, c = pair()
    local chunk = string.rep("x", 64 * 1024)
    local queued, calls, slowest = 0, 0, 0
    -- Nobody reads: the socket fills up (bounded at 256 MiB).
    local full = H.wait_for(function()
      local t0 = H.now()
      local n = assert(c:put_partial_data(chunk))
      slowest = math.max(slowest, H.now() - t0)
      queued, calls = queued + n, calls + 1
      return n == 0 or queued > 256 * 1024 * 1024
    end, 10, 0)
    assert.is_true(full, "the socket never filled")
    assert.is_true(queued <= 256 * 1024 * 1024, "the socket never filled")
    assert.is_true(slowest < 0.5, "put_partial_data blocked " .. slowest .. " s")
    c:set_timeout(0.2)
    local t0 = H.now()
    local ok, msg, code = c:put_data(chunk)
    assert.is_nil(ok)
    assert.equal("ERR_TIMEOUT", code)
    assert.matches("sent", msg)
    assert.is_true(H.now() - t0 < 2)
    -- Everything queued arrives once the reader drains.
    local sent_by_put = tonumber(msg:match("%((%d+) sent%)")) or 0
    local total = queued + sent_by_put
    local got = 0
    assert.is_true(H.wait_for(function()
      local r = assert(s:get_partial_data(1024 * 1024))
      got = got + #r
      return got >= total
    end, 20, 0))
    assert.equal(total, got)
  end)

  -- ------------------------------------------------------- end of stream

  it("hands out the buffered bytes after the peer closed, then ERR_FILE_EOF", function()
    local s, c = pair()
    assert.is_true(c:put_data("bye"))
    c:disconnect_from_host()
    assert.equal("bye", read_n(s, 3))
    local v, msg, code
    assert(H.wait_for(function()
      v, msg, code = s:get_partial_data(10)
      return v ~= ""
    end, 5), "the end of the stream was not seen")
    assert.is_nil(v)
    assert.equal("ERR_FILE_EOF", code)
    assert.matches("closed by the peer", msg)
    assert.equal(NONE, s:get_status())
    -- And it stays that way.
    v, msg, code = s:get_partial_data(1)
    assert.is_nil(v)
    assert.equal("ERR_FILE_EOF", code)
  end)

  it("get_data fails with ERR_FILE_EOF at once when the peer closes first", function()
    local s, c = pair()
    s:set_timeout(5)
    assert.is_true(c:put_data("ab"))
    c:disconnect_from_host()
    local t0 = H.now()
    local v, msg, code = s:get_data(5)
    assert.is_nil(v)
    assert.equal("ERR_FILE_EOF", code)
    assert.matches("closed", msg)
    assert.is_true(H.now() - t0 < 2, "get_data waited for the timeout")
  end)

  it("poll() notices a peer that went away, and writes then fail", function()
    local s, c = pair()
    c:disconnect_from_host()
    assert.equal(NONE, H.wait_for(function()
      s:poll()
      return s:get_status() == NONE and NONE
    end, 5))
    assert.equal("StreamPeerTCP (none)", tostring(s))
    local ok, _, code = s:put_data("x")
    assert.is_nil(ok)
    assert.equal("ERR_FILE_EOF", code)
    ok, _, code = s:put_partial_data("x")
    assert.is_nil(ok)
    assert.equal("ERR_FILE_EOF", code)
  end)

  it("I/O on a peer that never connected fails with ERR_UNCONFIGURED", function()
    local c = track(TCP.new())
    for _, f in ipairs {
      function() return c:get_partial_data(1) end,
      function() return c:get_data(1) end,
      function() return c:put_data("x") end,
      function() return c:put_partial_data("x") end,
      function() return c:get_u8() end,
    } do
      local v, msg, code = f()
      assert.is_nil(v)
      assert.equal("ERR_UNCONFIGURED", code)
      assert.matches("not connected", msg)
    end
    assert.equal(0, c:get_available_bytes())
    assert.is_nil(c:get_error())
  end)

  -- ------------------------------------------------------------- failures

  it("a refused connection ends in STATUS_ERROR that says 'refused'", function()
    local srv = new_server()
    local port = srv:get_local_port()
    srv:stop()
    local c = track(TCP.new())
    local ok, msg, code = c:connect_to_host("127.0.0.1", port)
    if ok then
      assert.equal(ERROR, H.connected(c))
      msg, code = c:get_error()
    end
    assert.equal(ERROR, c:get_status())
    assert.equal("ERR_CANT_CONNECT", code)
    assert.matches("[Rr]efused", msg)
    assert.matches(tostring(port), msg, 1, true)
    local emsg, ecode = c:get_error()
    assert.matches("[Rr]efused", emsg)
    assert.equal("ERR_CANT_CONNECT", ecode)
    assert.matches("^StreamPeerTCP %(error: .*[Rr]efused", tostring(c))
    local t0 = H.now()
    local v, _, rcode = c:get_data(1)
    assert.is_nil(v)
    assert.is_string(rcode)
    assert.is_not.equal("ERR_TIMEOUT", rcode)
    assert.is_true(H.now() - t0 < 1)
    -- The peer can be used again.
    local srv2 = new_server()
    assert.is_true(c:connect_to_host("127.0.0.1", srv2:get_local_port()))
    assert.equal(CONNECTED, H.connected(c))
    accept(srv2)
  end)

  it("an unresolvable host fails with ERR_CANT_RESOLVE, in a later poll (the lookup runs on a worker)", function()
    local c = track(TCP.new())
    local t0 = H.now()
    assert.is_true(c:connect_to_host("no-such-host.invalid", 443))
    assert.is_true(H.now() - t0 < 0.05, "connect_to_host waited for the lookup")
    assert.equal(CONNECTING, c:get_status())
    assert.is_boolean(c:is_resolving())
    assert.truthy(H.wait_for(function() c:poll(); return c:get_status() ~= CONNECTING end, 10))
    assert.equal(ERROR, c:get_status())
    assert.is_false(c:is_resolving())
    local msg, code = c:get_error()
    assert.equal("ERR_CANT_RESOLVE", code)
    assert.matches("no-such-host.invalid", msg, 1, true)
    assert.is_true(H.now() - t0 < 10)
  end)

  it("with worker threads off, an unresolvable host fails at once, as before", function()
    local before = tls.get_worker_threads()
    tls.set_worker_threads(0)
    local ok, r, msg, code = pcall(function()
      local c = track(TCP.new())
      return c:connect_to_host("no-such-host.invalid", 443)
    end)
    tls.set_worker_threads(before)
    assert.is_true(ok, r)
    assert.is_nil(r)
    assert.equal("ERR_CANT_RESOLVE", code)
    assert.matches("no-such-host.invalid", msg, 1, true)
  end)

  it("a blocking read waits for the lookup and the connect", function()
    local srv = new_server("*")
    local c = track(TCP.new())
    assert.is_true(c:connect_to_host("localhost", srv:get_local_port()))
    local got
    assert.truthy(H.wait_for(function()
      if srv:is_connection_available() then
        local s = track(srv:take_connection())
        assert.is_true(s:put_data("late"))
        return true
      end
      c:poll()
    end, 5))
    c:set_timeout(5)
    got = c:get_data(4)
    assert.equal("late", got)
  end)

  it("regression: get_error after an unresolvable host says ERR_CANT_RESOLVE", function()
    -- get_error said ERR_CANT_CONNECT for every STATUS_ERROR, also for a
    -- name that did not resolve.
    local c = track(TCP.new())
    assert.is_true(c:connect_to_host("no-such-host.invalid", 443))
    H.wait_for(function() c:poll(); return c:get_status() == ERROR end, 10)
    local emsg, ecode = c:get_error()
    assert.matches("no-such-host.invalid", emsg, 1, true)
    assert.equal("ERR_CANT_RESOLVE", ecode)

    -- A refused connect is still ERR_CANT_CONNECT.
    local srv = new_server()
    local port = srv:get_local_port()
    srv:stop()
    c:connect_to_host("127.0.0.1", port)    -- fails now or after polling
    assert.equal(ERROR, H.connected(c))
    emsg, ecode = c:get_error()
    assert.matches("[Rr]efused", emsg)
    assert.equal("ERR_CANT_CONNECT", ecode)
  end)

  it("raise on wrong argument types and out-of-range values", function()
    local c = track(TCP.new())
    local srv = track(Server.new())
    local cases = {
      function() c:connect_to_host({}, 80) end,
      function() c:connect_to_host("127.0.0.1", "http") end,
      function() c:connect_to_host("127.0.0.1", 0) end,
      function() c:connect_to_host("127.0.0.1", 65536) end,
      function() c:connect_to_host("127.0.0.1") end,
      function() c:bind(-1) end,
      function() c:bind(70000) end,
      function() c:bind("x") end,
      function() c:bind(0, {}) end,
      function() c:set_no_delay("yes") end,
      function() c:set_no_delay() end,
      function() c:set_big_endian(1) end,
      function() c:set_timeout(-1) end,
      function() c:set_timeout("soon") end,
      function() c:get_partial_data(-1) end,
      function() c:get_partial_data("x") end,
      function() c:get_data(1.5) end,
      function() c:put_data({}) end,
      function() c:put_partial_data() end,
      function() srv:listen(-1) end,
      function() srv:listen(65536) end,
      function() srv:listen(0, {}) end,
      function() TCP.new().poll(srv) end,
      function() Server.new().stop(c) end,
      function() c.get_status(nil) end,
    }
    for i, f in ipairs(cases) do
      assert.has_error(f, nil, "case " .. i)
    end
  end)

  it("raise when used after close, and print '(closed)'", function()
    local srv = new_server()
    local port = srv:get_local_port()
    local c, keep_srv
    do
      local p = track(TCP.new())
      local q = srv
      assert(p:connect_to_host("127.0.0.1", port))
      c, keep_srv = p, q
      close(q)                  -- as <close> variables would (spec 90)
      close(p)
    end
    assert.equal("StreamPeerTCP (closed)", tostring(c))
    assert.equal("TCPServer (closed)", tostring(keep_srv))
    for _, f in ipairs {
      function() c:poll() end,
      function() c:get_status() end,
      function() c:put_data("x") end,
      function() c:get_u8() end,
      function() c:connect_to_host("127.0.0.1", port) end,
      function() keep_srv:is_listening() end,
      function() keep_srv:take_connection() end,
    } do
      assert.has_error(f)
    end
    local ok, err = pcall(c.poll, c)
    assert.is_false(ok)
    assert.matches("attempt to use a closed StreamPeerTCP", err, 1, true)
    ok, err = pcall(keep_srv.stop, keep_srv)
    assert.is_false(ok)
    assert.matches("attempt to use a closed TCPServer", err, 1, true)
    -- Closing twice is harmless, and the port was released.
    close(c)
    close(keep_srv)
    local again = track(Server.new())
    assert.is_true(again:listen(port, "127.0.0.1"))
  end)

  it("set_no_delay works before and after connecting", function()
    local srv = new_server()
    local c = track(TCP.new())
    c:set_no_delay(true)                   -- remembered for the socket
    assert(c:connect_to_host("127.0.0.1", srv:get_local_port()))
    local s = accept(srv)
    assert.equal(CONNECTED, H.connected(c))
    s:set_no_delay(true)
    -- Small messages go back and forth without waiting for each other.
    local t0 = H.now()
    for i = 1, 50 do
      assert.is_true(c:put_u8(i % 256))
      assert.equal(i % 256, s:get_u8())
      assert.is_true(s:put_u8(i % 256))
      assert.equal(i % 256, c:get_u8())
    end
    assert.is_true(H.now() - t0 < 5)
    c:set_no_delay(false)
    assert.is_true(c:put_data("still fine"))
    assert.equal("still fine", s:get_data(10))
  end)

  it("get_available_bytes counts the bytes buffered for reading", function()
    local s, c = pair()
    assert.equal(0, s:get_available_bytes())
    assert.is_true(c:put_data("0123456789"))
    assert.equal(10, H.wait_for(function()
      local n = s:get_available_bytes()
      return n == 10 and n
    end, 5))
    assert.equal("0123", s:get_partial_data(4))
    assert.equal(6, s:get_available_bytes())
    assert.is_true(c:put_data("ab"))
    assert.equal(8, H.wait_for(function()
      local n = s:get_available_bytes()
      return n == 8 and n
    end, 5))
    assert.equal("456789ab", s:get_data(8))
    assert.equal(0, s:get_available_bytes())
  end)
end)
