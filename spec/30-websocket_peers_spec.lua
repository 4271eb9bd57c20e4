-- WebSocketPeer and tls.ws_listen/ws_connect against real peers the spec
-- starts on loopback: Python's `websockets` (Debian python3-websockets) and
-- node's `ws` (from the npm registry, cached in ~/.cache/tlspeer/npm) as
-- server and client, over ws:// and wss://, with and without
-- permessage-deflate; and headless Chromium opening wss:// to a tlspeer
-- server from a page.
local H = require "helpers"
local tls = H.tls
local core = require "tlspeer.core"
local WS = tls.WebSocketPeer

local CERTS = "certs/"
local PY = "/usr/bin/python3"
local NPM_DIR = (os.getenv("HOME") or "/tmp") .. "/.cache/tlspeer/npm"

local function ensure_certs()
  if not H.exists(CERTS .. "server.key") then
    local ok, out = H.run(H.LUA .. " certs/generate.lua")
    assert(ok, out)
  end
end

-- node's ws, installed once into the cache folder.
local function ensure_node_ws()
  if H.exists(NPM_DIR .. "/node_modules/ws/package.json") then return end
  local ok, out = H.run(("mkdir -p %s && cd %s && npm install --no-audit --no-fund --silent ws@8")
    :format(H.q(NPM_DIR), H.q(NPM_DIR)))
  assert(ok and H.exists(NPM_DIR .. "/node_modules/ws/package.json"), "npm install ws failed:\n" .. out)
end

