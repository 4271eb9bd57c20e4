-- Servers for the HTTPRequest and proxy specs (27, 28): python3-httpbin
-- under gunicorn over TLS, tinyproxy, and crafted servers in this process
-- (misbehaving on purpose: truncated gzip, bombs, proxies answering 407).
-- Each starts on a free loopback port; stop() is idempotent: call it in a
-- finally / teardown.
local H = require "helpers"
local tls = H.tls

local D = {}

-- Whether something listens on TCP 127.0.0.1:port (Linux /proc).
local function listening(port)
  local f = io.open("/proc/net/tcp", "r")
  if not f then return false end
  local want = ("0100007F:%04X"):format(port)
  for line in f:lines() do
    local laddr, st = line:match("^%s*%d+:%s+(%x+:%x+)%s+%x+:%x+%s+(%x+)")
    if laddr == want and st == "0A" then f:close(); return true end
  end
  f:close()
  return false
end

-- Starts `cmd` (a shell command with %d for the port) in a process group
-- of its own on a free port, its output in a file; waits until the port
-- listens.  Returns { port, pgid, output(), stop() }.
local function spawn(name, cmd, seconds, fixed_port)
  local dir = H.tmpdir()
  local last
  for _ = 1, fixed_port and 1 or 5 do
    local port = fixed_port or H.free_port()
    local out = dir .. "/out"
    H.write(out, "")
    local p = assert(io.popen(("setsid sh -c %s </dev/null >%s 2>&1 & echo $!")
      :format(H.q("exec " .. cmd:format(port)), H.q(out))))
    local pid = tonumber(p:read("*l"))
    p:close()
    assert(pid, "could not start " .. name)
    local h = { port = port, pgid = pid, dir = dir }
    function h.output() return H.read(out) end
    function h.alive() return H.execute("kill -0 " .. pid .. " 2>/dev/null") end
    function h.stop()
      if not h.pgid then return end
      local g = h.pgid
      h.pgid = nil
      os.execute("kill -TERM -" .. g .. " 2>/dev/null")
      if not H.wait_for(function()
        return not H.execute("kill -0 -" .. g .. " 2>/dev/null")
      end, 3, 0.01) then
        os.execute("kill -KILL -" .. g .. " 2>/dev/null")
      end
    end
    local up = H.wait_for(function() return listening(port) or not h.alive() end,
      seconds or 20, 0.02)
    if up and h.alive() and listening(port) then return h end
    last = h.output()
    h.stop()
    if not last:match("in use") then break end
  end
  error(name .. " did not start:\n" .. tostring(last))
end

