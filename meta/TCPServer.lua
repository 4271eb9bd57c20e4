---@meta
-- Godot's TCPServer (docs/TCPServer.md).

---@class tlspeer.TCPServer
local TCPServer = {}

---@return tlspeer.TCPServer
function TCPServer.new() end

---@param port integer 0 picks a free port
---@param bind_address? string "*" by default
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function TCPServer:listen(port, bind_address) end

---@return boolean
function TCPServer:is_listening() end

---@return integer
function TCPServer:get_local_port() end

---@return boolean
function TCPServer:is_connection_available() end

---@return tlspeer.StreamPeerTCP? connection
function TCPServer:take_connection() end

function TCPServer:stop() end
