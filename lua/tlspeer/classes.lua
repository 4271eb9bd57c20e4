-- What the class tables on the module show a user at the REPL:
--   print(tls.StreamPeerTLS)  lists its constructors, methods and constants;
--   tls.Crypto.generate_rsa   is the method itself (the class's __index is
--                             its methods table), as instances see it;
--   peer:set_certificate_file(...) and the other Godot 3 names of the
--   seed examples raise an error that says what to write instead, where
--   they would otherwise end in "attempt to call a nil value".
local core = require "tlspeer.core"

local M = {}

local DOCS = "docs/%s.md"

-- Godot 3 (and Godot signal) names that people port from the Godot docs,
-- with the tlspeer way to write them.  Only names that are not methods:
-- a lookup of a real method never comes here.
local GODOT3 = {
  StreamPeerTLS = {
    set_certificate_file = "a server's certificate and key go into "
      .. "TLSOptions.server(key, certificate), passed to accept_stream(tcp, options); "
      .. "or tls.listen{certificate = path, key = path}",
    set_private_key_file = "a server's certificate and key go into "
      .. "TLSOptions.server(key, certificate), passed to accept_stream(tcp, options); "
      .. "or tls.listen{certificate = path, key = path}",
    set_connection = "wrap the accepted StreamPeerTCP with accept_stream(tcp, "
      .. "TLSOptions.server(key, certificate)) (a server) or connect_to_stream(tcp, host) "
      .. "(a client)",
    connect_to_host = "a StreamPeerTLS wraps a stream: StreamPeerTCP.new():connect_to_host"
      .. "(host, port), then peer:connect_to_stream(tcp, host); or tls.connect{host = ..., "
      .. "port = ...}",
    set_peer_certificate = "a client certificate goes into TLSOptions.client(trusted, \"\", "
      .. "{certificate = cert, key = key}); or tls.connect{certificate = path, key = path}",
    set_verify_mode = "clients verify by default; TLSOptions.client_unsafe() turns it "
      .. "off (development only), and a server asks for client certificates with "
      .. "TLSOptions.server(key, certificate, {trusted_chain = ca, verify = \"required\"})",
    connect = "Godot's signals are events of tls.listen / tls.connect objects: "
      .. "obj:on(\"connection_established\", function ... end)",
    blocking_handshake_enabled = "there is no blocking handshake: poll() until the "
      .. "status leaves STATUS_HANDSHAKING, or use get_data/put_data, which wait for it",
  },
}

-- The methods table of a class: the metatable's __index of the C classes
-- (core._methods), the class itself for a Lua class (HTTPClient's
-- instances look up their methods in the class table), else that of an
-- instance made for the purpose.
local function methods_of(name, class)
  local methods = core._methods[name]
  if methods then return methods end
  if rawget(class, "__index") == class then return class end
  local new = rawget(class, "new")
  if type(new) == "function" then
    local ok, obj = pcall(new)
    local mt = ok and getmetatable(obj)
    if type(mt) == "table" and type(mt.__index) == "table" then return mt.__index end
  end
  return nil
end

local function sorted(t)
  table.sort(t)
  return t
end

-- The text of tostring(class).
local function describe(name, class)
  local statics, consts, methods = {}, {}, {}
  local mt = methods_of(name, class)
  -- A Lua class is its own methods table: there only new() is static.
  local shared = mt == class
  for k, v in pairs(class) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" then
      if type(v) == "function" then
        if shared and k ~= "new" then
          methods[#methods + 1] = k
        else
          statics[#statics + 1] = k .. "()"
        end
      elseif type(v) == "number" then
        consts[#consts + 1] = ("%s = %s"):format(k, tostring(v))
      end
    end
  end
  if mt and not shared then
    for k, v in pairs(mt) do
      if type(k) == "string" and type(v) == "function" and k:sub(1, 1) ~= "_" then
        methods[#methods + 1] = k
      end
    end
  end
  local lines = { ("tlspeer class %s (Godot's %s; %s)"):format(name, name, DOCS:format(name)) }
  if #statics > 0 then
    lines[#lines + 1] = "  " .. name .. "." .. table.concat(sorted(statics), ", " .. name .. ".")
  end
  if #methods > 0 then
    lines[#lines + 1] = "  methods: " .. table.concat(sorted(methods), ", ")
  end
  if #consts > 0 then
    -- By group (METHOD_, STATUS_...), then value.
    table.sort(consts, function(a, b)
      local ga, gb = a:match("^%u*"), b:match("^%u*")
      if ga ~= gb then return ga < gb end
      local na, nb = tonumber(a:match("= (.*)$")), tonumber(b:match("= (.*)$"))
      if na ~= nb then return na < nb end
      return a < b
    end)
    lines[#lines + 1] = "  constants: " .. table.concat(consts, ", ")
  end
  return table.concat(lines, "\n")
end

-- A function that raises the porting advice for `method` of `name`.
local function advice(name, method, text)
  return function()
    local what = method == "connect" and "a Godot signal" or "Godot 3's"
    error(("%s has no method '%s' (%s): %s (see docs/porting-from-godot.md)")
      :format(name, method, what, text), 2)
  end
end

-- Decorates every class table of the module `mod` (capitalised names),
-- once; a class table that already has a metatable keeps it, gaining
-- only what it lacks.
function M.decorate(mod)
  for name, class in pairs(mod) do
    if type(name) == "string" and name:match("^%u") and type(class) == "table" then
      local mt = getmetatable(class)
      if mt == nil then
        mt = {}
        setmetatable(class, mt)
      end
      if type(mt) == "table" then
        if mt.__tostring == nil then
          mt.__tostring = function() return describe(name, class) end
        end
        local methods = core._methods[name]
        if mt.__index == nil and methods then mt.__index = methods end
        local hints = GODOT3[name]
        if hints and methods and getmetatable(methods) == nil then
          setmetatable(methods, { __index = function(_, k)
            local text = hints[k]
            if text then return advice(name, k, text) end
          end })
        end
      end
    end
  end
  return mod
end

return M
