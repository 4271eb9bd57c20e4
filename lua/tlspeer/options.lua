-- The option tables of tls.listen, tls.connect and tls.request, checked
-- against a schema: each known option name maps to the kinds of value it
-- takes ("boolean", "path or X509Certificate", ...).  A name the schema
-- does not know, or a value of another kind, is a programming error: it
-- raises, and the message says what to write instead.
local core = require "tlspeer.core"

local M = {}

-- The metatable of a C class's objects, from one object made on first use.
local metatables = {}
local function metatable_of(class)
  local mt = metatables[class]
  if not mt then
    local obj = class == "TLSOptions" and core.TLSOptions.client_unsafe() or core[class].new()
    mt = getmetatable(obj)
    metatables[class] = mt
  end
  return mt
end

local function instance_of(class)
  return function(v) return type(v) == "userdata" and getmetatable(v) == metatable_of(class) end
end

local function type_is(name)
  return function(v) return type(v) == name end
end

local KINDS = {
  boolean = type_is "boolean",
  ["false"] = function(v) return v == false end,
  number = type_is "number",
  string = type_is "string",
  table = type_is "table",
  ["function"] = type_is "function",
  path = type_is "string",
  ["open file"] = function(v) return io.type(v) == "file" end,
  ["list of strings"] = function(v)
    if type(v) ~= "table" then return false end
    for _, item in pairs(v) do
      if type(item) ~= "string" then return false end
    end
    return true
  end,
  X509Certificate = instance_of "X509Certificate",
  CryptoKey = instance_of "CryptoKey",
  TLSOptions = instance_of "TLSOptions",
}

-- Whether v is of one of the kinds in `kinds` ("path or CryptoKey").
local function is_kind(kinds, v)
  for kind in (kinds .. " or "):gmatch("(.-) or ") do
    local test = KINDS[kind]
    if not test then error("tlspeer: no option kind '" .. kind .. "'") end
    if test(v) then return true end
  end
  return false
end

local function known(schema)
  local names = {}
  for name in pairs(schema) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

-- options.check(opts, schema, fname, argn): raises at the caller of the
-- function fname (which called check) unless opts (its argument #argn) is
-- a table whose every option the schema knows and has the right kind:
--   bad option 'unsafe' to 'connect' (boolean expected, got string)
--   unknown option 'prot' to 'listen' (known: alpn, bind, ...)
-- Absent options are not checked: the caller applies its defaults.
function M.check(opts, schema, fname, argn)
  if type(opts) ~= "table" then
    error(("bad argument #%d to '%s' (table of options expected, got %s)")
      :format(argn, fname, type(opts)), 3)
  end
  for name, value in pairs(opts) do
    local kinds = schema[name]
    if not kinds then
      error(("unknown option '%s' to '%s' (known: %s)")
        :format(tostring(name), fname, known(schema)), 3)
    end
    if not is_kind(kinds, value) then
      error(("bad option '%s' to '%s' (%s expected, got %s)")
        :format(name, fname, kinds, type(value)), 3)
    end
  end
  return opts
end

return M
