-- bench/benchlib.lua: what bench/frame.lua and bench/scale.lua share:
-- processes (started in the background, their output in a file, killed by
-- pid), statistics, JSON, Markdown tables, /proc readings.  Plain Lua 5.4,
-- no tlspeer: the harness must not time itself.
local M = {}

function M.sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
local q = M.sh_quote

function M.log(fmt, ...)
  io.stderr:write(("bench: " .. fmt):format(...), "\n")
end

-- A monotonic clock without tlspeer: /proc/uptime is too coarse, so this
-- is lua-system's when installed (busted brings it), else os.clock-free
-- `date`.  Only the harness's own waits use it.
local ok_sys, system = pcall(require, "system")
M.system = ok_sys and system or nil

function M.sleep(s)
  if s <= 0 then return end
  if M.system then M.system.sleep(s) else os.execute(("sleep %.3f"):format(s)) end
end

function M.clock()
  if M.system then return M.system.monotime() end
  local f = io.popen("cat /proc/uptime")
  local t = tonumber(f:read("l"):match("^(%S+)"))
  f:close()
  return t
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

function M.exec(cmd)
  local ok, how, code = os.execute(cmd)
  return ok, how, code
end

-- The output of a command (all of it).
function M.capture(cmd)
  local f = assert(io.popen(cmd))
  local s = f:read("a")
  f:close()
  return s
end

------------------------------------------------------------ processes

local children = {}           -- pid -> description, for cleanup

-- Starts `cmd` (a shell command line) in the background with its stdout
-- and stderr going to `logfile`; returns its pid.  The command should
-- exec its program (env ..., ip netns exec ..., or a plain program) so the
-- pid is the program's.
function M.spawn(cmd, logfile, what)
  -- A log left from an earlier run must not be read as this one's.
  os.remove(logfile)
  local f = assert(io.popen(("exec %s >%s 2>&1 </dev/null & echo $!"):format(cmd, q(logfile))))
  -- `exec` above applies to the background subshell's command.
  local pid = tonumber(f:read("l"))
  f:close()
  assert(pid, "could not start: " .. cmd)
  children[pid] = what or cmd
  return pid
end

function M.alive(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  if not s then return false end
  local state = s:match("^%d+ %b() (%a)")
  return state ~= "Z" and state ~= "X"
end

function M.kill(pid, sig)
  if pid and M.alive(pid) then
    os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", pid))
  end
end

-- Kills `pid` and waits (up to 2 s, then KILL) until it is gone.
function M.stop(pid)
  if not pid then return end
  M.kill(pid, "TERM")
  local t = M.clock()
  while M.alive(pid) and M.clock() - t < 2 do M.sleep(0.02) end
  if M.alive(pid) then
    M.kill(pid, "KILL")
    while M.alive(pid) and M.clock() - t < 4 do M.sleep(0.02) end
  end
  children[pid] = nil
end

function M.wait_exit(pid, timeout)
  local t = M.clock()
  while M.alive(pid) do
    if timeout and M.clock() - t > timeout then return false end
    M.sleep(0.02)
  end
  children[pid] = nil
  return true
end

-- Every child still running, killed.
function M.stop_all()
  for pid in pairs(children) do M.stop(pid) end
end

-- Waits until `path` holds a line matching `pattern`; returns the captures.
function M.wait_line(path, pattern, timeout, pid)
  local t = M.clock()
  while true do
    local s = M.read_file(path)
    if s then
      for line in s:gmatch("[^\n]+") do
        local a, b, c = line:match(pattern)
        if a then return a, b, c end
      end
    end
    if pid and not M.alive(pid) then
      error(("process %d ended without '%s' (see %s):\n%s"):format(pid, pattern, path, s or ""))
    end
    if M.clock() - t > (timeout or 10) then
      error(("no '%s' in %s after %gs:\n%s"):format(pattern, path, timeout or 10, s or ""))
    end
    M.sleep(0.01)
  end
end

-- "RESULT key value" lines of a file -> { key = value (number or string) }
function M.results(path)
  local r = {}
  for line in (M.read_file(path) or ""):gmatch("[^\n]+") do
    local k, v = line:match("^RESULT (%S+) (.*)$")
    if k then r[k] = tonumber(v) or v end
  end
  return r
end

-- The interpreter that runs the Python helpers: the real binary, not a
-- version manager's shell shim (its pid would not be the program's).
function M.python()
  local p = M.capture("python3 -c 'import sys; print(sys.executable)' 2>/dev/null"):match("^%s*(.-)%s*$")
  return p ~= "" and p or "python3"
end

------------------------------------------------------------ certificates

