---@meta
-- LuaLS annotations for tls.HTTPRequest (docs/HTTPRequest.md).

---Godot 4's HTTPRequest as a poll-driven object: `tls.poll()` (or
---`req:poll()`) advances it a short step at a time; the outcome comes as the
---`request_completed` event.
---@class tlspeer.HTTPRequest
---@field RESULT_SUCCESS integer 0
---@field RESULT_CHUNKED_BODY_SIZE_MISMATCH integer 1
---@field RESULT_CANT_CONNECT integer 2
---@field RESULT_CANT_RESOLVE integer 3
---@field RESULT_CONNECTION_ERROR integer 4
---@field RESULT_TLS_HANDSHAKE_ERROR integer 5
---@field RESULT_NO_RESPONSE integer 6
---@field RESULT_BODY_SIZE_LIMIT_EXCEEDED integer 7
---@field RESULT_BODY_DECOMPRESS_FAILED integer 8
---@field RESULT_REQUEST_FAILED integer 9
---@field RESULT_DOWNLOAD_FILE_CANT_OPEN integer 10
---@field RESULT_DOWNLOAD_FILE_WRITE_ERROR integer 11
---@field RESULT_REDIRECT_LIMIT_REACHED integer 12
---@field RESULT_TIMEOUT integer 13
local HTTPRequest = {}

---A new, idle HTTPRequest (Godot's defaults).
---@return tlspeer.HTTPRequest
function HTTPRequest.new() end

---@alias tlspeer.HTTPRequest.headers string[]|table<string, string|number>

---Starts a request; the outcome comes as `request_completed` from a later
---poll. `nil, message, code` when it cannot start (`"ERR_BUSY"`,
---`"ERR_INVALID_PARAMETER"`).
---@param url string `http://` or `https://`
---@param custom_headers? tlspeer.HTTPRequest.headers `"Name: value"` strings (default `{}`)
---@param method? integer a `tls.HTTPClient.METHOD_*` value (default `METHOD_GET`)
---@param request_data? string the body (default `""`)
---@return true|nil ok
---@return string? message
---@return string? code
function HTTPRequest:request(url, custom_headers, method, request_data) end

---`request()` with the body as bytes.
---@param url string
---@param custom_headers? tlspeer.HTTPRequest.headers
---@param method? integer
---@param request_data_raw? string
---@return true|nil ok
---@return string? message
---@return string? code
function HTTPRequest:request_raw(url, custom_headers, method, request_data_raw) end

---Stops the request in flight (the connection closes, `download_file.part`
---is removed); no event follows.
function HTTPRequest:cancel_request() end

---The connection's `tls.HTTPClient.STATUS_*` (`STATUS_DISCONNECTED` when idle).
---@return integer
function HTTPRequest:get_http_client_status() end

---The body's announced size (`Content-Length`), -1 when unknown.
---@return integer
function HTTPRequest:get_body_size() end

---Body bytes received so far, as they came over the wire.
---@return integer
function HTTPRequest:get_downloaded_bytes() end

---Ours: why the last request failed (message, Godot Error name), or nothing.
---@return string? message
---@return string? code
function HTTPRequest:get_error() end

---Client TLSOptions for `https://` (nil: `TLSOptions.client()`, verification on).
---@param client_options? userdata tls.TLSOptions
function HTTPRequest:set_tls_options(client_options) end

---The proxy for `http://` URLs (absolute-form requests); `""` or -1 unsets.
---Ours: `"user:pass@host"` for Basic proxy credentials.
---@param host string
---@param port integer
---@return true|nil ok
---@return string? message
---@return string? code
function HTTPRequest:set_http_proxy(host, port) end

---The proxy for `https://` URLs (a CONNECT tunnel, TLS end to end).
---@param host string
---@param port integer
---@return true|nil ok
---@return string? message
---@return string? code
function HTTPRequest:set_https_proxy(host, port) end

---Default true: asks for and decodes gzip/deflate bodies.
---@param enable boolean
function HTTPRequest:set_accept_gzip(enable) end
---@return boolean
function HTTPRequest:is_accepting_gzip() end

---Default -1 (none): the most bytes of (decompressed) body.
---@param bytes integer
function HTTPRequest:set_body_size_limit(bytes) end
---@return integer
function HTTPRequest:get_body_size_limit() end

---Default 65536: the most bytes read per step (256..16777216).
---@param bytes integer
function HTTPRequest:set_download_chunk_size(bytes) end
---@return integer
function HTTPRequest:get_download_chunk_size() end

---Default "" (memory): the body goes to `path .. ".part"`, renamed to `path` when whole.
---@param path string
function HTTPRequest:set_download_file(path) end
---@return string
function HTTPRequest:get_download_file() end

---Default 8 (-1: no limit).
---@param amount integer
function HTTPRequest:set_max_redirects(amount) end
---@return integer
function HTTPRequest:get_max_redirects() end

---Default 0 (none): seconds for the whole request, redirects included.
---@param seconds number
function HTTPRequest:set_timeout(seconds) end
---@return number
function HTTPRequest:get_timeout() end

---Ours: adds a listener; listeners run inside `poll()` / `tls.poll()`.
---@param event "request_completed"|"progress"|"error"
---@param listener fun(...)
---@return tlspeer.HTTPRequest
---@overload fun(self: tlspeer.HTTPRequest, event: "request_completed", listener: fun(result: integer, response_code: integer, headers: string[], body: string)): tlspeer.HTTPRequest
---@overload fun(self: tlspeer.HTTPRequest, event: "progress", listener: fun(downloaded_bytes: integer, body_size: integer)): tlspeer.HTTPRequest
---@overload fun(self: tlspeer.HTTPRequest, event: "error", listener: fun(message: string)): tlspeer.HTTPRequest
function HTTPRequest:on(event, listener) end

---Ours: one non-blocking step of this request; true while one is in flight.
---@return boolean
function HTTPRequest:poll() end

---Ours, for scripts: blocks until the request completes (true) or
---`timeout` seconds pass (nil, message, "ERR_TIMEOUT").
---@param timeout? number
---@return true|nil ok
---@return string? message
---@return string? code
function HTTPRequest:wait(timeout) end

return HTTPRequest
