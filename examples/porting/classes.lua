-- The Godot docs' server (3.1) and client (3.2), ported with the classes
-- as Godot 4 has them: TCPServer + StreamPeerTLS.accept_stream with
-- TLSOptions.server on one side, StreamPeerTCP + connect_to_stream with
-- TLSOptions.client on the other; each side's process() is what its
-- _process(delta) does, called once per frame.
--
--   lua5.4 examples/porting/classes.lua
local root = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/../_path.lua")
local tls = require "tlspeer"
local TLS = tls.StreamPeerTLS

-- server.gd
local key, cert = tls.CryptoKey.new(), tls.X509Certificate.new()
assert(key:load(root .. "/certs/server.key"))
assert(cert:load(root .. "/certs/server.crt"))
local options = assert(tls.TLSOptions.server(key, cert))
local tcp_server = tls.TCPServer.new()
assert(tcp_server:listen(0, "127.0.0.1"))            -- the seed: listen(8443)
local peers, established = {}, {}

local function server_process()
  while tcp_server:is_connection_available() do
    local peer = TLS.new()
    peer:accept_stream(tcp_server:take_connection(), options)
    peers[#peers + 1] = peer
  end
  for _, peer in ipairs(peers) do
    peer:poll()
    if peer:get_status() == TLS.STATUS_CONNECTED then
      if not established[peer] then
        established[peer] = true
        print("TLS connection established")          -- _on_connection_established
      end
      if peer:get_available_bytes() > 0 then          -- _on_data_received
        print("Client says: " .. assert(peer:get_utf8_string()))
        return true
      end
    end
  end
end

-- client.gd
local ca = tls.X509Certificate.new()
assert(ca:load(root .. "/certs/ca.crt"))
local tcp = tls.StreamPeerTCP.new()
assert(tcp:connect_to_host("localhost", tcp_server:get_local_port()))
local tls_client = TLS.new()
local ok, err = tls_client:connect_to_stream(tcp, "localhost", tls.TLSOptions.client(ca))
if not ok then print("Failed to initiate TLS handshake: " .. err) end
local said_hello = false

local function client_process()
  tls_client:poll()
  local status = tls_client:get_status()
  if status == TLS.STATUS_CONNECTED and not said_hello then
    print("Connected to server via TLS")              -- _on_connected
    tls_client:put_utf8_string("Hello, secure world!")
    said_hello = true
  elseif status >= TLS.STATUS_ERROR then
    print("TLS handshake failed: " .. tls_client:get_error())   -- _on_connection_failed
    os.exit(1)
  end
end

-- The frames.
local deadline = tls.now() + 10
repeat
  client_process()
  local done = server_process()
  tls.sleep(0.001)                                    -- the time between frames
until done or tls.now() > deadline
tls_client:disconnect_from_stream()
