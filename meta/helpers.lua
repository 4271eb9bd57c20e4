---@meta
-- The objects of tls.listen, tls.connect and tls.pipe (docs/helpers.md, docs/module.md).

---A server made by tls.listen.
---@class tlspeer.Server
local Server = {}

---Adds a handler: "connection_established" (conn), "data_received" (conn, data),
---"disconnected" (conn), "connection_failed" (conn, message, code), "error" (message).
---@param event "connection_established"|"data_received"|"disconnected"|"connection_failed"|"error"
---@param handler fun(...)
---@return tlspeer.Server self
function Server:on(event, handler) end

---One non-blocking step; runs the handlers. True while listening.
---@return boolean
function Server:poll() end

---How long this server's own poll() works at most (nil: the module's budget).
---@param seconds number|nil
function Server:set_poll_budget(seconds) end

---The budget in seconds poll() uses now.
---@return number
function Server:get_poll_budget() end

---Serves until stop() or `timeout` seconds.
---@param timeout? number
---@return true
function Server:run(timeout) end

---Stops listening and closes every connection.
function Server:stop() end

---@return integer
function Server:get_local_port() end

---@return tlspeer.Connection[]
function Server:get_connections() end

---A connection of a server (the first argument of the server's handlers).
---@class tlspeer.Connection
local Connection = {}

---Queues data and sends what the socket takes now; never blocks.
---@param data string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function Connection:send(data) end

---Sends what is queued (for at most `linger` seconds, 5), then close_notify. Never blocks.
---@param linger? number
function Connection:close(linger) end

---@return tlspeer.StreamPeerTLS
function Connection:get_peer() end

---@return integer status a StreamPeerTLS.STATUS_* value
function Connection:get_status() end

---@return integer bytes queued by send() that have not left yet
function Connection:get_pending_bytes() end

---@return string host
---@return integer port
function Connection:get_address() end

---A client made by tls.connect.
---@class tlspeer.Client
local Client = {}

---Adds a handler: "connection_established" (), "data_received" (data), "disconnected" (),
---"connection_failed" (message, code), "error" (message).
---@param event "connection_established"|"data_received"|"disconnected"|"connection_failed"|"error"
---@param handler fun(...)
---@return tlspeer.Client self
function Client:on(event, handler) end

---One non-blocking step; runs the handlers. True while the connection is, or may become, usable.
---@return boolean
function Client:poll() end

---How long this client's own poll() works at most (nil: the module's budget).
---@param seconds number|nil
function Client:set_poll_budget(seconds) end

---The budget in seconds poll() uses now.
---@return number
function Client:get_poll_budget() end

---Blocks until connected (true) or failed (nil, message, code); steps only this client.
---@param timeout? number
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function Client:wait(timeout) end

---Pumps the client until the connection ends (or `timeout` seconds).
---@param timeout? number
---@return true
function Client:run(timeout) end

---@param data string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function Client:send(data) end

---@param linger? number
function Client:close(linger) end

---@return tlspeer.StreamPeerTLS?
function Client:get_peer() end

---@return integer status
function Client:get_status() end

---@return integer
function Client:get_pending_bytes() end

---An end of tls.pipe().
---@class tlspeer.PipeEnd
local PipeEnd = {}

---@param n integer
---@return string|nil data
---@return string? message
---@return tlspeer.Error? code
function PipeEnd:get_partial_data(n) end

---@param s string
---@return integer|nil sent
---@return string? message
---@return tlspeer.Error? code
function PipeEnd:put_partial_data(s) end

---@return integer
function PipeEnd:get_available_bytes() end

function PipeEnd:disconnect_from_host() end
