-- fuzz/targets/tls_common.lua: the TLS peer both TLS targets drive (and
-- the recorder, which must make the same calls in the same order).
local tls = require "tlspeer"
local M = {}
local DEBUG = os.getenv("FUZZ_DEBUG")

local REQUEST = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
local REPLY = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

function M.start(pki, server, transport, variant)
  local peer = tls.StreamPeerTLS.new()
  local opts, ok
  if server then
    opts = assert(tls.TLSOptions.server(pki.server_key, pki.server,
      { verify = "optional", trusted_chain = pki.ca }))
    ok = fuzz_result("accept_stream", peer:accept_stream(transport, opts))
  else
    local extra = variant == 1 and { certificate = pki.client, key = pki.client_key } or nil
    opts = assert(tls.TLSOptions.client(pki.ca, "", extra))
    ok = fuzz_result("connect_to_stream", peer:connect_to_stream(transport, "localhost", opts))
  end
  return { peer = peer, server = server, ok = ok, sent = false, got = "" }
end

-- One step; true when this side has nothing more to do.
function M.step(st)
  if not st.ok then return true end
  local peer = st.peer
  assert(peer:poll())
  local status = peer:get_status()
  if DEBUG then io.stderr:write(("[%s] status %d %s\n"):format(st.server and "server" or "client",
    status, tostring((peer:get_error())))) end
  if status == tls.StreamPeerTLS.STATUS_HANDSHAKING then return false end
  if status ~= tls.StreamPeerTLS.STATUS_CONNECTED then
    -- Failed or closed: the error getters must work.
    local msg, code = peer:get_error()
    assert(msg == nil or type(msg) == "string", "get_error message")
    assert(code == nil or type(code) == "string", "get_error code")
    tostring(peer)
    return true
  end
  -- Connected: every getter, then a little application data.
  tostring(peer)
  peer:get_cipher_suite(); peer:get_tls_version(); peer:get_alpn_protocol()
  local cert = peer:get_peer_certificate()
  if cert then cert:get_subject() end
  if not st.server and not st.sent then
    fuzz_result("put_partial_data", peer:put_partial_data(REQUEST))
    st.sent = true
  end
  local data = fuzz_result("get_partial_data", peer:get_partial_data(4096))
  if data == nil then return true end
  st.got = st.got .. data
  if st.server and not st.sent and st.got:find("\r\n\r\n", 1, true) then
    fuzz_result("put_partial_data", peer:put_partial_data(REPLY))
    st.sent = true
  end
  if DEBUG and #data > 0 then io.stderr:write("  got " .. ("%q"):format(data) .. "\n") end
  if not st.server and st.got:find("hello", 1, true) then
    peer:disconnect_from_stream()
    return true
  end
  return false
end

-- The fuzz run: step until done or the input is used up.
function M.run(pki, server, data)
  local transport = fuzz_transport(data)
  local st = M.start(pki, server, transport, 0)
  for _ = 1, 2 * #data + 20 do
    if M.step(st) then break end
  end
  st.peer:disconnect_from_stream()
end

return M
