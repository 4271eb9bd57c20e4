-- Faults and bad input on the wire: truncated and oversized records, bad
-- MACs, renegotiation attempts from either side, closes without
-- close_notify, resets in the middle of a record, garbage after the
-- handshake; and objects used after a failed handshake or collected in the
-- middle of one.  Each fault ends its one connection with a clear status
-- and get_error(), never a crash or a hang, and a tls.listen server goes on
-- serving the next client.
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"

local TLS = tls.StreamPeerTLS
local HANDSHAKING, CONNECTED = TLS.STATUS_HANDSHAKING, TLS.STATUS_CONNECTED
local DISCONNECTED, ERROR = TLS.STATUS_DISCONNECTED, TLS.STATUS_ERROR
local CERTS = "certs/"

local CA, SKEY, SCERT

setup(function()
  for _, f in ipairs { "ca.crt", "server.key", "server.crt" } do
    assert(H.exists(CERTS .. f), CERTS .. f .. " is missing: run `make certs`")
  end
  CA = tls.X509Certificate.new(); assert(CA:load(CERTS .. "ca.crt"))
  SKEY = tls.CryptoKey.new(); assert(SKEY:load(CERTS .. "server.key"))
  SCERT = tls.X509Certificate.new(); assert(SCERT:load(CERTS .. "server.crt"))
end)

-- Everything started in the background, stopped after each spec.
local running = {}
after_each(function()
  for i = #running, 1, -1 do
    running[i].stop()
    running[i] = nil
  end
end)
teardown(function() H.cleanup() end)

