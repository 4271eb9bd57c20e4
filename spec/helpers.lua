-- Shared helpers for tlspeer's specs: temporary folders, files, hex, and
-- running the real `openssl` command.
local H = {}

H.tls = require "tlspeer"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.q = shell_quote

-- ---------------------------------------------------------------------
-- The same specs run on Lua 5.1, 5.2, 5.3, 5.4 and LuaJIT 2.1: what
-- differs between them, in one place.

-- Whether numbers have a 64-bit integer subtype (5.3, 5.4).  Without it
-- (5.1, 5.2, LuaJIT) every number is a double: integers are exact up to
-- 2^53, and get_64/get_u64 return such a number (API.md, Lua runtimes).
H.INT64 = (math.type ~= nil)

-- The command that starts the interpreter under test, for every Lua
-- subprocess a spec runs: $TLSPEER_LUA (the Makefile sets it), else the
-- Debian name of the running one ("lua5.1" ... "lua5.4", "luajit").
H.LUA = os.getenv("TLSPEER_LUA")
if not H.LUA or H.LUA == "" then
  H.LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
end

-- table.unpack (5.2+) / unpack (5.1, LuaJIT); table.pack (5.2+).
H.unpack = table.unpack or unpack
function H.pack(...)
  return { n = select("#", ...), ... }
end

-- Compiles a chunk of source text (5.1's load takes only a function):
-- returns the function, or nil and the message.
function H.load_string(code, name)
  return (loadstring or load)(code, name)
end

-- Whether v is a number that the running Lua holds as an integer: of the
-- integer subtype on 5.3+, a whole finite double elsewhere.
function H.is_integer(v)
  if H.INT64 then return math.type(v) == "integer" end
  return type(v) == "number" and v == math.floor(v) and v - v == 0
end

-- math.tointeger for a number or nil: v as an integer when it has an
-- integral value, else nil (5.1, 5.2: the whole double itself).
function H.tointeger(v)
  if type(v) ~= "number" then return nil end
  if H.INT64 then return math.tointeger(v) end
  if v == math.floor(v) and v - v == 0 then return v end
  return nil
end

-- Bitwise xor of two integers in 0 .. 2^32 - 1 (no `~` before 5.3).
function H.bxor(a, b)
  local r, bit = 0, 1
  while a > 0 or b > 0 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + bit end
    a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
  end
  return r
end

-- Unsigned integers as bytes (string.pack ">I2", ">I4", "<I2", "<I4"; a
-- value out of range raises, as there), and back (string.unpack ">I4" at
-- position i, default 1).
local function byte_at(n, shift) return math.floor(n / shift) % 256 end
local function unsigned(n, limit)
  if type(n) ~= "number" or n < 0 or n >= limit or n ~= math.floor(n) then
    error(("%s does not fit in %d bytes"):format(tostring(n), limit == 65536 and 2 or 4), 3)
  end
  return n
end
function H.u16be(n) n = unsigned(n, 65536); return string.char(byte_at(n, 256), n % 256) end
function H.u16le(n) n = unsigned(n, 65536); return string.char(n % 256, byte_at(n, 256)) end
function H.u32be(n)
  n = unsigned(n, 4294967296)
  return string.char(byte_at(n, 16777216), byte_at(n, 65536), byte_at(n, 256), n % 256)
end
function H.u32le(n)
  n = unsigned(n, 4294967296)
  return string.char(n % 256, byte_at(n, 256), byte_at(n, 65536), byte_at(n, 16777216))
end
function H.read_u32be(s, i)
  local a, b, c, d = s:byte(i or 1, (i or 1) + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- A TLS record header: content type, version 3.minor, a 16-bit length
-- (string.pack(">BBBI2", ctype, 3, minor, len)).
function H.record_header(ctype, minor, len)
  return string.char(ctype, 3, minor) .. H.u16be(len)
end

-- x rounded to single precision, as a float put and got back gives it
-- (string.unpack("f", string.pack("f", x))): round to nearest, ties to
-- even, subnormals below 2^-126, infinity past the largest float.
local FLT_MAX = 3.4028234663852886e38
function H.f32(x)
  if x ~= x or x == 0 or x == math.huge or x == -math.huge then return x * 1.0 end
  local sign, a = 1, x
  if x < 0 then sign, a = -1, -x end
  local e = math.floor(math.log(a) / math.log(2))
  if 2 ^ e > a then e = e - 1 elseif 2 ^ (e + 1) <= a then e = e + 1 end
  if e < -126 then e = -126 end
  local quantum = 2 ^ (e - 23)                   -- 24 significant bits
  local m = a / quantum
  local r = math.floor(m)
  if m - r > 0.5 or (m - r == 0.5 and r % 2 == 1) then r = r + 1 end
  local v = r * quantum                          -- a float, also when 0
  if v > FLT_MAX then return sign * math.huge end
  return sign * v
end

-- Negative zero, made at run time: Lua 5.1 folds a `-0.0` literal into
-- the function's constant 0 when both appear.
H.NEG_ZERO = -1 / math.huge

-- Runs a shell command; returns ok (it exited with 0), combined output.
-- (The exit status travels at the end of the output: 5.1 and LuaJIT's
-- popen close() does not give it.)
function H.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; printf '\\001rc=%d' \"$?\""))
  local out = p:read("*a")
  p:close()
  local body, rc = out:match("^(.*)\1rc=(%d+)$")
  if not body then return false, out end
  return rc == "0", body
