-- The typed StreamPeer methods of Godot (put_u8 ... get_double, strings),
-- shared by StreamPeerTCP and StreamPeerTLS.  They sit on each class's
-- put_data/get_data and is_big_endian_enabled, so they block and fail the
-- same way: a value on success, nil, message, code on failure.
local M = {}

local pack, unpack = string.pack, string.unpack

local types = {
  -- name      format  low                  high
  { "8",      "i1",   -0x80,               0x7f },
  { "u8",     "I1",   0,                   0xff },
  { "16",     "i2",   -0x8000,             0x7fff },
  { "u16",    "I2",   0,                   0xffff },
  { "32",     "i4",   -0x80000000,         0x7fffffff },
  { "u32",    "I4",   0,                   0xffffffff },
  { "64",     "i8",   math.mininteger,     math.maxinteger },
  { "u64",    "I8",   math.mininteger,     math.maxinteger }, -- 2^63.. read back negative
  { "float",  "f" },
  { "double", "d" },
}

local function order(self)
  return self:is_big_endian_enabled() and ">" or "<"
end

local function check_number(name, v, lo, hi)
  if lo then
    if math.type(v) ~= "integer" then
      error(("bad argument #1 to 'put_%s' (integer expected, got %s)")
        :format(name, math.type(v) or type(v)), 3)
    end
    if v < lo or v > hi then
      error(("bad argument #1 to 'put_%s' (value %d out of range)"):format(name, v), 3)
    end
  elseif type(v) ~= "number" then
    error(("bad argument #1 to 'put_%s' (number expected, got %s)"):format(name, type(v)), 3)
  end
end

for _, t in ipairs(types) do
  local name, fmt, lo, hi = t[1], t[2], t[3], t[4]
  local size = #pack(fmt, 0)
  M["put_" .. name] = function(self, v)
    check_number(name, v, lo, hi)
    return self:put_data(pack(order(self) .. fmt, v))
  end
  M["get_" .. name] = function(self)
    local data, msg, code = self:get_data(size)
    if not data then return nil, msg, code end
    return (unpack(order(self) .. fmt, data))
  end
end

local function put_counted(self, name, s)
  if type(s) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(name, type(s)), 3)
  end
  if #s > 0xffffffff then
    error(("bad argument #1 to '%s' (string too long)"):format(name), 3)
  end
  return self:put_data(pack(order(self) .. "s4", s))
end

-- The most get_data takes at once (IO_MAX in tcp.c and tls.c).
local MAX_COUNTED = 1 << 30

local function get_counted(self, n)
  if n == nil or n < 0 then
    local len, msg, code = M.get_u32(self)
    if not len then return nil, msg, code end
    -- The length comes from the peer: one get_data cannot take more, and
    -- asking would raise an argument error the caller never made.
    if len > MAX_COUNTED then
      return nil, ("the peer announced a string of %d bytes (at most %d can be read)")
        :format(len, MAX_COUNTED), "ERR_INVALID_DATA"
    end
    n = len
  end
  return self:get_data(n)
end

-- put_string / get_string: a 32-bit length, then the bytes (Godot's ASCII
-- string; Lua strings are bytes, so any string goes).
function M.put_string(self, s) return put_counted(self, "put_string", s) end

function M.get_string(self, n)
  if n ~= nil and math.type(n) ~= "integer" then
    error("bad argument #1 to 'get_string' (integer expected)", 2)
  end
  return get_counted(self, n)
end

-- The UTF-8 forms check the encoding.
function M.put_utf8_string(self, s)
  if type(s) == "string" and not utf8.len(s) then
    error("bad argument #1 to 'put_utf8_string' (invalid UTF-8)", 2)
  end
  return put_counted(self, "put_utf8_string", s)
end

function M.get_utf8_string(self, n)
  if n ~= nil and math.type(n) ~= "integer" then
    error("bad argument #1 to 'get_utf8_string' (integer expected)", 2)
  end
  local s, msg, code = get_counted(self, n)
  if not s then return nil, msg, code end
  if not utf8.len(s) then
    return nil, "get_utf8_string: the " .. #s .. " bytes received are not valid UTF-8",
      "ERR_INVALID_DATA"
  end
  return s
end

-- Adds the methods to a class's methods table (the C methods win).
function M.install(methods)
  for name, fn in pairs(M) do
    if name ~= "install" and methods[name] == nil then methods[name] = fn end
  end
end

return M