-- A tls.listen server on 127.0.0.1 that echoes and logs what it sees:
-- srv.failed = { {msg, code}... } (connection_failed), srv.ended = list of
-- { status, msg, code } read from the peer in the disconnected handler.
local function new_server(extra)
  local opts = { port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt",
                 key = CERTS .. "server.key", handshake_timeout = 3 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  local srv = assert(tls.listen(opts))
  srv.failed, srv.ended, srv.established = {}, {}, 0
  srv:on("connection_failed", function(_, msg, code) srv.failed[#srv.failed + 1] = { msg, code } end)
  srv:on("connection_established", function() srv.established = srv.established + 1 end)
  srv:on("disconnected", function(conn)
    local msg, code = conn:get_peer():get_error()
    srv.ended[#srv.ended + 1] = { conn:get_peer():get_status(), msg, code }
  end)
  srv:on("data_received", function(conn, data) conn:send(data) end)
  return srv
end

-- Polls srv (and calls f) until f() is true or `seconds` pass.
local function pump(srv, f, seconds)
  local deadline = core._now() + (seconds or 5)
  while core._now() < deadline do
    if srv then srv:poll() end
    if f() then return true end
    core._wait({}, {}, 0.002)
  end
  return false
end

-- The next client after a fault is served: handshake, echo, close.
local function serves_next(srv)
  local c = tls.connect { host = "localhost", port = srv:get_local_port(), trusted = CA }
  local got = ""
  c:on("connection_established", function() c:send("next client") end)
  c:on("data_received", function(d) got = got .. d end)
  local ok = pump(srv, function() c:poll(); return got == "next client" end, 5)
  c:close()
  return ok
end

-- A raw TCP connection to the server, connected.
local function raw(srv)
  local t = tls.StreamPeerTCP.new()
  assert(t:connect_to_host("127.0.0.1", srv:get_local_port()))
  assert.equal(tls.StreamPeerTCP.STATUS_CONNECTED, H.connected(t))
  return t
end

-- A Lua transport over a StreamPeerTCP that lets a spec see and change the
-- bytes: tap.on_send(s) -> s (same length) is applied to what TLS sends;
-- tap.tcp is the socket under it, for writing raw bytes.
local Tap = {}
Tap.__index = Tap
function Tap:get_partial_data(n) return self.tcp:get_partial_data(n) end
function Tap:put_partial_data(s)
  if self.on_send then s = self.on_send(s) end
  return self.tcp:put_partial_data(s)
end
function Tap:disconnect_from_host() self.tcp:disconnect_from_host() end

-- Our client over a Tap to the server, handshake done on both sides.
local function tapped_client(srv)
  local tap = setmetatable({ tcp = raw(srv) }, Tap)
  local p = TLS.new()
  assert(p:connect_to_stream(tap, "localhost", tls.TLSOptions.client(CA)))
  local before = srv.established
  assert.is_true(pump(srv, function()
    p:poll()
    return p:get_status() ~= HANDSHAKING and srv.established > before
  end, 5))
  assert.equal(CONNECTED, p:get_status())
  return p, tap
end

-- Flips one bit of byte i of s.
local function flip(s, i)
  return s:sub(1, i - 1) .. string.char(H.bxor(s:byte(i), 0x01)) .. s:sub(i + 1)
end

-- A TLS record header: type, version 3.3, length.
local function record_header(rtype, len)
  return H.record_header(rtype, 3, len)
end

describe("wire faults", function()

  it("a truncated record at the start (header announcing 16 KiB, then close) fails that handshake only", function()
    local srv = new_server()
    local t = raw(srv)
    t:put_data(H.record_header(22, 1, 16384) .. ("\1"):rep(100))
    t:disconnect_from_host()
    assert.is_true(pump(srv, function() return #srv.failed == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.failed[1][2])
    assert.matches("the client closed the connection", srv.failed[1][1])
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  it("a record truncated by the peer's close after the handshake is an error, not a clean end", function()
    -- Regression: a close in the middle of a record used to read as a
    -- clean end of the stream (status DISCONNECTED, no error).
    local srv = new_server()
    local _, tap = tapped_client(srv)
    tap.tcp:put_data(record_header(23, 200) .. ("\2"):rep(50))
    tap.tcp:disconnect_from_host()
    assert.is_true(pump(srv, function() return #srv.ended == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.ended[1][3])
    assert.matches("closed the connection in the middle of a TLS record", srv.ended[1][2])
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  it("a record over the maximum size is refused with a clear message, at the start or later", function()
    -- Regression: mbedtls' "Bad input parameters to function" was all
    -- get_error() said about an oversized record.
    local srv = new_server()
    local too_big = 16384 + 2048 + 1
    local t = raw(srv)
    t:put_data(H.record_header(22, 1, too_big) .. ("\3"):rep(100))
    assert.is_true(pump(srv, function() return #srv.failed == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.failed[1][2])
    -- (mbedtls 2.28's server already rejects the ClientHello's header.)
    local m = srv.failed[1][1]
    assert.is_truthy(m:match("larger than the maximum record size") or
                     m:match("not a valid TLS ClientHello"), m)
    assert.not_matches("Bad input parameters", m)
    -- The server closed that connection, after a fatal alert (every
    -- failed handshake ends with one).
    t:set_timeout(2)
    local alert, data, code, _ = ""
    repeat
      data, _, code = t:get_data(1)
      alert = alert .. (data or "")
    until not data
    assert.equal("ERR_FILE_EOF", code)
    assert.equal(7, #alert)
    assert.equal(21, alert:byte(1))             -- an alert record
    assert.equal(2, alert:byte(6))              -- fatal

    local p, tap = tapped_client(srv)
    tap.tcp:put_data(record_header(23, too_big) .. ("\3"):rep(100))
    assert.is_true(pump(srv, function() return #srv.ended == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.ended[1][3])
    assert.matches("the client sent a TLS record larger than the maximum record size", srv.ended[1][2])
    assert.is_true(pump(nil, function() p:poll(); return p:get_status() ~= CONNECTED end, 3))
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  it("a flipped byte in an application-data record (MITM over tls.pipe()) is a bad MAC on both ends", function()
    local a, b = tls.pipe()
    -- The man in the middle: the client writes through it into the pipe.
    local mitm = { armed = false }
    function mitm:get_partial_data(n) return a:get_partial_data(n) end
    function mitm:put_partial_data(s)
      if self.armed and s:byte(1) == 23 and #s > 5 + 8 then
        self.armed = false
        self.flipped = true
        s = flip(s, #s - 3)        -- inside the ciphertext / tag
      end
      return a:put_partial_data(s)
    end
    local client, server = TLS.new(), TLS.new()
    assert(server:accept_stream(b, tls.TLSOptions.server(SKEY, SCERT)))
    assert(client:connect_to_stream(mitm, "localhost", tls.TLSOptions.client(CA)))
    assert.equal(CONNECTED, H.handshake(client, 5, function() server:poll() end))
    assert.is_true(H.wait_for(function() server:poll(); return server:get_status() ~= HANDSHAKING end))
    assert.equal(CONNECTED, server:get_status())
    -- One good record first: it arrives intact.
    assert.is_true(client:put_data("intact"))
    assert.equal("intact", H.wait_for(function()
      server:poll()
      local d = server:get_partial_data(100)
      return d ~= "" and d
    end))
    mitm.armed = true
    assert.is_true(client:put_data("this record is tampered with"))
    assert.is_true(mitm.flipped)
    local data, msg, code = server:get_partial_data(100)
    assert.is_nil(data)
    assert.equal("ERR_CONNECTION_ERROR", code)
    assert.matches("MAC", msg)
    assert.equal(ERROR, server:get_status())
    assert.same({ msg, code }, { server:get_error() })
    -- The server told the client (a bad_record_mac alert).
    H.wait_for(function() client:poll(); return client:get_status() ~= CONNECTED end, 2)
    assert.equal(ERROR, client:get_status())
    assert.matches("bad record MAC", (client:get_error()))
  end)

  it("a flipped byte sent to tls.listen ends that connection only", function()
    local srv = new_server()
    local p, tap = tapped_client(srv)
    tap.on_send = function(s)
      if s:byte(1) == 23 and #s > 13 then
        tap.on_send = nil
        return flip(s, 10)
      end
      return s
    end
    assert.is_true(p:put_data("tampered"))
    assert.is_true(pump(srv, function() return #srv.ended == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.ended[1][3])
    assert.matches("MAC", srv.ended[1][2])
    assert.is_true(pump(nil, function() p:poll(); return p:get_status() ~= CONNECTED end, 3))
    assert.equal(ERROR, p:get_status())
    assert.matches("bad record MAC", (p:get_error()))
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  it("garbage after a valid handshake ends that connection only", function()
    local srv = new_server()
    local p, tap = tapped_client(srv)
    tap.tcp:put_data("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert.is_true(pump(srv, function() return #srv.ended == 1 end))
    assert.equal("ERR_CONNECTION_ERROR", srv.ended[1][3])
    assert.matches("TLS connection failed", srv.ended[1][2])
    -- The client sees the end (the server closes without an alert).
    assert.is_true(pump(nil, function() p:poll(); return p:get_status() ~= CONNECTED end, 3))
    local data, _, code = p:get_partial_data(10)
    assert.is_nil(data)
    assert.is_truthy(code == "ERR_FILE_EOF" or code == "ERR_CONNECTION_ERROR", code)
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  -- openssl s_client fed line by line (one read per line: "R" renegotiates
  -- only at the start of a read) from a shell pipeline with pauses.
  local function staged_s_client(args, lines, pause)
    local dir = H.tmpdir()
    local out, rc, pidf = dir .. "/out", dir .. "/rc", dir .. "/pid"
    local feed = {}
    for _, l in ipairs(lines) do
      feed[#feed + 1] = ("printf '%%s\\n' %s; sleep %g"):format(H.q(l), pause)
    end
    -- The first line waits (at most 5 s) for the handshake to be over.
    local ready = ("i=0; while [ $i -lt 100 ] && ! grep -q 'Verify return code' %s; do sleep 0.05; i=$((i+1)); done")
      :format(H.q(out))
    local script = ("echo $$ >%s; : >%s; (%s; %s; sleep 2) | openssl s_client %s >%s 2>&1; echo $? >%s")
      :format(H.q(pidf), H.q(out), ready, table.concat(feed, "; "), args, H.q(out), H.q(rc))
    assert(H.execute("setsid sh -c " .. H.q(script) .. " </dev/null >/dev/null 2>&1 &"))
    local pgid = H.wait_for(function()
      return H.exists(pidf) and tonumber(H.read(pidf))
    end, 5, 0.002)
    assert(pgid and pgid > 1, "could not start openssl s_client")
    local h = {}
    function h.output() return H.read(out) end
    function h.exit_code() return H.exists(rc) and tonumber(H.read(rc)) or nil end
    function h.stop()
      if not pgid then return end
      local g = pgid
      pgid = nil
      os.execute("kill -KILL -" .. g .. " 2>/dev/null")
    end
    running[#running + 1] = h
    return h
  end

  it("refuses a renegotiation requested by the client (openssl s_client, TLS 1.2, 'R')", function()
    local srv = new_server()
    local received = {}
    srv:on("data_received", function(_, data) received[#received + 1] = data end)
    local c = staged_s_client(("-connect 127.0.0.1:%d -tls1_2 -CAfile %s -servername localhost")
      :format(srv:get_local_port(), CERTS .. "ca.crt"), { "before", "R", "after" }, 0.4)
    assert.is_true(pump(srv, function() return c.exit_code() ~= nil end, 8), "s_client did not end")
    local out = c.output()
    -- What happens: s_client sends a second ClientHello; mbedtls, with
    -- renegotiation disabled, answers with a no_renegotiation warning
    -- alert; OpenSSL treats that as fatal and ends the connection.  The
    -- data before it was served; the server ends that connection with an
    -- error and is fine.
    assert.matches("RENEGOTIATING", out)
    assert.matches("before", table.concat(received))
    assert.not_matches("after", table.concat(received))
    assert.matches("no renegotiation", out)
    assert.is_true(pump(srv, function() return #srv.ended == 1 end, 3))
    io.stderr:write(("\n[18] client renegotiation: s_client says %q; server status %d, error %s (%s)\n")
      :format(out:match("[^\n]*no renegotiation[^\n]*") or "?", srv.ended[1][1],
              tostring(srv.ended[1][2]), tostring(srv.ended[1][3])))
    assert.is_true(serves_next(srv))
    srv:stop()
  end)

  for _, cmd in ipairs { "r", "R" } do
    it("refuses a renegotiation requested by the server (openssl s_server, TLS 1.2, '" .. cmd .. "')", function()
      local s = H.s_server(("-tls1_2 -cert %s -key %s"):format(CERTS .. "server.crt", CERTS .. "server.key"))
      running[#running + 1] = s
      local tcp = tls.StreamPeerTCP.new()
      assert(tcp:connect_to_host("127.0.0.1", s.port))
      local p = TLS.new()
      assert(p:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(CA)))
      assert.equal(CONNECTED, H.handshake(p, 5))
      assert.is_true(p:put_data("hello\n"))
      assert.truthy(s.wait_output("hello"))
      s.send(cmd .. "\n")
      -- mbedtls answers the HelloRequest with a no_renegotiation warning;
      -- OpenSSL's server gives up with a handshake_failure alert.
      assert.is_true(H.wait_for(function()
        p:poll()
        return p:get_status() ~= CONNECTED
      end, 5))
      assert.equal(ERROR, p:get_status())
      local msg, code = p:get_error()
      assert.equal("ERR_CONNECTION_ERROR", code)
      assert.matches("the server sent the alert", msg)
      assert.truthy(s.wait_output("no renegotiation"))
      local data, msg2, code2 = p:get_partial_data(10)
      assert.is_nil(data)
      assert.equal(msg, msg2)
      assert.equal(code, code2)
      io.stderr:write(("\n[18] server renegotiation '%s': our client: status %d, %s\n"):format(cmd, p:get_status(), msg))
      s.stop()
    end)
  end

  -- Our server (TCPServer + accept_stream) and client, both over TCP in
  -- this process; returns client, server peer, server's TCP.
  local function tcp_pair()
    local ls = tls.TCPServer.new()
    assert(ls:listen(0, "127.0.0.1"))
    local ctcp = tls.StreamPeerTCP.new()
    assert(ctcp:connect_to_host("127.0.0.1", ls:get_local_port()))
    assert(H.wait_for(function() return ls:is_connection_available() end))
    local stcp = assert(ls:take_connection())
    ls:stop()
    local server, client = TLS.new(), TLS.new()
    assert(server:accept_stream(stcp, tls.TLSOptions.server(SKEY, SCERT)))
    assert(client:connect_to_stream(ctcp, "localhost", tls.TLSOptions.client(CA)))
    assert.equal(CONNECTED, H.handshake(client, 5, function() server:poll() end))
    assert.is_true(H.wait_for(function() server:poll(); return server:get_status() ~= HANDSHAKING end))
    assert.equal(CONNECTED, server:get_status())
    return client, server, stcp
  end

  it("a close without close_notify: the data sent before arrives, then ERR_FILE_EOF", function()
    local client, server, stcp = tcp_pair()
    assert.is_true(server:put_data("last words"))
    stcp:disconnect_from_host()            -- TCP close, no close_notify
    local got = ""
    local data, msg, code
    H.wait_for(function()
      data, msg, code = client:get_partial_data(100)
      if data then got = got .. data; return false end
      return true
    end, 3)
    assert.equal("last words", got)
    assert.is_nil(data)
    assert.equal("ERR_FILE_EOF", code)
    assert.matches("closed by the peer", msg)
    assert.equal(DISCONNECTED, client:get_status())
  end)

  it("poll() notices a peer that closed without close_notify", function()
    -- Regression: poll() read the end of the stream as "0 bytes" and the
    -- status stayed CONNECTED for ever; only get_partial_data noticed.
    local client, _, stcp = tcp_pair()
    stcp:disconnect_from_host()
    assert.is_true(H.wait_for(function()
      client:poll()
      return client:get_status() ~= CONNECTED
    end, 3))
    assert.equal(DISCONNECTED, client:get_status())
    local data, _, code = client:get_partial_data(1)
    assert.is_nil(data)
    assert.equal("ERR_FILE_EOF", code)
    -- Over a Lua stream too.
    local a, b = tls.pipe()
    local c2, s2 = TLS.new(), TLS.new()
    assert(s2:accept_stream(b, tls.TLSOptions.server(SKEY, SCERT)))
    assert(c2:connect_to_stream(a, "localhost", tls.TLSOptions.client(CA)))
    assert.equal(CONNECTED, H.handshake(c2, 5, function() s2:poll() end))
    H.wait_for(function() s2:poll(); return s2:get_status() ~= HANDSHAKING end)
    b:disconnect_from_host()
    assert.is_true(H.wait_for(function() c2:poll(); return c2:get_status() ~= CONNECTED end, 3))
    assert.equal(DISCONNECTED, c2:get_status())
  end)

  -- A TLS server in another process (Python's ssl module) that resets the
  -- connection (SO_LINGER 0, then close) when it reads "reset now".
  local RST_SERVER = [[
import signal, socket, ssl, struct
signal.alarm(10)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("certs/server.crt", "certs/server.key")
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
s = ctx.wrap_socket(c, server_side=True)
s.sendall(b"before the reset")
data = b""
while b"reset now" not in data:
    data += s.recv(100)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
]]

  it("a TCP reset from the peer is an error with the OS's words; the data before it arrived", function()
    assert(H.run("command -v python3"), "python3 is a test dependency (scripts/deps.sh installs it)")
    local dir = H.tmpdir()
    local script = H.write(dir .. "/rst.py", RST_SERVER)
    local proc = assert(io.popen("python3 " .. H.q(script) .. " 2>&1"))
    running[#running + 1] = { stop = function() if proc then proc:close(); proc = nil end end }
    local port = H.tointeger(tonumber(proc:read("*l")))
    assert(port, "the reset server did not start")
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", port))
    local p = TLS.new()
    assert(p:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(CA)))
    assert.equal(CONNECTED, H.handshake(p, 5))
    p:set_timeout(5)
    assert.equal("before the reset", p:get_data(16))
    assert.is_true(p:put_data("reset now"))
    assert.is_true(H.wait_for(function()
      p:poll()
      return p:get_status() ~= CONNECTED
    end, 5))
    local data, msg, code = p:get_partial_data(1)
    assert.is_nil(data)
    io.stderr:write(("\n[18] TCP reset: status %d, %s (%s)\n"):format(p:get_status(), msg, code))
    assert.equal(ERROR, p:get_status())
    assert.equal("ERR_CONNECTION_ERROR", code)
    assert.matches("reset", msg:lower())
    assert.same({ msg, code }, { p:get_error() })
    proc:close(); proc = nil
  end)

  it("a killed peer process ends the connection cleanly", function()
    local s = H.s_server(("-tls1_2 -cert %s -key %s"):format(CERTS .. "server.crt", CERTS .. "server.key"))
    running[#running + 1] = s
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", s.port))
    local p = TLS.new()
    assert(p:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(CA)))
    assert.equal(CONNECTED, H.handshake(p, 5))
    os.execute("kill -KILL " .. s.pid)
    assert.is_true(H.wait_for(function()
      p:poll()
      return p:get_status() ~= CONNECTED
    end, 3))
    local data, msg, code = p:get_partial_data(1)
    assert.is_nil(data)
    assert.is_truthy(code == "ERR_CONNECTION_ERROR" or code == "ERR_FILE_EOF", code)
    assert.is_string(msg)
    s.stop()
  end)

  -- A Lua transport over one end of a pipe that fails in the middle of
  -- the next record once armed: `how` = "nil" returns nil, msg, code;
  -- "raise" raises.
  for _, how in ipairs { "nil", "raise" } do
    it("a transport that fails in the middle of a record (" .. how .. ") gives ERR_CONNECTION_ERROR", function()
      local a, b = tls.pipe()
      local tr = { delivered = 0 }
      function tr:get_partial_data(n)
        if self.armed then
          if self.delivered >= 7 then
            if how == "raise" then error("the wire was cut") end
            return nil, "connection reset in the middle of a record", "ERR_CONNECTION_ERROR"
          end
          n = math.min(n, 7 - self.delivered)
          local d = a:get_partial_data(n)
          if d then self.delivered = self.delivered + #d end
          return d
        end
        return a:get_partial_data(n)
      end
      function tr:put_partial_data(s) return a:put_partial_data(s) end
      local client, server = TLS.new(), TLS.new()
      assert(server:accept_stream(b, tls.TLSOptions.server(SKEY, SCERT)))
      assert(client:connect_to_stream(tr, "localhost", tls.TLSOptions.client(CA)))
      assert.equal(CONNECTED, H.handshake(client, 5, function() server:poll() end))
      H.wait_for(function() server:poll(); return server:get_status() ~= HANDSHAKING end)
      -- Tickets and the like first, then arm and send one record.
      for _ = 1, 5 do client:poll() end
      tr.armed = true
      assert.is_true(server:put_data("a record that will be cut"))
      local data, msg, code = client:get_partial_data(100)
      assert.is_nil(data)
      assert.equal("ERR_CONNECTION_ERROR", code)
      assert.matches(how == "raise" and "the wire was cut" or "connection reset in the middle", msg)
      assert.equal(ERROR, client:get_status())
      assert.same({ msg, code }, { client:get_error() })
      -- It stays failed; nothing raises.
      assert.is_true(client:poll())
      assert.is_nil((client:get_partial_data(1)))
    end)
  end

  it("every StreamPeer method after a failed handshake returns nil, message, code or raises cleanly", function()
    local s = H.s_server(("-cert %s -key %s"):format(CERTS .. "server.crt", CERTS .. "server.key"))
    running[#running + 1] = s
    local tcp = tls.StreamPeerTCP.new()
    assert(tcp:connect_to_host("127.0.0.1", s.port))
    local p = TLS.new()
    -- Trusting only the server's own leaf: verification fails.
    local other = tls.Crypto.new():generate_self_signed_certificate(tls.Crypto.new():generate_ec(), "CN=other")
    assert(p:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(other)))
    assert.equal(ERROR, H.handshake(p, 5))
    local emsg, ecode = p:get_error()
    assert.equal("ERR_UNAUTHORIZED", ecode)

    local function check_all(expect_code)
      local calls = {
        { "get_partial_data", 10 }, { "get_data", 10 }, { "put_partial_data", "x" },
        { "put_data", "x" }, { "get_u8" }, { "get_16" }, { "get_u32" }, { "get_64" },
        { "get_float" }, { "get_double" }, { "get_string" }, { "get_string", 3 },
        { "get_utf8_string" }, { "put_u8", 1 }, { "put_32", -1 }, { "put_double", 1.5 },
        { "put_string", "abc" }, { "put_utf8_string", "é" },
      }
      for _, call in ipairs(calls) do
        p:set_timeout(0.2)
        local t0 = H.now()
        local r = H.pack(pcall(p[call[1]], p, H.unpack(call, 2)))
        assert.is_true(H.now() - t0 < 1, call[1] .. " blocked")
        assert.is_true(r[1], call[1] .. " raised: " .. tostring(r[2]))
        assert.is_nil(r[2], call[1])
        assert.is_string(r[3], call[1])
        assert.equal(expect_code, r[4], call[1] .. ": " .. tostring(r[3]))
      end
      assert.equal(0, p:get_available_bytes())
      assert.is_true(p:poll())
      assert.is_nil(p:get_peer_certificate())
      assert.is_nil(p:get_alpn_protocol())
      assert.is_nil(p:get_cipher_suite())
      assert.is_nil(p:get_tls_version())
      assert.is_string(tostring(p))
    end
    check_all(ecode)
    assert.equal(emsg, select(2, p:get_partial_data(1)))
    -- After disconnect_from_stream: not connected.
    p:disconnect_from_stream()
    assert.equal(DISCONNECTED, p:get_status())
    check_all("ERR_UNCONFIGURED")
    -- Bad arguments still raise.
    assert.has_error(function() p:get_partial_data(-1) end)
    assert.has_error(function() p:put_data({}) end)
    -- Closed: every method raises "attempt to use a closed StreamPeerTLS".
    getmetatable(p).__close(p)
    assert.has_error(function() p:get_partial_data(1) end, "attempt to use a closed StreamPeerTLS")
    assert.has_error(function() p:get_status() end, "attempt to use a closed StreamPeerTLS")
    assert.equal("StreamPeerTLS (closed)", tostring(p))
  end)

  it("put_data right after a poll() that read a TLS 1.3 session ticket succeeds", function()
    -- Regression (mbedtls 3.6): poll() took in the ticket record and left
    -- mbedtls to finish it; the next mbedtls_ssl_write did so and returned
    -- "A TLS 1.3 NewSessionTicket message has been received", which
    -- put_data reported as a failed connection.
    for round = 1, 3 do
      local a, b = tls.pipe()
      local client, server = TLS.new(), TLS.new()
      assert(server:accept_stream(b, tls.TLSOptions.server(SKEY, SCERT)))
      assert(client:connect_to_stream(a, "localhost", tls.TLSOptions.client(CA)))
      assert.equal(CONNECTED, H.handshake(client, 5, function() server:poll() end))
      H.wait_for(function() server:poll(); return server:get_status() ~= HANDSHAKING end)
      assert.equal(CONNECTED, server:get_status())
      for _ = 1, round do client:poll() end     -- reads the ticket, or part of it
      local ok, msg = client:put_data("after the ticket")
      assert.is_true(ok, msg)
      assert.equal("after the ticket", server:get_data(16))
      assert.equal(7, client:put_partial_data("partial"))
      assert.equal("partial", server:get_data(7))
    end
  end)

  it("the stream and options dropped and collected mid-handshake: the handshake still completes", function()
    -- Over a pipe: nothing but the peers holds the pipe ends and options.
    local client, server = TLS.new(), TLS.new()
    do
      local a, b = tls.pipe()
      assert(server:accept_stream(b, tls.TLSOptions.server(SKEY, SCERT)))
      assert(client:connect_to_stream(a, "localhost", tls.TLSOptions.client(CA)))
    end
    collectgarbage(); collectgarbage()
    assert.equal(CONNECTED, H.handshake(client, 5, function()
      collectgarbage()
      server:poll()
      collectgarbage()
    end))
    H.wait_for(function() server:poll(); return server:get_status() ~= HANDSHAKING end)
    assert.equal(CONNECTED, server:get_status())
    assert.is_true(client:put_data("survived"))
    collectgarbage()
    assert.equal("survived", server:get_data(8))

    -- Over TCP, with tls.listen: the client's TCP peer and options dropped.
    local srv = new_server()
    local p = TLS.new()
    do
      local tcp = tls.StreamPeerTCP.new()
      assert(tcp:connect_to_host("127.0.0.1", srv:get_local_port()))
      local ca = tls.X509Certificate.new(); assert(ca:load(CERTS .. "ca.crt"))
      assert(p:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(ca)))
    end
    assert.is_true(pump(srv, function()
      collectgarbage()
      p:poll()
      return p:get_status() ~= HANDSHAKING
    end, 5))
    assert.equal(CONNECTED, p:get_status())
    assert.is_true(p:put_data("echo me"))
    local got = ""
    assert.is_true(pump(srv, function()
      collectgarbage("step")
      local d = p:get_partial_data(100)
      if d then got = got .. d end
      return got == "echo me"
    end, 5))
    p:disconnect_from_stream()
    srv:stop()
  end)
end)
