-- Every public method of the networking classes, called with every wrong
-- type and with nil in each argument position, on fresh, failed and closed
-- objects: each call returns or raises a Lua error, never crashes or hangs.
-- The sweep runs in a subprocess, so a crash is a failure, not a lost run.
local H = require "helpers"

local SWEEP = [=[
local tls = require "tlspeer"
local unpack = table.unpack or unpack            -- (5.1, LuaJIT: unpack)

local function load(class, path)
  local o = class.new(); assert(o:load(path)); return o
end
local key, crt = load(tls.CryptoKey, "certs/server.key"), load(tls.X509Certificate, "certs/server.crt")
local ca = load(tls.X509Certificate, "certs/ca.crt")

local bad = { "nil", "true", "table", "function", "thread" }
local function value(kind)
  if kind == "nil" then return nil
  elseif kind == "true" then return true
  elseif kind == "table" then return {}
  elseif kind == "function" then return print
  else return coroutine.create(function() end) end   -- (5.1: a Lua function only)
end

local calls, raised = 0, 0
-- Calls obj:name(args...) with each bad value in each of 3 positions.
local function sweep(label, obj, methods)
  for _, name in ipairs(methods) do
    local fn = obj[name]
    assert(type(fn) == "function", label .. ":" .. name .. " is missing")
    for pos = 1, 3 do
      for _, kind in ipairs(bad) do
        local args = { n = 3 }
        args[pos] = value(kind)
        local ok = pcall(fn, obj, unpack(args, 1, 3))
        calls = calls + 1
        if not ok then raised = raised + 1 end
      end
    end
  end
end

-- Also with a wrong self: each method on an object of another class.
local function wrong_self(obj, methods, other)
  for _, name in ipairs(methods) do
    local ok, err = pcall(obj[name], other)
    calls = calls + 1
    assert(not ok, name .. " accepted a wrong self")
    raised = raised + 1
  end
end

local TCP = { "bind", "connect_to_host", "poll", "get_status", "get_error", "get_connected_host",
  "get_connected_port", "get_local_port", "set_no_delay", "get_available_bytes",
  "get_partial_data", "get_data", "put_partial_data", "put_data", "set_timeout", "get_timeout",
  "set_big_endian", "is_big_endian_enabled", "put_u8", "put_8", "put_u16", "put_16", "put_u32",
  "put_32", "put_u64", "put_64", "put_float", "put_double", "put_string", "put_utf8_string",
  "get_u8", "get_8", "get_u16", "get_16", "get_u32", "get_32", "get_u64", "get_64", "get_float",
  "get_double", "get_string", "get_utf8_string", "disconnect_from_host" }
local SERVER = { "listen", "is_listening", "get_local_port", "is_connection_available",
  "take_connection", "stop" }
local TLS = { "connect_to_stream", "accept_stream", "poll", "get_status", "get_stream",
  "get_error", "get_peer_certificate", "get_alpn_protocol", "get_cipher_suite",
  "get_tls_version", "is_session_reused", "get_available_bytes", "get_partial_data",
  "get_data", "put_partial_data", "put_data", "set_timeout", "get_timeout", "set_big_endian",
  "is_big_endian_enabled", "put_u32", "get_u32", "put_string", "get_string",
  "disconnect_from_stream" }
local OPTIONS = { "is_server", "is_unsafe_client", "get_common_name_override",
  "get_trusted_ca_chain", "get_private_key", "get_own_certificate" }
local HTTP = { "connect_to_host", "poll", "get_status", "get_error", "set_blocking_mode",
  "is_blocking_mode_enabled", "set_timeout", "set_read_chunk_size", "get_read_chunk_size",
  "request", "has_response", "get_response_code", "get_response_headers",
  "get_response_headers_as_dictionary", "is_response_chunked", "get_response_body_length",
  "read_response_body_chunk", "query_string_from_dict", "close" }

-- Fresh objects.
local tcp = tls.StreamPeerTCP.new(); tcp:set_timeout(0.05)
sweep("StreamPeerTCP", tcp, TCP)
sweep("TCPServer", tls.TCPServer.new(), SERVER)
local peer = tls.StreamPeerTLS.new(); peer:set_timeout(0.05)
sweep("StreamPeerTLS", peer, TLS)
sweep("TLSOptions", tls.TLSOptions.server(key, crt), OPTIONS)
sweep("TLSOptions", tls.TLSOptions.client(ca), OPTIONS)
local http = tls.HTTPClient.new(); http:set_timeout(0.05)
sweep("HTTPClient", http, HTTP)

-- The static constructors and module functions.
for _, f in ipairs { tls.TLSOptions.client, tls.TLSOptions.client_unsafe, tls.TLSOptions.server,
                     tls.listen, tls.connect, tls.request, tls.set_certificate_bundle_override } do
  for pos = 1, 3 do
    for _, kind in ipairs(bad) do
      local args = { n = 3 }
      args[pos] = value(kind)
      if not (f == tls.set_certificate_bundle_override and kind == "nil") then
        local ok = pcall(f, unpack(args, 1, 3))
        calls = calls + 1
        if not ok then raised = raised + 1 end
      end
    end
  end
end
tls.set_certificate_bundle_override(nil)

-- A peer after a failed handshake (over a pipe whose other end says
-- nonsense), and every method again.
local a, b = tls.pipe()
local failed = tls.StreamPeerTLS.new(); failed:set_timeout(0.05)
assert(failed:connect_to_stream(a, "localhost", tls.TLSOptions.client(ca)))
b:put_partial_data(("\21\3\3\0\2\2\40"):rep(3))
for _ = 1, 10 do failed:poll() end
assert(failed:get_status() == tls.StreamPeerTLS.STATUS_ERROR, "status " .. failed:get_status())
sweep("StreamPeerTLS (failed)", failed, TLS)

-- Wrong self for each class.
wrong_self(tcp, TCP, tls.TCPServer.new())
wrong_self(peer, TLS, tls.TCPServer.new())   -- TCP would be a fine StreamPeer
wrong_self(tls.TCPServer.new(), SERVER, peer)

-- Closed objects: every C method raises "attempt to use a closed X".
local function closed(label, obj, methods)
  getmetatable(obj).__close(obj)
  getmetatable(obj).__close(obj)         -- twice is fine
  assert(tostring(obj):match("%(closed%)$"), label .. " tostring: " .. tostring(obj))
  for _, name in ipairs(methods) do
    local ok, err = pcall(obj[name], obj, 1)
    calls = calls + 1
    assert(not ok and tostring(err):match("attempt to use a closed " .. label),
      label .. ":" .. name .. " on a closed object: " .. tostring(err))
    raised = raised + 1
  end
end
closed("StreamPeerTCP", tls.StreamPeerTCP.new(), { "poll", "get_status", "get_data", "put_data",
  "get_partial_data", "put_partial_data", "connect_to_host", "disconnect_from_host", "get_u32" })
closed("TCPServer", tls.TCPServer.new(), SERVER)
closed("StreamPeerTLS", tls.StreamPeerTLS.new(), { "poll", "get_status", "get_data", "put_data",
  "connect_to_stream", "accept_stream", "disconnect_from_stream", "get_error", "get_u32" })
closed("TLSOptions", tls.TLSOptions.client(ca), OPTIONS)

collectgarbage(); collectgarbage()
print(("done %d calls, %d raised"):format(calls, raised))
]=]

describe("the networking classes under misuse", function()
  setup(function()
    if not H.exists("certs/server.key") then assert(H.run(H.LUA .. " certs/generate.lua")) end
  end)

  it("survive every wrong type, nil, wrong self, a failed handshake and closing", function()
    local ok, out = H.lua(SWEEP)
    assert.is_true(ok, out)
    local calls, raised = out:match("done (%d+) calls, (%d+) raised")
    assert.truthy(calls, out)
    assert.is_true(tonumber(calls) > 2000, out)
    assert.is_true(tonumber(raised) > 500, out)    -- extra arguments are ignored, not errors
  end)
end)
