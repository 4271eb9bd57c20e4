-- Shared helpers for tlspeer's specs: temporary folders, files, hex, and
-- running the real `openssl` command.
local H = {}

H.tls = require "tlspeer"

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
H.q = shell_quote

-- Runs a shell command; returns ok, combined output.
function H.run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  return ok == true, out
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
  local dir = p:read("l")
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
  local s = f:read("a")
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

-- Deterministic pseudo-random bytes of length n (for test inputs).
function H.bytes(n, seed)
  local t, x = {}, seed or 12345
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
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

-- Runs a Lua chunk in a fresh `lua5.4` with the same package.path and
-- package.cpath as this process; returns ok, combined output.
function H.lua(code)
  local prelude = ("package.path = %q; package.cpath = %q")
    :format(package.path, package.cpath)
  return H.run("lua5.4 -e " .. shell_quote(prelude) .. " -e "
               .. shell_quote(code))
end

return H