-- python3-httpbin under gunicorn (Debian's), over TLS with the dev
-- certificates (trusted through certs/ca.crt), threads for concurrent
-- requests.  h.url(path) -> "https://127.0.0.1:PORT" .. path.
function D.httpbin()
  local cwd = assert(os.getenv("PWD"))
  local h = spawn("gunicorn (httpbin)", "/usr/bin/python3 /usr/bin/gunicorn -k gthread --threads 16"
    .. " --certfile " .. H.q(cwd .. "/certs/server.crt") .. " --keyfile "
    .. H.q(cwd .. "/certs/server.key") .. " --timeout 60 -b 127.0.0.1:%d httpbin:app", 30)
  function h.url(path) return ("https://127.0.0.1:%d%s"):format(h.port, path or "/") end
  return h
end

-- tinyproxy (Debian's) in the foreground, allowing loopback clients and
-- every port (no ConnectPort line); `extra` lines go into its
-- configuration (e.g. "BasicAuth user pass").  h.log() is its log.
function D.tinyproxy(extra)
  local dir = H.tmpdir()
  local conf = dir .. "/tinyproxy.conf"
  local last
  for _ = 1, 5 do
    local port = H.free_port()
    H.write(conf, table.concat({
      "Port " .. port, "Listen 127.0.0.1", "Timeout 30", "MaxClients 64",
      "Allow 127.0.0.1", "LogLevel Connect", "DisableViaHeader Yes", extra or "",
    }, "\n") .. "\n")
    local ok, h = pcall(spawn, "tinyproxy", "/usr/bin/tinyproxy -d -c " .. H.q(conf), 10, port)
    if ok then
      h.log = h.output
      return h
    end
    last = h
  end
  error("tinyproxy did not start: " .. tostring(last))
end

-- A crafted server in this process, on a free loopback port: for each
-- request it reads (the head, and a body of its Content-Length) it writes
-- respond(request, n) (n counts requests; nil: never answers), then closes
-- the connection unless respond's second result is true.  respond may
-- also return a function: it is called with the connection's peer at each
-- step, for servers that do more than answer (proxies, slow writers).
-- opts.tls: server TLSOptions (it speaks TLS); opts.write_step: bytes per
-- step (64 KiB).  s.step() is one non-blocking step (call it from the
-- client's poll loop); s.requests the requests read; s.connections how
-- many arrived; s.closed how many the peer closed; s.stop().
function D.crafted(respond, opts)
  opts = opts or {}
  if type(respond) == "string" then
    local response = respond
    respond = function() return response end
  end
  local srv = tls.TCPServer.new()
  assert(srv:listen(0, "127.0.0.1"))
  local step_bytes = opts.write_step or 65536
  local s = { port = srv:get_local_port(), conns = {}, requests = {}, connections = 0 }
  local function close(c)
    if c.done then return end
    c.done = true
    if c.peer ~= c.tcp then pcall(c.peer.disconnect_from_stream, c.peer) end
    pcall(c.tcp.disconnect_from_host, c.tcp)
  end
  s.close = close
  function s.step()
    while srv:is_listening() and srv:is_connection_available() do
      local tcp = srv:take_connection()
      local c = { tcp = tcp, peer = tcp, buf = "" }
      if opts.tls then
        c.peer = tls.StreamPeerTLS.new()
        assert(c.peer:accept_stream(tcp, opts.tls))
      end
      s.connections = s.connections + 1
      s.conns[#s.conns + 1] = c
    end
    for _, c in ipairs(s.conns) do
      if not c.done then
        c.peer:poll()
        local st = c.peer:get_status()
        if st ~= 2 then                         -- CONNECTED for TCP and TLS
          if not (opts.tls and st == tls.StreamPeerTLS.STATUS_HANDSHAKING) then close(c) end
        elseif c.custom then
          if c.custom(c.peer, c) == false then close(c) end
        elseif c.out then
          if c.pos <= #c.out then
            local n = c.peer:put_partial_data(c.out:sub(c.pos, c.pos + step_bytes - 1))
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
            c.buf = c.buf .. d
            local e = c.buf:find("\r\n\r\n", 1, true)
            if e then
              local head = c.buf:sub(1, e + 3)
              local len = tonumber(head:lower():match("\r\ncontent%-length:%s*(%d+)") or "0")
              if #c.buf >= e + 3 + len then
                local req = c.buf:sub(1, e + 3 + len)
                c.buf = c.buf:sub(e + 4 + len)
                s.requests[#s.requests + 1] = req
                local response, keep = respond(req, #s.requests, c)
                if type(response) == "function" then
                  c.custom = response
                elseif response then
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
  end
  function s.stop()
    for _, c in ipairs(s.conns) do close(c) end
    if srv:is_listening() then srv:stop() end
  end
  function s.url(path, scheme)
    return ("%s://127.0.0.1:%d%s"):format(scheme or (opts.tls and "https" or "http"), s.port,
      path or "/")
  end
  return s
end

-- A crafted proxy: records each request head it gets (s.requests), and
-- answers `refuse(head)` when that returns a response (a 407, a 403...);
-- otherwise it serves CONNECT by opening the tunnel (200) and relaying
-- bytes both ways, and an absolute-form request by answering `answer`
-- (default: a 200 naming the request line).
function D.proxy(refuse, answer)
  return D.crafted(function(head)
    local refusal = refuse and refuse(head)
    if refusal then return refusal end
    local target = head:match("^CONNECT (%S+) HTTP/1%.1\r\n")
    if not target then
      local line = head:match("^([^\r\n]*)")
      return answer or D.response(200, "", "proxied: " .. line)
    end
    local host, port = target:match("^%[?(.-)%]?:(%d+)$")
    local up, pending_up, pending_down, ready = tls.StreamPeerTCP.new(), "", "", false
    assert(up:connect_to_host(host, tonumber(port)))
    return function(peer)
      up:poll()
      local st = up:get_status()
      if st == tls.StreamPeerTCP.STATUS_ERROR then return false end
      if st ~= tls.StreamPeerTCP.STATUS_CONNECTED then return true end
      if not ready then
        ready = true
        pending_down = "HTTP/1.1 200 Connection established\r\n\r\n"
      end
      local d = peer:get_partial_data(65536)
      if not d then up:disconnect_from_host(); return false end
      pending_up = pending_up .. d
      d = up:get_partial_data(65536)
      if not d and pending_down == "" then return false end
      pending_down = pending_down .. (d or "")
      if #pending_up > 0 then
        local n = up:put_partial_data(pending_up)
        if not n then return false end
        pending_up = pending_up:sub(n + 1)
      end
      if #pending_down > 0 then
        local n = peer:put_partial_data(pending_down)
        if not n then return false end
        pending_down = pending_down:sub(n + 1)
      end
      return true
    end
  end)
end

-- A response with a Content-Length.
function D.response(code, extra, body)
  body = body or ""
  return ("HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n%s"):format(code, extra or "", #body, body)
end

-- The value of header `name` in a raw request (case-insensitive), or nil.
function D.header(req, name)
  for line in req:gmatch("[^\r\n]+") do
    local n, v = line:match("^([^:]+):%s*(.-)%s*$")
    if n and n:lower() == name:lower() then return v end
  end
end

-- The server's TLSOptions (the dev certificates).
function D.server_tls()
  local key, cert = tls.CryptoKey.new(), tls.X509Certificate.new()
  assert(key:load("certs/server.key"))
  assert(cert:load("certs/server.crt"))
  return tls.TLSOptions.server(key, cert)
end

-- Client TLSOptions trusting the dev CA.
function D.client_tls()
  local ca = tls.X509Certificate.new()
  assert(ca:load("certs/ca.crt"))
  return tls.TLSOptions.client(ca)
end

-- Data compressed by zlib (core._zstream) in `format` ("gzip", "zlib",
-- "raw"), from a string or from a function called until it returns nil.
function D.compress(format, data)
  local z = require("tlspeer.core")._zstream("deflate", format, 9)
  if type(data) == "string" then return (assert(z:update(data, "finish"))) end
  local parts = {}
  while true do
    local piece = data()
    if not piece then break end
    parts[#parts + 1] = assert(z:update(piece))
  end
  parts[#parts + 1] = assert(z:update("", "finish"))
  return table.concat(parts)
end

-- Polls until done() (tls.poll() and each crafted server's step), at most
-- `seconds` (times H.SLOW); fails the spec with `what` on a hang.
function D.drive(done, servers, seconds, what)
  local deadline = H.now() + (seconds or 10) * H.SLOW
  while not done() do
    assert(H.now() < deadline, (what or "the request") .. " did not finish in time")
    tls.poll()
    for _, s in ipairs(servers or {}) do s.step() end
    H.sleep(0.0002)
  end
end

-- Runs `code` (a chunk that returns values) in a child H.LUA with this
-- process's paths and `env` (a map for H.lua_env style: value, or false to
-- unset), stepping `servers` meanwhile (the child may block in
-- tls.request); returns what the chunk returned, as strings ("nil" for
-- nil), one per line.
function D.in_child(code, servers, env, seconds)
  local dir = H.tmpdir()
  local script, out, rc = dir .. "/client.lua", dir .. "/out", dir .. "/rc"
  H.write(script, ("package.path = %q; package.cpath = %q\n"):format(package.path, package.cpath)
    .. "local tls = require 'tlspeer'\n"
    .. "local r = { (function() " .. code .. " end)() }\n"
    .. "for i = 1, 3 do io.write((tostring(r[i]):gsub('\\n', ' ')), '\\n') end\n")
  local envs = {}
  for k, v in pairs(env or {}) do
    envs[#envs + 1] = v == false and ("-u " .. H.q(k)) or H.q(k .. "=" .. tostring(v))
  end
  table.sort(envs, function(a, b) return (a:sub(1, 2) == "-u") and b:sub(1, 2) ~= "-u" or
    ((a:sub(1, 2) == "-u") == (b:sub(1, 2) == "-u") and a < b) end)
  local limit = (seconds or 20) * H.SLOW
  assert(H.execute(("(env %s timeout %d %s %s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s)"
    .. " </dev/null >/dev/null 2>&1 &"):format(table.concat(envs, " "), limit, H.LUA, H.q(script),
      H.q(out), H.q(rc), H.q(rc), H.q(rc))))
  local deadline = H.now() + limit + 5
  while not H.exists(rc) do
    assert(H.now() < deadline, "the child did not finish")
    for _, s in ipairs(servers or {}) do s.step() end
    H.sleep(0.001)
  end
  local text = H.read(out)
  assert(H.read(rc):match("^0"), "the child failed:\n" .. text)
  local lines = {}
  for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

return D