-- A background process in its own process group, its output in a file.
-- The peers run without the sanitizer runtime `make asan` preloads into
-- the interpreter (Chromium's launcher script breaks under it).
local function spawn(cmd)
  cmd = "unset LD_PRELOAD ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS; " .. cmd
  local dir = H.tmpdir()
  local out = dir .. "/out"
  H.write(out, "")
  local p = assert(io.popen(("setsid sh -c %s </dev/null >%s 2>&1 & echo $!")
    :format(H.q(cmd), H.q(out))))
  local pid = tonumber(p:read("*l"))
  p:close()
  assert(pid, "could not start " .. cmd)
  local h = { pid = pid, dir = dir }
  function h.output() return H.read(out) end
  function h.stop()
    if not h.pid then return end
    local g = h.pid
    h.pid = nil
    os.execute("kill -TERM -" .. g .. " 2>/dev/null")
    if not H.wait_for(function() return not H.execute("kill -0 -" .. g .. " 2>/dev/null") end, 2, 0.01) then
      os.execute("kill -KILL -" .. g .. " 2>/dev/null")
    end
  end
  return h
end

-- Starts an echo server peer; returns the handle and its port.
local function peer_server(kind, args)
  local cmd
  if kind == "python" then
    cmd = PY .. " spec/fixtures/ws_peer.py server " .. args
  else
    ensure_node_ws()
    cmd = "NODE_PATH=" .. H.q(NPM_DIR .. "/node_modules") .. " node spec/fixtures/ws_peer.js server " .. args
  end
  local h = spawn(cmd)
  local port = H.wait_for(function() return tonumber(h.output():match("READY (%d+)")) end, 20)
  if not port then
    local out = h.output()
    h.stop()
    error(kind .. " server did not start:\n" .. out)
  end
  return h, port
end

local function peer_client(kind, url, args)
  local cmd
  if kind == "python" then
    cmd = PY .. " spec/fixtures/ws_peer.py client " .. H.q(url) .. " " .. args
  else
    ensure_node_ws()
    cmd = "NODE_PATH=" .. H.q(NPM_DIR .. "/node_modules") .. " node spec/fixtures/ws_peer.js client "
      .. H.q(url) .. " " .. args
  end
  return spawn(cmd)
end

-- Pumps tls.poll() (and extra) until done() or the bound.
local function pump(done, seconds, extra)
  local deadline = core._now() + (seconds or 10) * H.SLOW
  while core._now() < deadline do
    tls.poll()
    if extra then extra() end
    if done() then return true end
    core._wait({}, {}, 0.002)
  end
  return done()
end

-- Our WebSocketPeer as the client of an echo server: text, binary, a ping
-- from the server answered, then the server's close.
local function client_scenario(url, o)
  local ws = WS.new()
  ws:set_compression_enabled(o.compression or false)
  if o.protocols then ws:set_supported_protocols(o.protocols) end
  ws:set_handshake_headers { "X-Tlspeer-Spec: 30" }
  ws:set_inbound_buffer_size(1048576)
  ws:set_outbound_buffer_size(1048576)
  assert(ws:connect_to_url(url, o.tls_options))
  assert.equal(WS.STATE_CONNECTING, ws:get_ready_state())
  assert.equal(url, ws:get_requested_url())
  H.wait_for(function() ws:poll(); return ws:get_ready_state() ~= WS.STATE_CONNECTING end, 10)
  assert.equal(WS.STATE_OPEN, ws:get_ready_state(), tostring(ws:get_error()))
  assert.equal("127.0.0.1", ws:get_connected_host())
  assert.is_true(ws:get_connected_port() > 0)
  local text = ("héllo wörld ✓ "):rep(700)
  local blob = H.bytes(300000, 7)
  assert(ws:send_text(text))
  assert(ws:put_packet(blob))
  assert(ws:send("", WS.WRITE_MODE_BINARY))
  assert(ws:send("ping", WS.WRITE_MODE_TEXT))
  assert.is_true(ws:get_current_outbound_buffered_amount() > 0)
  local got = {}
  H.wait_for(function()
    ws:poll()
    while ws:get_available_packet_count() > 0 do
      got[#got + 1] = { ws:get_packet(), ws:was_string_packet() }
    end
    return #got >= 4 or ws:get_ready_state() == WS.STATE_CLOSED
  end, 20)
  assert.equal(4, #got, tostring(ws:get_error()))
  assert.equal(text, got[1][1]); assert.is_true(got[1][2])
  assert.is_true(got[2][1] == blob); assert.is_false(got[2][2])
  assert.equal("", got[3][1]); assert.is_false(got[3][2])
  assert.equal("pong received", got[4][1]); assert.is_true(got[4][2])
  assert.equal(0, ws:get_current_outbound_buffered_amount())
  assert(ws:send_text("bye"))
  H.wait_for(function() ws:poll(); return ws:get_ready_state() == WS.STATE_CLOSED end, 10)
  assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
  return ws
end

-- Our server (tls.ws_listen) and a peer's client: echo, "bye" closes.
local function server_scenario(kind, secure, compression)
  local srv = assert(tls.ws_listen {
    port = 0, bind = "127.0.0.1", compression = compression, protocols = { "chat", "superchat" },
    certificate = secure and CERTS .. "server.crt" or nil, key = secure and CERTS .. "server.key" or nil,
    inbound_buffer_size = 1048576, outbound_buffer_size = 1048576,
  })
  local closed, ext
  srv:on("connection_established", function(conn)
    ext = conn:get_peer():get_handshake_header("Sec-WebSocket-Extensions")
  end)
  srv:on("message_received", function(conn, msg, is_string)
    if msg == "bye" then return conn:close(4001, "bye from tlspeer") end
    assert(conn:send(msg, is_string and WS.WRITE_MODE_TEXT or WS.WRITE_MODE_BINARY))
  end)
  srv:on("disconnected", function(conn, code, reason) closed = { code, reason } end)
  local url = ("%s://localhost:%d/echo"):format(secure and "wss" or "ws", srv:get_local_port())
  local args = "--protocols v9,superchat" .. (compression and " --compression" or "")
    .. (secure and (" --ca " .. CERTS .. "ca.crt") or "")
  local c = peer_client(kind, url, args)
  local ok, err = pcall(function()
    assert.is_true(pump(function() return c.output():find("RESULT") and closed end, 30), c.output())
    local out = c.output()
    assert.matches("RESULT ok protocol=superchat ", out, 1, true)
    assert.matches("close=4001 reason=bye from tlspeer", out, 1, true)
    if compression then
      assert.matches("ext=permessage-deflate", out, 1, true)
      assert.matches("permessage-deflate", ext, 1, true)
    end
    assert.same({ 4001, "bye from tlspeer" }, closed)
  end)
  c.stop()
  srv:stop()
  if not ok then error(err, 0) end
end

describe("WebSocket against real peers", function()
  setup(ensure_certs)
  teardown(H.cleanup)

  local ca
  before_each(function()
    if not ca then
      ca = tls.X509Certificate.new()
      assert(ca:load(CERTS .. "ca.crt"))
    end
  end)

  for _, kind in ipairs { "python", "node" } do
    for _, secure in ipairs { false, true } do
      for _, compression in ipairs { false, true } do
        local label = ("%s %s%s"):format(kind, secure and "wss" or "ws",
          compression and " with permessage-deflate" or "")

        it("our client, " .. label .. " server", function()
          local args = "--protocols superchat,chat" .. (compression and " --compression" or "")
            .. (secure and (" --tls " .. CERTS .. "server.crt " .. CERTS .. "server.key") or "")
          local h, port = peer_server(kind, args)
          local ok, err = pcall(function()
            local url = ("%s://localhost:%d/echo?x=1"):format(secure and "wss" or "ws", port)
            local ws = client_scenario(url, {
              compression = compression, protocols = { "chat", "superchat" },
              tls_options = secure and tls.TLSOptions.client(ca) or nil,
            })
            assert.equal(kind == "python" and 4001 or 4002, ws:get_close_code())
            assert.equal("bye from " .. kind, ws:get_close_reason())
            -- the server picks by its own list or the client's order
            assert.truthy(ws:get_selected_protocol() == "chat" or ws:get_selected_protocol() == "superchat")
            local ext = ws:get_handshake_header("sec-websocket-extensions")
            if compression then assert.matches("permessage%-deflate", ext) else assert.is_nil(ext) end
          end)
          h.stop()
          if not ok then error(err, 0) end
        end)

        it("our server, " .. label .. " client", function()
          server_scenario(kind, secure, compression)
        end)
      end
    end
  end

  it("verifies the server's certificate by default: a wss:// server with an untrusted certificate fails", function()
    local h, port = peer_server("python", "--tls " .. CERTS .. "server.crt " .. CERTS .. "server.key")
    local ok, err = pcall(function()
      local ws = WS.new()
      assert(ws:connect_to_url(("wss://localhost:%d/"):format(port)))   -- the system's CAs
      H.wait_for(function() ws:poll(); return ws:get_ready_state() ~= WS.STATE_CONNECTING end, 10)
      assert.equal(WS.STATE_CLOSED, ws:get_ready_state())
      assert.equal(-1, ws:get_close_code())
      local msg = ws:get_error()
      assert.truthy(msg and #msg > 0)
    end)
    h.stop()
    if not ok then error(err, 0) end
  end)

  it("Chromium (headless) opens wss:// to a tlspeer server from a page, with permessage-deflate", function()
    assert.truthy(H.exists("/usr/bin/chromium"), "chromium is not installed (scripts/deps.sh)")
    local srv = assert(tls.ws_listen {
      port = 0, bind = "127.0.0.1", certificate = CERTS .. "server.crt", key = CERTS .. "server.key",
      compression = true, protocols = { "chat" },
    })
    local report, closed, origin
    srv:on("connection_established", function(conn)
      origin = conn:get_peer():get_handshake_header("Origin")
    end)
    srv:on("message_received", function(conn, msg, is_string)
      if is_string and msg:match("^binary ok") then
        report = msg
        return conn:send_text("bye")
      end
      conn:send(msg, is_string and WS.WRITE_MODE_TEXT or WS.WRITE_MODE_BINARY)
    end)
    srv:on("disconnected", function(conn, code, reason) closed = { code, reason } end)
    local dir = H.tmpdir()
    local page = dir .. "/page.html"
    H.write(page, ([[<!doctype html><meta charset="utf-8"><title>ws</title><script>
const ws = new WebSocket("wss://localhost:%d/chromium", ["chat"]);
ws.binaryType = "arraybuffer";
const hello = "hello from chromium \u2713";
ws.onopen = () => ws.send(hello);
ws.onmessage = (e) => {
  if (e.data === hello) ws.send(new Uint8Array([1, 2, 3, 250]).buffer);
  else if (e.data instanceof ArrayBuffer) {
    const a = new Uint8Array(e.data);
    ws.send("binary ok " + a.join(",") + " ext=" + ws.extensions + " proto=" + ws.protocol);
  } else if (e.data === "bye") ws.close(1000, "page done");
};
</script>]]):format(srv:get_local_port()))
    local spki, b64 = H.run("openssl x509 -in " .. CERTS .. "server.crt -pubkey -noout | openssl pkey -pubin -outform der"
      .. " | openssl dgst -sha256 -binary | base64")
    assert.truthy(spki)
    b64 = b64:gsub("%s+", "")
    local chrome = spawn(("chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      .. "--disable-background-networking --disable-component-update --disable-sync "
      .. "--user-data-dir=%s --ignore-certificate-errors-spki-list=%s file://%s")
      :format(H.q(dir .. "/profile"), b64, H.q(page)))
    local ok, err = pcall(function()
      assert.is_true(pump(function() return closed ~= nil end, 60), "chromium: " .. chrome.output())
      assert.equal("binary ok 1,2,3,250 ext=permessage-deflate proto=chat",
        (report:gsub("ext=permessage%-deflate[^ ]*", "ext=permessage-deflate")))
      assert.same({ 1000, "page done" }, closed)
      assert.equal("null", origin)            -- a file:// page's Origin
    end)
    chrome.stop()
    srv:stop()
    if not ok then error(err, 0) end
  end)
end)
