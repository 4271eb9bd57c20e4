---@meta
-- Godot's StreamPeerTLS (docs/StreamPeerTLS.md).

---A transport for StreamPeerTLS: a StreamPeerTCP, or any object with these two methods.
---@class tlspeer.Stream
---@field get_partial_data fun(self: any, n: integer): string|nil, string?, string?
---@field put_partial_data fun(self: any, s: string): integer|nil, string?, string?

---@class tlspeer.StreamPeerTLS : tlspeer.StreamPeer
local StreamPeerTLS = {}

StreamPeerTLS.STATUS_DISCONNECTED = 0
StreamPeerTLS.STATUS_HANDSHAKING = 1
StreamPeerTLS.STATUS_CONNECTED = 2
StreamPeerTLS.STATUS_ERROR = 3
StreamPeerTLS.STATUS_ERROR_HOSTNAME_MISMATCH = 4

---@return tlspeer.StreamPeerTLS
function StreamPeerTLS.new() end

---Starts a client handshake; true at once.
---@param stream tlspeer.StreamPeerTCP|tlspeer.PipeEnd|tlspeer.Stream
---@param common_name string the name the server's certificate must carry
---@param client_options? tlspeer.TLSOptions TLSOptions.client() by default
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTLS:connect_to_stream(stream, common_name, client_options) end

---Starts a server handshake; true at once.
---@param stream tlspeer.StreamPeerTCP|tlspeer.PipeEnd|tlspeer.Stream
---@param server_options tlspeer.TLSOptions
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTLS:accept_stream(stream, server_options) end

---Advances the handshake, processes incoming records; never blocks.
function StreamPeerTLS:poll() end

---@return integer status a STATUS_* value
function StreamPeerTLS:get_status() end

---@return tlspeer.StreamPeerTCP|tlspeer.PipeEnd|tlspeer.Stream|nil
function StreamPeerTLS:get_stream() end

---Sends close_notify and closes the connection.
function StreamPeerTLS:disconnect_from_stream() end

---The last failure.
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTLS:get_error() end

---@return tlspeer.X509Certificate?
function StreamPeerTLS:get_peer_certificate() end

---@return boolean
function StreamPeerTLS:is_peer_verified() end

---@return string?
function StreamPeerTLS:get_alpn_protocol() end

---@return string? suite the IANA name
function StreamPeerTLS:get_cipher_suite() end

---@return string? version "TLSv1.2" or "TLSv1.3"
function StreamPeerTLS:get_tls_version() end

---@return boolean
function StreamPeerTLS:is_session_reused() end

---Whether decrypted data waits (get_partial_data would return it without the socket).
---@return boolean
function StreamPeerTLS:has_pending() end
