---@meta
-- Godot's StreamPeerTCP (docs/StreamPeerTCP.md).

---@class tlspeer.StreamPeerTCP : tlspeer.StreamPeer
local StreamPeerTCP = {}

StreamPeerTCP.STATUS_NONE = 0
StreamPeerTCP.STATUS_CONNECTING = 1
StreamPeerTCP.STATUS_CONNECTED = 2
StreamPeerTCP.STATUS_ERROR = 3

---@return tlspeer.StreamPeerTCP
function StreamPeerTCP.new() end

---@param port integer
---@param host? string "*" by default
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTCP:bind(port, host) end

---Starts connecting (a name is looked up on a worker); true at once.
---@param host string
---@param port integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTCP:connect_to_host(host, port) end

function StreamPeerTCP:poll() end

---@return integer status a STATUS_* value
function StreamPeerTCP:get_status() end

---@return boolean
function StreamPeerTCP:is_resolving() end

---Why the status is STATUS_ERROR.
---@return string? message
---@return tlspeer.Error? code
function StreamPeerTCP:get_error() end

---@return string
function StreamPeerTCP:get_connected_host() end

---@return integer
function StreamPeerTCP:get_connected_port() end

---@return integer
function StreamPeerTCP:get_local_port() end

function StreamPeerTCP:disconnect_from_host() end

---@param enabled boolean
function StreamPeerTCP:set_no_delay(enabled) end