end

-- os.execute(cmd) as a boolean: whether it exited with 0 (5.1 and LuaJIT
-- return the wait status, 5.2+ true or nil, "exit", code).
function H.execute(cmd)
  local r = os.execute(cmd)
  if type(r) == "number" then return r == 0 end
  return r == true
end

-- Runs `openssl <args>`; fails the spec (with openssl's output) unless it
-- succeeds.  Returns the output.
function H.openssl(args)
  local ok, out = H.run("openssl " .. args)
  assert(ok, "openssl " .. args .. " failed:\n" .. out)
  return out
end

-- Same, but returns ok, output instead of failing.
function H.try_openssl(args)
  return H.run("openssl " .. args)
end

-- A fresh temporary folder, removed by H.cleanup().
local made = {}
function H.tmpdir()
  local p = assert(io.popen("mktemp -d /tmp/tlspeer-spec.XXXXXX"))
  local dir = p:read("*l")
  p:close()
  made[#made + 1] = dir
  return dir
end

function H.cleanup()
  for i = #made, 1, -1 do
    os.execute("rm -rf " .. shell_quote(made[i]))
    made[i] = nil
  end
end

function H.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function H.write(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
  return path
end

function H.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- File mode as an octal string ("600"), via stat(1).
function H.mode(path)
  local ok, out = H.run("stat -c %a " .. shell_quote(path))
  assert(ok, out)
  return (out:gsub("%s+$", ""))
end

function H.hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

function H.unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Deterministic pseudo-random bytes of length n (for test inputs), the
-- same on every runtime: x * 1103515245 is taken in two halves
-- (1103515245 = 16838 * 2^16 + 20077), so no product passes 2^53.
function H.bytes(n, seed)
  local t, x = {}, seed or 12345
  for i = 1, n do
    x = ((x * 16838) % 32768 * 65536 + x * 20077 + 12345) % 2147483648
    t[i] = string.char(x % 256)
  end
  return table.concat(t)
end

-- One Crypto object for a spec file.
function H.crypto()
  return H.tls.Crypto.new()
end

-- ---------------------------------------------------------------------
-- Added for the X509 and misuse specs.

-- An OpenSSL date ("Jan  1 00:00:00 2014 GMT") as "YYYYMMDDhhmmss".
local months = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6,
                 Jul = 7, Aug = 8, Sep = 9, Oct = 10, Nov = 11, Dec = 12 }
function H.openssl_time(s)
  local mon, d, hh, mm, ss, y =
    s:match("(%a%a%a)%s+(%d+)%s+(%d+):(%d+):(%d+)%s+(%d+)%s+GMT")
  assert(mon and months[mon], "not an OpenSSL date: " .. tostring(s))
  return ("%04d%02d%02d%02d%02d%02d"):format(tonumber(y), months[mon],
    tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss))
end

-- "AB:CD:EF" (OpenSSL's fingerprints and serials) as "abcdef".
function H.uncolon(s)
  return (s:gsub("[:%s]", ""):lower())
end

-- Runs a Lua chunk in a fresh interpreter of the runtime under test (H.LUA)
-- with the same package.path and package.cpath as this process; returns
-- ok, combined output.
function H.lua(code)
  local prelude = ("package.path = %q; package.cpath = %q")
    :format(package.path, package.cpath)
  return H.run(H.LUA .. " -e " .. shell_quote(prelude) .. " -e "
               .. shell_quote(code))
end


-- ---------------------------------------------------------------------
-- Added for the TCP and TLS client specs: clocks, bounded waits, free
-- ports, and `openssl s_server` in the background.

local system = require "system"     -- luasystem (a dependency of busted)

-- Monotonic seconds, and a sleep that does not spin.
H.now = system.monotime
function H.sleep(seconds) system.sleep(seconds) end

-- How much slower the code under test runs: deadlines that only bound a
-- hang stretch by this much under memcheck (30x) and ASan (3x).
local sanitizer = os.getenv("TLSPEER_SANITIZER")
-- ThreadSanitizer's runtime is preloaded into this interpreter only: the
-- shells and tools the specs start crash with it (scripts/tsan.sh).
if sanitizer == "tsan" then require("spec_fork").unsetenv("LD_PRELOAD") end
H.SLOW = sanitizer == "valgrind" and 30 or sanitizer and 3 or 1

-- Calls fn() until it returns a true value or `timeout` seconds (default 5,
-- times H.SLOW) pass; returns that value, or nil on timeout.  Sleeps `step`
-- (default 1 ms) between calls, so a wait never spins and never hangs.
function H.wait_for(fn, timeout, step)
  local deadline = H.now() + (timeout or 5) * H.SLOW
  repeat
    local v = fn()
    if v then return v end
    H.sleep(step or 0.001)
  until H.now() > deadline
  return fn() or nil
end

-- Polls a StreamPeerTLS (and calls each extra function, e.g. to pump a
-- server side) until its status leaves HANDSHAKING or `timeout` seconds
-- (default 5) pass.  Returns the status.
function H.handshake(peer, timeout, ...)
  local extra = { ... }
  local HS = H.tls.StreamPeerTLS.STATUS_HANDSHAKING
  H.wait_for(function()
    peer:poll()
    for _, f in ipairs(extra) do f() end
    return peer:get_status() ~= HS
  end, timeout or 5)
  return peer:get_status()
end

-- Polls a StreamPeerTCP until it is no longer CONNECTING (bounded).
function H.connected(peer, timeout)
  local CONNECTING = H.tls.StreamPeerTCP.STATUS_CONNECTING
  H.wait_for(function()
    peer:poll()
    return peer:get_status() ~= CONNECTING
  end, timeout or 5)
  return peer:get_status()
end

-- A TCP port that was free a moment ago on `host` (default 127.0.0.1).
function H.free_port(host)
  local s = H.tls.TCPServer.new()
  assert(s:listen(0, host or "127.0.0.1"))
  local port = s:get_local_port()
  s:stop()
  return port
end

-- Whether a process is alive (not gone, not a zombie).
local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  return stat:match("^%d+ %b() (%a)") ~= "Z"
end

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

-- Kills a background process we started, by its pid: TERM, then KILL
-- when it is still there after a second.
function H.kill(pid)
  pid = tonumber(pid)
  if not pid or pid <= 1 then return end
  os.execute("kill -TERM " .. pid .. " 2>/dev/null")
  if H.wait_for(function() return not alive(pid) end, 1, 0.01) then return end
  os.execute("kill -KILL " .. pid .. " 2>/dev/null")
  H.wait_for(function() return not alive(pid) end, 1, 0.01)
end

-- Starts `openssl s_server -accept 127.0.0.1:PORT <args>` in the
-- background on a free port and waits (at most 5 s) until it listens.
-- Its standard input is a FIFO that never ends, so it can be fed with
-- handle:send(data) (what s_server reads there it sends to the client);
-- its output goes to a file (handle:output()).  Returns a handle with
-- port, pid, dir, output(), send(data), wait_output(pattern, timeout),
-- alive() and stop(); stop() is idempotent: call it in a finally.
function H.s_server(args)
  local dir = H.tmpdir()
  local fifo, out = dir .. "/stdin", dir .. "/out"
  assert(H.execute("mkfifo " .. shell_quote(fifo)))
  local last
  for _ = 1, 5 do
    local port = H.free_port()
    H.write(out, "")
    -- `0<>fifo` opens the FIFO read-write: it never reports EOF.
    local cmd = ("openssl s_server -accept 127.0.0.1:%d %s >%s 2>&1 0<>%s & echo $!")
      :format(port, args or "", shell_quote(out), shell_quote(fifo))
    local p = assert(io.popen(cmd))
    local pid = tonumber(p:read("*l"))
    p:close()
    assert(pid, "could not start openssl s_server")
    local h = { port = port, pid = pid, dir = dir }
    function h.output() return H.read(out) end
    function h.alive() return alive(pid) end
    function h.stop()
      if h.pid then H.kill(h.pid); h.pid = nil end
    end
    function h.send(data)
      local f = assert(io.open(fifo, "w"))
      f:write(data)
      f:close()
    end
    function h.wait_output(pattern, timeout)
      return H.wait_for(function()
        return H.read(out):match(pattern)
      end, timeout or 3, 0.005)
    end
    local up = H.wait_for(function()
      return listening(port) or not alive(pid)
    end, 5, 0.005)
    if up and alive(pid) and listening(port) then return h end
    last = h.output()
    h.stop()              -- the port was taken meanwhile, or it failed
    if not last:match("in use") then break end
  end
  error("openssl s_server " .. tostring(args) .. " did not start:\n" .. tostring(last))
end

-- ---------------------------------------------------------------------
-- Added for the TLS server and options/bundle specs: `openssl s_client`
-- in the background, and Lua subprocesses with a controlled environment.

-- Starts `openssl s_client <args>` in the background, in a process group
-- of its own.  Its standard input is the string `input` (then EOF: pass
-- -ign_eof so that it stays until the server closes), its output goes to
-- a file.  Returns a handle with output(), exit_code() (nil while it
-- runs), wait(timeout) -> exit code or nil (default 5 s), and stop(),
-- which kills the whole group and is idempotent: call it in a finally.
function H.s_client(args, input)
  local dir = H.tmpdir()
  local inp, out, rc, pidf = dir .. "/in", dir .. "/out", dir .. "/rc", dir .. "/pid"
  H.write(inp, input or "")
  H.write(out, "")
  local script = ("echo $$ >%s; openssl s_client %s <%s >%s 2>&1; echo $? >%s.tmp; mv %s.tmp %s")
    :format(shell_quote(pidf), args, shell_quote(inp), shell_quote(out),
            shell_quote(rc), shell_quote(rc), shell_quote(rc))
  assert(H.execute("setsid sh -c " .. shell_quote(script)
                    .. " </dev/null >/dev/null 2>&1 &"))
  local h = {}
  local pgid = H.wait_for(function()
    local f = io.open(pidf, "r")
    local v = f and tonumber(f:read("*a"))
    if f then f:close() end
    return v
  end, 5, 0.002)
  assert(pgid and pgid > 1, "could not start openssl s_client")
  h.pgid = pgid
  function h.output() return H.read(out) end
  function h.exit_code()
    local f = io.open(rc, "r")
    if not f then return nil end
    local v = tonumber(f:read("*a"))
    f:close()
    return v
  end
  function h.wait(timeout)
    return H.wait_for(h.exit_code, timeout or 5, 0.005)
  end
  function h.stop()
    if not h.pgid then return end
    local g = h.pgid
    h.pgid = nil
    if h.exit_code() then return end          -- finished: nothing left
    os.execute("kill -TERM -" .. g .. " 2>/dev/null")
    if not H.wait_for(function()
      return not H.execute("kill -0 -" .. g .. " 2>/dev/null")
    end, 1, 0.01) then
      os.execute("kill -KILL -" .. g .. " 2>/dev/null")
    end
  end
  return h
end

-- Same as H.lua, with the environment changed: `env` maps a variable to
-- its value, or to false to unset it.
function H.lua_env(env, code)
  local names, parts, sets = {}, { "env" }, {}
  for k in pairs(env) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do            -- env wants -u before NAME=value
    if env[k] == false then parts[#parts + 1] = "-u " .. shell_quote(k)
    else sets[#sets + 1] = shell_quote(k .. "=" .. tostring(env[k])) end
  end
  for _, s in ipairs(sets) do parts[#parts + 1] = s end
  local prelude = ("package.path = %q; package.cpath = %q")
    :format(package.path, package.cpath)
  return H.run(table.concat(parts, " ") .. " " .. H.LUA .. " -e " .. shell_quote(prelude)
               .. " -e " .. shell_quote(code))
end

-- ---------------------------------------------------------------------
-- Added for the HTTP specs: a real nginx in the background.

-- Starts nginx (Debian's /usr/sbin/nginx) with a configuration of the
-- spec's own, in a temporary prefix folder: `http_conf(ports, dir)` returns
-- what goes inside `http { }` (server blocks, listening on 127.0.0.1 and
-- the given free ports); everything nginx writes (pid, error log, temp
-- files) stays in dir.  The echo module is loaded when installed.  Waits
-- (at most 5 s) until every port listens.  Returns a handle with ports,
-- dir, pgid, error_log() and stop(); stop() kills nginx's whole process
-- group, is idempotent: call it in a finally / teardown.
function H.nginx(http_conf, nports)
  nports = nports or 1
  local dir = H.tmpdir()
  for _, d in ipairs { "tmp", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi" } do
    assert(H.execute("mkdir -p " .. shell_quote(dir .. "/" .. d)))
  end
  local is_root = H.run("test \"$(id -u)\" = 0")
  local echo_mod = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
  local last
  for _ = 1, 5 do
    local ports = {}
    for i = 1, nports do ports[i] = H.free_port() end
    local conf = table.concat({
      is_root and "user root;" or "",
      "worker_processes 1;",
      H.exists(echo_mod) and ("load_module " .. echo_mod .. ";") or "",
      "events { worker_connections 64; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path " .. dir .. "/tmp/body;",
      "  proxy_temp_path " .. dir .. "/tmp/proxy;",
      "  fastcgi_temp_path " .. dir .. "/tmp/fastcgi;",
      "  uwsgi_temp_path " .. dir .. "/tmp/uwsgi;",
      "  scgi_temp_path " .. dir .. "/tmp/scgi;",
      http_conf(ports, dir),
      "}",
    }, "\n")
    H.write(dir .. "/nginx.conf", conf)
    H.write(dir .. "/out", "")
    local errlog = dir .. "/error.log"
    local cmd = ("setsid /usr/sbin/nginx -p %s -c %s -e %s -g %s </dev/null >%s 2>&1 & echo $!")
      :format(shell_quote(dir .. "/"), shell_quote(dir .. "/nginx.conf"), shell_quote(errlog),
              shell_quote("daemon off; pid " .. dir .. "/nginx.pid;"),
              shell_quote(dir .. "/out"))
    local p = assert(io.popen(cmd))
    local pid = tonumber(p:read("*l"))
    p:close()
    assert(pid, "could not start nginx")
    local h = { ports = ports, port = ports[1], dir = dir, pgid = pid }
    function h.error_log()
      return (H.exists(errlog) and H.read(errlog) or "") .. H.read(dir .. "/out")
    end
    function h.stop()
      if not h.pgid then return end
      local g = h.pgid
      h.pgid = nil
      -- (no "--": dash's kill builtin rejects it)
      os.execute("kill -TERM -" .. g .. " 2>/dev/null")
      if not H.wait_for(function()
        return not H.execute("kill -0 -" .. g .. " 2>/dev/null")
      end, 2, 0.01) then
        os.execute("kill -KILL -" .. g .. " 2>/dev/null")
        H.wait_for(function()
          return not H.execute("kill -0 -" .. g .. " 2>/dev/null")
        end, 1, 0.01)
      end
    end
    local up = H.wait_for(function()
      if not alive(pid) then return true end
      for _, port in ipairs(ports) do
        if not listening(port) then return false end
      end
      return true
    end, 5, 0.005)
    if up and alive(pid) then return h end
    last = h.error_log()
    h.stop()
    if not last:match("in use") then break end
  end
  error("nginx did not start:\n" .. tostring(last))
end

return H
