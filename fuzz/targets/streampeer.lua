-- fuzz target streampeer: the typed StreamPeer getters of
-- lua/tlspeer/streampeer.lua (get_u32, get_string...) and get_data /
-- get_partial_data on a StreamPeerTLS, fed plaintext the fuzzer controls:
-- a client and a server joined by tls.pipe(), handshaken once, stay
-- connected across inputs.  Input: a flag byte (bit 0: big endian), then
-- the bytes the client sends; the server reads an op byte, then does that
-- read, until a read fails.
local tls = require "tlspeer"
local TLS = tls.StreamPeerTLS
local T = {}
local pki, client, server

local function connect()
  local a, b = tls.pipe()
  client, server = TLS.new(), TLS.new()
  assert(client:connect_to_stream(a, "localhost", assert(tls.TLSOptions.client(pki.ca))))
  assert(server:accept_stream(b, assert(tls.TLSOptions.server(pki.server_key, pki.server))))
  for _ = 1, 100 do
    client:poll(); server:poll()
    if client:get_status() ~= TLS.STATUS_HANDSHAKING and
       server:get_status() ~= TLS.STATUS_HANDSHAKING then break end
  end
  assert(server:get_status() == TLS.STATUS_CONNECTED, "handshake")
  server:set_timeout(0)         -- a read short of data fails at once
  client:set_timeout(0)
end

function T.init()
  pki = fuzz_pki()
end

local OPS = {
  function(p) return p:get_8() end, function(p) return p:get_u8() end,
  function(p) return p:get_16() end, function(p) return p:get_u16() end,
  function(p) return p:get_32() end, function(p) return p:get_u32() end,
  function(p) return p:get_64() end, function(p) return p:get_u64() end,
  function(p) return p:get_float() end, function(p) return p:get_double() end,
  function(p) return p:get_string() end, function(p) return p:get_utf8_string() end,
  function(p)
    local n = p:get_u8()
    if not n then return nil, "no length", "ERR_TIMEOUT" end
    return p:get_string(n)
  end,
  function(p)
    local n = p:get_u16()
    if not n then return nil, "no length", "ERR_TIMEOUT" end
    return p:get_data(n)
  end,
  function(p) return p:get_partial_data(p:get_u8() or 0) end,
  function(p) return p:get_available_bytes() end,
}

function T.run(data)
  if not server or server:get_status() ~= TLS.STATUS_CONNECTED or
     client:get_status() ~= TLS.STATUS_CONNECTED then
    connect()
  end
  local be = (data:byte(1) or 0) & 1 == 1
  client:set_big_endian(be)
  server:set_big_endian(be)
  local payload = data:sub(2)
  if #payload > 0 then
    assert(fuzz_result("put_data", client:put_data(payload)))
  end
  for _ = 1, #payload + 1 do
    local op = server:get_u8()
    if op == nil then break end
    local f = OPS[op % #OPS + 1]
    local v, msg, code = f(server)
    if v == nil then
      fuzz_result("typed get", v, msg, code)
      break
    end
  end
  -- Whatever is left is drained, so the next input starts clean.
  for _ = 1, 100 do
    local s = fuzz_result("drain", server:get_partial_data(65536))
    if not s or s == "" then break end
  end
end
return T
