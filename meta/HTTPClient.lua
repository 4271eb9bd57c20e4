---@meta
-- Godot's HTTPClient, poll-driven HTTP/1.1 (docs/HTTPClient.md).

---@class tlspeer.HTTPClient
local HTTPClient = {}

HTTPClient.METHOD_GET = 0
HTTPClient.METHOD_HEAD = 1
HTTPClient.METHOD_POST = 2
HTTPClient.METHOD_PUT = 3
HTTPClient.METHOD_DELETE = 4
HTTPClient.METHOD_OPTIONS = 5
HTTPClient.METHOD_TRACE = 6
HTTPClient.METHOD_CONNECT = 7
HTTPClient.METHOD_PATCH = 8
HTTPClient.METHOD_MAX = 9
HTTPClient.RESPONSE_CONTINUE = 100
HTTPClient.RESPONSE_SWITCHING_PROTOCOLS = 101
HTTPClient.RESPONSE_OK = 200
HTTPClient.RESPONSE_CREATED = 201
HTTPClient.RESPONSE_ACCEPTED = 202
HTTPClient.RESPONSE_NO_CONTENT = 204
HTTPClient.RESPONSE_PARTIAL_CONTENT = 206
HTTPClient.RESPONSE_MOVED_PERMANENTLY = 301
HTTPClient.RESPONSE_FOUND = 302
HTTPClient.RESPONSE_SEE_OTHER = 303
HTTPClient.RESPONSE_NOT_MODIFIED = 304
HTTPClient.RESPONSE_TEMPORARY_REDIRECT = 307
HTTPClient.RESPONSE_PERMANENT_REDIRECT = 308
HTTPClient.RESPONSE_BAD_REQUEST = 400
HTTPClient.RESPONSE_UNAUTHORIZED = 401
HTTPClient.RESPONSE_FORBIDDEN = 403
HTTPClient.RESPONSE_NOT_FOUND = 404
HTTPClient.RESPONSE_METHOD_NOT_ALLOWED = 405
HTTPClient.RESPONSE_REQUEST_TIMEOUT = 408
HTTPClient.RESPONSE_TOO_MANY_REQUESTS = 429
HTTPClient.RESPONSE_INTERNAL_SERVER_ERROR = 500
HTTPClient.RESPONSE_NOT_IMPLEMENTED = 501
HTTPClient.RESPONSE_BAD_GATEWAY = 502
HTTPClient.RESPONSE_SERVICE_UNAVAILABLE = 503
HTTPClient.RESPONSE_GATEWAY_TIMEOUT = 504
HTTPClient.STATUS_DISCONNECTED = 0
HTTPClient.STATUS_RESOLVING = 1
HTTPClient.STATUS_CANT_RESOLVE = 2
HTTPClient.STATUS_CONNECTING = 3
HTTPClient.STATUS_CANT_CONNECT = 4
HTTPClient.STATUS_CONNECTED = 5
HTTPClient.STATUS_REQUESTING = 6
HTTPClient.STATUS_BODY = 7
HTTPClient.STATUS_CONNECTION_ERROR = 8
HTTPClient.STATUS_TLS_HANDSHAKE_ERROR = 9

---@return tlspeer.HTTPClient
function HTTPClient.new() end

---"https://host:8443/path?q" -> scheme, host, port, path; or nil, message.
---@param url string
---@return string|nil scheme
---@return string host or the message
---@return integer? port
---@return string? path
function HTTPClient.parse_url(url) end

---The same function as tls.request.
---@param url string
---@param opts? tlspeer.RequestOptions
---@return string|integer|nil body
---@return integer|string code
---@return tlspeer.Headers|tlspeer.Error|integer|nil headers
---@return tlspeer.Headers? error_headers
function HTTPClient.request_url(url, opts) end

---Starts connecting: a host name, an IP address, or "https://host[:port]".
---@param host string
---@param port? integer -1 (the default): 443 for TLS, else 80
---@param tls_options? tlspeer.TLSOptions client options: TLS with them
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:connect_to_host(host, port, tls_options) end

---One non-blocking step (blocking mode: until the status changes).
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:poll() end

---@return integer status a STATUS_* value
function HTTPClient:get_status() end

---Why the status is an error one.
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:get_error() end

---@param method integer a METHOD_* value
---@param url string the path and query
---@param headers? string[]|table<string, string|number>
---@param body? string
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:request(method, url, headers, body) end

---@return boolean
function HTTPClient:has_response() end

---@return integer
function HTTPClient:get_response_code() end

---@return string[] headers "Name: value" lines
function HTTPClient:get_response_headers() end

---@return tlspeer.Headers
function HTTPClient:get_response_headers_as_dictionary() end

---@return boolean
function HTTPClient:is_response_chunked() end

---@return integer length -1 when unknown
function HTTPClient:get_response_body_length() end

---@return string chunk "" when nothing has arrived yet
function HTTPClient:read_response_body_chunk() end

---@param bytes integer 256..16777216
function HTTPClient:set_read_chunk_size(bytes) end

---@return integer
function HTTPClient:get_read_chunk_size() end

---@param enabled boolean
function HTTPClient:set_blocking_mode(enabled) end

---@return boolean
function HTTPClient:is_blocking_mode_enabled() end

---The proxy for plain connections ("" or -1 unsets; "user:pass@host" sends Basic credentials).
---@param host string
---@param port integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:set_http_proxy(host, port) end

---The proxy for TLS connections: a CONNECT tunnel ("" or -1 unsets).
---@param host string
---@param port integer
---@return true|nil ok
---@return string? message
---@return tlspeer.Error? code
function HTTPClient:set_https_proxy(host, port) end

---@param seconds number how long blocking mode waits (30)
function HTTPClient:set_timeout(seconds) end

---@param fields table<string, any>
---@return string
function HTTPClient:query_string_from_dict(fields) end

function HTTPClient:close() end
