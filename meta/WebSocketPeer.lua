---@meta
-- LuaLS annotations for tlspeer's WebSocketPeer (lua/tlspeer/websocket.lua)
-- and the WebSocket helpers (lua/tlspeer/websocket_helpers.lua).

---Godot 4's WebSocketPeer: RFC 6455 over ws:// and wss://, client and server.
---@class tlspeer.WebSocketPeer
---@field STATE_CONNECTING integer 0
---@field STATE_OPEN integer 1
---@field STATE_CLOSING integer 2
---@field STATE_CLOSED integer 3
---@field WRITE_MODE_TEXT integer 0
---@field WRITE_MODE_BINARY integer 1
local WebSocketPeer = {}

---@return tlspeer.WebSocketPeer
function WebSocketPeer.new() end

---@param url string ws:// or wss://
---@param tls_client_options? userdata TLSOptions.client(...) or client_unsafe(...)
---@return true|nil ok
---@return string? message
---@return string? code
function WebSocketPeer:connect_to_url(url, tls_client_options) end

---@param stream userdata|table a connected StreamPeerTCP, an accepted StreamPeerTLS, or an object with get_partial_data/put_partial_data
---@return true|nil ok
---@return string? message
---@return string? code
function WebSocketPeer:accept_stream(stream) end

function WebSocketPeer:poll() end

---@return integer state STATE_*
function WebSocketPeer:get_ready_state() end

---@param message string
---@param write_mode? integer WRITE_MODE_BINARY (default) or WRITE_MODE_TEXT
---@return true|nil ok
---@return string? message
---@return string? code
function WebSocketPeer:send(message, write_mode) end

---@param text string valid UTF-8
---@return true|nil ok
---@return string? message
---@return string? code
function WebSocketPeer:send_text(text) end

---@param bytes string
---@return true|nil ok
---@return string? message
---@return string? code
function WebSocketPeer:put_packet(bytes) end

---@return integer
function WebSocketPeer:get_available_packet_count() end

---@return string|nil packet
---@return string? message
---@return string? code
function WebSocketPeer:get_packet() end

---@return boolean
function WebSocketPeer:was_string_packet() end

---@param code? integer 1000 by default; negative: drop at once
---@param reason? string at most 123 bytes of UTF-8
function WebSocketPeer:close(code, reason) end

---@return integer code -1 when the close was not clean
function WebSocketPeer:get_close_code() end

---@return string
function WebSocketPeer:get_close_reason() end

---@return string
function WebSocketPeer:get_selected_protocol() end

---@return string
function WebSocketPeer:get_requested_url() end

---@return string
function WebSocketPeer:get_connected_host() end

---@return integer
function WebSocketPeer:get_connected_port() end

---@return integer bytes
function WebSocketPeer:get_current_outbound_buffered_amount() end

---@param enabled boolean
function WebSocketPeer:set_no_delay(enabled) end

---@param list string[]
function WebSocketPeer:set_supported_protocols(list) end
---@return string[]
function WebSocketPeer:get_supported_protocols() end

---@param list string[] "Name: value" lines
function WebSocketPeer:set_handshake_headers(list) end
---@return string[]
function WebSocketPeer:get_handshake_headers() end

---@param n integer default 65535
function WebSocketPeer:set_inbound_buffer_size(n) end
---@return integer
function WebSocketPeer:get_inbound_buffer_size() end

---@param n integer default 65535
function WebSocketPeer:set_outbound_buffer_size(n) end
---@return integer
function WebSocketPeer:get_outbound_buffer_size() end

---@param n integer default 4096
function WebSocketPeer:set_max_queued_packets(n) end
---@return integer
function WebSocketPeer:get_max_queued_packets() end

---@param seconds number 0 = off (default)
function WebSocketPeer:set_heartbeat_interval(seconds) end
---@return number
function WebSocketPeer:get_heartbeat_interval() end

---Ours: permessage-deflate (RFC 7692), off by default.
---@param enabled boolean
function WebSocketPeer:set_compression_enabled(enabled) end
---@return boolean
function WebSocketPeer:is_compression_enabled() end

---Ours: the last failure.
---@return string|nil message
---@return string? code
function WebSocketPeer:get_error() end

---Ours: a header of the other side's handshake (Origin on a server).
---@param name string
---@return string|nil
function WebSocketPeer:get_handshake_header(name) end

---Ours: the stream under the peer.
---@return userdata|table|nil
function WebSocketPeer:get_stream() end

---A connection of tls.ws_listen, or a tls.ws_connect client.
---@class tlspeer.WebSocketConnection
local Conn = {}
---@param message string
---@param write_mode? integer
---@return true|nil ok
---@return string? message
---@return string? code
function Conn:send(message, write_mode) end
---@param text string
---@return true|nil ok
---@return string? message
---@return string? code
function Conn:send_text(text) end
---@param code? integer
---@param reason? string
function Conn:close(code, reason) end
---@return tlspeer.WebSocketPeer
function Conn:get_peer() end
---@param event "connection_established"|"message_received"|"disconnected"|"connection_failed"|"error"
---@param fn function
---@return self
function Conn:on(event, fn) end
---@return boolean
function Conn:poll() end
---@param timeout? number
---@return true|nil ok
---@return string? message
---@return string? code
function Conn:wait(timeout) end
---@param timeout? number
function Conn:run(timeout) end

---@class tlspeer.WebSocketServer
local Server = {}
---@param event "connection_established"|"message_received"|"disconnected"|"connection_failed"|"error"
---@param fn function
---@return self
function Server:on(event, fn) end
---@return boolean
function Server:poll() end
---@param timeout? number
function Server:run(timeout) end
function Server:stop() end
---@return integer
function Server:get_local_port() end
---@return tlspeer.WebSocketConnection[]
function Server:get_connections() end
---@param message string
---@param write_mode? integer
---@return integer count
function Server:broadcast(message, write_mode) end
