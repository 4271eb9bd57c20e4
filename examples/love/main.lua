-- tlspeer inside a LÖVE 11 game (LuaJIT): an HTTPS request with HTTPClient,
-- the same with HTTPRequest (one object, one event), messages to a TLS
-- echo server and to a WebSocket (wss://) echo with WebSocketPeer, all
-- advanced from love.update, once per frame, never
-- holding the frame; the status is drawn on screen.
--
--   make LUA=luajit && love examples/love
--
-- By default it talks to the servers of `lua5.4 examples/echo_server.lua`
-- (a TLS echo on 8443, HTTPS on 8444 and a WebSocket echo on 8445, with
-- the dev certificates of `make certs`).  Environment, for other servers
-- and for CI:
--   TLSPEER_LOVE_URL    the HTTPS URL to GET (https://localhost:8444/)
--   TLSPEER_LOVE_ECHO   host:port of the TLS echo server (localhost:8443)
--   TLSPEER_LOVE_WS     the WebSocket echo's URL (wss://localhost:8445/game)
--   TLSPEER_LOVE_CA     the CA to trust (certs/ca.crt of the checkout)
--   TLSPEER_LOVE_EXIT   quit when both are done, exit code 0 = all good
--   TLSPEER_LOVE_SHOT   a PNG file to save the last frame to, before quitting
--   TLSPEER_LOVE_NOWINDOW  run without a window (conf.lua)
--   TLSPEER_ROOT, TLSPEER_BUILD   where lua/ and the LuaJIT core.so are
--
-- Shipping a game: LÖVE's require finds Lua files inside the game (put
-- lua/tlspeer/*.lua at tlspeer/*.lua in the .love), but loads C modules
-- only from real files: put core.so (built with `make LUA=luajit`, for the
-- player's platform) at tlspeer/core.so in the save directory or next to
-- the executable of a fused game, or set package.cpath as below.

-- Where tlspeer is: this checkout by default.
local root = os.getenv("TLSPEER_ROOT") or (love.filesystem.getSource() .. "/../..")
package.path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. package.path
package.cpath = (os.getenv("TLSPEER_BUILD") or (root .. "/build-luajit")) .. "/?.so;"
  .. package.cpath

local tls = require "tlspeer"
local HTTPClient = tls.HTTPClient

local URL = os.getenv("TLSPEER_LOVE_URL") or "https://localhost:8444/"
local ECHO = os.getenv("TLSPEER_LOVE_ECHO") or "localhost:8443"
local WS_URL = os.getenv("TLSPEER_LOVE_WS") or "wss://localhost:8445/game"
local WebSocketPeer = tls.WebSocketPeer
local CA = os.getenv("TLSPEER_LOVE_CA") or (root .. "/certs/ca.crt")
local EXIT = os.getenv("TLSPEER_LOVE_EXIT") ~= nil
local SHOT = os.getenv("TLSPEER_LOVE_SHOT")
local MESSAGES = { "hello from LÖVE", "frame-driven TLS", "bye" }
local TIMEOUT = 20

local lines = {}                 -- what love.draw shows
local function say(key, text)
  if not lines[key] then lines[#lines + 1] = key end
  lines[key] = text
  print(("[love] %s: %s"):format(key, text))
end

local trusted, http, echo, request
local http_state = { done = false, ok = false, body = {} }
local request_state = { done = false, ok = false }
local echo_state = { done = false, ok = false, sent = 0, got = "" }
local ws
local ws_state = { done = false, ok = false, sent = 0 }
local started, frames, longest = 0, 0, 0

function love.load()
  say("runtime", ("%s, %s, tlspeer on mbedtls %s"):format(jit and jit.version or _VERSION,
    love.getVersion and ("LÖVE " .. table.concat({ love.getVersion() }, ".", 1, 3)) or "LÖVE",
    tls.mbedtls_version))
  trusted = tls.X509Certificate.new()
  local ok, msg = trusted:load(CA)
  if not ok then say("error", msg) end
  started = love.timer.getTime()

  -- HTTPS with Godot's HTTPClient: connect now, the rest in love.update.
  local scheme, host, port, path = HTTPClient.parse_url(URL)
  http = HTTPClient.new()
  http_state.path = path
  local connected, err = http:connect_to_host(host, port, tls.TLSOptions.client(trusted))
  say("https", connected and ("connecting to " .. URL) or ("failed: " .. tostring(err)))
  if not connected then http_state.done = true end

  -- The same HTTPS request with Godot's HTTPRequest: redirects, gzip and
  -- the timeout are its business; tls.poll() in love.update advances it,
  -- and the result comes as one event.
  request = tls.HTTPRequest.new()
  request:set_tls_options(tls.TLSOptions.client(trusted))
  request:set_timeout(TIMEOUT)
  request:on("request_completed", function(result, code, headers, body)
    request_state.done = true
    if result ~= tls.HTTPRequest.RESULT_SUCCESS then
      say("httprequest", "failed: " .. tostring((request:get_error())))
      return
    end
    request_state.ok = code == 200
    say("httprequest", ("%d, %d bytes, %d headers: %s"):format(code, #body, #headers,
      (body:gsub("%s+$", ""):sub(1, 40))))
  end)
  local requested, rerr = request:request(URL, { "Accept: */*" })
  say("httprequest", requested and ("requesting " .. URL) or ("failed: " .. tostring(rerr)))
  if not requested then request_state.done = true end

  -- The TLS echo with tls.connect: events run inside echo:poll().
  local ehost, eport = ECHO:match("^(.-):(%d+)$")
  echo = tls.connect { host = ehost, port = tonumber(eport), trusted = trusted }
  say("echo", "connecting to " .. ECHO)
  echo:on("connection_established", function()
    say("echo", "connected (" .. echo:get_peer():get_tls_version() .. "), sending")
    echo_state.sent = 1
    echo:send(MESSAGES[1] .. "\n")
  end)
  echo:on("data_received", function(data)
    echo_state.got = echo_state.got .. data
    local wanted = table.concat(MESSAGES, "\n", 1, echo_state.sent) .. "\n"
    if echo_state.got == wanted then
      say("echo", ("%d/%d messages echoed"):format(echo_state.sent, #MESSAGES))
      if echo_state.sent < #MESSAGES then
        echo_state.sent = echo_state.sent + 1
        echo:send(MESSAGES[echo_state.sent] .. "\n")
      else
        echo_state.ok, echo_state.done = true, true
        echo:close()
      end
    end
  end)
  echo:on("connection_failed", function(m)
    say("echo", "failed: " .. tostring(m))
    echo_state.done = true
  end)

  -- A WebSocket with Godot's WebSocketPeer: connect_to_url returns at once,
  -- love.update polls it.
  ws = WebSocketPeer.new()
  local wok, werr = ws:connect_to_url(WS_URL, tls.TLSOptions.client(trusted))
  say("websocket", wok and ("connecting to " .. WS_URL) or ("failed: " .. tostring(werr)))
  if not wok then ws_state.done = true end
end

-- The WebSocket, once per frame: send a message, wait for its echo, next;
-- then the closing handshake.
local function step_ws()
  ws:poll()
  local state = ws:get_ready_state()
  if state == WebSocketPeer.STATE_OPEN then
    if ws_state.sent == 0 then
      say("websocket", "open (" .. ws:get_stream():get_tls_version() .. "), sending")
      ws_state.sent = 1
      ws:send_text(MESSAGES[1])
    end
    while ws:get_available_packet_count() > 0 do
      local msg = ws:get_packet()
      if msg == MESSAGES[ws_state.sent] and ws:was_string_packet() then
        say("websocket", ("%d/%d messages echoed"):format(ws_state.sent, #MESSAGES))
        if ws_state.sent < #MESSAGES then
          ws_state.sent = ws_state.sent + 1
          ws:send_text(MESSAGES[ws_state.sent])
        else
          ws_state.ok = true
          ws:close(1000, "game over")
        end
      end
    end
  elseif state == WebSocketPeer.STATE_CLOSED then
    if not ws_state.ok then
      say("websocket", "failed: " .. tostring((ws:get_error())) .. ", close code " .. ws:get_close_code())
    end
    ws_state.done = true
  end
end

local function step_http()
  local st = http:get_status()
  if st == HTTPClient.STATUS_CONNECTED and not http_state.requested then
    http_state.requested = true
    http:request(HTTPClient.METHOD_GET, http_state.path, { "Accept: */*" })
    say("https", "requested " .. http_state.path)
  elseif st == HTTPClient.STATUS_BODY then
    local chunk = http:read_response_body_chunk()
    if #chunk > 0 then http_state.body[#http_state.body + 1] = chunk end
  elseif http_state.requested and st == HTTPClient.STATUS_CONNECTED
      or st == HTTPClient.STATUS_DISCONNECTED and http_state.requested then
    local body = table.concat(http_state.body)
    http_state.ok = http:get_response_code() == 200
    say("https", ("%d, %d bytes: %s"):format(http:get_response_code(), #body,
      (body:gsub("%s+$", ""):sub(1, 40))))
    http_state.done = true
    http:close()
    return
  elseif st ~= HTTPClient.STATUS_RESOLVING and st ~= HTTPClient.STATUS_CONNECTING
      and st ~= HTTPClient.STATUS_REQUESTING and st ~= HTTPClient.STATUS_CONNECTED then
    say("https", "failed: " .. tostring((http:get_error())))
    http_state.done = true
    return
  end
  http:poll()
end

-- Quits after one more frame is drawn (and saved to TLSPEER_LOVE_SHOT).
local quit_code, quitting
local function quit(code)
  quit_code = code
end

local function finish()
  if SHOT and love.graphics then
    love.graphics.captureScreenshot(function(image)
      local f = io.open(SHOT, "wb")
      if f then f:write(image:encode("png"):getString()); f:close() end
      love.event.quit(quit_code)
    end)
  else
    love.event.quit(quit_code)
  end
end

function love.update(dt)
  if quit_code then
    if not quitting then quitting = true; finish() end
    return
  end
  local t0 = love.timer.getTime()
  if not http_state.done then step_http() end
  if not echo_state.done then echo:poll() end
  if not ws_state.done then step_ws() end
  tls.poll()              -- one short step of every HTTPRequest (and helper object)
  local spent = love.timer.getTime() - t0
  frames = frames + 1
  if spent > longest then longest = spent end
  if http_state.done and echo_state.done and request_state.done and ws_state.done and not lines.result then
    local ok = http_state.ok and echo_state.ok and request_state.ok and ws_state.ok
    say("frames", ("%d frames, the longest tlspeer work in one frame %.2f ms")
      :format(frames, longest * 1000))
    say("result", ok and "OK" or "FAILED")
    if EXIT then quit(ok and 0 or 1) end
  elseif love.timer.getTime() - started > TIMEOUT and not lines.result then
    say("result", ("FAILED: not done within %d s"):format(TIMEOUT))
    if EXIT then quit(1) end
  end
end

function love.draw()
  local y = 20
  for _, key in ipairs(lines) do
    love.graphics.print(key .. ": " .. lines[key], 20, y)
    y = y + 22
  end
end