-- The bench's own CA (P-256) and three server leaves for localhost,
-- game.test and 127.0.0.1 (rsa4096, p384, p256 .crt/.key), made once with
-- the openssl command in `dir`.
function M.make_certs(dir)
  if M.read_file(dir .. "/p256.crt") then return end
  M.exec("mkdir -p " .. q(dir))
  M.log("making certificates in %s (RSA-4096 takes a few seconds)", dir)
  local sh = table.concat({
    "set -e", "cd " .. q(dir),
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key",
    "openssl req -x509 -new -key ca.key -subj '/CN=tlspeer bench CA' -days 3650 -out ca.crt"
      .. " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign",
    "printf 'subjectAltName=DNS:localhost,DNS:game.test,IP:127.0.0.1\\n"
      .. "basicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > leaf.ext",
    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:4096 -out rsa4096.key",
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.key",
    "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out p256.key",
    "for k in rsa4096 p384 p256; do"
      .. " openssl req -new -key $k.key -subj /CN=localhost -out $k.csr;"
      .. " openssl x509 -req -in $k.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650"
      .. " -extfile leaf.ext -out $k.crt; done",
  }, "\n")
  assert(M.exec("sh -c " .. q(sh) .. " >/dev/null 2>&1"), "openssl could not make the certificates")
end

-- bench/out/benchclock.so (bench/benchclock.c): the thread-CPU clock and
-- callgrind's toggle; optional.
function M.build_benchclock()
  local inc = M.capture("pkg-config --cflags lua5.4 2>/dev/null"):gsub("%s+$", "")
  if inc == "" then inc = "-I/usr/include/lua5.4" end
  M.exec("mkdir -p bench/out")
  return M.exec(("cc -O2 -g -shared -fPIC %s -o bench/out/benchclock.so bench/benchclock.c 2>/dev/null")
    :format(inc))
end

------------------------------------------------------------ /proc

-- Resident set size of a process, bytes.
function M.rss(pid)
  local s = M.read_file("/proc/" .. pid .. "/statm")
  local _, res = s:match("^(%d+) (%d+)")
  return tonumber(res) * 4096
end

-- utime + stime of a process (all its threads), in seconds.
local HZ
function M.cpu_seconds(pid)
  if not HZ then HZ = tonumber(M.capture("getconf CLK_TCK")) or 100 end
  local s = M.read_file("/proc/" .. pid .. "/stat")
  local rest = s:match("^%d+ %b() (.*)$")
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- fields 14, 15 of stat = rest's 12, 13
  return (tonumber(f[12]) + tonumber(f[13])) / HZ
end

------------------------------------------------------------ statistics

-- Durations (seconds) -> { n, max, p99, p50, mean } (seconds).
function M.stats(list)
  local n = #list
  if n == 0 then return { n = 0 } end
  local s = table.move(list, 1, n, 1, {})
  table.sort(s)
  local sum = 0
  for i = 1, n do sum = sum + s[i] end
  local function pct(p)
    local i = math.ceil(p * n)
    if i < 1 then i = 1 end
    return s[i]
  end
  return { n = n, max = s[n], p99 = pct(0.99), p50 = pct(0.5), mean = sum / n, min = s[1] }
end

------------------------------------------------------------ output

local function json_value(v, out, indent)
  local t = type(v)
  if t == "table" then
    local is_list = #v > 0 or next(v) == nil
    local pad = ("  "):rep(indent + 1)
    if is_list then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        out[#out + 1] = (i > 1 and ",\n" or "\n") .. pad
        json_value(x, out, indent + 1)
      end
      out[#out + 1] = (#v > 0 and "\n" .. ("  "):rep(indent) or "") .. "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        local x = v[k]
        if x == nil then x = v[tonumber(k)] end
        out[#out + 1] = (i > 1 and ",\n" or "\n") .. pad .. ("%q"):format(k) .. ": "
        json_value(x, out, indent + 1)
      end
      out[#out + 1] = "\n" .. ("  "):rep(indent) .. "}"
    end
  elseif t == "string" then
    out[#out + 1] = '"' .. v:gsub('[%c"\\]', function(c)
      return ({ ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t" })[c]
        or ("\\u%04x"):format(c:byte())
    end) .. '"'
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math.type(v) == "integer" then out[#out + 1] = tostring(v)
    else out[#out + 1] = ("%.6g"):format(v) end
  elseif t == "boolean" then
    out[#out + 1] = tostring(v)
  else
    out[#out + 1] = "null"
  end
end

function M.json(v)
  local out = {}
  json_value(v, out, 0)
  return table.concat(out) .. "\n"
end

-- A value as a Lua literal that dofile() reads back (child -> parent).
function M.serialize(v)
  local t = type(v)
  if t == "table" then
    local out = {}
    for k, x in pairs(v) do
      local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. M.serialize(k) .. "]")
      out[#out + 1] = key .. "=" .. M.serialize(x)
    end
    table.sort(out)
    return "{" .. table.concat(out, ",") .. "}"
  elseif t == "string" then
    return ("%q"):format(v)
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "0/0" end
    return ("%.17g"):format(v)
  else
    return tostring(v)
  end
end

-- A Markdown table: header list, rows of cell lists.
function M.markdown(header, rows)
  local out = { "| " .. table.concat(header, " | ") .. " |" }
  local sep = {}
  for i = 1, #header do sep[i] = i == 1 and "---" or "---:" end
  out[#out + 1] = "|" .. table.concat(sep, "|") .. "|"
  for _, r in ipairs(rows) do out[#out + 1] = "| " .. table.concat(r, " | ") .. " |" end
  return table.concat(out, "\n") .. "\n"
end

function M.ms(s)
  if s == nil then return "–" end
  return ("%.3f"):format(s * 1000)
end

return M
